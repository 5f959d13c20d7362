//! Checks of the CPU fused attention family against a naive f64 reference (DESIGN §1–2).
//!
//! Tolerances: the f32 forward is compared with the f64 reference to a max-abs error of
//! `FWD_TOL · max(1, max|y_ref|)`; an f32 gradient entry g is compared with the central finite
//! difference f of the f64 reference (step 1e-4, truncation error ~1e-8) and passes when
//! `|g − f| ≤ GRAD_ATOL · max(1, max|f| over the tensor) + GRAD_RTOL · |f|`.

use pasa::backend::cpu::attention::{
    attention_backward, attention_forward, mix_backward, mix_forward,
};
use pasa::backend::{AttnShape, KernelKind, MixShape, ScoreSource};
use pasa::rng::{keep, Rng};

const FWD_TOL: f64 = 2e-5;
const GRAD_ATOL: f64 = 2e-5;
const GRAD_RTOL: f64 = 1e-4;
const FD_STEP: f64 = 1e-4;

const KINDS: [KernelKind; 3] = [KernelKind::None, KernelKind::Full, KernelKind::Toeplitz];
const SCORES: [ScoreSource; 2] = [ScoreSource::Content, ScoreSource::Positional];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    Weight,
    Mix,
}

/// Index names of the six inputs, in the order used by every helper below.
const NAMES: [&str; 6] = ["q", "k", "v", "pos", "u", "l"];

/// One test problem. For the `mix` reading, `s.l`/`s.l_heads` describe the mixing kernel and
/// the attention itself runs with L = none.
#[derive(Debug, Clone)]
struct Case {
    s: AttnShape,
    reading: Reading,
    start: Vec<u32>,
    /// q, k, v, pos, u, l (empty where not used).
    x: [Vec<f32>; 6],
    /// Fixed random cotangent: loss = Σ y·r.
    r: Vec<f32>,
}

fn normals(rng: &mut Rng, len: usize, sd: f32) -> Vec<f32> {
    (0..len).map(|_| rng.normal() * sd).collect()
}

/// A kernel near its identity element plus noise (ones for U and weight-L, identity for mix-L).
fn kernel_init(rng: &mut Rng, kind: KernelKind, n: usize, heads: usize, mix: bool) -> Vec<f32> {
    let len = kind.len(n);
    let mut p = vec![0.0; heads * len];
    for h in 0..heads {
        for i in 0..n {
            for j in 0..=i {
                let idx = h * len + kind.index(i, j);
                let base = if mix && i != j { 0.0 } else { 1.0 };
                if kind == KernelKind::Toeplitz && j != 0 {
                    continue; // one value per distance: set once (from column 0)
                }
                if kind != KernelKind::None {
                    p[idx] = base + 0.3 * rng.normal();
                }
            }
        }
    }
    p
}

#[allow(clippy::too_many_arguments)]
fn make_case(
    seed: u64,
    batch: usize,
    n: usize,
    heads: usize,
    dh: usize,
    score: ScoreSource,
    u: KernelKind,
    u_heads: usize,
    l: KernelKind,
    l_heads: usize,
    reading: Reading,
    dropout: f32,
    start: Vec<u32>,
) -> Case {
    assert_eq!(start.len(), batch);
    let mut rng = Rng::new(seed);
    let s = AttnShape {
        batch,
        n,
        heads,
        dh,
        score,
        u,
        u_heads,
        l,
        l_heads,
        dropout,
        seed: seed ^ 0x5EED,
    };
    let act = batch * n * heads * dh;
    let content = score == ScoreSource::Content;
    let q = if content {
        normals(&mut rng, act, 1.0)
    } else {
        vec![]
    };
    let k = if content {
        normals(&mut rng, act, 1.0)
    } else {
        vec![]
    };
    let v = normals(&mut rng, act, 1.0);
    let pos = if content {
        vec![]
    } else {
        normals(&mut rng, heads * n * n, 1.5)
    };
    let uu = kernel_init(&mut rng, u, n, u_heads, false);
    let ll = kernel_init(&mut rng, l, n, l_heads, reading == Reading::Mix);
    let r = normals(&mut rng, act, 1.0);
    Case {
        s,
        reading,
        start,
        x: [q, k, v, pos, uu, ll],
        r,
    }
}

impl Case {
    fn attn_shape(&self) -> AttnShape {
        match self.reading {
            Reading::Weight => self.s,
            Reading::Mix => AttnShape {
                l: KernelKind::None,
                l_heads: 1,
                ..self.s
            },
        }
    }
    fn mix_shape(&self) -> MixShape {
        MixShape {
            batch: self.s.batch,
            n: self.s.n,
            heads: self.s.heads,
            dh: self.s.dh,
            l: self.s.l,
            l_heads: self.s.l_heads,
        }
    }
    fn label(&self) -> String {
        format!(
            "{:?} {:?} U={:?}x{} L={:?}x{} B={} n={} H={} dh={} drop={} start={:?}",
            self.reading,
            self.s.score,
            self.s.u,
            self.s.u_heads,
            self.s.l,
            self.s.l_heads,
            self.s.batch,
            self.s.n,
            self.s.heads,
            self.s.dh,
            self.s.dropout,
            self.start
        )
    }
}

// ---------------------------------------------------------------------------------------------
// f64 reference (plain loops)

#[allow(clippy::too_many_arguments)]
fn kern64(
    kind: KernelKind,
    p: &[f64],
    n: usize,
    kheads: usize,
    h: usize,
    i: usize,
    j: usize,
    none: f64,
) -> f64 {
    if kind == KernelKind::None {
        return none;
    }
    let kh = if kheads == 1 { 0 } else { h };
    p[kh * kind.len(n) + kind.index(i, j)]
}

/// The `weight` reading in f64. Returns (y, lse).
fn ref_attention(s: &AttnShape, x: &[Vec<f64>; 6], start: &[u32]) -> (Vec<f64>, Vec<f64>) {
    let [q, k, v, pos, u, l] = x;
    let (n, dh, hh) = (s.n, s.dh, s.heads);
    let w = hh * dh;
    let scale = 1.0 / (dh as f64).sqrt();
    let mut y = vec![0.0; s.batch * n * w];
    let mut lse = vec![0.0; s.batch * hh * n];
    for b in 0..s.batch {
        let st = (start[b] as usize).min(n);
        for h in 0..hh {
            for i in st..n {
                let mut sc = vec![0.0; n];
                for j in st..=i {
                    let c = match s.score {
                        ScoreSource::Content => {
                            let mut acc = 0.0;
                            for d in 0..dh {
                                acc += q[(b * n + i) * w + h * dh + d]
                                    * k[(b * n + j) * w + h * dh + d];
                            }
                            acc * scale
                        }
                        ScoreSource::Positional => pos[(h * n + i) * n + j] * scale,
                    };
                    sc[j] = c * kern64(s.u, u, n, s.u_heads, h, i, j, 1.0);
                }
                let mx = sc[st..=i].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc[st..=i].iter().map(|t| (t - mx).exp()).sum();
                let lz = mx + z.ln();
                lse[(b * hh + h) * n + i] = lz;
                for j in st..=i {
                    let mut p = (sc[j] - lz).exp();
                    if s.dropout > 0.0 {
                        let kept = keep(s.seed, s.dropout_index(b, h, i, j), s.dropout);
                        p = if kept {
                            p / (1.0 - s.dropout as f64)
                        } else {
                            0.0
                        };
                    }
                    let a = p * kern64(s.l, l, n, s.l_heads, h, i, j, 1.0);
                    for d in 0..dh {
                        y[(b * n + i) * w + h * dh + d] += a * v[(b * n + j) * w + h * dh + d];
                    }
                }
            }
        }
    }
    (y, lse)
}

/// The `mix` reading's V' = L·V in f64 (L = identity for none; padded positions 0).
fn ref_mix(m: &MixShape, l: &[f64], v: &[f64], start: &[u32]) -> Vec<f64> {
    let (n, dh, hh) = (m.n, m.dh, m.heads);
    let w = hh * dh;
    let mut out = vec![0.0; v.len()];
    for b in 0..m.batch {
        let st = (start[b] as usize).min(n);
        for h in 0..hh {
            for j in st..n {
                for mm in st..=j {
                    let c = kern64(
                        m.l,
                        l,
                        n,
                        m.l_heads,
                        h,
                        j,
                        mm,
                        if j == mm { 1.0 } else { 0.0 },
                    );
                    for d in 0..dh {
                        out[(b * n + j) * w + h * dh + d] += c * v[(b * n + mm) * w + h * dh + d];
                    }
                }
            }
        }
    }
    out
}

fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&t| t as f64).collect()
}

/// The reference output y of a case (either reading) for inputs `x`.
fn ref_y(c: &Case, x: &[Vec<f64>; 6]) -> Vec<f64> {
    match c.reading {
        Reading::Weight => ref_attention(&c.s, x, &c.start).0,
        Reading::Mix => {
            let vm = ref_mix(&c.mix_shape(), &x[5], &x[2], &c.start);
            let xa = [
                x[0].clone(),
                x[1].clone(),
                vm,
                x[3].clone(),
                x[4].clone(),
                vec![],
            ];
            ref_attention(&c.attn_shape(), &xa, &c.start).0
        }
    }
}

fn ref_loss(c: &Case, x: &[Vec<f64>; 6]) -> f64 {
    ref_y(c, x)
        .iter()
        .zip(&c.r)
        .map(|(a, &b)| a * b as f64)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The implementation under test

/// Forward and backward of a case: (y, lse, gradients of q, k, v, pos, u, l).
fn run(c: &Case) -> (Vec<f32>, Vec<f32>, [Vec<f32>; 6]) {
    let s = c.attn_shape();
    let [q, k, v, pos, u, l] = &c.x;
    let act = s.batch * s.n * s.width();
    let vv = match c.reading {
        Reading::Weight => v.clone(),
        Reading::Mix => {
            let mut o = vec![f32::NAN; act];
            mix_forward(&c.mix_shape(), l, v, &c.start, &mut o);
            o
        }
    };
    let la: &[f32] = if c.reading == Reading::Weight { l } else { &[] };
    let mut y = vec![f32::NAN; act];
    let mut lse = vec![f32::NAN; s.batch * s.heads * s.n];
    attention_forward(&s, q, k, &vv, pos, u, la, &c.start, &mut y, &mut lse);

    // Gradient buffers start as NaN so that any entry not overwritten shows up.
    let content = s.score == ScoreSource::Content;
    let nan = |len: usize| vec![f32::NAN; len];
    let mut dq = nan(if content { act } else { 0 });
    let mut dk = nan(if content { act } else { 0 });
    let mut dvv = nan(act);
    let mut dpos = nan(if content { 0 } else { s.heads * s.n * s.n });
    let mut du = nan(u.len());
    let mut dla = nan(la.len());
    attention_backward(
        &s, q, k, &vv, pos, u, la, &c.start, &y, &lse, &c.r, &mut dq, &mut dk, &mut dvv, &mut dpos,
        &mut du, &mut dla,
    );
    let (dv, dl) = match c.reading {
        Reading::Weight => (dvv, dla),
        Reading::Mix => {
            let mut dv = nan(act);
            let mut dl = nan(l.len());
            mix_backward(&c.mix_shape(), l, v, &c.start, &dvv, &mut dv, &mut dl);
            (dv, dl)
        }
    };
    (y, lse, [dq, dk, dv, dpos, du, dl])
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, t| m.max(t.abs()))
}

fn check_forward(c: &Case) {
    let (y, lse, _) = run(c);
    let x = c.x.clone().map(|t| to64(&t));
    let yr = ref_y(c, &x);
    let bound = FWD_TOL * max_abs(&yr).max(1.0);
    for (idx, (a, b)) in y.iter().zip(&yr).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= bound,
            "{}: y[{idx}] {a} vs {b}",
            c.label()
        );
    }
    if c.reading == Reading::Weight {
        let (_, lr) = ref_attention(&c.s, &x, &c.start);
        for (idx, (a, b)) in lse.iter().zip(&lr).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= FWD_TOL * b.abs().max(1.0),
                "{}: lse[{idx}] {a} vs {b}",
                c.label()
            );
        }
    }
}

/// Checks every gradient against central differences of the f64 reference loss: up to
/// `per_tensor` sampled entries of each input, plus one random direction over the whole input.
fn check_grads(c: &Case, per_tensor: usize) {
    let (_, _, g) = run(c);
    let base = c.x.clone().map(|t| to64(&t));
    let mut rng = Rng::new(0xFD ^ c.s.seed);
    for t in 0..6 {
        assert_eq!(
            g[t].len(),
            c.x[t].len(),
            "{}: d{} length",
            c.label(),
            NAMES[t]
        );
        assert!(
            g[t].iter().all(|v| v.is_finite()),
            "{}: d{} not finite",
            c.label(),
            NAMES[t]
        );
        if g[t].is_empty() {
            continue;
        }
        let len = g[t].len();
        let idxs: Vec<usize> = if len <= per_tensor {
            (0..len).collect()
        } else {
            (0..per_tensor).map(|_| rng.below(len)).collect()
        };
        let mut fds = Vec::with_capacity(idxs.len());
        for &idx in &idxs {
            let mut xp = base.clone();
            xp[t][idx] += FD_STEP;
            let lp = ref_loss(c, &xp);
            xp[t][idx] -= 2.0 * FD_STEP;
            let lm = ref_loss(c, &xp);
            fds.push((lp - lm) / (2.0 * FD_STEP));
        }
        let scale = max_abs(&fds).max(max_abs(&to64(&g[t]))).max(1.0);
        for (&idx, &fd) in idxs.iter().zip(&fds) {
            let a = g[t][idx] as f64;
            assert!(
                (a - fd).abs() <= GRAD_ATOL * scale + GRAD_RTOL * fd.abs(),
                "{}: d{}[{idx}] analytic {a} vs finite difference {fd}",
                c.label(),
                NAMES[t]
            );
        }
        // Directional derivative over all entries.
        let dir: Vec<f64> = (0..len).map(|_| rng.normal() as f64).collect();
        let mut xp = base.clone();
        let mut xm = base.clone();
        for i in 0..len {
            xp[t][i] += FD_STEP * dir[i];
            xm[t][i] -= FD_STEP * dir[i];
        }
        let fd = (ref_loss(c, &xp) - ref_loss(c, &xm)) / (2.0 * FD_STEP);
        let an: f64 = g[t].iter().zip(&dir).map(|(a, d)| *a as f64 * d).sum();
        let mag: f64 = g[t]
            .iter()
            .zip(&dir)
            .map(|(a, d)| (*a as f64 * d).abs())
            .sum();
        assert!(
            (an - fd).abs() <= GRAD_ATOL * mag.max(1.0),
            "{}: d{} directional {an} vs {fd}",
            c.label(),
            NAMES[t]
        );
    }
    // Positional gradient: the upper part is written 0.
    if c.s.score == ScoreSource::Positional {
        let n = c.s.n;
        for h in 0..c.s.heads {
            for i in 0..n {
                for j in i + 1..n {
                    assert_eq!(g[3][(h * n + i) * n + j], 0.0, "{}: dpos upper", c.label());
                }
            }
        }
    }
}

/// Windows with padding: one full, one partly padded, one fully padded (when batch ≥ 3).
fn starts(rng: &mut Rng, batch: usize, n: usize) -> Vec<u32> {
    (0..batch)
        .map(|b| match b {
            0 => 0,
            1 if n > 1 => 1 + rng.below(n - 1) as u32,
            1 => 0,
            _ if b == batch - 1 => n as u32,
            _ => rng.below(n + 1) as u32,
        })
        .collect()
}

/// Every combination of score × U × L × reading × sharing at shape (batch, n, heads, dh).
fn all_cases(
    seed: u64,
    batch: usize,
    n: usize,
    heads: usize,
    dh: usize,
    dropout: f32,
) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for reading in [Reading::Weight, Reading::Mix] {
        for score in SCORES {
            for u in KINDS {
                for l in KINDS {
                    // Shared, per-head, and mixed sharing of U and L when there are several heads.
                    let sharing: &[(usize, usize)] = if heads == 1 {
                        &[(1, 1)]
                    } else {
                        &[(1, 1), (2, 2), (1, 2)]
                    };
                    for &(uh, lh) in sharing {
                        let (uh, lh) = (uh.min(heads), lh.min(heads));
                        let st = starts(&mut rng, batch, n);
                        out.push(make_case(
                            rng.next_u32() as u64,
                            batch,
                            n,
                            heads,
                            dh,
                            score,
                            u,
                            uh,
                            l,
                            lh,
                            reading,
                            dropout,
                            st,
                        ));
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn forward_matches_f64_reference() {
    // n 150: the CPU's products run over blocks of 64 query rows (three, the last partial).
    for (b, n, h, dh) in [
        (2, 1, 1, 3),
        (3, 7, 2, 5),
        (3, 33, 2, 3),
        (2, 20, 1, 16),
        (2, 150, 2, 4),
    ] {
        for c in all_cases(11 + n as u64, b, n, h, dh, 0.0) {
            check_forward(&c);
        }
    }
}

#[test]
fn gradients_match_finite_differences_small() {
    // n = 1 and 7: every entry of every input is checked.
    for (b, n, h, dh) in [(2, 1, 1, 3), (2, 1, 2, 5), (3, 7, 1, 5), (3, 7, 2, 3)] {
        for c in all_cases(100 + n as u64 + h as u64, b, n, h, dh, 0.0) {
            check_grads(&c, usize::MAX);
        }
    }
}

#[test]
fn gradients_match_finite_differences_over_row_blocks() {
    // n = 130: three blocks of query rows in the CPU's products (sampled entries plus a
    // directional derivative over all entries).
    for c in all_cases(300, 2, 130, 1, 3, 0.0) {
        check_grads(&c, 12);
    }
}

#[test]
fn gradients_match_finite_differences_n33() {
    // n = 33: sampled entries plus a directional derivative over all entries.
    for (b, n, h, dh) in [(3, 33, 1, 5), (3, 33, 2, 3)] {
        for c in all_cases(200 + h as u64, b, n, h, dh, 0.0) {
            check_grads(&c, 24);
        }
    }
}

#[test]
fn dropout_forward_and_gradients_match_reference_with_same_mask() {
    for (b, n, h, dh) in [(3, 7, 2, 3), (3, 33, 1, 5)] {
        for c in all_cases(300 + n as u64, b, n, h, dh, 0.3) {
            check_forward(&c);
            check_grads(&c, if n > 10 { 16 } else { usize::MAX });
        }
    }
    // The mask actually drops something and depends on the seed.
    let c = make_case(
        7,
        2,
        16,
        1,
        4,
        ScoreSource::Content,
        KernelKind::None,
        1,
        KernelKind::None,
        1,
        Reading::Weight,
        0.3,
        vec![0, 0],
    );
    let no_drop = Case {
        s: AttnShape {
            dropout: 0.0,
            ..c.s
        },
        ..c.clone()
    };
    let other_seed = Case {
        s: AttnShape {
            seed: c.s.seed + 1,
            ..c.s
        },
        ..c.clone()
    };
    let (y, _, _) = run(&c);
    assert_ne!(y, run(&no_drop).0);
    assert_ne!(y, run(&other_seed).0);
}

#[test]
fn mix_backward_matches_finite_differences() {
    for (b, n, h, dh) in [(2, 1, 1, 3), (3, 7, 2, 5), (3, 33, 2, 3)] {
        let mut rng = Rng::new(400 + n as u64);
        for l in KINDS {
            for lh in [1, h] {
                let m = MixShape {
                    batch: b,
                    n,
                    heads: h,
                    dh,
                    l,
                    l_heads: lh,
                };
                let start = starts(&mut rng, b, n);
                let lp = kernel_init(&mut rng, l, n, lh, true);
                let v = normals(&mut rng, b * n * h * dh, 1.0);
                let r = normals(&mut rng, v.len(), 1.0);
                let mut out = vec![f32::NAN; v.len()];
                mix_forward(&m, &lp, &v, &start, &mut out);
                let outr = ref_mix(&m, &to64(&lp), &to64(&v), &start);
                let bound = FWD_TOL * max_abs(&outr).max(1.0);
                for (a, e) in out.iter().zip(&outr) {
                    assert!((*a as f64 - e).abs() <= bound, "mix forward {a} vs {e}");
                }
                let mut dv = vec![f32::NAN; v.len()];
                let mut dl = vec![f32::NAN; lp.len()];
                mix_backward(&m, &lp, &v, &start, &r, &mut dv, &mut dl);
                let loss = |lx: &[f64], vx: &[f64]| -> f64 {
                    ref_mix(&m, lx, vx, &start)
                        .iter()
                        .zip(&r)
                        .map(|(a, &b)| a * b as f64)
                        .sum()
                };
                let (l64, v64) = (to64(&lp), to64(&v));
                // The loss is linear in each of l and v, so differences are exact up to rounding.
                for (t, g) in [(0, &dl), (1, &dv)] {
                    let len = g.len();
                    let idxs: Vec<usize> = if len <= 200 {
                        (0..len).collect()
                    } else {
                        (0..200).map(|_| rng.below(len)).collect()
                    };
                    for idx in idxs {
                        let (mut lx, mut vx) = (l64.clone(), v64.clone());
                        let target = if t == 0 { &mut lx } else { &mut vx };
                        target[idx] += FD_STEP;
                        let lp_ = loss(&lx, &vx);
                        let target = if t == 0 { &mut lx } else { &mut vx };
                        target[idx] -= 2.0 * FD_STEP;
                        let lm_ = loss(&lx, &vx);
                        let fd = (lp_ - lm_) / (2.0 * FD_STEP);
                        let a = g[idx] as f64;
                        assert!(
                            (a - fd).abs() <= GRAD_ATOL * fd.abs().max(1.0),
                            "mix {l:?}x{lh} n={n}: d{}[{idx}] {a} vs {fd}",
                            if t == 0 { "l" } else { "v" }
                        );
                    }
                }
            }
        }
    }
}

/// The Full kernel equal to a Toeplitz one.
fn toeplitz_to_full(t: &[f32], n: usize, heads: usize) -> Vec<f32> {
    let full = KernelKind::Full;
    let mut out = vec![0.0; heads * full.len(n)];
    for h in 0..heads {
        for i in 0..n {
            for j in 0..=i {
                out[h * full.len(n) + full.index(i, j)] = t[h * n + i - j];
            }
        }
    }
    out
}

/// Sums of a Full kernel's gradient along each diagonal i − j = t.
fn diagonal_sums(g: &[f32], n: usize, heads: usize) -> Vec<f64> {
    let full = KernelKind::Full;
    let mut out = vec![0.0; heads * n];
    for h in 0..heads {
        for i in 0..n {
            for j in 0..=i {
                out[h * n + i - j] += g[h * full.len(n) + full.index(i, j)] as f64;
            }
        }
    }
    out
}

#[test]
fn toeplitz_gradients_are_diagonal_sums_of_full_gradients() {
    let mut rng = Rng::new(500);
    for reading in [Reading::Weight, Reading::Mix] {
        for score in SCORES {
            for (which, heads, kh) in [
                (4, 1, 1),
                (4, 2, 1),
                (4, 2, 2),
                (5, 1, 1),
                (5, 2, 1),
                (5, 2, 2),
            ] {
                let (n, b) = (19, 4);
                let (u, uh, l, lh) = if which == 4 {
                    (KernelKind::Toeplitz, kh, KernelKind::Full, heads)
                } else {
                    (KernelKind::Toeplitz, heads, KernelKind::Toeplitz, kh)
                };
                let st = starts(&mut rng, b, n);
                let ct = make_case(
                    rng.next_u32() as u64,
                    b,
                    n,
                    heads,
                    3,
                    score,
                    u,
                    uh,
                    l,
                    lh,
                    reading,
                    0.2,
                    st,
                );
                let mut cf = ct.clone();
                if which == 4 {
                    cf.s.u = KernelKind::Full;
                } else {
                    cf.s.l = KernelKind::Full;
                }
                cf.x[which] = toeplitz_to_full(&ct.x[which], n, kh);
                let (yt, _, gt) = run(&ct);
                let (yf, _, gf) = run(&cf);
                assert_eq!(yt, yf, "same kernel values give the same forward");
                let sums = diagonal_sums(&gf[which], n, kh);
                let bound = 1e-5 * max_abs(&sums).max(1.0);
                for (a, e) in gt[which].iter().zip(&sums) {
                    assert!(
                        (*a as f64 - e).abs() <= bound,
                        "{}: {a} vs diagonal sum {e}",
                        ct.label()
                    );
                }
                for t in 0..4 {
                    assert_eq!(gt[t], gf[t], "{}: d{} differs", ct.label(), NAMES[t]);
                }
            }
        }
    }
}

/// Hand-written causal softmax attention in f64 (masked n×n score matrix per head).
fn plain_attention(c: &Case) -> Vec<f64> {
    let s = &c.s;
    let (n, dh, hh) = (s.n, s.dh, s.heads);
    let w = hh * dh;
    let x = c.x.clone().map(|t| to64(&t));
    let mut y = vec![0.0; s.batch * n * w];
    for b in 0..s.batch {
        let st = c.start[b] as usize;
        for h in 0..hh {
            let mut a = vec![vec![f64::NEG_INFINITY; n]; n];
            for (i, row) in a.iter_mut().enumerate() {
                for (j, e) in row.iter_mut().enumerate() {
                    if j <= i && j >= st {
                        *e = match s.score {
                            ScoreSource::Content => (0..dh)
                                .map(|d| {
                                    x[0][(b * n + i) * w + h * dh + d]
                                        * x[1][(b * n + j) * w + h * dh + d]
                                })
                                .sum::<f64>(),
                            ScoreSource::Positional => x[3][(h * n + i) * n + j],
                        } / (dh as f64).sqrt();
                    }
                }
            }
            for (i, row) in a.iter().enumerate().skip(st) {
                let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|e| (e - mx).exp()).sum();
                for (j, e) in row.iter().enumerate() {
                    let p = (e - mx).exp() / z;
                    for d in 0..dh {
                        y[(b * n + i) * w + h * dh + d] += p * x[2][(b * n + j) * w + h * dh + d];
                    }
                }
            }
        }
    }
    y
}

#[test]
fn none_kernels_are_plain_causal_attention() {
    let mut rng = Rng::new(600);
    for score in SCORES {
        for (b, n, h, dh) in [(3, 1, 1, 3), (3, 9, 2, 5), (3, 40, 2, 8)] {
            let st = starts(&mut rng, b, n);
            let c = make_case(
                rng.next_u32() as u64,
                b,
                n,
                h,
                dh,
                score,
                KernelKind::None,
                1,
                KernelKind::None,
                1,
                Reading::Weight,
                0.0,
                st,
            );
            let (y, _, _) = run(&c);
            let yr = plain_attention(&c);
            let bound = FWD_TOL * max_abs(&yr).max(1.0);
            for (a, e) in y.iter().zip(&yr) {
                assert!((*a as f64 - e).abs() <= bound, "{}: {a} vs {e}", c.label());
            }
        }
    }
}

#[test]
fn ones_kernels_equal_none_and_identity_mix_equals_weight() {
    let mut rng = Rng::new(700);
    for score in SCORES {
        for heads in [1, 2] {
            let (b, n) = (3, 13);
            let st = starts(&mut rng, b, n);
            let none = make_case(
                rng.next_u32() as u64,
                b,
                n,
                heads,
                5,
                score,
                KernelKind::None,
                1,
                KernelKind::None,
                1,
                Reading::Weight,
                0.25,
                st,
            );
            let (y0, l0, g0) = run(&none);
            for u in [KernelKind::Full, KernelKind::Toeplitz] {
                for l in [KernelKind::Full, KernelKind::Toeplitz] {
                    for kh in [1, heads] {
                        let mut c = none.clone();
                        c.s.u = u;
                        c.s.u_heads = kh;
                        c.s.l = l;
                        c.s.l_heads = kh;
                        c.x[4] = vec![1.0; kh * u.len(n)];
                        c.x[5] = vec![1.0; kh * l.len(n)];
                        let (y, lse, g) = run(&c);
                        assert_eq!(y, y0, "{}: forward", c.label());
                        assert_eq!(lse, l0, "{}: lse", c.label());
                        for t in 0..4 {
                            assert_eq!(g[t], g0[t], "{}: d{}", c.label(), NAMES[t]);
                        }
                        // mix with L = identity equals weight with L ≡ 1.
                        let mut m = none.clone();
                        m.reading = Reading::Mix;
                        m.s.l = l;
                        m.s.l_heads = kh;
                        m.x[5] = vec![0.0; kh * l.len(n)];
                        for hh in 0..kh {
                            for i in 0..n {
                                m.x[5][hh * l.len(n) + l.index(i, i)] = 1.0;
                            }
                        }
                        let (ym, lm, gm) = run(&m);
                        assert_eq!(ym, y0, "{}: mix identity forward", m.label());
                        assert_eq!(lm, l0, "{}: mix identity lse", m.label());
                        for t in 0..4 {
                            assert_eq!(gm[t], g0[t], "{}: mix identity d{}", m.label(), NAMES[t]);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn padded_rows_output_zero_and_fully_padded_window_is_inert() {
    let mut rng = Rng::new(800);
    for reading in [Reading::Weight, Reading::Mix] {
        for score in SCORES {
            let (b, n, h, dh) = (3, 11, 2, 3);
            let start = vec![4, n as u32, 0];
            let c = make_case(
                rng.next_u32() as u64,
                b,
                n,
                h,
                dh,
                score,
                KernelKind::Toeplitz,
                1,
                KernelKind::Full,
                2,
                reading,
                0.1,
                start.clone(),
            );
            let (y, lse, g) = run(&c);
            let w = h * dh;
            for (bb, &st) in start.iter().enumerate() {
                for i in 0..st as usize {
                    assert!(y[(bb * n + i) * w..(bb * n + i + 1) * w]
                        .iter()
                        .all(|&t| t == 0.0));
                    for hh in 0..h {
                        assert_eq!(lse[(bb * h + hh) * n + i], 0.0);
                    }
                    // Padded rows and keys get no gradient.
                    for t in [0, 1, 2] {
                        if !g[t].is_empty() {
                            assert!(g[t][(bb * n + i) * w..(bb * n + i + 1) * w]
                                .iter()
                                .all(|&t| t == 0.0));
                        }
                    }
                }
            }
            for gt in &g {
                assert!(gt.iter().all(|t| t.is_finite()), "{}", c.label());
            }
            // The fully padded window contributes nothing: dropping it leaves the kernel gradients.
            let mut c2 = c.clone();
            c2.start[1] = n as u32;
            c2.r[n * w..2 * n * w].iter_mut().for_each(|t| *t = 1e3);
            let (_, _, g2) = run(&c2);
            for t in 3..6 {
                assert_eq!(g[t], g2[t], "{}: d{}", c.label(), NAMES[t]);
            }
        }
    }
}

#[test]
fn backward_is_deterministic() {
    let c = make_case(
        900,
        37,
        29,
        2,
        8,
        ScoreSource::Content,
        KernelKind::Toeplitz,
        1,
        KernelKind::Full,
        2,
        Reading::Weight,
        0.1,
        (0..37).map(|b| (b % 30) as u32).collect(),
    );
    let a = run(&c);
    let b = run(&c);
    assert_eq!(a.2, b.2);
}

/// Forward + backward at the ml-1m training shape. Run with
/// `cargo test --release --test attention -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_ml1m_shape() {
    let (b, n) = (128, 200);
    let mut rng = Rng::new(1000);
    time_attention("full windows", vec![0; b]);
    time_attention(
        "random padding < n/2",
        (0..b).map(|_| rng.below(n / 2) as u32).collect(),
    );
}

fn time_attention(what: &str, start: Vec<u32>) {
    let (b, n, dh) = (start.len(), 200, 64);
    let c = make_case(
        1000,
        b,
        n,
        1,
        dh,
        ScoreSource::Content,
        KernelKind::Toeplitz,
        1,
        KernelKind::Full,
        1,
        Reading::Weight,
        0.2,
        start,
    );
    let s = c.s;
    let [q, k, v, pos, u, l] = &c.x;
    let act = b * n * dh;
    let (mut y, mut lse) = (vec![0.0; act], vec![0.0; b * n]);
    let (mut dq, mut dk, mut dv) = (vec![0.0; act], vec![0.0; act], vec![0.0; act]);
    let (mut du, mut dl) = (vec![0.0; u.len()], vec![0.0; l.len()]);
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        attention_forward(&s, q, k, v, pos, u, l, &c.start, &mut y, &mut lse);
        let t1 = std::time::Instant::now();
        attention_backward(
            &s,
            q,
            k,
            v,
            pos,
            u,
            l,
            &c.start,
            &y,
            &lse,
            &c.r,
            &mut dq,
            &mut dk,
            &mut dv,
            &mut [],
            &mut du,
            &mut dl,
        );
        let t2 = std::time::Instant::now();
        best.0 = best.0.min((t1 - t0).as_secs_f64());
        best.1 = best.1.min((t2 - t1).as_secs_f64());
    }
    println!(
        "B={b} n={n} H=1 dh={dh} content, U toeplitz, L full, dropout 0.2, {what}, {} threads: \
         forward {:.1} ms, backward {:.1} ms, total {:.1} ms",
        rayon::current_num_threads(),
        best.0 * 1e3,
        best.1 * 1e3,
        (best.0 + best.1) * 1e3
    );
}
