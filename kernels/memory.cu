// The memory family: fills, axpy, scaling and the sum of squares over flat buffers (the
// copies and transfers are driver calls, no kernel). Conventions: common.cuh (f32 row-major,
// `int` shapes, `size_t` flat counts).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS. "flat" = 1-D grid-stride loop: any grid, block 256 (e.g.
// grid = min(ceil(count / 256), 16·SMs)); no dynamic shared memory anywhere in this file.
//
// fill_f32      flat   (float* x, float value, size_t count)
// axpy_f32      flat   (float* y, const float* x, float alpha, size_t count)       y += alpha·x
// scale_f32     flat   (float* y, const float* x, float alpha, size_t count)       y = alpha·x
// sumsq         grid (G), block 256   (const float* x, size_t count, float* partials)
//               partials[g] = Σ x² over the grid-stride share of block g (G floats)
// sum_f32       grid (1), block 256   (const float* x, size_t count, float* out)  out[0] = Σ x
//               (finishes sumsq: the global gradient norm is sqrt(sum_f32(partials)))
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

// ─── sum of squares: per-block partials, then one final sum ─────────────────────────────────
extern "C" __global__ void __launch_bounds__(256)
    sumsq(const float* x, size_t count, float* partials) {
    __shared__ float scratch[32];
    float s = 0.0f;
    GRID_STRIDE(e, count) s = fmaf(x[e], x[e], s);
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
