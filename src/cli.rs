//! The command line: `pasa train | eval | kernels | data | bench | info`.

use crate::backend::cpu::Cpu;
use crate::backend::cuda::{cuda_available, device_info, Cuda, MAX_HEAD_WIDTH};
use crate::backend::Memory;
use crate::backend::{Activation, KernelKind};
use crate::bench::{self, BenchPlan, BenchShape};
use crate::checkpoint;
use crate::config::{DataConfig, TrainConfig};
use crate::data::{self, cli::DataCommand, synthetic, Format, LoadOptions, Sequences};
use crate::error::{Error, Result};
use crate::eval::Protocol;
use crate::heatmap;
use crate::kernel_export;
use crate::models::{LossKind, Model, ModelConfig, Reading, Scores, PRESETS};
use crate::score::{evaluate, Holdout};
use crate::train::{self, RunDir};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "pasa",
    version,
    about = "Train and evaluate next-item recommenders with positional-kernel attention"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (on the built-in synthetic dataset when no --data is given).
    Train(Box<TrainArgs>),
    /// Evaluate a run directory or checkpoint on the held-out items.
    Eval(EvalArgs),
    /// Export the learned positional matrices (U, L, learned P) as CSV and PNG heatmaps.
    Kernels(KernelsArgs),
    /// Convert datasets and print their statistics.
    #[command(subcommand)]
    Data(DataCommand),
    /// Time the fused attention op and whole training steps on one device.
    Bench(BenchArgs),
    /// Print the build, the devices and the kernels present.
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The GPU when there is one and the build has its kernels, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Interactions file (any format of `pasa data`); the synthetic dataset when absent.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Input format of --data.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// k-core filtering of --data.
    #[arg(long, value_name = "K")]
    pub kcore: Option<usize>,
    /// A TOML file with any of the settings (the flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Named configuration: sasrec, rope, parec, fparec or pasa.
    #[arg(long)]
    pub model: Option<String>,
    /// Window length.
    #[arg(long)]
    pub n: Option<usize>,
    /// Model width.
    #[arg(long)]
    pub d: Option<usize>,
    #[arg(long)]
    pub blocks: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub d_ff: Option<usize>,
    #[arg(long)]
    pub dropout: Option<f32>,
    #[arg(long, value_enum)]
    pub act: Option<Activation>,
    /// Learned additive position embedding (true/false).
    #[arg(long)]
    pub pos_emb: Option<bool>,
    #[arg(long, value_enum)]
    pub scores: Option<Scores>,
    /// Rank of FPARec's factors.
    #[arg(long)]
    pub rank: Option<usize>,
    /// Parametrisation of U (scales the causal scores).
    #[arg(long, value_enum)]
    pub u: Option<KernelKind>,
    /// Parametrisation of L (weights the value aggregation).
    #[arg(long, value_enum)]
    pub l: Option<KernelKind>,
    #[arg(long, value_enum)]
    pub reading: Option<Reading>,
    /// One U and L shared by all blocks (true/false).
    #[arg(long)]
    pub kernel_shared: Option<bool>,
    /// Each head its own kernels (true/false).
    #[arg(long)]
    pub kernel_per_head: Option<bool>,
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Clip the global gradient norm.
    #[arg(long)]
    pub clip: Option<f32>,
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Evaluations without improvement before stopping (0 = never).
    #[arg(long)]
    pub patience: Option<usize>,
    #[arg(long)]
    pub eval_batch: Option<usize>,
    /// full, exclude-seen or sampled100.
    #[arg(long)]
    pub protocol: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Users of the synthetic dataset.
    #[arg(long)]
    pub synthetic_users: Option<usize>,
    /// Items of the synthetic dataset.
    #[arg(long)]
    pub synthetic_items: Option<usize>,
    /// Run directory (default runs/<model>-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory (its best checkpoint) or a .safetensors checkpoint.
    pub checkpoint: PathBuf,
    /// Evaluate on this data instead of the run's own (same catalogue).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// full, exclude-seen, sampled100, or all.
    #[arg(long, default_value = "full")]
    pub protocol: String,
    /// Which held-out item: test (last) or valid (second to last).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

/// Which checkpoint of a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The best validation epoch (best.safetensors).
    Best,
    /// The last epoch trained (last.safetensors).
    Last,
}

#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// A run directory or a .safetensors checkpoint.
    pub checkpoint: PathBuf,
    /// Output directory (default: kernels-<checkpoint name> beside the checkpoint).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Which checkpoint of a run directory [default: best].
    #[arg(long, value_enum)]
    pub which: Option<Which>,
    /// Pixels per matrix cell in the PNGs (default: about 800 px wide).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub scale: Option<u32>,
}

/// Defaults: the ml-1m training shape, sasrec and pasa.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Models to time (repeat the flag or separate by commas).
    #[arg(long = "model", value_name = "NAME", num_args = 1.., value_delimiter = ',',
          default_values_t = bench::DEFAULT_MODELS.map(String::from))]
    pub models: Vec<String>,
    #[arg(long, default_value_t = BenchShape::default().batch)]
    pub batch: usize,
    /// Window length.
    #[arg(long, default_value_t = BenchShape::default().n)]
    pub n: usize,
    /// Model width.
    #[arg(long, default_value_t = BenchShape::default().d)]
    pub d: usize,
    #[arg(long, default_value_t = BenchShape::default().blocks)]
    pub blocks: usize,
    #[arg(long, default_value_t = BenchShape::default().heads)]
    pub heads: usize,
    /// Catalogue size (the output layer's width).
    #[arg(long, default_value_t = BenchShape::default().items)]
    pub items: usize,
    /// Untimed calls of each case first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed calls of each case.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Train(a) => run_train(*a),
        Command::Eval(a) => run_eval(a),
        Command::Kernels(a) => run_kernels(a),
        Command::Data(c) => data::cli::run(c),
        Command::Bench(a) => run_bench(a),
        Command::Info => {
            run_info();
            Ok(())
        }
    }
}

/// The device a command runs on.
pub enum Device {
    Cpu(Cpu<f32>),
    Cuda(Box<Cuda>),
}

impl Device {
    /// Limits of the device's kernels, checked before any work: the CUDA attention kernels
    /// take heads up to MAX_HEAD_WIDTH wide.
    pub fn check_model(&self, m: &ModelConfig) -> Result<()> {
        if matches!(self, Device::Cuda(_)) && m.dh() > MAX_HEAD_WIDTH {
            return Err(Error::arg(
                "--d/--heads",
                format!(
                    "heads of width {} (d {} / {} heads) are past the CUDA attention kernels' \
                     {MAX_HEAD_WIDTH}: use more --heads or --device cpu",
                    m.dh(),
                    m.d,
                    m.heads
                ),
            ));
        }
        Ok(())
    }
}

/// `cuda` must work or it is an error; `auto` takes the GPU when there is one and the build
/// has its kernels, else the CPU with a one-line notice.
pub fn pick_device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu(Cpu::new())),
        DeviceArg::Cuda => Cuda::new(0)
            .map(|c| Device::Cuda(Box::new(c)))
            .map_err(|e| Error::arg("--device cuda", e)),
        DeviceArg::Auto => match cuda_available().and_then(|_| Cuda::new(0)) {
            Ok(c) => Ok(Device::Cuda(Box::new(c))),
            Err(e) => {
                eprintln!("note: running on the CPU: {e}");
                Ok(Device::Cpu(Cpu::new()))
            }
        },
    }
}

/// Run `$body` with `$b` bound to the chosen backend, whichever it is.
macro_rules! on_device {
    ($dev:expr, |$b:ident| $body:expr) => {
        match $dev {
            Device::Cpu($b) => $body,
            Device::Cuda(c) => {
                let $b: &Cuda = c;
                $body
            }
        }
    };
}

/// The name a flag takes for `v` (`toeplitz`, not `Toeplitz`).
fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Load the interactions a configuration names (or generate the synthetic ones).
pub fn load_data(d: &DataConfig) -> Result<Sequences> {
    match &d.path {
        Some(p) => {
            let format = Format::from_str(&d.format, true)
                .map_err(|_| Error::arg("--format", format!("unknown format '{}'", d.format)))?;
            data::load(
                p,
                &LoadOptions {
                    format,
                    kcore: d.kcore,
                    renumber: false,
                },
            )
        }
        None => {
            d.synthetic.check()?;
            Ok(synthetic::generate(&d.synthetic))
        }
    }
}

/// Flags that would change a run's configuration, by name, when given.
fn config_flags(a: &TrainArgs) -> Vec<&'static str> {
    let mut v = vec![];
    macro_rules! given {
        ($($f:ident => $name:literal),* $(,)?) => { $( if a.$f.is_some() { v.push($name); } )* };
    }
    given!(data => "--data", format => "--format", kcore => "--kcore", config => "--config",
        model => "--model", n => "--n", d => "--d", blocks => "--blocks", heads => "--heads",
        d_ff => "--d-ff", dropout => "--dropout", act => "--act", pos_emb => "--pos-emb",
        scores => "--scores", rank => "--rank", u => "--u", l => "--l", reading => "--reading",
        kernel_shared => "--kernel-shared", kernel_per_head => "--kernel-per-head",
        loss => "--loss", batch => "--batch", lr => "--lr", weight_decay => "--weight-decay",
        clip => "--clip", eval_every => "--eval-every", eval_batch => "--eval-batch",
        protocol => "--protocol", seed => "--seed", synthetic_users => "--synthetic-users",
        synthetic_items => "--synthetic-items", out => "--out");
    v
}

/// The configuration of a new run: preset, then the TOML file, then the flags. Also says
/// whether the window length was chosen (by flag or file) rather than defaulted.
pub fn build_config(a: &TrainArgs) -> Result<(TrainConfig, bool)> {
    let (file_model, file_n) = match &a.config {
        Some(p) => peek_model(p)?,
        None => (None, false),
    };
    let name = a
        .model
        .clone()
        .or(file_model)
        .unwrap_or_else(|| "sasrec".into());
    let mut c = TrainConfig::for_model(&name)?;
    if let Some(p) = &a.config {
        c = c.overlay_toml(p)?;
    }
    let m = &mut c.model;
    macro_rules! set {
        ($($src:ident => $dst:expr),* $(,)?) => { $( if let Some(v) = a.$src.clone() { $dst = v; } )* };
    }
    set!(n => m.n, d => m.d, blocks => m.blocks, heads => m.heads, dropout => m.dropout,
        act => m.act, pos_emb => m.pos_emb, scores => m.scores, rank => m.rank, u => m.u,
        l => m.l, reading => m.reading, kernel_shared => m.kernel_shared,
        kernel_per_head => m.kernel_per_head, loss => m.loss);
    // d_ff follows d unless given (DESIGN: d_ff = d by default).
    m.d_ff = a.d_ff.unwrap_or(if a.d.is_some() { m.d } else { m.d_ff });
    set!(epochs => c.epochs, batch => c.batch, eval_every => c.eval_every,
        patience => c.patience, eval_batch => c.eval_batch, protocol => c.protocol,
        seed => c.seed, lr => c.optim.lr, weight_decay => c.optim.weight_decay,
        synthetic_users => c.data.synthetic.users, synthetic_items => c.data.synthetic.items);
    if a.clip.is_some() {
        c.optim.clip = a.clip;
    }
    if let Some(p) = &a.data {
        if a.synthetic_users.is_some() || a.synthetic_items.is_some() {
            return Err(Error::arg(
                "--synthetic-users/--synthetic-items",
                "contradict --data: they shape the built-in dataset only",
            ));
        }
        c.data.path = Some(p.clone());
    }
    if a.format.is_some() || a.kcore.is_some() {
        if c.data.path.is_none() {
            return Err(Error::arg(
                if a.format.is_some() {
                    "--format"
                } else {
                    "--kcore"
                },
                "needs --data",
            ));
        }
        if let Some(f) = a.format {
            c.data.format = value_name(f);
        }
        c.data.kcore = a.kcore.or(c.data.kcore);
    }
    c.check()?;
    Ok((c, a.n.is_some() || file_n))
}

/// The model name a TOML file gives, and whether it sets the window length.
fn peek_model(p: &Path) -> Result<(Option<String>, bool)> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    let v: toml::Value =
        toml::from_str(&text).map_err(|e| Error::in_file(p, format!("not valid TOML: {e}")))?;
    let model = v.get("model");
    let name = model
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .map(String::from);
    Ok((name, model.and_then(|m| m.get("n")).is_some()))
}

fn default_run_dir(model: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{model}-{secs}"))
}

fn run_train(a: TrainArgs) -> Result<()> {
    let dev = pick_device(a.device)?;
    let (cfg, run, resume, n_given) = match &a.resume {
        Some(dir) => {
            // The run's own configuration; only the schedule may be extended.
            if let Some(flag) = config_flags(&a).first() {
                return Err(Error::arg(
                    flag,
                    format!(
                        "contradicts --resume: the run's configuration is {}",
                        dir.join("config.toml").display()
                    ),
                ));
            }
            let run = RunDir(dir.clone());
            let mut cfg = TrainConfig::for_model("sasrec")?.overlay_toml(&run.config())?;
            if let Some(e) = a.epochs {
                cfg.epochs = e;
            }
            if let Some(p) = a.patience {
                cfg.patience = p;
            }
            (cfg, run, true, true)
        }
        None => {
            let (cfg, n_given) = build_config(&a)?;
            let dir = a
                .out
                .clone()
                .unwrap_or_else(|| default_run_dir(&cfg.model.name));
            let run = RunDir(dir);
            if run.last().exists() || run.best().exists() {
                return Err(Error::arg(
                    "--out",
                    format!("{} already holds a run; continue it with --resume {0} or choose another --out", run.0.display()),
                ));
            }
            (cfg, run, false, n_given)
        }
    };
    let seqs = load_data(&cfg.data)?;
    let mut cfg = cfg;
    if resume && cfg.model.items != seqs.num_items {
        return Err(Error::in_file(
            &run.config(),
            format!(
                "the run was trained on {} items but its data now has {}",
                cfg.model.items, seqs.num_items
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
    eprintln!("# configuration\n{}", cfg.to_toml());
    eprintln!(
        "data: {} ({} users, {} items, {} interactions); run directory {}",
        cfg.data
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in synthetic".into()),
        seqs.num_users(),
        seqs.num_items,
        seqs.num_interactions(),
        run.0.display()
    );
    dev.check_model(&cfg.model)?;
    let out = on_device!(&dev, |b| train::train(b, &cfg, &seqs, &run, resume))?;
    let mut secs = out.epoch_secs.clone();
    secs.sort_by(f64::total_cmp);
    let median = secs.get(secs.len() / 2).copied().unwrap_or(0.0);
    println!(
        "trained {} epochs ({}), median epoch {median:.2}s; best validation epoch {}",
        out.epochs_run,
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

/// A checkpoint with the configuration from its sidecar and the model it builds.
pub struct Loaded {
    /// The `.safetensors` file read.
    pub path: PathBuf,
    /// The sidecar (epoch, configuration, …).
    pub meta: Value,
    pub cfg: TrainConfig,
    pub model: Model,
    /// The parameters, laid out as `model.params`.
    pub params: Vec<f32>,
}

/// Load the checkpoint a command names: a run directory (its `which` checkpoint, the best by
/// default) or a `.safetensors` file. Shapes are checked against the sidecar's configuration.
pub fn open_checkpoint(arg: &Path, which: Option<Which>) -> Result<Loaded> {
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
    let sidecar = checkpoint::sidecar_path(&path);
    let cfg: TrainConfig = serde_json::from_value(meta["config"].clone())
        .map_err(|e| Error::in_file(&sidecar, format!("no valid 'config': {e}")))?;
    let model = Model::new(cfg.model.clone()).map_err(|e| Error::in_file(&sidecar, e))?;
    let params = train::unflatten(&model, &tensors, "", &path)?;
    Ok(Loaded {
        path,
        meta,
        cfg,
        model,
        params,
    })
}

fn run_eval(a: EvalArgs) -> Result<()> {
    let dev = pick_device(a.device)?;
    let Loaded {
        path,
        meta,
        mut cfg,
        model,
        params: flat,
    } = open_checkpoint(&a.checkpoint, None)?;
    if let Some(p) = &a.data {
        cfg.data.path = Some(p.clone());
        cfg.data.format = a.format.map(value_name).unwrap_or_else(|| "auto".into());
    } else if a.format.is_some() {
        return Err(Error::arg("--format", "needs --data"));
    }
    let holdout = match a.split.as_str() {
        "test" => Holdout::Test,
        "valid" => Holdout::Valid,
        other => {
            return Err(Error::arg(
                "--split",
                format!("'{other}' is not test or valid"),
            ))
        }
    };
    let protocols: Vec<Protocol> = if a.protocol == "all" {
        vec![Protocol::Full, Protocol::ExcludeSeen, Protocol::Sampled100]
    } else {
        vec![a.protocol.parse()?]
    };
    let seqs = load_data(&cfg.data)?;
    if seqs.num_items != cfg.model.items {
        return Err(Error::msg(format!(
            "{}: the checkpoint scores {} items but the data has {}",
            path.display(),
            cfg.model.items,
            seqs.num_items
        )));
    }
    train::check_window(cfg.model.n, &seqs)?;
    dev.check_model(&cfg.model)?;
    let split = data::split::Split::new(&seqs)?;
    let seed = train::eval_seed(cfg.seed);
    let ms = on_device!(&dev, |b| {
        let params = b.upload(&flat);
        evaluate(
            b,
            &model,
            &params,
            &split,
            holdout,
            &protocols,
            cfg.eval_batch,
            seed,
        )
    });
    if a.json {
        let v: Vec<_> = ms.iter().map(|m| m.to_json()).collect();
        let out = serde_json::json!({"checkpoint": path, "split": holdout.name(), "epoch": meta["epoch"], "metrics": v});
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        println!(
            "{} ({} split, epoch {}):",
            path.display(),
            holdout.name(),
            meta["epoch"]
        );
        for m in ms {
            println!("{m}");
        }
    }
    Ok(())
}

/// `kernels-<checkpoint name>` beside the checkpoint: a run's best and last stay apart.
fn default_kernels_dir(checkpoint: &Path) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let dir = checkpoint.parent().unwrap_or(Path::new(""));
    dir.join(format!("kernels-{stem}"))
}

fn run_kernels(a: KernelsArgs) -> Result<()> {
    let ck = open_checkpoint(&a.checkpoint, a.which)?;
    let mats = kernel_export::collect(&ck.model, &ck.params)?;
    let m = &ck.cfg.model;
    if mats.is_empty() {
        println!(
            "{}: model '{}' learns no positional matrix (U {}, L {}, scores {}): nothing to export",
            ck.path.display(),
            m.name,
            value_name(m.u),
            value_name(m.l),
            value_name(m.scores)
        );
        return Ok(());
    }
    let out = a.out.unwrap_or_else(|| default_kernels_dir(&ck.path));
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let scale = a
        .scale
        .map_or_else(|| heatmap::default_scale(m.n), |s| s as usize);
    println!(
        "{} (epoch {}): {} matrices of {n}×{n}, [i][j] = query i, key j ≤ i; into {}",
        ck.path.display(),
        ck.meta["epoch"],
        mats.len(),
        out.display(),
        n = m.n
    );
    for e in &mats {
        println!("{}", kernel_export::summary(e));
        for f in kernel_export::write(&out, e, scale)? {
            println!("  wrote {}", f.display());
        }
    }
    Ok(())
}

fn run_bench(a: BenchArgs) -> Result<()> {
    let plan = BenchPlan {
        shape: BenchShape {
            batch: a.batch,
            n: a.n,
            d: a.d,
            blocks: a.blocks,
            heads: a.heads,
            items: a.items,
        },
        models: a.models,
        warmup: a.warmup,
        iters: a.iters,
    };
    plan.check()?;
    let dev = pick_device(a.device)?;
    for m in &plan.models {
        dev.check_model(&plan.shape.model(m)?)?;
    }
    on_device!(&dev, |b| {
        let device = b.name();
        if a.json {
            let rows = bench::run(b, &plan, |_| {})?;
            let v = bench::report::to_json(&device, &plan, &rows);
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        } else {
            println!("{}", bench::report::header(&device, &plan));
            bench::run(b, &plan, |m| println!("{}", bench::report::row(m)))?;
        }
        Ok(())
    })
}

fn run_info() {
    println!("pasa {}", env!("CARGO_PKG_VERSION"));
    println!("models: {}", PRESETS.join(", "));
    println!("cpu: {}", Cpu::<f32>::new().name());
    println!("{}", device_info());
}
