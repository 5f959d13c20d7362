//! `pasa train`: a new run, or `--resume` of one. Everything that can be checked is checked
//! before the configuration is printed and before the run directory is touched.

use crate::backend::Precision;
use crate::config::flags::ConfigFlags;
use crate::config::{DataConfig, TrainConfig};
use crate::data::split::Split;
use crate::device::{Device, DeviceArg};
use crate::error::{Error, Result};
use crate::on_device;
use crate::run::RunDir;
use crate::train::{self, check_window, Resume};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A TOML file with any of the settings (the keys of a run's config.toml); the flags
    /// override it [default: none]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: ConfigFlags,
    /// Run directory, new or empty [default: runs/<model>-<unix time>, with -2, -3, … when
    /// taken]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory after its last finished epoch (only --epochs and
    /// --patience may change) [default: a new run]
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "config"])]
    pub resume: Option<PathBuf>,
    /// Device to train on
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Arithmetic of the GPU's products: fp32 (f32 results; the attention through split TF32
    /// tensor-core products), tf32 (TF32 products, about 1e-3 relative error, faster) or bf16
    /// (bf16 operands, f32 accumulation, about 4e-3 relative error per operand; data stays f32
    /// in memory); the CPU always computes in f32
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

/// What `pasa train` was asked to do, once the arguments are checked.
struct Plan {
    cfg: TrainConfig,
    /// The run directory: given (or resumed), or None for a fresh default one.
    run: Option<RunDir>,
    /// The state after the last committed epoch, for `--resume` of a run that has one.
    resume: Option<Resume>,
    resuming: bool,
    n_given: bool,
}

/// The name of a configuration's data in an error: its file, or the built-in dataset.
pub(super) fn data_name(d: &DataConfig) -> String {
    d.path.as_ref().map_or_else(
        || "the built-in synthetic dataset".into(),
        |p| p.display().to_string(),
    )
}

pub fn run(a: TrainArgs) -> Result<()> {
    execute(a, false)
}

/// `pasa train` as a command line would give it (`argv` without the program and command
/// names): the arguments, or clap's message on one line.
pub fn parse_args<I, S>(argv: I) -> std::result::Result<TrainArgs, String>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    #[derive(clap::Parser)]
    #[command(name = "pasa train", no_binary_name = true)]
    struct TrainCommand {
        #[command(flatten)]
        args: TrainArgs,
    }
    <TrainCommand as clap::Parser>::try_parse_from(argv)
        .map(|c| c.args)
        .map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        })
}

/// Everything `pasa train` does with its arguments; `quiet` leaves out the summary on stdout
/// (`pasa sweep` prints its own line per run). Progress and notes go to stderr either way.
pub fn execute(a: TrainArgs, quiet: bool) -> Result<()> {
    let Plan {
        mut cfg,
        run,
        resume,
        resuming,
        n_given,
    } = match &a.resume {
        Some(dir) => plan_resume(dir, &a.flags)?,
        None => plan_new(&a)?,
    };
    let dev = Device::pick(a.device, a.precision)?;
    let seqs = cfg.data.load().map_err(|e| match (&run, resuming) {
        (Some(run), true) => e.note(format!(
            "the data file of the run's configuration, {}",
            run.config().display()
        )),
        _ => e,
    })?;
    if resuming && cfg.model.items != seqs.num_items {
        return Err(Error::in_file(
            &data_name_path(&cfg.data),
            format!(
                "has {} items, but the run was trained on {}",
                seqs.num_items, cfg.model.items
            ),
        ));
    }
    cfg.model.items = seqs.num_items;
    let longest = seqs.longest();
    if !n_given && cfg.model.n > longest {
        eprintln!(
            "note: n = {longest}, the longest sequence (the default {} is longer)",
            cfg.model.n
        );
        cfg.model.n = longest.max(1);
    }
    let split =
        Split::new(&seqs).map_err(|e| Error::msg(format!("{}: {e}", data_name(&cfg.data))))?;
    check_window(cfg.model.n, &seqs).map_err(|e| e.note(format!("in {}", data_name(&cfg.data))))?;
    cfg.check()?;
    dev.check_model(&cfg.model)?;

    if let (Some(run), Some(r)) = (&run, &resume) {
        if r.trained_out(&cfg) && run.test().exists() {
            if !quiet {
                print_finished(run, r, &cfg);
            }
            return Ok(());
        }
    }
    let run = match run {
        Some(run) => run,
        None => claim_default_dir(&cfg)?,
    };
    eprintln!("# configuration\n{}", cfg.to_toml());
    eprintln!(
        "data: {} ({} users, {} items, {} interactions); run directory {}",
        data_name(&cfg.data),
        seqs.num_users(),
        seqs.num_items,
        seqs.num_interactions(),
        run.0.display()
    );
    let out = on_device!(&dev, |b| train::train(b, &cfg, &split, &run, resume))?;
    if quiet {
        return Ok(());
    }
    let mut secs = out.epoch_secs.clone();
    secs.sort_by(f64::total_cmp);
    let median = secs.get(secs.len() / 2).copied().unwrap_or(0.0);
    println!(
        "trained {} epochs ({}), median epoch {median:.2}s; best validation epoch {}",
        out.epochs_done,
        if out.stopped_early {
            "early stop"
        } else {
            "all epochs"
        },
        out.best_epoch
    );
    println!("test, at the best validation epoch:\n{}", out.test);
    println!("run directory: {}", run.0.display());
    Ok(())
}

/// The path an item-count error names: the data file, or the run's synthetic settings.
fn data_name_path(d: &DataConfig) -> PathBuf {
    d.path
        .clone()
        .unwrap_or_else(|| PathBuf::from("the built-in synthetic dataset"))
}

/// A new run: the configuration from the layers; an explicit `--out` must not hold a run.
fn plan_new(a: &TrainArgs) -> Result<Plan> {
    let built = TrainConfig::build(a.config.as_deref(), &a.flags)?;
    let run = a.out.clone().map(RunDir);
    if let Some(run) = &run {
        if run.0.exists() && !run.0.is_dir() {
            return Err(Error::arg(
                "--out",
                format!("{} exists and is not a directory", run.0.display()),
            ));
        }
        if run.holds_run() {
            return Err(Error::arg(
                "--out",
                format!(
                    "{} already holds a run; continue it with --resume {0} or choose another --out",
                    run.0.display()
                ),
            ));
        }
    }
    Ok(Plan {
        cfg: built.cfg,
        run,
        resume: None,
        resuming: false,
        n_given: built.n_given,
    })
}

/// `--resume DIR`: the run's own configuration (from its last checkpoint, else from its
/// `config.toml` when it stopped before its first epoch was committed); only the schedule may
/// change.
fn plan_resume(dir: &Path, flags: &ConfigFlags) -> Result<Plan> {
    let run = RunDir(dir.to_path_buf());
    if let Some(g) = flags
        .given()
        .into_iter()
        .find(|g| !["--epochs", "--patience"].contains(&g.flag))
    {
        return Err(Error::arg(
            g.flag,
            format!(
                "contradicts --resume: the run's configuration is {} (only --epochs and \
                 --patience may change)",
                run.config().display()
            ),
        ));
    }
    if !run.0.is_dir() {
        return Err(Error::arg(
            "--resume",
            format!("{} is not a run directory", run.0.display()),
        ));
    }
    let resume = Resume::read(&run)?;
    let mut cfg = match &resume {
        Some(r) => r.cfg.clone(),
        None if run.config().exists() => TrainConfig::read(&run.config())?,
        None => {
            return Err(Error::arg(
                "--resume",
                format!(
                    "{} holds no run to resume (no last.safetensors, no config.toml): start \
                     it again without --resume",
                    run.0.display()
                ),
            ))
        }
    };
    if let Some(e) = flags.epochs {
        cfg.epochs = e;
    }
    if let Some(p) = flags.patience {
        cfg.patience = p;
    }
    Ok(Plan {
        cfg,
        run: Some(run),
        resume,
        resuming: true,
        n_given: true,
    })
}

/// Creates `runs/<model>-<unix time>`, or the first of `…-2`, `…-3`, … that does not exist yet:
/// runs started in the same second each get their own directory.
fn claim_default_dir(cfg: &TrainConfig) -> Result<RunDir> {
    let root = PathBuf::from("runs");
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{}-{secs}", cfg.model.name);
    for k in 1.. {
        let name = if k == 1 {
            base.clone()
        } else {
            format!("{base}-{k}")
        };
        let dir = root.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(RunDir(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    unreachable!("some suffix is free")
}

/// `--resume` of a run with nothing left to do: say so, change nothing.
fn print_finished(run: &RunDir, r: &Resume, cfg: &TrainConfig) {
    let why = if r.best.stops(cfg.patience) {
        format!(
            "stopped early after epoch {} (no better validation NDCG@10 in {} evaluations); \
             raise --patience to train on",
            r.epoch, cfg.patience
        )
    } else {
        format!(
            "{} epochs trained, --epochs is {}; raise --epochs to train on",
            r.epoch, cfg.epochs
        )
    };
    println!(
        "{} is finished: {why}. Best validation epoch {} (NDCG@10 {:.4}); test metrics in {}",
        run.0.display(),
        r.best.epoch,
        r.best.ndcg10,
        run.test().display()
    );
}
