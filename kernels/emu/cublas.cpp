// The fake libcublas of the CPU emulation: the handful of cuBLAS entry points cudarc's gemm and
// strided-batched gemm use, as a plain column-major reference with f64 accumulation (device
// pointers are host addresses, see driver.cpp). beta = 0 overwrites C without reading it, as
// cuBLAS does, so poisoned outputs stay a valid test. A GEMM on a stream that is capturing a
// graph is recorded into it (by value, alpha and beta included, as cuBLAS's host pointer mode
// passes them) through the emulated driver's emu_stream_enqueue, and runs when the graph does.
// In CUBLAS_TF32_TENSOR_OP_MATH mode (cublasSetMathMode) every operand is first rounded to TF32
// (10 mantissa bits, nearest, ties away), as the tensor cores take them.
#include <cstdint>
#include <cstdio>
#include <cstring>

typedef int cublasStatus_t;

// From the emulated libcuda (driver.cpp), which this library links against.
extern "C" int emu_stream_enqueue(void* stream, void (*call)(void*), void* data, void (*release)(void*));

namespace {
constexpr cublasStatus_t OK = 0, INVALID_VALUE = 7;
constexpr int TF32_TENSOR_OP_MATH = 3;
struct Handle {
    void* stream = nullptr;
    int math = 0;
};

// x as a TF32 operand (cvt.rna.tf32.f32; Inf and NaN kept).
inline float tf32(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    std::memcpy(&x, &u, 4);
    return x;
}

// Element (r, c) of op(X) for column-major X with leading dimension ld.
inline float at(const float* x, int ld, bool trans, long long r, long long c) {
    return trans ? x[c + r * (long long)ld] : x[r + c * (long long)ld];
}

// The argument checks cuBLAS makes when called.
cublasStatus_t check(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc) {
    if (m < 0 || n < 0 || k < 0 || ta < 0 || ta > 2 || tb < 0 || tb > 2) return INVALID_VALUE;
    if (lda < (ta != 0 ? k : m) || ldb < (tb != 0 ? n : k) || ldc < m) {
        std::fprintf(stderr, "emu cublas: leading dimensions too small (m %d n %d k %d lda %d ldb %d ldc %d)\n", m,
                     n, k, lda, ldb, ldc);
        return INVALID_VALUE;
    }
    return OK;
}

// C = alpha·op(A)·op(B) + beta·C, arguments already checked.
void gemm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
          float beta, float* c, int ldc, bool tf32_math) {
    const bool at_ = ta != 0, bt = tb != 0;
    const auto op = [tf32_math](float x) { return (double)(tf32_math ? tf32(x) : x); };
    for (long long j = 0; j < n; ++j)
        for (long long i = 0; i < m; ++i) {
            double s = 0.0;
            for (long long p = 0; p < k; ++p) s += op(at(a, lda, at_, i, p)) * op(at(b, ldb, bt, p, j));
            float& out = c[i + j * (long long)ldc];
            const float prev = beta == 0.0f ? 0.0f : beta * out;
            out = (float)(alpha * s) + prev;
        }
}

// One (strided-batched) GEMM call, by value.
struct Call {
    int ta, tb, m, n, k;
    float alpha, beta;
    const float* a;
    int lda;
    long long sa;
    const float* b;
    int ldb;
    long long sb;
    float* c;
    int ldc;
    long long sc;
    int batch;
    bool tf32_math;
};

void run(const Call& g) {
    for (int i = 0; i < g.batch; ++i)
        gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a + i * g.sa, g.lda, g.b + i * g.sb, g.ldb, g.beta, g.c + i * g.sc,
             g.ldc, g.tf32_math);
}

// Checks the arguments now (as cuBLAS does at the call), then runs the call or records it into
// the graph the handle's stream is capturing.
cublasStatus_t submit(void* h, const Call& g) {
    if (g.batch < 0) return INVALID_VALUE;
    if (const cublasStatus_t s = check(g.ta, g.tb, g.m, g.n, g.k, g.lda, g.ldb, g.ldc)) return s;
    auto* copy = new Call(g);
    if (emu_stream_enqueue(static_cast<Handle*>(h)->stream, [](void* p) { run(*static_cast<Call*>(p)); }, copy,
                           [](void* p) { delete static_cast<Call*>(p); }))
        return OK;
    run(*copy);
    delete copy;
    return OK;
}
}  // namespace

extern "C" {
cublasStatus_t cublasCreate_v2(void** h) {
    *h = new Handle;
    return OK;
}
cublasStatus_t cublasDestroy_v2(void* h) {
    delete static_cast<Handle*>(h);
    return OK;
}
cublasStatus_t cublasSetStream_v2(void* h, void* s) {
    static_cast<Handle*>(h)->stream = s;
    return OK;
}
cublasStatus_t cublasSetMathMode(void* h, int mode) {
    static_cast<Handle*>(h)->math = mode;
    return OK;
}
cublasStatus_t cublasSetWorkspace_v2(void*, void*, size_t) { return OK; }
cublasStatus_t cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a,
                              int lda, const float* b, int ldb, const float* beta, float* c, int ldc) {
    const bool tf32_math = static_cast<Handle*>(h)->math == TF32_TENSOR_OP_MATH;
    return submit(h, Call{ta, tb, m, n, k, *alpha, *beta, a, lda, 0, b, ldb, 0, c, ldc, 0, 1, tf32_math});
}
cublasStatus_t cublasSgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const float* alpha,
                                         const float* a, int lda, long long sa, const float* b, int ldb,
                                         long long sb, const float* beta, float* c, int ldc, long long sc,
                                         int batch) {
    const bool tf32_math = static_cast<Handle*>(h)->math == TF32_TENSOR_OP_MATH;
    return submit(h, Call{ta, tb, m, n, k, *alpha, *beta, a, lda, sa, b, ldb, sb, c, ldc, sc, batch, tf32_math});
}
}
