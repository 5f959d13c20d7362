//! The autograd tape (DESIGN §5).
//!
//! Every op run forward pushes its output as a new tensor and, when recording, an [`Op`] with
//! the ids of its inputs and whatever its backward needs. [`Tape::backward`] walks the ops in
//! reverse and accumulates gradients by tensor id. Parameters are leaves: views into the one
//! flat parameter buffer, whose gradients land in the matching views of the flat gradient
//! buffer. No generic graph: one enum variant per op, its backward in one match arm.
//!
//! A step allocates nothing once its shapes have been seen: buffers come from the backend's
//! pool, outputs an op overwrites are taken unfilled (`alloc`), and gradients are written
//! where they belong: a parameter's straight into the flat gradient buffer (GEMMs with
//! beta = 1, accumulating column sums and layer-norm sums), a tensor's that already has one
//! added by the op itself where it can (GEMM, layer norm), else moved in.

use crate::backend::{
    ce_chunk_rows, Activation, AttnGrads, AttnInputs, AttnShape, Backend, DeviceBuf, Dropout, Gemm,
    MixShape, RowMask, Strided, View, ViewMut,
};
use std::cell::RefCell;

/// A tensor on the tape.
pub type Tid = usize;

/// An index tensor (ids, targets, window starts) owned by the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntId(usize);

enum Value<B: Backend> {
    Owned(B::Buf),
    /// A parameter: `len` elements at `off` of the flat parameter buffer.
    Param {
        off: usize,
        len: usize,
    },
    /// `len` elements at `off` of the owned tensor `parent` (one output of an op that writes
    /// several into one buffer); its gradient lives at the same place in the parent's.
    Slice {
        parent: Tid,
        off: usize,
        len: usize,
    },
}

enum Op<B: Backend> {
    MatMul {
        a: Tid,
        b: Tid,
        g: Gemm,
        out: Tid,
    },
    /// out += bias in place (out is the tensor the bias was added to).
    AddBias {
        bias: Tid,
        out: Tid,
    },
    /// out[i] = x·w_i + b_i for `s.count` weights `[inp, s.len]` (and biases) evenly spaced in
    /// the parameters, `stride` apart, starting at parameters `w` (and `b`); out is
    /// `[count, rows, s.len]`, its slabs the tape's slices.
    LinearBatched {
        x: Tid,
        w: Tid,
        b: Option<Tid>,
        inp: usize,
        s: Strided,
        out: Tid,
    },
    LayerNorm {
        x: Tid,
        gamma: Tid,
        beta: Tid,
        mean: B::Buf,
        rstd: B::Buf,
        out: Tid,
    },
    Act {
        act: Activation,
        d: Dropout,
        x: Tid,
        out: Tid,
    },
    Residual {
        x: Option<Tid>,
        o: Tid,
        d: Dropout,
        mask: Option<(IntId, usize)>,
        out: Tid,
    },
    Rope {
        x: Tid,
        n: usize,
        heads: usize,
        dh: usize,
        out: Tid,
    },
    Embedding {
        table: Tid,
        ids: IntId,
        cols: usize,
        scale: f32,
        out: Tid,
    },
    Attention {
        s: AttnShape,
        inp: AttnIds,
        start: IntId,
        lse: B::Buf,
        out: Tid,
    },
    Mix {
        s: MixShape,
        l: Tid,
        v: Tid,
        start: IntId,
        out: Tid,
    },
    ClassifierCe {
        h: Tid,
        table: Tid,
        /// Rows with a target: none, and there is no gradient.
        count: usize,
        /// ∂(mean loss)/∂h (`[rows, d]`, 0 on rows without a target) and ∂/∂table, computed
        /// in the forward; taken by the backward.
        grads: Option<(B::Buf, B::Buf)>,
        out: Tid,
    },
    Bce {
        h: Tid,
        table: Tid,
        targets: IntId,
        vocab: usize,
        seed: u64,
        count: usize,
        out: Tid,
    },
}

impl<B: Backend> Op<B> {
    /// The name of the op's backward, as a profiling range.
    fn backward_name(&self) -> &'static str {
        match self {
            Op::MatMul { .. } => "matmul.bwd",
            Op::AddBias { .. } => "add_bias.bwd",
            Op::LinearBatched { .. } => "linear_batched.bwd",
            Op::LayerNorm { .. } => "layernorm.bwd",
            Op::Act { .. } => "act.bwd",
            Op::Residual { .. } => "residual.bwd",
            Op::Rope { .. } => "rope.bwd",
            Op::Embedding { .. } => "embedding.bwd",
            Op::Attention { .. } => "attention.bwd",
            Op::Mix { .. } => "mix.bwd",
            Op::ClassifierCe { .. } => "classifier_ce.bwd",
            Op::Bce { .. } => "bce.bwd",
        }
    }
}

/// A named range around one op (NVTX on the GPU, a timed unit of `pasa bench --profile`):
/// pushed when opened, popped when dropped.
pub struct Range<'a, B: Backend>(&'a B);

impl<'a, B: Backend> Range<'a, B> {
    pub fn open(b: &'a B, name: &'static str) -> Self {
        b.range_push(name);
        Range(b)
    }
}

impl<B: Backend> Drop for Range<'_, B> {
    fn drop(&mut self) {
        self.0.range_pop();
    }
}

/// The tensors feeding one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnIds {
    pub q: Option<Tid>,
    pub k: Option<Tid>,
    pub v: Tid,
    pub pos: Option<Tid>,
    pub u: Option<Tid>,
    pub l: Option<Tid>,
}

pub struct Tape<'a, B: Backend> {
    pub b: &'a B,
    params: &'a B::Buf,
    values: Vec<Value<B>>,
    shapes: Vec<Vec<usize>>,
    ints: Vec<B::IBuf>,
    ops: Vec<Op<B>>,
    record: bool,
    /// A scalar gradient known on the host (the backward's seed of 1 at the loss), so the loss
    /// ops need not read their output gradient back from the device.
    host_grad: Option<(Tid, f32)>,
    /// (parent, slice) of every slice tensor.
    slices: Vec<(Tid, Tid)>,
    /// During the backward: whether each slice's part of its parent's gradient has been
    /// written (the parent's gradient is taken unfilled; a part never written is zeroed before
    /// the parent's op reads it).
    slice_written: RefCell<Vec<bool>>,
}

impl<'a, B: Backend> Tape<'a, B> {
    /// A tape over the flat parameter buffer; `record` false runs forward only (evaluation).
    pub fn new(b: &'a B, params: &'a B::Buf, record: bool) -> Self {
        Tape {
            b,
            params,
            values: vec![],
            shapes: vec![],
            ints: vec![],
            ops: vec![],
            record,
            host_grad: None,
            slices: vec![],
            slice_written: RefCell::new(vec![]),
        }
    }

    pub fn shape(&self, t: Tid) -> &[usize] {
        &self.shapes[t]
    }

    pub fn view(&self, t: Tid) -> View<'_, B::Buf> {
        match &self.values[t] {
            Value::Owned(buf) => buf.view(),
            Value::Param { off, len } => self.params.slice(*off, *len),
            Value::Slice { parent, off, len } => match &self.values[*parent] {
                Value::Owned(buf) => buf.slice(*off, *len),
                _ => unreachable!("a slice's parent is an owned tensor"),
            },
        }
    }

    /// The offset of parameter `t` in the flat buffer, if it is one.
    fn param_off(&self, t: Tid) -> Option<usize> {
        match self.values[t] {
            Value::Param { off, .. } => Some(off),
            _ => None,
        }
    }

    fn opt_view(&self, t: Option<Tid>) -> Option<View<'_, B::Buf>> {
        t.map(|t| self.view(t))
    }

    /// Download a tensor to the host.
    pub fn to_host(&self, t: Tid) -> Vec<f32> {
        self.b.download(self.view(t))
    }

    fn push(&mut self, buf: B::Buf, shape: Vec<usize>) -> Tid {
        debug_assert_eq!(buf.len(), shape.iter().product::<usize>());
        self.values.push(Value::Owned(buf));
        self.shapes.push(shape);
        self.values.len() - 1
    }

    fn record(&mut self, op: Op<B>) {
        if self.record {
            self.ops.push(op);
        }
    }

    fn len(&self, t: Tid) -> usize {
        self.shapes[t].iter().product()
    }

    /// A parameter leaf at `off` of the flat buffer.
    pub fn param(&mut self, off: usize, shape: &[usize]) -> Tid {
        let len = shape.iter().product();
        self.values.push(Value::Param { off, len });
        self.shapes.push(shape.to_vec());
        self.values.len() - 1
    }

    pub fn ints(&mut self, data: &[u32]) -> IntId {
        self.ints.push(self.b.upload_u32(data));
        IntId(self.ints.len() - 1)
    }

    /// out = op(a)·op(b) for 2-D (or batched 3-D) tensors as described by `g`
    /// (its alpha, beta must be 1, 0; batch strides must not be 0).
    pub fn matmul(&mut self, a: Tid, b: Tid, g: Gemm) -> Tid {
        let _range = Range::open(self.b, "matmul");
        assert!(
            g.alpha == 1.0 && g.beta == 0.0,
            "matmul: plain products only"
        );
        assert!(
            g.batch == 1 || (g.stride_a > 0 && g.stride_b > 0),
            "matmul: no broadcast"
        );
        let mut out = self.b.alloc(g.batch * g.m * g.n);
        self.b.gemm(&g, self.view(a), self.view(b), out.view_mut());
        let shape = if g.batch == 1 {
            vec![g.m, g.n]
        } else {
            vec![g.batch, g.m, g.n]
        };
        let out = self.push(out, shape);
        self.record(Op::MatMul { a, b, g, out });
        out
    }

    /// x·w for x `[rows, in]` and w `[in, out]`, plus an optional bias `[out]` (added in place).
    pub fn linear(&mut self, x: Tid, w: Tid, bias: Option<Tid>) -> Tid {
        let (rows, inp) = (self.len(x) / self.shapes[w][0], self.shapes[w][0]);
        let outc = self.shapes[w][1];
        let y = self.matmul(x, w, Gemm::new(rows, outc, inp, false, false));
        match bias {
            Some(b) => self.add_bias(y, b),
            None => y,
        }
    }

    /// x += bias in place, the bias broadcast over the leading rows of x; returns x. x must be
    /// an op's fresh output that nothing has read yet (the backward of what produced it does not
    /// read it).
    pub fn add_bias(&mut self, x: Tid, bias: Tid) -> Tid {
        let _range = Range::open(self.b, "add_bias");
        let b = self.b;
        let bias_view = match &self.values[bias] {
            Value::Param { off, len } => self.params.slice(*off, *len),
            _ => panic!("add_bias: the bias must be a parameter"),
        };
        let st = Strided::one(bias_view.len);
        match &mut self.values[x] {
            Value::Owned(buf) => b.bias_add(buf.view_mut(), bias_view, st),
            _ => panic!("add_bias: only an op's own output can be changed in place"),
        }
        self.record(Op::AddBias { bias, out: x });
        x
    }

    /// x·w_i + b_i for several weights at once (the q, k and v projections of a block): one
    /// batched GEMM and one bias pass when the weights (and the biases) are parameters of one
    /// shape evenly spaced in the flat buffer, as the models lay them out; else one `linear`
    /// each. Returns one tensor per weight.
    pub fn linear_many(&mut self, x: Tid, ws: &[Tid], bs: Option<&[Tid]>) -> Vec<Tid> {
        let Some(s) = self.even_spacing(ws, bs) else {
            return (0..ws.len())
                .map(|i| self.linear(x, ws[i], bs.map(|b| b[i])))
                .collect();
        };
        let _range = Range::open(self.b, "linear_batched");
        let inp = self.shapes[ws[0]][0];
        let rows = self.len(x) / inp;
        let b = self.b;
        let slab = rows * s.len;
        let mut out = b.alloc(s.count * slab);
        let w_span = self.params.slice(
            self.param_off(ws[0]).expect("checked"),
            s.stride * (s.count - 1) + inp * s.len,
        );
        let g = Gemm::new(rows, s.len, inp, false, false).batched(s.count, 0, s.stride, slab);
        b.gemm(&g, self.view(x), w_span, out.view_mut());
        if let Some(bs) = bs {
            let off = self.param_off(bs[0]).expect("checked");
            b.bias_add(out.view_mut(), self.params.slice(off, s.span()), s);
        }
        let parent = self.push(out, vec![s.count, rows, s.len]);
        self.record(Op::LinearBatched {
            x,
            w: ws[0],
            b: bs.map(|b| b[0]),
            inp,
            s,
            out: parent,
        });
        (0..s.count)
            .map(|i| {
                self.values.push(Value::Slice {
                    parent,
                    off: i * slab,
                    len: slab,
                });
                self.shapes.push(vec![rows, s.len]);
                let t = self.values.len() - 1;
                self.slices.push((parent, t));
                t
            })
            .collect()
    }

    /// The spacing of weights `ws` (and biases `bs`) when they are parameters of one shape,
    /// `stride` apart in the flat buffer (the biases with the same stride).
    fn even_spacing(&self, ws: &[Tid], bs: Option<&[Tid]>) -> Option<Strided> {
        let offs: Vec<usize> = ws
            .iter()
            .map(|&w| self.param_off(w))
            .collect::<Option<_>>()?;
        if ws.len() < 2 || ws.iter().any(|&w| self.shapes[w] != self.shapes[ws[0]]) {
            return None;
        }
        let stride = offs[1].checked_sub(offs[0])?;
        let [inp, len] = self.shapes[ws[0]][..] else {
            return None;
        };
        let even = |o: &[usize]| o.windows(2).all(|p| p[1] == p[0] + stride);
        if stride < inp * len || !even(&offs) {
            return None;
        }
        if let Some(bs) = bs {
            let boffs: Vec<usize> = bs
                .iter()
                .map(|&b| self.param_off(b))
                .collect::<Option<_>>()?;
            let bias_ok = bs.len() == ws.len()
                && bs.iter().all(|&b| self.len(b) == len)
                && even(&boffs)
                && stride >= len;
            if !bias_ok {
                return None;
            }
        }
        Some(Strided {
            count: ws.len(),
            len,
            stride,
        })
    }

    pub fn layernorm(&mut self, x: Tid, gamma: Tid, beta: Tid) -> Tid {
        let _range = Range::open(self.b, "layernorm");
        let rows = self.len(x) / self.len(gamma);
        let (mut y, mut mean, mut rstd) = (
            self.b.alloc(self.len(x)),
            self.b.alloc(rows),
            self.b.alloc(rows),
        );
        self.b.layernorm_fwd(
            self.view(x),
            self.view(gamma),
            self.view(beta),
            LN_EPS,
            y.view_mut(),
            mean.view_mut(),
            rstd.view_mut(),
        );
        let out = self.push(y, self.shapes[x].clone());
        self.record(Op::LayerNorm {
            x,
            gamma,
            beta,
            mean,
            rstd,
            out,
        });
        out
    }

    /// drop(act(x)): the activation and the dropout after it, in one pass.
    pub fn act(&mut self, act: Activation, x: Tid, d: Dropout) -> Tid {
        let _range = Range::open(self.b, "act");
        let mut y = self.b.alloc(self.len(x));
        self.b.act_fwd(act, d, self.view(x), y.view_mut());
        let out = self.push(y, self.shapes[x].clone());
        self.record(Op::Act { act, d, x, out });
        out
    }

    /// mask(x + drop(o)) (x None: mask(drop(o))), the padding rows of `[batch·n, cols]` zeroed
    /// when `mask` gives the window starts and n: the residual add, in one pass.
    pub fn residual(
        &mut self,
        x: Option<Tid>,
        o: Tid,
        d: Dropout,
        mask: Option<(IntId, usize)>,
    ) -> Tid {
        let _range = Range::open(self.b, "residual");
        if let Some(x) = x {
            assert_eq!(self.len(x), self.len(o), "residual: shapes differ");
        }
        let mut y = self.b.alloc(self.len(o));
        self.b.residual_fwd(
            self.opt_view(x),
            self.view(o),
            d,
            self.row_mask(mask),
            y.view_mut(),
        );
        let out = self.push(y, self.shapes[o].clone());
        self.record(Op::Residual { x, o, d, mask, out });
        out
    }

    fn row_mask(&self, mask: Option<(IntId, usize)>) -> Option<RowMask<'_, B::IBuf>> {
        mask.map(|(start, n)| RowMask {
            start: &self.ints[start.0],
            n,
        })
    }

    pub fn rope(&mut self, x: Tid, n: usize, heads: usize, dh: usize) -> Tid {
        let _range = Range::open(self.b, "rope");
        let mut y = self.b.alloc(self.len(x));
        self.b.rope(self.view(x), n, heads, dh, false, y.view_mut());
        let out = self.push(y, self.shapes[x].clone());
        self.record(Op::Rope {
            x,
            n,
            heads,
            dh,
            out,
        });
        out
    }

    /// Rows `ids` of `table` `[rows, cols]`, times `scale`.
    pub fn embedding(&mut self, table: Tid, ids: IntId, count: usize, scale: f32) -> Tid {
        let _range = Range::open(self.b, "embedding");
        let cols = *self.shapes[table]
            .last()
            .expect("embedding: table has a shape");
        let mut y = self.b.alloc(count * cols);
        self.b.embedding_fwd(
            self.view(table),
            &self.ints[ids.0],
            cols,
            scale,
            y.view_mut(),
        );
        let out = self.push(y, vec![count, cols]);
        self.record(Op::Embedding {
            table,
            ids,
            cols,
            scale,
            out,
        });
        out
    }

    pub fn attention(&mut self, s: AttnShape, inp: AttnIds, start: IntId) -> Tid {
        let _range = Range::open(self.b, "attention");
        let rows = s.batch * s.n;
        let (mut y, mut lse) = (self.b.alloc(rows * s.width()), self.b.alloc(rows * s.heads));
        let views = self.attn_views(&inp);
        self.b
            .attention_fwd(&s, views, &self.ints[start.0], y.view_mut(), lse.view_mut());
        let out = self.push(y, vec![rows, s.width()]);
        self.record(Op::Attention {
            s,
            inp,
            start,
            lse,
            out,
        });
        out
    }

    fn attn_views(&self, i: &AttnIds) -> AttnInputs<'_, B::Buf> {
        AttnInputs {
            q: self.opt_view(i.q),
            k: self.opt_view(i.k),
            v: self.view(i.v),
            pos: self.opt_view(i.pos),
            u: self.opt_view(i.u),
            l: self.opt_view(i.l),
        }
    }

    /// The `mix` reading's V' = L·V along positions.
    pub fn mix(&mut self, s: MixShape, l: Tid, v: Tid, start: IntId) -> Tid {
        let _range = Range::open(self.b, "mix");
        let mut y = self.b.alloc(self.len(v));
        self.b.mix_fwd(
            &s,
            self.view(l),
            self.view(v),
            &self.ints[start.0],
            y.view_mut(),
        );
        let out = self.push(y, self.shapes[v].clone());
        self.record(Op::Mix {
            s,
            l,
            v,
            start,
            out,
        });
        out
    }

    /// Mean softmax cross-entropy of the tied classifier, logits = h·tableᵀ, over the rows of
    /// `h` (`[rows, d]`) whose target is not 0; `table` is `[vocab, d]`, `targets` (on the
    /// host) one per row. Column 0 is the padding item and never a class.
    ///
    /// Fused and chunked, so that the `[rows, vocab]` logits never exist: the rows with a
    /// target are gathered (unless every row has one), then for each chunk of `chunk` of
    /// them (None: [`ce_chunk_rows`] of the backend's budget) the logits are computed into
    /// one reused `[chunk, vocab]` buffer, turned into their gradient in place
    /// (`Loss::cross_entropy_in_place`), and, when recording, dH = dlogits·table and
    /// dtable += dlogitsᵀ·H are taken from them at once (the loss ends the tape, so its
    /// gradient scale is known). Rows without a target are never computed; their dH is 0.
    pub fn classifier_cross_entropy(
        &mut self,
        h: Tid,
        table: Tid,
        targets: &[u32],
        chunk: Option<usize>,
    ) -> Tid {
        let _range = Range::open(self.b, "classifier_ce");
        let b = self.b;
        let (vocab, d) = match self.shapes[table][..] {
            [vocab, d] => (vocab, d),
            _ => panic!("classifier_cross_entropy: the table is not 2-D"),
        };
        assert!(
            vocab >= 2,
            "classifier_cross_entropy: no class besides padding"
        );
        let rows = self.len(h) / d.max(1);
        assert_eq!(
            self.len(h),
            rows * d,
            "classifier_cross_entropy: h is not [rows, d]"
        );
        assert_eq!(
            targets.len(),
            rows,
            "classifier_cross_entropy: one target per row"
        );
        // The rows computed: those with a target, or every row when the backend keeps shapes
        // independent of the data (a replayed step graph; rows without a target then give 0).
        let with_target = targets.iter().filter(|&&t| t != 0).count();
        let valid: Vec<u32> = if b.static_shapes() {
            (0..rows as u32).collect()
        } else {
            (0..rows as u32)
                .filter(|&r| targets[r as usize] != 0)
                .collect()
        };
        let count = valid.len();
        if with_target == 0 && count == 0 {
            let out = self.push(b.zeros(1), vec![1]);
            self.record(Op::ClassifierCe {
                h,
                table,
                count,
                grads: None,
                out,
            });
            return out;
        }
        let chunk = ce_chunk_rows(chunk, b.ce_chunk_elements(), vocab).min(count);
        let scale = 1.0 / with_target.max(1) as f32;
        let tc: Vec<u32> = valid.iter().map(|&r| targets[r as usize]).collect();
        let tc = b.upload_u32(&tc);
        // The rows with a target, gathered when some row has none.
        let (ids, hc) = if count < rows {
            let ids = b.upload_u32(&valid);
            let mut hc = b.alloc(count * d);
            b.embedding_fwd(self.view(h), &ids, d, 1.0, hc.view_mut());
            (Some(ids), Some(hc))
        } else {
            (None, None)
        };
        let mut loss = b.alloc(count);
        let mut work = b.alloc(chunk * vocab);
        let mut dh = self.record.then(|| b.alloc(count * d));
        let mut dt = self.record.then(|| b.alloc(vocab * d));
        {
            let hv = hc.as_ref().map_or_else(|| self.view(h), |x| x.view());
            let tv = self.view(table);
            for r0 in (0..count).step_by(chunk) {
                let m = chunk.min(count - r0);
                let hm = View {
                    buf: hv.buf,
                    off: hv.off + r0 * d,
                    len: m * d,
                };
                let mut z = work.slice_mut(0, m * vocab);
                b.gemm(&Gemm::new(m, vocab, d, false, true), hm, tv, z.rb());
                b.cross_entropy_in_place(z, &tc, r0, vocab, scale, loss.slice_mut(r0, m));
                if let (Some(dh), Some(dt)) = (&mut dh, &mut dt) {
                    let z = work.slice(0, m * vocab);
                    let dhm = dh.slice_mut(r0 * d, m * d);
                    b.gemm(&Gemm::new(m, d, vocab, false, false), z, tv, dhm);
                    let g = Gemm::new(vocab, d, m, true, false);
                    let g = if r0 == 0 { g } else { g.accumulate() };
                    b.gemm(&g, z, hm, dt.view_mut());
                }
            }
        }
        // dH back to the full rows, 0 where there is no target.
        let dh = match (dh, &ids) {
            (Some(dc), Some(ids)) => {
                let mut full = b.zeros(rows * d);
                b.embedding_bwd(ids, dc.view(), d, 1.0, full.view_mut());
                Some(full)
            }
            (dh, _) => dh,
        };
        let out = self.mean_of(&loss, with_target);
        self.record(Op::ClassifierCe {
            h,
            table,
            count,
            grads: dh.zip(dt),
            out,
        });
        out
    }

    /// Mean BCE of each target against one sampled negative, over `count` non-pad rows.
    pub fn bce(&mut self, h: Tid, table: Tid, targets: IntId, count: usize, seed: u64) -> Tid {
        let _range = Range::open(self.b, "bce");
        let vocab = self.shapes[table][0];
        let rows = self.shapes[h][0];
        let mut loss = self.b.alloc(rows);
        self.b.bce_fwd(
            self.view(h),
            self.view(table),
            &self.ints[targets.0],
            vocab,
            seed,
            loss.view_mut(),
        );
        let out = self.mean_of(&loss, count);
        self.record(Op::Bce {
            h,
            table,
            targets,
            vocab,
            seed,
            count,
            out,
        });
        out
    }

    /// Σ rows / count as a one-element tensor, kept on the device in its own precision.
    fn mean_of(&mut self, rows: &B::Buf, count: usize) -> Tid {
        let mut sum = self.b.zeros(1);
        self.b.col_sum(rows.view(), sum.view_mut(), Strided::one(1));
        let mut mean = self.b.zeros(1);
        self.b
            .axpy(1.0 / count.max(1) as f32, sum.view(), mean.view_mut());
        self.push(mean, vec![1])
    }

    /// Back-propagate from the scalar `loss`, adding parameter gradients into `pgrads`
    /// (the flat gradient buffer, laid out like the parameters).
    pub fn backward(&mut self, loss: Tid, pgrads: &mut B::Buf) {
        let _range = Range::open(self.b, "backward");
        assert!(self.record, "backward on a tape that did not record");
        assert_eq!(
            self.len(loss),
            1,
            "backward from a loss that is not a scalar"
        );
        let seed = self.b.upload(&[1.0]);
        self.host_grad = Some((loss, 1.0));
        self.backward_from(loss, seed, pgrads);
        self.host_grad = None;
    }

    /// Back-propagate a given gradient `seed` of tensor `out` (e.g. r for the loss Σ out·r).
    pub fn backward_from(&mut self, out: Tid, seed: B::Buf, pgrads: &mut B::Buf) {
        assert!(self.record, "backward on a tape that did not record");
        assert_eq!(
            seed.len(),
            self.len(out),
            "backward seed has the wrong length"
        );
        let mut grads: Vec<Option<B::Buf>> = (0..self.values.len()).map(|_| None).collect();
        *self.slice_written.borrow_mut() = vec![false; self.values.len()];
        grads[out] = Some(seed);
        let mut ops = std::mem::take(&mut self.ops);
        for op in ops.iter_mut().rev() {
            self.backward_op(op, &mut grads, pgrads);
        }
        self.ops = ops;
    }

    /// Add `g` into the gradient of `t`: moved in when `t` has none yet.
    fn acc(&self, grads: &mut [Option<B::Buf>], pgrads: &mut B::Buf, t: Tid, g: B::Buf) {
        match &self.values[t] {
            Value::Owned(_) => match &mut grads[t] {
                Some(acc) => self.b.axpy(1.0, g.view(), acc.view_mut()),
                slot => *slot = Some(g),
            },
            _ => self.acc_view(grads, pgrads, t, g.view()),
        }
    }

    /// Add the view `g` into the gradient of `t`.
    fn acc_view(&self, grads: &mut [Option<B::Buf>], pg: &mut B::Buf, t: Tid, g: View<B::Buf>) {
        let b = self.b;
        self.write_grad(grads, pg, t, false, |dst, accumulate| {
            if accumulate {
                b.axpy(1.0, g, dst)
            } else {
                b.copy(g, dst)
            }
        });
    }
    /// The gradient of scalar `t`, from the host when known there (no device sync).
    fn scalar_grad(&self, t: Tid, g: View<B::Buf>) -> f32 {
        match self.host_grad {
            Some((known, value)) if known == t => value,
            _ => self.b.download(g)[0],
        }
    }

    /// Where an op writes the gradient of `t` when it is its only gradient output: a
    /// parameter's slice of the flat gradient buffer, or the gradient `t` already has (both
    /// accumulated into), or a fresh buffer (overwritten, or zero-filled first when the op can
    /// only accumulate: `zero_fresh`), or a slice's part of its parent's gradient (accumulated
    /// into once written).
    fn dest(&self, grads: &mut [Option<B::Buf>], t: Tid, zero_fresh: bool) -> Dest<B::Buf> {
        match &self.values[t] {
            Value::Param { off, len } => Dest::Param(*off, *len),
            Value::Owned(_) => match grads[t].take() {
                Some(g) => Dest::Held(g, true),
                None if zero_fresh => Dest::Held(self.b.zeros(self.len(t)), true),
                None => Dest::Held(self.b.alloc(self.len(t)), false),
            },
            Value::Slice { parent, off, len } => {
                if grads[*parent].is_none() {
                    grads[*parent] = Some(self.b.alloc(self.len(*parent)));
                }
                let written = self.slice_written.borrow()[t];
                if !written && zero_fresh {
                    let g = grads[*parent].as_mut().expect("allocated above");
                    self.b.fill(g.slice_mut(*off, *len), 0.0);
                }
                self.slice_written.borrow_mut()[t] = true;
                Dest::Slice(*parent, *off, *len, written || zero_fresh)
            }
        }
    }

    /// Runs `write(dst, accumulate)` on the gradient of `t` ([`Self::dest`]) and puts it back.
    fn write_grad(
        &self,
        grads: &mut [Option<B::Buf>],
        pg: &mut B::Buf,
        t: Tid,
        zero_fresh: bool,
        write: impl FnOnce(ViewMut<B::Buf>, bool),
    ) {
        match self.dest(grads, t, zero_fresh) {
            Dest::Param(off, len) => write(pg.slice_mut(off, len), true),
            Dest::Held(mut g, accumulate) => {
                write(g.view_mut(), accumulate);
                grads[t] = Some(g);
            }
            Dest::Slice(parent, off, len, accumulate) => {
                let g = grads[parent].as_mut().expect("dest allocates it");
                write(g.slice_mut(off, len), accumulate);
            }
        }
    }

    /// Zeroes the parts of `parent`'s gradient that none of its slices wrote, before the op
    /// that made `parent` reads the whole of it.
    fn zero_unwritten_slices(&self, grads: &mut [Option<B::Buf>], parent: Tid) {
        let Some(g) = grads[parent].as_mut() else {
            return;
        };
        for &(p, t) in &self.slices {
            if p == parent && !self.slice_written.borrow()[t] {
                if let Value::Slice { off, len, .. } = self.values[t] {
                    self.b.fill(g.slice_mut(off, len), 0.0);
                }
            }
        }
    }

    /// A buffer for an op that can only overwrite its gradient output; pass it to [`Self::acc`].
    fn fresh_like(&self, t: Tid) -> B::Buf {
        self.b.alloc(self.len(t))
    }

    fn backward_op(&self, op: &mut Op<B>, grads: &mut [Option<B::Buf>], pg: &mut B::Buf) {
        let b = self.b;
        let out = match op {
            Op::MatMul { out, .. }
            | Op::AddBias { out, .. }
            | Op::LinearBatched { out, .. }
            | Op::LayerNorm { out, .. }
            | Op::Act { out, .. }
            | Op::Residual { out, .. }
            | Op::Rope { out, .. }
            | Op::Embedding { out, .. }
            | Op::Attention { out, .. }
            | Op::Mix { out, .. }
            | Op::ClassifierCe { out, .. }
            | Op::Bce { out, .. } => *out,
        };
        self.zero_unwritten_slices(grads, out);
        // An output nothing depended on has no gradient: nothing to propagate.
        let Some(gout) = grads[out].take() else {
            return;
        };
        let _range = Range::open(b, op.backward_name());
        let gv = gout.view();
        match op {
            Op::MatMul { a, b: bt, g, .. } => {
                let (da, db) = matmul_grads(g);
                for (t, (desc, dc_first), other) in [(*a, da, *bt), (*bt, db, *a)] {
                    let ov = self.view(other);
                    self.write_grad(grads, pg, t, false, |dst, accumulate| {
                        let mut desc = desc;
                        if accumulate {
                            desc.beta = 1.0;
                        }
                        let (x, y) = if dc_first { (gv, ov) } else { (ov, gv) };
                        b.gemm(&desc, x, y, dst);
                    });
                }
            }
            Op::AddBias { bias, out } => {
                let st = Strided::one(self.len(*bias));
                self.write_grad(grads, pg, *bias, true, |dst, _| b.col_sum(gv, dst, st));
                // In place: the tensor the bias was added to has the same gradient.
                grads[*out] = Some(gout);
            }
            Op::LinearBatched {
                x,
                w,
                b: bias,
                inp,
                s,
                ..
            } => {
                let (x, s, inp) = (*x, *s, *inp);
                let rows = self.len(x) / inp;
                let slab = rows * s.len;
                let w_off = self.param_off(*w).expect("weights are parameters");
                let w_span = s.stride * (s.count - 1) + inp * s.len;
                // dW_i += xᵀ·dY_i, one batched GEMM straight into the gradient buffer.
                let dw = Gemm::new(inp, s.len, rows, true, false)
                    .accumulate()
                    .batched(s.count, 0, slab, s.stride);
                b.gemm(&dw, self.view(x), gv, pg.slice_mut(w_off, w_span));
                if let Some(bias) = bias {
                    let off = self.param_off(*bias).expect("biases are parameters");
                    b.col_sum(gv, pg.slice_mut(off, s.span()), s);
                }
                // dx (+)= Σ_i dY_i·W_iᵀ (the batches sum into one output, in order).
                let wv = self.params.slice(w_off, w_span);
                self.write_grad(grads, pg, x, false, |dx, accumulate| {
                    let mut g = Gemm::new(rows, inp, s.len, false, true)
                        .batched(s.count, slab, s.stride, 0);
                    if accumulate {
                        g.beta = 1.0;
                    }
                    b.gemm(&g, gv, wv, dx);
                });
            }
            Op::LayerNorm {
                x,
                gamma,
                beta,
                mean,
                rstd,
                ..
            } => self.layernorm_backward(grads, pg, (*x, *gamma, *beta), mean, rstd, gv),
            Op::Act { act, d, x, .. } => {
                let xv = self.view(*x);
                let mut dx = self.fresh_like(*x);
                b.act_bwd(*act, *d, xv, gv, dx.view_mut());
                self.acc(grads, pg, *x, dx);
            }
            Op::Residual { x, o, d, mask, .. } => {
                let mut d_o = self.fresh_like(*o);
                let mut dx = x.map(|x| self.fresh_like(x));
                b.residual_bwd(
                    gv,
                    *d,
                    self.row_mask(*mask),
                    dx.as_mut().map(|g| g.view_mut()),
                    d_o.view_mut(),
                );
                if let (Some(x), Some(dx)) = (x, dx) {
                    self.acc(grads, pg, *x, dx);
                }
                self.acc(grads, pg, *o, d_o);
            }
            Op::Rope {
                x, n, heads, dh, ..
            } => {
                let mut dx = self.fresh_like(*x);
                b.rope(gv, *n, *heads, *dh, true, dx.view_mut());
                self.acc(grads, pg, *x, dx);
            }
            Op::Embedding {
                table,
                ids,
                cols,
                scale,
                ..
            } => {
                let ids = &self.ints[ids.0];
                self.write_grad(grads, pg, *table, true, |dst, _| {
                    b.embedding_bwd(ids, gv, *cols, *scale, dst)
                });
            }
            Op::Attention {
                s,
                inp,
                start,
                lse,
                out,
            } => {
                let z = |t: Option<Tid>| t.map(|t| self.fresh_like(t));
                let (mut dq, mut dk, mut dpos, mut du, mut dl) =
                    (z(inp.q), z(inp.k), z(inp.pos), z(inp.u), z(inp.l));
                let mut dv = self.fresh_like(inp.v);
                b.attention_bwd(
                    s,
                    self.attn_views(inp),
                    &self.ints[start.0],
                    self.view(*out),
                    lse.view(),
                    gv,
                    AttnGrads {
                        dq: dq.as_mut().map(|x| x.view_mut()),
                        dk: dk.as_mut().map(|x| x.view_mut()),
                        dv: dv.view_mut(),
                        dpos: dpos.as_mut().map(|x| x.view_mut()),
                        du: du.as_mut().map(|x| x.view_mut()),
                        dl: dl.as_mut().map(|x| x.view_mut()),
                    },
                );
                self.acc(grads, pg, inp.v, dv);
                for (t, g) in [
                    (inp.q, dq),
                    (inp.k, dk),
                    (inp.pos, dpos),
                    (inp.u, du),
                    (inp.l, dl),
                ] {
                    if let (Some(t), Some(g)) = (t, g) {
                        self.acc(grads, pg, t, g);
                    }
                }
            }
            Op::Mix { s, l, v, start, .. } => {
                let (mut dl, mut dv) = (self.fresh_like(*l), self.fresh_like(*v));
                b.mix_bwd(
                    s,
                    self.view(*l),
                    self.view(*v),
                    &self.ints[start.0],
                    gv,
                    dv.view_mut(),
                    dl.view_mut(),
                );
                self.acc(grads, pg, *v, dv);
                self.acc(grads, pg, *l, dl);
            }
            Op::ClassifierCe {
                h,
                table,
                count,
                grads: g,
                ..
            } => {
                if *count == 0 {
                    return; // no row had a target: no gradient
                }
                let (dh, dt) = g.take().expect("one backward per tape");
                let g = self.scalar_grad(out, gv);
                let scaled = |x: B::Buf| {
                    if g == 1.0 {
                        x
                    } else {
                        let mut y = b.zeros(x.len());
                        b.axpy(g, x.view(), y.view_mut());
                        y
                    }
                };
                self.acc(grads, pg, *h, scaled(dh));
                self.acc(grads, pg, *table, scaled(dt));
            }
            Op::Bce {
                h,
                table,
                targets,
                vocab,
                seed,
                count,
                ..
            } => {
                let scale = self.scalar_grad(out, gv) / (*count).max(1) as f32;
                let mut dh = self.fresh_like(*h);
                let (h, table, targets) = (*h, *table, &self.ints[targets.0]);
                let (hv, tv) = (self.view(h), self.view(table));
                self.write_grad(grads, pg, table, true, |dt, _| {
                    b.bce_bwd(hv, tv, targets, *vocab, *seed, scale, dh.view_mut(), dt)
                });
                self.acc(grads, pg, h, dh);
            }
        }
    }

    /// The layer norm's backward: dx added to x's gradient by the kernel itself when x has one
    /// (the residual stream does), dgamma and dbeta accumulated straight into the flat
    /// gradient buffer when they are adjacent parameters (as every model lays them out).
    fn layernorm_backward(
        &self,
        grads: &mut [Option<B::Buf>],
        pg: &mut B::Buf,
        (x, gamma, beta): (Tid, Tid, Tid),
        mean: &B::Buf,
        rstd: &B::Buf,
        gv: View<B::Buf>,
    ) {
        let b = self.b;
        let cols = self.len(gamma);
        let (xv, gammav) = (self.view(x), self.view(gamma));
        // x's gradient: held here (it is not a parameter in any model; if it is, a temporary).
        let held = matches!(self.values[x], Value::Owned(_));
        let (mut dx, accumulate_dx) = match held.then(|| self.dest(grads, x, false)) {
            Some(Dest::Held(g, accumulate)) => (g, accumulate),
            _ => (self.fresh_like(x), false),
        };
        let adjacent = match (&self.values[gamma], &self.values[beta]) {
            (Value::Param { off: g, .. }, Value::Param { off: bo, .. }) => {
                (*bo == g + cols).then_some(*g)
            }
            _ => None,
        };
        let mut temp = None;
        let dparams = match adjacent {
            Some(off) => pg.slice_mut(off, 2 * cols),
            _ => temp.insert(b.zeros(2 * cols)).view_mut(),
        };
        b.layernorm_bwd(
            xv,
            gammav,
            mean.view(),
            rstd.view(),
            gv,
            dx.view_mut(),
            accumulate_dx,
            dparams,
        );
        if let Some(t) = temp {
            self.acc_view(grads, pg, gamma, t.slice(0, cols));
            self.acc_view(grads, pg, beta, t.slice(cols, cols));
        }
        if held {
            grads[x] = Some(dx);
        } else {
            self.acc(grads, pg, x, dx);
        }
    }
}

/// Where a gradient is written: a parameter's slice (offset, length) of the flat gradient
/// buffer, a buffer held for a tensor with whether it already holds a gradient to add to, or a
/// slice's part (parent, offset, length, accumulate) of its parent's gradient.
enum Dest<Buf> {
    Param(usize, usize),
    Held(Buf, bool),
    Slice(usize, usize, usize, bool),
}

/// Layer-norm epsilon (PyTorch's default).
pub const LN_EPS: f32 = 1e-5;

/// The two products giving dA and dB of C = op(A)·op(B) (per batch).
///
/// Each is (descriptor, dC-first): when dC-first is true the product is `dC · other`,
/// else `other · dC`, where `other` is the remaining input of the forward.
fn matmul_grads(g: &Gemm) -> ((Gemm, bool), (Gemm, bool)) {
    let (m, n, k) = (g.m, g.n, g.k);
    let batched = |x: Gemm, sa: usize, sb: usize, sc: usize| x.batched(g.batch, sa, sb, sc);
    let sc = g.stride_c;
    // dA' = dC·B'ᵀ and dB' = A'ᵀ·dC, transposed back when A or B is stored transposed.
    let da = if !g.trans_a {
        (
            batched(
                Gemm::new(m, k, n, false, !g.trans_b),
                sc,
                g.stride_b,
                g.stride_a,
            ),
            true,
        )
    } else {
        (
            batched(
                Gemm::new(k, m, n, g.trans_b, true),
                g.stride_b,
                sc,
                g.stride_a,
            ),
            false,
        )
    };
    let db = if !g.trans_b {
        (
            batched(
                Gemm::new(k, n, m, !g.trans_a, false),
                g.stride_a,
                sc,
                g.stride_b,
            ),
            false,
        )
    } else {
        (
            batched(
                Gemm::new(n, k, m, true, g.trans_a),
                sc,
                g.stride_a,
                g.stride_b,
            ),
            true,
        )
    };
    (da, db)
}
