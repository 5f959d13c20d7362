//! Layer norm: a row-parallel forward, and a backward that computes dx and the parameter
//! gradients' per-block partials in one pass (fixed row blocks, added in block order).

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

/// Rows per block of the parameter-gradient partials (fixed: the sums do not depend on the
/// thread count).
const LN_BLOCK_ROWS: usize = 256;

/// dx = r·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂)) (overwritten, or added when `accumulate_dx`);
/// dparams = [dgamma | dbeta] += [Σ_rows dy·x̂ | Σ_rows dy], from per-block partials added in
/// block order.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_bwd<T: Real>(
    x: &[T],
    gamma: &[T],
    mean: &[T],
    rstd: &[T],
    dy: &[T],
    dx: &mut [T],
    accumulate_dx: bool,
    dparams: &mut [T],
) {
    let c = gamma.len();
    if c == 0 {
        return;
    }
    let inv_c = T::ONE / T::from_usize(c);
    let blk = LN_BLOCK_ROWS * c;
    let partials: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(blk)
        .zip(x.par_chunks(blk).zip(dy.par_chunks(blk)))
        .zip(
            mean.par_chunks(LN_BLOCK_ROWS)
                .zip(rstd.par_chunks(LN_BLOCK_ROWS)),
        )
        .map(|((dxb, (xb, dyb)), (mb, rb))| {
            let (mut pg, mut pb) = (vec![T::ZERO; c], vec![T::ZERO; c]);
            for (row, (&m, &r)) in mb.iter().zip(rb).enumerate() {
                let (xr, dyr) = (&xb[row * c..][..c], &dyb[row * c..][..c]);
                let dxr = &mut dxb[row * c..][..c];
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
                    let v = r * (gamma[i] * dyr[i] - a - xh * b);
                    dxr[i] = if accumulate_dx { dxr[i] + v } else { v };
                    pg[i] += xh * dyr[i];
                    pb[i] += dyr[i];
                }
            }
            (pg, pb)
        })
        .collect();
    let (mut tg, mut tb) = (vec![T::ZERO; c], vec![T::ZERO; c]);
    for (pg, pb) in partials {
        for i in 0..c {
            tg[i] += pg[i];
            tb[i] += pb[i];
        }
    }
    let (dgamma, dbeta) = dparams.split_at_mut(c);
    for i in 0..c {
        dgamma[i] += tg[i];
        dbeta[i] += tb[i];
    }
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
        accumulate_dx: bool,
        dparams: ViewMut<HostBuf<T>>,
    ) {
        layernorm_bwd(
            s(x),
            s(gamma),
            s(mean),
            s(rstd),
            s(dy),
            sm(dx),
            accumulate_dx,
            sm(dparams),
        );
    }
}
