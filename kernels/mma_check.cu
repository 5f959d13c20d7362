// Known-answer kernels for kernels/mma.cuh: one warp loads A, B and C (row-major f32 in global
// memory) into the fragments of one mma shape, multiplies, and stores D row-major.
// tests/parity.rs compares D with a scalar product of the rounded operands, on the GPU and on
// the emulation, so a wrong fragment layout on either side fails there and not deep inside
// the attention.
//
// LAUNCH CONTRACT (all three): grid (1,1,1), block (32,1,1), no shared memory.
//   mma_check_tf32   (const float* a [16×8], const float* b [8×8], const float* c [16×8], float* d)
//   mma_check_split  the same, with A and B split into TF32 hi + lo and three products
//                    (hi·hi + hi·lo + lo·hi): the attention's fp32 mode
//   mma_check_bf16   (const float* a [16×16], const float* b [16×8], const float* c, float* d)
//   mma_check_bf16_k8  the shapes of mma_check_tf32, bf16 operands (m16n8k8.bf16)

#include "common.cuh"
#include "mma.cuh"

using namespace pasa;

namespace {
// This lane's C / D elements: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1) of a 16×8 matrix.
__device__ __forceinline__ int cd_index(int e) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    return (g + (e >= 2 ? 8 : 0)) * 8 + 2 * t + (e & 1);
}
}  // namespace

extern "C" __global__ void __launch_bounds__(32)
    mma_check_tf32(const float* a, const float* b, const float* c, float* d) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint32_t af[4] = {to_tf32(a[g * 8 + t]), to_tf32(a[(g + 8) * 8 + t]),
                            to_tf32(a[g * 8 + t + 4]), to_tf32(a[(g + 8) * 8 + t + 4])};
    const uint32_t bf[2] = {to_tf32(b[t * 8 + g]), to_tf32(b[(t + 4) * 8 + g])};
    float cf[4], df[4];
    for (int e = 0; e < 4; ++e) cf[e] = c[cd_index(e)];
    mma_tf32_16x8x8(df, af, bf, cf);
    for (int e = 0; e < 4; ++e) d[cd_index(e)] = df[e];
}

extern "C" __global__ void __launch_bounds__(32)
    mma_check_split(const float* a, const float* b, const float* c, float* d) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    // Through the attention's fragment types (mma.cuh): A at (g, t), (g+8, t), (g, t+4),
    // (g+8, t+4), B at (t, g), (t+4, g).
    const auto af = frag_a<PREC_FP32>(a + g * 8 + t, 8, 1);
    const auto bf = frag_b<PREC_FP32>(b[t * 8 + g], b[(t + 4) * 8 + g]);
    float acc[4];
    for (int e = 0; e < 4; ++e) acc[e] = c[cd_index(e)];
    mma(acc, af, bf);
    for (int e = 0; e < 4; ++e) d[cd_index(e)] = acc[e];
}

extern "C" __global__ void __launch_bounds__(32)
    mma_check_bf16(const float* a, const float* b, const float* c, float* d) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint32_t af[4] = {pack_bf16(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]),
                            pack_bf16(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]),
                            pack_bf16(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]),
                            pack_bf16(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9])};
    const uint32_t bf[2] = {pack_bf16(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]),
                            pack_bf16(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g])};
    float cf[4], df[4];
    for (int e = 0; e < 4; ++e) cf[e] = c[cd_index(e)];
    mma_bf16_16x8x16(df, af, bf, cf);
    for (int e = 0; e < 4; ++e) d[cd_index(e)] = df[e];
}

extern "C" __global__ void __launch_bounds__(32)
    mma_check_bf16_k8(const float* a, const float* b, const float* c, float* d) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint32_t af[2] = {pack_bf16(a[g * 8 + 2 * t], a[g * 8 + 2 * t + 1]),
                            pack_bf16(a[(g + 8) * 8 + 2 * t], a[(g + 8) * 8 + 2 * t + 1])};
    const uint32_t bf[1] = {pack_bf16(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g])};
    float cf[4], df[4];
    for (int e = 0; e < 4; ++e) cf[e] = c[cd_index(e)];
    mma_bf16_16x8x8(df, af, bf, cf);
    for (int e = 0; e < 4; ++e) d[cd_index(e)] = df[e];
}
