// The fake libcublas of the CPU emulation: the handful of cuBLAS entry points cudarc's gemm and
// strided-batched gemm use, as a plain column-major reference with f64 accumulation (device
// pointers are host addresses, see driver.cpp). beta = 0 overwrites C without reading it, as
// cuBLAS does, so poisoned outputs stay a valid test.
#include <cstdio>

typedef int cublasStatus_t;

namespace {
constexpr cublasStatus_t OK = 0, INVALID_VALUE = 7;
struct Handle {
    void* stream = nullptr;
};

// Element (r, c) of op(X) for column-major X with leading dimension ld.
inline float at(const float* x, int ld, bool trans, long long r, long long c) {
    return trans ? x[c + r * (long long)ld] : x[r + c * (long long)ld];
}

cublasStatus_t gemm(int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                    const float* b, int ldb, const float* beta, float* c, int ldc) {
    if (m < 0 || n < 0 || k < 0 || ta < 0 || ta > 2 || tb < 0 || tb > 2) return INVALID_VALUE;
    const bool at_ = ta != 0, bt = tb != 0;
    if (lda < (at_ ? k : m) || ldb < (bt ? n : k) || ldc < m) {
        std::fprintf(stderr, "emu cublas: leading dimensions too small (m %d n %d k %d lda %d ldb %d ldc %d)\n", m,
                     n, k, lda, ldb, ldc);
        return INVALID_VALUE;
    }
    for (long long j = 0; j < n; ++j)
        for (long long i = 0; i < m; ++i) {
            double s = 0.0;
            for (long long p = 0; p < k; ++p) s += (double)at(a, lda, at_, i, p) * at(b, ldb, bt, p, j);
            float& out = c[i + j * (long long)ldc];
            const float prev = *beta == 0.0f ? 0.0f : *beta * out;
            out = (float)(*alpha * s) + prev;
        }
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
cublasStatus_t cublasSetMathMode(void*, int) { return OK; }
cublasStatus_t cublasSetWorkspace_v2(void*, void*, size_t) { return OK; }
cublasStatus_t cublasSgemm_v2(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* a,
                              int lda, const float* b, int ldb, const float* beta, float* c, int ldc) {
    return gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t cublasSgemmStridedBatched(void*, int ta, int tb, int m, int n, int k, const float* alpha,
                                         const float* a, int lda, long long sa, const float* b, int ldb,
                                         long long sb, const float* beta, float* c, int ldc, long long sc,
                                         int batch) {
    if (batch < 0) return INVALID_VALUE;
    for (int i = 0; i < batch; ++i) {
        const cublasStatus_t s = gemm(ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb, beta, c + i * sc, ldc);
        if (s != OK) return s;
    }
    return OK;
}
}
