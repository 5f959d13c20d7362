//! Fused attention with positional kernels on the CPU (DESIGN §1–2): the `weight` reading's
//! forward and backward, and the `mix` reading's value mixing V' = L·V.
//!
//! Work is split over the batch: every task owns whole windows (all heads), so the per-window
//! gradients (dq, dk, dv) are written without sharing. Gradients of parameters shared across
//! the batch (pos, U, L) go to per-group partial buffers that are summed afterwards in a fixed
//! order, so results do not depend on the thread count or on scheduling.

use rayon::prelude::*;

use super::dense::{gemm_in, Mat};
use super::real::Real;
use super::{opt, opt_mut, s as sl, sm, Cpu, HostBuf, HostInts};
use crate::backend::{
    Attention, AttnGrads, AttnInputs, AttnLens, AttnShape, KernelKind, MixShape, ScoreSource, View,
    ViewMut,
};

/// Upper bound on the number of batch groups whose kernel-gradient partials are kept apart.
/// Fixed (not the thread count) so that gradients are bitwise reproducible on any machine.
const MAX_GROUPS: usize = 16;

/// Dot product with eight independent accumulators, so that it vectorises without fast-math.
#[inline]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [T::ZERO; 8];
    for (x, y) in ca.zip(cb) {
        for t in 0..8 {
            acc[t] += x[t] * y[t];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += *x * *y;
    }
    s
}

/// y += a·x.
#[inline]
fn axpy<T: Real>(y: &mut [T], a: T, x: &[T]) {
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv += a * *xv;
    }
}

/// One head's parameters of a kernel (`heads == 1`: shared by all heads).
#[inline]
fn kernel_head<T: Real>(params: &[T], kind: KernelKind, n: usize, kheads: usize, h: usize) -> &[T] {
    let len = kind.len(n);
    let kh = if kheads == 1 { 0 } else { h };
    &params[kh * len..(kh + 1) * len]
}

#[inline]
fn kernel_head_mut<T: Real>(
    params: &mut [T],
    kind: KernelKind,
    n: usize,
    kheads: usize,
    h: usize,
) -> &mut [T] {
    let len = kind.len(n);
    let kh = if kheads == 1 { 0 } else { h };
    &mut params[kh * len..(kh + 1) * len]
}

/// Writes K_ij for j in st..=i into `out[st..=i]` (`none` gives `none_value`).
#[inline]
fn kernel_row<T: Real>(
    kind: KernelKind,
    p: &[T],
    i: usize,
    st: usize,
    none_value: T,
    out: &mut [T],
) {
    match kind {
        KernelKind::None => out[st..=i].fill(none_value),
        KernelKind::Full => {
            let base = i * (i + 1) / 2;
            out[st..=i].copy_from_slice(&p[base + st..=base + i]);
        }
        KernelKind::Toeplitz => {
            // out[j] = p[i − j]: p's first i − st + 1 values, reversed.
            for (o, v) in out[st..=i].iter_mut().zip(p[..=i - st].iter().rev()) {
                *o = *v;
            }
        }
    }
}

/// Adds `row[st..=i]` into the gradient of row i of a kernel (Toeplitz: along the diagonals).
#[inline]
fn kernel_row_add<T: Real>(kind: KernelKind, g: &mut [T], i: usize, st: usize, row: &[T]) {
    match kind {
        KernelKind::None => {}
        KernelKind::Full => {
            let base = i * (i + 1) / 2;
            for (gv, rv) in g[base + st..=base + i].iter_mut().zip(&row[st..=i]) {
                *gv += *rv;
            }
        }
        KernelKind::Toeplitz => {
            for (gv, rv) in g[..=i - st].iter_mut().zip(row[st..=i].iter().rev()) {
                *gv += *rv;
            }
        }
    }
}

/// Splits `buf` into `count` consecutive chunks of `chunk` elements (the last may be shorter);
/// an empty `buf` (a gradient that is not wanted) gives `count` empty chunks.
fn split_chunks<T: Real>(buf: &mut [T], chunk: usize, count: usize) -> Vec<&mut [T]> {
    if buf.is_empty() {
        return (0..count).map(|_| <&mut [T]>::default()).collect();
    }
    buf.chunks_mut(chunk).collect()
}

/// Batch groups: (windows per group, number of groups).
fn groups(batch: usize) -> (usize, usize) {
    let per = batch.div_ceil(MAX_GROUPS.min(batch).max(1)).max(1);
    (per, batch.div_ceil(per))
}

/// Sums per-group partial buffers into `out` in group order (overwrites `out`).
fn sum_partials<'a, T: Real>(out: &mut [T], parts: impl Iterator<Item = &'a [T]>) {
    out.fill(T::ZERO);
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += *v;
        }
    }
}

/// The scaled dropout factors of row i of head h, window b, for the keys st..=i: into `out`
/// (exactly that long; 1 without dropout). `kept` is scratch of at least as many.
#[allow(clippy::too_many_arguments)]
#[inline]
fn dropout_row<T: Real>(
    s: &AttnShape,
    b: usize,
    h: usize,
    i: usize,
    st: usize,
    inv_keep: T,
    kept: &mut [bool],
    out: &mut [T],
) {
    debug_assert_eq!(out.len(), i + 1 - st);
    if s.dropout > 0.0 {
        let kept = &mut kept[..out.len()];
        crate::rng::keep_run(s.seed, s.dropout_index(b, h, i, st), s.dropout, kept);
        for (o, &k) in out.iter_mut().zip(&*kept) {
            *o = if k { inv_keep } else { T::ZERO };
        }
    } else {
        out.fill(T::ONE);
    }
}

fn inv_keep<T: Real>(s: &AttnShape) -> T {
    // dropout ≥ 1 drops everything; avoid an infinite scale times zero.
    if s.dropout < 1.0 {
        T::ONE / (T::ONE - T::from_f32(s.dropout))
    } else {
        T::ZERO
    }
}

/// The lengths of six slices, for the shape checks of [`AttnShape`].
fn lens<T>(q: &[T], k: &[T], v: &[T], pos: &[T], u: &[T], l: &[T]) -> AttnLens {
    AttnLens {
        q: q.len(),
        k: k.len(),
        v: v.len(),
        pos: pos.len(),
        u: u.len(),
        l: l.len(),
    }
}

/// A gradient the configuration has no use for: written 0 (the contract of every backend)
/// and then treated as absent.
fn unused<T: Real>(g: &mut [T]) -> &mut [T] {
    g.fill(T::ZERO);
    &mut []
}

/// Per-window scratch rows, allocated once per task.
struct Rows<T> {
    sc: Vec<T>,
    /// Rows of U and L: all ones for a kernel of kind `None`, which [`Rows::kernels`] then
    /// leaves alone.
    u: Vec<T>,
    l: Vec<T>,
    /// Dropout factors, and the keep-decisions they come from.
    d: Vec<T>,
    kept: Vec<bool>,
    gu: Vec<T>,
    gl: Vec<T>,
}

impl<T: Real> Rows<T> {
    fn new(n: usize) -> Self {
        Rows {
            sc: vec![T::ZERO; n],
            u: vec![T::ONE; n],
            l: vec![T::ONE; n],
            d: vec![T::ZERO; n],
            kept: vec![false; n],
            gu: vec![T::ZERO; n],
            gl: vec![T::ZERO; n],
        }
    }

    /// U's and L's rows i, keys st..=i, of head h (into u and l).
    fn kernels(&mut self, s: &AttnShape, u: &[T], l: &[T], h: usize, i: usize, st: usize) {
        let kernels = [
            (s.u, s.u_heads, u, &mut self.u),
            (s.l, s.l_heads, l, &mut self.l),
        ];
        for (kind, heads, params, row) in kernels {
            if kind != KernelKind::None {
                let head = kernel_head(params, kind, s.n, heads, h);
                kernel_row(kind, head, i, st, T::ONE, row);
            }
        }
    }
}

/// Query rows per block of the causal products: a block of queries needs the keys up to its
/// last row only, so the products skip most of the upper triangle.
const ROW_BLOCK: usize = 64;

/// A window's m×m matrices for one head (m = n − start, row stride m), allocated once per
/// task: c the unmodulated scores, then (backward) dc; p the probabilities; a the weights on
/// the values; e = dY·Vᵀ; d the dropout factors (drawn once for both passes of the backward);
/// xt the transposed operand of [`lower_outer`].
struct Tiles<T> {
    c: Vec<T>,
    p: Vec<T>,
    a: Vec<T>,
    e: Vec<T>,
    d: Vec<T>,
    xt: Vec<T>,
}

impl<T: Real> Tiles<T> {
    fn new(n: usize, dh: usize, backward: bool) -> Self {
        let nn = n * n;
        let bw = if backward { nn } else { 0 };
        Tiles {
            c: vec![T::ZERO; nn],
            p: vec![T::ZERO; bw],
            a: vec![T::ZERO; nn],
            e: vec![T::ZERO; bw],
            d: vec![T::ZERO; bw],
            xt: vec![T::ZERO; n * dh],
        }
    }
}

/// The query blocks [r0, r1) of m rows.
fn row_blocks(m: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..m)
        .step_by(ROW_BLOCK)
        .map(move |r0| (r0, (r0 + ROW_BLOCK).min(m)))
}

/// The end of row ii's query block: the products of [`lower_product`] read a triangular
/// matrix's row up to there, so its entries above the diagonal must be 0 up to there (and
/// only up to there).
fn block_end(ii: usize, m: usize) -> usize {
    ((ii / ROW_BLOCK + 1) * ROW_BLOCK).min(m)
}

/// Where a window's head lies in its row-major [n, w] buffers: the first of its m rows at `at`,
/// rows `w` apart, `dh` wide.
#[derive(Clone, Copy)]
struct Span {
    at: usize,
    w: usize,
    dh: usize,
}

/// out = T·X (`transpose`: Tᵀ·X) for a lower-triangular m×m T (row stride m, zeros above the
/// diagonal) and the m rows of X, into the m rows of out, by blocks: a block of T's rows
/// needs its columns up to the block's end, a block of Tᵀ's rows (T's columns) needs T's rows
/// from the block's start.
fn lower_product<T: Real>(
    tri: &[T],
    m: usize,
    transpose: bool,
    x: &[T],
    xr: Span,
    out: &mut [T],
    or: Span,
) {
    for (r0, r1) in row_blocks(m) {
        let (k0, k1) = if transpose { (r0, m) } else { (0, r1) };
        let t = if transpose {
            Mat::rows_t(k0 * m + r0, m)
        } else {
            Mat::rows(r0 * m, m)
        };
        gemm_in(
            (r1 - r0, k1 - k0, xr.dh),
            T::ONE,
            tri,
            t,
            x,
            Mat::rows(xr.at + k0 * xr.w, xr.w),
            T::ZERO,
            out,
            Mat::rows(or.at + r0 * or.w, or.w),
        );
    }
}

/// xt[d·m + ii] = x's row ii, element d, for the m rows of a span: 16 rows at a time, so that
/// every write fills a cache line's 16 consecutive elements.
fn transpose_rows<T: Real>(x: &[T], r: Span, m: usize, xt: &mut [T]) {
    const R: usize = 16;
    let row = |ii: usize| &x[r.at + ii * r.w..r.at + ii * r.w + r.dh];
    let full = m - m % R;
    for i0 in (0..full).step_by(R) {
        let rows: [&[T]; R] = std::array::from_fn(|j| row(i0 + j));
        for (d, out) in xt[..r.dh * m].chunks_exact_mut(m).enumerate() {
            let out = &mut out[i0..i0 + R];
            for j in 0..R {
                out[j] = rows[j][d];
            }
        }
    }
    for ii in full..m {
        for (d, &v) in row(ii).iter().enumerate() {
            xt[d * m + ii] = v;
        }
    }
}

/// out[ii·m + jj] = α·a_ii·b_jj for jj ≤ ii < m (and some entries above the diagonal, not to
/// be read), a the m rows of A, b those of B: a block of rows against B's rows up to its end.
/// B is first copied transposed into `xt` (m·dh): the product packs B along the contracted
/// dimension, which B's rows would make a gather, repeated in every block (about 8% of the
/// attention's time at the ml-1m shape).
fn lower_outer<T: Real>(
    alpha: T,
    a: &[T],
    b: &[T],
    r: Span,
    m: usize,
    out: &mut [T],
    xt: &mut [T],
) {
    let bt = &mut xt[..m * r.dh];
    transpose_rows(b, r, m, bt);
    for (r0, r1) in row_blocks(m) {
        gemm_in(
            (r1 - r0, r.dh, r1),
            alpha,
            a,
            Mat::rows(r.at + r0 * r.w, r.w),
            bt,
            Mat::rows(0, m),
            T::ZERO,
            out,
            Mat::rows(r0 * m, m),
        );
    }
}

/// Unmodulated scores of head h, rows and keys st..n of window b, into c[ii·m + jj] for
/// jj ≤ ii (ii = i − st, jj = j − st; other entries are not to be read): scale·q_i·k_j as
/// one product per query block, or scale·pos_ij.
#[allow(clippy::too_many_arguments)]
fn scores<T: Real>(
    s: &AttnShape,
    q: &[T],
    k: &[T],
    pos: &[T],
    b: usize,
    h: usize,
    st: usize,
    c: &mut [T],
    xt: &mut [T],
) {
    let (n, w, dh) = (s.n, s.width(), s.dh);
    let m = n - st;
    let scale = T::ONE / T::from_usize(s.dh).sqrt();
    match s.score {
        ScoreSource::Content => {
            let r = Span {
                at: (b * n + st) * w + h * dh,
                w,
                dh,
            };
            lower_outer(scale, q, k, r, m, c, xt);
        }
        ScoreSource::Positional => {
            for ii in 0..m {
                let i = st + ii;
                let row = &pos[(h * n + i) * n + st..(h * n + i) * n + i + 1];
                for (cj, pj) in c[ii * m..ii * m + ii + 1].iter_mut().zip(row) {
                    *cj = *pj * scale;
                }
            }
        }
    }
}

/// Forward of the `weight` reading. Writes y [B,n,H*dh] and lse [B,H,n].
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: Real>(
    s: &AttnShape,
    q: &[T],
    k: &[T],
    v: &[T],
    pos: &[T],
    u: &[T],
    l: &[T],
    start: &[u32],
    y: &mut [T],
    lse: &mut [T],
) {
    s.check_forward(&lens(q, k, v, pos, u, l), start.len(), y.len(), lse.len());
    let (n, w, dh, heads) = (s.n, s.width(), s.dh, s.heads);
    if s.batch == 0 || n == 0 || w == 0 {
        y.fill(T::ZERO);
        lse.fill(T::ZERO);
        return;
    }
    let inv = inv_keep(s);
    y.par_chunks_mut(n * w)
        .zip(lse.par_chunks_mut(heads * n))
        .enumerate()
        .for_each_init(
            || (Rows::new(n), Tiles::new(n, dh, false)),
            |(r, t), (b, (yb, lseb))| {
                // The heads' products overwrite rows st.. of y; the padded rows are 0.
                let st = (start[b] as usize).min(n);
                yb[..st * w].fill(T::ZERO);
                lseb.fill(T::ZERO);
                let m = n - st;
                if m == 0 {
                    return;
                }
                for h in 0..heads {
                    scores(s, q, k, pos, b, h, st, &mut t.c, &mut t.xt);
                    for ii in 0..m {
                        let i = st + ii;
                        r.kernels(s, u, l, h, i, st);
                        let c = &t.c[ii * m..ii * m + ii + 1];
                        let sc = &mut r.sc[..=ii];
                        for (x, (&cj, &uj)) in sc.iter_mut().zip(c.iter().zip(&r.u[st..=i])) {
                            *x = cj * uj;
                        }
                        let (mx, sum) = T::exp_shifted(sc);
                        lseb[h * n + i] = mx + sum.ln();
                        let norm = T::ONE / sum;
                        dropout_row(s, b, h, i, st, inv, &mut r.kept, &mut r.d[st..=i]);
                        let (arow, above) =
                            t.a[ii * m..ii * m + block_end(ii, m)].split_at_mut(ii + 1);
                        let dl = r.d[st..=i].iter().zip(&r.l[st..=i]);
                        for (a, (&e, (&dj, &lj))) in arow.iter_mut().zip(sc.iter().zip(dl)) {
                            *a = e * norm * dj * lj;
                        }
                        above.fill(T::ZERO);
                    }
                    // y_i = Σ_j a_ij v_j.
                    let (vat, yat) = ((b * n + st) * w + h * dh, st * w + h * dh);
                    let (vr, yr) = (Span { at: vat, w, dh }, Span { at: yat, w, dh });
                    lower_product(&t.a, m, false, v, vr, yb, yr);
                }
            },
        );
}

/// Per-group partial gradients of the parameters shared across the batch.
struct Partial<T> {
    dpos: Vec<T>,
    du: Vec<T>,
    dl: Vec<T>,
}

/// Backward. Overwrites (does not accumulate) every gradient slice it is given; an empty
/// slice is a gradient not wanted, and one the configuration has no use for is written 0
/// (lengths: [`AttnShape::check_backward`]).
/// dq, dk: [B,n,H*dh] (content scores); dv like v; dpos [H,n,n] (positional scores; upper
/// part j>i written 0); du [u_heads, u.len(n)]; dl likewise for l.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    s: &AttnShape,
    q: &[T],
    k: &[T],
    v: &[T],
    pos: &[T],
    u: &[T],
    l: &[T],
    start: &[u32],
    y: &[T],
    lse: &[T],
    dy: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    dpos: &mut [T],
    du: &mut [T],
    dl: &mut [T],
) {
    s.check_backward(
        &lens(q, k, v, pos, u, l),
        start.len(),
        y.len(),
        lse.len(),
        dy.len(),
        &lens(dq, dk, dv, dpos, du, dl),
    );
    let (n, w, dh, heads) = (s.n, s.width(), s.dh, s.heads);
    let act = s.act_len();
    let want = s.lens();
    let content = s.score == ScoreSource::Content;
    // Gradients the configuration has no use for are written 0 and then left alone.
    let (dq, dk) = if content {
        (dq, dk)
    } else {
        (unused(dq), unused(dk))
    };
    let dpos = if content { unused(dpos) } else { dpos };
    let du = if want.u == 0 { unused(du) } else { du };
    let dl = if want.l == 0 { unused(dl) } else { dl };
    // Content scores need somewhere to put dq and dk even when the caller does not want them.
    let (mut dq_tmp, mut dk_tmp) = (Vec::new(), Vec::new());
    let dq = if content && dq.is_empty() {
        dq_tmp.resize(act, T::ZERO);
        &mut dq_tmp[..]
    } else {
        dq
    };
    let dk = if content && dk.is_empty() {
        dk_tmp.resize(act, T::ZERO);
        &mut dk_tmp[..]
    } else {
        dk
    };
    let (du_len, dl_len, dpos_len) = (du.len(), dl.len(), dpos.len());

    if s.batch == 0 || n == 0 || w == 0 {
        dq.fill(T::ZERO);
        dk.fill(T::ZERO);
        dv.fill(T::ZERO);
        dpos.fill(T::ZERO);
        du.fill(T::ZERO);
        dl.fill(T::ZERO);
        return;
    }
    let (per, ngroups) = groups(s.batch);
    let chunk = per * n * w;
    let tasks: Vec<_> = split_chunks(dq, chunk, ngroups)
        .into_iter()
        .zip(split_chunks(dk, chunk, ngroups))
        .zip(split_chunks(dv, chunk, ngroups))
        .enumerate()
        .collect();
    let inv = inv_keep(s);
    let scale = T::ONE / T::from_usize(s.dh).sqrt();

    let parts: Vec<Partial<T>> = tasks
        .into_par_iter()
        .map(|(g, ((dqg, dkg), dvg))| {
            let mut part = Partial {
                dpos: vec![T::ZERO; dpos_len],
                du: vec![T::ZERO; du_len],
                dl: vec![T::ZERO; dl_len],
            };
            let mut r = Rows::new(n);
            let mut t = Tiles::new(n, dh, true);
            let b0 = g * per;
            let b1 = (b0 + per).min(s.batch);
            for b in b0..b1 {
                let st = (start[b] as usize).min(n);
                let m = n - st;
                // The heads' products overwrite rows st.. of dq, dk and dv; the padded rows
                // are 0 (dq and dk are empty with positional scores).
                let pad = (b - b0) * n * w..((b - b0) * n + st) * w;
                for g in [&mut *dqg, &mut *dkg, &mut *dvg] {
                    if !g.is_empty() {
                        g[pad.clone()].fill(T::ZERO);
                    }
                }
                if m == 0 {
                    continue;
                }
                // Window b's rows st.. of head h: in the inputs, and in this group's chunks.
                for h in 0..heads {
                    let at = (b * n + st) * w + h * dh;
                    let lat = ((b - b0) * n + st) * w + h * dh;
                    scores(s, q, k, pos, b, h, st, &mut t.c, &mut t.xt);
                    // p_ij recomputed from lse; a_ij = p_ij·dropout_ij·L_ij, the weight of v_j.
                    for ii in 0..m {
                        let i = st + ii;
                        let lse_i = lse[(b * heads + h) * n + i];
                        r.kernels(s, u, l, h, i, st);
                        let row = ii * m..ii * m + ii + 1;
                        let (c, p) = (&t.c[row.clone()], &mut t.p[row.clone()]);
                        for (pj, (&cj, &uj)) in p.iter_mut().zip(c.iter().zip(&r.u[st..=i])) {
                            *pj = cj * uj;
                        }
                        T::exp_minus(p, lse_i);
                        let d = &mut t.d[row.clone()];
                        dropout_row(s, b, h, i, st, inv, &mut r.kept, d);
                        let (arow, above) =
                            t.a[ii * m..ii * m + block_end(ii, m)].split_at_mut(ii + 1);
                        let dl = d.iter().zip(&r.l[st..=i]);
                        for (a, (&pj, (&dj, &lj))) in arow.iter_mut().zip(p.iter().zip(dl)) {
                            *a = pj * dj * lj;
                        }
                        above.fill(T::ZERO);
                    }
                    // dV = Aᵀ·dY; e = dY·Vᵀ.
                    let (ir, gr) = (Span { at, w, dh }, Span { at: lat, w, dh });
                    lower_product(&t.a, m, true, dy, ir, dvg, gr);
                    lower_outer(T::ONE, dy, v, ir, m, &mut t.e, &mut t.xt);
                    // Through the softmax: dc_ij (into c, in place), and the kernels' rows.
                    for ii in 0..m {
                        let i = st + ii;
                        let ro = (b * n + i) * w + h * dh;
                        let di = dot(&dy[ro..ro + dh], &y[ro..ro + dh]);
                        r.kernels(s, u, l, h, i, st);
                        let (crow, above) =
                            t.c[ii * m..ii * m + block_end(ii, m)].split_at_mut(ii + 1);
                        // Every slice exactly ii + 1 long, so that the loop has no bounds
                        // checks and vectorises.
                        let len = ii + 1;
                        let row = ii * m..ii * m + len;
                        let (p, e, dr) = (&t.p[row.clone()], &t.e[row.clone()], &t.d[row]);
                        let (ur, lr) = (&r.u[st..=i], &r.l[st..=i]);
                        let (gl, gu) = (&mut r.gl[st..=i], &mut r.gu[st..=i]);
                        for jj in 0..len {
                            let (p, e, d) = (p[jj], e[jj], dr[jj]);
                            gl[jj] = p * d * e;
                            let ds = p * (d * lr[jj] * e - di);
                            gu[jj] = ds * crow[jj];
                            crow[jj] = ds * ur[jj] * scale;
                        }
                        if !content && dpos_len > 0 {
                            let at = (h * n + i) * n + st;
                            for (g, c) in part.dpos[at..at + len].iter_mut().zip(&*crow) {
                                *g += *c;
                            }
                        }
                        above.fill(T::ZERO);
                        if du_len > 0 {
                            let g = kernel_head_mut(&mut part.du, s.u, n, s.u_heads, h);
                            kernel_row_add(s.u, g, i, st, &r.gu);
                        }
                        if dl_len > 0 {
                            let g = kernel_head_mut(&mut part.dl, s.l, n, s.l_heads, h);
                            kernel_row_add(s.l, g, i, st, &r.gl);
                        }
                    }
                    if content {
                        // dQ = dC·K, dK = dCᵀ·Q.
                        lower_product(&t.c, m, false, k, ir, dqg, gr);
                        lower_product(&t.c, m, true, q, ir, dkg, gr);
                    }
                }
            }
            part
        })
        .collect();

    // With Content scores dpos is empty; with Positional its upper part stays 0.
    sum_partials(dpos, parts.iter().map(|p| &p.dpos[..]));
    sum_partials(du, parts.iter().map(|p| &p.du[..]));
    sum_partials(dl, parts.iter().map(|p| &p.dl[..]));
}

/// The `mix` reading's value mixing: out_j = Σ_{m≤j, m≥start[b]} L_jm v_m per batch and head.
/// (L = identity when kind is None: out = v.)  Padded positions (j < start[b]) output 0.
pub fn mix_forward<T: Real>(s: &MixShape, l: &[T], v: &[T], start: &[u32], out: &mut [T]) {
    s.check_forward(l.len(), v.len(), start.len(), out.len());
    let (n, dh, heads) = (s.n, s.dh, s.heads);
    let w = heads * dh;
    if s.batch == 0 || n == 0 || w == 0 {
        return;
    }
    out.par_chunks_mut(n * w).enumerate().for_each_init(
        || vec![T::ZERO; n],
        |row, (b, ob)| {
            ob.fill(T::ZERO);
            let st = (start[b] as usize).min(n);
            let vb = &v[b * n * w..(b + 1) * n * w];
            if s.l == KernelKind::None {
                ob[st * w..].copy_from_slice(&vb[st * w..]);
                return;
            }
            for h in 0..heads {
                let lh = kernel_head(l, s.l, n, s.l_heads, h);
                for j in st..n {
                    kernel_row(s.l, lh, j, st, T::ZERO, row);
                    let oj = &mut ob[j * w + h * dh..j * w + (h + 1) * dh];
                    for m in st..=j {
                        if row[m] != T::ZERO {
                            axpy(oj, row[m], &vb[m * w + h * dh..m * w + (h + 1) * dh]);
                        }
                    }
                }
            }
        },
    );
}

/// Overwrites dv and dl (dl summed over batch, and over heads when l_heads == 1).
pub fn mix_backward<T: Real>(
    s: &MixShape,
    l: &[T],
    v: &[T],
    start: &[u32],
    dout: &[T],
    dv: &mut [T],
    dl: &mut [T],
) {
    s.check_backward(
        l.len(),
        v.len(),
        start.len(),
        dout.len(),
        dv.len(),
        dl.len(),
    );
    let (n, dh, heads) = (s.n, s.dh, s.heads);
    let w = heads * dh;
    let dl_len = s.l_len();
    dv.fill(T::ZERO);
    if s.batch == 0 || n == 0 || w == 0 {
        dl.fill(T::ZERO);
        return;
    }
    let (per, ngroups) = groups(s.batch);
    let tasks: Vec<_> = dv.chunks_mut(per * n * w).enumerate().collect();
    debug_assert_eq!(tasks.len(), ngroups);
    let parts: Vec<Vec<T>> = tasks
        .into_par_iter()
        .map(|(g, dvg)| {
            let mut part = vec![T::ZERO; dl_len];
            let mut row = vec![T::ZERO; n];
            let mut grow = vec![T::ZERO; n];
            let b0 = g * per;
            let b1 = (b0 + per).min(s.batch);
            for b in b0..b1 {
                let st = (start[b] as usize).min(n);
                let dvb = &mut dvg[(b - b0) * n * w..(b - b0 + 1) * n * w];
                let vb = &v[b * n * w..(b + 1) * n * w];
                let gb = &dout[b * n * w..(b + 1) * n * w];
                if s.l == KernelKind::None {
                    dvb[st * w..].copy_from_slice(&gb[st * w..]);
                    continue;
                }
                for h in 0..heads {
                    let lh = kernel_head(l, s.l, n, s.l_heads, h);
                    for j in st..n {
                        kernel_row(s.l, lh, j, st, T::ZERO, &mut row);
                        let gj = &gb[j * w + h * dh..j * w + (h + 1) * dh];
                        for m in st..=j {
                            let mo = m * w + h * dh;
                            if row[m] != T::ZERO {
                                axpy(&mut dvb[mo..mo + dh], row[m], gj);
                            }
                            grow[m] = dot(gj, &vb[mo..mo + dh]);
                        }
                        let gh = kernel_head_mut(&mut part, s.l, n, s.l_heads, h);
                        kernel_row_add(s.l, gh, j, st, &grow);
                    }
                }
            }
            part
        })
        .collect();
    sum_partials(dl, parts.iter().map(|p| &p[..]));
}

impl<T: Real> Attention for Cpu<T> {
    fn attention_fwd(
        &self,
        sh: &AttnShape,
        i: AttnInputs<HostBuf<T>>,
        start: &HostInts,
        y: ViewMut<HostBuf<T>>,
        lse: ViewMut<HostBuf<T>>,
    ) {
        attention_forward(
            sh,
            opt(i.q),
            opt(i.k),
            sl(i.v),
            opt(i.pos),
            opt(i.u),
            opt(i.l),
            start,
            sm(y),
            sm(lse),
        );
    }
    fn attention_bwd(
        &self,
        sh: &AttnShape,
        i: AttnInputs<HostBuf<T>>,
        start: &HostInts,
        y: View<HostBuf<T>>,
        lse: View<HostBuf<T>>,
        dy: View<HostBuf<T>>,
        g: AttnGrads<HostBuf<T>>,
    ) {
        attention_backward(
            sh,
            opt(i.q),
            opt(i.k),
            sl(i.v),
            opt(i.pos),
            opt(i.u),
            opt(i.l),
            start,
            sl(y),
            sl(lse),
            sl(dy),
            opt_mut(g.dq),
            opt_mut(g.dk),
            sm(g.dv),
            opt_mut(g.dpos),
            opt_mut(g.du),
            opt_mut(g.dl),
        );
    }
    fn mix_fwd(
        &self,
        sh: &MixShape,
        l: View<HostBuf<T>>,
        v: View<HostBuf<T>>,
        start: &HostInts,
        out: ViewMut<HostBuf<T>>,
    ) {
        mix_forward(sh, sl(l), sl(v), start, sm(out));
    }
    fn mix_bwd(
        &self,
        sh: &MixShape,
        l: View<HostBuf<T>>,
        v: View<HostBuf<T>>,
        start: &HostInts,
        dout: View<HostBuf<T>>,
        dv: ViewMut<HostBuf<T>>,
        dl: ViewMut<HostBuf<T>>,
    ) {
        mix_backward(sh, sl(l), sl(v), start, sl(dout), sm(dv), sm(dl));
    }
}
