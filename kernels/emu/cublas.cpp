// The fake libcublas of the CPU emulation: the handful of cuBLAS entry points cudarc's gemm and
// strided-batched gemm use, as a plain column-major reference with f64 accumulation (device
// pointers are host addresses, see driver.cpp). beta = 0 overwrites C without reading it, as
// cuBLAS does, so poisoned outputs stay a valid test. A GEMM on a stream that is capturing a
// graph is recorded into it (by value, alpha and beta included, as cuBLAS's host pointer mode
// passes them) through the emulated driver's emu_stream_enqueue, and runs when the graph does.
// In CUBLAS_TF32_TENSOR_OP_MATH mode (cublasSetMathMode) every operand is first rounded to TF32
// (10 mantissa bits, nearest, ties away), as the tensor cores take them. cublasGemmEx and
// cublasGemmStridedBatchedEx take f32 data (CUDA_R_32F for A, B and C) with compute type
// CUBLAS_COMPUTE_32F (the handle's math mode, as Sgemm), CUBLAS_COMPUTE_32F_FAST_TF32 (TF32
// operands) or CUBLAS_COMPUTE_32F_FAST_16BF (operands rounded to bf16, nearest even); any other
// type is CUBLAS_STATUS_NOT_SUPPORTED.
#include <cstdint>
#include <cstdio>
#include <cstring>

typedef int cublasStatus_t;

// From the emulated libcuda (driver.cpp), which this library links against.
extern "C" int emu_stream_enqueue(void* stream, void (*call)(void*), void* data, void (*release)(void*));

namespace {
constexpr cublasStatus_t OK = 0, INVALID_VALUE = 7, NOT_SUPPORTED = 15;
constexpr int TF32_TENSOR_OP_MATH = 3;
// cudaDataType_t and cublasComputeType_t values (library_types.h, cublas_api.h).
constexpr int CUDA_R_32F = 0;
constexpr int COMPUTE_32F = 68, COMPUTE_32F_FAST_16BF = 75, COMPUTE_32F_FAST_TF32 = 77;
// How the operands are rounded before the products.
enum Round { EXACT, TF32, BF16 };
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

// x as a bf16 operand (nearest even; Inf and NaN kept).
inline float bf16(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&x, &u, 4);
    return x;
}

inline double rounded(float x, Round r) { return r == TF32 ? tf32(x) : r == BF16 ? bf16(x) : x; }

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
          float beta, float* c, int ldc, Round round) {
    const bool at_ = ta != 0, bt = tb != 0;
    const auto op = [round](float x) { return rounded(x, round); };
    for (long long j = 0; j < n; ++j)
        for (long long i = 0; i < m; ++i) {
            double s = 0.0;
            for (long long p = 0; p < k; ++p) s += op(at(a, lda, at_, i, p)) * op(at(b, ldb, bt, p, j));
            float& out = c[i + j * (long long)ldc];
            const float prev = beta == 0.0f ? 0.0f : beta * out;
            out = (float)(alpha * s) + prev;
        }
}

// The rounding the handle's math mode asks of Sgemm (and of GemmEx with compute type 32F).
Round math_round(void* h) { return static_cast<Handle*>(h)->math == TF32_TENSOR_OP_MATH ? TF32 : EXACT; }

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
    Round round;
};

void run(const Call& g) {
    for (int i = 0; i < g.batch; ++i)
        gemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a + i * g.sa, g.lda, g.b + i * g.sb, g.ldb, g.beta, g.c + i * g.sc,
             g.ldc, g.round);
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
    return submit(h, Call{ta, tb, m, n, k, *alpha, *beta, a, lda, 0, b, ldb, 0, c, ldc, 0, 1, math_round(h)});
}
cublasStatus_t cublasSgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const float* alpha,
                                         const float* a, int lda, long long sa, const float* b, int ldb,
                                         long long sb, const float* beta, float* c, int ldc, long long sc,
                                         int batch) {
    return submit(h,
                  Call{ta, tb, m, n, k, *alpha, *beta, a, lda, sa, b, ldb, sb, c, ldc, sc, batch, math_round(h)});
}
cublasStatus_t cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha,
                                          const void* a, int atype, int lda, long long sa, const void* b,
                                          int btype, int ldb, long long sb, const void* beta, void* c, int ctype,
                                          int ldc, long long sc, int batch, int compute, int /*algo*/) {
    if (atype != CUDA_R_32F || btype != CUDA_R_32F || ctype != CUDA_R_32F) return NOT_SUPPORTED;
    Round round;
    switch (compute) {
        case COMPUTE_32F: round = math_round(h); break;
        case COMPUTE_32F_FAST_TF32: round = TF32; break;
        case COMPUTE_32F_FAST_16BF: round = BF16; break;
        default: return NOT_SUPPORTED;
    }
    // Compute type 32F: alpha and beta are floats (host pointer mode).
    return submit(h, Call{ta, tb, m, n, k, *static_cast<const float*>(alpha), *static_cast<const float*>(beta),
                          static_cast<const float*>(a), lda, sa, static_cast<const float*>(b), ldb, sb,
                          static_cast<float*>(c), ldc, sc, batch, round});
}
cublasStatus_t cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a,
                            int atype, int lda, const void* b, int btype, int ldb, const void* beta, void* c,
                            int ctype, int ldc, int compute, int algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, atype, lda, 0, b, btype, ldb, 0, beta, c, ctype,
                                      ldc, 0, 1, compute, algo);
}
}
