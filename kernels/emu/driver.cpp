// The fake libcuda of the CPU emulation: the driver API entry points cudarc calls, with one
// device ("pasa CPU emulation", compute capability 9.0, 4 SMs so grid-stride loops loop).
// Streams run every operation at once on the calling thread (stream order is kept trivially);
// device memory is host memory (runtime.cpp's guarded allocations), so a CUdeviceptr is a host
// address the emulated kernels dereference directly. Launches are checked the way the hardware
// checks them: block size, grid limits, dynamic shared memory against the opt-in attribute.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "runtime.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

namespace {
constexpr CUresult OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_HANDLE = 400, NOT_FOUND = 500,
                   LAUNCH_OUT_OF_RESOURCES = 701;
constexpr int SMS = 4;
constexpr size_t TOTAL_MEM = size_t(16) << 30;
constexpr int SMEM_DEFAULT = 48 * 1024, SMEM_OPTIN = 227 * 1024;

struct Context {
    int device = 0;
} the_context;

struct Stream {
    int unused = 0;
};

struct Module {
    std::string ptx;
};

struct Function {
    const char* name;
    emu::Invoke invoke;
    int params;
    int max_dynamic_smem = SMEM_DEFAULT;
};

struct Event {
    std::chrono::steady_clock::time_point at;
};

thread_local Context* current = nullptr;

bool valid_device(CUdevice d) { return d == 0; }
}  // namespace

extern "C" {

CUresult cuInit(unsigned) { return OK; }
CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return OK;
}
CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return OK;
}
CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return INVALID_VALUE;
    *d = 0;
    return OK;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice d) {
    if (!valid_device(d) || len <= 0) return INVALID_VALUE;
    std::snprintf(name, (size_t)len, "pasa CPU emulation");
    return OK;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice d) {
    if (!valid_device(d)) return INVALID_VALUE;
    *bytes = TOTAL_MEM;
    return OK;
}
CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
    if (!valid_device(d)) return INVALID_VALUE;
    switch (attr) {
        case 1: *v = 1024; break;                    // max threads per block
        case 2: *v = 1024; break;                    // max block dim x
        case 3: *v = 1024; break;                    // y
        case 4: *v = 64; break;                      // z
        case 5: *v = 2147483647; break;              // max grid dim x
        case 6: case 7: *v = 65535; break;           // y, z
        case 8: *v = SMEM_DEFAULT; break;            // shared memory per block
        case 10: *v = 32; break;                     // warp size
        case 16: *v = SMS; break;                    // multiprocessors
        case 75: *v = 9; break;                      // compute capability
        case 76: *v = 0; break;
        case 97: *v = SMEM_OPTIN; break;             // opt-in shared memory per block
        case 115: *v = 1; break;                     // memory pools
        default: *v = 0; break;
    }
    return OK;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, CUdevice d) {
    if (!valid_device(d)) return INVALID_VALUE;
    *ctx = &the_context;
    return OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return OK; }
CUresult cuCtxSetCurrent(void* ctx) {
    current = static_cast<Context*>(ctx);
    return OK;
}
CUresult cuCtxGetCurrent(void** ctx) {
    *ctx = current;
    return OK;
}
CUresult cuCtxPushCurrent_v2(void* ctx) { return cuCtxSetCurrent(ctx); }
CUresult cuCtxPopCurrent_v2(void** ctx) {
    if (ctx) *ctx = current;
    return OK;
}
CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return OK;
}
CUresult cuCtxSynchronize() { return OK; }

CUresult cuStreamCreate(void** s, unsigned) {
    *s = new Stream;
    return OK;
}
CUresult cuStreamDestroy_v2(void* s) {
    delete static_cast<Stream*>(s);
    return OK;
}
CUresult cuStreamSynchronize(void*) { return OK; }
CUresult cuStreamQuery(void*) { return OK; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return OK; }

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    *free_bytes = TOTAL_MEM;
    *total = TOTAL_MEM;
    return OK;
}
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    if (bytes == 0) return INVALID_VALUE;
    void* m = emu::device_alloc(bytes);
    if (!m) return OUT_OF_MEMORY;
    *p = reinterpret_cast<CUdeviceptr>(m);
    return OK;
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void*) { return cuMemAlloc_v2(p, bytes); }
CUresult cuMemFree_v2(CUdeviceptr p) {
    return emu::device_free(reinterpret_cast<void*>(p)) ? OK : INVALID_VALUE;
}
CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void*) {
    std::memset(reinterpret_cast<void*>(p), v, n);
    return OK;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { return cuMemsetD8Async(p, v, n, nullptr); }
CUresult cuMemsetD32Async(CUdeviceptr p, unsigned v, size_t n, void*) {
    auto* q = reinterpret_cast<unsigned*>(p);
    for (size_t i = 0; i < n; ++i) q[i] = v;
    return OK;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void*) {
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return OK;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) { return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr); }
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void*) {
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    return OK;
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) { return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr); }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void*) {
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return OK;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr); }

CUresult cuModuleLoadData(void** module, const void* image) {
    if (!image) return INVALID_VALUE;
    *module = new Module{static_cast<const char*>(image)};
    return OK;
}
CUresult cuModuleUnload(void* module) {
    delete static_cast<Module*>(module);
    return OK;
}
// A function must be an entry of the loaded PTX (as with the real driver) and be registered by
// the emulation (built from the same kernel sources).
CUresult cuModuleGetFunction(void** fn, void* module, const char* name) {
    const std::string& ptx = static_cast<Module*>(module)->ptx;
    const std::string entry = std::string(".entry ") + name + "(";
    if (ptx.find(entry) == std::string::npos) return NOT_FOUND;
    emu::Invoke invoke = nullptr;
    int params = 0;
    const char* stored = emu::find_kernel(name, &invoke, &params);
    if (!stored) {
        std::fprintf(stderr, "emu: kernel %s is in the PTX but not in the emulation (rebuild it)\n", name);
        return NOT_FOUND;
    }
    *fn = new Function{stored, invoke, params};
    return OK;
}
CUresult cuFuncSetAttribute(void* fn, int attr, int value) {
    auto* f = static_cast<Function*>(fn);
    if (attr == 8) {  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        if (value < 0 || value > SMEM_OPTIN) return INVALID_VALUE;
        f->max_dynamic_smem = value;
    }
    return OK;
}
CUresult cuFuncGetAttribute(int* v, int attr, void* fn) {
    auto* f = static_cast<Function*>(fn);
    *v = attr == 8 ? f->max_dynamic_smem : attr == 0 ? 1024 : 0;
    return OK;
}

CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void*, void** params, void** extra) {
    auto* f = static_cast<Function*>(fn);
    if (!f) return INVALID_HANDLE;
    if (extra) {
        std::fprintf(stderr, "emu: %s launched with `extra` parameters (not emulated)\n", f->name);
        return INVALID_VALUE;
    }
    if (!params && f->params > 0) return INVALID_VALUE;
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gy > 65535 || gz > 65535 || bz > 64 ||
        (unsigned long long)bx * by * bz > 1024) {
        std::fprintf(stderr, "emu: %s launched with grid (%u,%u,%u) block (%u,%u,%u): invalid configuration\n",
                     f->name, gx, gy, gz, bx, by, bz);
        return INVALID_VALUE;
    }
    if ((int)smem > f->max_dynamic_smem) {
        std::fprintf(stderr, "emu: %s launched with %u B of dynamic shared memory, above its limit %d B\n",
                     f->name, smem, f->max_dynamic_smem);
        return LAUNCH_OUT_OF_RESOURCES;
    }
    emu::launch(f->name, f->invoke, emu_uint3{gx, gy, gz}, emu_uint3{bx, by, bz}, smem, params);
    return OK;
}

CUresult cuEventCreate(void** e, unsigned) {
    *e = new Event{std::chrono::steady_clock::now()};
    return OK;
}
CUresult cuEventDestroy_v2(void* e) {
    delete static_cast<Event*>(e);
    return OK;
}
CUresult cuEventRecord(void* e, void*) {
    static_cast<Event*>(e)->at = std::chrono::steady_clock::now();
    return OK;
}
CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }
CUresult cuEventSynchronize(void*) { return OK; }
CUresult cuEventQuery(void*) { return OK; }
CUresult cuEventElapsedTime(float* ms, void* a, void* b) {
    const auto d = static_cast<Event*>(b)->at - static_cast<Event*>(a)->at;
    *ms = std::chrono::duration<float, std::milli>(d).count();
    return OK;
}
CUresult cuEventElapsedTime_v2(float* ms, void* a, void* b) { return cuEventElapsedTime(ms, a, b); }

CUresult cuGetErrorName(CUresult r, const char** s) {
    switch (r) {
        case OK: *s = "CUDA_SUCCESS"; break;
        case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; break;
        case OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; break;
        case INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; break;
        case NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; break;
        case LAUNCH_OUT_OF_RESOURCES: *s = "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"; break;
        default: *s = "CUDA_ERROR_UNKNOWN"; break;
    }
    return OK;
}
CUresult cuGetErrorString(CUresult r, const char** s) { return cuGetErrorName(r, s); }

}  // extern "C"
