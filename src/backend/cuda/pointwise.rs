//! Launchers of `kernels/pointwise.cu`: activations, dropout, padding-row masks and the
//! rotary embedding.

use super::launch::{blocks, int, size, Arg};
use super::Cuda;
use super::{GpuBuf, GpuInts};
use crate::backend::{Activation, Pointwise, View, ViewMut};

type V<'a> = View<'a, GpuBuf>;
type VM<'a> = ViewMut<'a, GpuBuf>;

impl Pointwise for Cuda {
    fn act_fwd(&self, act: Activation, x: V, y: VM) {
        let n = x.len.min(y.len);
        let name = match act {
            Activation::Relu => "relu_fwd",
            Activation::Gelu => "gelu_fwd",
        };
        self.launch_flat(name, n, &[self.p(x), self.pm(&y), size(n)]);
    }

    fn act_bwd(&self, act: Activation, x: V, dy: V, dx: VM) {
        let n = x.len.min(dx.len);
        let name = match act {
            Activation::Relu => "relu_bwd",
            Activation::Gelu => "gelu_bwd",
        };
        self.launch_flat(name, n, &[self.p(x), self.p(dy), self.pm(&dx), size(n)]);
    }

    fn dropout(&self, x: V, p: f32, seed: u64, y: VM) {
        let n = x.len.min(y.len);
        self.launch_flat(
            "dropout_fwd",
            n,
            &[self.p(x), self.pm(&y), size(n), Arg::F32(p), Arg::U64(seed)],
        );
    }

    fn row_mask(&self, x: VM, start: &GpuInts, n: usize) {
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
