//! Buffers on the host: allocation, copies, fills, axpy and the sum of squares; and the range
//! profiler, which times each range by the wall clock (every CPU op has finished when it
//! returns, so a range's duration is its ops' time).

use super::real::Real;
use super::{s, sm, Cpu, HostBuf, HostInts};
use crate::backend::pool::{size_class, Counters, Counts, Pool, Pooled};
use crate::backend::profile::RangeTime;
use crate::backend::{DeviceBuf, Memory, View, ViewMut};
use std::sync::Arc;
use std::time::Instant;

impl<R> DeviceBuf for Pooled<R> {
    fn len(&self) -> usize {
        Pooled::len(self)
    }
}

impl<T: Real> Cpu<T> {
    /// Adopts host data as one of this backend's buffers, in its own precision (no rounding
    /// through f32, as `upload` does): for the f64 gradient checks.
    pub fn adopt(&self, data: Vec<T>) -> HostBuf<T> {
        let len = data.len();
        Pooled::filed(data, len, size_class(len), &self.pool)
    }

    /// A buffer of `len` elements from the pool, or a fresh one (counted) when none is free.
    fn take(&self, len: usize) -> HostBuf<T> {
        take_filed(&self.pool, &self.counters, len)
    }
}

/// A vector of `len` elements from `pool`, which files them by [`size_class`] (lengths vary
/// on the CPU: the rows with a target differ from batch to batch), or a fresh one (counted)
/// with the class's capacity. Its contents are whatever it held (zeros when fresh).
fn take_filed<E: Copy + Default>(
    pool: &Arc<Pool<Vec<E>>>,
    counters: &Counters,
    len: usize,
) -> Pooled<Vec<E>> {
    let class = size_class(len);
    let mut raw = pool.take(class).unwrap_or_else(|| {
        counters.allocation(class * std::mem::size_of::<E>());
        Vec::with_capacity(class)
    });
    raw.resize(len, E::default());
    Pooled::filed(raw, len, class, pool)
}

/// Σ x², in f64 and in index order (one sequential pass: no thread-dependent grouping).
pub fn sum_squares<T: Real>(x: &[T]) -> f64 {
    x.iter().map(|v| v.to_f64() * v.to_f64()).sum()
}

impl<T: Real> Memory for Cpu<T> {
    type Buf = HostBuf<T>;
    type IBuf = HostInts;

    fn name(&self) -> String {
        format!(
            "cpu ({} threads, {})",
            rayon::current_num_threads(),
            std::any::type_name::<T>()
        )
    }
    fn alloc(&self, len: usize) -> HostBuf<T> {
        self.take(len)
    }
    fn zeros(&self, len: usize) -> HostBuf<T> {
        let mut b = self.take(len);
        self.counters.fill();
        b.fill(T::ZERO);
        b
    }
    fn upload(&self, data: &[f32]) -> HostBuf<T> {
        let mut b = self.take(data.len());
        for (d, &x) in b.iter_mut().zip(data) {
            *d = T::from_f32(x);
        }
        b
    }
    fn upload_u32(&self, data: &[u32]) -> HostInts {
        let mut b = take_filed(&self.ints, &self.counters, data.len());
        b.copy_from_slice(data);
        b
    }
    fn alloc_u32(&self, len: usize) -> HostInts {
        take_filed(&self.ints, &self.counters, len)
    }
    fn download_u32(&self, x: &HostInts) -> Vec<u32> {
        x.to_vec()
    }
    fn counts(&self) -> Counts {
        self.counters.snapshot()
    }
    fn range_push(&self, name: &'static str) {
        if self.profiler.is_on() {
            self.profiler.lock().push(name, Instant::now());
        }
    }
    fn range_pop(&self) {
        if self.profiler.is_on() {
            let now = Instant::now();
            self.profiler.lock().pop(now);
        }
    }
    fn profile_start(&self) {
        self.profiler.start();
    }
    fn profile_take(&self) -> Vec<RangeTime> {
        self.profiler
            .take()
            .times(|a, b| b.duration_since(*a).as_secs_f64() * 1e3)
    }
    fn download(&self, x: View<HostBuf<T>>) -> Vec<f32> {
        s(x).iter().map(|x| x.to_f32()).collect()
    }
    fn fill(&self, x: ViewMut<HostBuf<T>>, value: f32) {
        self.counters.fill();
        sm(x).fill(T::from_f32(value));
    }
    fn copy(&self, src: View<HostBuf<T>>, dst: ViewMut<HostBuf<T>>) {
        assert_eq!(src.len, dst.len, "copy: lengths differ");
        sm(dst).copy_from_slice(s(src));
    }
    fn axpy(&self, alpha: f32, x: View<HostBuf<T>>, y: ViewMut<HostBuf<T>>) {
        let a = T::from_f32(alpha);
        for (y, &x) in sm(y).iter_mut().zip(s(x)) {
            *y += a * x;
        }
    }
    fn sum_squares(&self, x: View<HostBuf<T>>) -> f64 {
        sum_squares(s(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths that change from step to step (rows with a target) reuse a few size classes
    /// instead of allocating, and keeping, a buffer per length.
    #[test]
    fn varying_lengths_reuse_a_few_buffers() {
        let cpu = Cpu::<f32>::new();
        let before = cpu.counts();
        for len in (5_000..60_000).step_by(37) {
            let a = cpu.alloc(len);
            let b = cpu.zeros(len + 1);
            assert_eq!((a.len(), b.len()), (len, len + 1));
            assert!(b.iter().all(|&x| x == 0.0));
            let i = cpu.alloc_u32(len / 2);
            assert_eq!(i.len(), len / 2);
        }
        let allocated = cpu.counts().since(before).allocations;
        assert!(
            allocated <= 3 * 32,
            "{allocated} allocations for 1 487 lengths"
        );
        // One free buffer per class seen (about 30 classes of at most 68 000), where one per
        // length would be about 90 million elements.
        let free = cpu.pool.free_elements();
        assert!(free <= 2 * 32 * 68_000, "{free} elements held free");
    }
}
