//! The CUDA backend: the kernels of `kernels/*.cu` (PTX embedded at build time) and cuBLAS,
//! on one stream of one device, through cudarc with the driver loaded at run time.
//!
//! Nothing here touches the driver before checking that it exists: on a machine without
//! libcuda, [`Cuda::new`], [`cuda_available`] and [`device_info`] report that instead of
//! panicking (cudarc panics when a dynamically loaded library is missing).
//!
//! Memory: every op allocates its temporaries (workspaces, partials) with a stream-ordered
//! `cuMemAllocAsync` and frees them when they go out of scope, which the driver's pool makes
//! cheap. A per-backend cache of workspaces keyed by size would remove even that, and is the
//! first thing to try if allocation shows up in a profile.

mod attention;
mod blas;
mod embedding;
mod launch;
mod loss;
mod optim;
mod pointwise;

use super::{
    Activation, AdamStep, AttnGrads, AttnInputs, AttnShape, Backend, DeviceBuf, Gemm, MixShape,
    View, ViewMut,
};
use crate::error::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{
    result as drv, CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::Arc;

/// The widest attention head (dh) the attention and mix kernels take.
pub const MAX_HEAD_WIDTH: usize = 128;

/// The message of a build without kernels.
const NO_KERNELS: &str = "this build has no CUDA kernels: nvcc was not found at build time; \
     rebuild with NVCC=/path/to/nvcc (e.g. `export NVCC=$(.ci/install-nvcc | tail -1)`) or use \
     --device cpu";

/// One CUDA device: its context, the one stream every op runs on, a cuBLAS handle bound to
/// that stream, and every kernel of `pasa::kernels::ENTRY_POINTS` by name.
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
}

impl DeviceBuf for CudaSlice<f32> {
    fn len(&self) -> usize {
        CudaSlice::len(self)
    }
}

fn driver_err(what: &str) -> impl Fn(drv::DriverError) -> Error + '_ {
    move |e| Error(format!("CUDA: {what}: {e}"))
}

/// Whether the CUDA driver library can be loaded (cudarc panics on first use otherwise).
fn libcuda_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

fn libcublas_present() -> bool {
    // SAFETY: as above, for cuBLAS.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// Load the driver and count the devices. Errors name what is missing.
fn driver_device_count() -> Result<usize> {
    if !libcuda_present() {
        return Err(Error::msg(
            "CUDA is not available: the NVIDIA driver library (libcuda.so) was not found; \
             use --device cpu",
        ));
    }
    drv::init().map_err(driver_err("initialising the driver failed"))?;
    let n = drv::device::get_count().map_err(driver_err("counting devices failed"))?;
    Ok(n.max(0) as usize)
}

/// Probe for a usable GPU without creating a context: kernels in this build, libcuda,
/// libcublas, at least one device. `Ok(())` means [`Cuda::new`]`(0)` should succeed.
pub fn cuda_available() -> Result<()> {
    if crate::kernels::KERNELS.is_empty() {
        return Err(Error::msg(NO_KERNELS));
    }
    if driver_device_count()? == 0 {
        return Err(Error::msg(
            "CUDA is not available: the driver reports no device",
        ));
    }
    if !libcublas_present() {
        return Err(Error::msg(NO_CUBLAS));
    }
    Ok(())
}

const NO_CUBLAS: &str = "CUDA is not available: libcublas was not found by the loader; run \
     with LD_LIBRARY_PATH=/usr/local/cuda/lib64 (or wherever the CUDA toolkit's lib64 is)";

/// The driver's CUDA version as "major.minor".
fn driver_version() -> Result<String> {
    let mut v = 0i32;
    // SAFETY: libcuda is loaded (checked by the caller); writes one int.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(driver_err("reading the driver version failed"))?;
    Ok(format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// (name, compute capability, memory in bytes, SMs) of device `ordinal`.
fn describe(ordinal: usize) -> Result<(String, (i32, i32), usize, i32)> {
    let dev = drv::device::get(ordinal as i32).map_err(driver_err("opening the device failed"))?;
    let name = drv::device::get_name(dev).map_err(driver_err("reading the device name"))?;
    let attr = |a| {
        // SAFETY: `dev` comes from device::get.
        unsafe { drv::device::get_attribute(dev, a) }
            .map_err(driver_err("reading a device attribute failed"))
    };
    let major = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let sms = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
    // SAFETY: as above.
    let mem = unsafe { drv::device::total_mem(dev) }
        .map_err(driver_err("reading the device memory failed"))?;
    Ok((name, (major, minor), mem, sms))
}

/// A multi-line report for `pasa info`: the kernels in this build and their target, the
/// driver, cuBLAS, and every device (name, compute capability, memory, SMs). Never fails:
/// whatever is missing is said in its line.
pub fn device_info() -> String {
    let mut out = Vec::new();
    let files: Vec<&str> = crate::kernels::KERNELS.iter().map(|(n, _)| *n).collect();
    if files.is_empty() {
        out.push("kernels: none (built without nvcc; the CUDA backend is unavailable)".into());
    } else {
        out.push(format!(
            "kernels: {} for {} ({})",
            files.len(),
            crate::kernels::ARCH,
            files.join(", ")
        ));
    }
    if !libcuda_present() {
        out.push("driver: libcuda.so not found (no NVIDIA driver on this machine)".into());
        return out.join("\n");
    }
    let count = match driver_device_count() {
        Ok(c) => c,
        Err(e) => {
            out.push(format!("driver: {e}"));
            return out.join("\n");
        }
    };
    match driver_version() {
        Ok(v) => out.push(format!("driver: CUDA {v}, {count} device(s)")),
        Err(e) => out.push(format!("driver: {e}")),
    }
    out.push(format!(
        "cublas: {}",
        if libcublas_present() {
            "found"
        } else {
            "NOT found (set LD_LIBRARY_PATH to the CUDA toolkit's lib64)"
        }
    ));
    for i in 0..count {
        match describe(i) {
            Ok((name, (ma, mi), mem, sms)) => out.push(format!(
                "device {i}: {name}, compute capability {ma}.{mi}, {:.1} GiB, {sms} SMs",
                mem as f64 / (1u64 << 30) as f64
            )),
            Err(e) => out.push(format!("device {i}: {e}")),
        }
    }
    out.join("\n")
}

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

        let mut functions = HashMap::new();
        for (file, entries) in crate::kernels::ENTRY_POINTS {
            let ptx = crate::kernels::ptx(file).ok_or_else(|| {
                Error(format!(
                    "this build lacks the CUDA kernel file {file}.cu (nvcc failed on it at \
                     build time); rebuild with PASA_REQUIRE_KERNELS=1 to see why"
                ))
            })?;
            let module = ctx.load_module(Ptx::from_src(ptx)).map_err(|e| {
                Error(format!(
                    "CUDA: loading the {file} kernels (PTX for {}) on {device_name} (compute \
                     capability {}.{}) failed: {e}; rebuild with PASA_CUDA_ARCH=sm_{}{} if the \
                     device is older than the target",
                    crate::kernels::ARCH,
                    cc.0,
                    cc.1,
                    cc.0,
                    cc.1
                ))
            })?;
            for &name in *entries {
                let f = module
                    .load_function(name)
                    .map_err(driver_err(&format!("loading kernel {name} failed")))?;
                functions.insert(name, f);
            }
        }
        let mut cuda = Cuda {
            ctx,
            stream,
            blas,
            functions,
            sms: sms.max(1) as u32,
            sync_each_launch: std::env::var("PASA_CUDA_SYNC").is_ok_and(|v| v == "1"),
            ordinal,
            device_name,
        };
        cuda.allow_large_shared_memory()?;
        Ok(cuda)
    }

    /// The backward kernels take their shared memory dynamically; above 48 KiB (the d128
    /// bucket) a kernel must opt in before launch.
    fn allow_large_shared_memory(&mut self) -> Result<()> {
        for dh in [32, 64, 128] {
            let b = attention::Bucket::for_dh(dh);
            let bytes = b.bwd_smem();
            if bytes > 48 * 1024 {
                self.func(b.bwd)
                    .set_attribute(
                        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        bytes as i32,
                    )
                    .map_err(driver_err(&format!(
                        "allowing {bytes} B of shared memory for {} failed",
                        b.bwd
                    )))?;
            }
        }
        Ok(())
    }

    /// The loaded kernel `name` (every entry point of `kernels::ENTRY_POINTS` is loaded).
    fn func(&self, name: &str) -> &CudaFunction {
        self.functions
            .get(name)
            .unwrap_or_else(|| panic!("cuda: kernel {name} is not among the loaded entry points"))
    }

    /// A zeroed device buffer.
    fn alloc(&self, len: usize) -> CudaSlice<f32> {
        self.alloc_any(len)
    }

    /// A zeroed device buffer of any element type. Length 0 gets a one-element allocation
    /// seen as empty: cuMemAlloc rejects a size of 0, and relying on the async allocator
    /// accepting it is not worth the risk.
    fn alloc_any<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> CudaSlice<T> {
        let buf = self
            .stream
            .alloc_zeros::<T>(len.max(1))
            .unwrap_or_else(|e| panic!("cuda: allocating {len} elements failed: {e}"));
        if len > 0 {
            return buf;
        }
        let ptr = buf.leak();
        // SAFETY: `ptr` is a live allocation of this stream's context, owned by nobody after
        // leak(); the new slice frees it on drop and, with length 0, never indexes it.
        unsafe { self.stream.upgrade_device_ptr(ptr, 0) }
    }

    /// Upload host data (empty data gives an empty buffer).
    fn upload_any<T: DeviceRepr + ValidAsZeroBits>(&self, data: &[T]) -> CudaSlice<T> {
        if data.is_empty() {
            return self.alloc_any(0);
        }
        self.stream
            .clone_htod(data)
            .unwrap_or_else(|e| panic!("cuda: upload of {} elements failed: {e}", data.len()))
    }

    fn download_impl(&self, x: View<CudaSlice<f32>>) -> Vec<f32> {
        if x.len == 0 {
            return Vec::new();
        }
        let v = self
            .stream
            .clone_dtoh(&x.buf.slice(x.off..x.off + x.len))
            .unwrap_or_else(|e| panic!("cuda: download of {} floats failed: {e}", x.len));
        // A device-to-pageable copy completes before returning (CUDA's documented behaviour),
        // but cudarc's guard for a Vec does not synchronise: make the sync point explicit, so
        // that it also surfaces any asynchronous kernel fault here with its message.
        self.stream
            .synchronize()
            .unwrap_or_else(|e| panic!("cuda: a queued kernel failed: {e}"));
        v
    }

    /// dst[..src.len] = src, device to device.
    fn copy_impl(&self, src: View<CudaSlice<f32>>, dst: ViewMut<CudaSlice<f32>>) {
        assert!(dst.len >= src.len, "copy: destination too short");
        if src.len == 0 {
            return;
        }
        let s = src.buf.slice(src.off..src.off + src.len);
        let mut d = dst.buf.slice_mut(dst.off..dst.off + src.len);
        self.stream
            .memcpy_dtod(&s, &mut d)
            .unwrap_or_else(|e| panic!("cuda: device copy failed: {e}"));
    }
}

impl Backend for Cuda {
    type Buf = CudaSlice<f32>;
    type IBuf = CudaSlice<u32>;

    fn name(&self) -> String {
        format!("cuda:{} ({})", self.ordinal, self.device_name)
    }
    fn synchronize(&self) {
        // A kernel fault surfaces at the next sync point: this one, when timing.
        self.stream.synchronize().unwrap_or_else(|e| {
            panic!("cuda: synchronising the stream failed (a queued op faulted): {e}")
        });
    }

    fn zeros(&self, len: usize) -> CudaSlice<f32> {
        self.alloc(len)
    }
    fn upload(&self, data: &[f32]) -> CudaSlice<f32> {
        self.upload_any(data)
    }
    fn upload_u32(&self, data: &[u32]) -> CudaSlice<u32> {
        self.upload_any(data)
    }
    fn download(&self, x: View<CudaSlice<f32>>) -> Vec<f32> {
        self.download_impl(x)
    }
    fn fill(&self, x: ViewMut<CudaSlice<f32>>, value: f32) {
        self.fill_impl(x, value)
    }
    fn axpy(&self, alpha: f32, x: View<CudaSlice<f32>>, y: ViewMut<CudaSlice<f32>>) {
        self.axpy_impl(alpha, x, y)
    }
    fn sum_squares(&self, x: View<CudaSlice<f32>>) -> f64 {
        self.reduce_impl(x, true)
    }
    fn sum(&self, x: View<CudaSlice<f32>>) -> f64 {
        self.reduce_impl(x, false)
    }

    fn gemm(
        &self,
        g: &Gemm,
        a: View<CudaSlice<f32>>,
        b: View<CudaSlice<f32>>,
        c: ViewMut<CudaSlice<f32>>,
    ) {
        self.gemm_impl(g, a, b, c)
    }
    fn bias_add(&self, x: ViewMut<CudaSlice<f32>>, bias: View<CudaSlice<f32>>) {
        self.bias_add_impl(x, bias)
    }
    fn col_sum(&self, x: View<CudaSlice<f32>>, out: ViewMut<CudaSlice<f32>>) {
        let rows = x.len.checked_div(out.len).unwrap_or(0);
        self.col_sum_impl(self.p(x), rows, out)
    }

    fn layernorm_fwd(
        &self,
        x: View<CudaSlice<f32>>,
        gamma: View<CudaSlice<f32>>,
        beta: View<CudaSlice<f32>>,
        eps: f32,
        y: ViewMut<CudaSlice<f32>>,
        mean: ViewMut<CudaSlice<f32>>,
        rstd: ViewMut<CudaSlice<f32>>,
    ) {
        self.layernorm_fwd_impl(x, gamma, beta, eps, (y, mean, rstd))
    }
    fn layernorm_bwd(
        &self,
        x: View<CudaSlice<f32>>,
        gamma: View<CudaSlice<f32>>,
        mean: View<CudaSlice<f32>>,
        rstd: View<CudaSlice<f32>>,
        dy: View<CudaSlice<f32>>,
        dx: ViewMut<CudaSlice<f32>>,
        dgamma: ViewMut<CudaSlice<f32>>,
        dbeta: ViewMut<CudaSlice<f32>>,
    ) {
        self.layernorm_bwd_impl(x, gamma, mean, rstd, dy, dx, dgamma, dbeta)
    }
    fn act_fwd(&self, act: Activation, x: View<CudaSlice<f32>>, y: ViewMut<CudaSlice<f32>>) {
        self.act_fwd_impl(act, x, y)
    }
    fn act_bwd(
        &self,
        act: Activation,
        x: View<CudaSlice<f32>>,
        dy: View<CudaSlice<f32>>,
        dx: ViewMut<CudaSlice<f32>>,
    ) {
        self.act_bwd_impl(act, x, dy, dx)
    }
    fn dropout(&self, x: View<CudaSlice<f32>>, p: f32, seed: u64, y: ViewMut<CudaSlice<f32>>) {
        self.dropout_impl(x, p, seed, y)
    }
    fn row_mask(&self, x: ViewMut<CudaSlice<f32>>, start: &CudaSlice<u32>, n: usize) {
        self.row_mask_impl(x, start, n)
    }
    fn rope(
        &self,
        x: View<CudaSlice<f32>>,
        n: usize,
        heads: usize,
        dh: usize,
        inverse: bool,
        y: ViewMut<CudaSlice<f32>>,
    ) {
        self.rope_impl(x, n, heads, dh, inverse, y)
    }

    fn embedding_fwd(
        &self,
        table: View<CudaSlice<f32>>,
        ids: &CudaSlice<u32>,
        cols: usize,
        scale: f32,
        out: ViewMut<CudaSlice<f32>>,
    ) {
        self.embedding_fwd_impl(table, ids, cols, scale, out)
    }
    fn embedding_bwd(
        &self,
        ids: &CudaSlice<u32>,
        dout: View<CudaSlice<f32>>,
        cols: usize,
        scale: f32,
        dtable: ViewMut<CudaSlice<f32>>,
    ) {
        self.embedding_bwd_impl(ids, dout, cols, scale, dtable)
    }

    fn attention_fwd(
        &self,
        s: &AttnShape,
        inputs: AttnInputs<CudaSlice<f32>>,
        start: &CudaSlice<u32>,
        y: ViewMut<CudaSlice<f32>>,
        lse: ViewMut<CudaSlice<f32>>,
    ) {
        self.attention_fwd_impl(s, inputs, start, y, lse)
    }
    fn attention_bwd(
        &self,
        s: &AttnShape,
        inputs: AttnInputs<CudaSlice<f32>>,
        start: &CudaSlice<u32>,
        y: View<CudaSlice<f32>>,
        lse: View<CudaSlice<f32>>,
        dy: View<CudaSlice<f32>>,
        grads: AttnGrads<CudaSlice<f32>>,
    ) {
        self.attention_bwd_impl(s, inputs, start, y, lse, dy, grads)
    }
    fn mix_fwd(
        &self,
        s: &MixShape,
        l: View<CudaSlice<f32>>,
        v: View<CudaSlice<f32>>,
        start: &CudaSlice<u32>,
        out: ViewMut<CudaSlice<f32>>,
    ) {
        self.mix_fwd_impl(s, l, v, start, out)
    }
    fn mix_bwd(
        &self,
        s: &MixShape,
        l: View<CudaSlice<f32>>,
        v: View<CudaSlice<f32>>,
        start: &CudaSlice<u32>,
        dout: View<CudaSlice<f32>>,
        dv: ViewMut<CudaSlice<f32>>,
        dl: ViewMut<CudaSlice<f32>>,
    ) {
        self.mix_bwd_impl(s, l, v, start, dout, dv, dl)
    }

    fn cross_entropy_fwd(
        &self,
        logits: View<CudaSlice<f32>>,
        targets: &CudaSlice<u32>,
        vocab: usize,
        loss: ViewMut<CudaSlice<f32>>,
        lse: ViewMut<CudaSlice<f32>>,
    ) {
        self.cross_entropy_fwd_impl(logits, targets, vocab, loss, lse)
    }
    fn cross_entropy_bwd(
        &self,
        logits: View<CudaSlice<f32>>,
        lse: View<CudaSlice<f32>>,
        targets: &CudaSlice<u32>,
        vocab: usize,
        scale: f32,
        dlogits: ViewMut<CudaSlice<f32>>,
    ) {
        self.cross_entropy_bwd_impl(logits, lse, targets, vocab, scale, dlogits)
    }
    fn bce_fwd(
        &self,
        h: View<CudaSlice<f32>>,
        table: View<CudaSlice<f32>>,
        targets: &CudaSlice<u32>,
        vocab: usize,
        seed: u64,
        loss: ViewMut<CudaSlice<f32>>,
    ) {
        self.bce_fwd_impl(h, table, targets, vocab, seed, loss)
    }
    fn bce_bwd(
        &self,
        h: View<CudaSlice<f32>>,
        table: View<CudaSlice<f32>>,
        targets: &CudaSlice<u32>,
        vocab: usize,
        seed: u64,
        scale: f32,
        dh: ViewMut<CudaSlice<f32>>,
        dtable: ViewMut<CudaSlice<f32>>,
    ) {
        self.bce_bwd_impl(h, table, targets, vocab, seed, scale, dh, dtable)
    }

    fn adam(
        &self,
        step: &AdamStep,
        params: ViewMut<CudaSlice<f32>>,
        grads: View<CudaSlice<f32>>,
        m: ViewMut<CudaSlice<f32>>,
        v: ViewMut<CudaSlice<f32>>,
    ) {
        self.adam_impl(step, params, grads, m, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let b = attention::Bucket::for_dh(50);
        assert_eq!((b.dh, b.fwd, b.bwd), (64, "attn_fwd_d64", "attn_bwd_d64"));
        // The launch contracts' byte counts.
        assert_eq!(attention::Bucket::for_dh(32).bwd_smem(), 21_120);
        assert_eq!(attention::Bucket::for_dh(64).bwd_smem(), 37_760);
        assert_eq!(attention::Bucket::for_dh(128).bwd_smem(), 52_544);
        assert!(std::panic::catch_unwind(|| attention::Bucket::for_dh(129)).is_err());
    }
}
