//! The CPU backend's reductions do not depend on the thread count or on rayon's work
//! stealing: the same inputs give bit-identical outputs under thread pools of different
//! sizes, op by op and for a whole training step.

use pasa::backend::cpu::Cpu;
use pasa::backend::prelude::*;
use pasa::backend::{AttnGrads, AttnInputs, AttnShape, KernelKind, MixShape, ScoreSource, Strided};
use pasa::models::{Batch, Model, ModelConfig};
use pasa::rng::Rng;
use pasa::tape::Tape;

/// Thread counts compared: one (no parallelism at all) against a few, more than the cores.
const POOLS: [usize; 2] = [1, 5];

fn normals(seed: u64, len: usize) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.normal()).collect()
}

/// `f` under a pool of each size of [`POOLS`]: every run's outputs equal bit for bit.
fn same_bits_on_every_pool(what: &str, f: impl Fn() -> Vec<Vec<f32>> + Sync) {
    let runs: Vec<Vec<Vec<f32>>> = POOLS
        .iter()
        .map(|&threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool")
                .install(&f)
        })
        .collect();
    for (threads, run) in POOLS.iter().zip(&runs).skip(1) {
        for (i, (a, b)) in runs[0].iter().zip(run).enumerate() {
            assert_eq!(a.len(), b.len(), "{what}: output {i} length");
            let differ = a
                .iter()
                .zip(b)
                .position(|(x, y)| x.to_bits() != y.to_bits());
            if let Some(j) = differ {
                panic!(
                    "{what}: output {i}[{j}] is {} on {} thread(s) but {} on {threads}",
                    a[j], POOLS[0], b[j]
                );
            }
        }
    }
}

#[test]
fn column_sums_layer_norm_and_sum_of_squares() {
    let b = Cpu::<f32>::new();
    // Tall enough for many row blocks: 5000 rows (the tape's loss means are col_sums of
    // B·n rows of one column).
    let (rows, cols) = (5000, 7);
    let x = normals(1, rows * cols);
    let dy = normals(2, rows * cols);
    same_bits_on_every_pool("col_sum / layernorm / sum_squares", || {
        let xb = b.upload(&x);
        let mut sum = b.zeros(cols);
        b.col_sum(xb.view(), sum.view_mut(), Strided::one(cols));
        let mut one = b.zeros(1);
        b.col_sum(xb.view(), one.view_mut(), Strided::one(1));
        let gamma = b.upload(&normals(3, cols));
        let beta = b.upload(&normals(4, cols));
        let (mut y, mut mean, mut rstd) = (b.zeros(rows * cols), b.zeros(rows), b.zeros(rows));
        b.layernorm_fwd(
            xb.view(),
            gamma.view(),
            beta.view(),
            1e-5,
            y.view_mut(),
            mean.view_mut(),
            rstd.view_mut(),
        );
        let dyb = b.upload(&dy);
        let (mut dx, mut dparams) = (b.zeros(rows * cols), b.zeros(2 * cols));
        b.layernorm_bwd(
            xb.view(),
            gamma.view(),
            mean.view(),
            rstd.view(),
            dyb.view(),
            dx.view_mut(),
            false,
            dparams.view_mut(),
        );
        let sq = b.sum_squares(xb.view());
        [sum, one, y, dx, dparams]
            .iter()
            .map(|x| x.to_vec())
            .chain([vec![sq as f32]])
            .collect()
    });
}

#[test]
fn attention_and_mix_kernel_gradients() {
    let b = Cpu::<f32>::new();
    // More windows than batch groups, so that several windows share a partial buffer.
    let (batch, n, heads, dh) = (37, 19, 2, 8);
    let act = batch * n * heads * dh;
    let start: Vec<u32> = (0..batch).map(|w| (w % n) as u32).collect();
    let ones_plus =
        |seed, len| -> Vec<f32> { normals(seed, len).iter().map(|x| 1.0 + 0.3 * x).collect() };
    for score in [ScoreSource::Content, ScoreSource::Positional] {
        let s = AttnShape {
            batch,
            n,
            heads,
            dh,
            score,
            u: KernelKind::Toeplitz,
            u_heads: 1,
            l: KernelKind::Full,
            l_heads: heads,
            dropout: 0.1,
            seed: 9,
        };
        let want = s.lens();
        let x: Vec<Vec<f32>> = [want.q, want.k, want.v, want.pos]
            .iter()
            .enumerate()
            .map(|(i, &len)| normals(10 + i as u64, len))
            .chain([ones_plus(20, want.u), ones_plus(21, want.l)])
            .collect();
        let dy = normals(30, act);
        same_bits_on_every_pool(&format!("attention {score:?}"), || {
            let up: Vec<_> = x.iter().map(|v| b.upload(v)).collect();
            let some = |i: usize| (!x[i].is_empty()).then(|| up[i].view());
            let inputs = AttnInputs {
                q: some(0),
                k: some(1),
                v: up[2].view(),
                pos: some(3),
                u: some(4),
                l: some(5),
            };
            let st = b.upload_u32(&start);
            let (mut y, mut lse) = (b.zeros(act), b.zeros(s.lse_len()));
            b.attention_fwd(&s, inputs, &st, y.view_mut(), lse.view_mut());
            let mut g: Vec<_> = x.iter().map(|v| b.zeros(v.len())).collect();
            let [dq, dk, dv, dpos, du, dl] = &mut g[..] else {
                unreachable!()
            };
            let dyb = b.upload(&dy);
            let grads = AttnGrads {
                dq: Some(dq.view_mut()),
                dk: Some(dk.view_mut()),
                dv: dv.view_mut(),
                dpos: Some(dpos.view_mut()),
                du: Some(du.view_mut()),
                dl: Some(dl.view_mut()),
            };
            b.attention_bwd(&s, inputs, &st, y.view(), lse.view(), dyb.view(), grads);
            let mut out = vec![y.to_vec(), lse.to_vec()];
            out.extend(g.iter().map(|x| x.to_vec()));
            out
        });
    }
    let m = MixShape {
        batch,
        n,
        heads,
        dh,
        l: KernelKind::Toeplitz,
        l_heads: 1,
    };
    let (l, v, dout) = (ones_plus(40, m.l_len()), normals(41, act), normals(42, act));
    same_bits_on_every_pool("mix", || {
        let (lb, vb, db) = (b.upload(&l), b.upload(&v), b.upload(&dout));
        let st = b.upload_u32(&start);
        let (mut dv, mut dl) = (b.zeros(act), b.zeros(l.len()));
        b.mix_bwd(
            &m,
            lb.view(),
            vb.view(),
            &st,
            db.view(),
            dv.view_mut(),
            dl.view_mut(),
        );
        vec![dv.to_vec(), dl.to_vec()]
    });
}

#[test]
fn training_step_gradients() {
    let b = Cpu::<f32>::new();
    let mut cfg = ModelConfig::preset("pasa", 50).unwrap();
    (cfg.n, cfg.d, cfg.heads, cfg.d_ff) = (12, 16, 2, 24);
    let model = Model::new(cfg).unwrap();
    let init = model.params.init(1);
    // Windows padded on the left by 0..n slots, the padding slots' items and targets 0.
    let (windows, n) = (24, 12);
    let start: Vec<u32> = (0..windows).map(|w| (w % n) as u32).collect();
    let mut r = Rng::new(2);
    let mut items = |_| -> Vec<u32> {
        (0..windows * n)
            .map(|k| {
                let item = 1 + r.below(50) as u32;
                if k % n < start[k / n] as usize {
                    0
                } else {
                    item
                }
            })
            .collect()
    };
    let batch = Batch {
        inputs: items(0),
        targets: items(1),
        start: start.clone(),
    };
    same_bits_on_every_pool("pasa training step", || {
        let params = b.upload(&init);
        let mut grads = b.zeros(init.len());
        let mut tape = Tape::new(&b, &params, true);
        let loss = model.loss(&mut tape, &batch, 3);
        let value = tape.to_host(loss);
        tape.backward(loss, &mut grads);
        drop(tape);
        vec![value, grads.to_vec()]
    });
}
