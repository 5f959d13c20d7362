//! Launchers of `kernels/mma_check.cu`: one tensor-core product on given operands, so that
//! tests can hold the fragment layouts of `kernels/mma.cuh` (on the GPU and on the emulation)
//! against a scalar product.

use super::Cuda;
use crate::backend::{DeviceBuf, Memory};

/// The operand types and fragment shapes of `kernels/mma.cuh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmaShape {
    /// m16n8k8, TF32 operands (rounded to nearest, ties away), f32 accumulation.
    Tf32,
    /// m16n8k8 three times: operands split into TF32 hi + lo, hi·hi + hi·lo + lo·hi.
    SplitTf32,
    /// m16n8k16, bf16 operands (rounded to nearest even), f32 accumulation.
    Bf16,
    /// m16n8k8, bf16 operands (rounded to nearest even), f32 accumulation: the attention's
    /// bf16 mode.
    Bf16K8,
}

impl MmaShape {
    /// (m, n, k) of one product.
    pub fn dims(self) -> (usize, usize, usize) {
        match self {
            MmaShape::Tf32 | MmaShape::SplitTf32 | MmaShape::Bf16K8 => (16, 8, 8),
            MmaShape::Bf16 => (16, 8, 16),
        }
    }
    fn kernel(self) -> &'static str {
        match self {
            MmaShape::Tf32 => "mma_check_tf32",
            MmaShape::SplitTf32 => "mma_check_split",
            MmaShape::Bf16 => "mma_check_bf16",
            MmaShape::Bf16K8 => "mma_check_bf16_k8",
        }
    }
}

impl Cuda {
    /// D = A·B + C through one warp's mma (row-major a m×k, b k×n, c m×n); returns D
    /// row-major.
    pub fn mma_check(&self, shape: MmaShape, a: &[f32], b: &[f32], c: &[f32]) -> Vec<f32> {
        let (m, n, k) = shape.dims();
        assert!(
            a.len() == m * k && b.len() == k * n && c.len() == m * n,
            "mma_check: operands of {m}×{k}, {k}×{n} and {m}×{n} expected"
        );
        let (da, db, dc) = (self.upload(a), self.upload(b), self.upload(c));
        let d = self.zeroed(m * n);
        self.launch(
            shape.kernel(),
            (1, 1, 1),
            (32, 1, 1),
            0,
            &[self.pb(&da), self.pb(&db), self.pb(&dc), self.pb(&d)],
        );
        self.download(d.view())
    }
}
