// The norm family: layer norm forward (a warp per row) and backward in two kernels: dx and
// per-block partials of the parameter gradients in one pass, then the partials summed into
// the (accumulated) parameter gradients. No atomics: the sums have a fixed order.
// Conventions: common.cuh (f32 row-major, `int` shapes).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS.
//
// layernorm_fwd grid (ceil(rows / 8)), block 256 (warp per row)
//               (const float* x, const float* gamma, const float* beta, float* y,
//                float* mean, float* rstd, int rows, int cols, float eps)
// layernorm_bwd grid (G), block 32·W (W warps), dynamic shared memory 2·W·cols floats
//               (const float* dy, const float* x, const float* gamma, const float* mean,
//                const float* rstd, float* dx, float* ws, int rows, int cols,
//                int rows_per_block, int accumulate_dx)
//               block g owns rows [g·rows_per_block, (g+1)·rows_per_block): dx of those rows
//               (overwritten, or added to when accumulate_dx), and the block's partial sums
//               ws[g·2·cols + c] = Σ dy·x̂ (dgamma) and ws[g·2·cols + cols + c] = Σ dy (dbeta)
// layernorm_bwd_reduce grid (ceil(2·cols / 256)), block 256
//               (const float* ws, float* dparams, int blocks, int cols)
//               dparams[c] += Σ_g ws[g·2·cols + c] for c < 2·cols (dgamma, then dbeta), g in order
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"

using namespace pasa;

// ─── layer norm: warp per row; two passes over the row (mean, then centred variance) ───────
extern "C" __global__ void layernorm_fwd(const float* x, const float* gamma, const float* beta,
                                         float* y, float* mean, float* rstd, int rows, int cols,
                                         float eps) {
    const int r = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float* xr = x + (size_t)r * cols;
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32) s += xr[c];
    const float mu = warp_sum(s) / (float)cols;
    float ss = 0.0f;
    for (int c = lane; c < cols; c += 32) {
        const float dlt = xr[c] - mu;
        ss = fmaf(dlt, dlt, ss);
    }
    const float rs = 1.0f / sqrtf(warp_sum(ss) / (float)cols + eps);
    float* yr = y + (size_t)r * cols;
    for (int c = lane; c < cols; c += 32) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
    if (lane == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)),  g = dy·gamma, x̂ = (x − mean)·rstd; each warp
// also sums dy·x̂ and dy over its rows per column in its own shared slice, and the block adds
// the W slices in warp order into its partials.
extern "C" __global__ void layernorm_bwd(const float* dy, const float* x, const float* gamma,
                                         const float* mean, const float* rstd, float* dx,
                                         float* ws, int rows, int cols, int rows_per_block,
                                         int accumulate_dx) {
    PASA_DYNAMIC_SMEM(float, sh);  // [W][2][cols]
    const int warps = blockDim.x >> 5, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* mine = sh + (size_t)w * 2 * cols;
    for (int c = lane; c < 2 * cols; c += 32) mine[c] = 0.0f;
    const int r0 = blockIdx.x * rows_per_block;
    const int r1 = min(rows, r0 + rows_per_block);
    for (int r = r0 + w; r < r1; r += warps) {
        const size_t off = (size_t)r * cols;
        const float mu = mean[r], rs = rstd[r];
        float sg = 0.0f, sgx = 0.0f;
        for (int c = lane; c < cols; c += 32) {
            const float g = dy[off + c] * gamma[c];
            sg += g;
            sgx = fmaf(g, (x[off + c] - mu) * rs, sgx);
        }
        const float mg = warp_sum(sg) / (float)cols, mgx = warp_sum(sgx) / (float)cols;
        for (int c = lane; c < cols; c += 32) {
            const float xh = (x[off + c] - mu) * rs;
            const float v = rs * (dy[off + c] * gamma[c] - mg - xh * mgx);
            dx[off + c] = accumulate_dx ? dx[off + c] + v : v;
            mine[c] = fmaf(dy[off + c], xh, mine[c]);
            mine[cols + c] += dy[off + c];
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < 2 * cols; c += blockDim.x) {
        float t = 0.0f;
        for (int k = 0; k < warps; ++k) t += sh[(size_t)k * 2 * cols + c];
        ws[(size_t)blockIdx.x * 2 * cols + c] = t;
    }
}

extern "C" __global__ void layernorm_bwd_reduce(const float* ws, float* dparams, int blocks,
                                                int cols) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= 2 * cols) return;
    float t = 0.0f;
    for (int g = 0; g < blocks; ++g) t += ws[(size_t)g * 2 * cols + c];
    dparams[c] += t;
}
