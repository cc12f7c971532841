// Shared pieces of the tinycnn CUDA kernels: the launch-argument structs (mirrored by
// #[repr(C)] structs in crates/cuda/src/geom.rs, keep both in sync), block reductions and
// the one tiled GEMM driver that sgemm and the three convolution kernels instantiate.
//
// Only what NVRTC provides built in is used: no CUDA headers.
#pragma once

typedef unsigned int u32;

// Geometry of a 2-D convolution, NCHW, weight [cout, cin/groups, kh, kw].
struct ConvGeom {
    int batch, cin, h, w;
    int cout, oh, ow;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int groups, cin_g, cout_g;
};

// Geometry of a 2-D pooling over `planes` = batch * channels planes.
struct PoolGeom {
    int planes, h, w, oh, ow;
    int kh, kw, sh, sw, ph, pw;
    int count_include_pad;
};

enum { GEMM_THREADS = 256 };

// A grid-stride loop: any grid size covers all `n` elements.
#define GRID_STRIDE(i, n) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

// Sum over a block of GEMM_THREADS threads; every thread gets the total. The order of the
// additions is fixed, so the result is the same on every run.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float warp_sums[GEMM_THREADS / 32];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    float total = 0.0f;
    if (warp == 0) {
        total = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) total += __shfl_down_sync(0xffffffffu, total, off);
        if (lane == 0) warp_sums[0] = total;
    }
    __syncthreads();
    total = warp_sums[0];
    __syncthreads();
    return total;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// One BM x BN tile of C = A B for k in [k_begin, k_end), computed by 256 threads arranged
// 16 x 16, each holding a (BM/16) x (BN/16) block of accumulators in registers. Rows and
// columns of a thread are strided by 16 so that shared-memory reads broadcast and global
// stores coalesce. The next K-slab is fetched into registers while the current one is
// multiplied (two shared buffers, one barrier per slab).
//
// `P` supplies the operands: `p.a(m, k)`, `p.b(k, n)` (called only in bounds),
// `p.store(m, n, acc)`, sizes `p.M, p.N`, and `A_K_FAST` / `B_K_FAST`: whether consecutive
// k are adjacent in memory, which decides how threads are spread over a load for coalescing.
template <int BM, int BN, int BK, class P>
__device__ __forceinline__ void gemm_tile(const P& p, int m0, int n0, int k_begin, int k_end) {
    constexpr int TM = BM / 16, TN = BN / 16;
    constexpr int A_LOADS = BM * BK / GEMM_THREADS, B_LOADS = BN * BK / GEMM_THREADS;
    static_assert(A_LOADS >= 1 && B_LOADS >= 1, "tile too small for 256 threads");
    __shared__ float As[2][BK][BM + 1];
    __shared__ float Bs[2][BK][BN + 1];

    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    float ra[A_LOADS], rb[B_LOADS];
    auto fetch = [&](int k0) {
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            const int e = tid + l * GEMM_THREADS;
            const int kk = P::A_K_FAST ? e % BK : e / BM;
            const int mm = P::A_K_FAST ? e / BK : e % BM;
            const int m = m0 + mm, k = k0 + kk;
            ra[l] = (m < p.M && k < k_end) ? p.a(m, k) : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            const int e = tid + l * GEMM_THREADS;
            const int kk = P::B_K_FAST ? e % BK : e / BN;
            const int nn = P::B_K_FAST ? e / BK : e % BN;
            const int n = n0 + nn, k = k0 + kk;
            rb[l] = (n < p.N && k < k_end) ? p.b(k, n) : 0.0f;
        }
    };
    auto stash = [&](int buf) {
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            const int e = tid + l * GEMM_THREADS;
            const int kk = P::A_K_FAST ? e % BK : e / BM;
            const int mm = P::A_K_FAST ? e / BK : e % BM;
            As[buf][kk][mm] = ra[l];
        }
#pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            const int e = tid + l * GEMM_THREADS;
            const int kk = P::B_K_FAST ? e % BK : e / BN;
            const int nn = P::B_K_FAST ? e / BK : e % BN;
            Bs[buf][kk][nn] = rb[l];
        }
    };

    if (k_begin < k_end) {
        fetch(k_begin);
        stash(0);
        __syncthreads();
        int buf = 0;
        for (int k0 = k_begin; k0 < k_end; k0 += BK) {
            const bool more = k0 + BK < k_end;
            if (more) fetch(k0 + BK);
#pragma unroll
            for (int kk = 0; kk < BK; ++kk) {
                float av[TM], bv[TN];
#pragma unroll
                for (int i = 0; i < TM; ++i) av[i] = As[buf][kk][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < TN; ++j) bv[j] = Bs[buf][kk][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
            }
            if (more) stash(buf ^ 1);
            __syncthreads();
            buf ^= 1;
        }
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= p.M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + tx + 16 * j;
            if (n < p.N) p.store(m, n, acc[i][j]);
        }
    }
}
