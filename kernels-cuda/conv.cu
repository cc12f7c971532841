// 2-D convolution forward and backward as implicit GEMMs: the im2col matrix is never
// stored, the GEMM driver's operand loaders compute the input position of each element.
// Semantics: tinycnn_kernels::reference::{conv2d, conv2d_backward_input,
// conv2d_backward_weight} (stride, zero padding, dilation, groups).
//
// Grid: x over N tiles, y over M tiles, z over groups (times K splits for the weight
// gradient). Two tile shapes: 64 x 64 for wide outputs, 16 x 64 when M (channels per
// group) is small, as in LeNet.
#include "common.cuh"

// Forward: per group, M = cout_g, N = batch * oh * ow, K = cin_g * kh * kw.
struct ConvForward {
    static constexpr bool A_K_FAST = true;
    static constexpr bool B_K_FAST = false;
    int M, N, K;
    ConvGeom g;
    int group;
    const float* __restrict__ x;
    const float* __restrict__ wt;
    const float* __restrict__ bias;  // may be null
    float* __restrict__ y;
    __device__ float a(int m, int k) const { return wt[(group * g.cout_g + m) * K + k]; }
    __device__ float b(int k, int n) const {
        const int khw = g.kh * g.kw, ohw = g.oh * g.ow;
        const int ic = k / khw, r = k - ic * khw, ky = r / g.kw, kx = r - ky * g.kw;
        const int nb = n / ohw, pix = n - nb * ohw, oy = pix / g.ow, ox = pix - oy * g.ow;
        const int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return 0.0f;
        return x[((nb * g.cin + group * g.cin_g + ic) * g.h + iy) * g.w + ix];
    }
    __device__ void store(int m, int n, float acc) const {
        const int ohw = g.oh * g.ow, nb = n / ohw, pix = n - nb * ohw, oc = group * g.cout_g + m;
        y[(nb * g.cout + oc) * ohw + pix] = bias ? bias[oc] + acc : acc;
    }
};

// Gradient w.r.t. the input, gathered (no atomics): per group, M = cin_g,
// N = batch * h * w, K = cout_g * kh * kw. An output position contributes when
// iy = oy * sh - ph + ky * dh for an integer oy in range.
struct ConvBackwardInput {
    static constexpr bool A_K_FAST = true;
    static constexpr bool B_K_FAST = false;
    int M, N, K;
    ConvGeom g;
    int group;
    const float* __restrict__ gy;
    const float* __restrict__ wt;
    float* __restrict__ gx;
    __device__ float a(int m, int k) const {
        const int khw = g.kh * g.kw, oc = k / khw, r = k - oc * khw;
        return wt[((group * g.cout_g + oc) * g.cin_g + m) * khw + r];
    }
    __device__ float b(int k, int n) const {
        const int khw = g.kh * g.kw, hw = g.h * g.w;
        const int oc = k / khw, r = k - oc * khw, ky = r / g.kw, kx = r - ky * g.kw;
        const int nb = n / hw, pix = n - nb * hw, iy = pix / g.w, ix = pix - iy * g.w;
        const int ty = iy + g.ph - ky * g.dh, tx = ix + g.pw - kx * g.dw;
        if (ty < 0 || tx < 0) return 0.0f;
        const int oy = ty / g.sh, ox = tx / g.sw;
        if (oy * g.sh != ty || ox * g.sw != tx || oy >= g.oh || ox >= g.ow) return 0.0f;
        return gy[((nb * g.cout + group * g.cout_g + oc) * g.oh + oy) * g.ow + ox];
    }
    __device__ void store(int m, int n, float acc) const {
        const int hw = g.h * g.w, nb = n / hw, pix = n - nb * hw;
        gx[(nb * g.cin + group * g.cin_g + m) * hw + pix] = acc;
    }
};

// Gradient w.r.t. the weight: per group, M = cout_g, N = cin_g * kh * kw,
// K = batch * oh * ow, split over `splits` K ranges; split s writes its partial sums to
// out + s * weight_len (sum_splits adds them up in a fixed order).
struct ConvBackwardWeight {
    static constexpr bool A_K_FAST = true;
    static constexpr bool B_K_FAST = true;
    int M, N, K;
    ConvGeom g;
    int group;
    const float* __restrict__ x;
    const float* __restrict__ gy;
    float* __restrict__ out;
    __device__ float a(int m, int k) const {
        const int ohw = g.oh * g.ow, nb = k / ohw, pix = k - nb * ohw;
        return gy[(nb * g.cout + group * g.cout_g + m) * ohw + pix];
    }
    __device__ float b(int k, int n) const {
        const int khw = g.kh * g.kw, ohw = g.oh * g.ow;
        const int ic = n / khw, r = n - ic * khw, ky = r / g.kw, kx = r - ky * g.kw;
        const int nb = k / ohw, pix = k - nb * ohw, oy = pix / g.ow, ox = pix - oy * g.ow;
        const int iy = oy * g.sh - g.ph + ky * g.dh, ix = ox * g.sw - g.pw + kx * g.dw;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return 0.0f;
        return x[((nb * g.cin + group * g.cin_g + ic) * g.h + iy) * g.w + ix];
    }
    __device__ void store(int m, int n, float acc) const {
        out[(group * g.cout_g + m) * N + n] = acc;
    }
};

#define CONV_FORWARD_ENTRY(NAME, BM, BN)                                                      \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                \
        NAME(ConvGeom g, const float* __restrict__ x, const float* __restrict__ w,          \
             const float* __restrict__ bias, float* __restrict__ y) {                       \
        const int K = g.cin_g * g.kh * g.kw;                                                 \
        ConvForward p{g.cout_g, g.batch * g.oh * g.ow, K, g, (int)blockIdx.z, x, w, bias, y}; \
        gemm_tile<BM, BN, 16>(p, blockIdx.y * BM, blockIdx.x * BN, 0, K);                    \
    }

#define CONV_BACKWARD_INPUT_ENTRY(NAME, BM, BN)                                             \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                              \
        NAME(ConvGeom g, const float* __restrict__ gy, const float* __restrict__ w,        \
             float* __restrict__ gx) {                                                     \
        const int K = g.cout_g * g.kh * g.kw;                                              \
        ConvBackwardInput p{g.cin_g, g.batch * g.h * g.w, K, g, (int)blockIdx.z, gy, w, gx}; \
        gemm_tile<BM, BN, 16>(p, blockIdx.y * BM, blockIdx.x * BN, 0, K);                  \
    }

// `k_chunk` is a multiple of 16; blockIdx.z = group * splits + split.
#define CONV_BACKWARD_WEIGHT_ENTRY(NAME, BM, BN)                                              \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                \
        NAME(ConvGeom g, const float* __restrict__ x, const float* __restrict__ gy,          \
             float* __restrict__ partials, int splits, int k_chunk) {                        \
        const int K = g.batch * g.oh * g.ow;                                                 \
        const int N = g.cin_g * g.kh * g.kw;                                                 \
        const int group = blockIdx.z / splits, split = blockIdx.z - group * splits;          \
        const long long weight_len = (long long)g.cout * N;                                  \
        ConvBackwardWeight p{g.cout_g, N, K, g, group, x, gy, partials + split * weight_len}; \
        const int k_begin = split * k_chunk;                                                 \
        const int k_end = min(K, k_begin + k_chunk);                                         \
        gemm_tile<BM, BN, 16>(p, blockIdx.y * BM, blockIdx.x * BN, k_begin, k_end);          \
    }

CONV_FORWARD_ENTRY(conv2d_forward_t64, 64, 64)
CONV_FORWARD_ENTRY(conv2d_forward_t16, 16, 64)
CONV_BACKWARD_INPUT_ENTRY(conv2d_backward_input_t64, 64, 64)
CONV_BACKWARD_INPUT_ENTRY(conv2d_backward_input_t16, 16, 64)
CONV_BACKWARD_WEIGHT_ENTRY(conv2d_backward_weight_t64, 64, 64)
CONV_BACKWARD_WEIGHT_ENTRY(conv2d_backward_weight_t16, 16, 64)

// out[i] = sum over s of partials[s * len + i], s ascending.
extern "C" __global__ void sum_splits(int len, int splits, const float* __restrict__ partials,
                                      float* __restrict__ out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) acc += partials[(long long)s * len + i];
    out[i] = acc;
}
