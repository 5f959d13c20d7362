//! The one seam between devices: descriptors of the ops shared by every backend.

pub mod cpu;

/// How a positional kernel (U or L) is parametrised. DESIGN §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
