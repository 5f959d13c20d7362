//! What an op call looks like: shapes, options and view bundles, and the length checks
//! every backend runs before it touches a buffer.

use super::{View, ViewMut};

/// The arithmetic of the CUDA backend's products (the fused attention's tensor-core products
/// and cuBLAS's GEMMs). The CPU always computes in f32.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 results: the attention through split TF32 (three tensor-core products, about f32's
    /// rounding error), cuBLAS in plain f32.
    #[default]
    Fp32,
    /// TF32 products (10-bit mantissas, about 1e-3 relative error per product): one
    /// tensor-core product in the attention, cuBLAS's TF32 tensor-op math.
    Tf32,
    /// bf16 operands in every product (the attention's tensor-core mma and cuBLAS's GEMMs),
    /// f32 accumulation: about 4e-3 relative error per operand (8-bit mantissas). Activations,
    /// weights, gradients and Adam state stay f32 in memory, so memory traffic is not halved.
    Bf16,
}

impl Precision {
    /// Every mode, in the order of the enum (the index of the CUDA kernel-name tables).
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Tf32, Precision::Bf16];
}

/// How a positional kernel (U or L) is parametrised. DESIGN §1.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    /// U ≡ 1; L ≡ 1 (`weight`) or L = I (`mix`). No parameters.
    None,
    /// A free lower-triangular n×n matrix, packed by rows: element (i, j), j ≤ i, sits at
    /// `i(i+1)/2 + j`.
    Full,
    /// One value per distance: K_ij = t[i − j].
    Toeplitz,
}

impl KernelKind {
    /// Number of parameters per head for a window of length `n`.
    pub fn len(self, n: usize) -> usize {
        match self {
            KernelKind::None => 0,
            KernelKind::Full => n * (n + 1) / 2,
            KernelKind::Toeplitz => n,
        }
    }
    /// Index of K_ij (j ≤ i) in one head's parameters.
    #[inline]
    pub fn index(self, i: usize, j: usize) -> usize {
        match self {
            KernelKind::None => 0,
            KernelKind::Full => i * (i + 1) / 2 + j,
            KernelKind::Toeplitz => i - j,
        }
    }
}

/// Where the attention scores come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreSource {
    /// c_ij = q_i·k_j / √dₕ.
    Content,
    /// c_ij = P[h][i][j] / √dₕ (PARec / FPARec); Q and K are not used.
    Positional,
}

/// Shape and options of one fused attention call (DESIGN §1–2, `weight` reading).
///
/// Layouts (all row-major f32):
/// - q, k, v, y, dq, dk, dv: `[batch, n, heads·dh]`; head h owns columns `h·dh..(h+1)·dh`.
/// - pos (positional scores) and dpos: `[heads, n, n]`, only j ≤ i is read / written
///   (the rest of dpos is written as 0).
/// - u, du: `[u_heads, u.len(n)]`; l, dl: `[l_heads, l.len(n)]`. A kernel with
///   `*_heads == 1` is shared by all heads; otherwise `*_heads == heads`.
/// - start: `[batch]`, the number of left-padding slots of each window: positions
///   `j < start[b]` are padding. Padded query rows output 0 and lse 0.
/// - lse: `[batch, heads, n]`, the log-sum-exp of the modulated scores of each row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    pub batch: usize,
    pub n: usize,
    pub heads: usize,
    pub dh: usize,
    pub score: ScoreSource,
    pub u: KernelKind,
    pub u_heads: usize,
    pub l: KernelKind,
    pub l_heads: usize,
    /// Dropout probability on the attention probabilities (0 = off).
    pub dropout: f32,
    /// Seed of the dropout mask; element (b, h, i, j) uses counter `((b·H + h)·n + i)·n + j`.
    pub seed: u64,
}

impl AttnShape {
    pub fn width(&self) -> usize {
        self.heads * self.dh
    }
    pub fn scale(&self) -> f32 {
        1.0 / (self.dh as f32).sqrt()
    }
    /// Counter of the dropout draw of probability (b, h, i, j).
    #[inline]
    pub fn dropout_index(&self, b: usize, h: usize, i: usize, j: usize) -> u64 {
        (((b * self.heads + h) * self.n + i) * self.n + j) as u64
    }
    /// Elements of q, k, v, y and their gradients: `[batch, n, heads·dh]`.
    pub fn act_len(&self) -> usize {
        self.batch * self.n * self.width()
    }
    /// Elements of lse: `[batch, heads, n]`.
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads * self.n
    }
    /// The length of every input (and of its gradient) this configuration has; 0 for the
    /// ones it has not.
    pub fn lens(&self) -> AttnLens {
        let content = self.score == ScoreSource::Content;
        let act = self.act_len();
        AttnLens {
            q: if content { act } else { 0 },
            k: if content { act } else { 0 },
            v: act,
            pos: if content {
                0
            } else {
                self.heads * self.n * self.n
            },
            u: self.u_heads * self.u.len(self.n),
            l: self.l_heads * self.l.len(self.n),
        }
    }

    /// Panics, naming the tensor, unless the inputs have this shape's lengths (inputs the
    /// configuration does not read are not checked). Every backend calls this first.
    pub fn check_inputs(&self, given: &AttnLens, start: usize) {
        let want = self.lens();
        assert_eq!(given.v, want.v, "v length");
        assert_eq!(start, self.batch, "start length");
        match self.score {
            ScoreSource::Content => {
                assert_eq!(given.q, want.q, "q length");
                assert_eq!(given.k, want.k, "k length");
            }
            ScoreSource::Positional => assert_eq!(given.pos, want.pos, "pos length"),
        }
        assert!(self.u_heads == 1 || self.u_heads == self.heads, "u_heads");
        assert!(self.l_heads == 1 || self.l_heads == self.heads, "l_heads");
        if self.u != KernelKind::None {
            assert_eq!(given.u, want.u, "u length");
        }
        if self.l != KernelKind::None {
            assert_eq!(given.l, want.l, "l length");
        }
    }

    /// The checks of [`Self::check_inputs`] and the lengths of the forward's outputs.
    pub fn check_forward(&self, given: &AttnLens, start: usize, y: usize, lse: usize) {
        self.check_inputs(given, start);
        assert_eq!(y, self.act_len(), "y length");
        assert_eq!(lse, self.lse_len(), "lse length");
    }

    /// The checks of [`Self::check_inputs`], the lengths of the saved forward outputs and dy,
    /// and of the gradients: dv always; any other gradient that the configuration has and the
    /// caller gives (length > 0) must match its input. The gradients the configuration has no
    /// use for are written 0 whatever their length, on every backend.
    #[allow(clippy::too_many_arguments)]
    pub fn check_backward(
        &self,
        given: &AttnLens,
        start: usize,
        y: usize,
        lse: usize,
        dy: usize,
        grads: &AttnLens,
    ) {
        self.check_inputs(given, start);
        let want = self.lens();
        assert_eq!(y, self.act_len(), "y length");
        assert_eq!(dy, self.act_len(), "dy length");
        assert_eq!(lse, self.lse_len(), "lse length");
        assert_eq!(grads.v, want.v, "dv length");
        for (name, g, w) in [
            ("dq length", grads.q, want.q),
            ("dk length", grads.k, want.k),
            ("dpos length", grads.pos, want.pos),
            ("du length", grads.u, want.u),
            ("dl length", grads.l, want.l),
        ] {
            if g > 0 && w > 0 {
                assert_eq!(g, w, "{name}");
            }
        }
    }
}

/// The lengths of one attention call's tensors (0 where absent), for the shape checks: the
/// inputs (q, k, v, pos, u, l) or the gradients (dq, dk, dv, dpos, du, dl) alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttnLens {
    pub q: usize,
    pub k: usize,
    pub v: usize,
    pub pos: usize,
    pub u: usize,
    pub l: usize,
}

/// Shape of the `mix` reading's value mixing V' = L·V along positions (per batch and head).
/// l, dl: `[l_heads, l.len(n)]`; v, out: `[batch, n, heads·dh]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixShape {
    pub batch: usize,
    pub n: usize,
    pub heads: usize,
    pub dh: usize,
    pub l: KernelKind,
    pub l_heads: usize,
}

impl MixShape {
    /// Elements of v, out and their gradients: `[batch, n, heads·dh]`.
    pub fn act_len(&self) -> usize {
        self.batch * self.n * self.heads * self.dh
    }
    /// Elements of l and dl (0 when l is `none`).
    pub fn l_len(&self) -> usize {
        self.l_heads * self.l.len(self.n)
    }

    /// Panics, naming the tensor, unless l, v and start have this shape's lengths.
    pub fn check_inputs(&self, l: usize, v: usize, start: usize) {
        assert_eq!(v, self.act_len(), "v length");
        assert_eq!(start, self.batch, "start length");
        assert!(self.l_heads == 1 || self.l_heads == self.heads, "l_heads");
        if self.l != KernelKind::None {
            assert_eq!(l, self.l_len(), "l length");
        }
    }

    /// The checks of [`Self::check_inputs`] and the output's length.
    pub fn check_forward(&self, l: usize, v: usize, start: usize, out: usize) {
        self.check_inputs(l, v, start);
        assert_eq!(out, self.act_len(), "out length");
    }

    /// The checks of [`Self::check_inputs`] and the lengths of dout, dv and dl.
    #[allow(clippy::too_many_arguments)]
    pub fn check_backward(
        &self,
        l: usize,
        v: usize,
        start: usize,
        dout: usize,
        dv: usize,
        dl: usize,
    ) {
        self.check_inputs(l, v, start);
        assert_eq!(dout, self.act_len(), "dout length");
        assert_eq!(dv, self.act_len(), "dv length");
        assert_eq!(dl, self.l_len(), "dl length");
    }
}

/// A row-major (batched) matrix product `C = alpha·op(A)·op(B) + beta·C`.
///
/// op(A) is `[m, k]` (A stored `[k, m]` when `trans_a`), op(B) is `[k, n]` (B stored `[n, k]`
/// when `trans_b`), C is `[m, n]`. Batches are `stride_*` elements apart (0 broadcasts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Gemm {
    /// One unbatched product with alpha 1, beta 0.
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Self {
        Gemm {
            m,
            n,
            k,
            trans_a,
            trans_b,
            alpha: 1.0,
            beta: 0.0,
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
        }
    }
    /// Accumulate into C (beta = 1). No caller yet: kept for the accumulating-GEMM step of
    /// the next issue, where the tape's weight-gradient products add straight into the flat
    /// gradient buffer instead of into a temporary that `axpy` then adds.
    pub fn accumulate(mut self) -> Self {
        self.beta = 1.0;
        self
    }
    pub fn batched(mut self, batch: usize, sa: usize, sb: usize, sc: usize) -> Self {
        self.batch = batch;
        self.stride_a = sa;
        self.stride_b = sb;
        self.stride_c = sc;
        self
    }
}

/// Pointwise activation of the feed-forward block.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    /// tanh approximation: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))).
    Gelu,
}

/// One Adam step over a flat parameter buffer (DESIGN §1: β 0.9/0.98).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay (AdamW), 0 = off.
    pub weight_decay: f32,
    /// 1-based step, for the bias corrections.
    pub step: u32,
    /// Multiplies every gradient first (global-norm clipping: min(1, max_norm/‖g‖)).
    pub grad_scale: f32,
}

/// The inputs of the attention forward and backward (None where the configuration has none).
pub struct AttnInputs<'a, T> {
    pub q: Option<View<'a, T>>,
    pub k: Option<View<'a, T>>,
    pub v: View<'a, T>,
    pub pos: Option<View<'a, T>>,
    pub u: Option<View<'a, T>>,
    pub l: Option<View<'a, T>>,
}

/// The gradients the attention backward overwrites (None where not wanted).
pub struct AttnGrads<'a, T> {
    pub dq: Option<ViewMut<'a, T>>,
    pub dk: Option<ViewMut<'a, T>>,
    pub dv: ViewMut<'a, T>,
    pub dpos: Option<ViewMut<'a, T>>,
    pub du: Option<ViewMut<'a, T>>,
    pub dl: Option<ViewMut<'a, T>>,
}

impl<T> Clone for AttnInputs<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for AttnInputs<'_, T> {}

impl<T> AttnInputs<'_, T> {
    /// The inputs' lengths (0 where absent), for [`AttnShape::check_inputs`].
    pub fn lens(&self) -> AttnLens {
        let len = |v: Option<View<T>>| v.map_or(0, |v| v.len);
        AttnLens {
            q: len(self.q),
            k: len(self.k),
            v: self.v.len,
            pos: len(self.pos),
            u: len(self.u),
            l: len(self.l),
        }
    }
}

impl<T> AttnGrads<'_, T> {
    /// The gradients' lengths (0 where absent), for [`AttnShape::check_backward`].
    pub fn lens(&self) -> AttnLens {
        let len = |v: &Option<ViewMut<T>>| v.as_ref().map_or(0, |v| v.len);
        AttnLens {
            q: len(&self.dq),
            k: len(&self.dk),
            v: self.dv.len,
            pos: len(&self.dpos),
            u: len(&self.du),
            l: len(&self.dl),
        }
    }
}
