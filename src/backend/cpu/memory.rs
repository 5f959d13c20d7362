//! Buffers on the host: allocation, copies, fills, axpy and the sum of squares; and the range
//! profiler, which times each range by the wall clock (every CPU op has finished when it
//! returns, so a range's duration is its ops' time).

use super::real::Real;
use super::{s, sm, Cpu, HostBuf, HostInts};
use crate::backend::pool::{Counts, Pooled};
use crate::backend::profile::RangeTime;
use crate::backend::{DeviceBuf, Memory, View, ViewMut};
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
        Pooled::new(data, len, &self.pool)
    }

    /// A buffer of `len` elements from the pool, or a fresh one (counted) when none is free.
    fn take(&self, len: usize) -> HostBuf<T> {
        let raw = self.pool.take(len).unwrap_or_else(|| {
            self.counters.allocation(len * std::mem::size_of::<T>());
            vec![T::ZERO; len]
        });
        Pooled::new(raw, len, &self.pool)
    }
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
        let raw = match self.ints.take(data.len()) {
            Some(mut v) => {
                v.copy_from_slice(data);
                v
            }
            None => {
                self.counters.allocation(4 * data.len());
                data.to_vec()
            }
        };
        Pooled::new(raw, data.len(), &self.ints)
    }
    fn alloc_u32(&self, len: usize) -> HostInts {
        let raw = self.ints.take(len).unwrap_or_else(|| {
            self.counters.allocation(4 * len);
            vec![0; len]
        });
        Pooled::new(raw, len, &self.ints)
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
