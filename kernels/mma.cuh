// Tensor-core products (mma.sync) behind one small device function per fragment shape, and the
// operand conversions they need. The CPU emulation (kernels/emu/cuda_emu.h) defines the same
// functions over a warp exchange, with the fragment layouts of the PTX ISA ("Matrix Fragments
// for mma.m16n8k8" and "for mma.m16n8k16 with floating point type"), so every kernel that uses
// them also runs there; tests/parity.rs compares both against a scalar product
// (kernels/mma_check.cu).
//
// Fragments, for the lane of a warp with g = lane / 4 (its group) and t = lane % 4:
//   m16n8k8, tf32:  A 16×8 (row)  a0 (g, t)  a1 (g+8, t)  a2 (g, t+4)  a3 (g+8, t+4)
//                   B 8×8  (col)  b0 (t, g)  b1 (t+4, g)                 [row = k, col = n]
//   m16n8k16, bf16: A 16×16       a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//                   B 16×8        b0 (2t..2t+1, g)  b1 (2t+8..2t+9, g)
//                   (each register two bf16, the lower column / row in the low half)
//   C, D 16×8 f32, both shapes:   c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)
#pragma once

#include <stdint.h>

namespace pasa {

#ifndef PASA_EMU_MMA
// d = A·B + c, f32 accumulation, TF32 operands (from to_tf32).
__device__ __forceinline__ void mma_tf32_16x8x8(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
}

// d = A·B + c, f32 accumulation, bf16 operands (two per register, from pack_bf16).
__device__ __forceinline__ void mma_bf16_16x8x16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                 const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
}

// x rounded to TF32 (10 mantissa bits, nearest, ties away from zero), as the register an mma
// operand wants.
__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

// Two floats as bf16 (nearest even), `lo` in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
#endif

// The TF32 value of to_tf32's register, as a float.
__device__ __forceinline__ float tf32_value(uint32_t r) { return __uint_as_float(r); }

// x = hi + lo with both TF32: the split that lets three TF32 products (hi·hi + hi·lo + lo·hi)
// carry about the precision of one f32 product (the lo·lo term is below f32's rounding).
__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
    hi = to_tf32(x);
    lo = to_tf32(x - tf32_value(hi));
}

// acc += A·B in f32 through TF32 tensor cores. SPLIT (the fp32 mode): operands given as
// hi + lo, three products, the small ones first so that they are not lost against the large
// one; otherwise one product of the hi parts (the tf32 mode; lo unused).
template <bool SPLIT>
__device__ __forceinline__ void mma_f32_16x8x8(float acc[4], const uint32_t ah[4], const uint32_t al[4],
                                               const uint32_t bh[2], const uint32_t bl[2]) {
    if (SPLIT) {
        mma_tf32_16x8x8(acc, al, bh, acc);
        mma_tf32_16x8x8(acc, ah, bl, acc);
    }
    mma_tf32_16x8x8(acc, ah, bh, acc);
}

// An operand of mma_f32_16x8x8: its TF32 hi part and, when SPLIT, its lo part.
template <bool SPLIT>
__device__ __forceinline__ void tf32_operand(float x, uint32_t& hi, uint32_t& lo) {
    if (SPLIT) {
        split_tf32(x, hi, lo);
    } else {
        hi = to_tf32(x);
        lo = 0;
    }
}

}  // namespace pasa
