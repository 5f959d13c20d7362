//! Layer norm: a row-parallel forward and backward; the parameter gradients are column sums
//! (fixed row blocks, see [`super::dense::col_sum`]).

use super::real::Real;
use super::{s, sm, Cpu, HostBuf};
use crate::backend::{Norm, View, ViewMut};
use rayon::prelude::*;

pub fn layernorm_fwd<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    eps: f32,
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
) {
    let c = gamma.len();
    let inv_c = T::ONE / T::from_usize(c);
    y.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .for_each(|((yr, xr), (mu, rs))| {
            let m = xr.iter().copied().sum::<T>() * inv_c;
            let var = xr.iter().map(|&v| (v - m) * (v - m)).sum::<T>() * inv_c;
            let r = T::ONE / (var + T::from_f32(eps)).sqrt();
            for i in 0..c {
                yr[i] = (xr[i] - m) * r * gamma[i] + beta[i];
            }
            *mu = m;
            *rs = r;
        });
}

#[allow(clippy::too_many_arguments)]
pub fn layernorm_bwd<T: Real>(
    x: &[T],
    gamma: &[T],
    mean: &[T],
    rstd: &[T],
    dy: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let c = gamma.len();
    let inv_c = T::ONE / T::from_usize(c);
    // dx_i = r·(g_i dy_i − mean(g·dy) − x̂_i·mean(g·dy·x̂)).
    dx.par_chunks_mut(c)
        .zip(x.par_chunks(c).zip(dy.par_chunks(c)))
        .zip(mean.par_iter().zip(rstd.par_iter()))
        .for_each(|((dxr, (xr, dyr)), (&m, &r))| {
            let (mut a, mut b) = (T::ZERO, T::ZERO);
            for i in 0..c {
                let gd = gamma[i] * dyr[i];
                a += gd;
                b += gd * (xr[i] - m) * r;
            }
            a *= inv_c;
            b *= inv_c;
            for i in 0..c {
                let xh = (xr[i] - m) * r;
                dxr[i] = r * (gamma[i] * dyr[i] - a - xh * b);
            }
        });
    // dgamma = Σ_rows dy·x̂, dbeta = Σ_rows dy: the normalised rows are recomputed.
    let mut xhat_dy = vec![T::ZERO; x.len()];
    xhat_dy
        .par_chunks_mut(c)
        .zip(x.par_chunks(c).zip(dy.par_chunks(c)))
        .zip(mean.par_iter().zip(rstd.par_iter()))
        .for_each(|((o, (xr, dyr)), (&m, &r))| {
            for i in 0..c {
                o[i] = (xr[i] - m) * r * dyr[i];
            }
        });
    super::dense::col_sum(&xhat_dy, dgamma);
    super::dense::col_sum(dy, dbeta);
}

impl<T: Real> Norm for Cpu<T> {
    fn layernorm_fwd(
        &self,
        x: View<HostBuf<T>>,
        gamma: View<HostBuf<T>>,
        beta: View<HostBuf<T>>,
        eps: f32,
        y: ViewMut<HostBuf<T>>,
        mean: ViewMut<HostBuf<T>>,
        rstd: ViewMut<HostBuf<T>>,
    ) {
        layernorm_fwd(s(x), s(gamma), s(beta), eps, sm(y), sm(mean), sm(rstd));
    }
    fn layernorm_bwd(
        &self,
        x: View<HostBuf<T>>,
        gamma: View<HostBuf<T>>,
        mean: View<HostBuf<T>>,
        rstd: View<HostBuf<T>>,
        dy: View<HostBuf<T>>,
        dx: ViewMut<HostBuf<T>>,
        dgamma: ViewMut<HostBuf<T>>,
        dbeta: ViewMut<HostBuf<T>>,
    ) {
        layernorm_bwd(
            s(x),
            s(gamma),
            s(mean),
            s(rstd),
            s(dy),
            sm(dx),
            sm(dgamma),
            sm(dbeta),
        );
    }
}
