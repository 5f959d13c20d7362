//! Full-catalogue softmax cross-entropy and BCE with a sampled negative.

use super::real::Real;
use super::{s, sm, Cpu, HostBuf, HostInts};
use crate::backend::{sample_negative, Loss, View, ViewMut};
use rayon::prelude::*;

/// Logits per chunk of the fused classifier loss by default (see [`Loss::ce_chunk_elements`]):
/// 2 MiB of f32, about one core's L2, so that a chunk stays in cache between its GEMM, the
/// in-place softmax and the two gradient GEMMs. At ml-1m's 3417 columns that is 153 rows.
/// Measured on 2 cores (forward and backward of the loss alone, 25 600 rows × 3417): chunks of
/// 128–256 rows were fastest (≈ 25% below the unfused path, ≈ 15% below one 25 600-row
/// chunk); 32 rows lost the gain (GEMMs too thin), and past 512 rows it fades as the chunk
/// leaves L2. With 100 001 columns every chunk of 64–512 rows was within the noise, so the
/// floor ([`crate::backend::CE_MIN_CHUNK_ROWS`], 64) keeps the memory at 25 MiB there.
pub const CE_CHUNK_ELEMENTS: usize = 1 << 19;

/// Softmax cross-entropy in place (see [`Loss::cross_entropy_in_place`]): per row, the
/// exponentials are written over the logits, summed, then scaled into the gradient.
pub fn cross_entropy_in_place<T: Real>(
    logits: &mut [T],
    targets: &[u32],
    vocab: usize,
    scale: f32,
    loss: &mut [T],
) {
    let s = T::from_f32(scale);
    logits
        .par_chunks_mut(vocab)
        .zip(loss.par_iter_mut().zip(targets.par_iter()))
        .for_each(|(d, (l, &t))| {
            if t == 0 {
                d.fill(T::ZERO);
                *l = T::ZERO;
                return;
            }
            let t = t as usize;
            let zt = d[t];
            let (m, sum) = T::exp_shifted(&mut d[1..]);
            *l = m + sum.ln() - zt;
            let k = s / sum;
            d[1..].iter_mut().for_each(|x| *x *= k);
            d[t] -= s;
            d[0] = T::ZERO;
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
    fn cross_entropy_in_place(
        &self,
        logits: ViewMut<HostBuf<T>>,
        targets: &HostInts,
        first: usize,
        vocab: usize,
        scale: f32,
        loss: ViewMut<HostBuf<T>>,
    ) {
        let rows = loss.len;
        assert_eq!(
            logits.len,
            rows * vocab,
            "cross_entropy_in_place: logits are not [rows, vocab]"
        );
        let t = &targets[first..first + rows];
        cross_entropy_in_place(sm(logits), t, vocab, scale, sm(loss));
    }
    fn ce_chunk_elements(&self) -> usize {
        CE_CHUNK_ELEMENTS
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

    /// Against the textbook formulas in f64 (softmax by the definition, no max shift), with an
    /// ignored row and a target in the last column: |a − r| ≤ 1e-12·(1 + |r|).
    #[test]
    fn in_place_cross_entropy_equals_the_definition() {
        let (rows, vocab) = (5, 9);
        let mut r = crate::rng::Rng::new(3);
        let logits: Vec<f64> = (0..rows * vocab).map(|_| 3.0 * r.normal() as f64).collect();
        let targets = [3u32, 0, 8, 1, 5];
        let scale = 0.25f32;
        let mut d = logits.clone();
        let mut loss = vec![9.0; rows];
        cross_entropy_in_place(&mut d, &targets, vocab, scale, &mut loss);
        for (row, &t) in targets.iter().enumerate() {
            let z = &logits[row * vocab..(row + 1) * vocab];
            let sum: f64 = z[1..].iter().map(|x| x.exp()).sum();
            let t = t as usize;
            let want_loss = if t == 0 { 0.0 } else { sum.ln() - z[t] };
            let close = |a: f64, w: f64| (a - w).abs() <= 1e-12 * (1.0 + w.abs());
            assert!(
                close(loss[row], want_loss),
                "row {row}: loss {} vs {want_loss}",
                loss[row]
            );
            for c in 0..vocab {
                let want = if t == 0 || c == 0 {
                    0.0
                } else {
                    scale as f64 * (z[c].exp() / sum - if c == t { 1.0 } else { 0.0 })
                };
                let got = d[row * vocab + c];
                assert!(close(got, want), "row {row} col {c}: {got} vs {want}");
            }
        }
    }
}
