//! Activations, dropout, padding-row masks and the rotary embedding.

use super::real::Real;
use super::{s, sm, Cpu, HostBuf, HostInts};
use crate::backend::{Activation, Pointwise, View, ViewMut};
use crate::rng;
use rayon::prelude::*;

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

impl<T: Real> Pointwise for Cpu<T> {
    fn act_fwd(&self, act: Activation, x: View<HostBuf<T>>, y: ViewMut<HostBuf<T>>) {
        act_fwd(act, s(x), sm(y));
    }
    fn act_bwd(
        &self,
        act: Activation,
        x: View<HostBuf<T>>,
        dy: View<HostBuf<T>>,
        dx: ViewMut<HostBuf<T>>,
    ) {
        act_bwd(act, s(x), s(dy), sm(dx));
    }
    fn dropout(&self, x: View<HostBuf<T>>, p: f32, seed: u64, y: ViewMut<HostBuf<T>>) {
        dropout(s(x), p, seed, sm(y));
    }
    fn row_mask(&self, x: ViewMut<HostBuf<T>>, start: &HostInts, n: usize) {
        row_mask(sm(x), start, n);
    }
    fn rope(
        &self,
        x: View<HostBuf<T>>,
        n: usize,
        heads: usize,
        dh: usize,
        inverse: bool,
        y: ViewMut<HostBuf<T>>,
    ) {
        rope(s(x), n, heads, dh, inverse, sm(y));
    }
}
