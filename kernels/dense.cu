// The dense family's kernel: the bias add (its backward, the column sum, is a cuBLAS GEMM
// against a vector of ones). The matrix products are cuBLAS calls (src/backend/cuda/dense.rs).
// Conventions: common.cuh (f32 row-major, `int` shapes).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS. No dynamic shared memory anywhere in this file.
//
// bias_add      flat (1-D grid-stride, block 256)
//               (float* y, const float* bias, int rows, int cols, size_t count, size_t stride)
//               y: [count, rows, cols]; y[i,r,c] += bias[i·stride + c]
// (column sums are a cuBLAS GEMM against a vector of ones: src/backend/cuda/dense.rs)
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"

using namespace pasa;

// ─── bias: forward adds a row vector, backward is its column sum ────────────────────────────
extern "C" __global__ void bias_add(float* y, const float* bias, int rows, int cols,
                                    size_t count, size_t stride) {
    const size_t slab = (size_t)rows * cols;
    GRID_STRIDE(e, count * slab) y[e] += bias[(e / slab) * stride + e % (size_t)cols];
}
