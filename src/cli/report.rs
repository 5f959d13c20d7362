//! `pasa report ROOT…`: a Markdown page of the runs under the roots, with its pictures (the
//! logic: [`crate::report`]).

use crate::device::DeviceArg;
use crate::error::Result;
use crate::report::{self, Options};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Directories holding run directories (as `pasa sweep` lays them out, or any).
    #[arg(required = true)]
    pub roots: Vec<PathBuf>,
    /// The page to write; pictures go to results/ beside it [default: <first root>/RESULTS.md]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Markdown notes written by hand: the text under `## <dataset>` goes into that dataset's
    /// section, the text before the first heading under the introduction
    #[arg(long, value_name = "FILE")]
    pub notes: Option<PathBuf>,
    /// Device that scores runs without test-exclude-seen.json
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.roots[0].join("RESULTS.md"));
    let pictures = report::report(&Options {
        roots: a.roots,
        out: out.clone(),
        device: a.device,
        notes: a.notes,
    })?;
    println!("wrote {} and {} pictures", out.display(), pictures.len());
    Ok(())
}
