// Row-wise softmax, log-softmax and fused softmax cross-entropy (forward per row, backward
// with the 1/rows of the mean folded into `scale`), arg-max and accuracy per row, and a
// deterministic two-pass sum. One warp per row: rows are classes, few and short.
// Semantics: tinycnn_kernels::reference::{softmax, log_softmax, cross_entropy,
// cross_entropy_backward}.
#include "common.cuh"

#define WARP_PER_ROW(row)                                                \
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;        \
    const int lane = threadIdx.x & 31;                                   \
    if (row >= rows) return;

// Max, sum of exp(x - max) and log-sum-exp of a row, computed by the whole warp (every lane gets them).
__device__ __forceinline__ void row_lse(const float* xr, int cols, int lane, float& mx, float& sum, float& lse) {
    float m = -__int_as_float(0x7f800000);
    for (int c = lane; c < cols; c += 32) m = fmaxf(m, xr[c]);
    m = warp_max(m);
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32) s += expf(xr[c] - m);
    s = warp_sum(s);
    mx = m;
    sum = s;
    lse = m + logf(s);
}

extern "C" __global__ void softmax_forward(int rows, int cols, const float* __restrict__ x, float* __restrict__ y) {
    WARP_PER_ROW(row)
    const float* xr = x + (long long)row * cols;
    float mx, sum, lse;
    row_lse(xr, cols, lane, mx, sum, lse);
    for (int c = lane; c < cols; c += 32) y[(long long)row * cols + c] = expf(xr[c] - mx) / sum;
}

extern "C" __global__ void log_softmax_forward(int rows, int cols, const float* __restrict__ x,
                                               float* __restrict__ y) {
    WARP_PER_ROW(row)
    const float* xr = x + (long long)row * cols;
    float mx, sum, lse;
    row_lse(xr, cols, lane, mx, sum, lse);
    for (int c = lane; c < cols; c += 32) y[(long long)row * cols + c] = xr[c] - lse;
}

// loss_rows[row] = logsumexp(x[row]) - x[row, label]; NaN for a label out of range.
extern "C" __global__ void softmax_xent_forward(int rows, int cols, const float* __restrict__ logits,
                                                const u32* __restrict__ labels, float* __restrict__ loss_rows) {
    WARP_PER_ROW(row)
    const float* xr = logits + (long long)row * cols;
    float mx, sum, lse;
    row_lse(xr, cols, lane, mx, sum, lse);
    if (lane == 0) {
        const u32 label = labels[row];
        loss_rows[row] = label < (u32)cols ? lse - xr[label] : __int_as_float(0x7fc00000);
    }
}

// grad[row, c] = (softmax(x[row])[c] - [c == label]) * scale.
extern "C" __global__ void softmax_xent_backward(int rows, int cols, const float* __restrict__ logits,
                                                 const u32* __restrict__ labels, float scale,
                                                 float* __restrict__ grad) {
    WARP_PER_ROW(row)
    const float* xr = logits + (long long)row * cols;
    float mx, sum, lse;
    row_lse(xr, cols, lane, mx, sum, lse);
    const u32 label = labels[row];
    for (int c = lane; c < cols; c += 32) {
        const float onehot = (u32)c == label ? 1.0f : 0.0f;
        grad[(long long)row * cols + c] = (expf(xr[c] - lse) - onehot) * scale;
    }
}

// Index of the first maximum of a row (NaN counts as the maximum, as torch.argmax).
__device__ __forceinline__ int row_argmax(const float* xr, int cols, int lane) {
    float best = -__int_as_float(0x7f800000);
    int idx = cols;  // "none yet": loses every comparison below
    for (int c = lane; c < cols; c += 32) {
        const float v = xr[c];
        if (idx == cols || v > best || (v != v && best == best)) {
            best = v;
            idx = c;
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, off);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, off);
        const bool other_nan = ob != ob, mine_nan = best != best;
        bool take;
        if (oi == cols) take = false;
        else if (idx == cols) take = true;
        else if (other_nan != mine_nan) take = other_nan;
        else if (ob != best && !other_nan) take = ob > best;
        else take = oi < idx;
        if (take) {
            best = ob;
            idx = oi;
        }
    }
    return idx;
}

extern "C" __global__ void argmax_rows(int rows, int cols, const float* __restrict__ x, u32* __restrict__ out) {
    WARP_PER_ROW(row)
    const int idx = row_argmax(x + (long long)row * cols, cols, lane);
    if (lane == 0) out[row] = (u32)idx;
}

// correct[row] = 1 when the arg-max of the row is its label, else 0 (summed for accuracy).
extern "C" __global__ void correct_rows(int rows, int cols, const float* __restrict__ logits,
                                        const u32* __restrict__ labels, float* __restrict__ correct) {
    WARP_PER_ROW(row)
    const int idx = row_argmax(logits + (long long)row * cols, cols, lane);
    if (lane == 0) correct[row] = (u32)idx == labels[row] ? 1.0f : 0.0f;
}

// out[blockIdx.x] = scale * sum of the block's grid-stride share of x[0..n). Launched
// twice (partials, then one block over the partials) with a grid fixed by n alone, so the
// result does not depend on timing.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
    reduce_sum(int n, const float* __restrict__ x, float scale, float* __restrict__ out) {
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) acc += x[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[blockIdx.x] = acc * scale;
}
