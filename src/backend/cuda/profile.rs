//! Named ranges on the GPU: NVTX ranges for Nsight (when libnvToolsExt can be loaded), and the
//! range profiler of `pasa bench --profile`, which records a CUDA event on the stream at each
//! push and pop and resolves the times between them when the profile is taken (so profiling
//! adds two event records per range and no synchronisation until then). Events come from a
//! pool that only grows: a second profile of the same work creates none.

use super::Cuda;
use crate::backend::profile::RangeTime;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaEvent;
use std::sync::atomic::Ordering;

/// The profiler's events: `used` of them hold this profile's marks, in order.
#[derive(Default)]
pub(super) struct EventPool {
    events: Vec<CudaEvent>,
    used: usize,
}

/// Whether NVTX can be used: libnvToolsExt loads (cudarc panics on first use otherwise).
pub(super) fn nvtx_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvtx::sys::is_culib_present() }
}

impl Cuda {
    /// Whether this backend emits NVTX ranges (libnvToolsExt was found when it was created).
    pub fn nvtx(&self) -> bool {
        self.nvtx
    }

    pub(super) fn push_range(&self, name: &'static str) {
        if self.nvtx {
            cudarc::nvtx::result::range_push(name);
        }
        if self.profiler.is_on() && !self.capturing.load(Ordering::Relaxed) {
            let mut spans = self.profiler.lock();
            spans.push(name, self.mark());
        }
    }

    pub(super) fn pop_range(&self) {
        if self.nvtx {
            cudarc::nvtx::result::range_pop();
        }
        if self.profiler.is_on() && !self.capturing.load(Ordering::Relaxed) {
            let mut spans = self.profiler.lock();
            if spans.any_open() {
                spans.pop(self.mark());
            }
        }
    }

    /// Records the next pooled event on the stream; its index is the mark.
    fn mark(&self) -> usize {
        let mut pool = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let i = pool.used;
        if i == pool.events.len() {
            let e = self
                .ctx
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .unwrap_or_else(|e| panic!("cuda: creating a profiling event failed: {e}"));
            pool.events.push(e);
        }
        pool.events[i]
            .record(&self.stream)
            .unwrap_or_else(|e| panic!("cuda: recording a profiling event failed: {e}"));
        pool.used += 1;
        i
    }

    pub(super) fn start_profile(&self) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).used = 0;
        self.profiler.start();
    }

    /// Waits for the stream, then times every closed range between its events.
    pub(super) fn take_profile(&self) -> Vec<RangeTime> {
        let spans = self.profiler.take();
        crate::backend::Memory::synchronize(self);
        let pool = self.events.lock().unwrap_or_else(|p| p.into_inner());
        spans.times(|&a, &b| {
            pool.events[a]
                .elapsed_ms(&pool.events[b])
                .unwrap_or_else(|e| panic!("cuda: reading a profiling event failed: {e}"))
                as f64
        })
    }
}
