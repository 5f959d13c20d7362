// Losses: full-catalogue softmax cross-entropy and BCE against one sampled negative.
// Conventions: common.cuh (f32 row-major, `int` shapes, `unsigned` ids and targets,
// `unsigned long long` seeds). A target of 0 (padding position) is ignored: loss 0, gradient 0.
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS (no dynamic shared memory anywhere in this file)
//
// cross_entropy_in_place grid (rows), block 256
//               (float* logits, const unsigned* targets, float* loss, int rows, int vocab,
//                float scale)
//               logits [rows, vocab], vocab ≥ 2; column 0 is the padding item and never a
//               class. Writes loss[r] = lse_r − logits[r, t_r] and overwrites row r with
//               scale·(softmax − onehot(t_r)) (column 0 and ignored rows get 0)
// bce_fwd       grid (ceil(rows / 8)), block 256 (warp per row)
//               (const float* h, const float* table, const unsigned* targets, float* loss,
//                int rows, int d, int vocab, unsigned long long seed)
//               h [rows, d], table [vocab, d]; loss_r = −log σ(h_r·e_t) − log σ(−h_r·e_neg),
//               neg = sample_negative(seed, r, t, vocab) (bit-identical to src/backend/mod.rs)
// bce_bwd       grid (ceil(rows / 8)), block 256 (warp per row)
//               (const float* h, const float* table, const unsigned* targets, float* dh,
//                float* dtable, int rows, int d, int vocab, unsigned long long seed,
//                float scale)
//               dh overwritten (0 on ignored rows); dtable accumulates (atomicAdd) at the
//               target and negative rows; both scaled by `scale`
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"

using namespace pasa;

// ─── softmax cross-entropy over the catalogue; column 0 (padding item) is never a class ─────
// One block per row: the max, the sum of exponentials, then the gradient written over the
// logits. Every thread reads the target's logit before the first barrier, so before any
// thread overwrites it.
extern "C" __global__ void __launch_bounds__(256)
    cross_entropy_in_place(float* logits, const unsigned* targets, float* loss, int rows,
                           int vocab, float scale) {
    __shared__ float scratch[32];
    const int r = blockIdx.x;
    if (r >= rows) return;
    const unsigned t = targets[r];
    float* z = logits + (size_t)r * vocab;
    if (t == 0) {  // ignored row (padding position): loss 0, gradient 0
        for (int c = threadIdx.x; c < vocab; c += blockDim.x) z[c] = 0.0f;
        if (threadIdx.x == 0) loss[r] = 0.0f;
        return;
    }
    const float zt = z[t];
    float mx = -INFINITY;
    for (int c = 1 + threadIdx.x; c < vocab; c += blockDim.x) mx = fmaxf(mx, z[c]);
    mx = block_max(mx, scratch);
    float s = 0.0f;
    for (int c = 1 + threadIdx.x; c < vocab; c += blockDim.x) s += expf(z[c] - mx);
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) loss[r] = mx + logf(s) - zt;
    // Same arithmetic as the CPU: exp(z − max)·(scale/sum), then −scale at the target.
    const float k = scale / s;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        float g = 0.0f;
        if (c != 0) g = expf(z[c] - mx) * k - (c == (int)t ? scale : 0.0f);
        z[c] = g;
    }
}

// ─── BCE with one sampled negative per row ──────────────────────────────────────────────────
namespace {

// The negative item of row `row`: uniform over 1..vocab−1, never the target (redrawn with the
// next counter on a hit). Same arithmetic as `sample_negative` in src/backend/mod.rs.
__device__ __forceinline__ unsigned sample_negative(unsigned long long seed, int row,
                                                    unsigned target, int vocab) {
    const uint64_t items = vocab - 1 > 1 ? (uint64_t)(vocab - 1) : 1ull;
    for (uint64_t attempt = 0; attempt < 16; ++attempt) {
        const uint64_t hv = hash_u32(seed, (uint64_t)row * 16 + attempt);
        const unsigned neg = 1u + (unsigned)((hv * items) >> 32);
        if (neg != target || items == 1) return neg;
    }
    return 1u + (unsigned)(target % items);
}

// −log σ(x) = max(−x, 0) + log(1 + e^{−|x|}), as the CPU writes it (log, not log1p).
__device__ __forceinline__ float neg_log_sigmoid(float x) {
    return fmaxf(-x, 0.0f) + logf(1.0f + expf(-fabsf(x)));
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// h_r·table[a] and h_r·table[b] by one warp (every lane gets both sums).
__device__ __forceinline__ void warp_dots(const float* hr, const float* ta, const float* tb,
                                          int d, int lane, float* da, float* db) {
    float sa = 0.0f, sb = 0.0f;
    for (int c = lane; c < d; c += 32) {
        sa = fmaf(hr[c], ta[c], sa);
        sb = fmaf(hr[c], tb[c], sb);
    }
    *da = warp_sum(sa);
    *db = warp_sum(sb);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(256)
    bce_fwd(const float* h, const float* table, const unsigned* targets, float* loss, int rows,
            int d, int vocab, unsigned long long seed) {
    const int r = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const unsigned t = targets[r];
    if (t == 0) {
        if (lane == 0) loss[r] = 0.0f;
        return;
    }
    const unsigned neg = sample_negative(seed, r, t, vocab);
    float sp, sn;
    warp_dots(h + (size_t)r * d, table + (size_t)t * d, table + (size_t)neg * d, d, lane, &sp,
              &sn);
    if (lane == 0) loss[r] = neg_log_sigmoid(sp) + neg_log_sigmoid(-sn);
}

// d/dsp = σ(sp) − 1, d/dsn = σ(sn); dh_r = cp·e_t + cn·e_neg, de_t += cp·h_r, de_neg += cn·h_r.
extern "C" __global__ void __launch_bounds__(256)
    bce_bwd(const float* h, const float* table, const unsigned* targets, float* dh,
            float* dtable, int rows, int d, int vocab, unsigned long long seed, float scale) {
    const int r = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows) return;
    const unsigned t = targets[r];
    float* dhr = dh + (size_t)r * d;
    if (t == 0) {
        for (int c = lane; c < d; c += 32) dhr[c] = 0.0f;
        return;
    }
    const unsigned neg = sample_negative(seed, r, t, vocab);
    const float* hr = h + (size_t)r * d;
    const float* tp = table + (size_t)t * d;
    const float* tn = table + (size_t)neg * d;
    float sp, sn;
    warp_dots(hr, tp, tn, d, lane, &sp, &sn);
    const float cp = (sigmoid(sp) - 1.0f) * scale, cn = sigmoid(sn) * scale;
    for (int c = lane; c < d; c += 32) {
        dhr[c] = cp * tp[c] + cn * tn[c];
        atomicAdd(&dtable[(size_t)t * d + c], cp * hr[c]);
        atomicAdd(&dtable[(size_t)neg * d + c], cn * hr[c]);
    }
}
