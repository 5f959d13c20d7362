//! `pasa sweep GRID.toml`: the grid's runs, one `pasa train` run each (the logic and the grid
//! format: [`crate::sweep`]).

use crate::device::DeviceArg;
use crate::error::Result;
use crate::sweep::{self, Options};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The grid file (TOML: root, seeds, [base], [[dataset]], [[run]]).
    pub grid: PathBuf,
    /// Directory of the runs [default: the grid's root, else runs/<grid file stem>]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Device of every run (auto is resolved once, at the start)
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Print each run's state and command, run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(a: SweepArgs) -> Result<()> {
    sweep::sweep(Options {
        grid: a.grid,
        root: a.root,
        device: a.device,
        dry_run: a.dry_run,
    })
}
