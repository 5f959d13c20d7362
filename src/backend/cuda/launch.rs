//! Kernel launches: typed arguments, device addresses of views, grid shapes.
//!
//! A kernel with a short parameter list is launched by [`Cuda::launch`] with a slice of
//! [`Arg`]s whose variants name the C parameter types of the `.cu` launch contracts
//! (`float*` → `Ptr`, `int` → `I32`, `float` → `F32`, `size_t` and `unsigned long long` →
//! `U64`), so a launcher reads like the contract it follows. A kernel with a long one takes a
//! single parameter struct of `params.rs` (mirrored in `kernels/params.cuh`), launched by
//! [`Cuda::launch_params`].

use super::step_graph::Param;
use super::Cuda;
use super::GpuBuf;
use crate::backend::{View, ViewMut, MAX_GRID_YZ};
use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr};

/// One kernel parameter, by its C type.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg {
    /// A device pointer (`float*`, `const unsigned*`, …); 0 is the null pointer.
    Ptr(u64),
    /// `int`.
    I32(i32),
    /// `float`.
    F32(f32),
    /// `size_t` or `unsigned long long` (both 8 bytes on the 64-bit targets we build for).
    U64(u64),
}

/// A shape as a C `int`; shapes beyond i32 are a caller bug, reported with the value.
pub(super) fn to_i32(x: usize) -> i32 {
    i32::try_from(x).unwrap_or_else(|_| panic!("cuda: {x} does not fit a kernel int"))
}

/// An `int` parameter.
pub(super) fn int(x: usize) -> Arg {
    Arg::I32(to_i32(x))
}

/// A `size_t` parameter.
pub(super) fn size(x: usize) -> Arg {
    Arg::U64(x as u64)
}

/// Threads per block of every "flat" (grid-stride) kernel.
pub(super) const FLAT_BLOCK: u32 = 256;

/// ceil(a / b) as a grid dimension.
pub(super) fn blocks(a: usize, b: usize) -> u32 {
    u32::try_from(a.div_ceil(b))
        .unwrap_or_else(|_| panic!("cuda: grid of {a}/{b} blocks too large"))
}

impl Cuda {
    /// Device address of a whole buffer (any element type).
    pub(super) fn addr<T>(&self, s: &CudaSlice<T>) -> u64 {
        // Event tracking is off and there is one stream: the guard has nothing to record.
        let (p, _guard) = s.device_ptr(&self.stream);
        p
    }

    /// Device address of the first element of a view.
    pub(super) fn ptr(&self, v: View<GpuBuf>) -> CUdeviceptr {
        debug_assert!(v.off + v.len <= v.buf.len(), "view past its buffer");
        self.addr(v.buf) + (v.off * std::mem::size_of::<f32>()) as u64
    }

    /// Device address of the first element of a mutable view.
    pub(super) fn ptr_mut(&self, v: &ViewMut<GpuBuf>) -> CUdeviceptr {
        debug_assert!(v.off + v.len <= v.buf.len(), "view past its buffer");
        self.addr(&*v.buf) + (v.off * std::mem::size_of::<f32>()) as u64
    }

    /// Device address of an optional view (0, the null pointer, when absent).
    pub(super) fn ptr_opt(&self, v: Option<View<GpuBuf>>) -> CUdeviceptr {
        v.map_or(0, |v| self.ptr(v))
    }

    /// Pointer argument to the first element of a view.
    pub(super) fn p(&self, v: View<GpuBuf>) -> Arg {
        Arg::Ptr(self.ptr(v))
    }

    /// Pointer argument to the first element of a mutable view.
    pub(super) fn pm(&self, v: &ViewMut<GpuBuf>) -> Arg {
        Arg::Ptr(self.ptr_mut(v))
    }

    /// Pointer argument to a whole buffer (workspaces, index buffers).
    pub(super) fn pb<T>(&self, s: &CudaSlice<T>) -> Arg {
        Arg::Ptr(self.addr(s))
    }

    /// Grid of a flat (grid-stride) kernel over `count` elements: enough blocks to fill the
    /// device a few times over, never more than the elements need.
    pub(super) fn flat_grid(&self, count: usize) -> u32 {
        blocks(count, FLAT_BLOCK as usize).min(self.sms * 16)
    }

    /// Launch a flat kernel over `count` elements.
    pub(super) fn launch_flat(&self, name: &'static str, count: usize, args: &[Arg]) {
        let grid = self.flat_grid(count);
        self.launch(name, (grid, 1, 1), (FLAT_BLOCK, 1, 1), 0, args);
    }

    /// Launch kernel `name` with positional parameters (see [`Self::launch_on`]).
    pub(super) fn launch(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_mem_bytes: u32,
        args: &[Arg],
    ) {
        let params = args
            .iter()
            .map(|a| match a {
                Arg::Ptr(x) | Arg::U64(x) => Param::of(x),
                Arg::I32(x) => Param::of(x),
                Arg::F32(x) => Param::of(x),
            })
            .collect();
        // SAFETY: every launcher passes the parameters in the order and with the C types of
        // the kernel's documented contract, pointers into live buffers of the lengths the
        // kernel indexes (checked by the launchers against the views they are given).
        unsafe { self.launch_on(params, name, grid, block, shared_mem_bytes) }
    }

    /// Launch kernel `name`, whose one parameter is the struct `params` (see
    /// [`Self::launch_on`]).
    pub(super) fn launch_params<P: DeviceRepr + Copy>(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_mem_bytes: u32,
        params: &P,
    ) {
        // SAFETY: `P` mirrors the kernel's parameter struct (layouts asserted on both sides,
        // params.rs); its pointers address live buffers of the lengths the kernel indexes
        // (checked by the launchers against the views they are given).
        unsafe { self.launch_on(vec![Param::of(params)], name, grid, block, shared_mem_bytes) }
    }

    /// Launch kernel `name` with `params` on the backend's stream, or record or replay it when
    /// the step runs as a graph (step_graph.rs). An empty grid launches nothing (every
    /// kernel's work is then empty too). Launch errors are fatal: they mean a broken contract
    /// or a dead device, never bad user input. With `PASA_CUDA_SYNC=1` every launch is
    /// followed by a synchronisation, so that an asynchronous fault names its kernel.
    ///
    /// # Safety
    /// `params` holds the kernel's parameters, as its contract types them.
    unsafe fn launch_on(
        &self,
        params: Vec<Param>,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_mem_bytes: u32,
    ) {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return;
        }
        // The configuration checks keep batch, heads and n within this (MAX_GRID_YZ); a launch
        // past it would fail with an opaque CUDA_ERROR_INVALID_VALUE.
        assert!(
            grid.1 as usize <= MAX_GRID_YZ && grid.2 as usize <= MAX_GRID_YZ,
            "cuda: {name} needs a grid of {grid:?}, past CUDA's limit of {MAX_GRID_YZ} blocks in y and z"
        );
        // SAFETY: the caller vouches for the parameters; the configuration is checked above.
        unsafe { self.issue_kernel(name, grid, block, shared_mem_bytes, params) };
        if self.sync_each_launch && !self.replaying() {
            self.stream
                .synchronize()
                .unwrap_or_else(|e| panic!("cuda: kernel {name} failed: {e}"));
        }
    }
}
