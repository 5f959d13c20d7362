//! The CPU backend: plain Rust, the reference for every GPU kernel and the path CI trains on.
//!
//! Generic over the element type: `Cpu<f32>` trains; `Cpu<f64>` runs the same ops in double
//! precision for finite-difference gradient checks. Each family's file holds its ops as free
//! functions on slices and, at its end, the family trait's impl that maps views onto them.
//!
//! Reductions never depend on the thread count or on work stealing: partial sums are taken
//! over fixed-size blocks (or fixed batch groups) and added in block order, so the same inputs
//! give bit-identical outputs on any machine (tests/determinism.rs).

pub mod attention;
pub mod dense;
pub mod embedding;
pub mod loss;
pub mod memory;
pub mod norm;
pub mod optim;
pub mod pointwise;
pub mod real;

use super::{View, ViewMut};
use std::marker::PhantomData;

/// The CPU device, computing in `T` (f32 or f64).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu<T = f32>(PhantomData<T>);

impl<T> Cpu<T> {
    pub fn new() -> Self {
        Cpu(PhantomData)
    }
}

/// The slice a view covers.
fn s<'a, T>(v: View<'a, Vec<T>>) -> &'a [T] {
    &v.buf[v.off..v.off + v.len]
}
fn sm<'a, T>(v: ViewMut<'a, Vec<T>>) -> &'a mut [T] {
    &mut v.buf[v.off..v.off + v.len]
}
/// An optional view as a slice, empty when absent.
fn opt<'a, T>(v: Option<View<'a, Vec<T>>>) -> &'a [T] {
    v.map(s).unwrap_or(&[])
}
fn opt_mut<'a, T>(v: Option<ViewMut<'a, Vec<T>>>) -> &'a mut [T] {
    v.map(sm).unwrap_or(&mut [])
}
