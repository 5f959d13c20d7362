//! The one seam between devices: descriptors of the ops shared by every backend.

pub mod cpu;
pub mod cuda;

/// The largest count of windows (batch), heads or positions (n) one kernel launch can take:
/// CUDA limits the y and z grid dimensions, which the attention kernels spend on them, to
/// 65535 blocks. Configurations are checked against it on every device alike.
pub const MAX_GRID_YZ: usize = 65535;

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

/// A window into a device buffer: `len` elements from `off`.
pub struct View<'a, T> {
    pub buf: &'a T,
    pub off: usize,
    pub len: usize,
}

impl<T> Clone for View<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for View<'_, T> {}

/// A mutable window into a device buffer.
pub struct ViewMut<'a, T> {
    pub buf: &'a mut T,
    pub off: usize,
    pub len: usize,
}

impl<'a, T> ViewMut<'a, T> {
    /// Reborrow, so one output can be passed to several calls in turn.
    pub fn rb(&mut self) -> ViewMut<'_, T> {
        ViewMut {
            buf: self.buf,
            off: self.off,
            len: self.len,
        }
    }
}

/// A buffer of elements on some device.
pub trait DeviceBuf {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn view(&self) -> View<'_, Self>
    where
        Self: Sized,
    {
        View {
            buf: self,
            off: 0,
            len: self.len(),
        }
    }
    fn view_mut(&mut self) -> ViewMut<'_, Self>
    where
        Self: Sized,
    {
        let len = self.len();
        ViewMut {
            buf: self,
            off: 0,
            len,
        }
    }
    fn slice(&self, off: usize, len: usize) -> View<'_, Self>
    where
        Self: Sized,
    {
        assert!(
            off + len <= self.len(),
            "view {off}+{len} past {}",
            self.len()
        );
        View {
            buf: self,
            off,
            len,
        }
    }
    fn slice_mut(&mut self, off: usize, len: usize) -> ViewMut<'_, Self>
    where
        Self: Sized,
    {
        assert!(
            off + len <= self.len(),
            "view {off}+{len} past {}",
            self.len()
        );
        ViewMut {
            buf: self,
            off,
            len,
        }
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
    /// Accumulate into C (beta = 1).
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

/// Every op the models need, forward and backward, on one device.
///
/// Outputs are overwritten unless the doc says "accumulates". Shapes are given explicitly;
/// every tensor is row-major. Index tensors (item ids, targets, window starts) are u32.
pub trait Backend {
    type Buf: DeviceBuf + Send + Sync;
    type IBuf: Send + Sync;

    fn name(&self) -> String;

    /// Block until every op queued so far has finished. Ops may be asynchronous (the GPU's
    /// are), so wall-clock timings must bracket the work with this. A no-op where every op
    /// completes before it returns (the CPU).
    fn synchronize(&self) {}

    // --- memory ---
    fn zeros(&self, len: usize) -> Self::Buf;
    fn upload(&self, data: &[f32]) -> Self::Buf;
    fn upload_u32(&self, data: &[u32]) -> Self::IBuf;
    fn download(&self, x: View<Self::Buf>) -> Vec<f32>;
    fn fill(&self, x: ViewMut<Self::Buf>, value: f32);
    /// y += alpha·x.
    fn axpy(&self, alpha: f32, x: View<Self::Buf>, y: ViewMut<Self::Buf>);
    /// Σ x² (for the global gradient norm).
    fn sum_squares(&self, x: View<Self::Buf>) -> f64;
    /// Σ x.
    fn sum(&self, x: View<Self::Buf>) -> f64;

    // --- dense ---
    fn gemm(&self, g: &Gemm, a: View<Self::Buf>, b: View<Self::Buf>, c: ViewMut<Self::Buf>);
    /// x[r, c] += bias[c] for x of `[rows, bias.len]`.
    fn bias_add(&self, x: ViewMut<Self::Buf>, bias: View<Self::Buf>);
    /// out[c] = Σ_r x[r, c]; `out.len` columns.
    fn col_sum(&self, x: View<Self::Buf>, out: ViewMut<Self::Buf>);

    // --- normalisation and pointwise ---
    /// Row-wise layer norm over `cols`; saves the row mean and reciprocal std.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_fwd(
        &self,
        x: View<Self::Buf>,
        gamma: View<Self::Buf>,
        beta: View<Self::Buf>,
        eps: f32,
        y: ViewMut<Self::Buf>,
        mean: ViewMut<Self::Buf>,
        rstd: ViewMut<Self::Buf>,
    );
    /// dx overwritten; dgamma and dbeta overwritten with the sums over rows.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_bwd(
        &self,
        x: View<Self::Buf>,
        gamma: View<Self::Buf>,
        mean: View<Self::Buf>,
        rstd: View<Self::Buf>,
        dy: View<Self::Buf>,
        dx: ViewMut<Self::Buf>,
        dgamma: ViewMut<Self::Buf>,
        dbeta: ViewMut<Self::Buf>,
    );
    fn act_fwd(&self, act: Activation, x: View<Self::Buf>, y: ViewMut<Self::Buf>);
    fn act_bwd(
        &self,
        act: Activation,
        x: View<Self::Buf>,
        dy: View<Self::Buf>,
        dx: ViewMut<Self::Buf>,
    );
    /// y = x·keep/(1−p) with keep(seed, index, p); the backward is the same call on dy.
    fn dropout(&self, x: View<Self::Buf>, p: f32, seed: u64, y: ViewMut<Self::Buf>);
    /// Zero the rows of padded slots: x is `[batch, n, cols]`, slot i of window b is padding
    /// when i < start[b]. In place.
    fn row_mask(&self, x: ViewMut<Self::Buf>, start: &Self::IBuf, n: usize);
    /// Rotary embedding on `[batch, n, heads·dh]`: within each head the pairs (2c, 2c+1)
    /// rotate by angle i·θ_c, θ_c = 10000^(−2c/dh), i the slot; an odd last element is kept.
    /// `inverse` rotates by −angle (the backward).
    fn rope(
        &self,
        x: View<Self::Buf>,
        n: usize,
        heads: usize,
        dh: usize,
        inverse: bool,
        y: ViewMut<Self::Buf>,
    );

    // --- embeddings ---
    /// out[r] = scale·table[ids[r]] for `cols`-wide rows.
    fn embedding_fwd(
        &self,
        table: View<Self::Buf>,
        ids: &Self::IBuf,
        cols: usize,
        scale: f32,
        out: ViewMut<Self::Buf>,
    );
    /// dtable[ids[r]] += scale·dout[r] (accumulates).
    fn embedding_bwd(
        &self,
        ids: &Self::IBuf,
        dout: View<Self::Buf>,
        cols: usize,
        scale: f32,
        dtable: ViewMut<Self::Buf>,
    );

    // --- attention (layouts in AttnShape / MixShape) ---
    fn attention_fwd(
        &self,
        s: &AttnShape,
        inputs: AttnInputs<Self::Buf>,
        start: &Self::IBuf,
        y: ViewMut<Self::Buf>,
        lse: ViewMut<Self::Buf>,
    );
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(
        &self,
        s: &AttnShape,
        inputs: AttnInputs<Self::Buf>,
        start: &Self::IBuf,
        y: View<Self::Buf>,
        lse: View<Self::Buf>,
        dy: View<Self::Buf>,
        grads: AttnGrads<Self::Buf>,
    );
    fn mix_fwd(
        &self,
        s: &MixShape,
        l: View<Self::Buf>,
        v: View<Self::Buf>,
        start: &Self::IBuf,
        out: ViewMut<Self::Buf>,
    );
    #[allow(clippy::too_many_arguments)]
    fn mix_bwd(
        &self,
        s: &MixShape,
        l: View<Self::Buf>,
        v: View<Self::Buf>,
        start: &Self::IBuf,
        dout: View<Self::Buf>,
        dv: ViewMut<Self::Buf>,
        dl: ViewMut<Self::Buf>,
    );

    // --- losses ---
    /// Softmax cross-entropy per row of `[rows, vocab]` logits. Column 0 is the padding item
    /// and never a class; a target of 0 is ignored (loss 0). Writes loss and lse per row.
    fn cross_entropy_fwd(
        &self,
        logits: View<Self::Buf>,
        targets: &Self::IBuf,
        vocab: usize,
        loss: ViewMut<Self::Buf>,
        lse: ViewMut<Self::Buf>,
    );
    /// dlogits = scale·(softmax − onehot); column 0 and ignored rows get 0.
    #[allow(clippy::too_many_arguments)]
    fn cross_entropy_bwd(
        &self,
        logits: View<Self::Buf>,
        lse: View<Self::Buf>,
        targets: &Self::IBuf,
        vocab: usize,
        scale: f32,
        dlogits: ViewMut<Self::Buf>,
    );
    /// Forward and backward at once (the loss is last on the tape, so its gradient scale is
    /// known up front): loss and lse per row as `cross_entropy_fwd`, dlogits as
    /// `cross_entropy_bwd`. Backends may fuse the two passes into one.
    #[allow(clippy::too_many_arguments)]
    fn cross_entropy_fused(
        &self,
        logits: View<Self::Buf>,
        targets: &Self::IBuf,
        vocab: usize,
        scale: f32,
        loss: ViewMut<Self::Buf>,
        mut lse: ViewMut<Self::Buf>,
        dlogits: ViewMut<Self::Buf>,
    ) {
        self.cross_entropy_fwd(logits, targets, vocab, loss, lse.rb());
        let lse = View {
            buf: &*lse.buf,
            off: lse.off,
            len: lse.len,
        };
        self.cross_entropy_bwd(logits, lse, targets, vocab, scale, dlogits);
    }
    /// Binary cross-entropy of the target against one sampled negative per row:
    /// loss_r = −log σ(h_r·e_t) − log σ(−h_r·e_neg), neg drawn by [`sample_negative`]; ignored
    /// rows (target 0) give 0. h is `[rows, d]`, table `[vocab, d]`.
    #[allow(clippy::too_many_arguments)]
    fn bce_fwd(
        &self,
        h: View<Self::Buf>,
        table: View<Self::Buf>,
        targets: &Self::IBuf,
        vocab: usize,
        seed: u64,
        loss: ViewMut<Self::Buf>,
    );
    /// dh overwritten, dtable accumulates; both scaled by `scale`.
    #[allow(clippy::too_many_arguments)]
    fn bce_bwd(
        &self,
        h: View<Self::Buf>,
        table: View<Self::Buf>,
        targets: &Self::IBuf,
        vocab: usize,
        seed: u64,
        scale: f32,
        dh: ViewMut<Self::Buf>,
        dtable: ViewMut<Self::Buf>,
    );

    // --- optimiser ---
    fn adam(
        &self,
        step: &AdamStep,
        params: ViewMut<Self::Buf>,
        grads: View<Self::Buf>,
        m: ViewMut<Self::Buf>,
        v: ViewMut<Self::Buf>,
    );
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

/// The negative item for row `r` of the BCE loss: uniform over 1..vocab, never the target
/// (redrawn with the next counter when it hits it). The same function runs in the kernels.
pub fn sample_negative(seed: u64, row: usize, target: u32, vocab: usize) -> u32 {
    let items = (vocab - 1).max(1) as u64;
    for attempt in 0..16u64 {
        let h = crate::rng::hash_u32(seed, (row as u64) * 16 + attempt) as u64;
        let neg = 1 + ((h * items) >> 32) as u32;
        if neg != target || items == 1 {
            return neg;
        }
    }
    // 16 hits in a row of a 1-in-`items` event: take the neighbour.
    1 + (target % items as u32)
}

impl<T> Clone for AttnInputs<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for AttnInputs<'_, T> {}
