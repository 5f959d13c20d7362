//! Whole-model checks: f64 finite-difference gradients over all parameters of every named
//! model and of the other knobs, the kernel models' initial equivalence with plain
//! attention, and a few Adam steps lowering the loss.

mod common;
use common::*;
use pasa::backend::cpu::real::Real;
use pasa::backend::cpu::Cpu;
use pasa::backend::Memory;
use pasa::backend::{Activation, Gemm, KernelKind};
use pasa::models::{Batch, LossKind, Model, ModelConfig, Reading, Scores, PRESETS};
use pasa::optim::{AdamConfig, OptState};
use pasa::tape::Tape;

/// d 8, n 6, 2 blocks, 10 items (the tiny shape).
fn tiny(name: &str) -> ModelConfig {
    let mut c = ModelConfig::preset(name, 10).unwrap();
    c.n = 6;
    c.d = 8;
    c.d_ff = 8;
    c.rank = 3;
    c
}

/// Three windows: full, padded, and with a single item.
fn tiny_batch() -> Batch {
    Batch {
        inputs: vec![3, 1, 4, 1, 5, 9, 0, 0, 2, 6, 5, 3, 0, 0, 0, 0, 0, 7],
        targets: vec![1, 4, 1, 5, 9, 2, 0, 0, 6, 5, 3, 5, 0, 0, 0, 0, 0, 8],
        start: vec![0, 2, 5],
    }
}

fn model_gradcheck(what: &str, cfg: ModelConfig) {
    let model = Model::new(cfg).unwrap();
    // Perturb the initial values (kernels start at exactly 1, biases at 0) so every
    // parameter's gradient path is exercised.
    let mut init = model.params.init(3);
    let mut rng = pasa::rng::Rng::new(5);
    init.iter_mut().for_each(|x| *x += 0.1 * rng.normal());
    let batch = tiny_batch();
    let rep = gradcheck(&model.params, &init, 17, 1e-5, usize::MAX, &|tape, _| {
        model.loss(tape, &batch, 42)
    });
    assert_grad_ok(what, &model.params, &rep);
}

#[test]
fn every_named_model_gradcheck() {
    for name in PRESETS {
        model_gradcheck(name, tiny(name));
    }
}

#[test]
fn knob_combinations_gradcheck() {
    let mut c = tiny("pasa");
    c.reading = Reading::Mix;
    model_gradcheck("pasa mix", c);

    let mut c = tiny("pasa");
    c.heads = 2;
    c.kernel_per_head = true;
    c.u = KernelKind::Full;
    c.l = KernelKind::Toeplitz;
    c.act = Activation::Gelu;
    model_gradcheck("pasa per-head full U, toeplitz L, gelu", c);

    let mut c = tiny("sasrec");
    c.kernel_shared = true;
    c.u = KernelKind::Toeplitz;
    c.l = KernelKind::Toeplitz;
    c.reading = Reading::Mix;
    c.heads = 2;
    c.loss = LossKind::Bce;
    model_gradcheck("PE + shared kernels, mix, 2 heads, BCE", c);

    let mut c = tiny("fparec");
    c.u = KernelKind::Toeplitz;
    c.dropout = 0.0;
    model_gradcheck("fparec + U, no dropout", c);
}

/// Loss and flat parameter gradient of one training step (dropout on, seed 42) on `Cpu<T>`,
/// read in full precision: by `Model::loss` (the fused, chunked classifier loss) when
/// `fused`, else by the unfused path: the `[rows, items + 1]` logits as a tape matmul, the
/// mean cross-entropy and its gradient on the host in f64 (mean by 1/count rounded to f32, as
/// the engine takes it), back-propagated from the logits.
fn step_on<T: Real>(model: &Model, init: &[f32], batch: &Batch, fused: bool) -> (f64, Vec<f64>) {
    let b = Cpu::<T>::new();
    let params = b.adopt(init.iter().map(|&x| T::from_f32(x)).collect());
    let mut grads = b.adopt(vec![T::ZERO; init.len()]);
    let mut tape = Tape::new(&b, &params, true);
    let host = |tape: &Tape<Cpu<T>>, t| {
        let v = tape.view(t);
        v.buf[v.off..v.off + v.len]
            .iter()
            .map(|x| x.to_f64())
            .collect::<Vec<f64>>()
    };
    let loss = if fused {
        let loss = model.loss(&mut tape, batch, 42);
        let value = host(&tape, loss)[0];
        tape.backward(loss, &mut grads);
        value
    } else {
        let (h, _) = model.forward(&mut tape, batch, true, 42);
        let s = model.params.find("item_emb").unwrap();
        let table = tape.param(s.off, &s.shape);
        let (vocab, d) = (s.shape[0], s.shape[1]);
        let rows = batch.targets.len();
        let logits = tape.matmul(h, table, Gemm::new(rows, vocab, d, false, true));
        let z = host(&tape, logits);
        // The engine's mean: 1/count rounded to f32 (the scale ops take), on every backend.
        let count = batch.targets.iter().filter(|&&t| t != 0).count();
        let inv = (1.0 / count as f32) as f64;
        let (mut loss, mut dz) = (0.0, vec![T::ZERO; rows * vocab]);
        for (r, &t) in batch.targets.iter().enumerate() {
            if t == 0 {
                continue;
            }
            let row = &z[r * vocab..(r + 1) * vocab];
            let m = row[1..].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row[1..].iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            loss += (lse - row[t as usize]) * inv;
            for c in 1..vocab {
                let onehot = if c == t as usize { 1.0 } else { 0.0 };
                dz[r * vocab + c] = T::from_f64(((row[c] - lse).exp() - onehot) * inv);
            }
        }
        tape.backward_from(logits, b.adopt(dz), &mut grads);
        loss
    };
    drop(tape);
    (loss, grads.iter().map(|x| x.to_f64()).collect())
}

/// The fused, chunked classifier loss against the unfused path (see [`step_on`]): the loss
/// and every parameter tensor's gradient of one training step, at chunks of 1 row, of a
/// size that does not divide the rows with a target, of all of them and the default, on a
/// batch with padded rows. Bounds: f64 |Δloss| ≤ 1e-12·|loss| and per tensor
/// max|Δg| ≤ 1e-10·max(max|g|, 1e-3·max over the model); f32 the same measures within 1e-5
/// (loss) and 1e-4 (gradients: the parity bound of sums).
#[test]
fn fused_classifier_loss_equals_the_unfused_path() {
    fn compare<T: Real>(what: &str, model: &Model, init: &[f32], batch: &Batch, tol: (f64, f64)) {
        let (lf, gf) = step_on::<T>(model, init, batch, true);
        let (lu, gu) = step_on::<T>(model, init, batch, false);
        assert!(
            (lf - lu).abs() <= tol.0 * lu.abs(),
            "{what}: loss {lf} (fused) vs {lu} (unfused)"
        );
        let global = gu.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for s in &model.params.specs {
            let (a, r) = (&gf[s.off..s.off + s.len()], &gu[s.off..s.off + s.len()]);
            let max = r.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let err = a
                .iter()
                .zip(r)
                .fold(0.0f64, |e, (a, r)| e.max((a - r).abs()));
            let rel = err / max.max(1e-3 * global);
            assert!(
                rel <= tol.1,
                "{what}: gradient of {} differs by {rel:.3e} of its max {max:.3e}",
                s.name
            );
        }
    }
    let batch = tiny_batch(); // 11 rows with a target of 18
    for name in ["sasrec", "pasa"] {
        let mut c = tiny(name);
        for chunk in [Some(1), Some(4), Some(11), None] {
            c.ce_chunk = chunk;
            let model = Model::new(c.clone()).unwrap();
            let init = model.params.init(3);
            let what = format!("{name} chunk {chunk:?}");
            compare::<f64>(
                &format!("{what} f64"),
                &model,
                &init,
                &batch,
                (1e-12, 1e-10),
            );
            compare::<f32>(&format!("{what} f32"), &model, &init, &batch, (1e-5, 1e-4));
        }
    }
}

/// A kernel model at its DESIGN initialisation (U ≡ 1, L ≡ 1 or L = I) computes exactly what
/// the same model without kernels computes.
#[test]
fn kernel_models_start_as_plain_attention() {
    let b = Cpu::<f32>::new();
    let batch = tiny_batch();
    for (u, l, reading) in [
        (KernelKind::Toeplitz, KernelKind::Full, Reading::Weight),
        (KernelKind::Full, KernelKind::Toeplitz, Reading::Weight),
        (KernelKind::Toeplitz, KernelKind::Full, Reading::Mix),
        (KernelKind::None, KernelKind::Toeplitz, Reading::Mix),
    ] {
        let mut kc = tiny("pasa");
        (kc.u, kc.l, kc.reading) = (u, l, reading);
        let mut pc = kc.clone();
        (pc.u, pc.l) = (KernelKind::None, KernelKind::None);
        let (km, pm) = (Model::new(kc).unwrap(), Model::new(pc).unwrap());
        // Same values for the shared parameters, found by name.
        let kinit = km.params.init(9);
        let mut pinit = vec![0.0; pm.params.len];
        for s in &pm.params.specs {
            let ks = km.params.find(&s.name).unwrap();
            pinit[s.off..s.off + s.len()].copy_from_slice(&kinit[ks.off..ks.off + ks.len()]);
        }
        let run = |m: &Model, init: &Vec<f32>| {
            let init = b.upload(init);
            let mut t = Tape::new(&b, &init, false);
            let scores = m.score_last(&mut t, &batch);
            t.to_host(scores)
        };
        let (ks, ps) = (run(&km, &kinit), run(&pm, &pinit));
        let err = ks
            .iter()
            .zip(&ps)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err <= 1e-5,
            "{u:?}/{l:?}/{reading:?}: kernel model differs from plain by {err}"
        );
    }
}

#[test]
fn adam_steps_lower_the_loss() {
    let b = Cpu::<f32>::new();
    for name in PRESETS {
        let mut c = tiny(name);
        c.dropout = 0.0;
        let model = Model::new(c).unwrap();
        let mut st = OptState::new(&b, &model.params.init(1));
        let cfg = AdamConfig {
            lr: 1e-2,
            ..Default::default()
        };
        let batch = tiny_batch();
        let mut losses = vec![];
        for _ in 0..20 {
            st.zero_grad(&b);
            let mut tape = Tape::new(&b, &st.params, true);
            let loss = model.loss(&mut tape, &batch, 0);
            losses.push(tape.to_host(loss)[0]);
            tape.backward(loss, &mut st.grads);
            drop(tape);
            st.step(&b, &cfg);
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(
            last < 0.7 * first,
            "{name}: loss {first} → {last} after 20 steps: {losses:?}"
        );
    }
}

#[test]
fn padded_rows_give_finite_scores_and_zero_hidden() {
    let b = Cpu::<f32>::new();
    for name in PRESETS {
        let model = Model::new(tiny(name)).unwrap();
        let init = model.params.init(2);
        let init = b.upload(&init);
        let mut t = Tape::new(&b, &init, false);
        let batch = Batch {
            inputs: vec![0; 6],
            targets: vec![0; 6],
            start: vec![6],
        };
        let scores = model.score_last(&mut t, &batch);
        let scores = t.to_host(scores);
        assert!(
            scores.iter().all(|x| x.is_finite()),
            "{name}: non-finite score"
        );
    }
}

#[test]
fn bad_configurations_are_rejected_with_the_flag_named() {
    let mut c = tiny("sasrec");
    c.heads = 3;
    let err = Model::new(c).err().unwrap().to_string();
    assert!(err.contains("--heads"), "{err}");
    let err = ModelConfig::preset("bert", 10).unwrap_err().to_string();
    assert!(err.contains("--model") && err.contains("sasrec"), "{err}");
    let mut c = tiny("sasrec");
    c.dropout = 1.0;
    assert!(Model::new(c)
        .err()
        .unwrap()
        .to_string()
        .contains("--dropout"));
    let _ = Scores::Content;
}
