//! A training run stopped at any instant and resumed ends exactly where an uninterrupted run
//! of the same seed ends: the same parameters, Adam moments and best checkpoint to the bit, and
//! byte for byte the same `metrics.jsonl`, `test.json` and `config.toml`.
//!
//! Two ways of stopping a real `pasa train` process:
//! - at every step of every epoch's commit, with the `PASA_FAILPOINT` hook (the process exits
//!   there as abruptly as a kill), so each window between two writes is hit for sure;
//! - with SIGKILL at pseudo-random instants spread over the whole run, resumed runs included,
//!   so the points nobody thought of are hit too.

use pasa::checkpoint;
use pasa::run::FAILPOINTS;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small pasa model (U and L kernels, dropout) on the synthetic data, validated every other
/// epoch (so some commits have no evaluation) with early stopping off.
const RUN: &[&str] = &[
    "--device",
    "cpu",
    "--model",
    "pasa",
    "--synthetic-users",
    "300",
    "--synthetic-items",
    "60",
    "--n",
    "16",
    "--d",
    "16",
    "--batch",
    "32",
    "--epochs",
    "5",
    "--eval-every",
    "2",
    "--patience",
    "0",
    "--seed",
    "11",
];
const EPOCHS: usize = 5;

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pasa"));
    // One thread count for every run: the reductions are fixed-order, but say it anyway.
    c.args(args).env("RAYON_NUM_THREADS", "2");
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn start(dir: &Path) -> Command {
    let mut c = command(&["train", "--out", dir.to_str().unwrap()]);
    c.args(RUN);
    c
}

fn resume(dir: &Path) -> Command {
    command(&[
        "train",
        "--resume",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
    ])
}

fn output(mut c: Command) -> Output {
    c.output().expect("pasa runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pasa-kill-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What a finished run leaves, in comparable form (save ids, which differ per save, removed).
#[derive(Debug, PartialEq)]
struct Finished {
    last: (Vec<(String, Vec<u32>)>, Value),
    best: (Vec<(String, Vec<u32>)>, Value),
    metrics: String,
    test: String,
    config: String,
    /// Names of every file in the run directory.
    files: Vec<String>,
}

fn checkpoint_bits(p: &Path) -> (Vec<(String, Vec<u32>)>, Value) {
    let (tensors, mut meta) = checkpoint::load(p).unwrap_or_else(|e| panic!("{e}"));
    strip_save_ids(&mut meta);
    let bits = tensors
        .into_iter()
        .map(|t| (t.name, t.data.iter().map(|x| x.to_bits()).collect()))
        .collect();
    (bits, meta)
}

fn strip_save_ids(v: &mut Value) {
    if let Value::Object(m) = v {
        m.remove("save_id");
        m.values_mut().for_each(strip_save_ids);
    }
}

fn finished(dir: &Path) -> Finished {
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    Finished {
        last: checkpoint_bits(&dir.join("last.safetensors")),
        best: checkpoint_bits(&dir.join("best.safetensors")),
        metrics: read("metrics.jsonl"),
        test: read("test.json"),
        config: read("config.toml").replace(dir.to_str().unwrap(), "RUN"),
        files,
    }
}

/// The uninterrupted run, and how long it took.
fn reference(root: &Path) -> (Finished, Duration) {
    let dir = root.join("reference");
    let t0 = Instant::now();
    let o = output(start(&dir));
    let took = t0.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    (finished(&dir), took)
}

/// Finishes a stopped run the way a user would: `--resume` when the run got as far as its
/// configuration file, else the same command again.
fn finish(dir: &Path) {
    let c = if dir.join("config.toml").exists() {
        resume(dir)
    } else {
        start(dir)
    };
    let o = output(c);
    assert!(o.status.success(), "{}: {}", dir.display(), stderr(&o));
}

/// Asserts that the stopped-and-finished run in `dir` equals the reference.
fn assert_same(dir: &Path, want: &Finished, how: &str) {
    let got = finished(dir);
    assert_eq!(got.files, want.files, "{how}: files");
    assert_eq!(got.metrics, want.metrics, "{how}: metrics.jsonl");
    assert_eq!(got.test, want.test, "{how}: test.json");
    assert_eq!(got.config, want.config, "{how}: config.toml");
    assert!(got.last == want.last, "{how}: last.safetensors differs");
    assert!(got.best == want.best, "{how}: best.safetensors differs");
}

#[test]
fn stopped_at_every_commit_step_resumes_to_the_same_run() {
    let root = scratch("points");
    let (want, _) = reference(&root);
    let mut cases = vec![];
    for point in FAILPOINTS {
        if point == "test-appended" {
            cases.push((point, 0));
        } else {
            cases.extend((1..=EPOCHS).map(|e| (point, e)));
        }
    }
    for (point, epoch) in cases {
        let how = format!("stopped at {point}:{epoch}");
        let dir = root.join(format!("{point}-{epoch}"));
        let mut c = start(&dir);
        c.env("PASA_FAILPOINT", format!("{point}:{epoch}"));
        let o = output(c);
        assert_eq!(o.status.code(), Some(137), "{how}: {}", stderr(&o));
        finish(&dir);
        assert_same(&dir, &want, &how);
        // Resuming a finished run changes nothing and says so.
        let o = output(resume(&dir));
        assert!(o.status.success(), "{how}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("is finished"));
        assert_same(&dir, &want, &format!("{how}, then resumed once more"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// A deterministic pseudo-random stream (splitmix64), so a failure can be replayed.
struct Draws(u64);

impl Draws {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

/// Runs `c` and SIGKILLs it after `after` unless it ends first; whether it was killed.
fn run_and_kill(mut c: Command, after: Duration) -> bool {
    let mut child: Child = c.spawn().expect("pasa starts");
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        if t0.elapsed() >= after {
            child.kill().expect("kill");
            child.wait().expect("wait");
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Runs killed at random instants (each killed once fresh and once resumed).
const RANDOM_RUNS: usize = 24;

#[test]
fn killed_at_random_instants_resumes_to_the_same_run() {
    let root = scratch("random");
    let (want, took) = reference(&root);
    let mut draws = Draws(2026);
    let mut kills = 0;
    for k in 0..RANDOM_RUNS {
        let dir = root.join(format!("run-{k}"));
        // First a kill of the fresh run, then one of its resumption, each at a uniform instant
        // over (a little more than) the whole run.
        let at = took.mul_f64(1.1 * draws.unit());
        kills += run_and_kill(start(&dir), at) as usize;
        if dir.join("config.toml").exists() {
            let at = took.mul_f64(1.1 * draws.unit());
            kills += run_and_kill(resume(&dir), at) as usize;
        }
        finish(&dir);
        assert_same(&dir, &want, &format!("run {k} (seed 2026)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("{kills} kills over {RANDOM_RUNS} runs of {took:?} each");
    assert!(
        kills >= RANDOM_RUNS / 2,
        "most draws should land inside a run: {kills} kills"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
