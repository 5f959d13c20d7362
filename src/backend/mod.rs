//! The one seam between devices: one trait per op family, implemented by every backend.
//!
//! Each family has the same name in every layer: the trait here, `cpu/<family>.rs` (the
//! reference, on slices), `cuda/<family>.rs` (the launchers) and `kernels/<family>.cu` (the
//! CUDA kernels). The README's "Ops" table maps every op to its file in each.
//!
//! | family      | ops                                                                  |
//! |-------------|----------------------------------------------------------------------|
//! | [`Memory`]    | buffers, upload/download, fill, copy, axpy, sum of squares        |
//! | [`Dense`]     | GEMM (cuBLAS on the GPU), bias add, column sums                   |
//! | [`Norm`]      | layer norm                                                        |
//! | [`Pointwise`] | activations, dropout, padding-row masks, rotary embedding         |
//! | [`Embedding`] | table lookup and its scatter-add                                  |
//! | [`Attention`] | the fused attention (`weight` reading) and the `mix` reading      |
//! | [`Loss`]      | softmax cross-entropy, BCE with a sampled negative                |
//! | [`Optim`]     | Adam over the flat parameter buffer                               |
//! | [`Rank`]      | evaluation: each row's rank of its target, NaN count, top-K ids   |
//!
//! Generic code takes `B: Backend` (every family at once) and calls `b.gemm(…)`; code that
//! names a concrete backend (tests, benches) imports the traits with
//! `use pasa::backend::prelude::*`.
//!
//! Outputs are overwritten unless the doc says "accumulates". Shapes are given explicitly;
//! every tensor is row-major. Index tensors (item ids, targets, window starts) are u32.

pub mod cpu;
pub mod cuda;
pub mod pool;
pub mod profile;
mod shape;
mod view;

pub use shape::*;
pub use view::*;

/// Every family trait, for code that calls ops on a concrete backend.
pub mod prelude {
    pub use super::{
        Attention, Backend, Dense, DeviceBuf, Embedding, Loss, Memory, Norm, Optim, Pointwise, Rank,
    };
}

/// Steps of one shape a backend may run before [`Memory::run_step`] replays them (the CUDA
/// backend runs two directly, to fill its pool, and captures two graphs).
pub const STEPS_BEFORE_REPLAY: usize = 4;

/// The largest count of windows (batch), heads or positions (n) one kernel launch can take:
/// CUDA limits the y and z grid dimensions, which the attention kernels spend on them, to
/// 65535 blocks. Configurations are checked against it on every device alike.
pub const MAX_GRID_YZ: usize = 65535;

/// A device with every op family: what the tape, the models, the optimiser and the training
/// loop are written against. Implemented for every type that implements the families.
pub trait Backend:
    Memory + Dense + Norm + Pointwise + Embedding + Attention + Loss + Optim + Rank
{
}

impl<B> Backend for B where
    B: Memory + Dense + Norm + Pointwise + Embedding + Attention + Loss + Optim + Rank
{
}

/// The device itself and its buffers.
pub trait Memory {
    type Buf: DeviceBuf + Send + Sync;
    type IBuf: Send + Sync;

    fn name(&self) -> String;

    /// Block until every op queued so far has finished. Ops may be asynchronous (the GPU's
    /// are), so wall-clock timings must bracket the work with this. A no-op where every op
    /// completes before it returns (the CPU).
    fn synchronize(&self) {}

    /// A buffer of `len` elements whose contents are unspecified (left from an earlier use):
    /// for outputs an op overwrites entirely.
    fn alloc(&self, len: usize) -> Self::Buf;
    /// A buffer of `len` zeros: for outputs an op accumulates into.
    fn zeros(&self, len: usize) -> Self::Buf;
    fn upload(&self, data: &[f32]) -> Self::Buf;
    fn upload_u32(&self, data: &[u32]) -> Self::IBuf;
    /// An index buffer of `len` elements whose contents are unspecified: for index outputs
    /// (the [`Rank`] op's).
    fn alloc_u32(&self, len: usize) -> Self::IBuf;
    fn download(&self, x: View<Self::Buf>) -> Vec<f32>;
    /// The whole of an index buffer.
    fn download_u32(&self, x: &Self::IBuf) -> Vec<u32>;
    fn fill(&self, x: ViewMut<Self::Buf>, value: f32);
    /// dst = src; the two have the same length.
    fn copy(&self, src: View<Self::Buf>, dst: ViewMut<Self::Buf>);
    /// y += alpha·x.
    fn axpy(&self, alpha: f32, x: View<Self::Buf>, y: ViewMut<Self::Buf>);
    /// Σ x² (for the global gradient norm).
    fn sum_squares(&self, x: View<Self::Buf>) -> f64;

    /// Runs one training step's device work `step`. `key` names the step's shape (the batch
    /// size; None for a step that must run directly, e.g. one that reads a result back): a
    /// backend may capture a shape's step once and replay it (the CUDA backend runs it as one
    /// graph launch, src/backend/cuda/step_graph.rs). The result is the same either way.
    fn run_step(&self, _key: Option<u64>, step: &mut dyn FnMut()) {
        step()
    }

    /// Whether ops should keep their shapes independent of the data (the classifier loss then
    /// runs over every row instead of the rows with a target), so that a replayed step meets
    /// the same shapes as its capture.
    fn static_shapes(&self) -> bool {
        false
    }

    /// What this backend has done so far: allocations, launches, GEMMs, fills, transfers
    /// (`pasa bench` reports the difference over a step).
    fn counts(&self) -> pool::Counts;

    /// Opens a named range around an op, the step, the evaluation or the optimiser: an NVTX
    /// range on the GPU (for Nsight) and the unit `pasa bench --profile` times. Ranges nest;
    /// each push is matched by a [`Memory::range_pop`]. No-ops unless a backend implements them.
    fn range_push(&self, _name: &'static str) {}
    fn range_pop(&self) {}

    /// Starts timing every range (from its push to its pop: wall clock on the CPU, CUDA events
    /// on the GPU's stream), forgetting any earlier profile, until [`Memory::profile_take`].
    /// Off unless started; a backend that cannot profile ignores it.
    fn profile_start(&self) {}
    /// Stops profiling and returns the time of every range closed since
    /// [`Memory::profile_start`], one entry per name, longest total first (see
    /// [`profile::RangeTime`]). Empty when profiling was not on or the backend cannot profile.
    fn profile_take(&self) -> Vec<profile::RangeTime> {
        Vec::new()
    }
}

/// Matrix products and the bias ops around them.
pub trait Dense: Memory {
    fn gemm(&self, g: &Gemm, a: View<Self::Buf>, b: View<Self::Buf>, c: ViewMut<Self::Buf>);
    /// x[i, r, c] += bias[i·stride + c] for x of `[s.count, rows, s.len]` (one bias per slab).
    fn bias_add(&self, x: ViewMut<Self::Buf>, bias: View<Self::Buf>, s: Strided);
    /// out[i·stride + c] += Σ_r x[i, r, c] for x of `[s.count, rows, s.len]` (accumulates: bias
    /// gradients land straight in the flat gradient buffer).
    fn col_sum(&self, x: View<Self::Buf>, out: ViewMut<Self::Buf>, s: Strided);
}

/// `count` vectors of `len` elements, `stride` elements apart in one buffer: the biases of the
/// q, k and v projections of a block lie `d·d + d` apart, between their weights, so one launch
/// serves the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    pub count: usize,
    pub len: usize,
    pub stride: usize,
}

impl Strided {
    /// A single vector of `len`.
    pub fn one(len: usize) -> Self {
        Strided {
            count: 1,
            len,
            stride: len,
        }
    }
    /// Elements a buffer must span to hold all the vectors.
    pub fn span(&self) -> usize {
        if self.count == 0 {
            0
        } else {
            (self.count - 1) * self.stride + self.len
        }
    }
}

/// Layer normalisation.
pub trait Norm: Memory {
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
    /// dx overwritten, or added to when `accumulate_dx` (the residual stream already holds a
    /// gradient); `dparams` (`2·cols`: dgamma, then dbeta) accumulates Σ_rows dy·x̂ and Σ_rows dy
    /// (one view: every model lays out a layer norm's gamma and beta side by side).
    #[allow(clippy::too_many_arguments)]
    fn layernorm_bwd(
        &self,
        x: View<Self::Buf>,
        gamma: View<Self::Buf>,
        mean: View<Self::Buf>,
        rstd: View<Self::Buf>,
        dy: View<Self::Buf>,
        dx: ViewMut<Self::Buf>,
        accumulate_dx: bool,
        dparams: ViewMut<Self::Buf>,
    );
}

/// Elementwise and row-wise maps.
pub trait Pointwise: Memory {
    /// y = drop(act(x)): the activation, then dropout with `d` (`d.p` 0: none).
    fn act_fwd(&self, act: Activation, d: Dropout, x: View<Self::Buf>, y: ViewMut<Self::Buf>);
    /// dx = act′(x)·drop(dy), the same mask as the forward (overwrites dx; dx may be dy).
    fn act_bwd(
        &self,
        act: Activation,
        d: Dropout,
        x: View<Self::Buf>,
        dy: View<Self::Buf>,
        dx: ViewMut<Self::Buf>,
    );
    /// y = mask(x + drop(o)) for `[batch·n, cols]` tensors: the residual add of a dropped-out
    /// branch (x None: mask(drop(o)), the embedding stage), with the padding rows zeroed when
    /// `mask` is given (`RowMask`: slot i of window b is padding when i < start[b]). Element e
    /// of o is kept iff keep(seed, e, p), kept values scaled by 1/(1−p).
    fn residual_fwd(
        &self,
        x: Option<View<Self::Buf>>,
        o: View<Self::Buf>,
        d: Dropout,
        mask: Option<RowMask<'_, Self::IBuf>>,
        y: ViewMut<Self::Buf>,
    );
    /// Its backward: g = mask(dy); dx = g (overwritten, when wanted), do = drop(g).
    fn residual_bwd(
        &self,
        dy: View<Self::Buf>,
        d: Dropout,
        mask: Option<RowMask<'_, Self::IBuf>>,
        dx: Option<ViewMut<Self::Buf>>,
        d_o: ViewMut<Self::Buf>,
    );
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
}

/// Dropout of one op: element e is kept iff keep(seed, e, p) (src/rng.rs, the same hash in
/// the kernels), kept values scaled by 1/(1−p); p = 0 keeps everything unscaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f32,
    pub seed: u64,
}

impl Dropout {
    pub const NONE: Dropout = Dropout { p: 0.0, seed: 0 };
}

/// The padding rows of `[batch·n, cols]`: slot i of window b is padding when i < start[b].
pub struct RowMask<'a, I> {
    pub start: &'a I,
    pub n: usize,
}

impl<I> Clone for RowMask<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for RowMask<'_, I> {}

/// Table lookups.
pub trait Embedding: Memory {
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
}

/// The fused attention and the `mix` reading (layouts and length checks in [`AttnShape`] and
/// [`MixShape`]).
pub trait Attention: Memory {
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
}

/// The training losses.
pub trait Loss: Memory {
    /// Softmax cross-entropy of `[rows, vocab]` logits (`vocab` ≥ 2), in place: writes each
    /// row's loss lse − logit[target] into `loss` (`[rows]`) and overwrites the row with its
    /// gradient scale·(softmax − onehot(target)). Row r's target is `targets[first + r]`.
    /// Column 0 is the padding item and never a class (its gradient is 0); a row whose target
    /// is 0 is ignored (loss 0, gradient 0). The fused classifier loss
    /// (`Tape::classifier_cross_entropy`) runs it on each chunk of rows between its GEMMs.
    #[allow(clippy::too_many_arguments)]
    fn cross_entropy_in_place(
        &self,
        logits: ViewMut<Self::Buf>,
        targets: &Self::IBuf,
        first: usize,
        vocab: usize,
        scale: f32,
        loss: ViewMut<Self::Buf>,
    );
    /// How many logits one chunk of the fused classifier loss should hold when no chunk is
    /// set: the chunk has max(this / vocab, [`CE_MIN_CHUNK_ROWS`]) rows (see
    /// [`ce_chunk_rows`]).
    fn ce_chunk_elements(&self) -> usize;
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
}

/// The optimiser step.
pub trait Optim: Memory {
    fn adam(
        &self,
        step: &AdamStep,
        params: ViewMut<Self::Buf>,
        grads: View<Self::Buf>,
        m: ViewMut<Self::Buf>,
        v: ViewMut<Self::Buf>,
    );
}

/// Length of the [`Rank`] op's top lists: the largest cut-off of `src/eval.rs` (`KS`).
pub const RANK_K: usize = 50;

/// u32s per row of the [`Rank`] op's output: the rank, the NaN count, then the top
/// [`RANK_K`] ids.
pub const RANK_ROW: usize = 2 + RANK_K;

/// The rank the [`Rank`] op writes for a row whose target is not an item (0 or ≥ vocab): the
/// row is not ranked (NaN count 0, no ids).
pub const RANK_SKIPPED: u32 = u32::MAX;

/// Per-row lists of item ids in CSR form: row r's ids are `items[offsets[r]..offsets[r+1]]`
/// (`offsets` has rows + 1 entries, from 0). Ids are distinct, in 1..vocab, and never the
/// row's target: the host builds them so (`src/eval.rs`, `CandidateLists`).
pub struct RowLists<'a, I> {
    pub offsets: &'a I,
    pub items: &'a I,
}

// By hand: a derive would ask for `I: Copy`, and only the references are copied.
impl<I> Clone for RowLists<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for RowLists<'_, I> {}

/// What each row's target is ranked against: the protocols of `src/eval.rs`.
pub enum Candidates<'a, I> {
    /// Every item 1..vocab (`full`).
    All,
    /// Every item except the row's list (`exclude-seen`: the user's history).
    Except(RowLists<'a, I>),
    /// The target and the row's list only (`sampled100`: the drawn negatives).
    Only(RowLists<'a, I>),
}

impl<I> Clone for Candidates<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<I> Copy for Candidates<'_, I> {}

/// Ranking for evaluation, where the scores are (DESIGN.md §4; conventions in `src/eval.rs`).
pub trait Rank: Memory {
    /// For each row r of `scores` (`[rows, vocab]`, rows = `targets.len()`; column 0 is the
    /// padding item, never ranked), among the candidates `cands` gives it (the target always
    /// one of them), writes `RANK_ROW` u32s at `out[r·RANK_ROW..]`:
    /// - the target's 0-based rank: the candidates other than the target scoring ≥ its score
    ///   (ties pessimistic, NaN below everything); a NaN target ranks after every candidate;
    /// - the count of NaN scores among the candidates (target included);
    /// - the top [`RANK_K`] candidate ids, by score descending, NaN last, ties by lower id;
    ///   0 past the last when there are fewer candidates.
    ///
    /// A row whose target is 0 or ≥ vocab gets rank [`RANK_SKIPPED`], everything else 0.
    fn rank(
        &self,
        scores: View<Self::Buf>,
        vocab: usize,
        targets: &Self::IBuf,
        cands: Candidates<'_, Self::IBuf>,
        out: &mut Self::IBuf,
    );
}

/// The fewest rows a chunk of the fused classifier loss gets from its default size, however
/// wide the catalogue: below this, the per-chunk costs (reading the item table in the two
/// GEMMs that take it whole, and the table gradient's read-modify-write) outweigh the work.
pub const CE_MIN_CHUNK_ROWS: usize = 64;

/// Rows per chunk of the fused classifier loss over `vocab` columns: `set` when given (at
/// least 1), else the backend's budget of [`Loss::ce_chunk_elements`] logits, at least
/// [`CE_MIN_CHUNK_ROWS`] rows.
pub fn ce_chunk_rows(set: Option<usize>, budget: usize, vocab: usize) -> usize {
    match set {
        Some(rows) => rows.max(1),
        None => (budget / vocab.max(1)).max(CE_MIN_CHUNK_ROWS),
    }
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
