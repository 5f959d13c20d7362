//! `pasa kernels`: export the learned positional matrices of a checkpoint as CSV and PNG.

use super::value_name;
use crate::error::{Error, Result};
use crate::heatmap;
use crate::kernel_export;
use crate::run::{Loaded, Which};
use clap::Args;
use std::path::{Path, PathBuf};

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

/// `kernels-<checkpoint name>` beside the checkpoint: a run's best and last stay apart.
fn default_kernels_dir(checkpoint: &Path) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let dir = checkpoint.parent().unwrap_or(Path::new(""));
    dir.join(format!("kernels-{stem}"))
}

pub fn run(a: KernelsArgs) -> Result<()> {
    let ck = Loaded::open(&a.checkpoint, a.which)?;
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
    if let Some(f) = kernel_export::write_profiles(&out, &mats)? {
        println!("wrote {}", f.display());
    }
    Ok(())
}
