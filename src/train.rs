//! The training loop: batches of windows, Adam, validation with early stopping, the best and
//! the last checkpoint written atomically, and `--resume` from the last one.
//!
//! Reproducible on the CPU: the epoch's shuffle and every dropout mask derive from the seed,
//! the epoch and the step, so a resumed run ends at the same parameters as one that never
//! stopped.

use crate::backend::{Backend, DeviceBuf, View};
use crate::checkpoint::{self, NamedTensor};
use crate::config::TrainConfig;
use crate::data::split::{window, Split};
use crate::data::Sequences;
use crate::error::{Error, Result};
use crate::eval::{Metrics, Protocol};
use crate::models::{Batch, Model};
use crate::optim::OptState;
use crate::progress::Progress;
use crate::rng::{self, Rng};
use crate::score::{evaluate, Holdout};
use crate::tape::Tape;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Tags separating the seed streams of shuffles, dropout and evaluation.
const SHUFFLE_TAG: u64 = 1 << 40;
const EVAL_TAG: u64 = 2 << 40;

/// The seed of evaluation draws (the sampled protocol's negatives): the same for every
/// evaluation of a run, so its numbers are comparable across epochs and with `pasa eval`.
pub fn eval_seed(seed: u64) -> u64 {
    rng::derive(seed, EVAL_TAG)
}

/// The files of a run directory.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    pub fn best(&self) -> PathBuf {
        self.0.join("best.safetensors")
    }
    pub fn last(&self) -> PathBuf {
        self.0.join("last.safetensors")
    }
    pub fn test(&self) -> PathBuf {
        self.0.join("test.json")
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub best_epoch: usize,
    pub test: Metrics,
    pub epochs_run: usize,
    /// Wall time of each epoch's training steps, in seconds.
    pub epoch_secs: Vec<f64>,
    pub stopped_early: bool,
}

/// Users with at least one (input, target) pair in their training prefix.
fn train_users(split: &Split) -> Vec<usize> {
    let seqs = split.sequences();
    (0..seqs.num_users())
        .filter(|&u| split.train(u).len() >= 2)
        .collect()
}

/// The batch of training windows of `users`.
fn make_batch(split: &Split, users: &[usize], n: usize) -> Batch {
    let mut inputs = vec![0u32; users.len() * n];
    let mut targets = vec![0u32; users.len() * n];
    let mut start = vec![0u32; users.len()];
    for (row, &u) in users.iter().enumerate() {
        let r = row * n..(row + 1) * n;
        let s = window(split.train(u), n, &mut inputs[r.clone()], &mut targets[r])
            .expect("window length checked before training");
        start[row] = s as u32;
    }
    Batch {
        inputs,
        targets,
        start,
    }
}

/// Refuse a window longer than every sequence: it can only be a mistake.
pub fn check_window(n: usize, seqs: &Sequences) -> Result<()> {
    let longest = seqs.longest();
    if n > longest {
        return Err(Error::arg(
            "--n",
            format!(
                "window of {n} is longer than every sequence (the longest has {longest} items)"
            ),
        ));
    }
    Ok(())
}

/// Parameter tensors by name, as saved in checkpoints.
fn named<'a>(
    model: &'a Model,
    flat: &'a [f32],
    prefix: &str,
) -> Vec<(String, &'a [usize], &'a [f32])> {
    model
        .params
        .specs
        .iter()
        .map(|s| {
            (
                format!("{prefix}{}", s.name),
                &s.shape[..],
                &flat[s.off..s.off + s.len()],
            )
        })
        .collect()
}

/// Copy the tensors `prefix + name` of a checkpoint into a flat buffer laid out for `model`,
/// checking every shape.
pub fn unflatten(
    model: &Model,
    tensors: &[NamedTensor],
    prefix: &str,
    file: &Path,
) -> Result<Vec<f32>> {
    let mut flat = vec![0.0f32; model.params.len];
    for s in &model.params.specs {
        let name = format!("{prefix}{}", s.name);
        let t = tensors.iter().find(|t| t.name == name).ok_or_else(|| {
            Error::in_file(
                file,
                format!("has no tensor '{name}' that the configuration needs"),
            )
        })?;
        if t.shape != s.shape {
            return Err(Error::in_file(
                file,
                format!(
                    "tensor '{name}' has shape {:?} but the configuration wants {:?}",
                    t.shape, s.shape
                ),
            ));
        }
        flat[s.off..s.off + s.len()].copy_from_slice(&t.data);
    }
    Ok(flat)
}

fn save_ckpt(path: &Path, tensors: &[(String, &[usize], &[f32])], meta: &Value) -> Result<()> {
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), *s, *d))
        .collect();
    checkpoint::save(path, &refs, meta)
}

fn append_line(path: &Path, v: &Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{v}").map_err(|e| Error::io(path, e))
}

/// The training loss of an epoch, summed on the device: reading it back costs a host sync, so
/// the loop reads it only when the progress line refreshes and at the end of the epoch.
struct LossMeter<B: Backend> {
    sum: B::Buf,
    /// Steps before this epoch, and the step of the last finite reading.
    first: usize,
    checked: usize,
}

impl<B: Backend> LossMeter<B> {
    fn new(b: &B, step: usize) -> Self {
        LossMeter {
            sum: b.zeros(1),
            first: step,
            checked: step,
        }
    }

    fn add(&mut self, b: &B, loss: View<B::Buf>) {
        b.axpy(1.0, loss, self.sum.view_mut());
    }

    /// The mean loss of the epoch's steps up to `step`, or which steps made it non-finite.
    fn read(&mut self, b: &B, step: usize) -> std::result::Result<f64, String> {
        let sum = b.download(self.sum.view())[0];
        if !sum.is_finite() {
            return Err(format!(
                "the loss became {sum} at a step between {} and {step}",
                self.checked + 1
            ));
        }
        self.checked = step;
        Ok(sum as f64 / (step - self.first).max(1) as f64)
    }
}

/// Early-stopping state, saved with the last checkpoint.
#[derive(Debug, Clone, Default)]
struct Best {
    ndcg10: f64,
    epoch: usize,
    bad_evals: usize,
    valid: Option<Value>,
}

/// Train `cfg` on `seqs`, writing into `run`. With `resume`, continue from `run`'s last
/// checkpoint (the configuration must be the run's own, epochs may differ).
pub fn train<B: Backend>(
    b: &B,
    cfg: &TrainConfig,
    seqs: &Sequences,
    run: &RunDir,
    resume: bool,
) -> Result<Outcome> {
    cfg.check()?;
    let split = Split::new(seqs)?;
    check_window(cfg.model.n, seqs)?;
    let model = Model::new(cfg.model.clone())?;
    let protocol: Protocol = cfg.protocol.parse()?;
    std::fs::create_dir_all(&run.0).map_err(|e| Error::io(&run.0, e))?;

    let users = train_users(&split);
    if users.is_empty() {
        return Err(Error::msg(
            "no user has two training items: nothing to train on",
        ));
    }
    let (mut st, mut best, first_epoch) = if resume {
        resume_state(b, &model, run)?
    } else {
        checkpoint::write_atomic(&run.config(), cfg.to_toml().as_bytes())?;
        let _ = std::fs::remove_file(run.metrics());
        (
            OptState::new(b, &model.params.init(cfg.seed)),
            Best::default(),
            1,
        )
    };
    eprintln!(
        "model {}: {} parameters; {} training users, {} evaluated; {} batches of {} per epoch; device {}",
        cfg.model.name,
        model.params.len,
        users.len(),
        split.eval_users().len(),
        users.len().div_ceil(cfg.batch),
        cfg.batch,
        b.name()
    );

    let mut epoch_secs = vec![];
    let mut stopped_early = false;
    let mut last_epoch = first_epoch.saturating_sub(1);
    for epoch in first_epoch..=cfg.epochs {
        let mut order = users.clone();
        Rng::new(rng::derive(cfg.seed, SHUFFLE_TAG + epoch as u64)).shuffle(&mut order);
        let batches: Vec<&[usize]> = order.chunks(cfg.batch).collect();
        let mut prog = Progress::new(format!("epoch {epoch}/{}", cfg.epochs), batches.len());
        let t0 = Instant::now();
        let mut losses = LossMeter::new(b, st.step as usize);
        let last = batches.len();
        for (k, chunk) in batches.into_iter().enumerate() {
            let batch = make_batch(&split, chunk, cfg.model.n);
            let tokens = batch.targets.iter().filter(|&&t| t != 0).count();
            st.zero_grad(b);
            let mut tape = Tape::new(b, &st.params, true);
            let loss = model.loss(&mut tape, &batch, rng::derive(cfg.seed, st.step as u64 + 1));
            losses.add(b, tape.view(loss));
            tape.backward(loss, &mut st.grads);
            drop(tape);
            st.step(b, &cfg.optim);
            prog.step(tokens);
            if prog.due() || k + 1 == last {
                let mean = losses.read(b, st.step as usize).map_err(|e| {
                    Error::msg(format!("epoch {epoch}, {e}; lower --lr or set --clip"))
                })?;
                prog.report_loss(mean);
            }
        }
        prog.finish();
        epoch_secs.push(t0.elapsed().as_secs_f64());
        last_epoch = epoch;

        let mut line = json!({
            "epoch": epoch,
            "step": st.step,
            "train_loss": prog.mean_loss(),
            "tokens_per_sec": prog.tokens_per_sec(),
            "epoch_secs": t0.elapsed().as_secs_f64(),
        });
        if epoch % cfg.eval_every == 0 || epoch == cfg.epochs {
            let seed = eval_seed(cfg.seed);
            let m = evaluate(
                b,
                &model,
                &st.params,
                &split,
                Holdout::Valid,
                &[protocol],
                cfg.eval_batch,
                seed,
            )
            .remove(0);
            let ndcg = m.get("ndcg", 10).unwrap_or(0.0);
            line["valid"] = m.to_json();
            if best.valid.is_none() || ndcg > best.ndcg10 {
                best = Best {
                    ndcg10: ndcg,
                    epoch,
                    bad_evals: 0,
                    valid: Some(m.to_json()),
                };
                let host = b.download(st.params.view());
                let meta = json!({"kind": "best", "config": cfg, "epoch": epoch, "step": st.step, "valid": m.to_json()});
                save_ckpt(&run.best(), &named(&model, &host, ""), &meta)?;
            } else {
                best.bad_evals += 1;
            }
            eprintln!(
                "epoch {epoch}: valid NDCG@10 {ndcg:.4} HR@10 {:.4} ({}); best NDCG@10 {:.4} at epoch {}",
                m.get("hr", 10).unwrap_or(0.0),
                protocol.name(),
                best.ndcg10,
                best.epoch
            );
            if cfg.patience > 0 && best.bad_evals >= cfg.patience {
                stopped_early = true;
            }
        }
        append_line(&run.metrics(), &line)?;
        save_last(b, &model, &st, cfg, epoch, &best, run)?;
        if stopped_early {
            eprintln!(
                "early stop: no better validation NDCG@10 in {} evaluations",
                cfg.patience
            );
            break;
        }
    }

    // Test at the best validation epoch.
    let (tensors, _) = checkpoint::load(&run.best())?;
    let best_params = b.upload(&unflatten(&model, &tensors, "", &run.best())?);
    let seed = eval_seed(cfg.seed);
    let test = evaluate(
        b,
        &model,
        &best_params,
        &split,
        Holdout::Test,
        &[protocol],
        cfg.eval_batch,
        seed,
    )
    .remove(0);
    let test_json = json!({"epoch": best.epoch, "test": test.to_json(), "valid": best.valid});
    append_line(&run.metrics(), &test_json)?;
    checkpoint::write_atomic(
        &run.test(),
        serde_json::to_string_pretty(&test_json)
            .expect("json")
            .as_bytes(),
    )?;
    Ok(Outcome {
        best_epoch: best.epoch,
        test,
        epochs_run: last_epoch,
        epoch_secs,
        stopped_early,
    })
}

fn save_last<B: Backend>(
    b: &B,
    model: &Model,
    st: &OptState<B>,
    cfg: &TrainConfig,
    epoch: usize,
    best: &Best,
    run: &RunDir,
) -> Result<()> {
    let (p, m, v) = (
        b.download(st.params.view()),
        b.download(st.m.view()),
        b.download(st.v.view()),
    );
    let mut tensors = named(model, &p, "");
    tensors.extend(named(model, &m, "adam.m."));
    tensors.extend(named(model, &v, "adam.v."));
    let meta = json!({
        "kind": "last",
        "config": cfg,
        "epoch": epoch,
        "step": st.step,
        "best": {"ndcg10": best.ndcg10, "epoch": best.epoch, "bad_evals": best.bad_evals, "valid": best.valid},
    });
    save_ckpt(&run.last(), &tensors, &meta)
}

fn resume_state<B: Backend>(
    b: &B,
    model: &Model,
    run: &RunDir,
) -> Result<(OptState<B>, Best, usize)> {
    let path = run.last();
    if !path.exists() {
        return Err(Error::in_file(
            &run.0,
            "has no last.safetensors to resume from",
        ));
    }
    let (tensors, meta) = checkpoint::load(&path)?;
    let bad = |what: &str| {
        Error::in_file(
            &checkpoint::sidecar_path(&path),
            format!("missing or invalid '{what}'"),
        )
    };
    let epoch = meta["epoch"].as_u64().ok_or_else(|| bad("epoch"))? as usize;
    let step = meta["step"].as_u64().ok_or_else(|| bad("step"))? as u32;
    let bj = &meta["best"];
    let best = Best {
        ndcg10: bj["ndcg10"].as_f64().ok_or_else(|| bad("best.ndcg10"))?,
        epoch: bj["epoch"].as_u64().ok_or_else(|| bad("best.epoch"))? as usize,
        bad_evals: bj["bad_evals"]
            .as_u64()
            .ok_or_else(|| bad("best.bad_evals"))? as usize,
        valid: (!bj["valid"].is_null()).then(|| bj["valid"].clone()),
    };
    let mut st = OptState::new(b, &unflatten(model, &tensors, "", &path)?);
    st.m = b.upload(&unflatten(model, &tensors, "adam.m.", &path)?);
    st.v = b.upload(&unflatten(model, &tensors, "adam.v.", &path)?);
    st.step = step;
    eprintln!(
        "resuming {} after epoch {epoch} (step {step})",
        run.0.display()
    );
    Ok((st, best, epoch + 1))
}
