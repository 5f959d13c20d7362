//! The training loop: batches of windows, Adam, validation with early stopping, each epoch
//! committed to the run directory in one atomic step (see [`crate::run`]), and `--resume` from
//! the last committed epoch.
//!
//! Reproducible to the bit on the CPU: the epoch's shuffle and every dropout mask derive from
//! the seed, the epoch and the step, and every reduction has a fixed order, so a resumed run
//! ends at the same parameters and the same `metrics.jsonl` as one that never stopped.

use crate::backend::{Backend, DeviceBuf, View};
use crate::checkpoint::{self, meta_field, NamedTensor};
use crate::config::TrainConfig;
use crate::data::split::{window, Split};
use crate::data::Sequences;
use crate::error::{Error, Result};
use crate::eval::Metrics;
use crate::models::{Batch, Model};
use crate::optim::OptState;
use crate::progress::Progress;
use crate::rng::{self, Rng};
use crate::run::RunDir;
use crate::score::{evaluate, Holdout};
use crate::tape::{Range, Tape};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// Tags separating the seed streams of shuffles, dropout and evaluation.
const SHUFFLE_TAG: u64 = 1 << 40;
const EVAL_TAG: u64 = 2 << 40;

/// The seed of evaluation draws (the sampled protocol's negatives): the same for every
/// evaluation of a run, so its numbers are comparable across epochs and with `pasa eval`.
pub fn eval_seed(seed: u64) -> u64 {
    rng::derive(seed, EVAL_TAG)
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub best_epoch: usize,
    pub test: Metrics,
    /// Epochs done in all, counting those before a resume.
    pub epochs_done: usize,
    /// Wall time of each epoch's training steps in this invocation, in seconds.
    pub epoch_secs: Vec<f64>,
    pub stopped_early: bool,
}

/// Early-stopping state, saved with the last checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub ndcg10: f64,
    pub epoch: usize,
    /// Evaluations since the best one.
    pub bad_evals: usize,
    /// The best epoch's validation metrics (None before the first evaluation).
    pub valid: Option<Value>,
    /// The save id of `best.safetensors` (None before the first evaluation).
    pub save_id: Option<String>,
}

impl Best {
    /// Whether early stopping has ended the run under `patience` (0: never).
    pub fn stops(&self, patience: usize) -> bool {
        patience > 0 && self.bad_evals >= patience
    }
}

/// The state of a run after its last committed epoch, read from `last.safetensors` on the
/// host: everything `--resume` needs.
pub struct Resume {
    /// The run's configuration, as the checkpoint recorded it.
    pub cfg: TrainConfig,
    pub epoch: usize,
    pub step: u32,
    pub best: Best,
    pub params: Vec<f32>,
    pub adam_m: Vec<f32>,
    pub adam_v: Vec<f32>,
}

impl Resume {
    /// Reads the last checkpoint of `run`; None when the run was stopped before its first
    /// epoch was committed (it then resumes from its first epoch).
    pub fn read(run: &RunDir) -> Result<Option<Resume>> {
        let path = run.last();
        if !path.exists() {
            return Ok(None);
        }
        let (tensors, meta) = checkpoint::load(&path)?;
        let cfg: TrainConfig = meta_field(&path, &meta, "config")?;
        let model = Model::new(cfg.model.clone()).map_err(|e| Error::in_file(&path, e))?;
        let rng: RngState = meta_field(&path, &meta, "rng")?;
        if rng.seed != cfg.seed {
            return Err(Error::in_file(
                &path,
                "its RNG state does not match its configuration's seed",
            ));
        }
        Ok(Some(Resume {
            epoch: meta_field(&path, &meta, "epoch")?,
            step: meta_field(&path, &meta, "step")?,
            best: meta_field(&path, &meta, "best")?,
            params: unflatten(&model, &tensors, "", &path)?,
            adam_m: unflatten(&model, &tensors, "adam.m.", &path)?,
            adam_v: unflatten(&model, &tensors, "adam.v.", &path)?,
            cfg,
        }))
    }

    /// Whether nothing is left to train under `cfg` (the run's own, with the caller's
    /// `--epochs` and `--patience`).
    pub fn trained_out(&self, cfg: &TrainConfig) -> bool {
        self.epoch >= cfg.epochs || self.best.stops(cfg.patience)
    }
}

/// The RNG state of a run: every random draw derives from the seed and these counters.
#[derive(Debug, Serialize, Deserialize)]
struct RngState {
    seed: u64,
    /// Shuffles derive from (seed, epoch): the next epoch is `epoch + 1`.
    epoch: usize,
    /// Dropout and negative sampling derive from (seed, step): the next step is `step + 1`.
    step: u32,
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

fn save_ckpt(path: &Path, tensors: &[(String, &[usize], &[f32])], meta: &Value) -> Result<String> {
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), *s, *d))
        .collect();
    checkpoint::save(path, &refs, meta)
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

/// Train `cfg` on `split`, writing into `run`: from scratch (`resume` None; `run` must not hold
/// another run, which the caller checks) or after the last committed epoch of `run`. The
/// caller has validated the configuration against the data (`check_window`, the item count).
pub fn train<B: Backend>(
    b: &B,
    cfg: &TrainConfig,
    split: &Split,
    run: &RunDir,
    resume: Option<Resume>,
) -> Result<Outcome> {
    cfg.check()?;
    let model = Model::new(cfg.model.clone())?;
    let protocol = cfg.protocol;
    let users = train_users(split);
    if users.is_empty() {
        return Err(Error::msg(
            "no user has two training items: nothing to train on",
        ));
    }
    std::fs::create_dir_all(&run.0).map_err(|e| Error::io(&run.0, e))?;
    let done = resume.as_ref().map_or(0, |r| r.epoch);
    run.recover(
        done,
        resume.as_ref().and_then(|r| r.best.save_id.as_deref()),
    )?;
    // The configuration file follows the run's schedule (`--resume --epochs` changes it).
    checkpoint::write_atomic(&run.config(), cfg.to_toml().as_bytes())?;
    let (mut st, mut best) = match resume {
        Some(r) => {
            let mut st = OptState::new(b, &r.params);
            st.m = b.upload(&r.adam_m);
            st.v = b.upload(&r.adam_v);
            st.step = r.step;
            eprintln!(
                "resuming {} after epoch {} (step {})",
                run.0.display(),
                r.epoch,
                r.step
            );
            (st, r.best)
        }
        None => (
            OptState::new(b, &model.params.init(cfg.seed)),
            Best::default(),
        ),
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
    let mut epochs_done = done;
    let mut stopped_early = best.stops(cfg.patience);
    let first_epoch = done + 1;
    for epoch in first_epoch..=cfg.epochs {
        if stopped_early {
            break;
        }
        let mut order = users.clone();
        Rng::new(rng::derive(cfg.seed, SHUFFLE_TAG + epoch as u64)).shuffle(&mut order);
        let batches: Vec<&[usize]> = order.chunks(cfg.batch).collect();
        let mut prog = Progress::new(format!("epoch {epoch}/{}", cfg.epochs), batches.len());
        let t0 = Instant::now();
        let mut losses = LossMeter::new(b, st.step as usize);
        let last = batches.len();
        for (k, chunk) in batches.into_iter().enumerate() {
            let batch = make_batch(split, chunk, cfg.model.n);
            let tokens = batch.targets.iter().filter(|&&t| t != 0).count();
            let step_range = Range::open(b, "step");
            // A batch shape's steps may run as a captured graph (not with clipping: its norm
            // is read back on the host).
            let key = cfg.optim.clip.is_none().then_some(chunk.len() as u64);
            b.run_step(key, &mut || {
                st.zero_grad(b);
                let mut tape = Tape::new(b, &st.params, true);
                let seed = rng::derive(cfg.seed, st.step as u64 + 1);
                let loss = model.loss(&mut tape, &batch, seed);
                losses.add(b, tape.view(loss));
                tape.backward(loss, &mut st.grads);
                drop(tape);
                st.step(b, &cfg.optim);
            });
            drop(step_range);
            prog.step(tokens);
            if prog.due() || k + 1 == last {
                let mean = losses.read(b, st.step as usize).map_err(|e| {
                    Error::msg(format!("epoch {epoch}, {e}; lower --lr or set --clip"))
                })?;
                prog.report_loss(mean);
            }
        }
        prog.finish();
        let train_secs = t0.elapsed().as_secs_f64();
        // Training tokens per second, before the evaluation's time is on the clock.
        let tokens_per_sec = prog.tokens_per_sec();
        epoch_secs.push(train_secs);

        let mut line = json!({
            "epoch": epoch,
            "step": st.step,
            "train_loss": prog.mean_loss(),
        });
        let t_eval = Instant::now();
        let mut new_best = false;
        if epoch % cfg.eval_every == 0 || epoch == cfg.epochs {
            let m = evaluate(
                b,
                &model,
                &st.params,
                split,
                Holdout::Valid,
                &[protocol],
                cfg.eval_batch,
                eval_seed(cfg.seed),
            )
            .remove(0);
            let ndcg = m.get("ndcg", 10).unwrap_or(0.0);
            line["valid"] = m.to_json();
            if best.valid.is_none() || ndcg > best.ndcg10 {
                let host = b.download(st.params.view());
                let meta = json!({"kind": "best", "config": cfg, "epoch": epoch, "step": st.step, "valid": m.to_json()});
                let id = save_ckpt(&run.best_next(), &named(&model, &host, ""), &meta)?;
                best = Best {
                    ndcg10: ndcg,
                    epoch,
                    bad_evals: 0,
                    valid: Some(m.to_json()),
                    save_id: Some(id),
                };
                new_best = true;
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
        }
        let times = json!({
            "epoch": epoch,
            "train_secs": train_secs,
            "eval_secs": t_eval.elapsed().as_secs_f64(),
            "tokens_per_sec": tokens_per_sec,
            "device": b.name(),
        });
        run.commit_epoch(epoch, &line, &times, new_best, || {
            save_last(b, &model, &st, cfg, epoch, &best, run)
        })?;
        epochs_done = epoch;
        stopped_early = best.stops(cfg.patience);
        if stopped_early {
            eprintln!(
                "early stop: no better validation NDCG@10 in {} evaluations",
                cfg.patience
            );
        }
    }
    if best.save_id.is_none() {
        return Err(Error::msg(
            "no epoch was evaluated, so there is no best checkpoint to test",
        ));
    }

    // Test at the best validation epoch.
    let (tensors, _) = checkpoint::load(&run.best())?;
    let best_params = b.upload(&unflatten(&model, &tensors, "", &run.best())?);
    let test = evaluate(
        b,
        &model,
        &best_params,
        split,
        Holdout::Test,
        &[protocol],
        cfg.eval_batch,
        eval_seed(cfg.seed),
    )
    .remove(0);
    run.commit_test(&json!({"epoch": best.epoch, "test": test.to_json(), "valid": best.valid}))?;
    Ok(Outcome {
        best_epoch: best.epoch,
        test,
        epochs_done,
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
    let rng = RngState {
        seed: cfg.seed,
        epoch,
        step: st.step,
    };
    let meta = json!({
        "kind": "last",
        "config": cfg,
        "epoch": epoch,
        "step": st.step,
        "best": best,
        "rng": rng,
    });
    save_ckpt(&run.last(), &tensors, &meta).map(drop)
}
