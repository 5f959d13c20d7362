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
//   m16n8k8, bf16:  A 16×8 (row)  a0 (g, 2t..2t+1)  a1 (g+8, 2t..2t+1)
//                   B 8×8  (col)  b0 (2t..2t+1, g)
//   m16n8k16, bf16: A 16×16       a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
//                   B 16×8        b0 (2t..2t+1, g)  b1 (2t+8..2t+9, g)
//                   (each register two bf16, the lower column / row in the low half)
//   C, D 16×8 f32, every shape:   c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)
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
__device__ __forceinline__ void mma_bf16_16x8x8(float d[4], const uint32_t a[2], const uint32_t b[1],
                                                const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %8, %9, %10};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(b[0]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
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

// x = hi + lo: the split that lets three TF32 products (hi·hi + hi·lo + lo·hi) carry about the
// precision of one f32 product. hi is x rounded to TF32 (nearest, ties away from zero, as
// cvt.rna: half a TF32 ulp added to the bits, then the 13 low bits cleared); lo = x − hi is
// exact in f32, and its register keeps all 32 bits: the tensor core reads an operand's top 19
// bits, so lo enters truncated to TF32 (|lo| ≤ 2⁻¹¹|x|, so that costs at most 2⁻²¹|x|). Three
// integer and float operations per value where two cvt.rna took nine (each guards Inf and NaN
// with a compare and a select): the guard is not needed, since a NaN x leaves lo NaN (a NaN
// or Inf x gives a NaN product either way) and only |x| ≥ 2¹²⁸·(1 − 2⁻¹²) rounds to Inf, as
// with cvt.rna.
__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
    hi = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
    lo = __float_as_uint(x - tf32_value(hi));
}

// ── The attention's m16n8k8 products in each precision mode ──────────────────────────────────
// The kernels gather, per lane, the values of the TF32 layout: A at (g, t), (g+8, t), (g, t+4),
// (g+8, t+4) and B at (t, g), (t+4, g). A fragment type per mode turns them into operand
// registers, and mma() multiplies:
//   PREC_FP32  split TF32: x = hi + lo, three products (hi·hi + hi·lo + lo·hi), the small
//              ones first so that they are not lost against the large one; about the
//              precision of one f32 product
//   PREC_TF32  one TF32 product (the tf32 mode)
//   PREC_BF16  one bf16 product (m16n8k8.bf16; the bf16 mode): k slots t and t+4 are packed as
//              the hardware's k pair (2t, 2t+1). A contraction over k is unchanged by any
//              bijection of k applied to A and B alike, so the kernels' data movement (and
//              their permuted k order for A operands taken from accumulators) stays as it is.
enum Prec { PREC_FP32, PREC_TF32, PREC_BF16 };

template <Prec P>
struct FragA;
template <Prec P>
struct FragB;

template <>
struct FragA<PREC_FP32> {
    uint32_t hi[4], lo[4];
    __device__ __forceinline__ void load(float x0, float x1, float x2, float x3) {
        split_tf32(x0, hi[0], lo[0]);
        split_tf32(x1, hi[1], lo[1]);
        split_tf32(x2, hi[2], lo[2]);
        split_tf32(x3, hi[3], lo[3]);
    }
};
template <>
struct FragB<PREC_FP32> {
    uint32_t hi[2], lo[2];
    __device__ __forceinline__ void load(float b0, float b1) {
        split_tf32(b0, hi[0], lo[0]);
        split_tf32(b1, hi[1], lo[1]);
    }
};
template <>
struct FragA<PREC_TF32> {
    uint32_t r[4];
    __device__ __forceinline__ void load(float x0, float x1, float x2, float x3) {
        r[0] = to_tf32(x0);
        r[1] = to_tf32(x1);
        r[2] = to_tf32(x2);
        r[3] = to_tf32(x3);
    }
};
template <>
struct FragB<PREC_TF32> {
    uint32_t r[2];
    __device__ __forceinline__ void load(float b0, float b1) {
        r[0] = to_tf32(b0);
        r[1] = to_tf32(b1);
    }
};
template <>
struct FragA<PREC_BF16> {
    uint32_t r[2];
    // Rows g and g+8, each with k slots t (low half) and t+4 (high half).
    __device__ __forceinline__ void load(float x0, float x1, float x2, float x3) {
        r[0] = pack_bf16(x0, x2);
        r[1] = pack_bf16(x1, x3);
    }
};
template <>
struct FragB<PREC_BF16> {
    uint32_t r[1];
    __device__ __forceinline__ void load(float b0, float b1) { r[0] = pack_bf16(b0, b1); }
};

// acc += A·B, f32 accumulation.
__device__ __forceinline__ void mma(float acc[4], const FragA<PREC_FP32>& a, const FragB<PREC_FP32>& b) {
    mma_tf32_16x8x8(acc, a.lo, b.hi, acc);
    mma_tf32_16x8x8(acc, a.hi, b.lo, acc);
    mma_tf32_16x8x8(acc, a.hi, b.hi, acc);
}
__device__ __forceinline__ void mma(float acc[4], const FragA<PREC_TF32>& a, const FragB<PREC_TF32>& b) {
    mma_tf32_16x8x8(acc, a.r, b.r, acc);
}
__device__ __forceinline__ void mma(float acc[4], const FragA<PREC_BF16>& a, const FragB<PREC_BF16>& b) {
    mma_bf16_16x8x8(acc, a.r, b.r, acc);
}

// A from memory: element (row, k) of the lane's fragment at p[row·rs + k·ks] relative to
// (g, t), i.e. x(g, t) = p[0].
template <Prec P>
__device__ __forceinline__ FragA<P> frag_a(const float* p, int rs, int ks) {
    FragA<P> a;
    a.load(p[0], p[8 * rs], p[4 * ks], p[8 * rs + 4 * ks]);
    return a;
}

// A from a C fragment c (cols 2t, 2t+1 of rows g, g+8) with k permuted so that k slot t is
// column 2t and slot t+4 column 2t+1: the lane's own registers, no shuffle.
template <Prec P>
__device__ __forceinline__ FragA<P> frag_a_acc(const float c[4]) {
    FragA<P> a;
    a.load(c[0], c[2], c[1], c[3]);
    return a;
}

// B from its k slots t and t+4 (column g).
template <Prec P>
__device__ __forceinline__ FragB<P> frag_b(float b_t, float b_t4) {
    FragB<P> b;
    b.load(b_t, b_t4);
    return b;
}

}  // namespace pasa
