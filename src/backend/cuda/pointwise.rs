//! Launchers of `kernels/elementwise.cu`: fills, axpy, reductions, bias, column sums, layer
//! norm, activations, dropout, padding masks and rotary embeddings.

use super::launch::{blocks, int, size, Arg};
use super::Cuda;
use crate::backend::{Activation, DeviceBuf, View, ViewMut};
use cudarc::driver::CudaSlice;

type V<'a> = View<'a, CudaSlice<f32>>;
type VM<'a> = ViewMut<'a, CudaSlice<f32>>;

/// Row chunks (grid.y) of the two-stage column sums: enough blocks to fill the device for
/// tall inputs, one chunk (no second stage) for short ones.
fn col_chunks(rows: usize) -> usize {
    rows.div_ceil(64).clamp(1, 128)
}

/// Blocks of the first stage of a full-buffer reduction (partials summed by one block).
fn reduce_blocks(count: usize) -> usize {
    count.div_ceil(256).clamp(1, 1024)
}

impl Cuda {
    pub(super) fn fill_impl(&self, x: VM, value: f32) {
        let n = x.len;
        self.launch_flat("fill_f32", n, &[self.pm(&x), Arg::F32(value), size(n)]);
    }

    pub(super) fn axpy_impl(&self, alpha: f32, x: V, y: VM) {
        let n = x.len.min(y.len);
        self.launch_flat(
            "axpy_f32",
            n,
            &[self.pm(&y), self.p(x), Arg::F32(alpha), size(n)],
        );
    }

    /// Σ x (`squares` false) or Σ x² on the device: per-block partials, one block to finish,
    /// one float back to the host.
    pub(super) fn reduce_impl(&self, x: V, squares: bool) -> f64 {
        let n = x.len;
        if n == 0 {
            return 0.0;
        }
        let g = reduce_blocks(n);
        let partials = self.alloc(g);
        let out = self.alloc(1);
        let first = if squares { "sumsq" } else { "sum_part" };
        self.launch(
            first,
            (g as u32, 1, 1),
            (256, 1, 1),
            0,
            &[self.p(x), size(n), self.pb(&partials)],
        );
        self.launch(
            "sum_f32",
            (1, 1, 1),
            (256, 1, 1),
            0,
            &[self.pb(&partials), size(g), self.pb(&out)],
        );
        self.download_impl(out.view())[0] as f64
    }

    pub(super) fn bias_add_impl(&self, x: VM, bias: V) {
        let cols = bias.len;
        if cols == 0 {
            return;
        }
        let rows = x.len / cols;
        self.launch_flat(
            "bias_add",
            rows * cols,
            &[self.pm(&x), self.p(bias), int(rows), int(cols)],
        );
    }

    /// out[c] = Σ_r x[r, c] over `rows` rows of `out.len` columns (overwrites out).
    pub(super) fn col_sum_impl(&self, x: Arg, rows: usize, out: VM) {
        let cols = out.len;
        if cols == 0 {
            return;
        }
        let g = col_chunks(rows);
        let gx = blocks(cols, 32);
        if g == 1 {
            self.launch(
                "col_sum",
                (gx, 1, 1),
                (32, 8, 1),
                0,
                &[x, self.pm(&out), int(rows), int(cols), int(0)],
            );
            return;
        }
        let ws = self.alloc(g * cols);
        self.launch(
            "col_sum",
            (gx, g as u32, 1),
            (32, 8, 1),
            0,
            &[x, self.pb(&ws), int(rows), int(cols), int(0)],
        );
        self.launch(
            "col_sum",
            (gx, 1, 1),
            (32, 8, 1),
            0,
            &[self.pb(&ws), self.pm(&out), int(g), int(cols), int(0)],
        );
    }

    pub(super) fn layernorm_fwd_impl(
        &self,
        x: V,
        gamma: V,
        beta: V,
        eps: f32,
        (y, mean, rstd): (VM, VM, VM),
    ) {
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn layernorm_bwd_impl(
        &self,
        x: V,
        gamma: V,
        mean: V,
        rstd: V,
        dy: V,
        dx: VM,
        dgamma: VM,
        dbeta: VM,
    ) {
        let cols = gamma.len;
        if cols == 0 {
            return;
        }
        let rows = x.len / cols;
        self.launch(
            "layernorm_bwd",
            (blocks(rows, 8), 1, 1),
            (256, 1, 1),
            0,
            &[
                self.p(dy),
                self.p(x),
                self.p(gamma),
                self.p(mean),
                self.p(rstd),
                self.pm(&dx),
                int(rows),
                int(cols),
            ],
        );
        // dgamma, dbeta: per-chunk partials, then column sums of the partials. With a single
        // chunk the partials are the answer and go straight to the outputs.
        let g = col_chunks(rows);
        let grid = (blocks(cols, 32), g as u32, 1);
        let params = |wg: Arg, wb: Arg| {
            self.launch(
                "layernorm_bwd_params",
                grid,
                (32, 8, 1),
                0,
                &[
                    self.p(dy),
                    self.p(x),
                    self.p(mean),
                    self.p(rstd),
                    wg,
                    wb,
                    int(rows),
                    int(cols),
                ],
            )
        };
        if g == 1 {
            params(self.pm(&dgamma), self.pm(&dbeta));
            return;
        }
        let (wg, wb) = (self.alloc(g * cols), self.alloc(g * cols));
        params(self.pb(&wg), self.pb(&wb));
        self.col_sum_impl(self.pb(&wg), g, dgamma);
        self.col_sum_impl(self.pb(&wb), g, dbeta);
    }

    pub(super) fn act_fwd_impl(&self, act: Activation, x: V, y: VM) {
        let n = x.len.min(y.len);
        let name = match act {
            Activation::Relu => "relu_fwd",
            Activation::Gelu => "gelu_fwd",
        };
        self.launch_flat(name, n, &[self.p(x), self.pm(&y), size(n)]);
    }

    pub(super) fn act_bwd_impl(&self, act: Activation, x: V, dy: V, dx: VM) {
        let n = x.len.min(dx.len);
        let name = match act {
            Activation::Relu => "relu_bwd",
            Activation::Gelu => "gelu_bwd",
        };
        self.launch_flat(name, n, &[self.p(x), self.p(dy), self.pm(&dx), size(n)]);
    }

    pub(super) fn dropout_impl(&self, x: V, p: f32, seed: u64, y: VM) {
        let n = x.len.min(y.len);
        self.launch_flat(
            "dropout_fwd",
            n,
            &[self.p(x), self.pm(&y), size(n), Arg::F32(p), Arg::U64(seed)],
        );
    }

    pub(super) fn row_mask_impl(&self, x: VM, start: &CudaSlice<u32>, n: usize) {
        let windows = start.len();
        if windows == 0 || n == 0 {
            return;
        }
        let cols = x.len / (windows * n);
        self.launch(
            "row_mask",
            (blocks(windows * n, 1), 1, 1),
            (256, 1, 1),
            0,
            &[self.pm(&x), self.pb(start), int(n), int(cols)],
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn rope_impl(&self, x: V, n: usize, heads: usize, dh: usize, inverse: bool, y: VM) {
        if n == 0 || heads == 0 || dh == 0 {
            return;
        }
        let batch = x.len / (n * heads * dh);
        let slots = batch * n * heads * dh.div_ceil(2);
        let name = if inverse { "rope_bwd" } else { "rope_fwd" };
        self.launch_flat(
            name,
            slots,
            &[
                self.p(x),
                self.pm(&y),
                int(batch),
                int(n),
                int(heads),
                int(dh),
            ],
        );
    }
}
