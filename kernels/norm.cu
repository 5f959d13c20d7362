// The norm family: layer norm forward and backward, a warp per row; the parameter
// gradients as per-chunk partials without atomics, finished by dense.cu's col_sum.
// Conventions: common.cuh (f32 row-major, `int` shapes).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS. No dynamic shared memory anywhere in this file.
//
// layernorm_fwd grid (ceil(rows / 8)), block 256 (warp per row)
//               (const float* x, const float* gamma, const float* beta, float* y,
//                float* mean, float* rstd, int rows, int cols, float eps)
// layernorm_bwd grid (ceil(rows / 8)), block 256 (warp per row)
//               (const float* dy, const float* x, const float* gamma, const float* mean,
//                const float* rstd, float* dx, int rows, int cols)            dx overwritten
// layernorm_bwd_params grid (ceil(cols / 32), G), block (32, 8)
//               (const float* dy, const float* x, const float* mean, const float* rstd,
//                float* ws_dgamma, float* ws_dbeta, int rows, int cols)
//               writes partials ws_*[g·cols + c] (G·cols floats each, overwritten); finish with
//               col_sum(ws_dgamma, dgamma, G, cols, acc) and the same for dbeta (dense.cu).
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

// dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)),  g = dy·gamma, x̂ = (x − mean)·rstd
extern "C" __global__ void layernorm_bwd(const float* dy, const float* x, const float* gamma,
                                         const float* mean, const float* rstd, float* dx,
                                         int rows, int cols) {
    const int r = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
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
        dx[off + c] = rs * (dy[off + c] * gamma[c] - mg - xh * mgx);
    }
}

// dgamma = Σ_r dy·x̂, dbeta = Σ_r dy: per-chunk partials laid out like col_sum's, no atomics.
extern "C" __global__ void layernorm_bwd_params(const float* dy, const float* x,
                                                const float* mean, const float* rstd,
                                                float* ws_dgamma, float* ws_dbeta, int rows,
                                                int cols) {
    __shared__ float pg[8][33], pb[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float sg = 0.0f, sb = 0.0f;
    if (c < cols)
        for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += gridDim.y * 8) {
            const size_t e = (size_t)r * cols + c;
            sg = fmaf(dy[e], (x[e] - mean[r]) * rstd[r], sg);
            sb += dy[e];
        }
    pg[threadIdx.y][threadIdx.x] = sg;
    pb[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y != 0 || c >= cols) return;
    float tg = 0.0f, tb = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        tg += pg[k][threadIdx.x];
        tb += pb[k][threadIdx.x];
    }
    ws_dgamma[(size_t)blockIdx.y * cols + c] = tg;
    ws_dbeta[(size_t)blockIdx.y * cols + c] = tb;
}
