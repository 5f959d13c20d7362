//! CPU benchmarks at the ml-1m shape (batch 128, n 200, d 64, 2 blocks, 1 head, 3416 items):
//! one forward + backward of whole models, and the fused attention op alone.
//!
//! `cargo bench --bench cpu` (criterion; medians in target/criterion).

use criterion::{criterion_group, criterion_main, Criterion};
use pasa::backend::cpu::Cpu;
use pasa::backend::{
    AttnGrads, AttnInputs, AttnShape, Backend, DeviceBuf, KernelKind, ScoreSource,
};
use pasa::models::{Batch, Model, ModelConfig};
use pasa::optim::OptState;
use pasa::rng::Rng;
use pasa::tape::Tape;

const B: usize = 128;
const N: usize = 200;
const ITEMS: usize = 3416;

/// Full windows of random items with random next-item targets.
fn batch() -> Batch {
    let mut r = Rng::new(1);
    let mut ids = || 1 + r.below(ITEMS) as u32;
    let inputs = (0..B * N).map(|_| ids()).collect();
    let targets = (0..B * N).map(|_| ids()).collect();
    Batch {
        inputs,
        targets,
        start: vec![0; B],
    }
}

fn train_step(c: &mut Criterion) {
    let b = Cpu::<f32>::new();
    let batch = batch();
    let mut g = c.benchmark_group("train_step_ml1m_shape");
    g.sample_size(10);
    for name in ["sasrec", "pasa"] {
        let model = Model::new(ModelConfig::preset(name, ITEMS).unwrap()).unwrap();
        let mut st = OptState::new(&b, &model.params.init(0));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                st.zero_grad(&b);
                let mut tape = Tape::new(&b, &st.params, true);
                let loss = model.loss(&mut tape, &batch, 7);
                tape.backward(loss, &mut st.grads);
            })
        });
    }
    g.finish();
}

fn attention(c: &mut Criterion) {
    let b = Cpu::<f32>::new();
    let s = AttnShape {
        batch: B,
        n: N,
        heads: 1,
        dh: 64,
        score: ScoreSource::Content,
        u: KernelKind::Toeplitz,
        u_heads: 1,
        l: KernelKind::Full,
        l_heads: 1,
        dropout: 0.2,
        seed: 3,
    };
    let mut r = Rng::new(2);
    let mut rand = |len: usize| b.upload(&(0..len).map(|_| r.normal()).collect::<Vec<_>>());
    let w = B * N * 64;
    let (q, k, v, dy) = (rand(w), rand(w), rand(w), rand(w));
    let (u, l) = (rand(N), rand(N * (N + 1) / 2));
    let start = vec![0u32; B];
    let (mut y, mut lse) = (b.zeros(w), b.zeros(B * N));
    let inputs = || AttnInputs {
        q: Some(q.view()),
        k: Some(k.view()),
        v: v.view(),
        pos: None,
        u: Some(u.view()),
        l: Some(l.view()),
    };
    let mut g = c.benchmark_group("attention_ml1m_shape");
    g.sample_size(10);
    g.bench_function("forward", |bench| {
        bench.iter(|| b.attention_fwd(&s, inputs(), &start, y.view_mut(), lse.view_mut()))
    });
    let (mut dq, mut dk, mut dv) = (b.zeros(w), b.zeros(w), b.zeros(w));
    let (mut du, mut dl) = (b.zeros(u.len()), b.zeros(l.len()));
    g.bench_function("backward", |bench| {
        bench.iter(|| {
            let grads = AttnGrads {
                dq: Some(dq.view_mut()),
                dk: Some(dk.view_mut()),
                dv: dv.view_mut(),
                dpos: None,
                du: Some(du.view_mut()),
                dl: Some(dl.view_mut()),
            };
            b.attention_bwd(&s, inputs(), &start, y.view(), lse.view(), dy.view(), grads)
        })
    });
    g.finish();
}

criterion_group!(benches, train_step, attention);
criterion_main!(benches);
