//! Launchers of `kernels/pointwise.cu`: activations (with their dropout), the residual add
//! (dropout and padding-row mask fused in) and the rotary embedding.

use super::launch::{int, size, Arg};
use super::Cuda;
use super::{GpuBuf, GpuInts};
use crate::backend::{Activation, Dropout, Pointwise, RowMask, View, ViewMut};

type V<'a> = View<'a, GpuBuf>;
type VM<'a> = ViewMut<'a, GpuBuf>;

impl Cuda {
    /// Zeroes the padding rows of `[batch·n, cols]` in place (for the mix reading).
    pub(super) fn row_mask(&self, x: VM, start: &GpuInts, n: usize) {
        let windows = start.len();
        if windows == 0 || n == 0 {
            return;
        }
        let cols = x.len / (windows * n);
        self.launch(
            "row_mask",
            ((windows * n) as u32, 1, 1),
            (256, 1, 1),
            0,
            &[self.pm(&x), self.pb(start), int(n), int(cols)],
        );
    }

    /// The pointer, window length and row width of an optional padding-row mask of a
    /// `len`-element `[batch·n, cols]` tensor (null and 1, 1 without one).
    fn mask_args(&self, mask: Option<RowMask<'_, GpuInts>>, len: usize) -> [Arg; 3] {
        match mask {
            Some(m) if m.n > 0 && !m.start.is_empty() => {
                let cols = len / (m.start.len() * m.n);
                [self.pb(m.start), int(m.n), int(cols.max(1))]
            }
            _ => [Arg::Ptr(0), int(1), int(1)],
        }
    }
}

impl Pointwise for Cuda {
    fn act_fwd(&self, act: Activation, d: Dropout, x: V, y: VM) {
        let n = x.len.min(y.len);
        let name = match act {
            Activation::Relu => "relu_fwd",
            Activation::Gelu => "gelu_fwd",
        };
        let args = [
            self.p(x),
            self.pm(&y),
            size(n),
            Arg::F32(d.p),
            Arg::U64(d.seed),
        ];
        self.launch_flat(name, n, &args);
    }

    fn act_bwd(&self, act: Activation, d: Dropout, x: V, dy: V, dx: VM) {
        let n = x.len.min(dx.len);
        let name = match act {
            Activation::Relu => "relu_bwd",
            Activation::Gelu => "gelu_bwd",
        };
        let args = [
            self.p(x),
            self.p(dy),
            self.pm(&dx),
            size(n),
            Arg::F32(d.p),
            Arg::U64(d.seed),
        ];
        self.launch_flat(name, n, &args);
    }

    fn residual_fwd(
        &self,
        x: Option<V>,
        o: V,
        d: Dropout,
        mask: Option<RowMask<'_, GpuInts>>,
        y: VM,
    ) {
        let count = o.len.min(y.len);
        let mut args = vec![Arg::Ptr(self.ptr_opt(x)), self.p(o), self.pm(&y)];
        args.extend(self.mask_args(mask, count));
        args.extend([size(count), Arg::F32(d.p), Arg::U64(d.seed)]);
        self.launch_flat("residual_fwd", count, &args);
    }

    fn residual_bwd(
        &self,
        dy: V,
        d: Dropout,
        mask: Option<RowMask<'_, GpuInts>>,
        dx: Option<VM>,
        d_o: VM,
    ) {
        let count = dy.len.min(d_o.len);
        let dx_arg = dx.as_ref().map_or(Arg::Ptr(0), |dx| self.pm(dx));
        let mut args = vec![self.p(dy), dx_arg, self.pm(&d_o)];
        args.extend(self.mask_args(mask, count));
        args.extend([size(count), Arg::F32(d.p), Arg::U64(d.seed)]);
        self.launch_flat("residual_bwd", count, &args);
    }

    fn rope(&self, x: V, n: usize, heads: usize, dh: usize, inverse: bool, y: VM) {
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
