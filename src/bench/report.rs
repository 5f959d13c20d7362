//! How `pasa bench` prints: a table (header first, then a row per measurement as it
//! completes, a line of counters under each training step and, with `--profile`, its ranges)
//! or one JSON document.

use super::{BenchPlan, Case, Measurement, Work};
use crate::backend::profile::RangeTime;
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

/// What `row` prints for a measurement: its row; under a training step, the counters per step
/// and, when profiled, the ranges table.
pub fn rows(m: &Measurement) -> String {
    let mut out = row(m);
    if m.case == Case::TrainStep {
        out.push('\n');
        out.push_str(&counts_line(m));
        if let Some(p) = &m.profile {
            out.push_str("\n\n");
            out.push_str(&profile_table(m, p));
            out.push('\n');
        }
    }
    out
}

/// A per-call figure: whole when it is (a step is the same work every time), else one decimal.
fn figure(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Bytes with a binary unit.
fn bytes(x: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = x;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", figure(v))
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The backend's counters per call, on one line.
pub fn counts_line(m: &Measurement) -> String {
    let c = &m.counts;
    let per = |x| figure(m.per_call(x));
    format!(
        "{:<8} per step: {} launches, {} GEMMs, {} fills, {} allocations ({}), {} transfers, {} graph launches",
        "",
        per(c.launches),
        per(c.gemms),
        per(c.fills),
        per(c.allocations),
        bytes(m.per_call(c.allocated_bytes)),
        per(c.transfers),
        per(c.graph_launches),
    )
}

/// The ranges of a profiled case, longest total first, per call. `self %` is the share of the
/// self times' sum (= the outermost ranges', the step's); enclosing ranges are starred.
pub fn profile_table(m: &Measurement, p: &[RangeTime]) -> String {
    let all: f64 = p.iter().map(|r| r.self_ms).sum();
    let mut out = vec![format!(
        "{:<8} {:<20} {:>8} {:>10} {:>10} {:>7}",
        "", "range (per step)", "calls", "total ms", "self ms", "self %"
    )];
    for r in p {
        let name = if r.encloses {
            format!("{}*", r.name)
        } else {
            r.name.to_string()
        };
        out.push(format!(
            "{:<8} {:<20} {:>8} {:>10.3} {:>10.3} {:>6.1}%",
            "",
            name,
            figure(m.per_call(r.calls)),
            r.total_ms / m.calls.max(1) as f64,
            r.self_ms / m.calls.max(1) as f64,
            if all > 0.0 {
                100.0 * r.self_ms / all
            } else {
                0.0
            },
        ));
    }
    out.push(format!(
        "{:<8} total: the range with every range inside it; self: without them (the self \
         times add up to the step); * encloses other ranges",
        ""
    ));
    out.join("\n")
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
/// with `gflop_per_s` (attention) or `tokens_per_s` (training step), `per_call` (the
/// backend's counters per call) and, when profiled, `profile` (per range, per call, longest
/// total first).
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
            let c = &m.counts;
            v["per_call"] = json!({
                "launches": m.per_call(c.launches),
                "gemms": m.per_call(c.gemms),
                "fills": m.per_call(c.fills),
                "allocations": m.per_call(c.allocations),
                "allocated_bytes": m.per_call(c.allocated_bytes),
                "transfers": m.per_call(c.transfers),
                "graph_launches": m.per_call(c.graph_launches),
            });
            if let Some(p) = &m.profile {
                let all: f64 = p.iter().map(|r| r.self_ms).sum();
                let n = m.calls.max(1) as f64;
                v["profile"] = p
                    .iter()
                    .map(|r| {
                        json!({
                            "range": r.name,
                            "calls": r.calls as f64 / n,
                            "total_ms": r.total_ms / n,
                            "self_ms": r.self_ms / n,
                            "self_share": if all > 0.0 { r.self_ms / all } else { 0.0 },
                            "encloses": r.encloses,
                        })
                    })
                    .collect();
            }
            v
        })
        .collect();
    json!({
        "device": device,
        "shape": plan.shape,
        "warmup": plan.warmup,
        "iters": plan.iters,
        "profile": plan.profile,
        "results": results,
    })
}
