//! The model configurations of DESIGN §1 and the one forward pass that builds all of them.

use crate::backend::{
    Activation, AttnShape, Backend, Dropout, Gemm, KernelKind, MixShape, ScoreSource, MAX_GRID_YZ,
};
use crate::config::Invalid;
use crate::error::{Error, Result};
use crate::params::{Init, ParamId, ParamSet};
use crate::rng;
use crate::tape::{AttnIds, IntId, Tape, Tid};
use serde::{Deserialize, Serialize};

/// Where the attention scores come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scores {
    /// q·k (SASRec).
    Content,
    /// q·k with rotary position embedding on q and k.
    Rope,
    /// A learned n×n matrix per block and head (PARec).
    Learned,
    /// P = A·Bᵀ, A, B ∈ R^{n×rank} per block and head (FPARec).
    Factorised,
}

/// How L enters the aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    /// y_i = Σ_j p_ij L_ij v_j.
    Weight,
    /// y = P·(L V).
    Mix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Softmax cross-entropy over the whole catalogue at every non-pad position.
    Ce,
    /// Binary cross-entropy against one sampled negative per position (original SASRec).
    Bce,
}

/// Every knob of DESIGN §1's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The preset this configuration started from (informational).
    pub name: Preset,
    /// Catalogue size: item ids 1..=items, 0 is padding.
    pub items: usize,
    /// Window length.
    pub n: usize,
    pub d: usize,
    pub blocks: usize,
    pub heads: usize,
    pub d_ff: usize,
    pub dropout: f32,
    pub act: Activation,
    /// Learned additive position embedding.
    pub pos_emb: bool,
    pub scores: Scores,
    /// Rank k of FPARec's factors.
    pub rank: usize,
    pub u: KernelKind,
    pub l: KernelKind,
    pub reading: Reading,
    /// One U and one L shared by all blocks (else one per block, "layer-wise").
    pub kernel_shared: bool,
    /// Each head its own kernels (else shared by the heads of a block).
    pub kernel_per_head: bool,
    pub loss: LossKind,
    /// Rows per chunk of the fused classifier loss (CE); None sizes the chunk from the
    /// catalogue and the device (`backend::ce_chunk_rows`). Changes memory, speed and the
    /// rounding of the gradients, not the loss.
    #[serde(default)]
    pub ce_chunk: Option<usize>,
}

pub const PRESETS: [&str; 5] = ["sasrec", "rope", "parec", "fparec", "pasa"];

/// The named configurations of DESIGN §1 (`--model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Additive position embedding, content scores.
    Sasrec,
    /// Rotary position embedding on q and k, no additive one.
    Rope,
    /// A learned n×n positional score matrix per block and head.
    Parec,
    /// The factorised positional score matrix P = A·Bᵀ.
    Fparec,
    /// Toeplitz U, full L (`weight` reading), no additive position embedding.
    Pasa,
}

impl Preset {
    /// The name on the command line and in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Sasrec => "sasrec",
            Preset::Rope => "rope",
            Preset::Parec => "parec",
            Preset::Fparec => "fparec",
            Preset::Pasa => "pasa",
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(name: &str) -> Result<Self> {
        <Preset as clap::ValueEnum>::from_str(name, false).map_err(|_| {
            Error::arg(
                "--model",
                format!(
                    "unknown model '{name}' (expected one of {})",
                    PRESETS.join(", ")
                ),
            )
        })
    }
}

impl ModelConfig {
    /// A named configuration by name (see [`ModelConfig::of`]).
    pub fn preset(name: &str, items: usize) -> Result<Self> {
        Ok(Self::of(name.parse()?, items))
    }

    /// A named configuration with DESIGN's defaults (d 64, 2 blocks, 1 head, d_ff = d,
    /// dropout 0.2, n 200).
    pub fn of(name: Preset, items: usize) -> Self {
        let mut c = ModelConfig {
            name,
            items,
            n: 200,
            d: 64,
            blocks: 2,
            heads: 1,
            d_ff: 64,
            dropout: 0.2,
            act: Activation::Relu,
            pos_emb: true,
            scores: Scores::Content,
            rank: 32,
            u: KernelKind::None,
            l: KernelKind::None,
            reading: Reading::Weight,
            kernel_shared: false,
            kernel_per_head: false,
            loss: LossKind::Ce,
            ce_chunk: None,
        };
        match name {
            Preset::Sasrec => {}
            Preset::Rope => {
                c.pos_emb = false;
                c.scores = Scores::Rope;
            }
            Preset::Parec => c.scores = Scores::Learned,
            Preset::Fparec => c.scores = Scores::Factorised,
            Preset::Pasa => {
                c.pos_emb = false;
                c.u = KernelKind::Toeplitz;
                c.l = KernelKind::Full;
            }
        }
        c
    }

    /// Reject configurations that cannot be built, naming the key.
    pub fn validate(&self) -> std::result::Result<(), Invalid> {
        let bad = |key: &'static str, m: String| Err(Invalid::new(key, m));
        if self.items == 0 {
            return bad("model.items", "the catalogue is empty".into());
        }
        for (key, v) in [
            ("model.n", self.n),
            ("model.d", self.d),
            ("model.blocks", self.blocks),
            ("model.heads", self.heads),
            ("model.d_ff", self.d_ff),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.n > MAX_GRID_YZ {
            return bad(
                "model.n",
                format!("must be at most {MAX_GRID_YZ} (the CUDA grid limit)"),
            );
        }
        if !self.d.is_multiple_of(self.heads) {
            return bad(
                "model.heads",
                format!("d = {} is not divisible by {} heads", self.d, self.heads),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "model.dropout",
                format!("must be in [0, 1), not {}", self.dropout),
            );
        }
        if self.ce_chunk == Some(0) {
            return bad("model.ce_chunk", "must be at least 1".into());
        }
        if self.scores == Scores::Factorised && self.rank == 0 {
            return bad("model.rank", "must be at least 1".into());
        }
        Ok(())
    }

    pub fn dh(&self) -> usize {
        self.d / self.heads
    }

    /// The fused attention call of every block for a batch of `batch` windows (the `mix`
    /// reading applies L before it, so the call itself then has no L).
    pub fn attn_shape(&self, batch: usize, dropout: f32, seed: u64) -> AttnShape {
        AttnShape {
            batch,
            n: self.n,
            heads: self.heads,
            dh: self.dh(),
            score: self.score_source(),
            u: self.u,
            u_heads: self.kernel_heads(),
            l: match self.reading {
                Reading::Weight => self.l,
                Reading::Mix => KernelKind::None,
            },
            l_heads: self.kernel_heads(),
            dropout,
            seed,
        }
    }

    fn score_source(&self) -> ScoreSource {
        match self.scores {
            Scores::Content | Scores::Rope => ScoreSource::Content,
            Scores::Learned | Scores::Factorised => ScoreSource::Positional,
        }
    }

    fn kernel_heads(&self) -> usize {
        if self.kernel_per_head {
            self.heads
        } else {
            1
        }
    }
}

struct BlockParams {
    ln1: (ParamId, ParamId),
    q: Option<(ParamId, ParamId)>,
    k: Option<(ParamId, ParamId)>,
    v: (ParamId, ParamId),
    o: (ParamId, ParamId),
    /// PARec's P, or FPARec's A.
    pos_a: Option<ParamId>,
    /// FPARec's B.
    pos_b: Option<ParamId>,
    u: Option<ParamId>,
    l: Option<ParamId>,
    ln2: (ParamId, ParamId),
    ff1: (ParamId, ParamId),
    ff2: (ParamId, ParamId),
}

/// A learned matrix in position space, as `pasa kernels` exports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positional {
    /// U or L: `[kernel heads, kind.len(n)]`. `identity_init` for the `mix` reading's L
    /// (starts as I), else the kernel starts as ones.
    Kernel {
        id: ParamId,
        kind: KernelKind,
        identity_init: bool,
    },
    /// PARec's scores P: `[heads, n, n]`.
    Learned { id: ParamId },
    /// FPARec's factors A and B of P = A·Bᵀ: each `[heads, n, rank]`.
    Factorised { a: ParamId, b: ParamId },
}

/// A built model: its configuration and the layout of its parameters.
pub struct Model {
    pub cfg: ModelConfig,
    pub params: ParamSet,
    item_emb: ParamId,
    pos_emb: Option<ParamId>,
    blocks: Vec<BlockParams>,
    ln_f: (ParamId, ParamId),
}

/// One batch of left-padded windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `[batch, n]` item ids, 0 = padding.
    pub inputs: Vec<u32>,
    /// `[batch, n]` next-item targets, 0 = no target.
    pub targets: Vec<u32>,
    /// `[batch]` leading padding slots of each window.
    pub start: Vec<u32>,
}

impl Batch {
    pub fn size(&self) -> usize {
        self.start.len()
    }
}

impl Model {
    pub fn new(cfg: ModelConfig) -> Result<Self> {
        cfg.validate()?;
        let (d, n, h, f) = (cfg.d, cfg.n, cfg.heads, cfg.d_ff);
        let mut ps = ParamSet::default();
        let emb_std = 1.0 / (d as f32).sqrt();
        let item_emb = ps.add(
            "item_emb",
            &[cfg.items + 1, d],
            Init::NormalPadZero(emb_std),
        );
        let pos_emb = cfg
            .pos_emb
            .then(|| ps.add("pos_emb", &[n, d], Init::Normal(0.1)));
        let linear = |ps: &mut ParamSet, name: String, i: usize, o: usize| {
            let w = ps.add(
                format!("{name}.w"),
                &[i, o],
                Init::Normal(1.0 / (i as f32).sqrt()),
            );
            (w, ps.add(format!("{name}.b"), &[o], Init::Zeros))
        };
        let ln = |ps: &mut ParamSet, name: String| {
            (
                ps.add(format!("{name}.g"), &[d], Init::Ones),
                ps.add(format!("{name}.b"), &[d], Init::Zeros),
            )
        };
        let kh = cfg.kernel_heads();
        let kernel = |ps: &mut ParamSet, name: String, kind: KernelKind, mix: bool| {
            let init = match (kind, mix) {
                (KernelKind::Full, true) => Init::PackedIdentity(n),
                (KernelKind::Toeplitz, true) => Init::ToeplitzIdentity(n),
                _ => Init::Ones,
            };
            (kind != KernelKind::None).then(|| ps.add(name, &[kh, kind.len(n)], init))
        };
        let mix = cfg.reading == Reading::Mix;
        let shared_u = if cfg.kernel_shared {
            kernel(&mut ps, "U".into(), cfg.u, false)
        } else {
            None
        };
        let shared_l = if cfg.kernel_shared {
            kernel(&mut ps, "L".into(), cfg.l, mix)
        } else {
            None
        };
        let mut blocks = vec![];
        for bi in 0..cfg.blocks {
            let p = format!("block{bi}");
            let ln1 = ln(&mut ps, format!("{p}.ln1"));
            let content = cfg.score_source() == ScoreSource::Content;
            let q = content.then(|| linear(&mut ps, format!("{p}.q"), d, d));
            let k = content.then(|| linear(&mut ps, format!("{p}.k"), d, d));
            let v = linear(&mut ps, format!("{p}.v"), d, d);
            let o = linear(&mut ps, format!("{p}.o"), d, d);
            let (pos_a, pos_b) = match cfg.scores {
                Scores::Learned => (
                    Some(ps.add(format!("{p}.P"), &[h, n, n], Init::Normal(0.01))),
                    None,
                ),
                Scores::Factorised => {
                    // P = A·Bᵀ starts near N(0, 0.01²): each factor has std √(0.01/√rank).
                    let std = (0.01 / (cfg.rank as f32).sqrt()).sqrt();
                    let a = ps.add(format!("{p}.PA"), &[h, n, cfg.rank], Init::Normal(std));
                    (
                        Some(a),
                        Some(ps.add(format!("{p}.PB"), &[h, n, cfg.rank], Init::Normal(std))),
                    )
                }
                _ => (None, None),
            };
            let (u, l) = if cfg.kernel_shared {
                (shared_u, shared_l)
            } else {
                (
                    kernel(&mut ps, format!("{p}.U"), cfg.u, false),
                    kernel(&mut ps, format!("{p}.L"), cfg.l, mix),
                )
            };
            let ln2 = ln(&mut ps, format!("{p}.ln2"));
            let ff1 = linear(&mut ps, format!("{p}.ff1"), d, f);
            let ff2 = linear(&mut ps, format!("{p}.ff2"), f, d);
            blocks.push(BlockParams {
                ln1,
                q,
                k,
                v,
                o,
                pos_a,
                pos_b,
                u,
                l,
                ln2,
                ff1,
                ff2,
            });
        }
        let ln_f = ln(&mut ps, "ln_f".into());
        Ok(Model {
            cfg,
            params: ps,
            item_emb,
            pos_emb,
            blocks,
            ln_f,
        })
    }

    /// Every learned position-space matrix, each once, in block order (U, L, then the scores
    /// P of that block); a kernel shared by all blocks is listed at block 0.
    pub fn positional(&self) -> Vec<Positional> {
        let mix = self.cfg.reading == Reading::Mix;
        let mut out: Vec<Positional> = vec![];
        for bp in &self.blocks {
            let kernels = [(bp.u, self.cfg.u, false), (bp.l, self.cfg.l, mix)];
            for (id, kind, identity_init) in kernels {
                let Some(id) = id else { continue };
                let k = Positional::Kernel {
                    id,
                    kind,
                    identity_init,
                };
                if !out.contains(&k) {
                    out.push(k);
                }
            }
            match (bp.pos_a, bp.pos_b) {
                (Some(id), None) => out.push(Positional::Learned { id }),
                (Some(a), Some(b)) => out.push(Positional::Factorised { a, b }),
                _ => {}
            }
        }
        out
    }

    /// The hidden states `[batch·n, d]` after the final layer norm. Dropout is on when
    /// `train`; its masks derive from `seed`.
    pub fn forward<B: Backend>(
        &self,
        tape: &mut Tape<B>,
        batch: &Batch,
        train: bool,
        seed: u64,
    ) -> (Tid, IntId) {
        let c = &self.cfg;
        let (bsz, n, d) = (batch.size(), c.n, c.d);
        assert_eq!(
            batch.inputs.len(),
            bsz * n,
            "batch inputs are not [batch, n]"
        );
        let p: Vec<Tid> = self
            .params
            .specs
            .iter()
            .map(|s| tape.param(s.off, &s.shape))
            .collect();
        let pid = |id: ParamId| p[id];
        let start = tape.ints(&batch.start);
        let ids = tape.ints(&batch.inputs);
        let drop = if train { c.dropout } else { 0.0 };
        let mut site = 0u64;
        let mut next_seed = || {
            site += 1;
            rng::derive(seed, site)
        };

        let mut x = tape.embedding(pid(self.item_emb), ids, bsz * n, (d as f32).sqrt());
        if let Some(pe) = self.pos_emb {
            // [batch, n·d] + [n·d]: the position embedding broadcast over the batch.
            x = tape.add_bias(x, pid(pe));
        }
        // mask(drop(x)): the embedding dropout and the padding rows in one pass.
        let d = Dropout {
            p: drop,
            seed: next_seed(),
        };
        x = tape.residual(None, x, d, Some((start, n)));

        for bp in &self.blocks {
            let h = tape.layernorm(x, pid(bp.ln1.0), pid(bp.ln1.1));
            // q, k and v in one batched product when the scores are content ones.
            let (mut q, mut k, mut v) = match (bp.q, bp.k) {
                (Some(wq), Some(wk)) => {
                    let ws = [pid(wq.0), pid(wk.0), pid(bp.v.0)];
                    let bs = [pid(wq.1), pid(wk.1), pid(bp.v.1)];
                    let qkv = tape.linear_many(h, &ws, Some(&bs));
                    (Some(qkv[0]), Some(qkv[1]), qkv[2])
                }
                _ => (None, None, tape.linear(h, pid(bp.v.0), Some(pid(bp.v.1)))),
            };
            if c.scores == Scores::Rope {
                q = q.map(|q| tape.rope(q, n, c.heads, c.dh()));
                k = k.map(|k| tape.rope(k, n, c.heads, c.dh()));
            }
            let pos = match (bp.pos_a, bp.pos_b) {
                (Some(a), None) => Some(pid(a)),
                (Some(a), Some(b)) => {
                    let g = Gemm::new(n, n, c.rank, false, true).batched(
                        c.heads,
                        n * c.rank,
                        n * c.rank,
                        n * n,
                    );
                    Some(tape.matmul(pid(a), pid(b), g))
                }
                _ => None,
            };
            let mut l = bp.l.map(pid);
            if c.reading == Reading::Mix {
                if let Some(lk) = l.take() {
                    let ms = MixShape {
                        batch: bsz,
                        n,
                        heads: c.heads,
                        dh: c.dh(),
                        l: c.l,
                        l_heads: c.kernel_heads(),
                    };
                    v = tape.mix(ms, lk, v, start);
                }
            }
            let s = c.attn_shape(bsz, drop, next_seed());
            debug_assert_eq!(s.l != KernelKind::None, l.is_some());
            let inp = AttnIds {
                q,
                k,
                v,
                pos,
                u: bp.u.map(pid),
                l,
            };
            let y = tape.attention(s, inp, start);
            let o = tape.linear(y, pid(bp.o.0), Some(pid(bp.o.1)));
            let d = Dropout {
                p: drop,
                seed: next_seed(),
            };
            x = tape.residual(Some(x), o, d, None);

            let h = tape.layernorm(x, pid(bp.ln2.0), pid(bp.ln2.1));
            let f = tape.linear(h, pid(bp.ff1.0), Some(pid(bp.ff1.1)));
            let d = Dropout {
                p: drop,
                seed: next_seed(),
            };
            let f = tape.act(c.act, f, d);
            let f = tape.linear(f, pid(bp.ff2.0), Some(pid(bp.ff2.1)));
            // x + drop(f), the padding rows zeroed after the block, in one pass.
            let d = Dropout {
                p: drop,
                seed: next_seed(),
            };
            x = tape.residual(Some(x), f, d, Some((start, n)));
        }
        (tape.layernorm(x, pid(self.ln_f.0), pid(self.ln_f.1)), start)
    }

    /// The item embedding table as a tape tensor (tied output layer).
    fn item_table<B: Backend>(&self, tape: &mut Tape<B>) -> Tid {
        let s = &self.params.specs[self.item_emb];
        tape.param(s.off, &s.shape)
    }

    /// Scores of every item for `rows` hidden states: h·Eᵀ, `[rows, items + 1]`.
    fn tied_logits<B: Backend>(&self, tape: &mut Tape<B>, h: Tid, table: Tid, rows: usize) -> Tid {
        let vocab = self.cfg.items + 1;
        tape.matmul(h, table, Gemm::new(rows, vocab, self.cfg.d, false, true))
    }

    /// The training loss of a batch (mean over its non-pad positions).
    pub fn loss<B: Backend>(&self, tape: &mut Tape<B>, batch: &Batch, seed: u64) -> Tid {
        let (h, _) = self.forward(tape, batch, true, seed);
        let table = self.item_table(tape);
        match self.cfg.loss {
            LossKind::Ce => {
                tape.classifier_cross_entropy(h, table, &batch.targets, self.cfg.ce_chunk)
            }
            LossKind::Bce => {
                let count = batch.targets.iter().filter(|&&t| t != 0).count();
                let targets = tape.ints(&batch.targets);
                tape.bce(h, table, targets, count, rng::derive(seed, u64::MAX))
            }
        }
    }

    /// Scores of every item (index 0 = padding) for the newest slot of each window:
    /// `[batch, items + 1]`, row-major, a tensor of the tape (on the device: evaluation ranks
    /// it there, `src/score.rs`). No dropout.
    pub fn score_last<B: Backend>(&self, tape: &mut Tape<B>, batch: &Batch) -> Tid {
        let (h, _) = self.forward(tape, batch, false, 0);
        let n = self.cfg.n;
        let last: Vec<u32> = (0..batch.size()).map(|b| (b * n + n - 1) as u32).collect();
        let last = tape.ints(&last);
        let hl = tape.embedding(h, last, batch.size(), 1.0);
        let table = self.item_table(tape);
        self.tied_logits(tape, hl, table, batch.size())
    }
}
