// Embedding lookups: gather forward, scatter-add backward. Conventions: common.cuh (f32
// row-major, `int` shapes, `size_t` flat counts, `unsigned` ids).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS. "flat" = 1-D grid-stride loop: any grid, block 256; no shared memory.
//
// embedding_fwd flat over rows·cols  (const unsigned* ids, const float* table, float* out,
//                                     int rows, int cols, float scale)
//               out[r, c] = scale·table[ids[r], c]   (out overwritten)
// embedding_bwd flat over rows·cols  (const unsigned* ids, const float* dout, float* dtable,
//                                     int rows, int cols, float scale)
//               dtable[ids[r], c] += scale·dout[r, c]   (accumulates, atomicAdd)
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"

using namespace pasa;

// ─── embedding: gather forward, scatter-add backward ────────────────────────────────────────
extern "C" __global__ void embedding_fwd(const unsigned* ids, const float* table, float* out,
                                         int rows, int cols, float scale) {
    GRID_STRIDE(e, (size_t)rows * cols) {
        const size_t r = e / cols, c = e % cols;
        out[e] = table[(size_t)ids[r] * cols + c] * scale;
    }
}

// Repeated ids collide; atomics are the simple answer (few collisions per element).
extern "C" __global__ void embedding_bwd(const unsigned* ids, const float* dout, float* dtable,
                                         int rows, int cols, float scale) {
    GRID_STRIDE(e, (size_t)rows * cols) {
        const size_t r = e / cols, c = e % cols;
        atomicAdd(&dtable[(size_t)ids[r] * cols + c], scale * dout[e]);
    }
}
