// The pointwise family: activations (with their dropout), the residual add (dropout and
// padding-row mask fused in) and the rotary embedding.
// Each op's forward and backward sit side by side. Conventions: common.cuh (f32 row-major,
// `int` shapes, `size_t` flat counts, `unsigned` ids, `unsigned long long` seeds).
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS. "flat" = 1-D grid-stride loop: any grid, block 256; no dynamic shared
// memory anywhere in this file.
//
// Dropout everywhere: element e kept iff keep(seed, e, p); kept values × 1/(1−p); p = 0 keeps
// everything unscaled.
// relu_fwd      flat   (const float* x, float* y, size_t count, float p, unsigned long long seed)
//               y = drop(relu(x))
// relu_bwd      flat   (const float* x, const float* dy, float* dx, size_t count, float p,
//                       unsigned long long seed)          dx = relu′(x)·drop(dy); x = the input
// gelu_fwd, gelu_bwd   the same with GELU (tanh approximation)
// residual_fwd  flat   (const float* x, const float* o, float* y, const unsigned* start, int n,
//                       int cols, size_t count, float p, unsigned long long seed)
//               y = mask(x + drop(o)); x null: mask(drop(o)); start null: no mask, else rows
//               r = b·n + i of [B·n, cols] with i < start[b] are zeroed
// residual_bwd  flat   (const float* dy, float* dx, float* d_o, const unsigned* start, int n,
//                       int cols, size_t count, float p, unsigned long long seed)
//               g = mask(dy); dx = g (dx null: not written); d_o = drop(g)
// row_mask      grid (B·n), block 256   (float* x, const unsigned* start, int n, int cols)
//               x: [B·n, cols]; zeroes rows r = b·n + i with i < start[b]
// rope_fwd      flat over B·n·H·ceil(dh/2) slots  (const float* x, float* y, int B, int n, int H, int dh)
// rope_bwd      flat over the same slots          (const float* dy, float* dx, int B, int n, int H, int dh)
//               x, y: [B, n, H·dh]; slot c < dh/2 rotates the pair (2c, 2c+1); with dh odd the
//               last slot copies element dh−1 unchanged. y may alias x (each thread reads its
//               pair first).
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"

using namespace pasa;

// ─── dropout as a multiplier of element e ──────────────────────────────────────────────────
namespace {
__device__ __forceinline__ float dropped(float v, size_t e, float p, unsigned long long seed) {
    if (p <= 0.0f) return v;
    return keep(seed, e, p) ? v * (1.0f / (1.0f - p)) : 0.0f;
}
}  // namespace

// ─── activations, with the dropout that follows them ────────────────────────────────────────
extern "C" __global__ void relu_fwd(const float* x, float* y, size_t count, float p,
                                    unsigned long long seed) {
    GRID_STRIDE(e, count) y[e] = dropped(x[e] > 0.0f ? x[e] : 0.0f, e, p, seed);
}

extern "C" __global__ void relu_bwd(const float* x, const float* dy, float* dx, size_t count,
                                    float p, unsigned long long seed) {
    GRID_STRIDE(e, count) dx[e] = x[e] > 0.0f ? dropped(dy[e], e, p, seed) : 0.0f;
}

// GELU, tanh approximation: 0.5·x·(1 + tanh(k(x + a x³))), k = √(2/π), a = 0.044715.
namespace {
constexpr float GELU_K = 0.7978845608028654f;
constexpr float GELU_A = 0.044715f;
}

extern "C" __global__ void gelu_fwd(const float* x, float* y, size_t count, float p,
                                    unsigned long long seed) {
    GRID_STRIDE(e, count) {
        const float v = x[e];
        const float t = tanhf(GELU_K * (v + GELU_A * v * v * v));
        y[e] = dropped(0.5f * v * (1.0f + t), e, p, seed);
    }
}

// d/dx = 0.5(1 + t) + 0.5 x (1 − t²) k (1 + 3a x²)
extern "C" __global__ void gelu_bwd(const float* x, const float* dy, float* dx, size_t count,
                                    float p, unsigned long long seed) {
    GRID_STRIDE(e, count) {
        const float v = x[e];
        const float t = tanhf(GELU_K * (v + GELU_A * v * v * v));
        const float dt = GELU_K * (1.0f + 3.0f * GELU_A * v * v);
        dx[e] = dropped(dy[e], e, p, seed) * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * dt);
    }
}

// ─── residual add of a dropped-out branch, padding rows zeroed: one pass instead of three ───
namespace {
__device__ __forceinline__ bool padded(size_t e, const unsigned* start, int n, int cols) {
    if (start == nullptr) return false;
    const size_t r = e / (size_t)cols;
    return (unsigned)(r % (size_t)n) < start[r / (size_t)n];
}
}  // namespace

extern "C" __global__ void residual_fwd(const float* x, const float* o, float* y,
                                        const unsigned* start, int n, int cols, size_t count,
                                        float p, unsigned long long seed) {
    GRID_STRIDE(e, count) {
        if (padded(e, start, n, cols)) {
            y[e] = 0.0f;
        } else {
            const float v = dropped(o[e], e, p, seed);
            y[e] = x != nullptr ? x[e] + v : v;
        }
    }
}

extern "C" __global__ void residual_bwd(const float* dy, float* dx, float* d_o,
                                        const unsigned* start, int n, int cols, size_t count,
                                        float p, unsigned long long seed) {
    GRID_STRIDE(e, count) {
        const float g = padded(e, start, n, cols) ? 0.0f : dy[e];
        if (dx != nullptr) dx[e] = g;
        d_o[e] = dropped(g, e, p, seed);
    }
}

// ─── padding rows zeroed in place (the mix reading's launchers use it) ─────────────────────
extern "C" __global__ void row_mask(float* x, const unsigned* start, int n, int cols) {
    const int r = blockIdx.x, b = r / n, i = r % n;
    if (i >= (int)start[b]) return;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) x[(size_t)r * cols + c] = 0.0f;
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
