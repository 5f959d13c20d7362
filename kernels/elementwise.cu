// Elementwise and normalisation kernels (bias, column sums, activations, dropout, padding
// masks, layer norm, rotary embedding, full-buffer reductions): small, simple, correct. Each
// op's forward and backward sit side by side. Conventions: common.cuh (f32 row-major, `int`
// shapes, `size_t` flat counts, `unsigned` ids, `unsigned long long` seeds). The other families
// live in embedding.cu, loss.cu and optim.cu.
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS. "flat" = 1-D grid-stride loop: any grid, block 256 (e.g.
// grid = min(ceil(count / 256), 4·132·8)); no dynamic shared memory anywhere in this file.
//
// fill_f32      flat   (float* x, float value, size_t count)
// axpy_f32      flat   (float* y, const float* x, float alpha, size_t count)       y += alpha·x
// scale_f32     flat   (float* y, const float* x, float alpha, size_t count)       y = alpha·x
// bias_add      flat   (float* y, const float* bias, int rows, int cols)           y[r,c] += b[c]
// col_sum       grid (ceil(cols / 32), G), block (32, 8)
//               (const float* x, float* out, int rows, int cols, int accumulate)
//               G == 1: out[c] (+)= Σ_r x[r,c] (accumulate = 1 adds to out).
//               G > 1 : out[g·cols + c] = Σ over rows r = 8g + y + 8G·k of chunk g (partials, overwritten);
//                       then a second launch col_sum(partials, out, G, cols, acc) with G = 1.
// relu_fwd      flat   (const float* x, float* y, size_t count)
// relu_bwd      flat   (const float* x, const float* dy, float* dx, size_t count)  x = input
// gelu_fwd      flat   (const float* x, float* y, size_t count)   tanh approximation
// gelu_bwd      flat   (const float* x, const float* dy, float* dx, size_t count)
// dropout_fwd   flat   (const float* x, float* y, size_t count, float p, unsigned long long seed)
//               element e kept iff keep(seed, e, p); kept values × 1/(1−p). Its own backward:
//               the same launch on dy with the same seed applies the same mask
// row_mask      grid (B·n), block 256   (float* x, const unsigned* start, int n, int cols)
//               x: [B·n, cols]; zeroes rows r = b·n + i with i < start[b]
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
//               col_sum(ws_dgamma, dgamma, G, cols, acc) and the same for dbeta.
// rope_fwd      flat over B·n·H·ceil(dh/2) slots  (const float* x, float* y, int B, int n, int H, int dh)
// rope_bwd      flat over the same slots          (const float* dy, float* dx, int B, int n, int H, int dh)
//               x, y: [B, n, H·dh]; slot c < dh/2 rotates the pair (2c, 2c+1); with dh odd the
//               last slot copies element dh−1 unchanged. y may alias x (each thread reads its
//               pair first).
// sumsq         grid (G), block 256   (const float* x, size_t count, float* partials)
//               partials[g] = Σ x² over the grid-stride share of block g (G floats)
// sum_part      grid (G), block 256   (const float* x, size_t count, float* partials)
//               partials[g] = Σ x over the grid-stride share of block g (G floats)
// sum_f32       grid (1), block 256   (const float* x, size_t count, float* out)  out[0] = Σ x
//               (finishes sumsq / sum_part: the global gradient norm is sqrt(sum_f32(partials)))
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"

using namespace pasa;

// ─── basic arithmetic ───────────────────────────────────────────────────────────────────────
extern "C" __global__ void fill_f32(float* x, float value, size_t count) {
    GRID_STRIDE(e, count) x[e] = value;
}

extern "C" __global__ void axpy_f32(float* y, const float* x, float alpha, size_t count) {
    GRID_STRIDE(e, count) y[e] = fmaf(alpha, x[e], y[e]);
}

extern "C" __global__ void scale_f32(float* y, const float* x, float alpha, size_t count) {
    GRID_STRIDE(e, count) y[e] = alpha * x[e];
}

// ─── bias: forward adds a row vector, backward is its column sum ────────────────────────────
extern "C" __global__ void bias_add(float* y, const float* bias, int rows, int cols) {
    GRID_STRIDE(e, (size_t)rows * cols) y[e] += bias[e % cols];
}

// Column sums without atomics: block (32, 8) owns 32 columns (threadIdx.x, coalesced reads) and
// a chunk of rows (grid.y = G chunks, rows strided by 8·G); the 8 row-lanes meet in shared memory.
extern "C" __global__ void col_sum(const float* x, float* out, int rows, int cols,
                                   int accumulate) {
    __shared__ float part[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < cols)
        for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += gridDim.y * 8)
            s += x[(size_t)r * cols + c];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || c >= cols) return;
    float t = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) t += part[k][threadIdx.x];
    if (gridDim.y == 1) {
        out[c] = accumulate ? out[c] + t : t;
    } else {
        out[(size_t)blockIdx.y * cols + c] = t;
    }
}

// ─── activations ────────────────────────────────────────────────────────────────────────────
extern "C" __global__ void relu_fwd(const float* x, float* y, size_t count) {
    GRID_STRIDE(e, count) y[e] = x[e] > 0.0f ? x[e] : 0.0f;
}

extern "C" __global__ void relu_bwd(const float* x, const float* dy, float* dx, size_t count) {
    GRID_STRIDE(e, count) dx[e] = x[e] > 0.0f ? dy[e] : 0.0f;
}

// GELU, tanh approximation: 0.5·x·(1 + tanh(k(x + a x³))), k = √(2/π), a = 0.044715.
namespace {
constexpr float GELU_K = 0.7978845608028654f;
constexpr float GELU_A = 0.044715f;
}

extern "C" __global__ void gelu_fwd(const float* x, float* y, size_t count) {
    GRID_STRIDE(e, count) {
        const float v = x[e];
        const float t = tanhf(GELU_K * (v + GELU_A * v * v * v));
        y[e] = 0.5f * v * (1.0f + t);
    }
}

// d/dx = 0.5(1 + t) + 0.5 x (1 − t²) k (1 + 3a x²)
extern "C" __global__ void gelu_bwd(const float* x, const float* dy, float* dx, size_t count) {
    GRID_STRIDE(e, count) {
        const float v = x[e];
        const float t = tanhf(GELU_K * (v + GELU_A * v * v * v));
        const float dt = GELU_K * (1.0f + 3.0f * GELU_A * v * v);
        dx[e] = dy[e] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * dt);
    }
}

// ─── dropout: the mask is a function of (seed, element index), so the backward reuses it ───
extern "C" __global__ void dropout_fwd(const float* x, float* y, size_t count, float p,
                                       unsigned long long seed) {
    const float inv = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    GRID_STRIDE(e, count) y[e] = keep(seed, e, p) ? x[e] * inv : 0.0f;
}

// ─── padding rows: its own backward (zeroing the same rows of the gradient) ─────────────────
extern "C" __global__ void row_mask(float* x, const unsigned* start, int n, int cols) {
    const int r = blockIdx.x, b = r / n, i = r % n;
    if (i >= (int)start[b]) return;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) x[(size_t)r * cols + c] = 0.0f;
}

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

// ─── rotary embedding: rotate pair (2c, 2c+1) of each head by i·θ_c, θ_c = 10000^(−2c/dh) ───
// The angle and its sine/cosine are computed in double and rounded once to f32: with positions
// up to 2048 the angle is large, and an f32 θ would put ~1e-4 rad of platform-dependent error
// into it; in double both backends round the same correctly-rounded-ish value.
namespace {
__device__ __forceinline__ void rope_angle(int i, int c, int dh, float* cs, float* sn) {
    const double theta = pow(10000.0, -2.0 * (double)c / (double)dh);
    const double ang = (double)i * theta;
    *cs = (float)cos(ang);
    *sn = (float)sin(ang);
}
}  // namespace

extern "C" __global__ void rope_fwd(const float* x, float* y, int B, int n, int H, int dh) {
    const int half = dh / 2, slots = (dh + 1) / 2;
    GRID_STRIDE(e, (size_t)B * n * H * slots) {
        const int c = (int)(e % slots);
        const size_t rowhead = e / slots;             // (b·n + i)·H + h
        const size_t off = rowhead * dh + 2 * c;      // [B, n, H·dh]: row·(H·dh) + h·dh + 2c
        if (c == half) {                              // odd dh: the last element is kept
            y[off] = x[off];
            continue;
        }
        const int i = (int)((rowhead / H) % n);
        float cs, sn;
        rope_angle(i, c, dh, &cs, &sn);
        const float a = x[off], b = x[off + 1];
        y[off] = a * cs - b * sn;
        y[off + 1] = a * sn + b * cs;
    }
}

// The rotation is orthogonal: the backward rotates the gradient by −angle.
extern "C" __global__ void rope_bwd(const float* dy, float* dx, int B, int n, int H, int dh) {
    const int half = dh / 2, slots = (dh + 1) / 2;
    GRID_STRIDE(e, (size_t)B * n * H * slots) {
        const int c = (int)(e % slots);
        const size_t rowhead = e / slots;
        const size_t off = rowhead * dh + 2 * c;
        if (c == half) {
            dx[off] = dy[off];
            continue;
        }
        const int i = (int)((rowhead / H) % n);
        float cs, sn;
        rope_angle(i, c, dh, &cs, &sn);
        const float a = dy[off], b = dy[off + 1];
        dx[off] = a * cs + b * sn;
        dx[off + 1] = -a * sn + b * cs;
    }
}

// ─── full-buffer reductions: per-block partials (Σx² or Σx), then one final sum ─────────────
extern "C" __global__ void __launch_bounds__(256)
    sumsq(const float* x, size_t count, float* partials) {
    __shared__ float scratch[32];
    float s = 0.0f;
    GRID_STRIDE(e, count) s = fmaf(x[e], x[e], s);
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

extern "C" __global__ void __launch_bounds__(256)
    sum_part(const float* x, size_t count, float* partials) {
    __shared__ float scratch[32];
    float s = 0.0f;
    GRID_STRIDE(e, count) s += x[e];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

extern "C" __global__ void __launch_bounds__(256) sum_f32(const float* x, size_t count, float* out) {
    __shared__ float scratch[32];
    float s = 0.0f;
    GRID_STRIDE(e, count) s += x[e];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = s;
}
