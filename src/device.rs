//! Choosing the device a command runs on: `--device auto|cpu|cuda`.

use crate::backend::cpu::Cpu;
use crate::backend::cuda::{cuda_available, Cuda, MAX_HEAD_WIDTH};
use crate::backend::Precision;
use crate::error::{Error, Result};
use crate::models::ModelConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The GPU when there is one and the build has its kernels, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// The device a command runs on.
pub enum Device {
    Cpu(Cpu<f32>),
    Cuda(Box<Cuda>),
}

impl Device {
    /// `cuda` must work or it is an error; `auto` takes the GPU when there is one and the build
    /// has its kernels, else the CPU with a one-line notice. `precision` sets the GPU's
    /// arithmetic; the CPU computes in f32, so another precision there is an error when the CPU
    /// was asked for and a note when `auto` fell back to it.
    pub fn pick(d: DeviceArg, precision: Precision) -> Result<Device> {
        let on_cpu_anyway = |note: bool| -> Result<Device> {
            if precision != Precision::Fp32 {
                let msg = format!(
                    "the CPU computes in f32; --precision {} applies to --device cuda only",
                    precision_name(precision)
                );
                if !note {
                    return Err(Error::arg("--precision", msg));
                }
                eprintln!("note: {msg}");
            }
            Ok(Device::Cpu(Cpu::new()))
        };
        let on_gpu = |mut c: Cuda| -> Result<Device> {
            c.set_precision(precision)?;
            Ok(Device::Cuda(Box::new(c)))
        };
        match d {
            DeviceArg::Cpu => on_cpu_anyway(false),
            DeviceArg::Cuda => Cuda::new(0)
                .map_err(|e| Error::arg("--device cuda", e))
                .and_then(on_gpu),
            DeviceArg::Auto => match cuda_available().and_then(|_| Cuda::new(0)) {
                Ok(c) => on_gpu(c),
                Err(e) => {
                    eprintln!("note: running on the CPU: {e}");
                    on_cpu_anyway(true)
                }
            },
        }
    }

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

/// `--precision`'s spelling of `p`.
pub fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "fp32",
        Precision::Tf32 => "tf32",
        Precision::Bf16 => "bf16",
    }
}

/// Run `$body` with `$b` bound to the device's backend, whichever it is.
#[macro_export]
macro_rules! on_device {
    ($dev:expr, |$b:ident| $body:expr) => {
        match $dev {
            $crate::device::Device::Cpu($b) => $body,
            $crate::device::Device::Cuda(c) => {
                let $b: &$crate::backend::cuda::Cuda = c;
                $body
            }
        }
    };
}
