//! CUDA graphs: the mechanism a training step uses to run as one launch.
//!
//! [`Cuda::capture`] runs a closure with the backend's stream capturing: every kernel, cuBLAS
//! GEMM, memset and copy the closure queues is recorded (kernel arguments by value) instead of
//! run, and the result is a [`Graph`] that [`Graph::launch`] replays in order with one driver
//! call. A replay works on the same device addresses as the capture, so:
//!
//! - every buffer the closure touches must outlive the graph's replays and keep its address:
//!   take them from the pool (src/backend/pool.rs) before capturing, or inside the closure only
//!   when the pool already holds them (a step after the first allocates nothing, and gets back
//!   the same buffers in the same order); an allocation during capture is refused (the CPU
//!   emulation refuses it; a GPU would add a graph memory node);
//! - per-step inputs change by writing them into [`Pinned`] host memory before each replay: a
//!   copy captured with [`Cuda::copy_from_pinned`] reads the pinned buffer when it runs, not
//!   when it was captured. Write it only when nothing queued still reads it (after a
//!   [`Memory::synchronize`](crate::backend::Memory::synchronize));
//! - nothing inside the closure may synchronise (a download, [`Memory::synchronize`], a
//!   pageable upload): the driver invalidates the capture, and the call panics as any failed
//!   driver call of this backend does.
//!
//! Capture uses the thread-local mode: other threads may keep using their own streams.
//! While capturing, `pasa bench --profile` records no events (a captured range has no time).

use super::device::driver_err;
use super::Cuda;
use crate::error::{Error, Result};
use cudarc::driver::result as drv;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaSlice, DeviceRepr, ValidAsZeroBits};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A captured, instantiated sequence of the backend's stream work.
pub struct Graph {
    graph: CudaGraph,
    ops: usize,
}

impl Graph {
    /// Queues one replay of the whole graph on the backend's stream (asynchronous, like any
    /// op: synchronise before reading results on the host).
    pub fn launch(&self) -> Result<()> {
        self.graph
            .launch()
            .map_err(driver_err("launching a CUDA graph failed"))
    }

    /// Uploads the graph's resources to the device ahead of its first launch (optional).
    pub fn upload(&self) -> Result<()> {
        self.graph
            .upload()
            .map_err(driver_err("uploading a CUDA graph failed"))
    }

    /// The instantiated graph's driver handle (for patching its nodes' arguments).
    pub(super) fn exec(&self) -> cudarc::driver::sys::CUgraphExec {
        self.graph.cu_graph_exec()
    }

    /// Kernel launches (GEMMs included) the capture recorded, by the backend's own counters.
    pub fn launches(&self) -> usize {
        self.ops
    }
}

/// Ends the capture if the closure panics, so that the stream is usable again.
struct Capturing<'a>(&'a Cuda);

impl Drop for Capturing<'_> {
    fn drop(&mut self) {
        self.0.capturing.store(false, Ordering::Relaxed);
        if std::thread::panicking() {
            // SAFETY: ends the capture this guard's `Cuda::capture` began on this thread; the
            // graph (if any: an invalidated capture has none) is destroyed at once.
            if let Ok(g) = unsafe { drv::stream::end_capture(self.0.stream.cu_stream()) } {
                if !g.is_null() {
                    let _ = unsafe { drv::graph::destroy(g) };
                }
            }
        }
    }
}

impl Cuda {
    /// Captures the stream work `f` queues into a [`Graph`] (nothing of it runs now) and
    /// returns it with `f`'s result. See the module doc for what `f` may do.
    pub fn capture<R>(&self, f: impl FnOnce() -> R) -> Result<(Graph, R)> {
        let before = self.counters.snapshot();
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(driver_err("beginning a stream capture failed"))?;
        self.capturing.store(true, Ordering::Relaxed);
        let guard = Capturing(self);
        let out = f();
        drop(guard);
        let graph = self
            .stream
            .end_capture(CUgraphInstantiate_flags(0))
            .map_err(driver_err(
                "ending a stream capture failed (an op inside it synchronised or allocated?)",
            ))?
            .ok_or_else(|| Error::msg("CUDA: the stream capture produced no graph"))?;
        let c = self.counters.snapshot().since(before);
        Ok((
            Graph {
                graph,
                ops: (c.launches + c.gemms) as usize,
            },
            out,
        ))
    }

    /// Page-locked host memory of `len` elements, zero-filled.
    pub fn pinned<T: DeviceRepr + ValidAsZeroBits + Copy>(&self, len: usize) -> Result<Pinned<T>> {
        let bytes = len.max(1) * std::mem::size_of::<T>();
        self.ctx
            .bind_to_thread()
            .map_err(driver_err("binding the context failed"))?;
        // SAFETY: allocates `bytes` of host memory; zero-filled below before any read.
        let ptr = unsafe { drv::malloc_host(bytes, 0) }.map_err(driver_err(&format!(
            "allocating {bytes} B of pinned memory failed"
        )))? as *mut T;
        // SAFETY: `ptr` holds `bytes` ≥ len·size_of::<T>() writable bytes; all-zero bits are a
        // valid T (ValidAsZeroBits).
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) };
        Ok(Pinned {
            ptr,
            len,
            ctx: Arc::clone(&self.ctx),
        })
    }

    /// Queues a copy of all of `src` into the start of `dst` on the stream (capturable: the
    /// replay reads `src` as it is then).
    pub fn copy_from_pinned<T: DeviceRepr>(&self, src: &Pinned<T>, dst: &mut CudaSlice<T>) {
        assert!(
            src.len <= dst.len(),
            "copy_from_pinned: destination too short"
        );
        if src.len == 0 {
            return;
        }
        self.counters.transfer();
        // SAFETY: `src` is live pinned memory of `len` elements, `dst` a live device buffer of at
        // least as many, on this backend's stream.
        unsafe {
            drv::memcpy_htod_async(
                self.addr(dst),
                std::slice::from_raw_parts(src.ptr, src.len),
                self.stream.cu_stream(),
            )
        }
        .unwrap_or_else(|e| {
            panic!(
                "cuda: copy of {} elements from pinned memory failed: {e}",
                src.len
            )
        });
    }
}

/// Page-locked host memory ([`Cuda::pinned`]): the staging area of a captured step's inputs.
pub struct Pinned<T> {
    ptr: *mut T,
    len: usize,
    ctx: Arc<cudarc::driver::CudaContext>,
}

// SAFETY: the allocation is owned (freed once, on drop) and only reached through &self / &mut
// self, like a Vec's.
unsafe impl<T: Send> Send for Pinned<T> {}
unsafe impl<T: Sync> Sync for Pinned<T> {}

impl<T> Pinned<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `len` initialised elements (zero-filled at allocation).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The contents, to write the next inputs into; no queued copy may still read them.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above; &mut self makes the host access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T> Drop for Pinned<T> {
    fn drop(&mut self) {
        // Nothing queued may still read it: wait for the device first.
        let _ = self.ctx.synchronize();
        // SAFETY: allocated by malloc_host in Cuda::pinned, freed once.
        let _ = unsafe { drv::free_host(self.ptr as *mut std::ffi::c_void) };
    }
}
