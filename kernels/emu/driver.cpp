// The fake libcuda of the CPU emulation: the driver API entry points cudarc calls, with one
// device ("pasa CPU emulation", compute capability 9.0, 4 SMs so grid-stride loops loop).
// Streams run every operation at once on the calling thread (stream order is kept trivially);
// device memory is host memory (runtime.cpp's guarded allocations), so a CUdeviceptr is a host
// address the emulated kernels dereference directly. Launches are checked the way the hardware
// checks them: block size, grid limits, dynamic shared memory against the opt-in attribute.
//
// Stream capture (CUDA graphs): while a stream captures, each launch, copy and memset issued to
// it (and each cuBLAS call, through emu_stream_enqueue) is recorded by value instead of run, and
// cuGraphLaunch replays the instantiated graph's operations in order. The capture rules the
// driver enforces are enforced here, stricter where the driver's behaviour is subtle: a
// synchronising call during capture (stream or context synchronize, a synchronous copy)
// invalidates the capture, as does an allocation or free on the capturing stream (graph memory
// nodes are not emulated: a captured step must take its buffers from a pool) or a host copy to
// or from pageable memory (a captured copy must use pinned memory, cuMemHostAlloc, whose
// contents the replay reads or writes when it runs).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

namespace {
constexpr CUresult OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_HANDLE = 400, ILLEGAL_STATE = 401,
                   NOT_FOUND = 500, LAUNCH_OUT_OF_RESOURCES = 701, CAPTURE_UNSUPPORTED = 900,
                   CAPTURE_INVALIDATED = 901, CAPTURE_IMPLICIT = 906, CAPTURED_EVENT = 907,
                   CAPTURE_WRONG_THREAD = 908;
constexpr int SMS = 4;
constexpr size_t TOTAL_MEM = size_t(16) << 30;
constexpr int SMEM_DEFAULT = 48 * 1024, SMEM_OPTIN = 227 * 1024;
constexpr size_t SMEM_PER_SM = 228 * 1024, SMEM_RESERVED_PER_BLOCK = 1024;  // an H100's

struct Context {
    int device = 0;
} the_context;

struct Module {
    std::string ptx;
};

struct Function {
    const char* name;
    emu::Invoke invoke;
    int params;
    const size_t* sizes;  // of each parameter
    int max_dynamic_smem = SMEM_DEFAULT;
};

struct Event {
    std::chrono::steady_clock::time_point at;
    // Last recorded in a capturing stream: it then stands for a point inside the graph, and the
    // driver refuses to query, wait for or time it (CUDA_ERROR_CAPTURED_EVENT).
    bool captured = false;
};

// One operation of a captured graph, held by value: a kernel launch with a copy of its
// arguments, a copy, a memset, or a host call (the emulated cuBLAS's GEMMs).
struct Node {
    enum Kind { KERNEL, COPY, SET8, SET32, HOST } kind;
    const Function* fn = nullptr;
    emu_uint3 grid{}, block{};
    unsigned smem = 0;
    std::vector<std::max_align_t> args;  // the arguments' bytes, each at offsets[i]
    std::vector<size_t> offsets;
    void* dst = nullptr;
    const void* src = nullptr;
    size_t count = 0;  // bytes (copy) or elements (memset)
    unsigned value = 0;
    void (*call)(void*) = nullptr;
    std::shared_ptr<void> data;  // the host call's argument
};

struct Graph {
    std::vector<Node> nodes;
};
struct GraphExec {
    std::vector<Node> nodes;  // a snapshot of the graph at instantiation, as the driver takes
};

struct Stream {
    Graph* capture = nullptr;  // the graph being captured, while capturing
    bool invalidated = false;  // an error invalidated the capture; cuStreamEndCapture reports it
    int mode = 0;              // CUstreamCaptureMode
    std::thread::id owner;     // the thread that began the capture
    void* last_node = nullptr; // the handle of the last captured node (cuStreamGetCaptureInfo)
};

// A graph node's handle: its index in the graph's (and its instantiations') node list, plus
// one, so that no handle is null.
void* node_handle(size_t index) { return reinterpret_cast<void*>(index + 1); }
size_t node_index(void* handle) { return reinterpret_cast<uintptr_t>(handle) - 1; }

// Appends `n` to the graph `st` is capturing and remembers its handle.
void append(Stream* st, Node n) {
    st->capture->nodes.push_back(std::move(n));
    st->last_node = node_handle(st->capture->nodes.size() - 1);
}

thread_local Context* current = nullptr;
// The stream this thread is capturing (the emulation allows one capture per thread).
thread_local Stream* capturing_here = nullptr;

bool valid_device(CUdevice d) { return d == 0; }

// A created stream, or null for the legacy default stream and the per-thread handles (1, 2).
Stream* stream_of(void* s) { return reinterpret_cast<uintptr_t>(s) <= 2 ? nullptr : static_cast<Stream*>(s); }

// The stream `s` when it is capturing (and the capture is still valid or not: both record).
Stream* capturing(void* s) {
    Stream* st = stream_of(s);
    return st && st->capture ? st : nullptr;
}

// Fails `what` during a capture: invalidates it (cuStreamEndCapture then reports it) and says why
// on stderr, since the driver's error code alone rarely names the call that broke the capture.
CUresult refuse(Stream* st, CUresult code, const char* what) {
    std::fprintf(stderr, "emu: %s during stream capture: not permitted, the capture is invalidated\n", what);
    if (st) st->invalidated = true;
    return code;
}

// Pinned host memory (cuMemHostAlloc / cuMemAllocHost): guarded allocations, by start address.
std::mutex pinned_mu;
std::map<uintptr_t, size_t>& pinned() {
    static std::map<uintptr_t, size_t> m;
    return m;
}
bool is_pinned(const void* p, size_t bytes) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> g(pinned_mu);
    auto it = pinned().upper_bound(a);
    if (it == pinned().begin()) return false;
    --it;
    return a + bytes <= it->first + it->second;
}

void run(const Node& n) {
    switch (n.kind) {
        case Node::KERNEL: {
            std::vector<void*> ptrs(n.offsets.size());
            auto* base = reinterpret_cast<unsigned char*>(const_cast<std::max_align_t*>(n.args.data()));
            for (size_t i = 0; i < ptrs.size(); ++i) ptrs[i] = base + n.offsets[i];
            emu::launch(n.fn->name, n.fn->invoke, n.grid, n.block, n.smem, ptrs.data());
            break;
        }
        case Node::COPY: std::memmove(n.dst, n.src, n.count); break;
        case Node::SET8: std::memset(n.dst, (int)n.value, n.count); break;
        case Node::SET32: {
            auto* q = static_cast<unsigned*>(n.dst);
            for (size_t i = 0; i < n.count; ++i) q[i] = n.value;
            break;
        }
        case Node::HOST: n.call(n.data.get()); break;
    }
}

// Runs `n` now, or appends it to the graph of the capturing stream `s`.
CUresult issue(void* s, Node n) {
    if (Stream* st = capturing(s)) {
        append(st, std::move(n));
    } else {
        run(n);
    }
    return OK;
}

Node copy_node(void* dst, const void* src, size_t bytes) {
    Node n{Node::COPY};
    n.dst = dst;
    n.src = src;
    n.count = bytes;
    return n;
}
Node set_node(Node::Kind kind, CUdeviceptr p, unsigned value, size_t count) {
    Node n{kind};
    n.dst = reinterpret_cast<void*>(p);
    n.value = value;
    n.count = count;
    return n;
}

// A synchronous (legacy-stream) copy or memset on a thread that is capturing: the legacy stream
// would join the capture implicitly, which the driver refuses.
CUresult refuse_sync(const char* what) {
    return capturing_here ? refuse(capturing_here, CAPTURE_IMPLICIT, what) : OK;
}
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
CUresult cuCtxSynchronize() {
    return capturing_here ? refuse(capturing_here, CAPTURE_UNSUPPORTED, "cuCtxSynchronize") : OK;
}

CUresult cuStreamCreate(void** s, unsigned) {
    *s = new Stream;
    return OK;
}
CUresult cuStreamDestroy_v2(void* s) {
    Stream* st = stream_of(s);
    if (!st) return INVALID_HANDLE;
    if (capturing_here == st) capturing_here = nullptr;
    delete st->capture;
    delete st;
    return OK;
}
CUresult cuStreamSynchronize(void* s) {
    Stream* st = capturing(s);
    return st ? refuse(st, CAPTURE_UNSUPPORTED, "cuStreamSynchronize") : OK;
}
CUresult cuStreamQuery(void* s) {
    Stream* st = capturing(s);
    return st ? refuse(st, CAPTURE_UNSUPPORTED, "cuStreamQuery") : OK;
}
// One stream runs everything at once, so there is never anything to wait for (and waiting on an
// event inside a capture adds no node).
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return OK; }

// ── Stream capture and graphs ─────────────────────────────────────────────────────────────────
CUresult cuStreamBeginCapture_v2(void* s, int mode) {
    Stream* st = stream_of(s);
    if (!st) return CAPTURE_UNSUPPORTED;  // the legacy stream cannot capture
    if (st->capture) return ILLEGAL_STATE;
    if (capturing_here) {
        std::fprintf(stderr, "emu: a second concurrent capture on one thread (not emulated)\n");
        return CAPTURE_UNSUPPORTED;
    }
    st->capture = new Graph;
    st->invalidated = false;
    st->mode = mode;
    st->last_node = nullptr;
    st->owner = std::this_thread::get_id();
    capturing_here = st;
    return OK;
}
CUresult cuStreamEndCapture(void* s, void** graph) {
    Stream* st = stream_of(s);
    if (!st || !st->capture) return ILLEGAL_STATE;
    // Only a relaxed capture (mode 2) may end on another thread.
    if (st->mode != 2 && st->owner != std::this_thread::get_id()) return CAPTURE_WRONG_THREAD;
    if (capturing_here == st) capturing_here = nullptr;
    Graph* g = st->capture;
    st->capture = nullptr;
    if (st->invalidated) {
        st->invalidated = false;
        delete g;
        *graph = nullptr;
        return CAPTURE_INVALIDATED;
    }
    *graph = g;
    return OK;
}
// The capture's state and its last node (the dependency the next captured operation gets).
CUresult cuStreamGetCaptureInfo_v3(void* s, int* status, unsigned long long* id, void** graph,
                                   void* const** deps, const void** edges, size_t* count) {
    Stream* st = stream_of(s);
    const bool on = st && st->capture;
    if (status) *status = !on ? 0 : st->invalidated ? 2 : 1;
    if (id) *id = 0;
    if (graph) *graph = on ? st->capture : nullptr;
    if (deps) *deps = on && st->last_node ? &st->last_node : nullptr;
    if (edges) *edges = nullptr;
    if (count) *count = on && st->last_node ? 1 : 0;
    return OK;
}

// CUDA_KERNEL_NODE_PARAMS (v2): the layout of cuda.h.
struct KernelNodeParams {
    void* func;
    unsigned grid[3], block[3], smem;
    void** params;
    void** extra;
    void* kern;
    void* ctx;
};

// Gives kernel node `node` of an instantiated graph new launch arguments (same kernel).
CUresult cuGraphExecKernelNodeSetParams_v2(void* exec, void* node, const KernelNodeParams* p) {
    auto* ge = static_cast<GraphExec*>(exec);
    if (!ge || !p || !node) return INVALID_VALUE;
    const size_t i = node_index(node);
    if (i >= ge->nodes.size() || ge->nodes[i].kind != Node::KERNEL) return INVALID_VALUE;
    Node& n = ge->nodes[i];
    if (p->func != n.fn || p->extra || p->kern) {
        std::fprintf(stderr, "emu: cuGraphExecKernelNodeSetParams: another kernel, `extra` or a CUkernel (not emulated)\n");
        return INVALID_VALUE;
    }
    n.grid = emu_uint3{p->grid[0], p->grid[1], p->grid[2]};
    n.block = emu_uint3{p->block[0], p->block[1], p->block[2]};
    n.smem = p->smem;
    auto* base = reinterpret_cast<unsigned char*>(n.args.data());
    for (int k = 0; k < n.fn->params; ++k) std::memcpy(base + n.offsets[k], p->params[k], n.fn->sizes[k]);
    return OK;
}

CUresult cuStreamIsCapturing(void* s, int* status) {
    Stream* st = stream_of(s);
    *status = !st || !st->capture ? 0 : st->invalidated ? 2 : 1;
    return OK;
}
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
    if (!graph) return INVALID_HANDLE;
    *exec = new GraphExec{static_cast<Graph*>(graph)->nodes};
    return OK;
}
CUresult cuGraphLaunch(void* exec, void* s) {
    if (!exec) return INVALID_HANDLE;
    if (Stream* st = capturing(s)) {
        std::fprintf(stderr, "emu: cuGraphLaunch into a capturing stream (child graphs are not emulated)\n");
        return refuse(st, CAPTURE_UNSUPPORTED, "cuGraphLaunch");
    }
    for (const Node& n : static_cast<GraphExec*>(exec)->nodes) run(n);
    return OK;
}
CUresult cuGraphUpload(void* exec, void*) { return exec ? OK : INVALID_HANDLE; }
CUresult cuGraphExecDestroy(void* exec) {
    delete static_cast<GraphExec*>(exec);
    return OK;
}
CUresult cuGraphDestroy(void* graph) {
    delete static_cast<Graph*>(graph);
    return OK;
}

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
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void* s) {
    if (Stream* st = capturing(s))
        return refuse(st, CAPTURE_UNSUPPORTED, "cuMemAllocAsync on the capturing stream (graph memory nodes are "
                                               "not emulated; take the buffer from a pool before capturing)");
    return cuMemAlloc_v2(p, bytes);
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    return emu::device_free(reinterpret_cast<void*>(p)) ? OK : INVALID_VALUE;
}
CUresult cuMemFreeAsync(CUdeviceptr p, void* s) {
    if (Stream* st = capturing(s))
        return refuse(st, CAPTURE_UNSUPPORTED, "cuMemFreeAsync on the capturing stream (graph memory nodes are "
                                               "not emulated)");
    return cuMemFree_v2(p);
}

// Pinned (page-locked) host memory: guarded host allocations, remembered so that a captured copy
// can check that its host side is pinned. The device sees them at the same address (DEVICEMAP).
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    if (bytes == 0) return INVALID_VALUE;
    void* m = emu::device_alloc(bytes);
    if (!m) return OUT_OF_MEMORY;
    std::lock_guard<std::mutex> g(pinned_mu);
    pinned()[reinterpret_cast<uintptr_t>(m)] = bytes;
    *p = m;
    return OK;
}
CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }
CUresult cuMemFreeHost(void* p) {
    {
        std::lock_guard<std::mutex> g(pinned_mu);
        if (pinned().erase(reinterpret_cast<uintptr_t>(p)) == 0) return INVALID_VALUE;
    }
    return emu::device_free(p) ? OK : INVALID_VALUE;
}
CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* d, void* p, unsigned) {
    if (!is_pinned(p, 1)) return INVALID_VALUE;
    *d = reinterpret_cast<CUdeviceptr>(p);
    return OK;
}

CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void* s) {
    return issue(s, set_node(Node::SET8, p, v, n));
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) {
    if (CUresult r = refuse_sync("cuMemsetD8")) return r;
    return cuMemsetD8Async(p, v, n, nullptr);
}
CUresult cuMemsetD32Async(CUdeviceptr p, unsigned v, size_t n, void* s) {
    return issue(s, set_node(Node::SET32, p, v, n));
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* s) {
    if (Stream* st = capturing(s); st && !is_pinned(src, n))
        return refuse(st, CAPTURE_UNSUPPORTED, "a host-to-device copy from pageable memory (stage it through "
                                               "pinned memory, cuMemHostAlloc)");
    return issue(s, copy_node(reinterpret_cast<void*>(dst), src, n));
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    if (CUresult r = refuse_sync("cuMemcpyHtoD")) return r;
    return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr);
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    if (Stream* st = capturing(s); st && !is_pinned(dst, n))
        return refuse(st, CAPTURE_UNSUPPORTED, "a device-to-host copy into pageable memory (copy into pinned "
                                               "memory, cuMemHostAlloc)");
    return issue(s, copy_node(dst, reinterpret_cast<const void*>(src), n));
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    if (CUresult r = refuse_sync("cuMemcpyDtoH")) return r;
    return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    return issue(s, copy_node(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n));
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    if (CUresult r = refuse_sync("cuMemcpyDtoD")) return r;
    return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr);
}

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
    const size_t* sizes = nullptr;
    const char* stored = emu::find_kernel(name, &invoke, &params, &sizes);
    if (!stored) {
        std::fprintf(stderr, "emu: kernel %s is in the PTX but not in the emulation (rebuild it)\n", name);
        return NOT_FOUND;
    }
    *fn = new Function{stored, invoke, params, sizes};
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
// Resident blocks per SM, from what the emulation knows of a kernel: threads (2 048 per SM, 32
// blocks) and shared memory (an H100's 228 KB per SM, 1 KB of it reserved per block; the
// launch's dynamic bytes within the kernel's opt-in). Registers are not modelled (the CPU
// build of a kernel has none): on the device they can only lower this.
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* n, void* fn, int block, size_t smem,
                                                              unsigned flags) {
    (void)flags;
    auto* f = static_cast<Function*>(fn);
    if (!f || !n || block <= 0 || block > 1024) return INVALID_VALUE;
    int blocks = std::min(2048 / block, 32);
    if ((long long)smem > f->max_dynamic_smem) blocks = 0;
    else blocks = std::min<long long>(blocks, SMEM_PER_SM / (smem + SMEM_RESERVED_PER_BLOCK));
    *n = blocks;
    return OK;
}
CUresult cuFuncGetAttribute(int* v, int attr, void* fn) {
    auto* f = static_cast<Function*>(fn);
    *v = attr == 8 ? f->max_dynamic_smem : attr == 0 ? 1024 : 0;
    return OK;
}

CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void* stream, void** params, void** extra) {
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
    if (Stream* st = capturing(stream)) {
        // Captured by value, as the driver does: the arguments are copied now, so the caller
        // may reuse the memory `params` points to.
        Node n{Node::KERNEL};
        n.fn = f;
        n.grid = emu_uint3{gx, gy, gz};
        n.block = emu_uint3{bx, by, bz};
        n.smem = smem;
        size_t bytes = 0;
        for (int i = 0; i < f->params; ++i) {
            n.offsets.push_back(bytes);
            bytes += (f->sizes[i] + alignof(std::max_align_t) - 1) / alignof(std::max_align_t) *
                     alignof(std::max_align_t);
        }
        n.args.resize(bytes / sizeof(std::max_align_t) + 1);
        auto* base = reinterpret_cast<unsigned char*>(n.args.data());
        for (int i = 0; i < f->params; ++i) std::memcpy(base + n.offsets[i], params[i], f->sizes[i]);
        append(st, std::move(n));
        return OK;
    }
    emu::launch(f->name, f->invoke, emu_uint3{gx, gy, gz}, emu_uint3{bx, by, bz}, smem, params);
    return OK;
}

// For the emulated cuBLAS (cublas.cpp): run `call(data)` now, or, when `stream` is capturing,
// record it as a host node of the graph (which then owns `data`, freed with `release`).
// Returns whether it was recorded; when it was not, the caller still owns `data`.
int emu_stream_enqueue(void* stream, void (*call)(void*), void* data, void (*release)(void*)) {
    Stream* st = capturing(stream);
    if (!st) return 0;
    Node n{Node::HOST};
    n.call = call;
    n.data = std::shared_ptr<void>(data, release);
    append(st, std::move(n));
    return 1;
}

CUresult cuEventCreate(void** e, unsigned) {
    *e = new Event{std::chrono::steady_clock::now()};
    return OK;
}
CUresult cuEventDestroy_v2(void* e) {
    delete static_cast<Event*>(e);
    return OK;
}
// Everything before a record has run when it is made, so its time is the time of the record.
// Recorded in a capturing stream, an event marks a point of the graph instead (see Event).
CUresult cuEventRecord(void* e, void* s) {
    auto* ev = static_cast<Event*>(e);
    ev->captured = capturing(s) != nullptr;
    if (!ev->captured) ev->at = std::chrono::steady_clock::now();
    return OK;
}
CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }
CUresult cuEventSynchronize(void* e) { return static_cast<Event*>(e)->captured ? CAPTURED_EVENT : OK; }
CUresult cuEventQuery(void* e) { return static_cast<Event*>(e)->captured ? CAPTURED_EVENT : OK; }
CUresult cuEventElapsedTime(float* ms, void* a, void* b) {
    if (static_cast<Event*>(a)->captured || static_cast<Event*>(b)->captured) return CAPTURED_EVENT;
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
        case ILLEGAL_STATE: *s = "CUDA_ERROR_ILLEGAL_STATE"; break;
        case CAPTURE_UNSUPPORTED: *s = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"; break;
        case CAPTURE_INVALIDATED: *s = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"; break;
        case CAPTURE_IMPLICIT: *s = "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT"; break;
        case CAPTURED_EVENT: *s = "CUDA_ERROR_CAPTURED_EVENT"; break;
        case CAPTURE_WRONG_THREAD: *s = "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD"; break;
        default: *s = "CUDA_ERROR_UNKNOWN"; break;
    }
    return OK;
}
CUresult cuGetErrorString(CUresult r, const char** s) { return cuGetErrorName(r, s); }

}  // extern "C"
