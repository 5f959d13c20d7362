//! Adam (with decoupled weight decay) over the flat parameter buffer.

use super::real::Real;
use super::{s, sm, Cpu, HostBuf};
use crate::backend::{AdamStep, Optim, View, ViewMut};
use rayon::prelude::*;

pub fn adam<T: Real>(st: &AdamStep, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let (b1, b2) = (st.beta1 as f64, st.beta2 as f64);
    let bc1 = T::from_f64(1.0 - b1.powi(st.step as i32));
    let bc2 = T::from_f64(1.0 - b2.powi(st.step as i32));
    let (b1, b2) = (T::from_f64(b1), T::from_f64(b2));
    let (lr, eps, wd, gs) = (
        T::from_f32(st.lr),
        T::from_f32(st.eps),
        T::from_f32(st.weight_decay),
        T::from_f32(st.grad_scale),
    );
    p.par_iter_mut()
        .zip(g.par_iter())
        .zip(m.par_iter_mut().zip(v.par_iter_mut()))
        .for_each(|((p, &g), (m, v))| {
            let g = g * gs;
            *m = b1 * *m + (T::ONE - b1) * g;
            *v = b2 * *v + (T::ONE - b2) * g * g;
            let mhat = *m / bc1;
            let vhat = *v / bc2;
            *p -= lr * (mhat / (vhat.sqrt() + eps) + wd * *p);
        });
}

impl<T: Real> Optim for Cpu<T> {
    fn adam(
        &self,
        st: &AdamStep,
        params: ViewMut<HostBuf<T>>,
        grads: View<HostBuf<T>>,
        m: ViewMut<HostBuf<T>>,
        v: ViewMut<HostBuf<T>>,
    ) {
        adam(st, sm(params), s(grads), sm(m), sm(v));
    }
}
