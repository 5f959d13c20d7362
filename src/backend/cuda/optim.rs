//! Launcher of `kernels/optim.cu`: one Adam launch over the flat parameter buffer.

use super::launch::{size, to_i32, Arg};
use super::Cuda;
use crate::backend::{AdamStep, View, ViewMut};
use cudarc::driver::CudaSlice;

type VM<'a> = ViewMut<'a, CudaSlice<f32>>;

impl Cuda {
    pub(super) fn adam_impl(
        &self,
        st: &AdamStep,
        params: VM,
        grads: View<CudaSlice<f32>>,
        m: VM,
        v: VM,
    ) {
        let n = params.len.min(grads.len).min(m.len).min(v.len);
        self.launch_flat(
            "adam",
            n,
            &[
                self.pm(&params),
                self.p(grads),
                self.pm(&m),
                self.pm(&v),
                size(n),
                Arg::F32(st.lr),
                Arg::F32(st.beta1),
                Arg::F32(st.beta2),
                Arg::F32(st.eps),
                Arg::F32(st.weight_decay),
                Arg::I32(to_i32(st.step as usize)),
                Arg::F32(st.grad_scale),
            ],
        );
    }
}
