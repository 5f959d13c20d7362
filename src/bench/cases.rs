//! The work `pasa bench` and the criterion benches time: one model's fused attention call
//! (forward, backward) on random inputs, and one whole training step of a model.

use crate::backend::{
    AttnGrads, AttnInputs, AttnShape, Backend, DeviceBuf, KernelKind, ScoreSource,
};
use crate::error::Result;
use crate::models::{Batch, Model, ModelConfig};
use crate::optim::{AdamConfig, OptState};
use crate::rng::{self, Rng};
use crate::tape::{Range, Tape};

/// Full windows (no padding) of uniformly random items with random next-item targets.
pub fn random_batch(batch: usize, n: usize, items: usize, seed: u64) -> Batch {
    let mut r = Rng::new(seed);
    let mut item = || 1 + r.below(items) as u32;
    let inputs = (0..batch * n).map(|_| item()).collect();
    let targets = (0..batch * n).map(|_| item()).collect();
    Batch {
        inputs,
        targets,
        start: vec![0; batch],
    }
}

/// FLOPs of one fused attention call as (forward, backward), counting only the matrix
/// products over the causal pairs j ≤ i (n(n+1)/2 per window and head), 2·dh FLOPs per pair
/// and product:
///   forward  = F·2·B·H·dh·n(n+1)/2, F = 2 products (QKᵀ, PV) with content scores,
///              1 (PV) with positional ones (the scores are given);
///   backward = G·2·B·H·dh·n(n+1)/2, G = 5 (QKᵀ recomputed, dV, dP, dQ, dK: 2.5× the forward)
///              with content scores, 2 (dV, dP) with positional ones.
/// Softmax, U, L and dropout are elementwise and not counted.
pub fn attention_flops(s: &AttnShape) -> (f64, f64) {
    let per_product = 2.0 * (s.batch * s.heads * s.dh) as f64 * (s.n * (s.n + 1) / 2) as f64;
    let (fwd, bwd) = match s.score {
        ScoreSource::Content => (2.0, 5.0),
        ScoreSource::Positional => (1.0, 2.0),
    };
    (fwd * per_product, bwd * per_product)
}

/// The inputs of one attention call; None where the configuration has none.
struct Inputs<B: Backend> {
    q: Option<B::Buf>,
    k: Option<B::Buf>,
    v: B::Buf,
    pos: Option<B::Buf>,
    u: Option<B::Buf>,
    l: Option<B::Buf>,
}

impl<B: Backend> Inputs<B> {
    fn views(&self) -> AttnInputs<'_, B::Buf> {
        AttnInputs {
            q: self.q.as_ref().map(|x| x.view()),
            k: self.k.as_ref().map(|x| x.view()),
            v: self.v.view(),
            pos: self.pos.as_ref().map(|x| x.view()),
            u: self.u.as_ref().map(|x| x.view()),
            l: self.l.as_ref().map(|x| x.view()),
        }
    }
}

/// Every gradient the configuration trains, one per input present.
struct Grads<B: Backend> {
    dq: Option<B::Buf>,
    dk: Option<B::Buf>,
    dv: B::Buf,
    dpos: Option<B::Buf>,
    du: Option<B::Buf>,
    dl: Option<B::Buf>,
}

impl<B: Backend> Grads<B> {
    fn like(b: &B, x: &Inputs<B>) -> Self {
        let zeros = |t: &Option<B::Buf>| t.as_ref().map(|t| b.zeros(t.len()));
        Grads {
            dq: zeros(&x.q),
            dk: zeros(&x.k),
            dv: b.zeros(x.v.len()),
            dpos: zeros(&x.pos),
            du: zeros(&x.u),
            dl: zeros(&x.l),
        }
    }

    fn views(&mut self) -> AttnGrads<'_, B::Buf> {
        AttnGrads {
            dq: self.dq.as_mut().map(|x| x.view_mut()),
            dk: self.dk.as_mut().map(|x| x.view_mut()),
            dv: self.dv.view_mut(),
            dpos: self.dpos.as_mut().map(|x| x.view_mut()),
            du: self.du.as_mut().map(|x| x.view_mut()),
            dl: self.dl.as_mut().map(|x| x.view_mut()),
        }
    }
}

/// One fused attention call of a model's configuration, with its buffers allocated once.
pub struct AttnCase<B: Backend> {
    pub shape: AttnShape,
    start: B::IBuf,
    inputs: Inputs<B>,
    y: B::Buf,
    lse: B::Buf,
    dy: B::Buf,
    grads: Grads<B>,
}

impl<B: Backend> AttnCase<B> {
    /// Random inputs for `s` (standard normal everywhere), full windows. Runs the forward
    /// once, so that [`AttnCase::backward`] has its y and lse from the start.
    pub fn new(b: &B, s: AttnShape, seed: u64) -> Self {
        let mut r = Rng::new(seed);
        let mut normal = |len: usize| b.upload(&(0..len).map(|_| r.normal()).collect::<Vec<_>>());
        let act = s.batch * s.n * s.width();
        let content = s.score == ScoreSource::Content;
        let kernel = |kind: KernelKind, heads: usize| heads * kind.len(s.n);
        let inputs = Inputs {
            q: content.then(|| normal(act)),
            k: content.then(|| normal(act)),
            v: normal(act),
            pos: (!content).then(|| normal(s.heads * s.n * s.n)),
            u: (s.u != KernelKind::None).then(|| normal(kernel(s.u, s.u_heads))),
            l: (s.l != KernelKind::None).then(|| normal(kernel(s.l, s.l_heads))),
        };
        let dy = normal(act);
        let grads = Grads::like(b, &inputs);
        let mut case = AttnCase {
            shape: s,
            start: b.upload_u32(&vec![0; s.batch]),
            inputs,
            y: b.zeros(act),
            lse: b.zeros(s.batch * s.heads * s.n),
            dy,
            grads,
        };
        case.forward(b);
        case
    }

    pub fn forward(&mut self, b: &B) {
        b.attention_fwd(
            &self.shape,
            self.inputs.views(),
            &self.start,
            self.y.view_mut(),
            self.lse.view_mut(),
        );
    }

    /// The backward of the last forward, writing every gradient the configuration needs.
    pub fn backward(&mut self, b: &B) {
        b.attention_bwd(
            &self.shape,
            self.inputs.views(),
            &self.start,
            self.y.view(),
            self.lse.view(),
            self.dy.view(),
            self.grads.views(),
        );
    }
}

/// One training step of a model on a fixed random batch: zero_grad, forward, loss,
/// backward, Adam (default settings, no clipping), as the training loop runs it.
pub struct TrainCase<B: Backend> {
    model: Model,
    state: OptState<B>,
    batch: Batch,
    optim: AdamConfig,
    seed: u64,
    /// Whether the step may run as a captured graph (the backend decides; off when profiling:
    /// a replay records no range times).
    pub graphs: bool,
    /// This case's key for the backend's step graphs (unique per case: another model's step
    /// on the same backend is another graph).
    key: u64,
}

impl<B: Backend> TrainCase<B> {
    pub fn new(b: &B, cfg: ModelConfig, batch: usize, seed: u64) -> Result<Self> {
        let model = Model::new(cfg)?;
        let state = OptState::new(b, &model.params.init(seed));
        let rows = batch as u64;
        let batch = random_batch(batch, model.cfg.n, model.cfg.items, seed);
        Ok(TrainCase {
            model,
            state,
            batch,
            optim: AdamConfig::default(),
            seed,
            graphs: true,
            key: {
                static CASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 32 | rows
            },
        })
    }

    /// Positions with a target: the tokens one step trains on.
    pub fn tokens(&self) -> usize {
        self.batch.targets.iter().filter(|&&t| t != 0).count()
    }

    /// One step, inside a "step" range as the training loop's (what `--profile` divides by).
    pub fn step(&mut self, b: &B) {
        let _step = Range::open(b, "step");
        let key = self.graphs.then_some(self.key);
        let (st, model, batch, optim) = (&mut self.state, &self.model, &self.batch, &self.optim);
        let base = self.seed;
        b.run_step(key, &mut || {
            st.zero_grad(b);
            let mut tape = Tape::new(b, &st.params, true);
            let seed = rng::derive(base, st.step as u64 + 1);
            let loss = model.loss(&mut tape, batch, seed);
            tape.backward(loss, &mut st.grads);
            drop(tape);
            st.step(b, optim);
        });
    }
}
