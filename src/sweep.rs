//! `pasa sweep GRID.toml`: a grid of configurations × datasets × seeds, each run a `pasa train`
//! run in its own directory `<root>/<dataset>/<name>/seed<k>`.
//!
//! The grid file:
//! ```toml
//! root = "runs/cpu-ml100k"        # relative to the working directory; --root overrides;
//!                                 # default runs/<grid file stem>
//! seeds = [0, 1, 2]               # every run's seeds, unless the run gives its own
//! [base]                          # settings of every run
//! d = 64
//! epochs = 200
//! [[dataset]]
//! name = "ml-100k"
//! data = "../../shared/datasets/ml-100k-u.data"   # relative to the grid file
//! format = "u-data"
//! n = 100
//! [[dataset]]
//! name = "synthetic"              # no data: the built-in synthetic dataset
//! [[run]]
//! name = "pasa-mix"
//! model = "pasa"
//! reading = "mix"
//! seeds = [0]
//! ```
//! A setting is a flag of `pasa train` without its dashes (`pos-emb` or `pos_emb`), with its
//! value as TOML (string, number or boolean), or `config`, a TOML configuration file as
//! `pasa train --config` takes it (relative to the grid file). The seed comes from `seeds`,
//! the run directory and the device from the sweep. A run's flags are the base's, then the
//! dataset's, then the run's (a dataset and a run may not both set one flag: no silent
//! precedence), then `--seed`. Each run is therefore a `pasa train` command line, parsed by the
//! same code and run in process by the same function ([`crate::cli::train_execute`]); the
//! command is written to `command.txt` in the run directory before the run starts.
//!
//! Every run of the grid is checked (its flags parsed and its configuration built, its data
//! file present) before the first one starts. Then, in order (per dataset, seed by seed, the
//! runs in grid order): a run directory with `test.json` is finished and skipped; one that
//! holds a run without it was interrupted and is resumed (`pasa train --resume`, so a killed
//! sweep continues where it stopped, to the same result); any other is started. A directory
//! whose `command.txt` is not the grid's command for it is a failure (the grid changed: move
//! the directory away). After a run ends the sweep scores its best checkpoint under the
//! exclude-seen protocol (`test-exclude-seen.json`, what `pasa eval RUN --protocol
//! exclude-seen --json` gives) and draws its curves (`curves.png`). A failing run is reported
//! and the sweep goes on; failures are listed at the end (exit status 2).

use crate::backend::Precision;
use crate::cli::{eval_score, train_execute, train_parse_args};
use crate::config::flags::FLAGS;
use crate::config::TrainConfig;
use crate::device::{Device, DeviceArg};
use crate::error::{Error, Result};
use crate::eval::Protocol;
use crate::report::RunRecord;
use crate::run::{Loaded, RunDir};
use crate::score::Holdout;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The file of a run directory that holds the command that made the run.
pub const COMMAND: &str = "command.txt";
/// The test metrics of the best checkpoint under the exclude-seen protocol.
pub const EXCLUDE_SEEN: &str = "test-exclude-seen.json";
/// The per-run picture: validation NDCG@10 and training loss per epoch.
pub const CURVES: &str = "curves.png";

static CATCHING: AtomicBool = AtomicBool::new(false);

/// Whether a panic is caught and the process goes on (a sweep's run failed): the binary's
/// panic hook then reports a CUDA failure without ending the process.
pub fn catching_panics() -> bool {
    CATCHING.load(Ordering::Relaxed)
}

/// One layer of settings: (flag without dashes, value as text) and an optional config file.
#[derive(Debug, Clone, Default, PartialEq)]
struct Layer {
    flags: Vec<(String, String)>,
    config: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
struct Named {
    name: String,
    layer: Layer,
    seeds: Option<Vec<u64>>,
}

/// A grid file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub file: PathBuf,
    pub root: PathBuf,
    seeds: Vec<u64>,
    base: Layer,
    datasets: Vec<Named>,
    runs: Vec<Named>,
}

/// One run of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub dataset: String,
    pub name: String,
    pub seed: u64,
    pub dir: PathBuf,
    /// The `pasa train` arguments (without `--out` and `--device`).
    pub args: Vec<String>,
}

impl Planned {
    /// The arguments of the `pasa train` run on `device`.
    pub fn argv(&self, device: &str) -> Vec<String> {
        let mut v = self.args.clone();
        v.extend([
            "--out".into(),
            self.dir.display().to_string(),
            "--device".into(),
            device.into(),
        ]);
        v
    }

    /// The command line, as `command.txt` records it.
    pub fn command(&self, device: &str) -> String {
        command_line(&self.argv(device))
    }
}

/// `pasa train ARGS` with each argument quoted for a POSIX shell where it needs it.
pub fn command_line(args: &[String]) -> String {
    let mut s = "pasa train".to_string();
    for a in args {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

fn shell_quote(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c);
    if !a.is_empty() && a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// `p` with `.` and `name/..` taken out, without touching the file system.
pub fn normalise(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = vec![];
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

/// Names of datasets and runs become directory names: letters, digits, `.`, `_`, `-`, not
/// starting with a dot.
fn check_name(file: &Path, what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::in_file(
            file,
            format!(
                "{what}: name {name:?} must be letters, digits, '.', '_' or '-' (it names a \
                 directory), not starting with '.'"
            ),
        ))
    }
}

impl Grid {
    /// Reads and checks a grid file; every error names the file, the entry and the key.
    pub fn read(file: &Path) -> Result<Grid> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        let top: toml::Table = toml::from_str(&text).map_err(|e| {
            let msg = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            Error::in_file(file, format!("not valid TOML: {msg}"))
        })?;
        let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let err = |m: String| Error::in_file(file, m);
        let mut grid = Grid {
            file: file.to_path_buf(),
            root: PathBuf::from("runs").join(
                file.file_stem()
                    .map_or_else(|| "sweep".into(), |s| s.to_string_lossy().into_owned()),
            ),
            seeds: vec![0],
            base: Layer::default(),
            datasets: vec![],
            runs: vec![],
        };
        for (key, v) in &top {
            match key.as_str() {
                "root" => {
                    let s = v
                        .as_str()
                        .ok_or_else(|| err("root: must be a string (a directory)".into()))?;
                    grid.root = PathBuf::from(s);
                }
                "seeds" => grid.seeds = seeds(v).map_err(|m| err(format!("seeds: {m}")))?,
                "base" => {
                    let t = v
                        .as_table()
                        .ok_or_else(|| err("base: must be a table ([base])".into()))?;
                    grid.base = layer(t, &dir, "base", &[]).map_err(err)?;
                }
                "dataset" | "run" => {
                    let list = v.as_array().ok_or_else(|| {
                        err(format!("{key}: must be an array of tables ([[{key}]])"))
                    })?;
                    for (i, item) in list.iter().enumerate() {
                        let t = item.as_table().ok_or_else(|| {
                            err(format!("{key}[{i}]: must be a table ([[{key}]])"))
                        })?;
                        let name = t
                            .get("name")
                            .and_then(|n| n.as_str())
                            .ok_or_else(|| err(format!("{key}[{i}]: needs a name (a string)")))?;
                        let ctx = format!("{key} '{name}'");
                        check_name(file, &ctx, name)?;
                        let meta: &[&str] = if key == "run" {
                            &["name", "seeds"]
                        } else {
                            &["name"]
                        };
                        let layer = layer(t, &dir, &ctx, meta).map_err(err)?;
                        let seeds = t
                            .get("seeds")
                            .map(seeds)
                            .transpose()
                            .map_err(|m| err(format!("{ctx}: seeds: {m}")))?;
                        let list = if key == "run" {
                            &mut grid.runs
                        } else {
                            &mut grid.datasets
                        };
                        if list.iter().any(|x| x.name == name) {
                            return Err(err(format!("{ctx}: a second {key} of that name")));
                        }
                        list.push(Named {
                            name: name.to_string(),
                            layer,
                            seeds,
                        });
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown key '{other}' (a grid has root, seeds, [base], [[dataset]] \
                         and [[run]])"
                    )))
                }
            }
        }
        if grid.datasets.is_empty() {
            return Err(err(
                "no [[dataset]]: name at least one (name = \"synthetic\" for the built-in data)"
                    .into(),
            ));
        }
        if grid.runs.is_empty() {
            return Err(err("no [[run]]: name at least one".into()));
        }
        Ok(grid)
    }

    /// Every run of the grid under `root`, per dataset, seed by seed, runs in grid order.
    pub fn plan(&self) -> Result<Vec<Planned>> {
        let err = |m: String| Error::in_file(&self.file, m);
        let mut out = vec![];
        for d in &self.datasets {
            let mut all_seeds: Vec<u64> = self
                .runs
                .iter()
                .flat_map(|r| r.seeds.clone().unwrap_or_else(|| self.seeds.clone()))
                .collect();
            all_seeds.sort_unstable();
            all_seeds.dedup();
            for &seed in &all_seeds {
                for r in &self.runs {
                    if !r.seeds.as_ref().unwrap_or(&self.seeds).contains(&seed) {
                        continue;
                    }
                    let ctx = format!("run '{}' on dataset '{}'", r.name, d.name);
                    let clash = r
                        .layer
                        .flags
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .find(|k| d.layer.has(k))
                        .or_else(|| {
                            (r.layer.config.is_some() && d.layer.config.is_some())
                                .then_some("config")
                        });
                    if let Some(k) = clash {
                        return Err(err(format!(
                            "{ctx}: both set {k}: set it in one of them (or in [base])"
                        )));
                    }
                    let mut flags: Vec<(String, String)> = vec![];
                    let mut config = None;
                    for l in [&self.base, &d.layer, &r.layer] {
                        for (k, v) in &l.flags {
                            flags.retain(|(k2, _)| k2 != k);
                            flags.push((k.clone(), v.clone()));
                        }
                        config = l.config.clone().or(config);
                    }
                    flags.push(("seed".into(), seed.to_string()));
                    let mut args = vec![];
                    if let Some(c) = config {
                        args.extend(["--config".to_string(), c.display().to_string()]);
                    }
                    for (flag, _, _) in FLAGS {
                        if let Some((_, v)) = flags.iter().find(|(k, _)| format!("--{k}") == *flag)
                        {
                            // A value that looks like a flag (-1) goes with it: --lr=-1.
                            if v.starts_with('-') {
                                args.push(format!("{flag}={v}"));
                            } else {
                                args.extend([flag.to_string(), v.clone()]);
                            }
                        }
                    }
                    out.push(Planned {
                        dataset: d.name.clone(),
                        name: r.name.clone(),
                        seed,
                        dir: self
                            .root
                            .join(&d.name)
                            .join(&r.name)
                            .join(format!("seed{seed}")),
                        args,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Checks every planned run before any starts: its arguments parse, its configuration
    /// builds, its data file is there. The error names the grid file and the run.
    pub fn check(&self, plan: &[Planned]) -> Result<()> {
        for d in &self.datasets {
            if let Some((_, p)) = d.layer.flags.iter().find(|(k, _)| k == "data") {
                if !Path::new(p).is_file() {
                    return Err(Error::in_file(
                        &self.file,
                        format!("dataset '{}': data: {p} is not a file", d.name),
                    ));
                }
            }
        }
        for p in plan {
            let ctx = || format!("run '{}' on dataset '{}'", p.name, p.dataset);
            let a = train_parse_args(p.argv("cpu"))
                .map_err(|m| Error::in_file(&self.file, format!("{}: {m}", ctx())))?;
            TrainConfig::build(a.config.as_deref(), &a.flags)
                .map_err(|e| Error::in_file(&self.file, format!("{}: {e}", ctx())))?;
        }
        Ok(())
    }
}

impl Layer {
    fn has(&self, key: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == key)
    }
}

fn seeds(v: &toml::Value) -> std::result::Result<Vec<u64>, String> {
    let list = v
        .as_array()
        .ok_or("must be an array of integers ≥ 0, e.g. [0, 1, 2]")?;
    let mut out = vec![];
    for x in list {
        match x.as_integer() {
            Some(s) if s >= 0 => {
                if out.contains(&(s as u64)) {
                    return Err(format!("{s} is listed twice"));
                }
                out.push(s as u64)
            }
            _ => return Err(format!("{x} is not an integer ≥ 0")),
        }
    }
    if out.is_empty() {
        return Err("is empty".into());
    }
    Ok(out)
}

/// The settings of a `[base]`, `[[dataset]]` or `[[run]]` table (`meta`: its own keys).
fn layer(
    t: &toml::Table,
    dir: &Path,
    ctx: &str,
    meta: &[&str],
) -> std::result::Result<Layer, String> {
    let mut l = Layer::default();
    for (key, v) in t {
        if meta.contains(&key.as_str()) {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        if key == "config" {
            let s = v
                .as_str()
                .ok_or_else(|| format!("{ctx}: config: must be a string (a TOML file)"))?;
            l.config = Some(normalise(&dir.join(s)));
            continue;
        }
        if flag == "--seed" {
            return Err(format!(
                "{ctx}: seed: the seeds come from `seeds` (of the grid or of a run)"
            ));
        }
        if !FLAGS.iter().any(|(f, _, _)| *f == flag) {
            let mut hint = match key.as_str() {
                "out" | "resume" | "device" => {
                    " (the sweep sets the run directory and the device)".to_string()
                }
                "path" => " (the data file is `data`)".to_string(),
                _ => String::new(),
            };
            if hint.is_empty() {
                hint = format!(
                    " (a setting is a flag of `pasa train` without its dashes: {}; or config)",
                    FLAGS
                        .iter()
                        .map(|(f, _, _)| &f[2..])
                        .filter(|f| *f != "seed")
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            return Err(format!("{ctx}: unknown key '{key}'{hint}"));
        }
        let text = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "{ctx}: {key}: must be a string, a number or a boolean"
                ))
            }
        };
        let text = if flag == "--data" {
            normalise(&dir.join(text)).display().to_string()
        } else {
            text
        };
        let canonical = flag[2..].to_string();
        if l.flags.iter().any(|(k, _)| *k == canonical) {
            return Err(format!("{ctx}: {key} is set twice"));
        }
        l.flags.push((canonical, text));
    }
    Ok(l)
}

/// The state of a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    New,
    Interrupted,
    Finished,
}

pub fn state(dir: &Path) -> State {
    let run = RunDir(dir.to_path_buf());
    if run.test().exists() {
        State::Finished
    } else if run.holds_run() {
        State::Interrupted
    } else {
        State::New
    }
}

/// `pasa sweep`'s arguments, as the command line gives them.
pub struct Options {
    pub grid: PathBuf,
    pub root: Option<PathBuf>,
    pub device: DeviceArg,
    pub dry_run: bool,
}

/// The command a run directory records, without its `--device` (a run may resume on another
/// device).
fn without_device(cmd: &str) -> &str {
    cmd.rsplit_once(" --device ").map_or(cmd, |(a, _)| a)
}

/// Runs the grid (module docs).
pub fn sweep(o: Options) -> Result<()> {
    let mut grid = Grid::read(&o.grid)?;
    if let Some(r) = o.root {
        grid.root = r;
    }
    let plan = grid.plan()?;
    grid.check(&plan)?;
    let n = plan.len();
    let device = if o.dry_run {
        match o.device {
            DeviceArg::Cuda => "cuda",
            _ => "cpu",
        }
    } else {
        match Device::pick(o.device, Precision::Fp32)? {
            Device::Cpu(_) => "cpu",
            Device::Cuda(_) => "cuda",
        }
    };
    println!(
        "sweep {}: {n} runs ({} datasets) under {}, device {device}",
        grid.file.display(),
        grid.datasets.len(),
        grid.root.display()
    );
    if o.dry_run {
        for (k, p) in plan.iter().enumerate() {
            let st = match state(&p.dir) {
                State::New => "new",
                State::Interrupted => "interrupted",
                State::Finished => "finished",
            };
            println!("[{}/{n}] {st}: {}", k + 1, p.command(device));
        }
        return Ok(());
    }
    let started = Instant::now();
    let mut failures = vec![];
    let (mut ran, mut skipped) = (0, 0);
    for (k, p) in plan.iter().enumerate() {
        let tag = format!("[{}/{n}]", k + 1);
        let t0 = Instant::now();
        let st = state(&p.dir);
        CATCHING.store(true, Ordering::Relaxed);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_one(p, st, device, &tag)
        }))
        .unwrap_or_else(|e| {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(Error::msg(format!("panicked: {msg}")))
        });
        CATCHING.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => {
                if st == State::Finished {
                    skipped += 1;
                    println!("{tag} skip {}: finished", p.dir.display());
                } else {
                    ran += 1;
                    println!(
                        "{tag} {}",
                        summary_line(p, t0.elapsed().as_secs_f64(), started)
                    );
                }
            }
            Err(e) => {
                println!("{tag} FAILED {}: {e}", p.dir.display());
                failures.push(format!("{}: {e}", p.dir.display()));
            }
        }
    }
    println!(
        "sweep done: {ran} runs trained, {skipped} already finished, {} failed; {}",
        failures.len(),
        duration(started.elapsed().as_secs_f64())
    );
    if failures.is_empty() {
        return Ok(());
    }
    for f in &failures {
        println!("failed: {f}");
    }
    Err(Error::msg(format!(
        "{} of {n} runs of {} failed (listed above)",
        failures.len(),
        grid.file.display()
    )))
}

fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
    }
}

/// One line about a run that just finished.
fn summary_line(p: &Planned, secs: f64, started: Instant) -> String {
    let test = RunRecord::load(&p.dir).ok().and_then(|r| r.test);
    let metrics = test.map_or_else(
        || "no test metrics".to_string(),
        |t| {
            format!(
                "test NDCG@10 {:.4} HR@10 {:.4} ({}), best epoch {}",
                t.metric("NDCG@10"),
                t.metric("HR@10"),
                t.protocol(),
                t.epoch
            )
        },
    );
    format!(
        "{} {} seed {}: {metrics}; {} (sweep {})",
        p.dataset,
        p.name,
        p.seed,
        duration(secs),
        duration(started.elapsed().as_secs_f64())
    )
}

/// Starts, resumes or (finished) completes one run, then its extras.
fn run_one(p: &Planned, st: State, device: &str, tag: &str) -> Result<()> {
    let cmd = p.command(device);
    let cmd_file = p.dir.join(COMMAND);
    if st != State::New {
        let recorded = std::fs::read_to_string(&cmd_file).map_err(|_| {
            Error::msg(format!(
                "holds a run that pasa sweep did not start (no {COMMAND}): move it away"
            ))
        })?;
        let recorded = recorded.lines().next().unwrap_or("");
        if without_device(recorded) != without_device(&cmd) {
            return Err(Error::msg(format!(
                "{COMMAND} says the run was started as `{recorded}` but the grid now says \
                 `{cmd}`: move the directory away to run it again"
            )));
        }
    }
    match st {
        State::Finished => {}
        State::Interrupted => {
            remove_extras(&p.dir)?;
            eprintln!("{tag} resume {}", p.dir.display());
            let a = train_parse_args([
                "--resume".to_string(),
                p.dir.display().to_string(),
                "--device".into(),
                device.into(),
            ])
            .map_err(Error::msg)?;
            train_execute(a, true)?;
        }
        State::New => {
            std::fs::create_dir_all(&p.dir).map_err(|e| Error::io(&p.dir, e))?;
            remove_extras(&p.dir)?;
            crate::checkpoint::write_atomic(&cmd_file, format!("{cmd}\n").as_bytes())?;
            eprintln!("{tag} start {}: {cmd}", p.dir.display());
            let a = train_parse_args(p.argv(device)).map_err(Error::msg)?;
            train_execute(a, true)?;
        }
    }
    extras(
        &p.dir,
        device,
        &format!("{} · {} · seed {}", p.dataset, p.name, p.seed),
    )
}

fn remove_extras(dir: &Path) -> Result<()> {
    for f in [EXCLUDE_SEEN, CURVES] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// What a finished run gets beside `pasa train`'s files: the exclude-seen test metrics of its
/// best checkpoint and its curves (each made when missing).
pub fn extras(dir: &Path, device: &str, title: &str) -> Result<()> {
    let ex = dir.join(EXCLUDE_SEEN);
    if !ex.exists() {
        let v = exclude_seen(dir, device_arg(device))?;
        let text = serde_json::to_string_pretty(&v).expect("JSON values print");
        crate::checkpoint::write_atomic(&ex, text.as_bytes())?;
    }
    let curves = dir.join(CURVES);
    if !curves.exists() {
        let rec = RunRecord::load(dir)?;
        crate::report::run_curves(&rec, title)?.save(&curves)?;
    }
    Ok(())
}

fn device_arg(device: &str) -> DeviceArg {
    if device == "cuda" {
        DeviceArg::Cuda
    } else {
        DeviceArg::Cpu
    }
}

/// The test metrics of a run's best checkpoint under the exclude-seen protocol, as
/// `{"epoch", "test", "device"}`: the numbers `pasa eval DIR --protocol exclude-seen` prints.
pub fn exclude_seen(dir: &Path, device: DeviceArg) -> Result<serde_json::Value> {
    let ck = Loaded::open(dir, None)?;
    let (ms, name) = eval_score(&ck, true, Holdout::Test, &[Protocol::ExcludeSeen], device)?;
    Ok(serde_json::json!({
        "epoch": ck.meta["epoch"],
        "test": ms[0].to_json(),
        "device": name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_lexically() {
        let n = |s: &str| normalise(Path::new(s)).display().to_string();
        assert_eq!(n("experiments/../../shared/x.data"), "../shared/x.data");
        assert_eq!(n("./a/./b/../c"), "a/c");
        assert_eq!(n("/a/../../b"), "/b");
        assert_eq!(n("a/.."), ".");
    }

    #[test]
    fn commands_are_quoted_for_the_shell() {
        let args: Vec<String> = ["--data", "my data/x.txt", "--n", "5", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line(&args),
            r"pasa train --data 'my data/x.txt' --n 5 'it'\''s'"
        );
        assert_eq!(
            without_device("pasa train --n 5 --device cpu"),
            "pasa train --n 5"
        );
    }

    fn grid(text: &str) -> Result<Grid> {
        let p = std::env::temp_dir().join(format!(
            "pasa-grid-{}-{}.toml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&p, text).unwrap();
        let g = Grid::read(&p);
        std::fs::remove_file(&p).unwrap();
        g
    }

    #[test]
    fn plan_layers_flags_and_seeds() {
        let g = grid(
            "seeds = [0, 1]\n[base]\nd = 16\nepochs = 2\nlr = 0.003\n\
             [[dataset]]\nname = \"syn\"\nn = 8\nsynthetic_users = 50\n\
             [[run]]\nname = \"sasrec\"\nmodel = \"sasrec\"\n\
             [[run]]\nname = \"pasa-mix\"\nmodel = \"pasa\"\nreading = \"mix\"\nd = 8\nseeds = [1]\n",
        )
        .unwrap();
        let plan = g.plan().unwrap();
        let names: Vec<_> = plan
            .iter()
            .map(|p| format!("{}/{}/{}", p.dataset, p.name, p.seed))
            .collect();
        assert_eq!(names, ["syn/sasrec/0", "syn/sasrec/1", "syn/pasa-mix/1"]);
        assert_eq!(
            plan[2].args.join(" "),
            "--model pasa --n 8 --d 8 --reading mix --epochs 2 --lr 0.003 --seed 1 \
             --synthetic-users 50"
        );
        assert!(plan[2].dir.ends_with("syn/pasa-mix/seed1"));
        // The default root: runs/<grid file stem>.
        assert!(g.root.starts_with("runs"));
        assert!(g.root.to_string_lossy().contains("pasa-grid-"));
    }

    #[test]
    fn bad_grids_name_the_key() {
        let cases = [
            ("bogus = 1\n", "unknown key 'bogus'"),
            (
                "[[dataset]]\nname = \"s\"\n[[run]]\nname = \"a\"\nreadng = \"mix\"\n",
                "run 'a': unknown key 'readng'",
            ),
            (
                "[[dataset]]\nname = \"s\"\n[[run]]\nname = \"a\"\nseed = 3\n",
                "run 'a': seed: the seeds come from `seeds`",
            ),
            ("[[dataset]]\nname = \"s\"\n", "no [[run]]"),
            (
                "[[dataset]]\nname = \"../x\"\n[[run]]\nname = \"a\"\n",
                "dataset '../x': name",
            ),
            (
                "[[dataset]]\nname = \"s\"\n[[run]]\nname = \"a\"\n[[run]]\nname = \"a\"\n",
                "a second run of that name",
            ),
            (
                "[[dataset]]\nname = \"s\"\n[[run]]\nname = \"a\"\nout = \"x\"\n",
                "the sweep sets the run directory",
            ),
            ("seeds = [1, 1]\n", "seeds: 1 is listed twice"),
        ];
        for (text, want) in cases {
            let e = grid(text).unwrap_err().0;
            assert!(e.contains(".toml: ") && e.contains(want), "{text:?}: {e}");
        }
        let g = grid("[[dataset]]\nname = \"s\"\nn = 4\n[[run]]\nname = \"a\"\nn = 5\n").unwrap();
        let e = g.plan().unwrap_err().0;
        assert!(e.contains("run 'a' on dataset 's': both set n"), "{e}");
    }
}
