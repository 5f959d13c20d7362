//! Layer norm, activations, dropout, padding masks, rotary embeddings and embedding lookups.

use super::real::Real;
use crate::backend::Activation;
use crate::rng;
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

const GELU_K: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_C: f64 = 0.044_715;

pub fn act_fwd<T: Real>(act: Activation, x: &[T], y: &mut [T]) {
    let (k, c) = (T::from_f64(GELU_K), T::from_f64(GELU_C));
    let half = T::from_f32(0.5);
    y.par_iter_mut().zip(x.par_iter()).for_each(|(y, &x)| {
        *y = match act {
            Activation::Relu => x.max(T::ZERO),
            Activation::Gelu => half * x * (T::ONE + (k * (x + c * x * x * x)).tanh()),
        }
    });
}

pub fn act_bwd<T: Real>(act: Activation, x: &[T], dy: &[T], dx: &mut [T]) {
    let (k, c) = (T::from_f64(GELU_K), T::from_f64(GELU_C));
    let (half, three) = (T::from_f32(0.5), T::from_f32(3.0));
    dx.par_iter_mut()
        .zip(x.par_iter().zip(dy.par_iter()))
        .for_each(|(dx, (&x, &g))| {
            *dx = match act {
                Activation::Relu => {
                    if x > T::ZERO {
                        g
                    } else {
                        T::ZERO
                    }
                }
                Activation::Gelu => {
                    let t = (k * (x + c * x * x * x)).tanh();
                    let dt = (T::ONE - t * t) * k * (T::ONE + three * c * x * x);
                    g * half * (T::ONE + t + x * dt)
                }
            }
        });
}

pub fn dropout<T: Real>(x: &[T], p: f32, seed: u64, y: &mut [T]) {
    if p <= 0.0 {
        y.copy_from_slice(x);
        return;
    }
    let s = T::from_f32(1.0 / (1.0 - p));
    y.par_iter_mut()
        .zip(x.par_iter())
        .enumerate()
        .for_each(|(i, (y, &x))| {
            *y = if rng::keep(seed, i as u64, p) {
                x * s
            } else {
                T::ZERO
            };
        });
}

pub fn row_mask<T: Real>(x: &mut [T], start: &[u32], n: usize) {
    let cols = x.len() / (start.len() * n).max(1);
    x.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        if ((r % n) as u32) < start[r / n] {
            row.fill(T::ZERO);
        }
    });
}

/// θ_c = 10000^(−2c/dh) for pair c of a head.
pub fn rope_theta(c: usize, dh: usize) -> f64 {
    10000f64.powf(-2.0 * c as f64 / dh as f64)
}

pub fn rope<T: Real>(x: &[T], n: usize, heads: usize, dh: usize, inverse: bool, y: &mut [T]) {
    let width = heads * dh;
    let sign = if inverse { -1.0 } else { 1.0 };
    y.par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .enumerate()
        .for_each(|(r, (yr, xr))| {
            let i = (r % n) as f64;
            for h in 0..heads {
                let base = h * dh;
                for c in 0..dh / 2 {
                    let ang = sign * i * rope_theta(c, dh);
                    let (sn, cs) = (T::from_f64(ang.sin()), T::from_f64(ang.cos()));
                    let (a, b) = (xr[base + 2 * c], xr[base + 2 * c + 1]);
                    yr[base + 2 * c] = a * cs - b * sn;
                    yr[base + 2 * c + 1] = a * sn + b * cs;
                }
                if dh % 2 == 1 {
                    yr[base + dh - 1] = xr[base + dh - 1];
                }
            }
        });
}

pub fn embedding_fwd<T: Real>(table: &[T], ids: &[u32], cols: usize, scale: f32, out: &mut [T]) {
    let s = T::from_f32(scale);
    out.par_chunks_mut(cols)
        .zip(ids.par_iter())
        .for_each(|(o, &id)| {
            let row = &table[id as usize * cols..(id as usize + 1) * cols];
            for (o, &t) in o.iter_mut().zip(row) {
                *o = t * s;
            }
        });
}

/// Scatter-add; sequential because ids repeat (the table is small next to the work around it).
pub fn embedding_bwd<T: Real>(ids: &[u32], dout: &[T], cols: usize, scale: f32, dtable: &mut [T]) {
    let s = T::from_f32(scale);
    for (r, &id) in ids.iter().enumerate() {
        let row = &mut dtable[id as usize * cols..(id as usize + 1) * cols];
        for (t, &g) in row.iter_mut().zip(&dout[r * cols..(r + 1) * cols]) {
            *t += g * s;
        }
    }
}
