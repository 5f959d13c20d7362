//! Launchers of `kernels/norm.cu`: layer norm forward, and its backward in two kernels (dx and
//! the parameter gradients' per-block partials, then their sum into the gradients).

use super::launch::{blocks, blocks as blocks_of, int, Arg};
use super::Cuda;
use super::GpuBuf;
use crate::backend::{Norm, View, ViewMut};

type V<'a> = View<'a, GpuBuf>;
type VM<'a> = ViewMut<'a, GpuBuf>;

impl Norm for Cuda {
    fn layernorm_fwd(&self, x: V, gamma: V, beta: V, eps: f32, y: VM, mean: VM, rstd: VM) {
        let cols = gamma.len;
        if cols == 0 {
            return;
        }
        let rows = x.len / cols;
        self.launch(
            "layernorm_fwd",
            (blocks(rows, 8), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(x),
                self.p(gamma),
                self.p(beta),
                self.pm(&y),
                self.pm(&mean),
                self.pm(&rstd),
                int(rows),
                int(cols),
                Arg::F32(eps),
            ],
        );
    }

    fn layernorm_bwd(
        &self,
        x: V,
        gamma: V,
        mean: V,
        rstd: V,
        dy: V,
        dx: VM,
        accumulate_dx: bool,
        dparams: VM,
    ) {
        let cols = gamma.len;
        if cols == 0 {
            return;
        }
        let rows = x.len / cols;
        let (blocks, rows_per_block, warps) = bwd_split(rows, cols);
        let ws = self.alloc(blocks * 2 * cols);
        self.launch(
            "layernorm_bwd",
            (blocks as u32, 1, 1),
            (32 * warps as u32, 1, 1),
            (4 * 2 * warps * cols) as u32,
            &[
                self.p(dy),
                self.p(x),
                self.p(gamma),
                self.p(mean),
                self.p(rstd),
                self.pm(&dx),
                self.pb(&ws),
                int(rows),
                int(cols),
                int(rows_per_block),
                int(accumulate_dx as usize),
            ],
        );
        self.launch(
            "layernorm_bwd_reduce",
            (blocks_of(2 * cols, 256), 1, 1),
            (256, 1, 1),
            0,
            &[self.pb(&ws), self.pm(&dparams), int(blocks), int(cols)],
        );
    }
}

/// The layer-norm backward's split: (blocks, rows per block, warps per block). Blocks of 64
/// rows, at most 1024 of them (a fixed function of the shape: the sums' order does not depend
/// on the device), and as many warps (≤ 8) as 48 KiB of shared partials allow.
pub(super) fn bwd_split(rows: usize, cols: usize) -> (usize, usize, usize) {
    let rows_per_block = rows.div_ceil(1024).max(64);
    let blocks = rows.div_ceil(rows_per_block).max(1);
    let warps = (48 * 1024 / (4 * 2 * cols.max(1))).clamp(1, 8);
    (blocks, rows_per_block, warps)
}
