//! `pasa report ROOT…`: every run directory under the roots (a directory with `config.toml`)
//! read back and summed up in one Markdown page with its pictures.
//!
//! A run is named by its place, `<root>/<dataset>/<name>/seed<k>` as `pasa sweep` lays it out;
//! any other run directory by its data file's stem (or `synthetic`), its path under the root
//! and its configuration's seed. Per dataset the page gives each run name's test metrics at
//! the best validation epoch (`test.json`: the run's protocol, full ranking by default) and
//! under the exclude-seen protocol (`test-exclude-seen.json`, written by `pasa sweep`; scored
//! here, in process, with the same code as `pasa eval`, for a run without it), as mean ±
//! sample standard deviation over the finished seeds, with the best epoch, the median training
//! time per epoch (`times.jsonl`) and the device; the validation and loss curves of every name
//! (mean over seeds); the learned kernels of the best `pasa` run (highest validation NDCG@10)
//! as heatmaps and distance profiles with an automatic description computed from the values
//! ([`crate::kernel_export::shape`]); and the command of every run (`command.txt`). Pictures go
//! to `results/<dataset>/` beside the page and are linked relatively. The page is a function of
//! the run directories (sorted, no time of its own), so running the report twice gives the
//! same page.

use crate::cli::eval_score;
use crate::config::TrainConfig;
use crate::device::DeviceArg;
use crate::error::{Error, Result};
use crate::eval::Protocol;
use crate::heatmap;
use crate::kernel_export;
use crate::models::PRESETS;
use crate::plot::{self, Canvas, Panel, Series};
use crate::run::{Loaded, RunDir};
use crate::score::Holdout;
use crate::sweep::{COMMAND, EXCLUDE_SEEN};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The test line of a finished run (`test.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct TestLine {
    /// The best validation epoch.
    pub epoch: usize,
    pub test: Value,
    pub valid: Value,
}

fn metric(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

impl TestLine {
    /// A test metric ("NDCG@10").
    pub fn metric(&self, key: &str) -> f64 {
        metric(&self.test, key)
    }
    pub fn protocol(&self) -> String {
        self.test["protocol"].as_str().unwrap_or("?").to_string()
    }
}

/// One epoch of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLine {
    pub epoch: usize,
    pub train_loss: f64,
    /// Validation NDCG@10, when the epoch was evaluated.
    pub valid_ndcg10: Option<f64>,
}

/// A run directory read back.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub dir: PathBuf,
    pub cfg: TrainConfig,
    pub epochs: Vec<EpochLine>,
    /// Training seconds of each epoch (`times.jsonl`).
    pub train_secs: Vec<f64>,
    /// The devices of `times.jsonl`, distinct, sorted.
    pub devices: Vec<String>,
    /// None while the run is unfinished.
    pub test: Option<TestLine>,
    /// `test-exclude-seen.json`: the metrics and the device they were scored on.
    pub exclude_seen: Option<(Value, String)>,
    /// The first line of `command.txt`.
    pub command: Option<String>,
}

fn jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(path, e)),
    };
    // A run in progress may be writing its last line: only complete lines count.
    text.split_inclusive('\n')
        .enumerate()
        .filter(|(_, l)| l.ends_with('\n') && !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::at_line(path, i + 1, e)))
        .collect()
}

fn json_file(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::in_file(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl RunRecord {
    pub fn load(dir: &Path) -> Result<RunRecord> {
        let run = RunDir(dir.to_path_buf());
        let cfg = TrainConfig::read(&run.config())?;
        let epochs = jsonl(&run.metrics())?
            .into_iter()
            .filter(|v| v.get("test").is_none())
            .map(|v| EpochLine {
                epoch: v["epoch"].as_u64().unwrap_or(0) as usize,
                train_loss: v["train_loss"].as_f64().unwrap_or(f64::NAN),
                valid_ndcg10: v.get("valid").map(|m| metric(m, "NDCG@10")),
            })
            .collect();
        let times = jsonl(&run.times())?;
        let train_secs = times
            .iter()
            .filter_map(|v| v["train_secs"].as_f64())
            .collect();
        let mut devices: Vec<String> = times
            .iter()
            .filter_map(|v| v["device"].as_str().map(str::to_string))
            .collect();
        devices.sort();
        devices.dedup();
        let test = json_file(&run.test())?.map(|v| TestLine {
            epoch: v["epoch"].as_u64().unwrap_or(0) as usize,
            test: v["test"].clone(),
            valid: v["valid"].clone(),
        });
        let exclude_seen = json_file(&dir.join(EXCLUDE_SEEN))?.map(|v| {
            (
                v["test"].clone(),
                v["device"].as_str().unwrap_or("?").to_string(),
            )
        });
        let command = std::fs::read_to_string(dir.join(COMMAND))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string));
        Ok(RunRecord {
            dir: dir.to_path_buf(),
            cfg,
            epochs,
            train_secs,
            devices,
            test,
            exclude_seen,
            command,
        })
    }

    /// The median training time of an epoch, in seconds.
    pub fn median_epoch_secs(&self) -> Option<f64> {
        let mut s = self.train_secs.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied()
    }

    /// The command that reproduces the run: its `command.txt`, else a `pasa train --config`
    /// of its configuration.
    pub fn command_or_equivalent(&self) -> String {
        self.command.clone().unwrap_or_else(|| {
            format!(
                "pasa train --config {} --out {}-again   # no {COMMAND}: the run's own configuration",
                RunDir(self.dir.clone()).config().display(),
                self.dir.display()
            )
        })
    }
}

fn series(label: &str, points: impl Iterator<Item = (f64, f64)>) -> Series {
    Series {
        label: label.to_string(),
        points: points.collect(),
    }
}

/// The two charts of a run's (or a group's) curves.
fn curve_panels(protocol: &str, valid: Vec<Series>, loss: Vec<Series>) -> [Panel; 2] {
    [
        Panel {
            title: format!("validation NDCG@10 ({protocol})"),
            x_desc: "epoch".into(),
            y_desc: "NDCG@10".into(),
            series: valid,
            reference: None,
        },
        Panel {
            title: "training loss".into(),
            x_desc: "epoch".into(),
            y_desc: "mean loss per target".into(),
            series: loss,
            reference: None,
        },
    ]
}

/// A run's validation NDCG@10 and training loss per epoch.
pub fn run_curves(r: &RunRecord, title: &str) -> Result<Canvas> {
    let label = r.cfg.model.name.to_string();
    let valid = series(
        &label,
        r.epochs
            .iter()
            .filter_map(|e| e.valid_ndcg10.map(|v| (e.epoch as f64, v))),
    );
    let loss = series(
        &label,
        r.epochs.iter().map(|e| (e.epoch as f64, e.train_loss)),
    );
    plot::figure(
        title,
        &curve_panels(r.cfg.protocol.name(), vec![valid], vec![loss]),
    )
}

/// Per epoch, the mean over the runs that have a value there.
fn mean_by_epoch(runs: &[&Run], value: impl Fn(&EpochLine) -> Option<f64>) -> Vec<(f64, f64)> {
    let mut sums: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for r in runs {
        for e in &r.rec.epochs {
            if let Some(v) = value(e) {
                let s = sums.entry(e.epoch).or_insert((0.0, 0));
                s.0 += v;
                s.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(e, (s, k))| (e as f64, s / k as f64))
        .collect()
}

/// A run found under a root, with its place.
#[derive(Debug, Clone)]
pub struct Run {
    pub root: PathBuf,
    pub dataset: String,
    pub name: String,
    pub seed: u64,
    pub rec: RunRecord,
    /// The exclude-seen metrics were scored by this report (the run had no file).
    pub scored_here: bool,
}

/// The run directories under `root` (directories with `config.toml`), sorted; the report does
/// not look inside a run directory.
pub fn discover(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("config.toml").is_file() {
            out.push(d);
            continue;
        }
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io(&d, e))?;
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if !hidden && e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Dataset, name and seed of a run directory: from `<dataset>/<name>/seed<k>` under the root,
/// else from its configuration and path.
fn identify(root: &Path, dir: &Path, cfg: &TrainConfig) -> (String, String, u64) {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let [d, n, s] = &parts[..] {
        if let Some(k) = s.strip_prefix("seed").and_then(|k| k.parse().ok()) {
            return (d.clone(), n.clone(), k);
        }
    }
    let dataset = cfg.data.path.as_ref().map_or_else(
        || "synthetic".to_string(),
        |p| {
            p.file_stem()
                .map_or_else(|| "data".into(), |s| s.to_string_lossy().into_owned())
        },
    );
    let name = if parts.is_empty() {
        cfg.model.name.to_string()
    } else {
        parts.join("/")
    };
    (dataset, name, cfg.seed)
}

/// `pasa report`'s arguments.
pub struct Options {
    pub roots: Vec<PathBuf>,
    /// The Markdown page; pictures go to `results/` beside it.
    pub out: PathBuf,
    /// Where runs without `test-exclude-seen.json` are scored.
    pub device: DeviceArg,
    /// Hand-written notes: text under `## <dataset>` goes into that dataset's section.
    pub notes: Option<PathBuf>,
}

/// Mean and sample standard deviation (None for fewer than two values).
pub fn mean_std(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

/// "0.1234 ± 0.0056" (or "0.1234" for one value, "—" for none), `d` decimals.
pub fn fmt_mean(v: &[f64], d: usize) -> String {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return "—".into();
    }
    match mean_std(v) {
        (m, Some(s)) => format!("{m:.d$} ± {s:.d$}"),
        (m, None) => format!("{m:.d$}"),
    }
}

/// Run names in the page's order: the presets in their order, then the others by name.
fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    let rank = |n: &str| {
        PRESETS
            .iter()
            .position(|p| *p == n)
            .unwrap_or(PRESETS.len())
    };
    rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
}

/// A name usable as a file name.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Hand-written notes by dataset ("" for the text before the first `## ` heading).
fn read_notes(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut key = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            key = h.trim().to_string();
            continue;
        }
        let e = out.entry(key.clone()).or_default();
        e.push_str(line);
        e.push('\n');
    }
    for v in out.values_mut() {
        *v = v.trim().to_string();
    }
    out.retain(|_, v| !v.is_empty());
    Ok(out)
}

/// Writes the page and its pictures; returns the paths of the pictures.
pub fn report(o: &Options) -> Result<Vec<PathBuf>> {
    let mut runs: Vec<Run> = vec![];
    for root in &o.roots {
        if !root.is_dir() {
            return Err(Error::in_file(root, "is not a directory of runs"));
        }
        let dirs = discover(root)?;
        if dirs.is_empty() {
            return Err(Error::in_file(
                root,
                "holds no run directory (none with config.toml)",
            ));
        }
        for dir in dirs {
            let rec = RunRecord::load(&dir)?;
            let (dataset, name, seed) = identify(root, &dir, &rec.cfg);
            runs.push(Run {
                root: root.clone(),
                dataset,
                name,
                seed,
                rec,
                scored_here: false,
            });
        }
    }
    for r in &mut runs {
        if r.rec.test.is_some() && r.rec.exclude_seen.is_none() {
            eprintln!(
                "scoring {} under the exclude-seen protocol",
                r.rec.dir.display()
            );
            let ck = Loaded::open(&r.rec.dir, None)?;
            let (ms, dev) =
                eval_score(&ck, true, Holdout::Test, &[Protocol::ExcludeSeen], o.device)?;
            r.rec.exclude_seen = Some((ms[0].to_json(), dev));
            r.scored_here = true;
        }
    }
    runs.sort_by(|a, b| {
        (&a.dataset, &a.name, a.seed, &a.rec.dir).cmp(&(&b.dataset, &b.name, b.seed, &b.rec.dir))
    });
    let notes = o.notes.as_deref().map(read_notes).transpose()?;
    let base = o.out.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut pictures = vec![];
    let mut datasets: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in &runs {
        datasets.entry(r.dataset.as_str()).or_default().push(r);
    }

    let mut md = String::new();
    let roots: Vec<String> = o.roots.iter().map(|r| r.display().to_string()).collect();
    let mut cmd = format!("pasa report {}", roots.join(" "));
    write!(cmd, " --out {}", o.out.display()).unwrap();
    if let Some(n) = &o.notes {
        write!(cmd, " --notes {}", n.display()).unwrap();
    }
    writeln!(md, "# Results\n").unwrap();
    writeln!(
        md,
        "<!-- Generated by `{cmd}`: do not edit by hand; run it again. -->\n"
    )
    .unwrap();
    writeln!(
        md,
        "Every number and picture on this page is computed by `{cmd}` from the run directories \
         it names (their `config.toml`, `metrics.jsonl`, `times.jsonl`, `test.json`, \
         `{EXCLUDE_SEEN}`, `{COMMAND}` and best checkpoints); nothing in the tables is typed by \
         hand. Test metrics are those of the best validation epoch (validation NDCG@10, \
         early stopping), as the mean ± sample standard deviation over the seeds that \
         finished (*seeds*: how many); *full* ranks the held-out item against the whole catalogue, *excl. \
         seen* against the items the user has not seen (the same checkpoint, scored as \
         `pasa eval RUN --protocol exclude-seen` scores it). s/epoch is the median training \
         time of an epoch (validation not included), averaged over the seeds.\n"
    )
    .unwrap();
    if let Some(text) = notes.as_ref().and_then(|n| n.get("")) {
        writeln!(md, "{text}\n").unwrap();
    }

    writeln!(md, "## Where the runs ran\n").unwrap();
    writeln!(
        md,
        "| dataset | run directories | finished | trained on | exclude-seen scored on |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|").unwrap();
    for (ds, rs) in &datasets {
        let mut where_: Vec<String> = rs
            .iter()
            .map(|r| r.root.join(&r.dataset).display().to_string())
            .collect();
        where_.dedup();
        let done = rs.iter().filter(|r| r.rec.test.is_some()).count();
        let mut devs: Vec<String> = rs.iter().flat_map(|r| r.rec.devices.clone()).collect();
        devs.sort();
        devs.dedup();
        let mut ex: Vec<String> = rs
            .iter()
            .filter_map(|r| {
                r.rec.exclude_seen.as_ref().map(|(_, d)| {
                    if r.scored_here {
                        format!("{d} (by pasa report)")
                    } else {
                        d.clone()
                    }
                })
            })
            .collect();
        ex.sort();
        ex.dedup();
        writeln!(
            md,
            "| {ds} | {} | {done} of {} | {} | {} |",
            where_
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", "),
            rs.len(),
            devs.join(", "),
            ex.join(", ")
        )
        .unwrap();
    }
    writeln!(md).unwrap();

    for (ds, rs) in &datasets {
        let dir_rel = PathBuf::from("results").join(file_safe(ds));
        let dir = base.join(&dir_rel);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut groups: Vec<(&str, Vec<&Run>)> = vec![];
        for r in rs {
            match groups.iter_mut().find(|(n, _)| *n == r.name) {
                Some((_, g)) => g.push(r),
                None => groups.push((&r.name, vec![r])),
            }
        }
        groups.sort_by(|a, b| name_order(a.0, b.0));
        writeln!(md, "## {ds}\n").unwrap();
        let first = &rs[0].rec;
        let data = first.cfg.data.path.as_ref().map_or_else(
            || {
                let s = &first.cfg.data.synthetic;
                format!(
                    "the built-in synthetic dataset ({} users, {} items, lengths {}–{})",
                    s.users, s.items, s.min_len, s.max_len
                )
            },
            |p| {
                format!(
                    "`{}` ({})",
                    p.file_name().map_or_else(
                        || p.display().to_string(),
                        |f| f.to_string_lossy().into_owned()
                    ),
                    crate::cli::value_name(first.cfg.data.format)
                )
            },
        );
        let users = rs
            .iter()
            .find_map(|r| r.rec.test.as_ref().and_then(|t| t.test["users"].as_u64()));
        let mut ns: Vec<usize> = rs.iter().map(|r| r.rec.cfg.model.n).collect();
        ns.sort_unstable();
        ns.dedup();
        writeln!(
            md,
            "Data: {data}; {} items{}; window n = {}.\n",
            first.cfg.model.items,
            users.map_or_else(String::new, |u| format!(", {u} users evaluated")),
            ns.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
        writeln!(
            md,
            "| model | seeds | NDCG@10 full | HR@10 full | COV@10 full | NDCG@10 excl. seen | \
             HR@10 excl. seen | COV@10 excl. seen | best epoch | epochs | s/epoch | device |"
        )
        .unwrap();
        writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|").unwrap();
        let mut means: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for (name, g) in &groups {
            let done: Vec<&&Run> = g.iter().filter(|r| r.rec.test.is_some()).collect();
            let test = |k: &str| -> Vec<f64> {
                done.iter()
                    .map(|r| r.rec.test.as_ref().map_or(f64::NAN, |t| t.metric(k)))
                    .collect()
            };
            let ex = |k: &str| -> Vec<f64> {
                done.iter()
                    .filter_map(|r| r.rec.exclude_seen.as_ref().map(|(m, _)| metric(m, k)))
                    .collect()
            };
            let best: Vec<f64> = done
                .iter()
                .map(|r| r.rec.test.as_ref().map_or(f64::NAN, |t| t.epoch as f64))
                .collect();
            let trained: Vec<f64> = done.iter().map(|r| r.rec.epochs.len() as f64).collect();
            let secs: Vec<f64> = done
                .iter()
                .filter_map(|r| r.rec.median_epoch_secs())
                .collect();
            let mut devs: Vec<String> = g.iter().flat_map(|r| r.rec.devices.clone()).collect();
            devs.sort();
            devs.dedup();
            let ndcg = test("NDCG@10");
            let hr = test("HR@10");
            if !ndcg.is_empty() {
                means.insert(name, (mean_std(&ndcg).0, mean_std(&hr).0));
            }
            let unfinished = g.len() - done.len();
            let label = if unfinished > 0 {
                format!("{name} ({unfinished} unfinished)")
            } else {
                name.to_string()
            };
            let seconds = if secs.is_empty() {
                "—".into()
            } else {
                format!("{:.2}", mean_std(&secs).0)
            };
            writeln!(
                md,
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {seconds} | {} |",
                done.len(),
                fmt_mean(&ndcg, 4),
                fmt_mean(&hr, 4),
                fmt_mean(&test("COV@10"), 4),
                fmt_mean(&ex("NDCG@10"), 4),
                fmt_mean(&ex("HR@10"), 4),
                fmt_mean(&ex("COV@10"), 4),
                fmt_mean(&best, 0),
                fmt_mean(&trained, 0),
                devs.join(", ")
            )
            .unwrap();
        }
        writeln!(md).unwrap();
        if let (Some(p), Some(s)) = (means.get("pasa"), means.get("sasrec")) {
            let rel = |a: f64, b: f64| {
                if b > 0.0 {
                    format!(" ({:+.1} %)", 100.0 * (a - b) / b)
                } else {
                    String::new()
                }
            };
            writeln!(
                md,
                "Computed: `pasa` − `sasrec`, mean test (full ranking): NDCG@10 {:+.4}{}, \
                 HR@10 {:+.4}{}.\n",
                p.0 - s.0,
                rel(p.0, s.0),
                p.1 - s.1,
                rel(p.1, s.1)
            )
            .unwrap();
        }

        // Curves of every name, mean over its seeds.
        let names: Vec<&str> = groups.iter().map(|(n, _)| *n).collect();
        let valid: Vec<Series> = groups
            .iter()
            .map(|(n, g)| series(n, mean_by_epoch(g, |e| e.valid_ndcg10).into_iter()))
            .collect();
        let loss: Vec<Series> = groups
            .iter()
            .map(|(n, g)| series(n, mean_by_epoch(g, |e| Some(e.train_loss)).into_iter()))
            .collect();
        let curves = dir.join("curves.png");
        plot::figure(
            &format!("{ds}: mean over seeds"),
            &curve_panels(first.cfg.protocol.name(), valid, loss),
        )?
        .save(&curves)?;
        pictures.push(curves);
        writeln!(
            md,
            "![{ds}: validation NDCG@10 and training loss per epoch of {}]({})\n",
            names.join(", "),
            link(&dir_rel.join("curves.png"))
        )
        .unwrap();

        kernels_section(&mut md, ds, &groups, &base, &dir_rel, &mut pictures)?;
        if let Some(text) = notes.as_ref().and_then(|n| n.get(*ds)) {
            writeln!(
                md,
                "**Notes** (written by hand in `{}`):\n\n{text}\n",
                o.notes
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            )
            .unwrap();
        }

        writeln!(md, "### Commands\n").unwrap();
        writeln!(
            md,
            "<details><summary>The {} commands of the {ds} runs (paths relative to the \
             directory <code>pasa sweep</code> ran in)</summary>\n\n```sh",
            rs.len()
        )
        .unwrap();
        for (_, g) in &groups {
            for r in g {
                writeln!(md, "{}", r.rec.command_or_equivalent()).unwrap();
            }
        }
        writeln!(md, "```\n\n</details>\n").unwrap();
    }
    let text = md.trim_end().to_string() + "\n";
    if !base.as_os_str().is_empty() {
        std::fs::create_dir_all(&base).map_err(|e| Error::io(&base, e))?;
    }
    crate::checkpoint::write_atomic(&o.out, text.as_bytes())?;
    Ok(pictures)
}

/// A relative link in Markdown (forward slashes).
fn link(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The kernels of the best `pasa` run of a dataset: pictures and the automatic description.
fn kernels_section(
    md: &mut String,
    ds: &str,
    groups: &[(&str, Vec<&Run>)],
    base: &Path,
    dir_rel: &Path,
    pictures: &mut Vec<PathBuf>,
) -> Result<()> {
    writeln!(md, "### Kernels learned by the best `pasa` run\n").unwrap();
    let valid10 = |r: &Run| {
        r.rec
            .test
            .as_ref()
            .map_or(f64::NEG_INFINITY, |t| metric(&t.valid, "NDCG@10"))
    };
    let best = groups
        .iter()
        .filter(|(n, _)| *n == "pasa")
        .flat_map(|(_, g)| g.iter().filter(|r| r.rec.test.is_some()))
        .max_by(|a, b| valid10(a).total_cmp(&valid10(b)).then(b.seed.cmp(&a.seed)));
    let Some(best) = best else {
        writeln!(md, "No finished run named `pasa` on {ds}.\n").unwrap();
        return Ok(());
    };
    let ck = Loaded::open(&best.rec.dir, None)?;
    let mats = kernel_export::collect(&ck.model, &ck.params)?;
    let t = best.rec.test.as_ref().expect("finished");
    writeln!(
        md,
        "`{}` (seed {}: the highest validation NDCG@10 of the `pasa` seeds, {:.4}; test NDCG@10 \
         {:.4}), best epoch {}. Each matrix is indexed [i][j], query i, key j ≤ i; white (and \
         the dashed line) is the initial value, so colour is what training changed.\n",
        best.rec.dir.display(),
        best.seed,
        metric(&t.valid, "NDCG@10"),
        t.metric("NDCG@10"),
        t.epoch
    )
    .unwrap();
    if mats.is_empty() {
        writeln!(md, "This configuration learns no positional matrix.\n").unwrap();
        return Ok(());
    }
    let kdir_rel = dir_rel.join("kernels");
    let kdir = base.join(&kdir_rel);
    std::fs::create_dir_all(&kdir).map_err(|e| Error::io(&kdir, e))?;
    writeln!(
        md,
        "**Automatic description**, computed from the learned values (not a reading by a \
         person): the distance profile of each matrix (t[δ] of a Toeplitz kernel; the mean of \
         diagonal δ = i − j of a full one) with its range, its spread (max/min, when all values \
         are positive), the distance δ ≥ 1 of its largest value (and that value over the \
         profile's median), and its share of the absolute mass at δ ≤ {} (beside the share \
         of a flat profile). Shape, by rule: *near-uniform* when max − min ≤ 0.25·max|t|; \
         *recency-focused* when the largest value is at δ ≤ {0} and the recent share is at \
         least twice the flat one; *peak at δ = k* when the largest value at δ ≥ 1 is at k > \
         {0} and ≥ 1.25 × the median; *broad* otherwise.\n",
        kernel_export::RECENT
    )
    .unwrap();
    writeln!(
        md,
        "| matrix | shape | min – max | spread | largest at δ ≥ 1 | mass at δ ≤ {} (flat) |",
        kernel_export::RECENT
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|---|").unwrap();
    let n = ck.cfg.model.n;
    let scale = (640 / n.max(1)).max(1);
    for e in &mats {
        let s = kernel_export::shape(&kernel_export::profile(e));
        writeln!(
            md,
            "| {} ({}) | {} | {:.4} – {:.4} | {} | {} | {:.3} ({:.3}) |",
            e.stem,
            e.what,
            s.label,
            s.min,
            s.max,
            s.spread.map_or("—".into(), |x| format!("{x:.3}")),
            s.peak
                .map_or("—".into(), |(d, r)| format!("δ = {d} ({r:.3}× median)")),
            s.recency,
            s.flat_recency
        )
        .unwrap();
        let stem = file_safe(&e.stem);
        let heat = kdir.join(format!("{stem}.png"));
        heatmap::write_png(
            &heat,
            &kernel_export::title(e),
            n,
            n,
            &e.matrix.cells,
            e.centre,
            scale,
        )?;
        let prof = kdir.join(format!("{stem}.profile.png"));
        kernel_export::profile_figure(e)?.save(&prof)?;
        pictures.extend([heat, prof]);
    }
    writeln!(md).unwrap();
    writeln!(md, "| matrix | heatmap | distance profile |").unwrap();
    writeln!(md, "|---|---|---|").unwrap();
    for e in &mats {
        let stem = file_safe(&e.stem);
        let alt = |what: &str| format!("{ds} {}: {what}", kernel_export::title(e));
        writeln!(
            md,
            "| {} | ![{}]({}) | ![{}]({}) |",
            e.stem,
            alt("heatmap"),
            link(&kdir_rel.join(format!("{stem}.png"))),
            alt("profile"),
            link(&kdir_rel.join(format!("{stem}.profile.png")))
        )
        .unwrap();
    }
    writeln!(md).unwrap();
    if let Some(p) = kernel_export::write_profiles(&kdir, &mats)? {
        writeln!(
            md,
            "![{ds}: the distance profiles of every block]({})\n",
            link(&kdir_rel.join("profiles.png"))
        )
        .unwrap();
        pictures.push(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_sample_std() {
        assert_eq!(fmt_mean(&[], 4), "—");
        assert_eq!(fmt_mean(&[0.5], 4), "0.5000");
        // Sample std of 1, 2, 3 is 1.
        assert_eq!(fmt_mean(&[1.0, 2.0, 3.0], 2), "2.00 ± 1.00");
        assert_eq!(fmt_mean(&[1.0, f64::NAN], 2), "—");
    }

    #[test]
    fn names_sort_presets_first() {
        let mut v = vec!["pasa-mix", "pasa", "sasrec", "abc", "rope"];
        v.sort_by(|a, b| name_order(a, b));
        assert_eq!(v, ["sasrec", "rope", "pasa", "abc", "pasa-mix"]);
    }

    #[test]
    fn runs_are_named_by_their_place() {
        let cfg = TrainConfig::for_model(crate::models::Preset::Pasa);
        let id = identify(Path::new("r"), Path::new("r/ml/pasa/seed2"), &cfg);
        assert_eq!(id, ("ml".into(), "pasa".into(), 2));
        let id = identify(Path::new("r"), Path::new("r/x/y"), &cfg);
        assert_eq!(id, ("synthetic".into(), "x/y".into(), 0));
    }
}
