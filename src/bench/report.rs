//! How `pasa bench` prints: a table (header first, then a row per measurement as it
//! completes) or one JSON document.

use super::{BenchPlan, Measurement, Work};
use serde_json::{json, Value};

/// The lines printed before any measurement: the device and the shape.
pub fn header(device: &str, plan: &BenchPlan) -> String {
    let s = &plan.shape;
    format!(
        "device: {device}\n\
         shape: batch {}, n {}, d {}, blocks {}, heads {} (dh {}), items {}, CE chunk {}; \
         {} warm-up + {} timed calls per case\n\n\
         {:<8} {:<14} {:>10} {:>10} {:>10}  throughput",
        s.batch,
        s.n,
        s.d,
        s.blocks,
        s.heads,
        s.d / s.heads,
        s.items,
        s.ce_chunk
            .map_or("from the catalogue".to_string(), |r| format!("{r} rows")),
        plan.warmup,
        plan.iters,
        "model",
        "case",
        "median ms",
        "min ms",
        "max ms",
    )
}

/// One table row.
pub fn row(m: &Measurement) -> String {
    let rate = match m.work {
        Work::Flops(_) => format!("{:.1} GFLOP/s", m.per_second() / 1e9),
        Work::Tokens(_) => format!("{:.0} tokens/s", m.per_second()),
    };
    format!(
        "{:<8} {:<14} {:>10.3} {:>10.3} {:>10.3}  {rate}",
        m.model,
        m.case.name(),
        m.timing.median_ms,
        m.timing.min_ms,
        m.timing.max_ms,
    )
}

/// The whole report as JSON: device, shape, warmup, iters and one object per measurement
/// with `gflop_per_s` (attention) or `tokens_per_s` (training step).
pub fn to_json(device: &str, plan: &BenchPlan, rows: &[Measurement]) -> Value {
    let results: Vec<Value> = rows
        .iter()
        .map(|m| {
            let mut v = json!({
                "model": m.model,
                "case": m.case.name(),
                "median_ms": m.timing.median_ms,
                "min_ms": m.timing.min_ms,
                "max_ms": m.timing.max_ms,
            });
            match m.work {
                Work::Flops(f) => {
                    v["gflop"] = json!(f / 1e9);
                    v["gflop_per_s"] = json!(m.per_second() / 1e9);
                }
                Work::Tokens(t) => {
                    v["tokens"] = json!(t);
                    v["tokens_per_s"] = json!(m.per_second());
                }
            }
            v
        })
        .collect();
    json!({
        "device": device,
        "shape": plan.shape,
        "warmup": plan.warmup,
        "iters": plan.iters,
        "results": results,
    })
}
