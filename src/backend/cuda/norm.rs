//! Launchers of `kernels/norm.cu`: layer norm forward and backward; the parameter gradients
//! are per-chunk partials finished by the dense family's column sum.

use super::dense::col_chunks;
use super::launch::{blocks, int, Arg};
use super::Cuda;
use super::GpuBuf;
use crate::backend::{Dense, DeviceBuf, Norm, View, ViewMut};

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
        let (wg, wb) = (self.zeroed(g * cols), self.zeroed(g * cols));
        params(self.pb(&wg), self.pb(&wb));
        self.col_sum(wg.view(), dgamma);
        self.col_sum(wb.view(), dbeta);
    }
}
