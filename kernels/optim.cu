// Adam over the flat parameter buffer. Conventions: common.cuh.
//
// ─────────────────────────────────────────────────────────────────────────────────────────────
// LAUNCH CONTRACT. "flat" = 1-D grid-stride loop: any grid, block 256; no shared memory.
//
// adam          flat   (AdamParams p)   by value, params.cuh: p.param, p.grad, p.m, p.v,
//                       p.count, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.step,
//                       p.grad_scale
//               param, m, v updated in place; step is 1-based (bias corrections)
// ─────────────────────────────────────────────────────────────────────────────────────────────

#include "common.cuh"
#include "params.cuh"

using namespace pasa;

// ─── Adam over the flat parameter buffer (one launch for all tensors) ──────────────────────
// gs scales the gradient (clipping). Bias corrections 1 − β^step are evaluated in double and
// rounded once, so that every thread (and the CPU, which should do the same) agrees exactly.
// Weight decay is decoupled (AdamW): it is added to the step, not to the moments.
extern "C" __global__ void adam(const AdamParams p) {
    float* param = p.param;
    const float* grad = p.grad;
    float* m = p.m;
    float* v = p.v;
    const float lr = p.lr, beta1 = p.beta1, beta2 = p.beta2, eps = p.eps;
    const float weight_decay = p.weight_decay, grad_scale = p.grad_scale;
    const int step = p.step;
    const size_t count = p.count;
    const float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    const float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    GRID_STRIDE(e, count) {
        const float g = grad[e] * grad_scale;
        const float mm = beta1 * m[e] + (1.0f - beta1) * g;
        const float vv = beta2 * v[e] + (1.0f - beta2) * g * g;
        m[e] = mm;
        v[e] = vv;
        const float mhat = mm / bc1, vhat = vv / bc2;
        param[e] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[e]);
    }
}
