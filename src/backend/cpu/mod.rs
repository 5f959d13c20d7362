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
pub mod rank;
pub mod real;
pub mod vexp;

use super::pool::{Counters, Pool, Pooled};
use super::profile::Profiler;
use super::{View, ViewMut};
use std::sync::Arc;
use std::time::Instant;

/// A host buffer of the CPU backend: returns to the backend's pool when dropped.
pub type HostBuf<T> = Pooled<Vec<T>>;
/// A host index buffer (ids, targets, window starts).
pub type HostInts = Pooled<Vec<u32>>;

/// The CPU device, computing in `T` (f32 or f64), with its buffer pools (src/backend/pool.rs:
/// a training step reuses the previous step's buffers instead of asking the OS for fresh,
/// zero-filled pages), counters and range profiler (wall clock; `memory.rs`). Clones share
/// them.
#[derive(Debug, Clone)]
pub struct Cpu<T = f32> {
    pool: Arc<Pool<Vec<T>>>,
    ints: Arc<Pool<Vec<u32>>>,
    counters: Arc<Counters>,
    profiler: Arc<Profiler<Instant>>,
}

impl<T> Default for Cpu<T> {
    fn default() -> Self {
        Cpu {
            pool: Arc::default(),
            ints: Arc::default(),
            counters: Arc::default(),
            profiler: Arc::default(),
        }
    }
}

impl<T> Cpu<T> {
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} elements free)", self.free_elements())
    }
}

/// The slice a view covers.
fn s<'a, T>(v: View<'a, HostBuf<T>>) -> &'a [T] {
    let buf: &'a Vec<T> = v.buf;
    &buf[v.off..v.off + v.len]
}
fn sm<'a, T>(v: ViewMut<'a, HostBuf<T>>) -> &'a mut [T] {
    let buf: &'a mut Vec<T> = v.buf;
    &mut buf[v.off..v.off + v.len]
}
/// An optional view as a slice, empty when absent.
fn opt<'a, T>(v: Option<View<'a, HostBuf<T>>>) -> &'a [T] {
    v.map(s).unwrap_or(&[])
}
fn opt_mut<'a, T>(v: Option<ViewMut<'a, HostBuf<T>>>) -> &'a mut [T] {
    v.map(sm).unwrap_or(&mut [])
}
