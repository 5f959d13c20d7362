// Asynchronous copies from global to shared memory (cp.async, sm_80+), so that the next tile
// loads while the current one is computed on. The CPU emulation (kernels/emu/cuda_emu.h)
// defines the same functions: a copy lands only when its group is waited for, so a read
// before the wait sees the old contents (the previous tile, or the NaN poison) and fails the
// parity tests.
//
// Use: cp_async_f32 per element, cp_async_commit() to close a group, cp_async_wait<N>() to
// wait until at most N of this thread's groups are in flight, then __syncthreads() so that
// every thread's copies are visible to the block.
#pragma once

#ifndef PASA_EMU_ASYNC
namespace pasa {

// *dst = inside ? *src : 0, asynchronously (4 bytes; src is not read when !inside).
__device__ __forceinline__ void cp_async_f32(float* dst, const float* src, bool inside) {
    const unsigned dst_shared = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst_shared), "l"(src),
                 "r"(inside ? 4 : 0)
                 : "memory");
}

// Closes this thread's current group of copies.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace pasa
#endif
