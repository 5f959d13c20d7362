// Parameter structs of the kernels whose argument lists were too long to keep straight by
// position: each such kernel takes one of these by value as its only parameter.
//
// MIRRORED IN RUST: src/backend/cuda/params.rs declares the same structs (#[repr(C)]), and
// both files assert the same sizes and field offsets (static_assert here, const assert! there).
// The two must change together; a field added, moved or retyped on one side only fails the
// build of that side (nvcc, the CPU emulation's g++ or rustc) instead of scrambling arguments.
//
// Layout rules, so the structs mean the same on the host (x86-64 / aarch64) and the device:
// pointers are 8 bytes (Rust: CUdeviceptr, a u64 device address; null = 0), `int` and `float`
// 4, `unsigned long long` and `size_t` 8; fields are ordered so that no padding falls between
// them (only at the end of MixBwdParams and AdamParams, asserted too).
#pragma once

#include <stddef.h>

namespace pasa {

// Shape and options of one fused attention call (AttnShape in src/backend/shape.rs).
struct AttnDims {
    unsigned long long seed;  // dropout seed; element (b,h,i,j) uses ((b·H+h)·n+i)·n+j
    int batch, n, heads, dh;
    float scale;              // 1/√dh, computed once on the host so both backends agree
    int score_kind;           // 0 content, 1 positional
    int u_kind, u_heads;      // KIND_* of common.cuh; heads of U (1 = shared)
    int l_kind, l_heads;
    float dropout;            // probability of dropping an attention probability (0 = off)
    int groups;               // batch groups G of the backward (the forward ignores it)
};

// The inputs every attention kernel reads; null where the configuration has none.
struct AttnIn {
    const float* q;
    const float* k;
    const float* v;
    const float* pos;
    const float* u;
    const float* l;
    const unsigned* start;
};

struct AttnFwdParams {
    AttnIn inputs;
    float* y;
    float* lse;
    AttnDims dims;
};

struct AttnBwdParams {
    AttnIn inputs;
    const float* dy;
    const float* lse;
    const float* delta;  // D_i = dy_i·y_i per row, from attn_bwd_preprocess
    float* dq;
    float* dk;
    float* dv;
    float* du;    // kernel gradients in parameter layout, zeroed before the launch (the
    float* dl;    // kernel adds into them with atomics); null when not wanted
    float* dpos;  // [H, n, n]
    AttnDims dims;
};

// Shape of the `mix` reading's V' = L·V (MixShape).
struct MixDims {
    int batch, n, heads, dh;
    int l_kind, l_heads;
};

struct MixFwdParams {
    const float* v;
    const float* l;
    const unsigned* start;
    float* out;
    MixDims dims;
};

struct MixBwdParams {
    const float* v;
    const float* l;
    const unsigned* start;
    const float* dout;
    float* dv;
    float* ws_dl;  // [G][H][n(n+1)/2], zeroed before the launch
    MixDims dims;
    int groups;    // batch groups G
    int pad;       // explicit padding, always 0 (the host compares argument bytes)
};

// One Adam step over `count` elements of the flat buffers (AdamStep).
struct AdamParams {
    float* param;
    const float* grad;
    float* m;
    float* v;
    size_t count;
    float lr, beta1, beta2, eps, weight_decay;
    int step;  // 1-based, for the bias corrections
    float grad_scale;
    int pad;   // explicit padding, always 0 (the host compares argument bytes)
};

// ─── the layout, asserted (the same numbers as src/backend/cuda/params.rs) ───────────────────
#define PASA_AT(T, field, off) static_assert(offsetof(T, field) == (off), #T "." #field " moved")
static_assert(sizeof(AttnDims) == 56, "AttnDims size");
PASA_AT(AttnDims, seed, 0);
PASA_AT(AttnDims, batch, 8);
PASA_AT(AttnDims, n, 12);
PASA_AT(AttnDims, heads, 16);
PASA_AT(AttnDims, dh, 20);
PASA_AT(AttnDims, scale, 24);
PASA_AT(AttnDims, score_kind, 28);
PASA_AT(AttnDims, u_kind, 32);
PASA_AT(AttnDims, u_heads, 36);
PASA_AT(AttnDims, l_kind, 40);
PASA_AT(AttnDims, l_heads, 44);
PASA_AT(AttnDims, dropout, 48);
PASA_AT(AttnDims, groups, 52);

static_assert(sizeof(AttnIn) == 56, "AttnIn size");
PASA_AT(AttnIn, q, 0);
PASA_AT(AttnIn, k, 8);
PASA_AT(AttnIn, v, 16);
PASA_AT(AttnIn, pos, 24);
PASA_AT(AttnIn, u, 32);
PASA_AT(AttnIn, l, 40);
PASA_AT(AttnIn, start, 48);

static_assert(sizeof(AttnFwdParams) == 128, "AttnFwdParams size");
PASA_AT(AttnFwdParams, inputs, 0);
PASA_AT(AttnFwdParams, y, 56);
PASA_AT(AttnFwdParams, lse, 64);
PASA_AT(AttnFwdParams, dims, 72);

static_assert(sizeof(AttnBwdParams) == 184, "AttnBwdParams size");
PASA_AT(AttnBwdParams, inputs, 0);
PASA_AT(AttnBwdParams, dy, 56);
PASA_AT(AttnBwdParams, lse, 64);
PASA_AT(AttnBwdParams, delta, 72);
PASA_AT(AttnBwdParams, dq, 80);
PASA_AT(AttnBwdParams, dk, 88);
PASA_AT(AttnBwdParams, dv, 96);
PASA_AT(AttnBwdParams, du, 104);
PASA_AT(AttnBwdParams, dl, 112);
PASA_AT(AttnBwdParams, dpos, 120);
PASA_AT(AttnBwdParams, dims, 128);

static_assert(sizeof(MixDims) == 24, "MixDims size");
PASA_AT(MixDims, batch, 0);
PASA_AT(MixDims, n, 4);
PASA_AT(MixDims, heads, 8);
PASA_AT(MixDims, dh, 12);
PASA_AT(MixDims, l_kind, 16);
PASA_AT(MixDims, l_heads, 20);

static_assert(sizeof(MixFwdParams) == 56, "MixFwdParams size");
PASA_AT(MixFwdParams, v, 0);
PASA_AT(MixFwdParams, l, 8);
PASA_AT(MixFwdParams, start, 16);
PASA_AT(MixFwdParams, out, 24);
PASA_AT(MixFwdParams, dims, 32);

static_assert(sizeof(MixBwdParams) == 80, "MixBwdParams size (4 bytes of tail padding)");
PASA_AT(MixBwdParams, v, 0);
PASA_AT(MixBwdParams, l, 8);
PASA_AT(MixBwdParams, start, 16);
PASA_AT(MixBwdParams, dout, 24);
PASA_AT(MixBwdParams, dv, 32);
PASA_AT(MixBwdParams, ws_dl, 40);
PASA_AT(MixBwdParams, dims, 48);
PASA_AT(MixBwdParams, groups, 72);
PASA_AT(MixBwdParams, pad, 76);

static_assert(sizeof(AdamParams) == 72, "AdamParams size (4 bytes of tail padding)");
PASA_AT(AdamParams, param, 0);
PASA_AT(AdamParams, grad, 8);
PASA_AT(AdamParams, m, 16);
PASA_AT(AdamParams, v, 24);
PASA_AT(AdamParams, count, 32);
PASA_AT(AdamParams, lr, 40);
PASA_AT(AdamParams, beta1, 44);
PASA_AT(AdamParams, beta2, 48);
PASA_AT(AdamParams, eps, 52);
PASA_AT(AdamParams, weight_decay, 56);
PASA_AT(AdamParams, step, 60);
PASA_AT(AdamParams, grad_scale, 64);
PASA_AT(AdamParams, pad, 68);
#undef PASA_AT

}  // namespace pasa
