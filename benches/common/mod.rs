//! The criterion benches of every backend: the fused attention op (forward, backward) and a
//! whole training step of each default model at the ml-1m shape, the cases of `pasa bench`.
//! Each timed closure ends with `synchronize`, so asynchronous GPU work is inside the time.

use criterion::Criterion;
use pasa::backend::Backend;
use pasa::bench::cases::{AttnCase, TrainCase};
use pasa::bench::{BenchShape, DEFAULT_MODELS};

const SEED: u64 = 3;

pub fn run_all<B: Backend>(c: &mut Criterion, b: &B) {
    attention(c, b);
    train_step(c, b);
}

fn attention<B: Backend>(c: &mut Criterion, b: &B) {
    let shape = BenchShape::default();
    let mut g = c.benchmark_group("attention_ml1m_shape");
    g.sample_size(10);
    for name in DEFAULT_MODELS {
        let cfg = shape.model(name).expect("a preset");
        let mut case = AttnCase::new(b, cfg.attn_shape(shape.batch, cfg.dropout, SEED), SEED);
        g.bench_function(format!("{name}_forward"), |bench| {
            bench.iter(|| {
                case.forward(b);
                b.synchronize();
            })
        });
        g.bench_function(format!("{name}_backward"), |bench| {
            bench.iter(|| {
                case.backward(b);
                b.synchronize();
            })
        });
    }
    g.finish();
}

fn train_step<B: Backend>(c: &mut Criterion, b: &B) {
    let shape = BenchShape::default();
    let mut g = c.benchmark_group("train_step_ml1m_shape");
    g.sample_size(10);
    for name in DEFAULT_MODELS {
        let cfg = shape.model(name).expect("a preset");
        let mut case = TrainCase::new(b, cfg, shape.batch, SEED).expect("a valid model");
        g.bench_function(name, |bench| {
            bench.iter(|| {
                case.step(b);
                b.synchronize();
            })
        });
    }
    g.finish();
}
