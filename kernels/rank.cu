// Ranking for evaluation (the Rank family of src/backend/mod.rs): per row of a score matrix, the
// target's rank, the NaN count and the top-K ids, with the conventions of src/eval.rs; the
// reference is src/backend/cpu/rank.rs. Conventions: common.cuh.
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACTS
//
// rank_rows     grid (rows), block 256 (one block per row), dynamic shared memory
//               4·ceil(vocab / 32) bytes when mode = 1 (the excluded items' bitmap), else 0
//               (const float* scores, const unsigned* targets, const unsigned* offsets,
//                const unsigned* items, unsigned* out, int rows, int vocab, int mode)
//               scores [rows, vocab], column 0 the padding item (never ranked); targets [rows];
//               mode 0: candidates are every item 1..vocab−1 (offsets, items unused, may be 0);
//               mode 1: every item except row r's items[offsets[r]..offsets[r+1]];
//               mode 2: the target and row r's items[offsets[r]..offsets[r+1]] only.
//               Listed ids are distinct, in 1..vocab−1, never the row's target (the bitmap is
//               built with atomicAdd, which is an OR only for distinct bits).
//               out [rows, RANK_ROW]: rank (candidates ≠ target scoring ≥ the target, or all
//               of them when the target is NaN), NaN count over the candidates (target
//               included), then the RANK_K best ids by (score desc, NaN last, lower id first),
//               0 past the last. A target of 0 or ≥ vocab: rank 0xffffffff, the rest 0.
// ─────────────────────────────────────────────────────────────────────────────────────────────
//
// The top-K is a radix select over the candidates' 64-bit keys (key = the score's order-
// preserving bits << 32 | ~id, as `rank_key` in src/backend/cpu/rank.rs; keys are distinct
// because ids are): 8 bits a pass from the top, each pass a shared histogram of the next digit
// among the candidates that match the digits chosen so far, until the bucket holding the K-th
// largest key is needed whole. Every key at or above that bucket is then one of the top K
// (exactly K of them); they are gathered in shared memory and each is placed by counting the
// larger ones. Random scores settle in 3–4 passes, ties need the id digits too (at most 8).

#include "common.cuh"

using namespace pasa;

namespace {

// src/backend/mod.rs: RANK_K, RANK_ROW, RANK_SKIPPED.
constexpr int RANK_K = 50;
constexpr int RANK_ROW = 2 + RANK_K;
constexpr unsigned RANK_SKIPPED = 0xffffffffu;
constexpr int RANK_BLOCK = 256;

constexpr int MODE_ALL = 0;
constexpr int MODE_EXCEPT = 1;
constexpr int MODE_ONLY = 2;

// The score half of a key: higher scores give larger integers, NaN gives 0 (below −inf, which
// gives 0x007fffff), −0 the same as +0.
__device__ __forceinline__ unsigned score_bits(float s) {
    if (s != s) return 0u;
    union {
        float f;
        unsigned u;
    } v;
    v.f = s + 0.0f;  // −0 + 0 = +0
    return (v.u & 0x80000000u) ? ~v.u : (v.u | 0x80000000u);
}

__device__ __forceinline__ unsigned long long rank_key(float s, unsigned id) {
    return ((unsigned long long)score_bits(s) << 32) | (unsigned long long)(~id);
}

__device__ __forceinline__ unsigned warp_sum_u32(unsigned x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

// Block-wide sum of unsigned counts (exact, unlike the float block_sum); every thread gets it.
__device__ __forceinline__ unsigned block_sum_u32(unsigned x, unsigned* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    x = warp_sum_u32(x);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < nwarps ? scratch[lane] : 0u;
    return warp_sum_u32(x);
}

// One row's candidates: calls f(id, score) for each, spread over the block's threads.
struct Row {
    const float* s;
    int vocab;
    unsigned target;
    int mode;
    const unsigned* bits;  // MODE_EXCEPT: bit i set = item i excluded
    const unsigned* list;
    unsigned len;
};

template <class F>
__device__ __forceinline__ void for_each_candidate(const Row& r, F f) {
    if (r.mode == MODE_ONLY) {
        for (unsigned j = threadIdx.x; j <= r.len; j += blockDim.x) {
            const unsigned id = j == 0 ? r.target : r.list[j - 1];
            if (id < (unsigned)r.vocab) f(id, r.s[id]);
        }
    } else {
        for (int c = 1 + threadIdx.x; c < r.vocab; c += blockDim.x) {
            if (r.mode == MODE_EXCEPT && ((r.bits[c >> 5] >> (c & 31)) & 1u)) continue;
            f((unsigned)c, r.s[c]);
        }
    }
}

// Warp 0: the digit whose bucket holds the `need`-th largest key of the histogram, counting
// from digit 255 down. Lane l sums digits 255−8l … 248−8l; an inclusive scan over the lanes
// finds the lane whose range crosses `need`, which walks its 8 digits. Writes pick[0] = the
// digit, pick[1] = the rank still needed inside its bucket, pick[2] = 1 when the whole bucket
// is needed (the selection is then complete).
__device__ __forceinline__ void pick_digit(const unsigned* hist, unsigned need, unsigned* pick) {
    const int lane = threadIdx.x;
    const int top = 255 - 8 * lane;
    unsigned mine = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) mine += hist[top - i];
    unsigned incl = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const unsigned v = __shfl_up_sync(FULL_MASK, incl, o);
        if (lane >= o) incl += v;
    }
    unsigned cum = incl - mine;
    if (cum < need && need <= incl) {
        for (int i = 0; i < 8; ++i) {
            const unsigned h = hist[top - i];
            if (cum + h >= need) {
                pick[0] = (unsigned)(top - i);
                pick[1] = need - cum;
                pick[2] = h == need - cum;
                break;
            }
            cum += h;
        }
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(RANK_BLOCK)
    rank_rows(const float* scores, const unsigned* targets, const unsigned* offsets,
              const unsigned* items, unsigned* out, int rows, int vocab, int mode) {
    __shared__ unsigned hist[256];
    __shared__ unsigned long long top[RANK_K];
    __shared__ unsigned scratch[32];
    __shared__ unsigned pick[3];
    __shared__ unsigned found;
    const int r = blockIdx.x;
    if (r >= rows) return;
    unsigned* o = out + (size_t)r * RANK_ROW;
    const unsigned target = targets[r];
    if (target == 0 || target >= (unsigned)vocab) {
        for (int i = threadIdx.x; i < RANK_ROW; i += blockDim.x) o[i] = i == 0 ? RANK_SKIPPED : 0u;
        return;
    }
    Row row{scores + (size_t)r * vocab, vocab, target, mode, nullptr, nullptr, 0u};
    if (mode != MODE_ALL) {
        row.list = items + offsets[r];
        row.len = offsets[r + 1] - offsets[r];
    }
    if (mode == MODE_EXCEPT) {
        PASA_DYNAMIC_SMEM(unsigned, bits);  // only launched with it in this mode
        row.bits = bits;
        const int words = (vocab + 31) >> 5;
        for (int w = threadIdx.x; w < words; w += blockDim.x) bits[w] = 0u;
        __syncthreads();
        for (unsigned j = threadIdx.x; j < row.len; j += blockDim.x) {
            const unsigned id = row.list[j];
            if (id != 0 && id < (unsigned)vocab && id != target)
                atomicAdd(&bits[id >> 5], 1u << (id & 31));
        }
        __syncthreads();
    }

    // The rank and the NaN count.
    const float t = row.s[target];
    unsigned cand = 0, nans = 0, above = 0;
    for_each_candidate(row, [&](unsigned id, float s) {
        cand += 1;
        nans += s != s;
        above += id != target && s >= t;  // false for every s when t is NaN
    });
    cand = block_sum_u32(cand, scratch);
    nans = block_sum_u32(nans, scratch);
    above = block_sum_u32(above, scratch);

    // The top K: every key ≥ `floor` (all of them when there are at most K candidates).
    unsigned long long floor = 0;
    if (cand > (unsigned)RANK_K) {
        unsigned long long prefix = 0, mask = 0;
        unsigned need = RANK_K;
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0u;
            __syncthreads();
            for_each_candidate(row, [&](unsigned id, float s) {
                const unsigned long long k = rank_key(s, id);
                if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255u], 1u);
            });
            __syncthreads();
            if (threadIdx.x < 32) pick_digit(hist, need, pick);
            __syncthreads();
            prefix |= (unsigned long long)pick[0] << shift;
            mask |= 0xffull << shift;
            need = pick[1];
            const bool done = pick[2] != 0;
            // pick and hist are rewritten only after the next pass's first barrier.
            if (done) break;
        }
        floor = prefix;
    }
    if (threadIdx.x == 0) found = 0u;
    __syncthreads();
    for_each_candidate(row, [&](unsigned id, float s) {
        const unsigned long long k = rank_key(s, id);
        if (k >= floor) {
            const unsigned at = atomicAdd(&found, 1u);
            if (at < (unsigned)RANK_K) top[at] = k;
        }
    });
    __syncthreads();
    const unsigned m = found < (unsigned)RANK_K ? found : (unsigned)RANK_K;
    for (int i = threadIdx.x; i < RANK_K; i += blockDim.x) {
        if ((unsigned)i < m) {
            const unsigned long long k = top[i];
            unsigned at = 0;
            for (unsigned j = 0; j < m; ++j) at += top[j] > k;
            o[2 + at] = ~(unsigned)k;
        } else {
            o[2 + i] = 0u;
        }
    }
    if (threadIdx.x == 0) {
        o[0] = (t != t) ? cand - 1 : above;
        o[1] = nans;
    }
}
