// The fused attention family's kernels that do not depend on the precision mode: the
// backward's preprocessing, the kernel-gradient reduction of the `mix` reading and the `mix`
// reading's value mixing (DESIGN §1–2). The forward and backward themselves, specialised at
// compile time, are in attention.cuh (instantiated by attention_{fp32,tf32,bf16}.cu).
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
// LAUNCH CONTRACTS (the Rust launcher follows these)
//
// attn_bwd_preprocess
//   grid   (ceil(B·n·H / 8)), block 256 (one warp per (b, i, h) row)
//   params (const float* dy, const float* y, float* D, float* dq, int B, int n, int H, int dh)
//   D[b,h,i] = dy_i·y_i (0 on padded rows); also zeroes dq (skipped when dq is null), which
//   attn_bwd accumulates into. Must run before attn_bwd on the same stream.
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
//   Used for mix_bwd's dL (layout = l_kind); no launcher uses layout 3 since attn_bwd reduces
//   its own gradients on chip.
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

#include "attention.cuh"

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
