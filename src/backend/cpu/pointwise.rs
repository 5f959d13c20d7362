//! Activations, dropout, padding-row masks and the rotary embedding.

use super::real::Real;
use super::{s, sm, Cpu, HostBuf, HostInts};
use crate::backend::{Activation, Dropout, Pointwise, RowMask, View, ViewMut};
use crate::rng;
use rayon::prelude::*;

const GELU_K: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_C: f64 = 0.044_715;

/// Dropout as a per-element multiplier: kept values × 1/(1−p), dropped ones 0, none at p = 0.
#[derive(Clone, Copy)]
struct Drop<T> {
    d: Dropout,
    scale: T,
}

impl<T: Real> Drop<T> {
    fn new(d: Dropout) -> Self {
        let scale = if d.p > 0.0 {
            T::from_f32(1.0 / (1.0 - d.p))
        } else {
            T::ONE
        };
        Drop { d, scale }
    }

    #[inline]
    fn apply(&self, e: usize, v: T) -> T {
        if self.d.p <= 0.0 {
            v
        } else if rng::keep(self.d.seed, e as u64, self.d.p) {
            v * self.scale
        } else {
            T::ZERO
        }
    }
}

/// y = drop(act(x)).
pub fn act_fwd<T: Real>(act: Activation, d: Dropout, x: &[T], y: &mut [T]) {
    let (k, c) = (T::from_f64(GELU_K), T::from_f64(GELU_C));
    let half = T::from_f32(0.5);
    let drop = Drop::new(d);
    y.par_iter_mut()
        .zip(x.par_iter())
        .enumerate()
        .for_each(|(e, (y, &x))| {
            let a = match act {
                Activation::Relu => x.max(T::ZERO),
                Activation::Gelu => half * x * (T::ONE + (k * (x + c * x * x * x)).tanh()),
            };
            *y = drop.apply(e, a);
        });
}

/// dx = act′(x)·drop(dy).
pub fn act_bwd<T: Real>(act: Activation, d: Dropout, x: &[T], dy: &[T], dx: &mut [T]) {
    let (k, c) = (T::from_f64(GELU_K), T::from_f64(GELU_C));
    let (half, three) = (T::from_f32(0.5), T::from_f32(3.0));
    let drop = Drop::new(d);
    dx.par_iter_mut()
        .zip(x.par_iter().zip(dy.par_iter()))
        .enumerate()
        .for_each(|(e, (dx, (&x, &g)))| {
            let g = drop.apply(e, g);
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

/// The chunk length of a `len`-element tensor and whether chunk r is a padding row: with a
/// mask the chunks are the `[batch·n, cols]` rows, without one fixed blocks (no padding).
fn rows_of(
    len: usize,
    mask: Option<(&[u32], usize)>,
) -> (usize, impl Fn(usize) -> bool + Sync + '_) {
    let cols = match mask {
        Some((start, n)) => len / (start.len() * n).max(1),
        None => len.min(4096),
    };
    let padded = move |r: usize| mask.is_some_and(|(start, n)| ((r % n) as u32) < start[r / n]);
    (cols.max(1), padded)
}

/// y = mask(x + drop(o)) (x absent: mask(drop(o))).
pub fn residual_fwd<T: Real>(
    x: Option<&[T]>,
    o: &[T],
    d: Dropout,
    mask: Option<(&[u32], usize)>,
    y: &mut [T],
) {
    let drop = Drop::new(d);
    let (cols, padded) = rows_of(y.len(), mask);
    y.par_chunks_mut(cols).enumerate().for_each(|(r, yr)| {
        if padded(r) {
            yr.fill(T::ZERO);
            return;
        }
        for (c, y) in yr.iter_mut().enumerate() {
            let e = r * cols + c;
            let v = drop.apply(e, o[e]);
            *y = match x {
                Some(x) => x[e] + v,
                None => v,
            };
        }
    });
}

/// g = mask(dy); dx = g; do = drop(g).
pub fn residual_bwd<T: Real>(
    dy: &[T],
    d: Dropout,
    mask: Option<(&[u32], usize)>,
    dx: Option<&mut [T]>,
    d_o: &mut [T],
) {
    let drop = Drop::new(d);
    let (cols, padded) = rows_of(dy.len(), mask);
    let rows = d_o.par_chunks_mut(cols).enumerate();
    match dx {
        Some(dx) => rows
            .zip(dx.par_chunks_mut(cols))
            .for_each(|((r, dor), dxr)| {
                residual_bwd_row(dy, &drop, padded(r), r, cols, dor, Some(dxr))
            }),
        None => {
            rows.for_each(|(r, dor)| residual_bwd_row(dy, &drop, padded(r), r, cols, dor, None))
        }
    }
}

fn residual_bwd_row<T: Real>(
    dy: &[T],
    drop: &Drop<T>,
    padded: bool,
    r: usize,
    cols: usize,
    dor: &mut [T],
    mut dxr: Option<&mut [T]>,
) {
    for c in 0..dor.len() {
        let e = r * cols + c;
        let g = if padded { T::ZERO } else { dy[e] };
        if let Some(dxr) = dxr.as_deref_mut() {
            dxr[c] = g;
        }
        dor[c] = drop.apply(e, g);
    }
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
    fn act_fwd(&self, act: Activation, d: Dropout, x: View<HostBuf<T>>, y: ViewMut<HostBuf<T>>) {
        act_fwd(act, d, s(x), sm(y));
    }
    fn act_bwd(
        &self,
        act: Activation,
        d: Dropout,
        x: View<HostBuf<T>>,
        dy: View<HostBuf<T>>,
        dx: ViewMut<HostBuf<T>>,
    ) {
        act_bwd(act, d, s(x), s(dy), sm(dx));
    }
    fn residual_fwd(
        &self,
        x: Option<View<HostBuf<T>>>,
        o: View<HostBuf<T>>,
        d: Dropout,
        mask: Option<RowMask<'_, HostInts>>,
        y: ViewMut<HostBuf<T>>,
    ) {
        let mask = mask.map(|m| (&m.start[..], m.n));
        residual_fwd(x.map(s), s(o), d, mask, sm(y));
    }
    fn residual_bwd(
        &self,
        dy: View<HostBuf<T>>,
        d: Dropout,
        mask: Option<RowMask<'_, HostInts>>,
        dx: Option<ViewMut<HostBuf<T>>>,
        d_o: ViewMut<HostBuf<T>>,
    ) {
        let mask = mask.map(|m| (&m.start[..], m.n));
        residual_bwd(s(dy), d, mask, dx.map(sm), sm(d_o));
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
