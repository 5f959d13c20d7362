//! The command line: `pasa train | eval | kernels | sweep | report | data | bench | info`, one module per
//! command. Every command returns an [`Error`](crate::Error) for bad input; `main` prints it on
//! one line and exits with status 2.

mod bench;
mod eval;
mod kernels;
mod report;
mod sweep;
mod train;

use crate::backend::cpu::Cpu;
use crate::backend::cuda::device_info;
use crate::backend::Memory;
use crate::data::cli::DataCommand;
use crate::error::Result;
use crate::models::PRESETS;
use clap::{Parser, Subcommand};

pub use bench::BenchArgs;
pub use eval::score as eval_score;
pub use eval::EvalArgs;
pub use kernels::KernelsArgs;
pub use report::ReportArgs;
pub use sweep::SweepArgs;
pub use train::{execute as train_execute, parse_args as train_parse_args, TrainArgs};

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
    /// Export the learned positional matrices (U, L, learned P) as CSV, PNG heatmaps and
    /// distance profiles.
    Kernels(KernelsArgs),
    /// Convert datasets and print their statistics.
    #[command(subcommand)]
    Data(DataCommand),
    /// Run a grid of configurations × datasets × seeds, each a `pasa train` run in its own
    /// directory; finished runs are skipped, interrupted ones resumed.
    Sweep(SweepArgs),
    /// Sum up the runs under one or more directories in a Markdown page with pictures.
    Report(ReportArgs),
    /// Time the fused attention op and whole training steps on one device.
    Bench(BenchArgs),
    /// Print the build, the devices and the kernels present.
    Info,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Kernels(a) => kernels::run(a),
        Command::Data(c) => crate::data::cli::run(c),
        Command::Sweep(a) => sweep::run(a),
        Command::Report(a) => report::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Info => {
            println!("pasa {}", env!("CARGO_PKG_VERSION"));
            println!("models: {}", PRESETS.join(", "));
            println!("cpu: {}", Cpu::<f32>::new().name());
            println!("{}", device_info());
            Ok(())
        }
    }
}

/// The name a flag takes for `v` (`toeplitz`, not `Toeplitz`).
pub(crate) fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}
