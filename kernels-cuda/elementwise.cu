// Element-wise kernels: activations and their gradients, bias add and its reduction,
// SGD and Adam updates, the mini-batch gather of the GPU-resident training set, and the
// small vector operations the runtime needs on device tensors (gradient accumulation,
// scaling, fill, product).
// Semantics: tinycnn_kernels::reference::{relu, sigmoid, tanh, *_backward, bias_add,
// bias_backward, sgd_step, adam_step}, tinycnn_kernels::{relu6_forward, relu6_backward} and
// tinycnn::data::SampleTransform::apply (augment_batch). All loops are grid-stride, so any grid size works.
#include "common.cuh"

extern "C" __global__ void relu_forward(int n, const float* __restrict__ x, float* __restrict__ y) {
    // PyTorch's threshold: x <= 0 gives 0, anything else (NaN included) passes.
    GRID_STRIDE(i, n) { const float v = x[i]; y[i] = v <= 0.0f ? 0.0f : v; }
}

// Zero gradient at x <= 0; NaN passes the gradient, as PyTorch's threshold_backward.
extern "C" __global__ void relu_backward(int n, const float* __restrict__ x, const float* __restrict__ gy,
                                         float* __restrict__ gx) {
    GRID_STRIDE(i, n) { gx[i] = x[i] <= 0.0f ? 0.0f : gy[i]; }
}

// PyTorch's relu6 = hardtanh(x, 0, 6) as two compares that NaN fails: NaN passes, and -0.0
// stays -0.0 (as tinycnn_kernels::relu6_forward).
extern "C" __global__ void relu6_forward(int n, const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        y[i] = v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    }
}

// Zero gradient at and beyond the kinks (x <= 0 or x >= 6); NaN passes the gradient, as
// PyTorch's hardtanh_backward.
extern "C" __global__ void relu6_backward(int n, const float* __restrict__ x, const float* __restrict__ gy,
                                          float* __restrict__ gx) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        gx[i] = (v <= 0.0f || v >= 6.0f) ? 0.0f : gy[i];
    }
}

extern "C" __global__ void sigmoid_forward(int n, const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(i, n) { y[i] = 1.0f / (1.0f + expf(-x[i])); }
}

// From the forward output y.
extern "C" __global__ void sigmoid_backward(int n, const float* __restrict__ y, const float* __restrict__ gy,
                                            float* __restrict__ gx) {
    GRID_STRIDE(i, n) { const float s = y[i]; gx[i] = gy[i] * s * (1.0f - s); }
}

extern "C" __global__ void tanh_forward(int n, const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(i, n) { y[i] = tanhf(x[i]); }
}

extern "C" __global__ void tanh_backward(int n, const float* __restrict__ y, const float* __restrict__ gy,
                                         float* __restrict__ gx) {
    GRID_STRIDE(i, n) { const float t = y[i]; gx[i] = gy[i] * (1.0f - t * t); }
}

// x[o, c, i] += bias[c] for x of shape [outer, channels, inner].
extern "C" __global__ void bias_add(int outer, int channels, int inner, const float* __restrict__ bias,
                                    float* __restrict__ x) {
    GRID_STRIDE(e, outer * channels * inner) { x[e] += bias[(e / inner) % channels]; }
}

// Broadcast add of a [cols] vector onto [rows, cols] is bias_add with outer = rows,
// channels = cols, inner = 1: no separate kernel.

// grad_bias[c] = sum over o, i of grad_y[o, c, i]; one block of 256 threads per channel.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    bias_backward(int outer, int channels, int inner, const float* __restrict__ gy, float* __restrict__ gb) {
    const int c = blockIdx.x;
    const int count = outer * inner;
    float acc = 0.0f;
    for (int t = threadIdx.x; t < count; t += blockDim.x) {
        const int o = t / inner, i = t - o * inner;
        acc += gy[((long long)o * channels + c) * inner + i];
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) gb[c] = acc;
}

// One torch.optim.SGD step; `buf` is unused when momentum == 0.
extern "C" __global__ void sgd_step(int n, float lr, float momentum, float dampening, float weight_decay,
                                    int nesterov, int first_step, float* __restrict__ param,
                                    const float* __restrict__ grad, float* __restrict__ buf) {
    GRID_STRIDE(i, n) {
        float d = grad[i] + weight_decay * param[i];
        if (momentum != 0.0f) {
            const float b = first_step ? d : momentum * buf[i] + (1.0f - dampening) * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        param[i] -= lr * d;
    }
}

// One torch.optim.Adam step; the host passes step_size = lr / (1 - beta1^t) and
// bc2_sqrt = sqrt(1 - beta2^t).
extern "C" __global__ void adam_step(int n, float step_size, float beta1, float beta2, float eps,
                                     float weight_decay, float bc2_sqrt, float* __restrict__ param,
                                     const float* __restrict__ grad, float* __restrict__ m,
                                     float* __restrict__ v) {
    GRID_STRIDE(i, n) {
        const float g = grad[i] + weight_decay * param[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        param[i] -= step_size * mi / denom;
    }
}

// Copies samples perm[offset .. offset + batch) of a device-resident data set into a
// contiguous mini-batch: images [batch, sample_len] and labels [batch].
extern "C" __global__ void gather_batch(int batch, int sample_len, const u32* __restrict__ perm, int offset,
                                        const float* __restrict__ images, const u32* __restrict__ labels,
                                        float* __restrict__ out_images, u32* __restrict__ out_labels) {
    GRID_STRIDE(e, batch * sample_len) {
        const int i = e / sample_len, j = e - i * sample_len;
        const u32 src = perm[offset + i];
        out_images[e] = images[(long long)src * sample_len + j];
        if (j == 0) out_labels[i] = labels[src];
    }
}

// The crop-and-flip augmentation of a batch of images [batch, channels, h, w], out of place.
// transforms[3 s .. 3 s + 3) are sample s's (dy, dx, flip), the offsets two's complement:
// output (y, x) reads input (y + dy, x' + dx) with x' = w - 1 - x when flipped, else x, or
// is 0 where that lies outside the image (tinycnn::data::SampleTransform::apply).
extern "C" __global__ void augment_batch(int batch, int channels, int h, int w, const u32* __restrict__ transforms,
                                         const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(e, batch * channels * h * w) {
        const int ox = e % w, oy = (e / w) % h, plane = e / (w * h), s = plane / channels;
        const int dy = (int)transforms[3 * s], dx = (int)transforms[3 * s + 1];
        const int sx = (transforms[3 * s + 2] ? w - 1 - ox : ox) + dx, sy = oy + dy;
        y[e] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? x[(long long)plane * h * w + sy * w + sx] : 0.0f;
    }
}

// y += x: gradient accumulation.
extern "C" __global__ void add_inplace(int n, const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(i, n) { y[i] += x[i]; }
}

// y = a * x + b * y; with b == 0, y is not read (as sgemm's beta), so NaN in a fresh buffer
// does not leak into the result.
extern "C" __global__ void axpby(int n, float a, const float* __restrict__ x, float b, float* __restrict__ y) {
    GRID_STRIDE(i, n) { y[i] = b == 0.0f ? a * x[i] : a * x[i] + b * y[i]; }
}

// y *= a.
extern "C" __global__ void scale(int n, float a, float* __restrict__ y) {
    GRID_STRIDE(i, n) { y[i] *= a; }
}

// y = v.
extern "C" __global__ void fill(int n, float v, float* __restrict__ y) {
    GRID_STRIDE(i, n) { y[i] = v; }
}

// z = x * y, element-wise.
extern "C" __global__ void mul(int n, const float* __restrict__ x, const float* __restrict__ y,
                               float* __restrict__ z) {
    GRID_STRIDE(i, n) { z[i] = x[i] * y[i]; }
}
