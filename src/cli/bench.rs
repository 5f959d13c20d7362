//! `pasa bench`: time the fused attention and whole training steps on one device.

use crate::backend::Memory;
use crate::backend::Precision;
use crate::bench::{self, BenchPlan, BenchShape};
use crate::device::{Device, DeviceArg};
use crate::error::Result;
use crate::on_device;
use clap::Args;

/// Defaults: the ml-1m training shape, sasrec and pasa.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Models to time (repeat the flag or separate by commas).
    #[arg(long = "model", value_name = "NAME", num_args = 1.., value_delimiter = ',',
          default_values_t = bench::DEFAULT_MODELS.map(String::from))]
    pub models: Vec<String>,
    /// Windows per training step
    #[arg(long, default_value_t = BenchShape::default().batch)]
    pub batch: usize,
    /// Window length.
    #[arg(long, default_value_t = BenchShape::default().n)]
    pub n: usize,
    /// Model width.
    #[arg(long, default_value_t = BenchShape::default().d)]
    pub d: usize,
    /// Transformer blocks
    #[arg(long, default_value_t = BenchShape::default().blocks)]
    pub blocks: usize,
    /// Attention heads per block
    #[arg(long, default_value_t = BenchShape::default().heads)]
    pub heads: usize,
    /// Catalogue size (the output layer's width).
    #[arg(long, default_value_t = BenchShape::default().items)]
    pub items: usize,
    /// Rows per chunk of the cross-entropy loss [default: sized from the catalogue, as in
    /// `pasa train`].
    #[arg(long, value_name = "ROWS")]
    pub ce_chunk: Option<usize>,
    /// Untimed calls of each case first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed calls of each case.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Time every named range (tape op, backward, optimiser) within the timed training steps:
    /// CUDA events on the GPU, the wall clock on the CPU.
    #[arg(long)]
    pub profile: bool,
    /// Device to time
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Arithmetic of the GPU's products: fp32 (f32 results; the attention through split TF32
    /// tensor-core products), tf32 (TF32 products, about 1e-3 relative error, faster) or bf16
    /// (bf16 operands, f32 accumulation, about 4e-3 relative error per operand; data stays f32
    /// in memory); the CPU always computes in f32
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let plan = BenchPlan {
        shape: BenchShape {
            batch: a.batch,
            n: a.n,
            d: a.d,
            blocks: a.blocks,
            heads: a.heads,
            items: a.items,
            ce_chunk: a.ce_chunk,
        },
        models: a.models,
        warmup: a.warmup,
        iters: a.iters,
        profile: a.profile,
    };
    plan.check()?;
    let dev = Device::pick(a.device, a.precision)?;
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
            bench::run(b, &plan, |m| println!("{}", bench::report::rows(m)))?;
        }
        Ok(())
    })
}
