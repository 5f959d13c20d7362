//! Matrix products (matrixmultiply), bias and column sums.

use super::real::Real;
use super::{s, sm, Cpu, HostBuf};
use crate::backend::{Dense, Gemm, Strided, View, ViewMut};
use rayon::prelude::*;

/// Rows per partial sum of [`col_sum`]: fixed, so that the grouping of the additions (and so
/// the rounding) is the same whatever the thread count.
const COL_SUM_ROWS: usize = 256;

/// A matrix inside a slice: its first element and its row and column strides.
#[derive(Clone, Copy, Debug)]
pub struct Mat {
    pub at: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Mat {
    /// Row-major rows of `rs` elements from `at`.
    pub fn rows(at: usize, rs: usize) -> Self {
        Mat { at, rs, cs: 1 }
    }

    /// The transpose of the row-major matrix at `at` with rows of `rs` elements.
    pub fn rows_t(at: usize, rs: usize) -> Self {
        Mat { at, rs: 1, cs: rs }
    }

    /// Asserts that an r×c matrix at this place lies inside `len` elements.
    fn check(&self, r: usize, c: usize, len: usize, what: &str) {
        if r > 0 && c > 0 {
            let last = self.at + (r - 1) * self.rs + (c - 1) * self.cs;
            assert!(last < len, "gemm_in: {what} reaches {last}, past {len}");
        }
    }
}

/// C = α·A·B + β·C for an m×k A, k×n B and m×n C placed anywhere in their slices (strided
/// views: a head's columns of a window, a transpose); k = 0 scales C by β (0: zeroes it).
#[allow(clippy::too_many_arguments)]
pub fn gemm_in<T: Real>(
    (m, k, n): (usize, usize, usize),
    alpha: T,
    a: &[T],
    am: Mat,
    b: &[T],
    bm: Mat,
    beta: T,
    c: &mut [T],
    cm: Mat,
) {
    am.check(m, k, a.len(), "A");
    bm.check(k, n, b.len(), "B");
    cm.check(m, n, c.len(), "C");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            for col in 0..n {
                let x = &mut c[cm.at + r * cm.rs + col * cm.cs];
                *x = if beta == T::ZERO { T::ZERO } else { *x * beta };
            }
        }
        return;
    }
    // SAFETY: the checks above bound every matrix inside its slice; C is a distinct &mut
    // slice, so it aliases neither A nor B.
    unsafe {
        T::gemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr().add(am.at),
            am.rs as isize,
            am.cs as isize,
            b.as_ptr().add(bm.at),
            bm.rs as isize,
            bm.cs as isize,
            beta,
            c.as_mut_ptr().add(cm.at),
            cm.rs as isize,
            cm.cs as isize,
        )
    }
}

/// Multiply-adds (m·n·k) from which one product's rows are split over the threads.
const PARALLEL_GEMM_WORK: usize = 1 << 21;
/// The fewest rows of C a thread takes.
const MIN_ROWS_PER_TASK: usize = 16;

/// Row-major batched GEMM (see [`Gemm`]) on slices that start at batch 0.
pub fn gemm<T: Real>(g: &Gemm, a: &[T], b: &[T], c: &mut [T]) {
    let (m, n, k) = (g.m, g.n, g.k);
    let need = |batch_stride: usize, one: usize| (g.batch - 1) * batch_stride + one;
    assert!(a.len() >= need(g.stride_a, m * k), "gemm: A too short");
    assert!(b.len() >= need(g.stride_b, k * n), "gemm: B too short");
    assert!(c.len() >= need(g.stride_c, m * n), "gemm: C too short");
    let (alpha, beta) = (T::from_f32(g.alpha), T::from_f32(g.beta));
    // op(A) [m,k] and op(B) [k,n] inside their stored layouts, from a given element.
    let op_a = |at| {
        if g.trans_a {
            Mat::rows_t(at, m)
        } else {
            Mat::rows(at, k)
        }
    };
    let op_b = |at| {
        if g.trans_b {
            Mat::rows_t(at, k)
        } else {
            Mat::rows(at, n)
        }
    };
    // C rows [0, rows) of one product: op(A) from `ai`, op(B) from `bi`.
    let part = |ai: usize, bi: usize, cm: &mut [T], beta: T, rows: usize| {
        gemm_in(
            (rows, k, n),
            alpha,
            a,
            op_a(ai),
            b,
            op_b(bi),
            beta,
            cm,
            Mat::rows(0, n),
        );
    };
    let one = |ai: usize, bi: usize, cm: &mut [T], beta: T| part(ai, bi, cm, beta, m);
    if g.batch == 1 {
        // One large product: blocks of C's rows in parallel (each element's sum is the same
        // whichever block computes it, so the result does not depend on the thread count).
        let threads = rayon::current_num_threads();
        let rows = if threads > 1 && m * n * k >= PARALLEL_GEMM_WORK {
            m.div_ceil(threads).max(MIN_ROWS_PER_TASK)
        } else {
            m.max(1)
        };
        let a_row = if g.trans_a { 1 } else { k };
        if rows >= m || n == 0 {
            one(0, 0, &mut c[..m * n], beta);
        } else {
            c[..m * n]
                .par_chunks_mut(rows * n)
                .enumerate()
                .for_each(|(t, cm)| part(t * rows * a_row, 0, cm, beta, cm.len() / n));
        }
    } else if g.stride_c >= m * n {
        // Disjoint outputs: batches run in parallel.
        c.par_chunks_mut(g.stride_c)
            .take(g.batch)
            .enumerate()
            .for_each(|(bi, cm)| one(bi * g.stride_a, bi * g.stride_b, cm, beta));
    } else {
        // Overlapping outputs (stride_c 0 sums all batches into one C): in order, the
        // first with the caller's beta and the rest accumulating.
        for bi in 0..g.batch {
            let off = bi * g.stride_c;
            let b = if bi == 0 { beta } else { T::ONE };
            one(
                bi * g.stride_a,
                bi * g.stride_b,
                &mut c[off..off + m * n],
                b,
            );
        }
    }
}

pub fn bias_add<T: Real>(x: &mut [T], bias: &[T]) {
    x.par_chunks_mut(bias.len()).for_each(|row| {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += *b;
        }
    });
}

/// out[c] += Σ_r x[r, c]: partial sums over blocks of [`COL_SUM_ROWS`] rows in parallel,
/// added in block order, and the total added to out.
pub fn col_sum<T: Real>(x: &[T], out: &mut [T]) {
    let cols = out.len();
    if cols == 0 {
        return;
    }
    // Columns are few (≤ d_ff) and rows many: each task sums a block of rows.
    let partials: Vec<Vec<T>> = x
        .par_chunks(COL_SUM_ROWS * cols)
        .map(|blk| {
            let mut acc = vec![T::ZERO; cols];
            for row in blk.chunks(cols) {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += *v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![T::ZERO; cols];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    for (o, t) in out.iter_mut().zip(total) {
        *o += t;
    }
}

impl<T: Real> Dense for Cpu<T> {
    fn gemm(&self, g: &Gemm, a: View<HostBuf<T>>, b: View<HostBuf<T>>, c: ViewMut<HostBuf<T>>) {
        gemm(g, s(a), s(b), sm(c));
    }
    fn bias_add(&self, x: ViewMut<HostBuf<T>>, bias: View<HostBuf<T>>, st: Strided) {
        let (x, bias) = (sm(x), s(bias));
        assert!(bias.len() >= st.span(), "bias_add: bias view too short");
        if st.count == 0 || st.len == 0 {
            return;
        }
        let slab = x.len() / st.count;
        for (i, xs) in x.chunks_mut(slab).enumerate() {
            bias_add(xs, &bias[i * st.stride..][..st.len]);
        }
    }
    fn col_sum(&self, x: View<HostBuf<T>>, out: ViewMut<HostBuf<T>>, st: Strided) {
        let (x, out) = (s(x), sm(out));
        assert!(out.len() >= st.span(), "col_sum: output view too short");
        if st.count == 0 || st.len == 0 {
            return;
        }
        let slab = x.len() / st.count;
        for (i, xs) in x.chunks(slab).enumerate() {
            col_sum(xs, &mut out[i * st.stride..][..st.len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A product large enough to be split over threads: the same bits on 1 and 3 threads,
    /// and the plain triple loop's value, for every transpose and with β accumulating.
    #[test]
    fn a_split_product_equals_the_unsplit_one_to_the_bit() {
        let (m, n, k) = (203, 70, 301);
        assert!(m * n * k >= PARALLEL_GEMM_WORK);
        let mut rng = Rng::new(5);
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
        let c0: Vec<f32> = (0..m * n).map(|_| rng.normal()).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut g = Gemm::new(m, n, k, ta, tb);
            g.beta = 0.5;
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = c0.clone();
                pool.install(|| gemm(&g, &a, &b, &mut c));
                c
            };
            let (one, three) = (run(1), run(3));
            assert!(one
                .iter()
                .zip(&three)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            let at = |r: usize, kk: usize| if ta { a[kk * m + r] } else { a[r * k + kk] };
            let bt = |kk: usize, c: usize| if tb { b[c * k + kk] } else { b[kk * n + c] };
            for r in (0..m).step_by(17) {
                for c in (0..n).step_by(7) {
                    let want: f64 = (0..k).map(|kk| (at(r, kk) * bt(kk, c)) as f64).sum::<f64>()
                        + 0.5 * c0[r * n + c] as f64;
                    let got = three[r * n + c] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "({ta}, {tb}) [{r}, {c}]"
                    );
                }
            }
        }
    }
}
