//! `pasa eval`: rank the held-out items of a run's data (or other data with the same catalogue)
//! with a checkpoint.

use super::value_name;
use crate::backend::Memory;
use crate::backend::Precision;
use crate::data::split::Split;
use crate::data::Format;
use crate::device::{Device, DeviceArg};
use crate::error::{Error, Result};
use crate::eval::{Metrics, Protocol};
use crate::on_device;
use crate::run::Loaded;
use crate::score::{evaluate, Holdout};
use crate::train;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory (its best checkpoint) or a .safetensors checkpoint.
    pub checkpoint: PathBuf,
    /// Evaluate on this data instead of the run's own (same catalogue) [default: the run's data]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Format of --data
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Ranking protocol
    #[arg(long, value_enum, default_value_t = EvalProtocol::Full)]
    pub protocol: EvalProtocol,
    /// Which held-out item is ranked
    #[arg(long, value_enum, default_value_t = Holdout::Test)]
    pub split: Holdout,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Device to evaluate on
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

/// A ranking protocol, or all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalProtocol {
    /// All items of the catalogue.
    Full,
    /// All items except those already in the user's history.
    ExcludeSeen,
    /// The target and 100 sampled unseen negatives (for comparison with old papers).
    Sampled100,
    /// The three above.
    All,
}

impl EvalProtocol {
    fn protocols(self) -> Vec<Protocol> {
        match self {
            EvalProtocol::Full => vec![Protocol::Full],
            EvalProtocol::ExcludeSeen => vec![Protocol::ExcludeSeen],
            EvalProtocol::Sampled100 => vec![Protocol::Sampled100],
            EvalProtocol::All => vec![Protocol::Full, Protocol::ExcludeSeen, Protocol::Sampled100],
        }
    }
}

pub fn run(a: EvalArgs) -> Result<()> {
    let mut ck = Loaded::open(&a.checkpoint, None)?;
    let own_data = a.data.is_none();
    if let Some(p) = &a.data {
        ck.cfg.data.path = Some(p.clone());
        ck.cfg.data.format = a.format;
    } else if a.format != Format::Auto {
        return Err(Error::arg("--format", "needs --data"));
    }
    let (ms, _) = score(&ck, own_data, a.split, &a.protocol.protocols(), a.device)?;
    let (path, meta) = (&ck.path, &ck.meta);
    if a.json {
        let v: Vec<_> = ms.iter().map(|m| m.to_json()).collect();
        let out = serde_json::json!({"checkpoint": path, "split": value_name(a.split), "epoch": meta["epoch"], "metrics": v});
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        println!(
            "{} ({} split, epoch {}):",
            path.display(),
            value_name(a.split),
            meta["epoch"]
        );
        for m in ms {
            println!("{m}");
        }
    }
    Ok(())
}

/// Ranks the held-out items (`split`) of the data of `ck`'s configuration under `protocols`
/// with its parameters, on `device`: what `pasa eval` prints (`own_data`: the data is the
/// run's own, which errors say). Also the name of the device it ran on.
pub fn score(
    ck: &Loaded,
    own_data: bool,
    split: Holdout,
    protocols: &[Protocol],
    device: DeviceArg,
) -> Result<(Vec<Metrics>, String)> {
    let cfg = &ck.cfg;
    let seqs = cfg.data.load().map_err(|e| {
        if own_data {
            e.note(format!("the data of {}'s configuration", ck.path.display()))
        } else {
            e
        }
    })?;
    if seqs.num_items != cfg.model.items {
        return Err(Error::in_file(
            &ck.path,
            format!(
                "the checkpoint scores {} items but the data has {}",
                cfg.model.items, seqs.num_items
            ),
        ));
    }
    train::check_window(cfg.model.n, &seqs)?;
    let data = Split::new(&seqs).map_err(|e| e.note(super::train::data_name(&cfg.data)))?;
    let dev = Device::pick(device, Precision::Fp32)?;
    dev.check_model(&cfg.model)?;
    let seed = train::eval_seed(cfg.seed);
    Ok(on_device!(&dev, |b| {
        let params = b.upload(&ck.params);
        let ms = evaluate(
            b,
            &ck.model,
            &params,
            &data,
            split,
            protocols,
            cfg.eval_batch,
            seed,
        );
        (ms, b.name())
    }))
}
