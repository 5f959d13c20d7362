//! The CUDA backend: the kernels of `kernels/*.cu` (PTX embedded at build time) and cuBLAS,
//! on one stream of one device, through cudarc with the driver loaded at run time.
//!
//! One file per op family, named as in `kernels/` and `src/backend/cpu/`: each implements its
//! family trait for [`Cuda`] directly, launching the kernels of `kernels/<family>.cu`.
//! `launch.rs` and `params.rs` are the launch plumbing (argument lists, the `#[repr(C)]`
//! parameter structs of `kernels/params.cuh`), `device.rs` the probe, `graph.rs` stream capture
//! into CUDA graphs and pinned host memory, `profile.rs` NVTX ranges and the range profiler.
//!
//! Nothing here touches the driver before checking that it exists: on a machine without
//! libcuda, [`Cuda::new`], [`cuda_available`] and [`device_info`] report that instead of
//! panicking (cudarc panics when a dynamically loaded library is missing).
//!
//! Memory: every buffer, the ops' own temporaries (workspaces, partials) included, comes from
//! the backend's pool (src/backend/pool.rs) and goes back to it when dropped, so a training
//! step allocates nothing once its shapes have been seen, and the counters say so.

mod attention;
mod dense;
mod device;
mod embedding;
mod graph;
mod launch;
mod loss;
mod memory;
mod mma_check;
mod norm;
mod optim;
mod params;
mod pointwise;
mod profile;
mod rank;
mod step_graph;

pub use device::{cuda_available, device_info};
pub use graph::{Graph, Pinned};
pub use mma_check::MmaShape;

use crate::backend::pool::{Counters, Pool, Pooled};
use crate::backend::profile::Profiler;
use crate::backend::Precision;

use crate::error::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use device::{describe, driver_device_count, driver_err, libcublas_present, NO_CUBLAS};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// The widest attention head (dh) the attention and mix kernels take.
pub const MAX_HEAD_WIDTH: usize = 128;

/// The message of a build without kernels.
const NO_KERNELS: &str = "this build has no CUDA kernels: nvcc was not found at build time; \
     rebuild with NVCC=/path/to/nvcc (e.g. `export NVCC=$(.ci/install-nvcc | tail -1)`) or use \
     --device cpu";

/// One CUDA device: its context, the one stream every op runs on, a cuBLAS handle bound to
/// that stream, and every kernel of `pasa::kernels::ENTRY_POINTS` by name, with the attention
/// kernels of the precision modes used so far.
pub struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
    /// Streaming multiprocessors, for sizing grid-stride launches.
    sms: u32,
    /// Synchronise after every launch (`PASA_CUDA_SYNC=1`), so that faults name their kernel.
    sync_each_launch: bool,
    ordinal: usize,
    device_name: String,
    compute_capability: (i32, i32),
    pool: Arc<Pool<CudaSlice<f32>>>,
    ints: Arc<Pool<CudaSlice<u32>>>,
    counters: Counters,
    /// Ones for the column sums (a GEMM against them), grown as needed.
    ones: Mutex<Option<GpuBuf>>,
    /// NVTX ranges are emitted (libnvToolsExt loads).
    nvtx: bool,
    /// A [`Cuda::capture`] is under way: the profiler records no events.
    capturing: AtomicBool,
    /// The range profiler (marks are indices into `events`).
    profiler: Profiler<usize>,
    events: Mutex<profile::EventPool>,
    /// How device work is issued: directly, into a graph, or held back for a replay.
    mode: Mutex<step_graph::Mode>,
    /// The training-step graphs by batch shape.
    step_graphs: Mutex<step_graph::StepGraphs>,
    /// Steps run as graphs (`PASA_CUDA_GRAPH=0` turns them off).
    graphs_on: bool,
    /// The arithmetic of the products (`--precision`).
    precision: Precision,
    /// Attention through the `any` kernels only ([`Cuda::set_generic_attention`]).
    generic_attention: bool,
}

/// A device buffer of the CUDA backend: returns to the backend's pool when dropped.
pub type GpuBuf = Pooled<CudaSlice<f32>>;
/// A device index buffer.
pub type GpuInts = Pooled<CudaSlice<u32>>;

impl Cuda {
    /// Open device `ordinal`: check that this build has kernels and that the driver, cuBLAS
    /// and the device exist, create the context, one stream and a cuBLAS handle, and load
    /// every kernel once. Every failure is an [`Error`] that says what to do.
    pub fn new(ordinal: usize) -> Result<Cuda> {
        if crate::kernels::KERNELS.is_empty() {
            return Err(Error::msg(NO_KERNELS));
        }
        let count = driver_device_count()?;
        if ordinal >= count {
            return Err(Error(format!(
                "CUDA device {ordinal} does not exist ({count} device(s) found)"
            )));
        }
        if !libcublas_present() {
            return Err(Error::msg(NO_CUBLAS));
        }
        let (device_name, cc, _, sms) = describe(ordinal)?;
        let ctx = CudaContext::new(ordinal).map_err(driver_err("creating a context failed"))?;
        // One stream and no cross-stream sharing: per-buffer read/write events would only
        // cost two event creations per allocation. Off before the first allocation.
        // SAFETY: every op of this backend runs on `stream`, so stream order is the only
        // synchronisation buffers need.
        unsafe { ctx.disable_event_tracking() };
        // A created stream rather than the legacy default one, so that a training step can
        // later be captured into a CUDA graph.
        let stream = ctx
            .new_stream()
            .map_err(driver_err("creating a stream failed"))?;
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| Error(format!("CUDA: creating a cuBLAS handle failed: {e}")))?;

        let mut cuda = Cuda {
            ctx,
            stream,
            blas,
            functions: HashMap::new(),
            compute_capability: cc,
            sms: sms.max(1) as u32,
            sync_each_launch: std::env::var("PASA_CUDA_SYNC").is_ok_and(|v| v == "1"),
            ordinal,
            device_name,
            pool: Arc::default(),
            ints: Arc::default(),
            counters: Counters::default(),
            ones: Mutex::new(None),
            nvtx: profile::nvtx_present(),
            capturing: AtomicBool::new(false),
            profiler: Profiler::default(),
            events: Mutex::default(),
            mode: Mutex::default(),
            step_graphs: Mutex::default(),
            graphs_on: std::env::var("PASA_CUDA_GRAPH").map_or(true, |v| v != "0"),
            precision: Precision::Fp32,
            generic_attention: std::env::var("PASA_ATTN_GENERIC").is_ok_and(|v| v == "1"),
        };
        for (file, entries) in crate::kernels::ENTRY_POINTS {
            cuda.load_module(file, entries)?;
        }
        cuda.set_precision(Precision::Fp32)?;
        Ok(cuda)
    }

    /// The arithmetic of the products from now on: the attention kernels of `precision` and
    /// cuBLAS's arithmetic (plain f32, TF32 tensor-op math, or bf16 compute through
    /// cublasGemmEx). Set before training, not between the steps of a captured graph.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        use cudarc::cublas::sys::{cublasMath_t, cublasSetMathMode, cublasStatus_t};
        self.load_attention(precision)?;
        let mode = match precision {
            Precision::Fp32 => cublasMath_t::CUBLAS_DEFAULT_MATH,
            Precision::Tf32 => cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
            // The GEMMs go through cublasGemmEx with bf16 compute (dense.rs); Sgemm is unused.
            Precision::Bf16 => cublasMath_t::CUBLAS_DEFAULT_MATH,
        };
        // SAFETY: the handle is live (owned by self.blas) and the mode a valid enumerator.
        let status = unsafe { cublasSetMathMode(*self.blas.handle(), mode) };
        if status != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(Error(format!(
                "CUDA: setting cuBLAS's math mode for --precision {precision:?} failed: {status:?}"
            )));
        }
        self.precision = precision;
        Ok(())
    }

    /// The arithmetic of the products ([`Cuda::set_precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Load the PTX of kernel file `file` (JIT-compiled by the driver for this device) and
    /// look up its `entries`.
    fn load_module(&mut self, file: &str, entries: &[&'static str]) -> Result<()> {
        let ptx = crate::kernels::ptx(file).ok_or_else(|| {
            Error(format!(
                "this build lacks the CUDA kernel file {file}.cu (nvcc failed on it at build \
                 time); rebuild with PASA_REQUIRE_KERNELS=1 to see why"
            ))
        })?;
        let module = self.ctx.load_module(Ptx::from_src(ptx)).map_err(|e| {
            let (major, minor) = self.compute_capability;
            Error(format!(
                "CUDA: loading the {file} kernels (PTX for {}) on {} (compute capability \
                 {major}.{minor}) failed: {e}; rebuild with PASA_CUDA_ARCH=sm_{major}{minor} if \
                 the device is older than the target",
                crate::kernels::ARCH,
                self.device_name,
            ))
        })?;
        for &name in entries {
            let f = module
                .load_function(name)
                .map_err(driver_err(&format!("loading kernel {name} failed")))?;
            self.functions.insert(name, f);
        }
        Ok(())
    }

    /// Load the attention kernels of `precision` (their own module, so that a run JIT-compiles
    /// only the precision it uses) once, and let those that take more than 48 KiB of dynamic
    /// shared memory have it.
    fn load_attention(&mut self, precision: Precision) -> Result<()> {
        let kernels = attention::attention_kernels(precision);
        if self.functions.contains_key(kernels[0].entry()) {
            return Ok(());
        }
        let entries: Vec<&'static str> = kernels.iter().map(|k| k.entry()).collect();
        self.load_module(&attention::module(precision), &entries)?;
        for k in &kernels {
            let (name, bytes) = (k.entry(), k.smem());
            if bytes > 48 * 1024 {
                self.func(name)
                    .set_attribute(
                        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        bytes as i32,
                    )
                    .map_err(driver_err(&format!(
                        "allowing {bytes} B of shared memory for {name} failed"
                    )))?;
            }
        }
        Ok(())
    }

    /// Run every attention call through its bucket's `any` kernel (U, L and dropout read at
    /// run time) instead of its configuration's specialised one, as `PASA_ATTN_GENERIC=1`
    /// does: for the tests that hold the two equal, and to measure what the specialisation
    /// buys.
    pub fn set_generic_attention(&mut self, on: bool) {
        self.generic_attention = on;
    }

    /// Blocks per SM that the device keeps resident of each attention kernel of the current
    /// precision, launched as the launcher launches it (128 threads, its dynamic shared
    /// memory): what its registers, shared memory and the carveout allow together, as the
    /// driver computes it.
    pub fn attention_occupancy(&self) -> Result<Vec<(&'static str, u32)>> {
        attention::attention_kernels(self.precision)
            .iter()
            .map(|k| {
                let blocks = self
                    .func(k.entry())
                    .occupancy_max_active_blocks_per_multiprocessor(
                        attention::THREADS,
                        k.smem() as usize,
                        None,
                    )
                    .map_err(driver_err(&format!("the occupancy of {}", k.entry())))?;
                Ok((k.entry(), blocks))
            })
            .collect()
    }

    /// The loaded kernel `name` (every entry point of `kernels::ENTRY_POINTS` and of the
    /// attention module of each precision set so far).
    fn func(&self, name: &str) -> &CudaFunction {
        self.functions
            .get(name)
            .unwrap_or_else(|| panic!("cuda: kernel {name} is not among the loaded entry points"))
    }

    /// A device buffer of `len` floats from the pool, or a fresh one (counted); contents
    /// unspecified.
    fn alloc(&self, len: usize) -> GpuBuf {
        let raw = self
            .take_step_buffer(&self.pool, len)
            .unwrap_or_else(|| self.fresh(len));
        Pooled::new(raw, len, &self.pool)
    }

    /// A pooled device buffer of `len` zeros (one stream-ordered memset, counted as a fill).
    fn zeroed(&self, len: usize) -> GpuBuf {
        let mut b = self.alloc(len);
        let sig = step_graph::OpSig::Memset {
            dst: self.addr(&b),
            bytes: 4 * len,
        };
        if len > 0 && self.issue_op(sig) {
            self.counters.fill();
            self.stream
                .memset_zeros(&mut b.slice_mut(0..len))
                .unwrap_or_else(|e| panic!("cuda: zeroing {len} floats failed: {e}"));
        }
        b
    }

    /// A device index buffer of `len` from the pool, or a fresh one (counted).
    fn alloc_ints(&self, len: usize) -> GpuInts {
        let raw = self
            .take_step_buffer(&self.ints, len)
            .unwrap_or_else(|| self.fresh(len));
        Pooled::new(raw, len, &self.ints)
    }

    /// A new device allocation of `len` elements (at least one: cuMemAlloc rejects a size of
    /// 0), counted. Its contents are whatever the allocator left (the emulation fills fresh
    /// memory with NaN, so a kernel that reads before writing shows up in the parity tests).
    fn fresh<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> CudaSlice<T> {
        self.counters
            .allocation(len.max(1) * std::mem::size_of::<T>());
        // SAFETY: device memory is never read by the host before a kernel or copy writes it;
        // uninitialised device memory is not undefined behaviour on the Rust side.
        unsafe { self.stream.alloc::<T>(len.max(1)) }
            .unwrap_or_else(|e| panic!("cuda: allocating {len} elements failed: {e}"))
    }

    /// Copies host data into a pooled device buffer.
    fn upload_into<T: DeviceRepr + ValidAsZeroBits>(&self, data: &[T], dst: &mut CudaSlice<T>) {
        if data.is_empty() {
            return;
        }
        // SAFETY: the elements' bytes (plain device-representable data) for the staging copy.
        let bytes = unsafe {
            std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data))
        };
        if self.stage_upload(bytes, self.addr(dst)) {
            return;
        }
        self.counters.transfer();
        let mut d = dst.slice_mut(0..data.len());
        self.stream
            .memcpy_htod(data, &mut d)
            .unwrap_or_else(|e| panic!("cuda: upload of {} elements failed: {e}", data.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Memory;

    /// Where no GPU is usable (CI, this development machine), every entry point reports it as
    /// an error or a line of text: none may panic.
    #[test]
    fn no_gpu_is_an_error_not_a_panic() {
        let info = device_info();
        assert!(info.starts_with("kernels:"), "{info}");
        match cuda_available() {
            Ok(()) => {
                let c = Cuda::new(0).expect("a usable GPU");
                assert!(c.name().starts_with("cuda:0"));
                assert!(Cuda::new(usize::MAX >> 1).is_err());
            }
            Err(why) => {
                let err = Cuda::new(0)
                    .err()
                    .expect("Cuda::new must fail like the probe");
                assert!(!err.0.is_empty());
                if crate::kernels::KERNELS.is_empty() {
                    assert!(why.0.contains("nvcc"), "{why}");
                    assert!(err.0.contains("--device cpu"), "{err}");
                }
            }
        }
    }

    #[test]
    fn attention_buckets_and_shared_memory() {
        use attention::Bucket;
        assert_eq!(Bucket::for_dh(50).dh, 64);
        assert_eq!(Bucket::for_dh(20).dh, 32);
        assert_eq!(Bucket::for_dh(128).dh, 128);
        // The launch contracts' byte counts.
        let bytes = |dh| {
            let b = Bucket::for_dh(dh);
            (b.fwd_smem(), b.bwd_smem())
        };
        assert_eq!(bytes(32), (27_648, 29_944));
        assert_eq!(bytes(64), (52_224, 50_424));
        assert_eq!(bytes(128), (101_376, 91_384));
        assert!(std::panic::catch_unwind(|| Bucket::for_dh(129)).is_err());
    }
}
