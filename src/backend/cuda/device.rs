//! Finding the GPU without touching a driver that is not there: the probe behind
//! `--device auto`, `pasa info`'s report and the device attributes [`super::Cuda::new`] reads.
//! cudarc panics when a dynamically loaded library is missing, so every entry point checks
//! for libcuda (and libcublas) first.

use super::NO_KERNELS;
use crate::error::{Error, Result};
use cudarc::driver::result as drv;
use cudarc::driver::sys::CUdevice_attribute;

pub(super) fn driver_err(what: &str) -> impl Fn(drv::DriverError) -> Error + '_ {
    move |e| Error(format!("CUDA: {what}: {e}"))
}

/// Whether the CUDA driver library can be loaded (cudarc panics on first use otherwise).
fn libcuda_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

pub(super) fn libcublas_present() -> bool {
    // SAFETY: as above, for cuBLAS.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// Load the driver and count the devices. Errors name what is missing.
pub(super) fn driver_device_count() -> Result<usize> {
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

pub(super) const NO_CUBLAS: &str =
    "CUDA is not available: libcublas was not found by the loader; run \
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
pub(super) fn describe(ordinal: usize) -> Result<(String, (i32, i32), usize, i32)> {
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
    out.push(format!(
        "nvtx: {}",
        if super::profile::nvtx_present() {
            "libnvToolsExt found (Nsight shows the named ranges of every op)"
        } else {
            "libnvToolsExt not found (no NVTX ranges; see the README's \"Profiling\")"
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
