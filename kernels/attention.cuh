// The fused attention's forward and backward kernels (DESIGN §1–2, the `weight` reading; the
// `mix` reading applies L in attention.cu's mix kernels and calls these with L = none), as
// templates, and the one explicit list of their instantiations. f32 data throughout (the
// products' operands by precision mode: Prec in mma.cuh). Included by attention_fp32.cu,
// attention_tf32.cu and attention_bf16.cu, which each instantiate the list for their
// precision (one PTX module per precision: a run loads only the one it uses), and by
// attention.cu for the shared constants.
//
// Layouts follow AttnShape / MixShape in src/backend/mod.rs:
//   q, k, v, y, dy, dq, dk, dv : [B, n, H·dh], head h owns columns h·dh .. (h+1)·dh   (W = H·dh)
//   pos, dpos                  : [H, n, n], element (h, i, j) at (h·n + i)·n + j, j ≤ i read
//   u, l                       : [u_heads | l_heads, kernel_len(kind, n)], heads == 1 → shared
//   start                      : [B] u32, number of left-padding slots of each window
//   lse, D                     : [B, H, n]
// Enumerations passed as int: score_kind 0 = content (c = q·k·scale), 1 = positional
// (c = pos·scale, q and k unused and may be null); u_kind / l_kind 0 = none, 1 = full,
// 2 = toeplitz (common.cuh). `scale` is passed by the host (1/√dh) so both backends use the same
// f32 value. Dropout on the probabilities: element (b,h,i,j) is kept when
// keep(seed, ((b·H+h)·n+i)·n+j, dropout) and then multiplied by inv = 1/(1−dropout) (computed in
// f32 as 1.0f / (1.0f − dropout)); dropout = 0 disables the draws.
//
// Valid pairs: start[b] ≤ j ≤ i < n. Rows i < start[b] are padding: y = 0, lse = 0, D = 0, and they
// receive no gradient. No atomics anywhere except dq (see attn_bwd).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// COMPILE-TIME SPECIALISATION
//
// attn_fwd_impl / attn_bwd_impl<DH, CONTENT, P, UK, LK, DROP>: head-width bucket, score source,
// precision, U kind, L kind and dropout are template parameters. In a kernel whose UK, LK and
// DROP are fixed, every test of them is a constant and folds away: no kind or dropout branch
// is left in the loops (a kind of none reads no kernel, dropout off draws nothing). UK / LK =
// KIND_ANY and DROP = DROP_ANY take them from p.dims at run time instead (uniform branches):
// the `any` kernel of a bucket, for the configurations the list below does not specialise.
//
// Kernel names: attn_{fwd|bwd}[_pos]_d{DH}_{fp32|tf32|bf16}_{CONFIG}
//   _pos     positional scores (score_kind 1; without it content scores, score_kind 0)
//   DH       bucket 32, 64 or 128: needs dh ≤ DH; the launcher takes the smallest bucket ≥ dh
//   fp32     split TF32 (three products, about f32's rounding); tf32 one TF32 product; bf16 one
//            bf16 product (m16n8k8.bf16)
//   CONFIG   u{K}l{K}_drop | u{K}l{K}_nodrop, K ∈ {n none, f full, t toeplitz}: U, L and
//            dropout compiled in (launch only with those kinds, and dropout > 0 for _drop,
//            = 0 for _nodrop); or `any`: all three read from p.dims
// The list (PASA_ATTN_BUCKET below; mirrored by SPECIALISED in src/backend/cuda/attention.rs,
// and a test holds the two equal): content scores with (U, L) = (none, none) (sasrec, rope),
// (toeplitz, full) (pasa) and (toeplitz, none) (pasa with the `mix` reading); positional
// scores with (none, none) (parec, fparec); each with dropout on and off; and the `any`
// kernels of both score sources. 10 forward and 10 backward kernels per bucket and precision.
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS (the Rust launcher follows these; all blocks are 1-D, blockDim = (128,1,1))
//
// attn_fwd_*
//   grid   (ceil(n / 64), H, B), block 128
//   shared memory: dynamic, bytes = 4·192·(DH + 4) (Q, and K and V double-buffered):
//          d32 27 648, d64 52 224, d128 101 376 → the d64 and d128 kernels need
//          CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES set before launch
//   params (AttnFwdParams p)   by value, params.cuh: p.inputs (q, k, v, pos, u, l, start),
//           p.y, p.lse, p.dims (B, n, H, dh, scale, score_kind, u/l kind and heads, dropout,
//           seed; groups unused)
//   writes every element of y and lse.
//
// attn_bwd_*   (after attn_bwd_preprocess of attention.cu on the same stream)
//   grid   (ceil(n / 64), H, G) with G ∈ [1, B] batch groups chosen by the launcher: block
//          z = g handles batches b = g, g+G, g+2G, … one after the other
//   block  128
//   shared memory: dynamic, bytes = 4·(160·(DH + 4) + 2·16 + 64·24 + 2·79): d32: 29 944 B,
//          d64: 50 424 B, d128: 91 384 B → the d64 and d128 kernels need
//          CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES set before launch
//   params (AttnBwdParams p)   by value, params.cuh: p.inputs as in the forward, p.dy,
//           p.lse, p.delta (D), p.dq, p.dk, p.dv, p.du, p.dl, p.dpos, p.dims with
//           p.dims.groups = G
//   dk, dv: overwritten (every element). dq: accumulated with atomicAdd across key blocks
//   (zeroed by attn_bwd_preprocess); unused and may be null in positional mode (as may q, k).
//   du (needed iff u_kind ≠ none), dl (iff l_kind ≠ none), dpos (iff positional): the
//   gradients in their parameter layouts (U/L: [u_heads | l_heads, kernel_len]; summed over
//   heads when shared; dpos: [H, n, n], j > i left alone), or null; they MUST BE ZEROED before
//   the launch: the kernel adds into them with atomics (reduced on chip first: a Toeplitz
//   kernel per tile diagonal, a full one and dpos per element). Per valid (b, h, i, j):
//     du   += ∂s_ij · c_ij
//     dl   += p_ij · m_ij · e_ij          (m = dropout multiplier, e_ij = dy_i·v_j)
//     dpos += ∂c_ij · scale               (∂c = ∂s·U)
// ─────────────────────────────────────────────────────────────────────────────────────────────
#pragma once

#include "common.cuh"
#include "async_copy.cuh"
#include "mma.cuh"
#include "params.cuh"

using namespace pasa;

namespace {

constexpr int THREADS = 128;  // 4 warps in every attention kernel
// Each kernel declares __launch_bounds__(THREADS, blocks per SM) with the register budget of
// its bucket (FwdMinBlocks, BwdMinBlocks below): ptxas allocates up to 65 536 / (128 · blocks).
constexpr int WARPS = THREADS / 32;
// The forward's register budget: 128 per thread (4 blocks, 16 warps per SM) for DH ≤ 64; the
// d128 bucket's 16×128 f32 output accumulator alone is 64 registers per thread, and at 128 it
// spilled (460 bytes): 2 blocks per SM, up to 255 registers.
template <int DH>
struct FwdMinBlocks {
    static constexpr int value = DH <= 64 ? 4 : 2;
};
// The backward's: dk and dv of 16 keys × DH stay in registers (2·DH/4 per thread: 32 at d64,
// 64 at d128); 4 blocks per SM (128 registers) for DH ≤ 64; at d128 dk and dv alone are half
// of that, so 2 blocks (up to 255), as its 89 KB of shared memory allows too.
template <int DH>
struct BwdMinBlocks {
    static constexpr int value = DH <= 64 ? 4 : 2;
};

// Per-call constants shared by forward and backward: AttnDims of params.cuh.
using AttnArgs = AttnDims;

// The value of a template parameter that leaves the choice to run time (the `any` kernels):
// U and L kinds read from AttnDims, dropout on when p.dims.dropout > 0.
constexpr int KIND_ANY = -1;
constexpr int DROP_OFF = 0, DROP_ON = 1, DROP_ANY = -1;

// A kind template parameter's value in this call: K itself, or the run-time one for KIND_ANY.
template <int K>
__device__ __forceinline__ int pick(int runtime) {
    return K == KIND_ANY ? runtime : K;
}

// How far a k loop over dh (DH / 8 steps) unrolls: fully, except in two fp32 cases, by 4.
// - The `any` kernels of the d128 bucket, the fallbacks for configurations outside the list:
//   fully unrolled, the forward's split TF32 is 97 KB of SASS, close to the 100 KB ceiling (in
//   the tf32 backward, by 4 spilled 316 bytes; its full unroll is 67 KB).
// - The d64 kernels without U (sasrec, rope, (f)parec): fully unrolled, the content backward
//   spilled 16 bytes (a loop invariant reloaded per tile) at the 128-register budget, which
//   every other d64 backward meets without spilling (kernels/check.sh).
template <int DH, Prec P, int UK>
struct KUnroll {
    static constexpr bool by4 = P == PREC_FP32 && ((DH >= 128 && UK == KIND_ANY) ||
                                                   (DH == 64 && UK == KIND_NONE));
    static constexpr int value = by4 ? 4 : DH / 8;
};

// K_ij (1 for `none`), read only once `after` is known: the address depends on it (it adds
// min(bits of after, 0), which is 0 for after ≥ 0), so ptxas cannot issue the load ahead of
// the value it multiplies. Issued early, as ptxas does once the kind is a compile-time
// constant, a tile's 16 independent loads hold registers through their whole latency, which
// the forward's 128-register budget (4 blocks per SM at d32/d64) lacks: every full-L forward
// kernel spilled 4–48 bytes without this.
__device__ __forceinline__ float kernel_value_after(const float* head, int kind, int i, int j,
                                                    float after) {
    if (kind == KIND_NONE) return 1.0f;
    return head[kernel_index(kind, i, j) + min(__float_as_int(after), 0)];
}

// L_ij as the kernels read it: after p where L's kind is a constant; in the `any` kernels the
// run-time kind's branch already keeps the loads in place.
template <int LK>
__device__ __forceinline__ float l_value(const float* head, int kind, int i, int j, float p) {
    return LK == KIND_ANY ? kernel_value(head, kind, i, j) : kernel_value_after(head, kind, i, j, p);
}

// Whether a kernel drops probabilities: its DROP, or for DROP_ANY the call's dropout > 0 (read
// where it is needed: the dims live in the constant bank, a bool kept across the loops would
// take a register, which the d128 backward lacks).
template <int DROP>
__device__ __forceinline__ bool dropping(const AttnArgs& a) {
    return DROP == DROP_ANY ? a.dropout > 0.0f : DROP == DROP_ON;
}

// Dropout multiplier m_ij of probability (b, h, i, j): 0 or 1/(1−p); 1 when dropout is off.
template <int DROP>
__device__ __forceinline__ float dropout_mult(const AttnArgs& a, int b, int h, int i, int j,
                                              float inv_keep) {
    // The test of dropping<DROP>, spelt as the kernels always spelt it per element: calling
    // dropping<DROP>(a) here instead (even as !(dropout <= 0)) made ptxas allocate the `any`
    // backwards differently, the fp32 d128 one spilling 8 bytes (kernels/check.sh).
    if (DROP == DROP_OFF || (DROP == DROP_ANY && a.dropout <= 0.0f)) return 1.0f;
    return keep(a.seed, attn_dropout_index(b, h, i, j, a.heads, a.n), a.dropout) ? inv_keep : 0.0f;
}

// ═════════════════════════════════════════════════════════════════════════════════════════════
// Forward on tensor cores. One block: FWD_BQ = 64 queries of one (b, h); warp w owns the 16
// rows q0 + 16w .. +15. Keys stream through shared memory in tiles of FWD_BK = 32, double-
// buffered: tile t + 1 is copied with cp.async while tile t is computed on. Per tile a
// warp computes its 16×32 scores S = Q·Kᵀ with m16n8k8 products (k over dh), modulates them
// by U, updates the online softmax (running max m, running normaliser l, rescaled output), and
// adds P·L·V with m16n8k8 products (k over the tile's keys). The n×n scores never leave
// registers.
//
// Fragments (kernels/mma.cuh; g = lane / 4, t = lane % 4): the scores of n-tile c (keys
// 8c .. 8c+7 of the tile) are s[c][0..3] at (row g, key 8c+2t), (g, 8c+2t+1), (g+8, 8c+2t),
// (g+8, 8c+2t+1). The product P·V takes the weights as its A operand with k running over the
// keys in the order 8c+0, +2, +4, +6, +1, +3, +5, +7 (k-index t ↔ key 8c+2t, t+4 ↔ 8c+2t+1), so
// that a lane's A registers are its own score registers: {s0, s2, s1, s3}, no shuffle; the B
// operand (V) is read in the same key order.
//
// Shared memory rows are DH + 4 floats apart: every fragment read (8 rows × 4 consecutive
// columns, or rows 2t and 2t+1 of 8 consecutive columns) then hits 32 distinct banks.
// ═════════════════════════════════════════════════════════════════════════════════════════════
constexpr int FWD_BQ = 64, FWD_BK = 32;

// Dynamic shared memory of attn_fwd for bucket DH: Q [64][DH+4], and K and V [32][DH+4] twice
// (double-buffered: the next tile loads with cp.async while the current one is used).
__host__ __device__ constexpr int fwd_smem_bytes(int DH) { return 4 * (FWD_BQ + 4 * FWD_BK) * (DH + 4); }
// The launch contract's numbers (and Bucket::fwd_smem's, src/backend/cuda/attention.rs).
static_assert(fwd_smem_bytes(32) == 27648 && fwd_smem_bytes(64) == 52224 &&
                  fwd_smem_bytes(128) == 101376,
              "attn_fwd shared memory: update the launch contract and the launcher");

template <int DH, bool CONTENT, Prec P, int UK, int LK, int DROP>
__device__ __forceinline__ void attn_fwd_impl(const AttnIn& in, float* __restrict__ y,
                                              float* __restrict__ lse, const AttnArgs a) {
    constexpr int BQ = FWD_BQ, BK = FWD_BK, LD = DH + 4;
    constexpr int KS = DH / 8;   // k-steps of Q·Kᵀ, n-tiles of the output
    constexpr int KC = BK / 8;   // n-tiles of the scores, k-steps of P·V
    PASA_DYNAMIC_SMEM(float, smem);
    float* q_s = smem;             // [BQ][LD]
    float* kv_s = q_s + BQ * LD;   // [2][K [BK][LD], V [BK][LD]]: tile t in buffer t & 1

    const float* __restrict__ q = in.q;
    const float* __restrict__ k = in.k;
    const float* __restrict__ v = in.v;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int n = a.n, W = a.heads * a.dh, st = (int)in.start[b];
    const size_t base = (size_t)b * n * W + (size_t)h * a.dh;  // (b, i, h, d) at base + i·W + d
    // The configuration: compile-time constants in a specialised kernel (their branches fold
    // away), read from the call's dims where a template parameter is *_ANY (dropout: dropping).
    const int u_kind = pick<UK>(a.u_kind), l_kind = pick<LK>(a.l_kind);
    const float* uh = kernel_head(in.u, u_kind, a.u_heads, h, n);
    const float* lh = kernel_head(in.l, l_kind, a.l_heads, h, n);
    const float* posh = CONTENT ? nullptr : in.pos + (size_t)h * n * n;
    const float inv_keep = dropping<DROP>(a) ? 1.0f / (1.0f - a.dropout) : 1.0f;

    // The copy loops stay rolled: they run once per block or tile, and unrolled they cost
    // 7 KB of SASS per kernel.
    if (CONTENT) {
#pragma unroll 1
        for (int idx = tid; idx < BQ * DH; idx += THREADS) {
            const int r = idx / DH, d = idx % DH, i = q0 + r;
            q_s[r * LD + d] = (i < n && d < a.dh) ? q[base + (size_t)i * W + d] : 0.0f;
        }
    }

    const int r0 = q0 + warp * 16;               // this warp's first row
    const int rows[2] = {r0 + g, r0 + g + 8};    // this lane's rows (fragment rows g and g + 8)
    float m[2] = {-INFINITY, -INFINITY}, lpart[2] = {0.0f, 0.0f};  // lpart: this lane's share
    float o[KS][4];
#pragma unroll
    for (int c = 0; c < KS; ++c)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[c][e] = 0.0f;

    // Causal: the last key any row of this block can see is the block's last query.
    const int q_last = min(q0 + BQ, n) - 1;
    // Queue the copies of the key tile from k0 into buffer `buf` (zeros past the tile's keys
    // and past dh), as one cp.async group.
    const auto stage = [&](int buf, int k0) {
        const int kcount = min(BK, q_last - k0 + 1);
        float* ks = kv_s + buf * 2 * BK * LD;
#pragma unroll 1
        for (int idx = tid; idx < BK * DH; idx += THREADS) {
            const int jj = idx / DH, d = idx % DH;
            const bool inside = jj < kcount && d < a.dh;
            const size_t off = inside ? base + (size_t)(k0 + jj) * W + d : 0;
            if (CONTENT) cp_async_f32(ks + jj * LD + d, k + off, inside);
            cp_async_f32(ks + (BK + jj) * LD + d, v + off, inside);
        }
        cp_async_commit();
    };
    if (st <= q_last) stage(0, st);
    for (int k0 = st, buf = 0; k0 <= q_last; k0 += BK, buf ^= 1) {
        const int kcount = min(BK, q_last - k0 + 1);
        __syncthreads();  // every thread is done with the previous tile (buffer buf ^ 1)
        if (k0 + BK <= q_last) stage(buf ^ 1, k0 + BK);
        else cp_async_commit();  // an empty group, so that one wait fits every iteration
        cp_async_wait<1>();      // this thread's copies of tile k0 have landed
        __syncthreads();         // and everyone's (and q_s, on the first pass)
        const float* k_s = kv_s + buf * 2 * BK * LD;
        const float* v_s = k_s + BK * LD;
        // A warp whose rows all precede the tile's first key has nothing to add (causal).
        if (r0 + 15 < k0 || r0 >= n) continue;

        float s[KC][4];
#pragma unroll
        for (int c = 0; c < KC; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[c][e] = 0.0f;
        if (CONTENT) {
#pragma unroll(KUnroll<DH, P, UK>::value)
            for (int ks = 0; ks < KS; ++ks) {
                const auto qf = frag_a<P>(q_s + (warp * 16 + g) * LD + ks * 8 + t, LD, 1);
#pragma unroll
                for (int c = 0; c < KC; ++c) {
                    const float* kb = k_s + (c * 8 + g) * LD + ks * 8 + t;
                    mma(s[c], qf, frag_b<P>(kb[0], kb[4]));
                }
            }
        }

        // Scores → modulated scores (−∞ where invalid) and this tile's row maxima.
        float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int c = 0; c < KC; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = rows[e >> 1], jj = c * 8 + 2 * t + (e & 1), j = k0 + jj;
                const bool valid = i < n && j <= i && jj < kcount;  // j ≥ st by construction
                float sv = -INFINITY;
                if (valid) {
                    const float cv = (CONTENT ? s[c][e] : posh[(size_t)i * n + j]) * a.scale;
                    sv = cv * kernel_value(uh, u_kind, i, j);
                }
                s[c][e] = sv;
                tmax[e >> 1] = fmaxf(tmax[e >> 1], sv);
            }
        float corr[2], m_use[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            // The quad of lanes 4g .. 4g+3 holds the row.
            tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(FULL_MASK, tmax[r], 1));
            tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(FULL_MASK, tmax[r], 2));
            const float m_new = fmaxf(m[r], tmax[r]);
            // A row with no valid key yet keeps m = −∞; subtract 0 then so that no −∞ − −∞ NaN
            // appears (every p and the correction are then exactly 0).
            m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
            corr[r] = expf(m[r] - m_use[r]);
            m[r] = m_new;
            lpart[r] *= corr[r];
        }
#pragma unroll
        for (int c = 0; c < KS; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[c][e] *= corr[e >> 1];
        // p (into lpart), then the weight p·dropout·L of the value (into s).
#pragma unroll
        for (int c = 0; c < KC; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = rows[e >> 1], j = k0 + c * 8 + 2 * t + (e & 1);
                const float sv = s[c][e];
                float w = 0.0f;
                if (sv != -INFINITY) {
                    const float p = expf(sv - m_use[e >> 1]);
                    lpart[e >> 1] += p;
                    w = p * dropout_mult<DROP>(a, b, h, i, j, inv_keep) *
                        l_value<LK>(lh, l_kind, i, j, p);
                }
                s[c][e] = w;
            }
        // o += W·V: k-step c covers the keys of n-tile c, in the permuted order above.
#pragma unroll
        for (int c = 0; c < KC; ++c) {
            const auto wf = frag_a_acc<P>(s[c]);
            const float* vb = v_s + (c * 8 + 2 * t) * LD + g;
#pragma unroll
            for (int nt = 0; nt < KS; ++nt) mma(o[nt], wf, frag_b<P>(vb[nt * 8], vb[LD + nt * 8]));
        }
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float lsum = lpart[r];
        lsum += __shfl_xor_sync(FULL_MASK, lsum, 1);
        lsum += __shfl_xor_sync(FULL_MASK, lsum, 2);
        const int i = rows[r];
        if (i >= n) continue;
        const bool row_valid = i >= st;  // then key j = i is valid and lsum ≥ 1
        const float inv_l = row_valid ? 1.0f / lsum : 0.0f;
#pragma unroll
        for (int c = 0; c < KS; ++c)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int d = c * 8 + 2 * t + e;
                if (d < a.dh) y[base + (size_t)i * W + d] = row_valid ? o[c][2 * r + e] * inv_l : 0.0f;
            }
        if (t == 0) lse[((size_t)b * a.heads + h) * n + i] = row_valid ? m[r] + logf(lsum) : 0.0f;
    }
}

// ═════════════════════════════════════════════════════════════════════════════════════════════
// Backward on tensor cores (FlashAttention-2 order: key tiles outer, query tiles inner). One
// block: BWD_BK = 64 keys of one head, for the batches b = z, z + G, …; warp w owns the keys
// k0 + 16w .. +15 and keeps their dk, dv in registers (C fragments, 16 × DH). Query tiles of
// BWD_BQ = 16 stream through shared memory. Per tile a warp computes, as m16n8k8 products,
//   Sᵀ = K·Qᵀ (16 keys × 16 queries) and Eᵀ = V·dYᵀ (e_ij = dy_i·v_j),
// then elementwise with p recomputed from the saved lse (m the dropout multiplier, w = L):
//   ∂s = p(m w e − D_i), ∂c = ∂s·U, and the weights p·m·w,
// then dV += (p m w)ᵀ·dY with p·m·w as A operand straight from the accumulator registers and
// dK += ∂Cᵀ·Q with ∂C read back from the tile it is written to (k over the tile's queries in the
// permuted order of the forward). That ∂C tile in shared memory, transposed, also serves
// dQ = ∂C·K (each warp a quarter of the 16-query × DH tile's columns; atomicAdd: contributions
// come from the n/64 key blocks).
//
// Why 16-query tiles, one buffer: at d64 the block then fits 4 per SM, in registers (dk, dv 64
// per thread, Sᵀ and Eᵀ 16) and in shared memory (49 KB; a second query buffer would make it
// 58 KB, over the quarter of an SM's 228 KB). The next tile's copy (cp.async) is issued as soon
// as the current tile's Q and dY are consumed, and lands while dQ and the diagonals are done.
//
// Kernel gradients are reduced on chip: a full U or L (and the dense dpos) gets one atomicAdd
// per valid (i, j) straight into its gradient in parameter layout; a Toeplitz one sums each
// query tile's 79 diagonals in shared memory and adds each into the gradient with one atomic.
// No workspace; the gradients must be zeroed before the launch.
// ═════════════════════════════════════════════════════════════════════════════════════════════
constexpr int BWD_BK = 64, BWD_BQ = 16, BWD_DIAGS = BWD_BK + BWD_BQ - 1;
static_assert(BWD_BQ == 16, "DiagSlots and add_diagonals assume two n-tiles of 8 queries");
// ∂C rows [key][query], 24 floats apart: a dQ fragment read (key rows t, query columns g) then
// hits banks 24t + g mod 32, all distinct.
constexpr int BWD_LDQ = BWD_BQ + 8;

// Dynamic shared memory of attn_bwd for bucket DH (floats): K, V [64][DH+4]; Q, dY [16][DH+4];
// lse, D [16]; ∂C [64][24]; Toeplitz diagonal partials of dU and dL [79] each.
__host__ __device__ constexpr int bwd_smem_bytes(int DH) {
    return 4 * (2 * BWD_BK * (DH + 4) + 2 * BWD_BQ * (DH + 4) + 2 * BWD_BQ + BWD_BK * BWD_LDQ +
                2 * BWD_DIAGS);
}
static_assert(bwd_smem_bytes(32) == 29944 && bwd_smem_bytes(64) == 50424 &&
                  bwd_smem_bytes(128) == 91384,
              "attn_bwd shared memory: update the launch contract and the launcher");

// Adds v to K_ij's gradient (grad + off: the head's, none when grad is null): a full kernel
// atomically at its parameter, a Toeplitz one into the lane's diagonal sums `toe` (slot s of
// DiagSlots), which add_diagonals then adds into the tile's partials.
__device__ __forceinline__ void add_kernel_grad(float* grad, size_t off, float toe[6], int kind,
                                                int i, int j, int slot, float v) {
    if (grad == nullptr) return;
    if (kind == KIND_FULL) atomicAdd(grad + off + kernel_index(KIND_FULL, i, j), v);
    else toe[slot] += v;
}

// The diagonals of a lane's 8 elements of a 16-key × 16-query tile (keys g, g + 8 of the warp's
// rows, queries 8c + 2t + e of n-tile c): i − j = δ + 8c + (e & 1) − 8·(e >> 1) with
// δ = (q0 − k0 − 16w) + 2t − g, so 6 distinct ones, δ + {−8, −7, 0, 1, 8, 9}: slot s of
// element (c, e) is 2·(c − (e >> 1) + 1) + (e & 1), and elements (0, 0), (1, 2) share slot 2,
// (0, 1), (1, 3) slot 3. Summing per lane first halves the atomics of those two diagonals.
struct DiagSlots {
    __device__ static constexpr int of(int c, int e) { return 2 * (c - (e >> 1) + 1) + (e & 1); }
    // Slot s's diagonal relative to δ: −8, −7, 0, 1, 8, 9.
    __device__ static constexpr int offset(int s) { return 8 * (s >> 1) - 8 + (s & 1); }
};

// Adds the warp's diagonal sums into the tile's partials diag (shared memory), index
// first + 2t − g + offset(s) for slot s. Lanes (g, t), (g + 2, t + 1), (g + 4, t + 2), … share
// every diagonal (2t − g is the same): each such chain is summed with two shuffles and its
// first lane adds it, so that no two lanes of the warp update one address at once (a shared
// f32 atomic is a compare-and-swap loop on sm_90, which retries once per colliding lane:
// up to 4 per element before).
__device__ __forceinline__ void add_diagonals(float* diag, const float toe[6], int first, int g,
                                              int t) {
    const bool next = g <= 5 && t <= 2;   // lane + 9, i.e. (g + 2, t + 1), is on the chain
    const bool next2 = g <= 3 && t <= 1;  // lane + 18, i.e. (g + 4, t + 2)
    const bool head = g < 2 || t == 0;    // no (g − 2, t − 1): the chain starts here
#pragma unroll
    for (int s = 0; s < 6; ++s) {
        float x = toe[s];
        const float x9 = __shfl_down_sync(FULL_MASK, x, 9);
        x += next ? x9 : 0.0f;
        const float x18 = __shfl_down_sync(FULL_MASK, x, 18);
        x += next2 ? x18 : 0.0f;
        if (head && x != 0.0f) atomicAdd(diag + first + 2 * t - g + DiagSlots::offset(s), x);
    }
}

// acc (16 rows × 8·NT) += A·Bᵀ over KS k-steps of 8: A [16][8·KS] at a (rows LD apart), B
// [8·NT][8·KS] at b (rows LD apart), both in shared memory; the backward's Sᵀ = K·Qᵀ and
// Eᵀ = V·dYᵀ for a warp's 16 keys.
template <Prec P, int KS, int NT, int LD, int UNROLL = KS>
__device__ __forceinline__ void warp_tile_product(float acc[NT][4], const float* a, const float* b,
                                                  int g, int t) {
#pragma unroll(UNROLL)
    for (int ks = 0; ks < KS; ++ks) {
        const auto af = frag_a<P>(a + g * LD + ks * 8 + t, LD, 1);
#pragma unroll
        for (int c = 0; c < NT; ++c) {
            const int bo = (c * 8 + g) * LD + ks * 8 + t;
            mma(acc[c], af, frag_b<P>(b[bo], b[bo + 4]));
        }
    }
}

// acc (16 × 8·NT) += X·B with X the warp's 16 keys × 8·KC queries in C-fragment layout, and B
// [8·KC][8·NT] at b (rows LD apart, shared memory): the backward's dV += (p m w)ᵀ·dY and
// dK += ∂Cᵀ·Q. x(c, xc) fills xc with the lane's four values of X's n-tile c (keys g, g + 8 ×
// queries 8c + 2t, 8c + 2t + 1), which become the A operand as they are, k over the queries in
// the permuted order (k-index t ↔ query 8c + 2t, t + 4 ↔ 8c + 2t + 1). The A operands are
// converted once, then each output n-tile takes its KC products in a row (n-tiles outer: at
// d64 the fp32 backwards then fit 128 registers without spilling, kernels/check.sh).
template <Prec P, int NT, int KC, int LD, class X>
__device__ __forceinline__ void accumulate_transposed(float acc[NT][4], X x, const float* b, int g,
                                                      int t) {
    FragA<P> xf[KC];
#pragma unroll
    for (int c = 0; c < KC; ++c) {
        float xc[4];
        x(c, xc);
        xf[c] = frag_a_acc<P>(xc);
    }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int c = 0; c < KC; ++c) {
            const int ro = (c * 8 + 2 * t) * LD + nt * 8 + g;
            mma(acc[nt], xf[c], frag_b<P>(b[ro], b[ro + LD]));
        }
}

template <int DH, bool CONTENT, Prec P, int UK, int LK, int DROP>
__device__ __forceinline__ void attn_bwd_impl(const AttnBwdParams& prm) {
    constexpr int BK = BWD_BK, BQ = BWD_BQ, LD = DH + 4, LDQ = BWD_LDQ;
    constexpr int KS = DH / 8;   // k-steps over dh; n-tiles of dk, dv
    constexpr int QC = BQ / 8;   // n-tiles of Sᵀ (queries); k-steps of dV, dK
    constexpr int QUARTER = KS / WARPS;  // n-tiles of a warp's columns of the dQ tile
    PASA_DYNAMIC_SMEM(float, smem);
    float* k_s = smem;               // [BK][LD]
    float* v_s = k_s + BK * LD;      // [BK][LD]
    float* q_s = v_s + BK * LD;      // [BQ][LD]
    float* dy_s = q_s + BQ * LD;     // [BQ][LD]
    float* lse_s = dy_s + BQ * LD;   // [BQ]
    float* D_s = lse_s + BQ;         // [BQ]
    float* dc_s = D_s + BQ;          // [BK][LDQ]  ∂c of the current tile, [key][query]
    float* diag_u = dc_s + BK * LDQ; // [BWD_DIAGS]
    float* diag_l = diag_u + BWD_DIAGS;

    const AttnIn& in = prm.inputs;
    const AttnArgs a = prm.dims;
    const int h = blockIdx.y, k0 = blockIdx.x * BK;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int n = a.n, W = a.heads * a.dh;
    // The configuration: compile-time constants in a specialised kernel (their branches fold
    // away), read from the call's dims where a template parameter is *_ANY (dropout: dropping).
    const int u_kind = pick<UK>(a.u_kind), l_kind = pick<LK>(a.l_kind);
    // Head h's U and L, and their gradients, as offsets from the parameters' pointers (which
    // stay in the constant bank): four 64-bit pointers held across the loops would take 8 of
    // the 128 registers at d64.
    const size_t u_off = kernel_head_offset(u_kind, a.u_heads, h, n);
    const size_t l_off = kernel_head_offset(l_kind, a.l_heads, h, n);
    float* dposh = CONTENT || prm.dpos == nullptr ? nullptr : prm.dpos + (size_t)h * n * n;
    const float* posh = CONTENT ? nullptr : in.pos + (size_t)h * n * n;
    const bool toe_u = prm.du != nullptr && u_kind == KIND_TOEPLITZ;
    const bool toe_l = prm.dl != nullptr && l_kind == KIND_TOEPLITZ;
    const float inv_keep = dropping<DROP>(a) ? 1.0f / (1.0f - a.dropout) : 1.0f;
    const int key = k0 + warp * 16 + g;  // this lane's key rows: key and key + 8

    // The diagonal partials start at zero; each tile's flush zeroes what it read. (Loops that
    // run once per batch or tile stay rolled: unrolled, ptxas kept their per-iteration
    // addresses in registers across the tile loop, and the fp32 d64 kernels spilled.)
#pragma unroll 1
    for (int idx = tid; idx < BWD_DIAGS; idx += THREADS) diag_u[idx] = diag_l[idx] = 0.0f;

    for (int b = blockIdx.z; b < a.batch; b += a.groups) {
        const int st = (int)in.start[b];
        const size_t base = (size_t)b * n * W + (size_t)h * a.dh;
        // Queries before the block's first key (or the window's start) see none of its keys.
        const int q_first = max(k0, st);
        const bool any = q_first < n && k0 + BK > st;
        float dv_acc[KS][4], dk_acc[KS][4];
#pragma unroll
        for (int c = 0; c < KS; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) dv_acc[c][e] = dk_acc[c][e] = 0.0f;

        // Queues the copies of the query tile from q0 (zeros past the tile's queries and past
        // dh) and closes the group, which then also holds any copies queued before it.
        const auto stage = [&](int q0) {
            const int qcount = min(BQ, n - q0);
#pragma unroll 1
            for (int idx = tid; idx < BQ * DH; idx += THREADS) {
                const int ii = idx / DH, d = idx % DH;
                const bool inside = ii < qcount && d < a.dh;
                const size_t off = inside ? base + (size_t)(q0 + ii) * W + d : 0;
                if (CONTENT) cp_async_f32(q_s + ii * LD + d, in.q + off, inside);
                cp_async_f32(dy_s + ii * LD + d, prm.dy + off, inside);
            }
            if (tid < BQ) {
                const bool inside = tid < qcount;
                const size_t r = inside ? ((size_t)b * a.heads + h) * n + q0 + tid : 0;
                cp_async_f32(lse_s + tid, prm.lse + r, inside);
                cp_async_f32(D_s + tid, prm.delta + r, inside);
            }
            cp_async_commit();
        };
        __syncthreads();  // the previous batch's K, V and query tile are consumed
        if (any) {
#pragma unroll 1
            for (int idx = tid; idx < BK * DH; idx += THREADS) {
                const int jj = idx / DH, d = idx % DH, j = k0 + jj;
                const bool inside = j < n && j >= st && d < a.dh;
                const size_t off = inside ? base + (size_t)j * W + d : 0;
                if (CONTENT) cp_async_f32(k_s + jj * LD + d, in.k + off, inside);
                cp_async_f32(v_s + jj * LD + d, in.v + off, inside);
            }
            stage(q_first);  // one group: K, V and the first query tile
        }
        for (int q0 = q_first; any && q0 < n; q0 += BQ) {
            const int qcount = min(BQ, n - q0);
            const int dmin = q0 - (k0 + BK - 1);  // the tile's smallest i − j
            cp_async_wait<0>();  // this thread's copies of tile q0 have landed
            __syncthreads();     // and everyone's; the previous tile's ∂C and diagonals are consumed

            // Sᵀ = K·Qᵀ and Eᵀ = V·dYᵀ for this warp's 16 keys. One product after the other
            // (and dV before dK below): one A operand live at a time, which the 128-register
            // budget at d64 needs (fp32's split operands are 8 registers each).
            float sT[QC][4], eT[QC][4];
#pragma unroll
            for (int c = 0; c < QC; ++c)
#pragma unroll
                for (int e = 0; e < 4; ++e) sT[c][e] = eT[c][e] = 0.0f;
            constexpr int KU = KUnroll<DH, P, UK>::value;
            if (CONTENT) warp_tile_product<P, KS, QC, LD, KU>(sT, k_s + warp * 16 * LD, q_s, g, t);
            warp_tile_product<P, KS, QC, LD, KU>(eT, v_s + warp * 16 * LD, dy_s, g, t);

            // Elementwise: sT ← p·m·w (the weight of dy_i in dv_j); ∂c into shared memory for dK
            // and dQ; the kernels' gradients (a Toeplitz one summed per diagonal: toe_*).
            float toe_du[6] = {}, toe_dl[6] = {};
            const int i0 = q0 + 2 * t;  // the lane's first query
#pragma unroll
            for (int c = 0; c < QC; ++c)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = i0 + c * 8 + (e & 1), ii = i - q0, j = key + (e >> 1) * 8;
                    const bool valid = i < n && j >= st && j <= i;  // so j < n; ii < BQ always
                    float pmw = 0.0f, dc = 0.0f;
                    if (valid) {
                        const float cv = (CONTENT ? sT[c][e] : posh[(size_t)i * n + j]) * a.scale;
                        const float uu = kernel_value(in.u + u_off, u_kind, i, j);
                        const float p = expf(cv * uu - lse_s[ii]);
                        const float mult = dropout_mult<DROP>(a, b, h, i, j, inv_keep);
                        const float w = l_value<LK>(in.l + l_off, l_kind, i, j, p);
                        const float ev = eT[c][e];
                        const float ds = p * (mult * w * ev - D_s[ii]);  // ∂s = p(m w e − D)
                        dc = ds * uu;
                        pmw = p * mult * w;
                        const int slot = DiagSlots::of(c, e);
                        add_kernel_grad(prm.du, u_off, toe_du, u_kind, i, j, slot, ds * cv);
                        add_kernel_grad(prm.dl, l_off, toe_dl, l_kind, i, j, slot, p * mult * ev);
                        if (dposh) atomicAdd(dposh + (size_t)i * n + j, dc * a.scale);
                    }
                    sT[c][e] = pmw;
                    dc_s[(warp * 16 + g + (e >= 2 ? 8 : 0)) * LDQ + ii] = dc;
                }

            // Slot s's diagonal i − j is partial i − j − dmin = first + 2t − g + offset(s). (first
            // is BK − 1 − 16w, but spelt so it changed ptxas's allocation: pasa's fp32 d64
            // backward spilled 60 bytes, kernels/check.sh.)
            const int first = q0 - k0 - warp * 16 - dmin;
            if (toe_u) add_diagonals(diag_u, toe_du, first, g, t);
            if (toe_l) add_diagonals(diag_l, toe_dl, first, g, t);

            // dV += (p m w)ᵀ·dY and dK += ∂Cᵀ·Q.
            // ∂C's A operands come back from dc_s rather than staying in registers: at d64 the
            // 8 registers they free are what fits fp32's split operands into the 128-register
            // budget. A lane's A elements are its own C-fragment elements, the very ones it
            // wrote above, so no barrier is needed. Two 8-byte reads per n-tile; each
            // half-warp's hit 32 distinct banks.
            accumulate_transposed<P, KS, QC, LD>(
                dv_acc, [&](int c, float xc[4]) { for (int e = 0; e < 4; ++e) xc[e] = sT[c][e]; },
                dy_s, g, t);
            if (CONTENT) {
                const float* dc_rows = dc_s + (warp * 16 + g) * LDQ + 2 * t;
                accumulate_transposed<P, KS, QC, LD>(
                    dk_acc,
                    [&](int c, float xc[4]) {
                        const float2 lo = *reinterpret_cast<const float2*>(dc_rows + c * 8);
                        const float2 hi = *reinterpret_cast<const float2*>(dc_rows + 8 * LDQ + c * 8);
                        xc[0] = lo.x, xc[1] = lo.y, xc[2] = hi.x, xc[3] = hi.y;
                    },
                    q_s, g, t);
            }
            __syncthreads();  // ∂C and the diagonal partials are complete; Q, dY are consumed
            if (q0 + BQ < n) stage(q0 + BQ);  // lands while dQ and the diagonals are done

            if (CONTENT) {
                // dQ (16 queries × DH) += ∂C (16 × 64 keys) · K: warp w takes the output
                // columns of quarter w, in DQ_PASSES passes of PART n-tiles. At d128 the 16
                // accumulator registers of one pass beside dk and dv's 128 are more than some
                // configurations fit without spilling (ptxas's ceiling is 255): two passes.
                // The k loop unrolled by 4 rather than 2 or 8: the fewest fp32 d64 spills
                // (kernels/check.sh).
                constexpr int DQ_PASSES = DH >= 128 ? 2 : 1, PART = QUARTER / DQ_PASSES;
#pragma unroll 1
                for (int pass = 0; pass < DQ_PASSES; ++pass) {
                    const int nt0 = warp * QUARTER + pass * PART;
                    float acc[PART][4];
#pragma unroll
                    for (int c = 0; c < PART; ++c)
#pragma unroll
                        for (int e = 0; e < 4; ++e) acc[c][e] = 0.0f;
#pragma unroll 4
                    for (int ks = 0; ks < BK / 8; ++ks) {
                        // A[query][key] = ∂C[key][query]: rows 1 apart, k slots LDQ apart.
                        const auto af = frag_a<P>(dc_s + (ks * 8 + t) * LDQ + g, 1, LDQ);
#pragma unroll
                        for (int c = 0; c < PART; ++c) {
                            const int bo = (ks * 8 + t) * LD + (nt0 + c) * 8 + g;
                            mma(acc[c], af, frag_b<P>(k_s[bo], k_s[bo + 4 * LD]));
                        }
                    }
#pragma unroll
                    for (int c = 0; c < PART; ++c)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            const int ii = g + (e >= 2 ? 8 : 0), d = (nt0 + c) * 8 + 2 * t + (e & 1);
                            if (ii < qcount && d < a.dh && acc[c][e] != 0.0f)
                                atomicAdd(prm.dq + base + (size_t)(q0 + ii) * W + d,
                                          acc[c][e] * a.scale);
                        }
                }
            }
            // The tile's Toeplitz diagonals: one atomic per diagonal i − j = dmin + idx ≥ 0, and
            // the partial back to zero for the next tile (the barrier at its top orders both).
            if (toe_u || toe_l) {
#pragma unroll 1
                for (int idx = tid; idx < BWD_DIAGS; idx += THREADS) {
                    const int dist = dmin + idx;
                    const float su = diag_u[idx], sl = diag_l[idx];
                    diag_u[idx] = diag_l[idx] = 0.0f;
                    if (dist < 0 || dist >= n) continue;
                    if (toe_u && su != 0.0f) atomicAdd(prm.du + u_off + dist, su);
                    if (toe_l && sl != 0.0f) atomicAdd(prm.dl + l_off + dist, sl);
                }
            }
        }

#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int j = key + 8 * r;
            if (j >= n) continue;
#pragma unroll
            for (int c = 0; c < KS; ++c)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int d = c * 8 + 2 * t + e;
                    if (d >= a.dh) continue;
                    if (CONTENT) prm.dk[base + (size_t)j * W + d] = dk_acc[c][2 * r + e] * a.scale;
                    prm.dv[base + (size_t)j * W + d] = dv_acc[c][2 * r + e];
                }
        }
    }
}

}  // namespace

// ─── the explicit list of instantiations ─────────────────────────────────────────────────────
// One forward and one backward kernel, attn_{fwd|bwd}{SC}_d{DH}_{PN}_{SPEC}.
#define PASA_ATTN_PAIR(SC, CONTENT, DH, PREC, PN, SPEC, UK, LK, DROP)                           \
    extern "C" __global__ void __launch_bounds__(THREADS, FwdMinBlocks<DH>::value)             \
        attn_fwd##SC##_d##DH##_##PN##_##SPEC(const AttnFwdParams p) {                            \
        attn_fwd_impl<DH, CONTENT, PREC, UK, LK, DROP>(p.inputs, p.y, p.lse, p.dims);           \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(THREADS, BwdMinBlocks<DH>::value)             \
        attn_bwd##SC##_d##DH##_##PN##_##SPEC(const AttnBwdParams p) {                            \
        attn_bwd_impl<DH, CONTENT, PREC, UK, LK, DROP>(p);                                      \
    }
// A specialised (U, L) with dropout on and off.
#define PASA_ATTN_DROPOUT(SC, CONTENT, DH, PREC, PN, UL, UK, LK)                                \
    PASA_ATTN_PAIR(SC, CONTENT, DH, PREC, PN, UL##_drop, UK, LK, DROP_ON)                       \
    PASA_ATTN_PAIR(SC, CONTENT, DH, PREC, PN, UL##_nodrop, UK, LK, DROP_OFF)
// THE LIST, per bucket and precision (SPECIALISED in src/backend/cuda/attention.rs).
#define PASA_ATTN_BUCKET(DH, PREC, PN)                                                          \
    PASA_ATTN_DROPOUT(, true, DH, PREC, PN, unln, KIND_NONE, KIND_NONE)      /* sasrec, rope */ \
    PASA_ATTN_DROPOUT(, true, DH, PREC, PN, utlf, KIND_TOEPLITZ, KIND_FULL)  /* pasa */         \
    PASA_ATTN_DROPOUT(, true, DH, PREC, PN, utln, KIND_TOEPLITZ, KIND_NONE)  /* pasa, mix */    \
    PASA_ATTN_DROPOUT(_pos, false, DH, PREC, PN, unln, KIND_NONE, KIND_NONE) /* (f)parec */     \
    PASA_ATTN_PAIR(, true, DH, PREC, PN, any, KIND_ANY, KIND_ANY, DROP_ANY)                     \
    PASA_ATTN_PAIR(_pos, false, DH, PREC, PN, any, KIND_ANY, KIND_ANY, DROP_ANY)
// Every bucket of one precision: what each attention_<precision>.cu instantiates.
#define PASA_ATTN_PRECISION(PREC, PN)                                                           \
    PASA_ATTN_BUCKET(32, PREC, PN)                                                              \
    PASA_ATTN_BUCKET(64, PREC, PN)                                                              \
    PASA_ATTN_BUCKET(128, PREC, PN)
