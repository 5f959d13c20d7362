// The device side of the CPU emulation of CUDA (see kernels/emu/README.md): what a kernel file
// needs from CUDA, defined for a host C++ compiler. A kernel file compiled as C++ after this
// header runs on the CPU, one fiber per CUDA thread (runtime.cpp), so its indexing, its
// barriers, its shuffles and its launch contract can be tested without a GPU.
//
// Semantics kept: __syncthreads is a block-wide barrier; __shfl_sync / __shfl_xor_sync exchange
// values between the 32 lanes of a warp at a warp barrier (every lane of the mask must arrive);
// __shared__ memory is one copy per block (blocks run one after another, launches one at a
// time); dynamic shared memory is poisoned with NaN before every block. atomicAdd is a plain
// add (fibers never run concurrently).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

struct emu_uint3 {
    unsigned x, y, z;
};

namespace emu {
// The calling fiber's threadIdx (the scheduler points it at the running fiber's).
const emu_uint3& thread_idx();
extern emu_uint3 block_idx, block_dim, grid_dim;
void syncthreads();
// Which lane a shuffle reads: lane `arg` of the segment, lane ^ arg, lane + arg, lane − arg.
enum ShflMode { SHFL_IDX, SHFL_XOR, SHFL_DOWN, SHFL_UP };
// Warp exchange: every lane of the warp deposits `value` and reads the value of the lane `mode`
// and `arg` pick; a barrier over the warp's lanes.
uint32_t shfl(unsigned mask, uint32_t value, int arg, int mode, int width);
void* dynamic_smem();
[[noreturn]] void trap(const char* what);

template <class T>
T shfl_t(unsigned mask, T v, int arg, int mode, int width) {
    static_assert(sizeof(T) == 4, "emu: shuffles of 4-byte values only");
    uint32_t bits;
    __builtin_memcpy(&bits, &v, 4);
    bits = shfl(mask, bits, arg, mode, width);
    T out;
    __builtin_memcpy(&out, &bits, 4);
    return out;
}
}  // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
// One copy per block: blocks run one after another and launches one at a time (runtime.cpp).
#define __shared__ static
#define PASA_DYNAMIC_SMEM(type, name) type* name = static_cast<type*>(emu::dynamic_smem())

#define __syncthreads() emu::syncthreads()

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return emu::shfl_t(mask, v, src, emu::SHFL_IDX, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu::shfl_t(mask, v, lane_mask, emu::SHFL_XOR, width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, int delta, int width = 32) {
    return emu::shfl_t(mask, v, delta, emu::SHFL_DOWN, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, int delta, int width = 32) {
    return emu::shfl_t(mask, v, delta, emu::SHFL_UP, width);
}

// A warp barrier: a shuffle whose value nobody uses.
inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)emu::shfl(mask, 0, 0, emu::SHFL_XOR, 32); }

inline float atomicAdd(float* p, float v) {
    const float old = *p;
    *p = old + v;
    return old;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    const unsigned old = *p;
    *p = old + v;
    return old;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
