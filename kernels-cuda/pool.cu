// Max, average and adaptive average pooling, forward and backward, with the semantics of
// tinycnn_kernels::reference::{max_pool2d, max_pool2d_backward, avg_pool2d,
// avg_pool2d_backward} and tinycnn_kernels::adaptive_avg_pool2d_{forward,backward}: windows in padded coordinates clipped to the input, max pooling's
// argmax is the index within the (h, w) plane and the first NaN wins, average pooling
// divides by the whole window (count_include_pad) or by its real elements.
//
// The backward kernels gather, one thread per input element, visiting the covering outputs
// in ascending order: no atomics, and the same order of additions as the reference.
#include "common.cuh"

struct Window {
    int h0, h1, w0, w1, divisor;
};

__device__ __forceinline__ Window pool_window(const PoolGeom& g, int oy, int ox) {
    const int hs = oy * g.sh, ws = ox * g.sw;
    const int he = min(hs + g.kh, g.h + 2 * g.ph), we = min(ws + g.kw, g.w + 2 * g.pw);
    Window win;
    win.h0 = max(hs, g.ph) - g.ph;
    win.w0 = max(ws, g.pw) - g.pw;
    win.h1 = max(min(he, g.h + g.ph) - g.ph, 0);
    win.w1 = max(min(we, g.w + g.pw) - g.pw, 0);
    win.divisor = g.count_include_pad ? (he - hs) * (we - ws) : (win.h1 - win.h0) * (win.w1 - win.w0);
    return win;
}

extern "C" __global__ void max_pool2d_forward(PoolGeom g, const float* __restrict__ x,
                                              float* __restrict__ y, u32* __restrict__ argmax) {
    const int total = g.planes * g.oh * g.ow;
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += gridDim.x * blockDim.x) {
        const int ox = o % g.ow, oy = (o / g.ow) % g.oh, plane = o / (g.ow * g.oh);
        const Window win = pool_window(g, oy, ox);
        const float* xp = x + (long long)plane * g.h * g.w;
        float best = -__int_as_float(0x7f800000);
        int idx = win.h0 * g.w + win.w0;
        // PyTorch scans the whole window: a NaN replaces any number, and a later NaN
        // replaces an earlier one (nothing compares greater than NaN), so the last NaN wins.
        for (int iy = win.h0; iy < win.h1; ++iy) {
            for (int ix = win.w0; ix < win.w1; ++ix) {
                const float v = xp[iy * g.w + ix];
                if (v > best || v != v) {
                    best = v;
                    idx = iy * g.w + ix;
                }
            }
        }
        y[o] = best;
        argmax[o] = (u32)idx;
    }
}

// First and last output row/column whose window (in padded coordinates) covers padded
// position `pos`.
__device__ __forceinline__ void covering(int pos, int k, int s, int n_out, int& lo, int& hi) {
    lo = pos < k ? 0 : (pos - k) / s + 1;
    hi = min(pos / s, n_out - 1);
}

extern "C" __global__ void max_pool2d_backward(PoolGeom g, const float* __restrict__ grad_y,
                                               const u32* __restrict__ argmax,
                                               float* __restrict__ grad_x) {
    const int total = g.planes * g.h * g.w;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int ix = i % g.w, iy = (i / g.w) % g.h, plane = i / (g.w * g.h);
        int oy0, oy1, ox0, ox1;
        covering(iy + g.ph, g.kh, g.sh, g.oh, oy0, oy1);
        covering(ix + g.pw, g.kw, g.sw, g.ow, ox0, ox1);
        const u32 me = (u32)(iy * g.w + ix);
        const long long base = (long long)plane * g.oh * g.ow;
        float acc = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox) {
                const long long o = base + oy * g.ow + ox;
                if (argmax[o] == me) acc += grad_y[o];
            }
        grad_x[i] = acc;
    }
}

extern "C" __global__ void avg_pool2d_forward(PoolGeom g, const float* __restrict__ x,
                                              float* __restrict__ y) {
    const int total = g.planes * g.oh * g.ow;
    for (int o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += gridDim.x * blockDim.x) {
        const int ox = o % g.ow, oy = (o / g.ow) % g.oh, plane = o / (g.ow * g.oh);
        const Window win = pool_window(g, oy, ox);
        const float* xp = x + (long long)plane * g.h * g.w;
        float acc = 0.0f;
        for (int iy = win.h0; iy < win.h1; ++iy)
            for (int ix = win.w0; ix < win.w1; ++ix) acc += xp[iy * g.w + ix];
        y[o] = acc / (float)win.divisor;
    }
}

extern "C" __global__ void avg_pool2d_backward(PoolGeom g, const float* __restrict__ grad_y,
                                               float* __restrict__ grad_x) {
    const int total = g.planes * g.h * g.w;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int ix = i % g.w, iy = (i / g.w) % g.h, plane = i / (g.w * g.h);
        int oy0, oy1, ox0, ox1;
        covering(iy + g.ph, g.kh, g.sh, g.oh, oy0, oy1);
        covering(ix + g.pw, g.kw, g.sw, g.ow, ox0, ox1);
        const long long base = (long long)plane * g.oh * g.ow;
        float acc = 0.0f;
        for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox) {
                const Window win = pool_window(g, oy, ox);
                acc += grad_y[base + oy * g.ow + ox] / (float)win.divisor;
            }
        grad_x[i] = acc;
    }
}

// PyTorch's adaptive window along one axis: output i of n_out covers input
// [floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out)) (tinycnn_kernels::adaptive_window).
// 32-bit: the host refuses sizes with n_in * n_out + n_out >= 2^31.
__device__ __forceinline__ int adaptive_start(int i, int n_in, int n_out) { return i * n_in / n_out; }
__device__ __forceinline__ int adaptive_end(int i, int n_in, int n_out) { return ((i + 1) * n_in + n_out - 1) / n_out; }

// Adaptive average pooling of `planes` planes h x w to oh x ow; windows may overlap or
// differ in size. Each row of a window is summed, then the rows, as the CPU kernel does.
extern "C" __global__ void adaptive_avg_pool2d_forward(int planes, int h, int w, int oh, int ow,
                                                       const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(o, planes * oh * ow) {
        const int ox = o % ow, oy = (o / ow) % oh, plane = o / (ow * oh);
        const int r0 = adaptive_start(oy, h, oh), r1 = adaptive_end(oy, h, oh);
        const int c0 = adaptive_start(ox, w, ow), c1 = adaptive_end(ox, w, ow);
        const float* xp = x + (long long)plane * h * w;
        float acc = 0.0f;
        for (int r = r0; r < r1; ++r) {
            float row = 0.0f;
            for (int c = c0; c < c1; ++c) row += xp[r * w + c];
            acc += row;
        }
        y[o] = acc / (float)((r1 - r0) * (c1 - c0));
    }
}

// Its gradient, one thread per input element gathering the outputs whose windows cover it
// in ascending order (the CPU kernel's order of additions; no atomics). Output row oy covers
// input row iy iff floor(iy * oh / h) <= oy < ceil((iy + 1) * oh / h).
extern "C" __global__ void adaptive_avg_pool2d_backward(int planes, int h, int w, int oh, int ow,
                                                        const float* __restrict__ grad_y,
                                                        float* __restrict__ grad_x) {
    GRID_STRIDE(i, planes * h * w) {
        const int ix = i % w, iy = (i / w) % h, plane = i / (w * h);
        const int oy0 = adaptive_start(iy, oh, h), oy1 = min(adaptive_end(iy, oh, h), oh);
        const int ox0 = adaptive_start(ix, ow, w), ox1 = min(adaptive_end(ix, ow, w), ow);
        const float* gp = grad_y + (long long)plane * oh * ow;
        float acc = 0.0f;
        for (int oy = oy0; oy < oy1; ++oy) {
            const int r0 = adaptive_start(oy, h, oh), r1 = adaptive_end(oy, h, oh);
            for (int ox = ox0; ox < ox1; ++ox) {
                const int c0 = adaptive_start(ox, w, ow), c1 = adaptive_end(ox, w, ow);
                if (iy >= r0 && iy < r1 && ix >= c0 && ix < c1)
                    acc += gp[oy * ow + ox] / (float)((r1 - r0) * (c1 - c0));
            }
        }
        grad_x[i] = acc;
    }
}
