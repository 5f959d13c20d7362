//! PLACEHOLDER until the attention branch is merged (not committed).
#![allow(unused, clippy::too_many_arguments)]
use super::real::Real;
use crate::backend::{AttnShape, MixShape};
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
    todo!()
}
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
    todo!()
}
pub fn mix_forward<T: Real>(s: &MixShape, l: &[T], v: &[T], start: &[u32], out: &mut [T]) {
    todo!()
}
pub fn mix_backward<T: Real>(
    s: &MixShape,
    l: &[T],
    v: &[T],
    start: &[u32],
    dout: &[T],
    dv: &mut [T],
    dl: &mut [T],
) {
    todo!()
}
