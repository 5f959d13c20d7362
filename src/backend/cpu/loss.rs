//! Full-catalogue softmax cross-entropy and BCE with a sampled negative.

use super::real::Real;
use super::{s, sm, Cpu, HostBuf, HostInts};
use crate::backend::{sample_negative, Loss, View, ViewMut};
use rayon::prelude::*;

/// Log-sum-exp of a logit row over the classes 1.. (column 0 is the padding item).
fn row_lse<T: Real>(row: &[T]) -> T {
    let m = row[1..].iter().copied().fold(T::NEG_INFINITY, T::max);
    m + row[1..].iter().map(|&v| (v - m).exp()).sum::<T>().ln()
}

pub fn cross_entropy_fwd<T: Real>(
    logits: &[T],
    targets: &[u32],
    vocab: usize,
    loss: &mut [T],
    lse: &mut [T],
) {
    loss.par_iter_mut()
        .zip(lse.par_iter_mut())
        .zip(logits.par_chunks(vocab).zip(targets.par_iter()))
        .for_each(|((l, z), (row, &t))| {
            if t == 0 {
                *l = T::ZERO;
                *z = T::ZERO;
            } else {
                *z = row_lse(row);
                *l = *z - row[t as usize];
            }
        });
}

pub fn cross_entropy_bwd<T: Real>(
    logits: &[T],
    lse: &[T],
    targets: &[u32],
    vocab: usize,
    scale: f32,
    dlogits: &mut [T],
) {
    let s = T::from_f32(scale);
    dlogits
        .par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .zip(lse.par_iter().zip(targets.par_iter()))
        .for_each(|((d, row), (&z, &t))| {
            d[0] = T::ZERO;
            if t == 0 {
                d.fill(T::ZERO);
                return;
            }
            for c in 1..vocab {
                d[c] = (row[c] - z).exp() * s;
            }
            d[t as usize] -= s;
        });
}

/// Both passes in one: each row's exponentials are computed once, into dlogits, then
/// normalised there.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_fused<T: Real>(
    logits: &[T],
    targets: &[u32],
    vocab: usize,
    scale: f32,
    loss: &mut [T],
    lse: &mut [T],
    dlogits: &mut [T],
) {
    let s = T::from_f32(scale);
    dlogits
        .par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab).zip(targets.par_iter()))
        .zip(loss.par_iter_mut().zip(lse.par_iter_mut()))
        .for_each(|((d, (row, &t)), (l, z))| {
            d[0] = T::ZERO;
            if t == 0 {
                d.fill(T::ZERO);
                (*l, *z) = (T::ZERO, T::ZERO);
                return;
            }
            let m = row[1..].iter().copied().fold(T::NEG_INFINITY, T::max);
            let mut sum = T::ZERO;
            for c in 1..vocab {
                d[c] = (row[c] - m).exp();
                sum += d[c];
            }
            *z = m + sum.ln();
            *l = *z - row[t as usize];
            let k = s / sum;
            d[1..].iter_mut().for_each(|x| *x *= k);
            d[t as usize] -= s;
        });
}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

/// −log σ(x), computed without overflow.
fn neg_log_sigmoid<T: Real>(x: T) -> T {
    // −log σ(x) = max(−x, 0) + log(1 + e^{−|x|})
    let ax = if x > T::ZERO { x } else { -x };
    (-x).max(T::ZERO) + (T::ONE + (-ax).exp()).ln()
}

fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

#[allow(clippy::too_many_arguments)]
pub fn bce_fwd<T: Real>(
    h: &[T],
    table: &[T],
    targets: &[u32],
    vocab: usize,
    seed: u64,
    loss: &mut [T],
) {
    let d = h.len() / targets.len().max(1);
    loss.par_iter_mut().enumerate().for_each(|(r, l)| {
        let t = targets[r];
        if t == 0 {
            *l = T::ZERO;
            return;
        }
        let neg = sample_negative(seed, r, t, vocab) as usize;
        let hr = &h[r * d..(r + 1) * d];
        let sp = dot(hr, &table[t as usize * d..(t as usize + 1) * d]);
        let sn = dot(hr, &table[neg * d..(neg + 1) * d]);
        *l = neg_log_sigmoid(sp) + neg_log_sigmoid(-sn);
    });
}

#[allow(clippy::too_many_arguments)]
pub fn bce_bwd<T: Real>(
    h: &[T],
    table: &[T],
    targets: &[u32],
    vocab: usize,
    seed: u64,
    scale: f32,
    dh: &mut [T],
    dtable: &mut [T],
) {
    let d = h.len() / targets.len().max(1);
    let s = T::from_f32(scale);
    // d/dsp = σ(sp) − 1, d/dsn = σ(sn).
    let coef: Vec<(usize, T, usize, T)> = (0..targets.len())
        .into_par_iter()
        .map(|r| {
            let t = targets[r] as usize;
            if t == 0 {
                return (0, T::ZERO, 0, T::ZERO);
            }
            let neg = sample_negative(seed, r, t as u32, vocab) as usize;
            let hr = &h[r * d..(r + 1) * d];
            let sp = dot(hr, &table[t * d..(t + 1) * d]);
            let sn = dot(hr, &table[neg * d..(neg + 1) * d]);
            (t, (sigmoid(sp) - T::ONE) * s, neg, sigmoid(sn) * s)
        })
        .collect();
    dh.par_chunks_mut(d)
        .zip(coef.par_iter())
        .for_each(|(g, &(t, cp, n, cn))| {
            for c in 0..d {
                g[c] = cp * table[t * d + c] + cn * table[n * d + c];
            }
        });
    for (r, &(t, cp, n, cn)) in coef.iter().enumerate() {
        if t == 0 {
            continue;
        }
        for c in 0..d {
            dtable[t * d + c] += cp * h[r * d + c];
            dtable[n * d + c] += cn * h[r * d + c];
        }
    }
}

impl<T: Real> Loss for Cpu<T> {
    fn cross_entropy_fwd(
        &self,
        logits: View<HostBuf<T>>,
        targets: &HostInts,
        vocab: usize,
        loss: ViewMut<HostBuf<T>>,
        lse: ViewMut<HostBuf<T>>,
    ) {
        cross_entropy_fwd(s(logits), targets, vocab, sm(loss), sm(lse));
    }
    fn cross_entropy_bwd(
        &self,
        logits: View<HostBuf<T>>,
        lse: View<HostBuf<T>>,
        targets: &HostInts,
        vocab: usize,
        scale: f32,
        dlogits: ViewMut<HostBuf<T>>,
    ) {
        cross_entropy_bwd(s(logits), s(lse), targets, vocab, scale, sm(dlogits));
    }
    fn cross_entropy_fused(
        &self,
        logits: View<HostBuf<T>>,
        targets: &HostInts,
        vocab: usize,
        scale: f32,
        loss: ViewMut<HostBuf<T>>,
        lse: ViewMut<HostBuf<T>>,
        dlogits: ViewMut<HostBuf<T>>,
    ) {
        cross_entropy_fused(
            s(logits),
            targets,
            vocab,
            scale,
            sm(loss),
            sm(lse),
            sm(dlogits),
        );
    }
    fn bce_fwd(
        &self,
        h: View<HostBuf<T>>,
        table: View<HostBuf<T>>,
        targets: &HostInts,
        vocab: usize,
        seed: u64,
        loss: ViewMut<HostBuf<T>>,
    ) {
        bce_fwd(s(h), s(table), targets, vocab, seed, sm(loss));
    }
    fn bce_bwd(
        &self,
        h: View<HostBuf<T>>,
        table: View<HostBuf<T>>,
        targets: &HostInts,
        vocab: usize,
        seed: u64,
        scale: f32,
        dh: ViewMut<HostBuf<T>>,
        dtable: ViewMut<HostBuf<T>>,
    ) {
        bce_bwd(
            s(h),
            s(table),
            targets,
            vocab,
            seed,
            scale,
            sm(dh),
            sm(dtable),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass version gives the same numbers as the forward then the backward.
    #[test]
    fn fused_cross_entropy_equals_forward_then_backward() {
        let (rows, vocab) = (5, 9);
        let mut r = crate::rng::Rng::new(3);
        let logits: Vec<f64> = (0..rows * vocab).map(|_| 3.0 * r.normal() as f64).collect();
        let targets = [3u32, 0, 8, 1, 5];
        let (mut l1, mut z1, mut d1) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows * vocab]);
        cross_entropy_fwd(&logits, &targets, vocab, &mut l1, &mut z1);
        cross_entropy_bwd(&logits, &z1, &targets, vocab, 0.25, &mut d1);
        let (mut l2, mut z2, mut d2) = (vec![9.0; rows], vec![9.0; rows], vec![9.0; rows * vocab]);
        cross_entropy_fused(&logits, &targets, vocab, 0.25, &mut l2, &mut z2, &mut d2);
        for (a, b) in l1
            .iter()
            .chain(&z1)
            .chain(&d1)
            .zip(l2.iter().chain(&z2).chain(&d2))
        {
            assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}
