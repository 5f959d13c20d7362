//! A run directory: its files, how a run commits an epoch, and how a killed run is put back
//! in order before it resumes.
//!
//! Files: `config.toml` (the configuration, for people; the checkpoints carry their own copy),
//! `metrics.jsonl` (one line per epoch, then one test line), `times.jsonl` (wall times, kept
//! apart so that `metrics.jsonl` is the same bit for bit in every run of one seed),
//! `last.safetensors` (parameters, Adam moments, early-stopping and RNG state: what `--resume`
//! continues from), `best.safetensors` (the best validation epoch's parameters) and `test.json`.
//!
//! The commit of epoch e ([`RunDir::commit_epoch`], called by the training loop):
//! 1. a better validation score saves the new best as `.best-next.safetensors`;
//! 2. the epoch's lines are appended to `metrics.jsonl` and `times.jsonl`;
//! 3. `last.safetensors` is replaced (atomically): **the commit point**; it records the save id
//!    of the best checkpoint that goes with it;
//! 4. `.best-next.safetensors` is renamed to `best.safetensors`.
//!
//! A kill at any instant leaves either epoch e − 1 committed (then step 1–2 leftovers are
//! undone) or epoch e committed (then step 4 is finished) by [`RunDir::recover`]: stray
//! temporary files are removed, the best checkpoint is matched to the last one's record, and
//! the two `.jsonl` files are cut back to the committed epoch.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::checkpoint::{self, is_temp, meta_field, write_atomic};
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::models::Model;

/// The files of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
    pub fn times(&self) -> PathBuf {
        self.0.join("times.jsonl")
    }
    pub fn best(&self) -> PathBuf {
        self.0.join("best.safetensors")
    }
    /// A best checkpoint saved but not yet committed (step 1 of the commit).
    pub fn best_next(&self) -> PathBuf {
        self.0.join(".best-next.safetensors")
    }
    pub fn last(&self) -> PathBuf {
        self.0.join("last.safetensors")
    }
    pub fn test(&self) -> PathBuf {
        self.0.join("test.json")
    }

    /// Whether the directory holds (the start of) a run: a new run must not write into it.
    pub fn holds_run(&self) -> bool {
        [self.config(), self.last(), self.best(), self.metrics()]
            .iter()
            .any(|p| p.exists())
    }

    /// Steps 2–4 of the commit of an epoch (module docs); step 1, the pending best, has been
    /// saved by the caller when `new_best` is true. `save_last` writes `last.safetensors`.
    pub fn commit_epoch(
        &self,
        epoch: usize,
        metrics: &Value,
        times: &Value,
        new_best: bool,
        save_last: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        failpoint("best-saved", epoch);
        append_line(&self.metrics(), metrics)?;
        failpoint("metrics-appended", epoch);
        append_line(&self.times(), times)?;
        failpoint("times-appended", epoch);
        save_last()?;
        failpoint("last-committed", epoch);
        if new_best {
            fs::rename(self.best_next(), self.best()).map_err(|e| Error::io(&self.best(), e))?;
            checkpoint::sync_dir(&self.0);
        }
        failpoint("best-renamed", epoch);
        Ok(())
    }

    /// Appends the test line to `metrics.jsonl` and writes `test.json`: the end of a run.
    pub fn commit_test(&self, test: &Value) -> Result<()> {
        append_line(&self.metrics(), test)?;
        failpoint("test-appended", 0);
        let text = serde_json::to_string_pretty(test).expect("JSON values print");
        write_atomic(&self.test(), text.as_bytes())
    }

    /// Puts a killed run back in order before it continues after epoch `epoch` (0: before the
    /// first checkpoint). `best_id` is the save id of the best checkpoint the last checkpoint
    /// records (None when no epoch was evaluated yet). Reports each repair on stderr.
    pub fn recover(&self, epoch: usize, best_id: Option<&str>) -> Result<()> {
        for name in self.temp_files()? {
            let p = self.0.join(&name);
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            eprintln!("removed {}, left by an interrupted save", p.display());
        }
        // A pending best is committed when the last checkpoint names it, else it is undone.
        let next = self.best_next();
        if next.exists() {
            let id = save_id_of(&next)?;
            if best_id.is_some() && id.as_deref() == best_id {
                fs::rename(&next, self.best()).map_err(|e| Error::io(&self.best(), e))?;
            } else {
                fs::remove_file(&next).map_err(|e| Error::io(&next, e))?;
            }
        }
        match best_id {
            None => remove_if_present(&self.best())?,
            Some(want) => {
                let got = save_id_of(&self.best())?;
                if got.as_deref() != Some(want) {
                    return Err(Error::in_file(
                        &self.best(),
                        format!(
                            "is not the best checkpoint that {} records (save id {}, found {}): \
                             the run directory was changed by hand; restore best.safetensors",
                            self.last().display(),
                            want,
                            got.as_deref().unwrap_or("none")
                        ),
                    ));
                }
            }
        }
        remove_if_present(&self.test())?;
        for file in [self.metrics(), self.times()] {
            cut_back(&file, epoch)?;
        }
        checkpoint::sync_dir(&self.0);
        Ok(())
    }

    /// Names of the temporary files of interrupted saves in the directory.
    fn temp_files(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.0).map_err(|e| Error::io(&self.0, e))?;
        let mut names = vec![];
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.0, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Which checkpoint of a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The best validation epoch (best.safetensors).
    Best,
    /// The last epoch trained (last.safetensors).
    Last,
}

/// A checkpoint with its configuration and the model it builds.
pub struct Loaded {
    /// The `.safetensors` file read.
    pub path: PathBuf,
    /// Its metadata (epoch, configuration, …).
    pub meta: Value,
    pub cfg: TrainConfig,
    pub model: Model,
    /// The parameters, laid out as `model.params`.
    pub params: Vec<f32>,
}

impl Loaded {
    /// Loads the checkpoint a command names: a run directory (its `which` checkpoint, the best
    /// by default) or a `.safetensors` file. Shapes are checked against its configuration.
    pub fn open(arg: &Path, which: Option<Which>) -> Result<Loaded> {
        let path = if arg.is_dir() {
            let run = RunDir(arg.to_path_buf());
            match which.unwrap_or(Which::Best) {
                Which::Best => run.best(),
                Which::Last => run.last(),
            }
        } else if which.is_some() {
            return Err(Error::arg(
                "--which",
                format!(
                    "picks a checkpoint of a run directory, but {} is not a directory",
                    arg.display()
                ),
            ));
        } else {
            arg.to_path_buf()
        };
        let (tensors, meta) = checkpoint::load(&path)?;
        let cfg: TrainConfig = meta_field(&path, &meta, "config")?;
        let model = Model::new(cfg.model.clone()).map_err(|e| Error::in_file(&path, e))?;
        let params = crate::train::unflatten(&model, &tensors, "", &path)?;
        Ok(Loaded {
            path,
            meta,
            cfg,
            model,
            params,
        })
    }
}

/// The points of a commit where [`failpoint`] can stop the process.
pub const FAILPOINTS: [&str; 6] = [
    "best-saved",
    "metrics-appended",
    "times-appended",
    "last-committed",
    "best-renamed",
    "test-appended",
];

/// A test hook: with `PASA_FAILPOINT=<point>:<epoch>` (epoch 0 for `test-appended`) the
/// process exits at once with status 137 (that of a `kill -9`), so the tests can stop a run
/// between any two steps of a commit. Nothing is buffered for the disk at these points (every
/// write above is closed and synced), so exiting is as abrupt as a kill. Costs one environment
/// lookup per commit step.
fn failpoint(point: &str, epoch: usize) {
    if let Ok(want) = std::env::var("PASA_FAILPOINT") {
        if want == format!("{point}:{epoch}") {
            eprintln!("PASA_FAILPOINT: stopping at {want}");
            std::process::exit(137);
        }
    }
}

/// The save id of a checkpoint (None when the file is absent).
fn save_id_of(path: &Path) -> Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    let (_, meta) = checkpoint::load(path)?;
    checkpoint::meta_field(path, &meta, checkpoint::SAVE_ID).map(Some)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Appends one JSON line to `path`, synced (the next step of a commit relies on it).
fn append_line(path: &Path, v: &Value) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{v}").map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}

/// Cuts a `.jsonl` file back to its epoch lines up to `epoch`: later epochs, test lines and a
/// half-written last line go. Rewritten atomically, and only when something goes.
fn cut_back(path: &Path, epoch: usize) -> Result<()> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let keep = |line: &str| {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        v.get("test").is_none() && v["epoch"].as_u64().is_some_and(|e| e as usize <= epoch)
    };
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && keep(l.trim_end()))
        .collect();
    if kept.len() != text.len() {
        write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scratch(tag: &str) -> RunDir {
        let d = std::env::temp_dir().join(format!("pasa-run-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        RunDir(d)
    }

    #[test]
    fn cut_back_keeps_committed_epochs_only() {
        let run = scratch("cut");
        let p = run.metrics();
        fs::write(
            &p,
            "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3}\n{\"epoch\":2,\"test\":{}}\n{\"epo",
        )
        .unwrap();
        cut_back(&p, 2).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "{\"epoch\":1}\n{\"epoch\":2}\n"
        );
        cut_back(&p, 0).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "");
        fs::remove_dir_all(&run.0).unwrap();
    }

    #[test]
    fn recover_finishes_or_undoes_a_pending_best() {
        let run = scratch("recover");
        let save = |p: &Path, epoch: usize| {
            checkpoint::save(p, &[("x", &[1], &[epoch as f32])], &json!({"epoch": epoch})).unwrap()
        };
        let committed = save(&run.best(), 1);
        // Killed after the pending best of epoch 2 was saved, before the commit: undone.
        save(&run.best_next(), 2);
        fs::write(run.0.join(".last.safetensors.tmp-1-0"), b"half").unwrap();
        run.recover(1, Some(&committed)).unwrap();
        assert!(!run.best_next().exists());
        assert_eq!(save_id_of(&run.best()).unwrap(), Some(committed));
        let names: Vec<_> = fs::read_dir(&run.0).unwrap().collect();
        assert_eq!(names.len(), 1, "only best.safetensors stays");
        // Killed after the commit named the pending best, before its rename: finished.
        let pending = save(&run.best_next(), 2);
        run.recover(2, Some(&pending)).unwrap();
        assert!(!run.best_next().exists());
        assert_eq!(save_id_of(&run.best()).unwrap(), Some(pending.clone()));
        // A best that the last checkpoint does not record is an error naming it.
        let e = run.recover(2, Some("0000")).unwrap_err().0;
        assert!(e.contains("best.safetensors") && e.contains("0000"), "{e}");
        // Before the first evaluation there is no best.
        run.recover(0, None).unwrap();
        assert!(!run.best().exists());
        fs::remove_dir_all(&run.0).unwrap();
    }
}
