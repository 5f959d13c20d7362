//! Launcher of `kernels/optim.cu`: one Adam launch over the flat parameter buffer.

use super::launch::{to_i32, FLAT_BLOCK};
use super::params::AdamParams;
use super::Cuda;
use super::GpuBuf;
use crate::backend::{AdamStep, Optim, View, ViewMut};

type VM<'a> = ViewMut<'a, GpuBuf>;

impl Optim for Cuda {
    fn adam(&self, st: &AdamStep, params: VM, grads: View<GpuBuf>, m: VM, v: VM) {
        let n = params.len.min(grads.len).min(m.len).min(v.len);
        let p = AdamParams {
            param: self.ptr_mut(&params),
            grad: self.ptr(grads),
            m: self.ptr_mut(&m),
            v: self.ptr_mut(&v),
            count: n as u64,
            lr: st.lr,
            beta1: st.beta1,
            beta2: st.beta2,
            eps: st.eps,
            weight_decay: st.weight_decay,
            step: to_i32(st.step as usize),
            grad_scale: st.grad_scale,
            pad: 0,
        };
        let grid = (self.flat_grid(n), 1, 1);
        self.launch_params("adam", grid, (FLAT_BLOCK, 1, 1), 0, &p);
    }
}
