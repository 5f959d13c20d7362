// The fused attention family (DESIGN §1–2, `weight` and `mix` readings), fp32 throughout.
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
// LAUNCH CONTRACTS (the Rust launcher follows these; all blocks are 1-D, blockDim = (128,1,1))
//
// attn_fwd_d32 / attn_fwd_d64 / attn_fwd_d128   (bucket DH ∈ {32, 64, 128}, needs dh ≤ DH;
//     choose the smallest bucket ≥ dh)
//   grid   (ceil(n / BQ), H, B) with BQ = 32 for d32 and d64, BQ = 16 for d128
//   block  128, shared memory: static only (dynamic = 0)
//   params (AttnFwdParams p)   by value, params.cuh: p.inputs (q, k, v, pos, u, l, start),
//           p.y, p.lse, p.dims (B, n, H, dh, scale, score_kind, u/l kind and heads, dropout,
//           seed; groups unused)
//   writes every element of y and lse.
//
// attn_bwd_preprocess
//   grid   (ceil(B·n·H / 8)), block 256 (one warp per (b, i, h) row)
//   params (const float* dy, const float* y, float* D, float* dq, int B, int n, int H, int dh)
//   D[b,h,i] = dy_i·y_i (0 on padded rows); also zeroes dq (skipped when dq is null), which
//   attn_bwd accumulates into. Must run before attn_bwd on the same stream.
//
// attn_bwd_d32 / attn_bwd_d64 / attn_bwd_d128
//   grid   (ceil(n / BK), H, G) with BK = 32 for d32 and d64, BK = 16 for d128;
//          G ∈ [1, B] batch groups chosen by the launcher: block z = g handles batches
//          b = g, g+G, g+2G, … one after the other (G = B gives the most parallelism,
//          smaller G a smaller workspace)
//   block  128
//   shared memory: dynamic, bytes = 4·(2·BK·DH + 2·DH·33 + BK·33 + 64)
//          d32: 21 120 B, d64: 37 760 B, d128: 52 544 B → attn_bwd_d128 needs
//          CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES set to ≥ 52 544 before launch
//   params (AttnBwdParams p)   by value, params.cuh: p.inputs as in the forward, p.dy,
//           p.lse, p.delta (D), p.dq, p.dk, p.dv, p.ws_du, p.ws_dl, p.ws_dpos, p.dims with
//           p.dims.groups = G
//   dk, dv: overwritten (every element). dq: accumulated with atomicAdd across key tiles
//   (zeroed by attn_bwd_preprocess); unused and may be null in positional mode (as may q, k).
//   WORKSPACES ws_du (needed iff u_kind ≠ none), ws_dl (iff l_kind ≠ none), ws_dpos (iff
//   score_kind = positional); pass null otherwise. Each holds G·H·T floats, T = n(n+1)/2,
//   layout [g][h][tri_col(n, i, j)] (column-packed triangle, common.cuh), and MUST BE ZEROED
//   before the launch (the kernel adds into it: one block owns each (g, h, i, j) element, so the
//   adds are plain read-modify-writes, never atomics). Contents per valid (b, h, i, j):
//     ws_du   += ∂s_ij · c_ij
//     ws_dl   += p_ij · m_ij · e_ij          (m = dropout multiplier, e_ij = dy_i·v_j)
//     ws_dpos += ∂c_ij · scale               (∂c = ∂s·U)
//   Bytes per workspace: 4 · G · H · n(n+1)/2  (n = 200, G = B = 128, H = 1: 10.3 MB).
//
// attn_reduce_kernel_grad
//   grid   (ceil(n / 256), n, out_heads), block 256
//   params (const float* ws, float* out, int G, int H, int n, int layout, int out_heads,
//           int accumulate)
//   Sums a workspace [G][H][T] over g (and over h when out_heads == 1; out_heads must be 1 or H)
//   into the gradient `out`; accumulate = 1 adds to out, 0 overwrites it. layout:
//     1 (full)     out [out_heads, n(n+1)/2], row-packed i(i+1)/2 + j
//     2 (toeplitz) out [out_heads, n], out[d] = Σ over the diagonal i − j = d
//     3 (dense)    out [out_heads, n, n], (i, j) at i·n + j; j > i written 0 (when not
//                  accumulating) — this is dpos, with out_heads = H
//   Used for dU (layout = u_kind), dL (layout = l_kind) and dpos (layout 3), and for mix_bwd.
//
// mix_fwd     (`mix` reading: out_j = Σ_{start ≤ m ≤ j} L_jm v_m per batch and head; do not
//              launch when L is none — it is the identity)
//   grid   (ceil(n / 32), H, B), block 128, static shared memory only
//   params (MixFwdParams p)   by value, params.cuh: p.v, p.l, p.start, p.out,
//           p.dims (B, n, H, dh, l_kind, l_heads)      dh ≤ 128
//
// mix_bwd     dv_m = Σ_{m ≤ j < n} L_jm dout_j (for m ≥ start, 0 below) and the dL partials
//   grid   (ceil(n / 32), H, G), block 128, static shared memory only
//   params (MixBwdParams p)   by value, params.cuh: p.v, p.l, p.start, p.dout, p.dv,
//           p.ws_dl, p.dims, p.groups = G      dh ≤ 128
//   dv overwritten. ws_dl: G·H·n(n+1)/2 floats, zeroed before, layout as above, holding
//   ws_dl[g][h][tri_col(n, j, m)] += dout_j·v_m; reduce with attn_reduce_kernel_grad
//   (layout = l_kind, out_heads = l_heads).
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"
#include "params.cuh"

using namespace pasa;

namespace {

constexpr int THREADS = 128;  // 4 warps in every attention kernel
// attn_fwd / attn_bwd declare __launch_bounds__(THREADS, 2): without the occupancy hint ptxas
// capped attn_fwd_d128 at 96 registers and spilled; with 4 blocks per SM (128 registers) every
// bucket spilled. Two blocks per SM let the register-blocked accumulators stay in registers.
constexpr int WARPS = THREADS / 32;
constexpr int SCORE_CONTENT = 0;

// Per-call constants shared by forward and backward: AttnDims of params.cuh.
using AttnArgs = AttnDims;

// Dropout multiplier m_ij of probability (b, h, i, j): 0 or 1/(1−p); 1 when dropout is off.
__device__ __forceinline__ float dropout_mult(const AttnArgs& a, int b, int h, int i, int j,
                                              float inv_keep) {
    if (a.dropout <= 0.0f) return 1.0f;
    return keep(a.seed, attn_dropout_index(b, h, i, j, a.heads, a.n), a.dropout) ? inv_keep : 0.0f;
}

// ═════════════════════════════════════════════════════════════════════════════════════════════
// Forward. One block: BQ = 4·R queries of one (b, h); warp w owns query rows q0 + w·R + r.
// Keys stream through shared memory in tiles of 32, one key per lane for the scores; the online
// softmax (running max m, running normaliser l, rescaled accumulator) then lets the lanes switch
// to owning output dimensions d = lane + 32t for the aggregation, broadcasting each key's
// weight p·m·L with a shuffle. The n×n probabilities never leave registers.
// ═════════════════════════════════════════════════════════════════════════════════════════════
template <int DH, int R>
__device__ __forceinline__ void attn_fwd_impl(const float* __restrict__ q,
                                              const float* __restrict__ k,
                                              const float* __restrict__ v,
                                              const float* __restrict__ pos,
                                              const float* __restrict__ u,
                                              const float* __restrict__ l,
                                              const unsigned* __restrict__ start,
                                              float* __restrict__ y, float* __restrict__ lse,
                                              const AttnArgs a) {
    constexpr int BQ = WARPS * R, BK = 32, T = DH / 32;
    // Zero-padded beyond dh, so the inner loops run to the compile-time DH and unroll.
    __shared__ float q_s[BQ][DH];
    __shared__ float kT_s[DH][BK + 1];  // transposed: lane j reads kT_s[d][j], conflict-free
    __shared__ float v_s[BK][DH];

    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BQ;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int n = a.n, W = a.heads * a.dh, st = (int)start[b];
    const bool content = a.score_kind == SCORE_CONTENT;
    const size_t base = (size_t)b * n * W + (size_t)h * a.dh;  // (b, i, h, d) at base + i·W + d
    const float* uh = kernel_head(u, a.u_kind, a.u_heads, h, n);
    const float* lh = kernel_head(l, a.l_kind, a.l_heads, h, n);
    const float* posh = content ? nullptr : pos + (size_t)h * n * n;
    const float inv_keep = a.dropout > 0.0f ? 1.0f / (1.0f - a.dropout) : 1.0f;

    if (content) {
        for (int idx = tid; idx < BQ * DH; idx += THREADS) {
            const int r = idx / DH, d = idx % DH, i = q0 + r;
            q_s[r][d] = (i < n && d < a.dh) ? q[base + (size_t)i * W + d] : 0.0f;
        }
    }

    float m[R], lsum[R], acc[R][T];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        m[r] = -INFINITY;
        lsum[r] = 0.0f;
#pragma unroll
        for (int t = 0; t < T; ++t) acc[r][t] = 0.0f;
    }

    // Causal: the last key any row of this tile can see is the tile's last query.
    const int q_last = min(q0 + BQ, n) - 1;
    for (int k0 = st; k0 <= q_last; k0 += BK) {
        const int kcount = min(BK, q_last - k0 + 1);
        __syncthreads();  // the previous tile (and q_s on the first pass) is complete / consumed
        for (int idx = tid; idx < BK * DH; idx += THREADS) {
            const int jj = idx / DH, d = idx % DH, j = k0 + jj;
            const bool in = jj < kcount && d < a.dh;
            const size_t off = base + (size_t)j * W + d;
            if (content) kT_s[d][jj] = in ? k[off] : 0.0f;
            v_s[jj][d] = in ? v[off] : 0.0f;
        }
        __syncthreads();

        const int j = k0 + lane;
        float dot[R];
#pragma unroll
        for (int r = 0; r < R; ++r) dot[r] = 0.0f;
        if (content) {
#pragma unroll 8
            for (int d = 0; d < DH; ++d) {
                const float kd = kT_s[d][lane];
#pragma unroll
                for (int r = 0; r < R; ++r) dot[r] = fmaf(q_s[warp * R + r][d], kd, dot[r]);
            }
        }

        float pw[R];  // p̃·L of this lane's key for each row (unnormalised), 0 when invalid
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int i = q0 + warp * R + r;
            const bool valid = i < n && j <= i && j < k0 + kcount;  // j ≥ st by construction
            float s = -INFINITY;
            if (valid) {
                const float c = (content ? dot[r] : posh[(size_t)i * n + j]) * a.scale;
                s = c * kernel_value(uh, a.u_kind, i, j);
            }
            const float m_new = fmaxf(m[r], warp_max(s));
            // A row with no valid key yet keeps m = −inf; subtract 0 then so that no −inf − −inf
            // NaN appears (every p and the correction are then exactly 0).
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;
            const float p = valid ? expf(s - m_use) : 0.0f;
            const float corr = expf(m[r] - m_use);
            lsum[r] = lsum[r] * corr + warp_sum(p);
#pragma unroll
            for (int t = 0; t < T; ++t) acc[r][t] *= corr;
            m[r] = m_new;
            pw[r] = valid ? p * dropout_mult(a, b, h, i, j, inv_keep) *
                                kernel_value(lh, a.l_kind, i, j)
                          : 0.0f;
        }

        for (int jj = 0; jj < kcount; ++jj) {
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const float wgt = __shfl_sync(FULL_MASK, pw[r], jj);
#pragma unroll
                for (int t = 0; t < T; ++t) acc[r][t] = fmaf(wgt, v_s[jj][t * 32 + lane], acc[r][t]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int i = q0 + warp * R + r;
        if (i >= n) continue;
        const bool row_valid = i >= st;  // then key j = i is valid and lsum ≥ 1
        const float inv_l = row_valid ? 1.0f / lsum[r] : 0.0f;
#pragma unroll
        for (int t = 0; t < T; ++t) {
            const int d = t * 32 + lane;
            if (d < a.dh) y[base + (size_t)i * W + d] = row_valid ? acc[r][t] * inv_l : 0.0f;
        }
        if (lane == 0)
            lse[((size_t)b * a.heads + h) * n + i] = row_valid ? m[r] + logf(lsum[r]) : 0.0f;
    }
}

// ═════════════════════════════════════════════════════════════════════════════════════════════
// Backward (FlashAttention-2 order: key tiles outer, query tiles inner). One block: BK = 4·R keys
// of one head, for the batches of its group; warp w owns keys k0 + w·R + r and keeps their dk, dv
// in registers. Query tiles of 32 (one query per lane) stream through shared memory transposed
// (qT[d][i], dyT[d][i], stride 33: conflict-free both when lanes run over i and over d).
// p is recomputed from the saved lse; with m the dropout multiplier and w = L:
//   e = dy_i·v_j, ∂s = p(m w e − D_i), ∂c = ∂s·U, dv_j += p m w dy_i, dk_j += ∂c q_i·scale,
//   dq_i += ∂c k_j·scale (atomicAdd: contributions come from the n/BK key-tile blocks).
// ═════════════════════════════════════════════════════════════════════════════════════════════
template <int DH, int R>
__device__ __forceinline__ void attn_bwd_impl(
    const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
    const float* __restrict__ pos, const float* __restrict__ u, const float* __restrict__ l,
    const unsigned* __restrict__ start, const float* __restrict__ dy,
    const float* __restrict__ lse, const float* __restrict__ Dvec, float* __restrict__ dq,
    float* __restrict__ dk, float* __restrict__ dv, float* __restrict__ ws_du,
    float* __restrict__ ws_dl, float* __restrict__ ws_dpos, const AttnArgs a) {
    constexpr int BK = WARPS * R, BQ = 32, T = DH / 32, LD = BQ + 1;
    PASA_DYNAMIC_SMEM(float, smem);
    float* k_s = smem;               // [BK][DH]
    float* v_s = k_s + BK * DH;      // [BK][DH]
    float* qT = v_s + BK * DH;       // [DH][LD]
    float* dyT = qT + DH * LD;       // [DH][LD]
    float* dc_s = dyT + DH * LD;     // [BK][LD]  ∂c of the current (key, query) tile
    float* lse_s = dc_s + BK * LD;   // [32]
    float* D_s = lse_s + BQ;         // [32]

    const int h = blockIdx.y, g = blockIdx.z, k0 = blockIdx.x * BK;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int n = a.n, W = a.heads * a.dh;
    const bool content = a.score_kind == SCORE_CONTENT;
    const float* uh = kernel_head(u, a.u_kind, a.u_heads, h, n);
    const float* lh = kernel_head(l, a.l_kind, a.l_heads, h, n);
    const float* posh = content ? nullptr : pos + (size_t)h * n * n;
    const float inv_keep = a.dropout > 0.0f ? 1.0f / (1.0f - a.dropout) : 1.0f;
    const size_t T_tri = (size_t)n * (n + 1) / 2;
    const size_t wsbase = ((size_t)g * a.heads + h) * T_tri;

    for (int b = g; b < a.batch; b += a.groups) {
        const int st = (int)start[b];
        const size_t base = (size_t)b * n * W + (size_t)h * a.dh;
        const size_t rowbase = ((size_t)b * a.heads + h) * n;  // lse / D of row i at rowbase + i

        __syncthreads();  // the previous batch is done with k_s / v_s
        for (int idx = tid; idx < BK * DH; idx += THREADS) {
            const int r = idx / DH, d = idx % DH, j = k0 + r;
            const bool in = j < n && j >= st && d < a.dh;
            const size_t off = base + (size_t)j * W + d;
            if (content) k_s[idx] = in ? k[off] : 0.0f;
            v_s[idx] = in ? v[off] : 0.0f;
        }

        float dk_acc[R][T], dv_acc[R][T];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int t = 0; t < T; ++t) dk_acc[r][t] = dv_acc[r][t] = 0.0f;

        // Queries that see a key of this tile: i ≥ max(k0, st). Fully padded tiles skip the loop
        // and write zero gradients below.
        for (int q0 = max(k0, st); q0 < n && k0 + BK > st; q0 += BQ) {
            const int qcount = min(BQ, n - q0);
            __syncthreads();  // k_s/v_s loaded; previous query tile (qT, dyT, dc_s) consumed
            for (int idx = tid; idx < BQ * DH; idx += THREADS) {
                const int ii = idx / DH, d = idx % DH, i = q0 + ii;
                const bool in = ii < qcount && d < a.dh;
                const size_t off = base + (size_t)i * W + d;
                if (content) qT[d * LD + ii] = in ? q[off] : 0.0f;
                dyT[d * LD + ii] = in ? dy[off] : 0.0f;
            }
            if (tid < BQ) {
                lse_s[tid] = tid < qcount ? lse[rowbase + q0 + tid] : 0.0f;
                D_s[tid] = tid < qcount ? Dvec[rowbase + q0 + tid] : 0.0f;
            }
            __syncthreads();

            const int i = q0 + lane;
            float cdot[R], edot[R];
#pragma unroll
            for (int r = 0; r < R; ++r) cdot[r] = edot[r] = 0.0f;
#pragma unroll 8
            for (int d = 0; d < DH; ++d) {
                const float dyd = dyT[d * LD + lane];
                const float qd = content ? qT[d * LD + lane] : 0.0f;
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const int kr = (warp * R + r) * DH + d;
                    edot[r] = fmaf(dyd, v_s[kr], edot[r]);
                    if (content) cdot[r] = fmaf(qd, k_s[kr], cdot[r]);
                }
            }

            float pmw[R], dcr[R];  // p·m·w and ∂c of (i = this lane's query, key r)
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int j = k0 + warp * R + r;
                const bool valid = i < n && j < n && j >= st && j <= i;
                pmw[r] = 0.0f;
                dcr[r] = 0.0f;
                if (valid) {
                    const float c = (content ? cdot[r] : posh[(size_t)i * n + j]) * a.scale;
                    const float uu = kernel_value(uh, a.u_kind, i, j);
                    const float p = expf(c * uu - lse_s[lane]);
                    const float mult = dropout_mult(a, b, h, i, j, inv_keep);
                    const float pm = p * mult;
                    const float w = kernel_value(lh, a.l_kind, i, j);
                    const float e = edot[r];
                    const float ds = p * (mult * w * e - D_s[lane]);  // ∂s = p(m w e − D)
                    const float dc = ds * uu;
                    pmw[r] = pm * w;
                    dcr[r] = dc;
                    const size_t wi = wsbase + tri_col(n, i, j);
                    if (ws_du) ws_du[wi] += ds * c;
                    if (ws_dl) ws_dl[wi] += pm * e;
                    if (ws_dpos) ws_dpos[wi] += dc * a.scale;
                }
                dc_s[(warp * R + r) * LD + lane] = dcr[r];
            }

            // dv_j += Σ_i p m w dy_i and dk_j += Σ_i ∂c q_i: lanes now own dimensions.
            for (int ii = 0; ii < qcount; ++ii) {
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const float wv = __shfl_sync(FULL_MASK, pmw[r], ii);
                    const float wk = __shfl_sync(FULL_MASK, dcr[r], ii);
#pragma unroll
                    for (int t = 0; t < T; ++t) {
                        const int d = t * 32 + lane;
                        dv_acc[r][t] = fmaf(wv, dyT[d * LD + ii], dv_acc[r][t]);
                        if (content) dk_acc[r][t] = fmaf(wk, qT[d * LD + ii], dk_acc[r][t]);
                    }
                }
            }

            if (content) {
                __syncthreads();  // dc_s complete
                // dq_i += scale · Σ_{j in tile} ∂c_ij k_j: one atomicAdd per (i, d) per block.
                for (int idx = tid; idx < BQ * DH; idx += THREADS) {
                    const int ii = idx / DH, d = idx % DH;
                    if (ii >= qcount || d >= a.dh) continue;
                    float sum = 0.0f;
#pragma unroll
                    for (int r = 0; r < BK; ++r) sum = fmaf(dc_s[r * LD + ii], k_s[r * DH + d], sum);
                    if (sum != 0.0f) atomicAdd(&dq[base + (size_t)(q0 + ii) * W + d], sum * a.scale);
                }
            }
        }

#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int j = k0 + warp * R + r;
            if (j >= n) continue;
#pragma unroll
            for (int t = 0; t < T; ++t) {
                const int d = t * 32 + lane;
                if (d >= a.dh) continue;
                if (content) dk[base + (size_t)j * W + d] = dk_acc[r][t] * a.scale;
                dv[base + (size_t)j * W + d] = dv_acc[r][t];
            }
        }
    }
}

}  // namespace

// ─── attn_fwd ───────────────────────────────────────────────────────────────────────────────
#define PASA_ATTN_FWD(NAME, DH, R)                                                               \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) NAME(const AttnFwdParams p) {       \
        const AttnIn& in = p.inputs;                                                             \
        attn_fwd_impl<DH, R>(in.q, in.k, in.v, in.pos, in.u, in.l, in.start, p.y, p.lse, p.dims); \
    }
PASA_ATTN_FWD(attn_fwd_d32, 32, 8)
PASA_ATTN_FWD(attn_fwd_d64, 64, 8)
PASA_ATTN_FWD(attn_fwd_d128, 128, 4)

// ─── attn_bwd_preprocess: D_i = dy_i·y_i, and dq = 0 ─────────────────────────────────────────
extern "C" __global__ void __launch_bounds__(256)
    attn_bwd_preprocess(const float* dy, const float* y, float* D, float* dq, int B, int n, int H,
                        int dh) {
    const long long row = (long long)blockIdx.x * 8 + (threadIdx.x >> 5);  // (b, h, i) flattened
    const int lane = threadIdx.x & 31;
    if (row >= (long long)B * H * n) return;
    const int i = (int)(row % n), h = (int)((row / n) % H), b = (int)(row / ((long long)n * H));
    const size_t off = ((size_t)b * n + i) * (size_t)H * dh + (size_t)h * dh;
    float s = 0.0f;
    for (int d = lane; d < dh; d += 32) {
        s = fmaf(dy[off + d], y[off + d], s);
        if (dq) dq[off + d] = 0.0f;
    }
    s = warp_sum(s);
    if (lane == 0) D[row] = s;  // row = (b·H + h)·n + i: the [B, H, n] layout
}

// ─── attn_bwd ───────────────────────────────────────────────────────────────────────────────
#define PASA_ATTN_BWD(NAME, DH, R)                                                               \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) NAME(const AttnBwdParams p) {       \
        const AttnIn& in = p.inputs;                                                             \
        attn_bwd_impl<DH, R>(in.q, in.k, in.v, in.pos, in.u, in.l, in.start, p.dy, p.lse,       \
                             p.delta, p.dq, p.dk, p.dv, p.ws_du, p.ws_dl, p.ws_dpos, p.dims);    \
    }
PASA_ATTN_BWD(attn_bwd_d32, 32, 8)
PASA_ATTN_BWD(attn_bwd_d64, 64, 8)
PASA_ATTN_BWD(attn_bwd_d128, 128, 4)

// ─── attn_reduce_kernel_grad: workspace [G][H][tri_col] → gradient in parameter layout ──────
extern "C" __global__ void __launch_bounds__(256)
    attn_reduce_kernel_grad(const float* ws, float* out, int G, int H, int n, int layout,
                            int out_heads, int accumulate) {
    __shared__ float scratch[32];
    const size_t T = (size_t)n * (n + 1) / 2;
    const int oh = blockIdx.z;
    // Heads summed into output head oh: all of them when shared, else just oh.
    const int h_lo = out_heads == 1 ? 0 : oh, h_hi = out_heads == 1 ? H : oh + 1;

    if (layout == KIND_TOEPLITZ) {
        // One block per distance dist = blockIdx.y; the threads stride over (g, h, j) with
        // i = j + dist, then a block reduction. Blocks with blockIdx.x > 0 have nothing to do.
        if (blockIdx.x != 0) return;
        const int dist = blockIdx.y, len = n - dist;
        const long long total = (long long)G * (h_hi - h_lo) * len;
        float s = 0.0f;
        for (long long t = threadIdx.x; t < total; t += blockDim.x) {
            const int j = (int)(t % len);
            const long long gh = t / len;
            const int h = h_lo + (int)(gh % (h_hi - h_lo)), g = (int)(gh / (h_hi - h_lo));
            s += ws[((size_t)g * H + h) * T + tri_col(n, j + dist, j)];
        }
        s = block_sum(s, scratch);
        if (threadIdx.x == 0) {
            float* o = out + (size_t)oh * n + dist;
            *o = accumulate ? *o + s : s;
        }
        return;
    }

    // Full / dense: one thread per (i, j) with j = blockIdx.y; consecutive threads read
    // consecutive workspace addresses (the column-packed layout).
    const int j = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (i < j) {  // only the dense layout has an upper part: 0 (a no-op when accumulating)
        if (layout == 3 && !accumulate) out[((size_t)oh * n + i) * n + j] = 0.0f;
        return;
    }
    const size_t c = tri_col(n, i, j);
    float s = 0.0f;
    for (int g = 0; g < G; ++g)
        for (int h = h_lo; h < h_hi; ++h) s += ws[((size_t)g * H + h) * T + c];
    float* o = layout == KIND_FULL ? out + (size_t)oh * T + (size_t)i * (i + 1) / 2 + j
                                   : out + ((size_t)oh * n + i) * n + j;
    *o = accumulate ? *o + s : s;
}

// ═════════════════════════════════════════════════════════════════════════════════════════════
// `mix` reading: V' = L·V along positions, per batch and head, and its backward.
// Both kernels keep one operand tile in shared memory and lanes own output dimensions
// d = lane + 32t (t < 4, dh ≤ 128); each warp owns 8 output rows.
// ═════════════════════════════════════════════════════════════════════════════════════════════
namespace {
constexpr int MIX_ROWS = 8, MIX_TILE = WARPS * MIX_ROWS, MIX_DH = 128, MIX_T = MIX_DH / 32;
}

// out_j = Σ_{start ≤ m ≤ j} L_jm v_m
extern "C" __global__ void __launch_bounds__(THREADS)
    mix_fwd(const MixFwdParams p) {
    const float* __restrict__ v = p.v;
    const float* __restrict__ l = p.l;
    const unsigned* __restrict__ start = p.start;
    float* __restrict__ out = p.out;
    const int n = p.dims.n, H = p.dims.heads, dh = p.dims.dh;
    const int l_kind = p.dims.l_kind, l_heads = p.dims.l_heads;
    __shared__ float v_s[32][MIX_DH];  // rows m of the current tile
    const int b = blockIdx.z, h = blockIdx.y, j0 = blockIdx.x * MIX_TILE;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int W = H * dh, st = (int)start[b];
    const size_t base = (size_t)b * n * W + (size_t)h * dh;
    const float* lh = kernel_head(l, l_kind, l_heads, h, n);

    float acc[MIX_ROWS][MIX_T];
#pragma unroll
    for (int r = 0; r < MIX_ROWS; ++r)
#pragma unroll
        for (int t = 0; t < MIX_T; ++t) acc[r][t] = 0.0f;

    const int j_last = min(j0 + MIX_TILE, n) - 1;
    for (int m0 = st; m0 <= j_last; m0 += 32) {
        const int mcount = min(32, j_last - m0 + 1);
        __syncthreads();
        for (int idx = tid; idx < 32 * MIX_DH; idx += THREADS) {
            const int mm = idx / MIX_DH, d = idx % MIX_DH;
            v_s[mm][d] = (mm < mcount && d < dh) ? v[base + (size_t)(m0 + mm) * W + d] : 0.0f;
        }
        __syncthreads();
        const int m = m0 + lane;
        float lv[MIX_ROWS];  // L_{j_r, m} for this lane's m
#pragma unroll
        for (int r = 0; r < MIX_ROWS; ++r) {
            const int j = j0 + warp * MIX_ROWS + r;
            lv[r] = (lane < mcount && j < n && m <= j) ? kernel_value(lh, l_kind, j, m) : 0.0f;
        }
        for (int mm = 0; mm < mcount; ++mm) {
#pragma unroll
            for (int r = 0; r < MIX_ROWS; ++r) {
                const float wgt = __shfl_sync(FULL_MASK, lv[r], mm);
#pragma unroll
                for (int t = 0; t < MIX_T; ++t)
                    acc[r][t] = fmaf(wgt, v_s[mm][t * 32 + lane], acc[r][t]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < MIX_ROWS; ++r) {
        const int j = j0 + warp * MIX_ROWS + r;
        if (j >= n) continue;
#pragma unroll
        for (int t = 0; t < MIX_T; ++t) {
            const int d = t * 32 + lane;
            if (d < dh) out[base + (size_t)j * W + d] = acc[r][t];  // 0 on padded rows j < st
        }
    }
}

// dv_m = Σ_{j ≥ m} L_jm dout_j (m ≥ start), ws_dl[g][h][tri_col(n, j, m)] += dout_j·v_m
extern "C" __global__ void __launch_bounds__(THREADS)
    mix_bwd(const MixBwdParams p) {
    const float* __restrict__ v = p.v;
    const float* __restrict__ l = p.l;
    const unsigned* __restrict__ start = p.start;
    const float* __restrict__ dout = p.dout;
    float* __restrict__ dv = p.dv;
    float* __restrict__ ws_dl = p.ws_dl;
    const int B = p.dims.batch, n = p.dims.n, H = p.dims.heads, dh = p.dims.dh;
    const int l_kind = p.dims.l_kind, l_heads = p.dims.l_heads, G = p.groups;
    constexpr int LD = 33;
    __shared__ float v_s[MIX_TILE][MIX_DH];   // own rows m
    __shared__ float doutT[MIX_DH][LD];       // rows j of the current tile, transposed
    const int h = blockIdx.y, g = blockIdx.z, m0 = blockIdx.x * MIX_TILE;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int W = H * dh;
    const float* lh = kernel_head(l, l_kind, l_heads, h, n);
    const size_t wsbase = ((size_t)g * H + h) * ((size_t)n * (n + 1) / 2);

    for (int b = g; b < B; b += G) {
        const int st = (int)start[b];
        const size_t base = (size_t)b * n * W + (size_t)h * dh;
        __syncthreads();
        for (int idx = tid; idx < MIX_TILE * MIX_DH; idx += THREADS) {
            const int r = idx / MIX_DH, d = idx % MIX_DH, m = m0 + r;
            v_s[r][d] = (m < n && m >= st && d < dh) ? v[base + (size_t)m * W + d] : 0.0f;
        }
        float acc[MIX_ROWS][MIX_T];
#pragma unroll
        for (int r = 0; r < MIX_ROWS; ++r)
#pragma unroll
            for (int t = 0; t < MIX_T; ++t) acc[r][t] = 0.0f;

        for (int j0 = max(m0, st); j0 < n && m0 + MIX_TILE > st; j0 += 32) {
            const int jcount = min(32, n - j0);
            __syncthreads();
            for (int idx = tid; idx < 32 * MIX_DH; idx += THREADS) {
                const int jj = idx / MIX_DH, d = idx % MIX_DH;
                doutT[d][jj] = (jj < jcount && d < dh) ? dout[base + (size_t)(j0 + jj) * W + d]
                                                       : 0.0f;
            }
            __syncthreads();
            const int j = j0 + lane;
            float dot[MIX_ROWS];
#pragma unroll
            for (int r = 0; r < MIX_ROWS; ++r) dot[r] = 0.0f;
            for (int d = 0; d < dh; ++d) {
                const float x = doutT[d][lane];
#pragma unroll
                for (int r = 0; r < MIX_ROWS; ++r) dot[r] = fmaf(x, v_s[warp * MIX_ROWS + r][d], dot[r]);
            }
            float lv[MIX_ROWS];
#pragma unroll
            for (int r = 0; r < MIX_ROWS; ++r) {
                const int m = m0 + warp * MIX_ROWS + r;
                const bool valid = lane < jcount && m < n && m >= st && m <= j;
                lv[r] = valid ? kernel_value(lh, l_kind, j, m) : 0.0f;
                if (valid) ws_dl[wsbase + tri_col(n, j, m)] += dot[r];
            }
            for (int jj = 0; jj < jcount; ++jj) {
#pragma unroll
                for (int r = 0; r < MIX_ROWS; ++r) {
                    const float wgt = __shfl_sync(FULL_MASK, lv[r], jj);
#pragma unroll
                    for (int t = 0; t < MIX_T; ++t)
                        acc[r][t] = fmaf(wgt, doutT[t * 32 + lane][jj], acc[r][t]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < MIX_ROWS; ++r) {
            const int m = m0 + warp * MIX_ROWS + r;
            if (m >= n) continue;
#pragma unroll
            for (int t = 0; t < MIX_T; ++t) {
                const int d = t * 32 + lane;
                if (d < dh) dv[base + (size_t)m * W + d] = acc[r][t];
            }
        }
    }
}
