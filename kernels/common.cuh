// Shared helpers of the pasa kernels: the counter hash (bit-identical to src/rng.rs), warp and
// block reductions, and the index maps of the positional kernels (src/backend/mod.rs).
//
// Conventions shared by every kernel file:
// - all tensors are row-major f32; shaped dimensions (rows, columns, n, heads, dh) are `int`,
//   flat element counts are `size_t` (Rust `usize`), seeds are `unsigned long long` (Rust u64);
// - index arrays (`start`, `ids`, `targets`) are `unsigned int` (Rust u32);
// - no fast math: the CPU backend is the reference and parity tests compare against it.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

namespace pasa {

// ---------------------------------------------------------------------------------------------
// Counter-based randomness. Same arithmetic as src/rng.rs: SplitMix64's finaliser applied to
// seed + idx·φ, with u64 wrapping arithmetic (unsigned overflow in C++ wraps, as in Rust's
// wrapping_* calls), keeping the top 32 bits.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t hash_u32(uint64_t seed, uint64_t idx) {
    uint64_t z = seed + idx * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

// Uniform in [0, 1) with 24 bits: the integer is exact in f32 and the factor is 2^-24, so the
// product is exact and equal to the Rust value bit for bit.
__device__ __forceinline__ float uniform(uint64_t seed, uint64_t idx) {
    return (float)(hash_u32(seed, idx) >> 8) * (1.0f / 16777216.0f);
}

// Dropout keep-decision: kept when the uniform draw is >= p (so p = 0 keeps everything).
__device__ __forceinline__ bool keep(uint64_t seed, uint64_t idx, float p) {
    return uniform(seed, idx) >= p;
}

// ---------------------------------------------------------------------------------------------
// Reductions. Every lane of the warp gets the result (xor butterfly), so callers never need a
// broadcast afterwards.
// ---------------------------------------------------------------------------------------------
constexpr unsigned FULL_MASK = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, o));
    return x;
}

// Block-wide sum for blockDim.x a multiple of 32 (≤ 1024). `scratch` holds ≥ 32 floats of shared
// memory; every thread gets the result. Contains __syncthreads: call from all threads.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    x = warp_sum(x);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < nwarps ? scratch[lane] : 0.0f;
    return warp_sum(x);
}

__device__ __forceinline__ float block_max(float x, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < nwarps ? scratch[lane] : -INFINITY;
    return warp_max(x);
}

// ---------------------------------------------------------------------------------------------
// Positional kernels (U, L): KernelKind of src/backend/mod.rs.
// ---------------------------------------------------------------------------------------------
constexpr int KIND_NONE = 0;
constexpr int KIND_FULL = 1;      // packed by rows: (i, j), j ≤ i, at i(i+1)/2 + j
constexpr int KIND_TOEPLITZ = 2;  // one value per distance: t[i - j]

// Parameters per head for a window of length n (KernelKind::len).
__device__ __forceinline__ size_t kernel_len(int kind, int n) {
    return kind == KIND_FULL ? (size_t)n * (n + 1) / 2 : (kind == KIND_TOEPLITZ ? (size_t)n : 0);
}

// Index of K_ij (j ≤ i) in one head's parameters (KernelKind::index).
__device__ __forceinline__ size_t kernel_index(int kind, int i, int j) {
    return kind == KIND_FULL ? (size_t)i * (i + 1) / 2 + j : (size_t)(i - j);
}

// Value of K_ij: 1 for `none`. `head` points at the head's parameters.
__device__ __forceinline__ float kernel_value(const float* head, int kind, int i, int j) {
    return kind == KIND_NONE ? 1.0f : head[kernel_index(kind, i, j)];
}

// Where head h's parameters start in a kernel (or its gradient): 0 when all heads share one
// (heads_of_kernel == 1) or the kind is `none`.
__device__ __forceinline__ size_t kernel_head_offset(int kind, int heads_of_kernel, int h, int n) {
    return heads_of_kernel == 1 ? 0 : (size_t)h * kernel_len(kind, n);
}

// The parameters of head h: shared by all heads when heads_of_kernel == 1.
__device__ __forceinline__ const float* kernel_head(const float* k, int kind, int heads_of_kernel,
                                                    int h, int n) {
    return k + kernel_head_offset(kind, heads_of_kernel, h, n);
}

// Column-packed lower triangle: element (i, j), j ≤ i, of an n×n lower-triangular matrix at
// j·n − j(j−1)/2 + (i − j). A warp whose lanes run over consecutive rows i of one column j
// touches consecutive addresses, which is how the backward kernels write their per-element
// gradient partials (workspaces); the reduce kernel maps them back to the parameter layouts.
__device__ __forceinline__ size_t tri_col(int n, int i, int j) {
    return (size_t)j * n - (size_t)j * (j - 1) / 2 + (size_t)(i - j);
}

// Counter of the attention dropout draw of probability (b, h, i, j): ((b·H + h)·n + i)·n + j.
__device__ __forceinline__ uint64_t attn_dropout_index(int b, int h, int i, int j, int H, int n) {
    return (((uint64_t)b * H + h) * n + i) * n + j;
}

// 1-D grid-stride loop over `count` elements with a size_t index (the "flat" launch shape).
#define GRID_STRIDE(i, count)                                                              \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (count);            \
         i += (size_t)gridDim.x * blockDim.x)

// The dynamic shared memory of a launch, as an array of `type` named `name`. A macro so that the
// CPU emulation (kernels/emu) can give every block its own poisoned buffer.
#ifndef PASA_DYNAMIC_SMEM
#define PASA_DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#endif

// ceil(a / b) for positive ints.
__host__ __device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace pasa
