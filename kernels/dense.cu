// The dense family's kernels: the bias add and its backward, the column sum. The matrix
// products themselves are cuBLAS calls (src/backend/cuda/dense.rs), no kernel here.
// Conventions: common.cuh (f32 row-major, `int` shapes).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS. No dynamic shared memory anywhere in this file.
//
// bias_add      flat (1-D grid-stride, block 256)
//               (float* y, const float* bias, int rows, int cols)           y[r,c] += b[c]
// col_sum       grid (ceil(cols / 32), G), block (32, 8)
//               (const float* x, float* out, int rows, int cols, int accumulate)
//               G == 1: out[c] (+)= Σ_r x[r,c] (accumulate = 1 adds to out).
//               G > 1 : out[g·cols + c] = Σ over rows r = 8g + y + 8G·k of chunk g (partials, overwritten);
//                       then a second launch col_sum(partials, out, G, cols, acc) with G = 1.
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"

using namespace pasa;

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
