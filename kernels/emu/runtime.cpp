// The CPU emulation's execution engine: runs one kernel launch block after block, each block as
// blockDim fibers (one per CUDA thread) on the calling OS thread, switching at __syncthreads and
// at warp shuffles. Barriers are exact: a fiber waits until every thread of its block (every lane
// of its warp, for a shuffle) has arrived; a barrier that can never complete (a __syncthreads
// some threads skip, a shuffle some lanes never reach) stops the process with the kernel, the
// block and the state of every thread, as does a memory fault inside a kernel.
#include "runtime.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emu.h"
#include "registry.h"

// ── Context switch ───────────────────────────────────────────────────────────────────────────
// x86-64 System V: save the callee-saved registers on the old stack, switch stacks, restore.
// MXCSR and the x87 control word are left alone: nothing here changes rounding or exception
// modes. (glibc's swapcontext also saves the signal mask with a system call per switch, which
// costs more than the kernels' arithmetic.)
extern "C" void emu_ctx_switch(void** save_sp, void* new_sp);
#if defined(__x86_64__)
asm(R"(
.text
.globl emu_ctx_switch
.type emu_ctx_switch,@function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size emu_ctx_switch, .-emu_ctx_switch
.section .note.GNU-stack,"",@progbits
.text
)");
#else
#error "the CUDA emulation's context switch is written for x86-64"
#endif

namespace emu {
namespace {

constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t PAGE = 4096;

enum class State { Ready, AtSync, AtShfl, Done };

struct Fiber {
    void* sp = nullptr;
    char* stack = nullptr;  // STACK_BYTES plus a guard page below
    emu_uint3 tid{};
    State state = State::Ready;
    // the pending shuffle
    unsigned mask = 0;
    uint32_t value = 0, result = 0;
    int arg = 0, mode = 0, width = 32;
    // the pending warp_collective (mode WARP_OP): the operation, this lane's words in and out
    WarpOp op = nullptr;
    const uint32_t* op_in = nullptr;
    uint32_t* op_out = nullptr;
    // cp.async: queued copies in issue order, and where each committed group ends in the queue
    struct Copy {
        void* dst;
        const void* src;
        int bytes, src_bytes;
    };
    std::vector<Copy> copies;
    std::vector<size_t> group_ends;
};

// A warp_collective waits like a shuffle, with a mode of its own.
constexpr int WARP_OP = 100;

struct Launch {
    const char* kernel = nullptr;
    Invoke invoke = nullptr;
    void** params = nullptr;
    void* smem = nullptr;
    size_t smem_bytes = 0;
};

struct Scheduler {
    void* sched_sp = nullptr;
    Fiber* cur = nullptr;
    std::vector<Fiber> fibers;  // grows to the largest block seen; the first `n` run
    size_t n = 0;
    Launch launch;
};

// The one scheduler: launches are serialised (launch() holds launch_mu), so that __shared__
// variables, which the emulation makes plain statics, are one copy per block even when several
// OS threads (tests running in parallel) launch at once. No thread-local state: fibers read it
// on every threadIdx, barrier and shuffle. Fiber stacks are mapped once and live as long as the
// process.
Scheduler S;
std::mutex launch_mu;

const char* state_name(State s) {
    switch (s) {
        case State::Ready: return "ready";
        case State::AtSync: return "at __syncthreads";
        case State::AtShfl: return "at a shuffle";
        case State::Done: return "exited";
    }
    return "?";
}

[[noreturn]] void fail_block(const char* why) {
    std::fprintf(stderr, "emu: kernel %s, block (%u,%u,%u): %s\n", S.launch.kernel ? S.launch.kernel : "?",
                 block_idx.x, block_idx.y, block_idx.z, why);
    const size_t n = S.n;
    for (size_t i = 0; i < n; i += 32) {
        std::fprintf(stderr, "emu:   warp %zu:", i / 32);
        for (size_t t = i; t < n && t < i + 32; ++t) std::fprintf(stderr, " %s", state_name(S.fibers[t].state));
        std::fprintf(stderr, "\n");
    }
    std::abort();
}

void fiber_entry() {
    S.launch.invoke(S.launch.params);
    S.cur->state = State::Done;
    Fiber* self = S.cur;
    emu_ctx_switch(&self->sp, S.sched_sp);
    std::abort();  // a finished fiber is never resumed
}

char* map_stack() {
    void* p = mmap(nullptr, STACK_BYTES + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) trap("cannot map a fiber stack");
    mprotect(p, PAGE, PROT_NONE);  // overflow faults instead of corrupting the next stack
    return static_cast<char*>(p);
}

void prepare(Fiber& f) {
    if (!f.stack) f.stack = map_stack();
    // Initial frame, as emu_ctx_switch leaves one: r15..r12, rbx, rbp, return address.
    // The return address slot sits at a 16-byte boundary so fiber_entry starts with rsp ≡ 8
    // (mod 16), as after a call.
    uintptr_t top = reinterpret_cast<uintptr_t>(f.stack + PAGE + STACK_BYTES);
    top &= ~uintptr_t(15);
    uint64_t* ret = reinterpret_cast<uint64_t*>(top - 16);
    *ret = reinterpret_cast<uint64_t>(&fiber_entry);
    uint64_t* sp = ret - 6;
    std::memset(sp, 0, 6 * sizeof(uint64_t));
    f.sp = sp;
    f.state = State::Ready;
    f.copies.clear();  // a block's cp.async copies never waited for are dropped
    f.group_ends.clear();
}

void block_wait(State s) {
    Fiber* self = S.cur;
    self->state = s;
    emu_ctx_switch(&self->sp, S.sched_sp);
}

// Complete the shuffle of warp [lo, hi) when all its lanes wait at one; returns whether it did.
bool resolve_shuffle(size_t lo, size_t hi) {
    bool any = false;
    for (size_t t = lo; t < hi; ++t) {
        if (S.fibers[t].state == State::AtShfl) any = true;
        else if (S.fibers[t].state == State::Ready) return false;
    }
    if (!any) return false;
    for (size_t t = lo; t < hi; ++t) {
        if (S.fibers[t].state != State::AtShfl)
            fail_block("a shuffle that not every lane of the warp reaches (the others exited or wait at "
                       "__syncthreads)");
    }
    const Fiber& first = S.fibers[lo];
    const int lanes = (int)(hi - lo);
    for (size_t t = lo; t < hi; ++t) {
        const Fiber& f = S.fibers[t];
        if (f.mask != first.mask || f.mode != first.mode || f.width != first.width)
            fail_block("the lanes of a warp disagree on a shuffle's mask, kind or width");
        const unsigned need = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
        if ((f.mask & need) != need)
            fail_block("a shuffle with a partial lane mask (not emulated)");
    }
    if (first.mode == WARP_OP) {
        if (lanes != 32) fail_block("a warp-wide operation (mma) in a warp of fewer than 32 threads");
        const uint32_t* in[32];
        uint32_t* out[32];
        for (size_t t = lo; t < hi; ++t) {
            if (S.fibers[t].op != first.op)
                fail_block("the lanes of a warp are at different warp-wide operations (mma shapes)");
            in[t - lo] = S.fibers[t].op_in;
            out[t - lo] = S.fibers[t].op_out;
        }
        first.op(in, out);
        for (size_t t = lo; t < hi; ++t) S.fibers[t].state = State::Ready;
        return true;
    }
    for (size_t t = lo; t < hi; ++t) {
        Fiber& f = S.fibers[t];
        const int lane = (int)(t - lo), w = f.width;
        if (w <= 0 || w > 32 || (w & (w - 1)) != 0) fail_block("shuffle width not a power of two ≤ 32");
        const int seg = lane & ~(w - 1);
        int src = lane;
        switch (f.mode) {
            case SHFL_IDX: src = seg + (f.arg & (w - 1)); break;
            case SHFL_XOR: src = lane ^ f.arg; if (src < seg || src >= seg + w) src = lane; break;
            case SHFL_DOWN: src = lane + f.arg; if (src >= seg + w) src = lane; break;
            case SHFL_UP: src = lane - f.arg; if (src < seg) src = lane; break;
        }
        if (src >= lanes) fail_block("a shuffle reads a lane that does not exist in this block");
        f.result = S.fibers[lo + src].value;
    }
    for (size_t t = lo; t < hi; ++t) S.fibers[t].state = State::Ready;
    return true;
}

// One block. Warps run one at a time, each as far as it can go (its shuffles resolved as it
// reaches them) before the next starts, and lanes run one after another between shuffles: the
// most unfavourable order for a missing barrier, so a read of shared memory that another warp
// (or lane) has not yet written sees the NaN poison or a stale value. Even blocks run warps
// first to last and lanes in order, odd blocks the reverse, so a barrier missing in either
// direction shows.
void run_block(size_t nthreads, bool reverse) {
    Fiber* fibers = S.fibers.data();
    for (size_t t = 0; t < nthreads; ++t) prepare(fibers[t]);
    const size_t warps = (nthreads + 31) / 32;
    for (;;) {
        for (size_t wi = 0; wi < warps; ++wi) {
            const size_t w = reverse ? warps - 1 - wi : wi;
            const size_t lo = w * 32, hi = std::min(lo + 32, nthreads);
            do {
                for (size_t li = lo; li < hi; ++li) {
                    const size_t t = reverse ? hi - 1 - (li - lo) : li;
                    if (fibers[t].state != State::Ready) continue;
                    S.cur = &fibers[t];
                    emu_ctx_switch(&S.sched_sp, fibers[t].sp);
                }
                S.cur = nullptr;
            } while (resolve_shuffle(lo, hi));
        }
        size_t done = 0, at_sync = 0;
        for (size_t t = 0; t < nthreads; ++t) {
            done += fibers[t].state == State::Done;
            at_sync += fibers[t].state == State::AtSync;
        }
        if (done == nthreads) return;
        if (at_sync + done != nthreads) fail_block("deadlock: no thread can go on");
        if (done > 0) fail_block("__syncthreads reached by some threads after others exited");
        for (size_t t = 0; t < nthreads; ++t) fibers[t].state = State::Ready;
    }
}

// Memory faults inside a kernel name the kernel, block and thread before the process dies.
void on_fault(int sig, siginfo_t* info, void*) {
    if (S.launch.kernel && S.cur) {
        char buf[256];
        const int len = std::snprintf(buf, sizeof buf,
                                      "emu: memory fault (signal %d) at address %p in kernel %s, block "
                                      "(%u,%u,%u), thread (%u,%u,%u)\n",
                                      sig, info->si_addr, S.launch.kernel, block_idx.x, block_idx.y,
                                      block_idx.z, S.cur->tid.x, S.cur->tid.y, S.cur->tid.z);
        if (len > 0) (void)!write(2, buf, (size_t)len);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_fault_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
        sigaction(SIGSEGV, &sa, nullptr);
        sigaction(SIGBUS, &sa, nullptr);
    });
}

struct KernelInfo {
    Invoke invoke;
    int params;
    const size_t* sizes;
};

std::map<std::string, KernelInfo>& registry() {
    static std::map<std::string, KernelInfo> r;
    return r;
}

}  // namespace

emu_uint3 block_idx, block_dim, grid_dim;

const emu_uint3& thread_idx() { return S.cur->tid; }

void syncthreads() { block_wait(State::AtSync); }

uint32_t shfl(unsigned mask, uint32_t value, int arg, int mode, int width) {
    Fiber* f = S.cur;
    f->mask = mask;
    f->value = value;
    f->arg = arg;
    f->mode = mode;
    f->width = width;
    block_wait(State::AtShfl);
    return f->result;
}

void warp_collective(unsigned mask, WarpOp op, const uint32_t* in, uint32_t* out) {
    Fiber* f = S.cur;
    f->mask = mask;
    f->mode = WARP_OP;
    f->width = 32;
    f->op = op;
    f->op_in = in;
    f->op_out = out;
    block_wait(State::AtShfl);
}

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
    S.cur->copies.push_back({dst, src, bytes, src_bytes});
}

void cp_async_commit() { S.cur->group_ends.push_back(S.cur->copies.size()); }

void cp_async_wait(int n) {
    Fiber* f = S.cur;
    if ((int)f->group_ends.size() <= n) return;
    const size_t groups = f->group_ends.size() - (size_t)n, end = f->group_ends[groups - 1];
    for (size_t i = 0; i < end; ++i) {
        const auto& c = f->copies[i];
        std::memset(c.dst, 0, (size_t)c.bytes);
        if (c.src_bytes > 0) std::memcpy(c.dst, c.src, (size_t)c.src_bytes);
    }
    f->copies.erase(f->copies.begin(), f->copies.begin() + (long)end);
    f->group_ends.erase(f->group_ends.begin(), f->group_ends.begin() + (long)groups);
    for (auto& e : f->group_ends) e -= end;
}

void* dynamic_smem() {
    if (S.launch.smem_bytes == 0) trap("the kernel uses dynamic shared memory but was launched with 0 bytes");
    return S.launch.smem;
}

void trap(const char* what) {
    const char* kernel = S.launch.kernel ? S.launch.kernel : "none";
    std::fprintf(stderr, "emu: %s (kernel %s)\n", what, kernel);
    std::abort();
}

void register_kernel(const char* name, Invoke invoke, int params, const size_t* sizes) {
    registry()[name] = KernelInfo{invoke, params, sizes};
}

const char* find_kernel(const char* name, Invoke* invoke, int* params, const size_t** sizes) {
    auto it = registry().find(name);
    if (it == registry().end()) return nullptr;
    *invoke = it->second.invoke;
    *params = it->second.params;
    *sizes = it->second.sizes;
    return it->first.c_str();
}

void launch(const char* kernel, Invoke invoke, emu_uint3 grid, emu_uint3 block, size_t smem_bytes, void** params) {
    install_fault_handler();
    std::lock_guard<std::mutex> serial(launch_mu);
    const size_t nthreads = (size_t)block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024) trap("a block of 0 or more than 1024 threads");
    if (S.fibers.size() < nthreads) S.fibers.resize(nthreads);
    S.n = nthreads;
    for (size_t t = 0; t < nthreads; ++t) {
        S.fibers[t].tid = emu_uint3{(unsigned)(t % block.x), (unsigned)((t / block.x) % block.y),
                                    (unsigned)(t / ((size_t)block.x * block.y))};
    }
    void* smem = smem_bytes ? device_alloc(smem_bytes) : nullptr;
    S.launch = Launch{kernel, invoke, params, smem, smem_bytes};
    grid_dim = grid;
    block_dim = block;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                block_idx = emu_uint3{x, y, z};
                if (smem) std::memset(smem, 0xff, smem_bytes);  // NaN: unwritten shared memory shows
                run_block(nthreads, ((x + y + z) & 1) != 0);
            }
    S.launch = Launch{};
    if (smem) device_free(smem);
}

// ── Device memory: each allocation ends at a page boundary followed by an inaccessible page, so
// a read or write past its end faults (and on_fault names the kernel). Allocations are 4-byte
// aligned, which is all the f32 / u32 buffers of these kernels need (the hardware gives 256).
namespace {
std::mutex alloc_mu;
std::map<uintptr_t, std::pair<void*, size_t>>& allocations() {
    static std::map<uintptr_t, std::pair<void*, size_t>> m;
    return m;
}
}  // namespace

void* device_alloc(size_t bytes) {
    const size_t used = (bytes + 3) & ~size_t(3);
    const size_t pages = (used + PAGE - 1) / PAGE + 1;
    void* base = mmap(nullptr, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return nullptr;
    char* guard = static_cast<char*>(base) + (pages - 1) * PAGE;
    mprotect(guard, PAGE, PROT_NONE);
    char* p = guard - used;
    std::memset(p, 0xff, used);  // uninitialised device memory reads as NaN
    std::lock_guard<std::mutex> g(alloc_mu);
    allocations()[reinterpret_cast<uintptr_t>(p)] = {base, pages * PAGE};
    return p;
}

bool device_free(void* p) {
    std::lock_guard<std::mutex> g(alloc_mu);
    auto it = allocations().find(reinterpret_cast<uintptr_t>(p));
    if (it == allocations().end()) return false;
    munmap(it->second.first, it->second.second);
    allocations().erase(it);
    return true;
}

}  // namespace emu
