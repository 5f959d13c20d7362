//! Buffer pools and the backends' own counters.
//!
//! Every buffer a backend hands out is a [`Pooled`] raw buffer: when it is dropped, the raw
//! buffer goes back to its backend's [`Pool`], filed by length, and the next request of that
//! length takes it instead of asking the allocator (the OS on the CPU, the driver on the GPU).
//! A training step asks for the same lengths in the same order every time, so after the first
//! step of each batch shape it allocates nothing, and it gets back the same buffers in the same
//! order (the free lists are LIFO), which a captured CUDA graph relies on. Pools never give
//! memory back while the backend lives.
//!
//! [`Counters`] count what a backend did (allocations, bytes, kernel launches, GEMM calls,
//! fills), so that `pasa bench` can report them per step on any device, the emulated GPU
//! included.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Freed raw buffers by length.
pub struct Pool<R> {
    free: Mutex<HashMap<usize, Vec<R>>>,
}

impl<R> Default for Pool<R> {
    fn default() -> Self {
        Pool {
            free: Mutex::new(HashMap::new()),
        }
    }
}

impl<R> Pool<R> {
    /// A freed buffer of exactly `len` elements, the one freed last.
    pub fn take(&self, len: usize) -> Option<R> {
        self.lock().get_mut(&len).and_then(Vec::pop)
    }

    /// The freed buffer of `len` elements for which `is` holds, if any (a replayed step graph
    /// takes back exactly the buffers its capture used).
    pub fn take_where(&self, len: usize, is: impl Fn(&R) -> bool) -> Option<R> {
        let mut free = self.lock();
        let list = free.get_mut(&len)?;
        let at = list.iter().position(is)?;
        Some(list.remove(at))
    }

    fn put(&self, len: usize, raw: R) {
        self.lock().entry(len).or_default().push(raw);
    }

    /// Elements held free, over all lengths.
    pub fn free_elements(&self) -> usize {
        self.lock().iter().map(|(len, v)| len * v.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Vec<R>>> {
        // A panic while the lock was held left the map consistent (each operation is one
        // insert or pop): carry on with it.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The capacity a pool that files buffers by size class gives a request of `len` elements:
/// `len` rounded up to one of 8 steps per doubling (at most 12.5 % more; multiples of 256
/// below 4096). Where lengths vary from step to step (the rows with a target, on the CPU),
/// a pool filed by exact length would keep a free list for every length ever seen and grow
/// without bound; by class, a few dozen lists serve every length.
pub fn size_class(len: usize) -> usize {
    if len <= 4096 {
        return len.div_ceil(256) * 256;
    }
    let step = 1usize << (usize::BITS - 1 - len.leading_zeros() - 3);
    len.div_ceil(step) * step
}

/// A raw buffer that returns to its pool when dropped. Dereferences to the raw buffer.
pub struct Pooled<R> {
    raw: Option<R>,
    len: usize,
    /// The length it is filed under in its pool (its size class, or `len`).
    key: usize,
    pool: Arc<Pool<R>>,
}

impl<R> Pooled<R> {
    /// Wraps `raw` (of `len` elements) so that it goes back to `pool` when dropped, filed
    /// under `len`.
    pub fn new(raw: R, len: usize, pool: &Arc<Pool<R>>) -> Self {
        Self::filed(raw, len, len, pool)
    }

    /// Wraps `raw` (`len` elements in use) so that it goes back to `pool` filed under `key`
    /// (its capacity's [`size_class`]).
    pub fn filed(raw: R, len: usize, key: usize, pool: &Arc<Pool<R>>) -> Self {
        Pooled {
            raw: Some(raw),
            len,
            key,
            pool: Arc::clone(pool),
        }
    }

    /// Elements in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<R> Deref for Pooled<R> {
    type Target = R;
    fn deref(&self) -> &R {
        self.raw
            .as_ref()
            .expect("a pooled buffer is present until dropped")
    }
}

impl<R> DerefMut for Pooled<R> {
    fn deref_mut(&mut self) -> &mut R {
        self.raw
            .as_mut()
            .expect("a pooled buffer is present until dropped")
    }
}

impl<R> Drop for Pooled<R> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            self.pool.put(self.key, raw);
        }
    }
}

impl<R: std::fmt::Debug> std::fmt::Debug for Pooled<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

/// What a backend has done since it was created (every field only grows).
#[derive(Debug, Default)]
pub struct Counters {
    allocations: AtomicU64,
    allocated_bytes: AtomicU64,
    launches: AtomicU64,
    gemms: AtomicU64,
    fills: AtomicU64,
    transfers: AtomicU64,
    graph_launches: AtomicU64,
}

/// A snapshot of [`Counters`]; the difference of two is what happened in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Buffers the allocator was asked for (pool misses).
    pub allocations: u64,
    /// Their bytes.
    pub allocated_bytes: u64,
    /// Kernel launches (0 on the CPU, which launches none).
    pub launches: u64,
    /// Dense matrix products (GEMM calls, batched ones counted once).
    pub gemms: u64,
    /// Buffers filled with a constant (zeroed for accumulation, or a fill op).
    pub fills: u64,
    /// Host↔device copies (uploads and downloads).
    pub transfers: u64,
    /// Replays of a captured CUDA graph (each stands for a whole step's launches, GEMMs,
    /// fills and uploads, which are then not counted one by one).
    pub graph_launches: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            allocations: self.allocations - earlier.allocations,
            allocated_bytes: self.allocated_bytes - earlier.allocated_bytes,
            launches: self.launches - earlier.launches,
            gemms: self.gemms - earlier.gemms,
            fills: self.fills - earlier.fills,
            transfers: self.transfers - earlier.transfers,
            graph_launches: self.graph_launches - earlier.graph_launches,
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            allocations: get(&self.allocations),
            allocated_bytes: get(&self.allocated_bytes),
            launches: get(&self.launches),
            gemms: get(&self.gemms),
            fills: get(&self.fills),
            transfers: get(&self.transfers),
            graph_launches: get(&self.graph_launches),
        }
    }
    pub fn allocation(&self, bytes: usize) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.allocated_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn launch(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
    }
    pub fn gemm(&self) {
        self.gemms.fetch_add(1, Ordering::Relaxed);
    }
    pub fn fill(&self) {
        self.fills.fetch_add(1, Ordering::Relaxed);
    }
    pub fn transfer(&self) {
        self.transfers.fetch_add(1, Ordering::Relaxed);
    }
    pub fn graph_launch(&self) {
        self.graph_launches.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_is_taken_again_last_in_first_out() {
        let pool = Arc::new(Pool::<Vec<u8>>::default());
        let a = Pooled::new(vec![1u8; 4], 4, &pool);
        let b = Pooled::new(vec![2u8; 4], 4, &pool);
        let c = Pooled::new(vec![3u8; 8], 8, &pool);
        assert!(pool.take(4).is_none());
        drop(a);
        drop(b);
        drop(c);
        assert_eq!(pool.free_elements(), 16);
        assert_eq!(
            pool.take(4),
            Some(vec![2u8; 4]),
            "the last freed comes first"
        );
        assert_eq!(pool.take(4), Some(vec![1u8; 4]));
        assert_eq!(pool.take(4), None);
        assert_eq!(pool.take(8), Some(vec![3u8; 8]));
    }

    #[test]
    fn size_classes_cover_a_length_with_little_waste_and_are_few() {
        let mut classes = std::collections::BTreeSet::new();
        for len in 1..=200_000usize {
            let c = size_class(len);
            assert!(c >= len, "class {c} of {len}");
            if len > 4096 {
                assert!(
                    c * 8 <= len * 9,
                    "class {c} of {len}: more than 12.5 % over"
                );
            }
            assert_eq!(size_class(c), c, "a class is its own class");
            classes.insert(c);
        }
        // 16 below 4096, then 8 per doubling up to 2^18.
        assert!(classes.len() <= 16 + 8 * 6, "{} classes", classes.len());
    }

    #[test]
    fn counts_subtract() {
        let c = Counters::default();
        let before = c.snapshot();
        c.allocation(16);
        c.launch();
        c.launch();
        c.gemm();
        let d = c.snapshot().since(before);
        assert_eq!(
            (
                d.allocations,
                d.allocated_bytes,
                d.launches,
                d.gemms,
                d.fills
            ),
            (1, 16, 2, 1, 0)
        );
    }
}
