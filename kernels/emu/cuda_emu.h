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
// A warp-wide operation (a barrier over the warp's lanes, like a shuffle): every lane deposits
// its input words and, once all 32 have arrived, `op` runs once with every lane's inputs and
// outputs (in[l], out[l] for lane l). The warp must be whole and every lane pass the same op.
using WarpOp = void (*)(const uint32_t* const* in, uint32_t* const* out);
void warp_collective(unsigned mask, WarpOp op, const uint32_t* in, uint32_t* out);
// cp.async of the calling thread: a copy of `bytes` (zeros where src_bytes < bytes) queued in
// its open group; commit closes the group; wait(n) performs the copies of every group but the
// n newest. Copies never waited for are dropped when the thread exits.
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int n);

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

// CUDA's vector type for 8-byte loads and stores (LDS.64 / LDG.64 on the device).
struct alignas(8) float2 {
    float x, y;
};

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

inline float __uint_as_float(uint32_t u) {
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}
inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
}
inline int __float_as_int(float f) {
    int i;
    __builtin_memcpy(&i, &f, 4);
    return i;
}

// ── Tensor-core products (kernels/mma.cuh) ───────────────────────────────────────────────────
// The same functions as the device's, as a warp collective: every lane deposits its fragment
// registers; once the warp is complete, A and B are rebuilt with the PTX ISA's fragment layouts
// and every lane's four elements of D computed. Products of TF32 or bf16 operands are exact in f64; the sum over k and c is
// taken in f64 and rounded once (the hardware's order of additions is unspecified; the parity
// bounds cover the difference).
#define PASA_EMU_MMA
namespace pasa {
// cvt.rna.tf32.f32: 10 mantissa bits, nearest, ties away from zero; Inf and NaN kept.
inline uint32_t to_tf32(float x) {
    const uint32_t u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) ? 0x7fffffffu : u;
    return (u + 0x1000u) & 0xffffe000u;
}
// cvt.rn.bf16x2.f32: nearest even, `lo` in the low half; NaN → canonical NaN.
inline uint32_t emu_bf16(float x) {
    const uint32_t u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return 0x7fffu;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
inline uint32_t pack_bf16(float lo, float hi) { return emu_bf16(lo) | (emu_bf16(hi) << 16); }

namespace emu_mma {
// The value a TF32 operand register holds: the hardware reads its top 19 bits.
inline double tf32_operand(uint32_t r) { return (double)__uint_as_float(r & 0xffffe000u); }
inline double bf16_operand(uint32_t r, int half) {
    return (double)__uint_as_float(((r >> (16 * half)) & 0xffffu) << 16);
}
// Every lane's D from full A (16×K), B (K×8) and the lanes' c (words 6..9 of their inputs).
template <int K>
inline void finish(const double (&A)[16][K], const double (&B)[K][8], const uint32_t* const* in,
                   uint32_t* const* out) {
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        for (int e = 0; e < 4; ++e) {
            const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
            double s = (double)__uint_as_float(in[l][6 + e]);
            for (int k = 0; k < K; ++k) s += A[row][k] * B[k][col];
            out[l][e] = __float_as_uint((float)s);
        }
    }
}
// Inputs per lane: a0..a3, b0, b1, c0..c3.
inline void tf32_op(const uint32_t* const* in, uint32_t* const* out) {
    double A[16][8], B[8][8];
    for (int l = 0; l < 32; ++l) {
        const uint32_t* r = in[l];
        const int g = l >> 2, t = l & 3;
        A[g][t] = tf32_operand(r[0]);
        A[g + 8][t] = tf32_operand(r[1]);
        A[g][t + 4] = tf32_operand(r[2]);
        A[g + 8][t + 4] = tf32_operand(r[3]);
        B[t][g] = tf32_operand(r[4]);
        B[t + 4][g] = tf32_operand(r[5]);
    }
    finish<8>(A, B, in, out);
}
// m16n8k8, bf16: a0, a1 and b0 in the words of a0, a1 and b0 (the others unused).
inline void bf16_k8_op(const uint32_t* const* in, uint32_t* const* out) {
    double A[16][8], B[8][8];
    for (int l = 0; l < 32; ++l) {
        const uint32_t* r = in[l];
        const int g = l >> 2, t = l & 3;
        for (int h = 0; h < 2; ++h) {
            A[g][2 * t + h] = bf16_operand(r[0], h);
            A[g + 8][2 * t + h] = bf16_operand(r[1], h);
            B[2 * t + h][g] = bf16_operand(r[4], h);
        }
    }
    finish<8>(A, B, in, out);
}
inline void bf16_op(const uint32_t* const* in, uint32_t* const* out) {
    double A[16][16], B[16][8];
    for (int l = 0; l < 32; ++l) {
        const uint32_t* r = in[l];
        const int g = l >> 2, t = l & 3;
        for (int h = 0; h < 2; ++h) {
            A[g][2 * t + h] = bf16_operand(r[0], h);
            A[g + 8][2 * t + h] = bf16_operand(r[1], h);
            A[g][2 * t + 8 + h] = bf16_operand(r[2], h);
            A[g + 8][2 * t + 8 + h] = bf16_operand(r[3], h);
            B[2 * t + h][g] = bf16_operand(r[4], h);
            B[2 * t + 8 + h][g] = bf16_operand(r[5], h);
        }
    }
    finish<16>(A, B, in, out);
}
inline void run(emu::WarpOp op, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    const uint32_t in[10] = {a[0], a[1], a[2], a[3], b[0], b[1], __float_as_uint(c[0]),
                             __float_as_uint(c[1]), __float_as_uint(c[2]), __float_as_uint(c[3])};
    uint32_t out[4];
    emu::warp_collective(0xffffffffu, op, in, out);
    for (int e = 0; e < 4; ++e) d[e] = __uint_as_float(out[e]);
}
}  // namespace emu_mma

inline void mma_tf32_16x8x8(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    emu_mma::run(emu_mma::tf32_op, d, a, b, c);
}
inline void mma_bf16_16x8x8(float d[4], const uint32_t a[2], const uint32_t b[1], const float c[4]) {
    const uint32_t a4[4] = {a[0], a[1], 0, 0}, b2[2] = {b[0], 0};
    emu_mma::run(emu_mma::bf16_k8_op, d, a4, b2, c);
}
inline void mma_bf16_16x8x16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    emu_mma::run(emu_mma::bf16_op, d, a, b, c);
}
}  // namespace pasa

// ── Asynchronous copies (kernels/async_copy.cuh) ────────────────────────────────────────────
#define PASA_EMU_ASYNC
namespace pasa {
inline void cp_async_f32(float* dst, const float* src, bool inside) {
    emu::cp_async(dst, src, 4, inside ? 4 : 0);
}
inline void cp_async_commit() { emu::cp_async_commit(); }
template <int N>
inline void cp_async_wait() {
    emu::cp_async_wait(N);
}
}  // namespace pasa
