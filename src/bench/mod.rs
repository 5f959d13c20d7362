//! `pasa bench`: wall-clock timings of the fused attention op and of whole training steps on
//! one backend, at one shape (DESIGN §6). The criterion benches time the same cases.
//!
//! Besides the time, each case reports what the backend's own counters saw per call
//! (kernel launches, GEMMs, fills, allocations and their bytes, transfers: `pool::Counts`),
//! which work on any device, the emulated GPU included; and with `--profile`, the time of every
//! named range (tape op, backward, optimiser) within the timed training steps
//! ([`Memory::profile_start`](crate::backend::Memory::profile_start)).

pub mod cases;
pub mod report;

use crate::backend::pool::Counts;
use crate::backend::profile::RangeTime;
use crate::backend::STEPS_BEFORE_REPLAY;
use crate::backend::{Backend, MAX_GRID_YZ};
use crate::error::{Error, Result};
use crate::models::ModelConfig;
use cases::{attention_flops, AttnCase, TrainCase};
use std::time::Instant;

/// The models benchmarked when none is named.
pub const DEFAULT_MODELS: [&str; 2] = ["sasrec", "pasa"];

/// Seed of every random input and initialisation (timings do not depend on it).
const SEED: u64 = 17;

/// The problem size; the default is the ml-1m training shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BenchShape {
    pub batch: usize,
    pub n: usize,
    pub d: usize,
    pub blocks: usize,
    pub heads: usize,
    pub items: usize,
    /// Rows per chunk of the fused classifier loss (`--ce-chunk`); None sizes it from the
    /// catalogue, as training does.
    pub ce_chunk: Option<usize>,
}

impl Default for BenchShape {
    fn default() -> Self {
        BenchShape {
            batch: 128,
            n: 200,
            d: 64,
            blocks: 2,
            heads: 1,
            items: 3416,
            ce_chunk: None,
        }
    }
}

impl BenchShape {
    /// Reject shapes no model can take, naming the flag.
    pub fn check(&self) -> Result<()> {
        for (flag, v) in [
            ("--batch", self.batch),
            ("--n", self.n),
            ("--d", self.d),
            ("--blocks", self.blocks),
            ("--heads", self.heads),
            ("--items", self.items),
        ] {
            if v == 0 {
                return Err(Error::arg(flag, "must be at least 1"));
            }
        }
        if self.batch > MAX_GRID_YZ {
            return Err(Error::arg(
                "--batch",
                format!("must be at most {MAX_GRID_YZ} windows (the CUDA grid limit)"),
            ));
        }
        if !self.d.is_multiple_of(self.heads) {
            return Err(Error::arg(
                "--heads",
                format!(
                    "must divide --d ({} heads do not divide d = {})",
                    self.heads, self.d
                ),
            ));
        }
        Ok(())
    }

    /// Model `name`'s preset at this shape (d_ff = d, as the presets have it).
    pub fn model(&self, name: &str) -> Result<ModelConfig> {
        let mut c = ModelConfig::preset(name, self.items)?;
        c.n = self.n;
        c.d = self.d;
        c.d_ff = self.d;
        c.blocks = self.blocks;
        c.heads = self.heads;
        c.ce_chunk = self.ce_chunk;
        c.validate()?;
        Ok(c)
    }
}

/// What to run: the shape, the models, how many untimed and timed calls of each case, and
/// whether to profile the timed training steps by range.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPlan {
    pub shape: BenchShape,
    pub models: Vec<String>,
    pub warmup: usize,
    pub iters: usize,
    pub profile: bool,
}

impl BenchPlan {
    /// Every flag checked before any device is opened or any buffer allocated.
    pub fn check(&self) -> Result<()> {
        self.shape.check()?;
        if self.iters == 0 {
            return Err(Error::arg("--iters", "must be at least 1"));
        }
        if self.models.is_empty() {
            return Err(Error::arg("--model", "name at least one model"));
        }
        for m in &self.models {
            self.shape.model(m)?;
        }
        Ok(())
    }
}

/// What one measurement timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    AttentionForward,
    AttentionBackward,
    TrainStep,
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::AttentionForward => "attention_fwd",
            Case::AttentionBackward => "attention_bwd",
            Case::TrainStep => "train_step",
        }
    }
}

/// Median, min and max wall-clock milliseconds of the timed calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Timing {
    /// Summary of at least one sample (the median of an even count is the middle pair's mean).
    pub fn of(mut ms: Vec<f64>) -> Timing {
        assert!(!ms.is_empty(), "timing needs at least one sample");
        ms.sort_by(f64::total_cmp);
        let mid = ms.len() / 2;
        let median_ms = if ms.len() % 2 == 1 {
            ms[mid]
        } else {
            (ms[mid - 1] + ms[mid]) / 2.0
        };
        Timing {
            median_ms,
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// The work one call does, for the throughput figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    Flops(f64),
    Tokens(usize),
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub model: String,
    pub case: Case,
    pub timing: Timing,
    pub work: Work,
    /// What the backend's counters saw over the timed calls (all of them: see
    /// [`Measurement::per_call`]).
    pub counts: Counts,
    /// The timed calls.
    pub calls: usize,
    /// Each range's time over the timed calls, when they were profiled (training steps with
    /// `--profile`).
    pub profile: Option<Vec<RangeTime>>,
}

impl Measurement {
    /// FLOP/s or tokens/s at the median time.
    pub fn per_second(&self) -> f64 {
        let secs = self.timing.median_ms / 1e3;
        match self.work {
            Work::Flops(f) => f / secs,
            Work::Tokens(t) => t as f64 / secs,
        }
    }

    /// A count over the timed calls, per call.
    pub fn per_call(&self, total: u64) -> f64 {
        total as f64 / self.calls.max(1) as f64
    }
}

/// What [`time`] measured: the timing, the counters' difference over the timed calls, and
/// the ranges' times when profiled.
pub struct Sample {
    pub timing: Timing,
    pub counts: Counts,
    pub profile: Option<Vec<RangeTime>>,
}

/// Call `f` `warmup` times untimed, then `iters` times, each timed call bracketed by
/// `synchronize` so that asynchronous (GPU) work is inside the interval. The counters are read
/// around the timed calls only; with `profile`, so are the ranges.
pub fn time<B: Backend>(
    b: &B,
    warmup: usize,
    iters: usize,
    profile: bool,
    mut f: impl FnMut(),
) -> Sample {
    for _ in 0..warmup {
        f();
    }
    b.synchronize();
    let before = b.counts();
    if profile {
        b.profile_start();
    }
    let ms = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            b.synchronize();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    Sample {
        timing: Timing::of(ms),
        counts: b.counts().since(before),
        profile: profile.then(|| b.profile_take()),
    }
}

/// Run the plan on `b`, handing each measurement to `each` as it completes (the table
/// prints rows as they come); returns them all. Per model: attention forward, attention
/// backward, training step, each with its buffers freed before the next.
pub fn run<B: Backend>(
    b: &B,
    plan: &BenchPlan,
    mut each: impl FnMut(&Measurement),
) -> Result<Vec<Measurement>> {
    plan.check()?;
    let (warmup, iters) = (plan.warmup, plan.iters);
    let mut out = vec![];
    let mut record = |model: &str, case, sample: Sample, work| {
        let m = Measurement {
            model: model.to_string(),
            case,
            timing: sample.timing,
            work,
            counts: sample.counts,
            calls: iters,
            profile: sample.profile,
        };
        each(&m);
        out.push(m);
    };
    for name in &plan.models {
        let cfg = plan.shape.model(name)?;
        // The attention call of a training forward: the model's dropout on.
        let s = cfg.attn_shape(plan.shape.batch, cfg.dropout, SEED);
        let (fwd_flops, bwd_flops) = attention_flops(&s);
        let mut attn = AttnCase::new(b, s, SEED);
        let t = time(b, warmup, iters, false, || attn.forward(b));
        record(name, Case::AttentionForward, t, Work::Flops(fwd_flops));
        let t = time(b, warmup, iters, false, || attn.backward(b));
        record(name, Case::AttentionBackward, t, Work::Flops(bwd_flops));
        drop(attn);

        let mut train = TrainCase::new(b, cfg, plan.shape.batch, SEED)?;
        // Profiled steps run directly (a replayed graph has no range times); otherwise the
        // untimed steps cover a graph's warm-up and captures, so the timed ones are replays.
        train.graphs = !plan.profile;
        let train_warmup = if plan.profile {
            warmup
        } else {
            warmup.max(STEPS_BEFORE_REPLAY)
        };
        let t = time(b, train_warmup, iters, plan.profile, || train.step(b));
        record(name, Case::TrainStep, t, Work::Tokens(train.tokens()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Cpu;
    use crate::backend::cuda::Cuda;
    use crate::backend::Memory;

    #[test]
    fn timing_summarises_odd_and_even_counts() {
        let t = Timing::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((t.median_ms, t.min_ms, t.max_ms), (2.0, 1.0, 3.0));
        assert_eq!(Timing::of(vec![4.0, 1.0, 2.0, 8.0]).median_ms, 3.0);
    }

    #[test]
    fn both_backends_synchronize() {
        Cpu::<f32>::new().synchronize();
        // The CUDA one only compiles here unless a GPU is present.
        let _: fn(&Cuda) = <Cuda as Memory>::synchronize;
        if let Ok(c) = Cuda::new(0) {
            c.synchronize();
        }
    }

    #[test]
    fn attention_flops_follow_the_formula() {
        let c = BenchShape::default().model("pasa").unwrap();
        let s = c.attn_shape(128, 0.0, 0);
        let pairs = 200.0 * 201.0 / 2.0;
        let (f, g) = attention_flops(&s);
        assert_eq!(f, 2.0 * 2.0 * 128.0 * 64.0 * pairs);
        assert_eq!(g, 2.5 * f);
        let p = BenchShape::default().model("parec").unwrap();
        let (f, g) = attention_flops(&p.attn_shape(128, 0.0, 0));
        assert_eq!(
            (f, g),
            (2.0 * 128.0 * 64.0 * pairs, 4.0 * 128.0 * 64.0 * pairs)
        );
    }

    #[test]
    fn each_preset_runs_on_the_cpu_at_a_tiny_shape() {
        let plan = BenchPlan {
            shape: BenchShape {
                batch: 2,
                n: 5,
                d: 8,
                blocks: 1,
                heads: 2,
                items: 9,
                ce_chunk: Some(4),
            },
            models: crate::models::PRESETS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            warmup: 0,
            iters: 1,
            profile: true,
        };
        let mut seen = 0;
        let rows = run(&Cpu::<f32>::new(), &plan, |_| seen += 1).unwrap();
        assert_eq!((rows.len(), seen), (3 * plan.models.len(), rows.len()));
        assert!(rows.iter().all(|m| m.per_second() > 0.0));
        for m in &rows {
            let step = m.case == Case::TrainStep;
            assert_eq!(
                m.profile.is_some(),
                step,
                "only training steps are profiled"
            );
            // zero_grad and the accumulating outputs are fills on every device.
            assert!(m.counts.fills > 0 || !step);
            assert_eq!(m.counts.launches, 0, "the CPU launches no kernels");
            let Some(p) = &m.profile else { continue };
            // One step: "step" encloses everything, once; the self times add up to it.
            let step = p.iter().find(|r| r.name == "step").unwrap();
            assert_eq!((step.calls, step.encloses), (1, true));
            assert_eq!(p[0].name, "step", "the longest range comes first");
            let selves: f64 = p.iter().map(|r| r.self_ms).sum();
            assert!((selves - step.total_ms).abs() <= 1e-6 * step.total_ms.max(1.0));
            for op in ["matmul", "matmul.bwd", "backward", "optimizer", "attention"] {
                assert!(p.iter().any(|r| r.name == op), "{} lacks {op}", m.model);
            }
        }
    }

    #[test]
    fn counts_are_read_around_the_timed_calls_only() {
        let b = Cpu::<f32>::new();
        let s = time(&b, 2, 3, false, || {
            let _ = b.zeros(4);
        });
        // The warm-up's first call allocated; the timed ones took the pooled buffer.
        assert_eq!((s.counts.allocations, s.counts.fills), (0, 3));
        assert!(s.profile.is_none());
        assert!(b.profile_take().is_empty(), "profiling was never on");
    }

    #[test]
    fn bad_plans_name_their_flag() {
        let ok = BenchPlan {
            shape: BenchShape::default(),
            models: vec!["pasa".into()],
            warmup: 0,
            iters: 1,
            profile: false,
        };
        let err = |p: BenchPlan| p.check().unwrap_err().to_string();
        let mut p = ok.clone();
        p.shape.heads = 3;
        assert!(err(p).starts_with("--heads:"));
        let mut p = ok.clone();
        p.iters = 0;
        assert!(err(p).starts_with("--iters:"));
        let mut p = ok.clone();
        p.shape.n = 0;
        assert!(err(p).starts_with("--n:"));
        let mut p = ok.clone();
        p.shape.ce_chunk = Some(0);
        assert!(err(p).starts_with("--ce-chunk:"));
        let mut p = ok.clone();
        p.models = vec!["bert".into()];
        assert!(err(p).starts_with("--model:"));
        assert!(ok.check().is_ok());
    }
}
