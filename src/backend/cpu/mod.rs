//! The CPU backend: plain Rust, the reference for every GPU kernel and the path CI trains on.
//!
//! Generic over the element type: `Cpu<f32>` trains; `Cpu<f64>` runs the same ops in double
//! precision for finite-difference gradient checks. Every op is a free function on slices in
//! one of the submodules; this file only maps the backend trait onto them.

pub mod adam;
pub mod attention;
pub mod dense;
pub mod loss;
pub mod pointwise;
pub mod real;

use super::{
    Activation, AdamStep, AttnGrads, AttnInputs, AttnShape, Backend, DeviceBuf, Gemm, MixShape,
    View, ViewMut,
};
use real::Real;
use std::marker::PhantomData;

/// The CPU device, computing in `T` (f32 or f64).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu<T = f32>(PhantomData<T>);

impl<T> Cpu<T> {
    pub fn new() -> Self {
        Cpu(PhantomData)
    }
}

impl<T> DeviceBuf for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

fn s<'a, T>(v: View<'a, Vec<T>>) -> &'a [T] {
    &v.buf[v.off..v.off + v.len]
}
fn sm<'a, T>(v: ViewMut<'a, Vec<T>>) -> &'a mut [T] {
    &mut v.buf[v.off..v.off + v.len]
}
fn opt<'a, T>(v: Option<View<'a, Vec<T>>>) -> &'a [T] {
    v.map(s).unwrap_or(&[])
}
fn opt_mut<'a, T>(v: Option<ViewMut<'a, Vec<T>>>) -> &'a mut [T] {
    v.map(sm).unwrap_or(&mut [])
}

impl<T: Real> Backend for Cpu<T> {
    type Buf = Vec<T>;
    type IBuf = Vec<u32>;

    fn name(&self) -> String {
        format!(
            "cpu ({} threads, {})",
            rayon::current_num_threads(),
            std::any::type_name::<T>()
        )
    }

    fn zeros(&self, len: usize) -> Vec<T> {
        vec![T::ZERO; len]
    }
    fn upload(&self, data: &[f32]) -> Vec<T> {
        data.iter().map(|&x| T::from_f32(x)).collect()
    }
    fn upload_u32(&self, data: &[u32]) -> Vec<u32> {
        data.to_vec()
    }
    fn download(&self, x: View<Vec<T>>) -> Vec<f32> {
        s(x).iter().map(|x| x.to_f32()).collect()
    }
    fn fill(&self, x: ViewMut<Vec<T>>, value: f32) {
        sm(x).fill(T::from_f32(value));
    }
    fn axpy(&self, alpha: f32, x: View<Vec<T>>, y: ViewMut<Vec<T>>) {
        let a = T::from_f32(alpha);
        for (y, &x) in sm(y).iter_mut().zip(s(x)) {
            *y += a * x;
        }
    }
    fn sum_squares(&self, x: View<Vec<T>>) -> f64 {
        s(x).iter().map(|v| v.to_f64() * v.to_f64()).sum()
    }
    fn sum(&self, x: View<Vec<T>>) -> f64 {
        s(x).iter().map(|v| v.to_f64()).sum()
    }

    fn gemm(&self, g: &Gemm, a: View<Vec<T>>, b: View<Vec<T>>, c: ViewMut<Vec<T>>) {
        dense::gemm(g, s(a), s(b), sm(c));
    }
    fn bias_add(&self, x: ViewMut<Vec<T>>, bias: View<Vec<T>>) {
        dense::bias_add(sm(x), s(bias));
    }
    fn col_sum(&self, x: View<Vec<T>>, out: ViewMut<Vec<T>>) {
        dense::col_sum(s(x), sm(out));
    }

    fn layernorm_fwd(
        &self,
        x: View<Vec<T>>,
        gamma: View<Vec<T>>,
        beta: View<Vec<T>>,
        eps: f32,
        y: ViewMut<Vec<T>>,
        mean: ViewMut<Vec<T>>,
        rstd: ViewMut<Vec<T>>,
    ) {
        pointwise::layernorm_fwd(s(x), s(gamma), s(beta), eps, sm(y), sm(mean), sm(rstd));
    }
    fn layernorm_bwd(
        &self,
        x: View<Vec<T>>,
        gamma: View<Vec<T>>,
        mean: View<Vec<T>>,
        rstd: View<Vec<T>>,
        dy: View<Vec<T>>,
        dx: ViewMut<Vec<T>>,
        dgamma: ViewMut<Vec<T>>,
        dbeta: ViewMut<Vec<T>>,
    ) {
        pointwise::layernorm_bwd(
            s(x),
            s(gamma),
            s(mean),
            s(rstd),
            s(dy),
            sm(dx),
            sm(dgamma),
            sm(dbeta),
        );
    }
    fn act_fwd(&self, act: Activation, x: View<Vec<T>>, y: ViewMut<Vec<T>>) {
        pointwise::act_fwd(act, s(x), sm(y));
    }
    fn act_bwd(&self, act: Activation, x: View<Vec<T>>, dy: View<Vec<T>>, dx: ViewMut<Vec<T>>) {
        pointwise::act_bwd(act, s(x), s(dy), sm(dx));
    }
    fn dropout(&self, x: View<Vec<T>>, p: f32, seed: u64, y: ViewMut<Vec<T>>) {
        pointwise::dropout(s(x), p, seed, sm(y));
    }
    fn row_mask(&self, x: ViewMut<Vec<T>>, start: &Vec<u32>, n: usize) {
        pointwise::row_mask(sm(x), start, n);
    }
    fn rope(
        &self,
        x: View<Vec<T>>,
        n: usize,
        heads: usize,
        dh: usize,
        inverse: bool,
        y: ViewMut<Vec<T>>,
    ) {
        pointwise::rope(s(x), n, heads, dh, inverse, sm(y));
    }

    fn embedding_fwd(
        &self,
        table: View<Vec<T>>,
        ids: &Vec<u32>,
        cols: usize,
        scale: f32,
        out: ViewMut<Vec<T>>,
    ) {
        pointwise::embedding_fwd(s(table), ids, cols, scale, sm(out));
    }
    fn embedding_bwd(
        &self,
        ids: &Vec<u32>,
        dout: View<Vec<T>>,
        cols: usize,
        scale: f32,
        dtable: ViewMut<Vec<T>>,
    ) {
        pointwise::embedding_bwd(ids, s(dout), cols, scale, sm(dtable));
    }

    fn attention_fwd(
        &self,
        sh: &AttnShape,
        i: AttnInputs<Vec<T>>,
        start: &Vec<u32>,
        y: ViewMut<Vec<T>>,
        lse: ViewMut<Vec<T>>,
    ) {
        attention::attention_forward(
            sh,
            opt(i.q),
            opt(i.k),
            s(i.v),
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
        i: AttnInputs<Vec<T>>,
        start: &Vec<u32>,
        y: View<Vec<T>>,
        lse: View<Vec<T>>,
        dy: View<Vec<T>>,
        g: AttnGrads<Vec<T>>,
    ) {
        attention::attention_backward(
            sh,
            opt(i.q),
            opt(i.k),
            s(i.v),
            opt(i.pos),
            opt(i.u),
            opt(i.l),
            start,
            s(y),
            s(lse),
            s(dy),
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
        l: View<Vec<T>>,
        v: View<Vec<T>>,
        start: &Vec<u32>,
        out: ViewMut<Vec<T>>,
    ) {
        attention::mix_forward(sh, s(l), s(v), start, sm(out));
    }
    fn mix_bwd(
        &self,
        sh: &MixShape,
        l: View<Vec<T>>,
        v: View<Vec<T>>,
        start: &Vec<u32>,
        dout: View<Vec<T>>,
        dv: ViewMut<Vec<T>>,
        dl: ViewMut<Vec<T>>,
    ) {
        attention::mix_backward(sh, s(l), s(v), start, s(dout), sm(dv), sm(dl));
    }

    fn cross_entropy_fwd(
        &self,
        logits: View<Vec<T>>,
        targets: &Vec<u32>,
        vocab: usize,
        loss: ViewMut<Vec<T>>,
        lse: ViewMut<Vec<T>>,
    ) {
        loss::cross_entropy_fwd(s(logits), targets, vocab, sm(loss), sm(lse));
    }
    fn cross_entropy_bwd(
        &self,
        logits: View<Vec<T>>,
        lse: View<Vec<T>>,
        targets: &Vec<u32>,
        vocab: usize,
        scale: f32,
        dlogits: ViewMut<Vec<T>>,
    ) {
        loss::cross_entropy_bwd(s(logits), s(lse), targets, vocab, scale, sm(dlogits));
    }
    fn cross_entropy_fused(
        &self,
        logits: View<Vec<T>>,
        targets: &Vec<u32>,
        vocab: usize,
        scale: f32,
        loss: ViewMut<Vec<T>>,
        lse: ViewMut<Vec<T>>,
        dlogits: ViewMut<Vec<T>>,
    ) {
        loss::cross_entropy_fused(
            s(logits),
            targets,
            vocab,
            scale,
            sm(loss),
            sm(lse),
            sm(dlogits),
        );
    }
    fn bce_fwd(
        &self,
        h: View<Vec<T>>,
        table: View<Vec<T>>,
        targets: &Vec<u32>,
        vocab: usize,
        seed: u64,
        loss: ViewMut<Vec<T>>,
    ) {
        loss::bce_fwd(s(h), s(table), targets, vocab, seed, sm(loss));
    }
    fn bce_bwd(
        &self,
        h: View<Vec<T>>,
        table: View<Vec<T>>,
        targets: &Vec<u32>,
        vocab: usize,
        seed: u64,
        scale: f32,
        dh: ViewMut<Vec<T>>,
        dtable: ViewMut<Vec<T>>,
    ) {
        loss::bce_bwd(
            s(h),
            s(table),
            targets,
            vocab,
            seed,
            scale,
            sm(dh),
            sm(dtable),
        );
    }

    fn adam(
        &self,
        st: &AdamStep,
        params: ViewMut<Vec<T>>,
        grads: View<Vec<T>>,
        m: ViewMut<Vec<T>>,
        v: ViewMut<Vec<T>>,
    ) {
        adam::adam(st, sm(params), s(grads), sm(m), sm(v));
    }
}
