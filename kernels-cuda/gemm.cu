// Single-precision matrix product C = alpha op(A) op(B) + beta C, row-major, with the
// semantics of tinycnn_kernels::reference::sgemm (beta == 0 means C is not read).
// One entry per transpose combination so the load layout is known at compile time.
#include "common.cuh"

template <bool TA, bool TB>
struct SgemmProblem {
    static constexpr bool A_K_FAST = !TA;
    static constexpr bool B_K_FAST = TB;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float* __restrict__ A;
    const float* __restrict__ B;
    float* __restrict__ C;
    __device__ float a(int m, int k) const { return TA ? A[(long long)k * lda + m] : A[(long long)m * lda + k]; }
    __device__ float b(int k, int n) const { return TB ? B[(long long)n * ldb + k] : B[(long long)k * ldb + n]; }
    __device__ void store(int m, int n, float acc) const {
        float* c = C + (long long)m * ldc + n;
        *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
    }
};

#define SGEMM_ENTRY(NAME, TA, TB)                                                              \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                 \
        NAME(int m, int n, int k, float alpha, const float* __restrict__ a, int lda,          \
             const float* __restrict__ b, int ldb, float beta, float* __restrict__ c, int ldc) { \
        SgemmProblem<TA, TB> p{m, n, k, lda, ldb, ldc, alpha, beta, a, b, c};                 \
        gemm_tile<64, 64, 16>(p, blockIdx.y * 64, blockIdx.x * 64, 0, k);                     \
    }

SGEMM_ENTRY(sgemm_nn, false, false)
SGEMM_ENTRY(sgemm_nt, false, true)
SGEMM_ENTRY(sgemm_tn, true, false)
SGEMM_ENTRY(sgemm_tt, true, true)
