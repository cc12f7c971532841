// Batch normalization over [batch, channels, spatial] (NCHW with H * W flattened), with the
// formulas of tinycnn_kernels::{batch_norm_stats, batch_norm_forward, batch_norm_backward}:
// the statistics are the mean and the biased variance (two passes), the forward is
// y = x * alpha + beta with alpha = weight / sqrt(var + eps), beta = bias - mean * alpha.
//
// The per-channel reductions run one block of GEMM_THREADS per channel with the fixed-order
// block_sum: the same result on every run (the order differs from the CPU's, so results
// agree to float rounding).
#include "common.cuh"

__device__ __forceinline__ float bn_at(const float* __restrict__ p, int channels, int spatial, int c, int t) {
    const int n = t / spatial, i = t - n * spatial;
    return p[((long long)n * channels + c) * spatial + i];
}

// mean[c] and var[c] (biased: divided by batch * spatial) of every channel; grid = channels.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    batch_norm_stats(int batch, int channels, int spatial, const float* __restrict__ x, float* __restrict__ mean,
                     float* __restrict__ var) {
    const int c = blockIdx.x, count = batch * spatial;
    float acc = 0.0f;
    for (int t = threadIdx.x; t < count; t += blockDim.x) acc += bn_at(x, channels, spatial, c, t);
    const float m = block_sum(acc) / (float)count;
    float sq = 0.0f;
    for (int t = threadIdx.x; t < count; t += blockDim.x) {
        const float d = bn_at(x, channels, spatial, c, t) - m;
        sq += d * d;
    }
    sq = block_sum(sq);
    if (threadIdx.x == 0) {
        mean[c] = m;
        var[c] = sq / (float)count;
    }
}

// y = x * alpha + beta per channel; weight 1 and bias 0 when null.
extern "C" __global__ void batch_norm_forward(int batch, int channels, int spatial, const float* __restrict__ x,
                                              const float* __restrict__ mean, const float* __restrict__ var,
                                              float eps, const float* __restrict__ weight,
                                              const float* __restrict__ bias, float* __restrict__ y) {
    GRID_STRIDE(e, batch * channels * spatial) {
        const int c = (e / spatial) % channels;
        const float alpha = 1.0f / sqrtf(var[c] + eps) * (weight ? weight[c] : 1.0f);
        const float beta = (bias ? bias[c] : 0.0f) - mean[c] * alpha;
        y[e] = fmaf(x[e], alpha, beta);
    }
}

// The per-channel sums of the backward: sum_dy[c] = sum(dy), sum_dy_xmu[c] =
// sum(dy * (x - mean)), and from them grad_weight = sum_dy_xmu * invstd and grad_bias =
// sum_dy where asked for (non-null); grid = channels.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    batch_norm_backward_reduce(int batch, int channels, int spatial, const float* __restrict__ x,
                               const float* __restrict__ gy, const float* __restrict__ mean,
                               const float* __restrict__ var, float eps, float* __restrict__ sum_dy,
                               float* __restrict__ sum_dy_xmu, float* __restrict__ grad_weight,
                               float* __restrict__ grad_bias) {
    const int c = blockIdx.x, count = batch * spatial;
    const float m = mean[c];
    float a = 0.0f, b = 0.0f;
    for (int t = threadIdx.x; t < count; t += blockDim.x) {
        const float g = bn_at(gy, channels, spatial, c, t);
        a += g;
        b += g * (bn_at(x, channels, spatial, c, t) - m);
    }
    a = block_sum(a);
    b = block_sum(b);
    if (threadIdx.x == 0) {
        sum_dy[c] = a;
        sum_dy_xmu[c] = b;
        if (grad_weight) grad_weight[c] = b * (1.0f / sqrtf(var[c] + eps));
        if (grad_bias) grad_bias[c] = a;
    }
}

// grad_x = (dy - mean_dy - (x - mean) * k) * invstd * weight, where with the sums given
// (training: the statistics were the batch's own) mean_dy = sum_dy / count and
// k = sum_dy_xmu / count * invstd^2, and without them (constant statistics) both are 0.
extern "C" __global__ void batch_norm_backward_input(int batch, int channels, int spatial,
                                                     const float* __restrict__ x, const float* __restrict__ gy,
                                                     const float* __restrict__ mean, const float* __restrict__ var,
                                                     float eps, const float* __restrict__ weight,
                                                     const float* __restrict__ sum_dy,
                                                     const float* __restrict__ sum_dy_xmu,
                                                     float* __restrict__ gx) {
    const float inv_count = 1.0f / (float)(batch * spatial);
    GRID_STRIDE(e, batch * channels * spatial) {
        const int c = (e / spatial) % channels;
        const float invstd = 1.0f / sqrtf(var[c] + eps);
        const float scale = invstd * (weight ? weight[c] : 1.0f);
        float mean_dy = 0.0f, k = 0.0f;
        if (sum_dy) {
            mean_dy = sum_dy[c] * inv_count;
            k = sum_dy_xmu[c] * inv_count * invstd * invstd;
        }
        gx[e] = (gy[e] - mean_dy - (x[e] - mean[c]) * k) * scale;
    }
}
