//! Naive loops: the meaning of every fast kernel.
//!
//! Each function here is the obvious loop nest, written for reading, not speed. The fast
//! kernels in the other modules must agree with these (the proptests and fuzz targets check
//! it). They take the same shape structs and check their arguments the same way, but need
//! no workspace.

use crate::activation::check_unary;
use crate::bias::check_bias;
use crate::conv::{check_conv2d, check_corr2d};
use crate::error::{check_len, KernelError, Result};
use crate::norm::{
    adaptive_window, check_batch_norm_backward, check_batch_norm_forward, check_batch_norm_stats,
    AdaptivePool2dShape, BatchNormGrads, BatchNormShape, BatchNormStats,
};
use crate::optim::{AdamConfig, SgdConfig};
use crate::pool::check_pool2d;
use crate::shape::{Conv2dShape, GemmShape, Pool2dShape, Transpose};
use crate::simd::max_nan;
use crate::softmax::{check_labels, check_rows};

/// d2l's `corr2d`: `Y[i, j] = sum(X[i:i+kh, j:j+kw] * K)`, no padding, stride 1.
///
/// `x` is `xh x xw`, `k` is `kh x kw`, `y` is `(xh - kh + 1) x (xw - kw + 1)`.
///
/// ```
/// use tinycnn_kernels::reference::corr2d;
/// let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
/// let mut y = [0.0; 4];
/// corr2d(&x, (3, 3), &[0.0, 1.0, 2.0, 3.0], (2, 2), &mut y).unwrap();
/// assert_eq!(y, [19.0, 25.0, 37.0, 43.0]);
/// ```
pub fn corr2d(
    x: &[f32],
    x_hw: (usize, usize),
    k: &[f32],
    k_hw: (usize, usize),
    y: &mut [f32],
) -> Result<()> {
    let (oh, ow) = check_corr2d(x.len(), x_hw, k.len(), k_hw, y.len())?;
    let (_, xw) = x_hw;
    let (kh, kw) = k_hw;
    for i in 0..oh {
        for j in 0..ow {
            let mut acc = 0.0f32;
            for a in 0..kh {
                for b in 0..kw {
                    acc += x[(i + a) * xw + j + b] * k[a * kw + b];
                }
            }
            y[i * ow + j] = acc;
        }
    }
    Ok(())
}

/// The input position a kernel tap reads, or `None` where it falls in the zero padding.
#[inline]
fn tap(out: usize, k: usize, stride: usize, pad: usize, dil: usize, size: usize) -> Option<usize> {
    let pos = (out * stride + k * dil).checked_sub(pad)?;
    (pos < size).then_some(pos)
}

/// Cross-correlation over a batch with channels, groups, stride, padding and dilation;
/// `y = conv(x, w) + bias`.
pub fn conv2d(
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    let (oh, ow) = check_conv2d(s, x.len(), w.len(), y.len())?;
    if let Some(b) = bias {
        check_len("bias", b.len(), s.params.out_channels)?;
    }
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    let (kh, kw) = p.kernel;
    for n in 0..s.batch {
        for oc in 0..p.out_channels {
            let g = oc / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| b[oc]);
                    for ic in 0..cin_g {
                        let c = g * cin_g + ic;
                        for ky in 0..kh {
                            let Some(iy) =
                                tap(oy, ky, p.stride.0, p.padding.0, p.dilation.0, s.in_h)
                            else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) =
                                    tap(ox, kx, p.stride.1, p.padding.1, p.dilation.1, s.in_w)
                                else {
                                    continue;
                                };
                                acc += x[((n * p.in_channels + c) * s.in_h + iy) * s.in_w + ix]
                                    * w[((oc * cin_g + ic) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    y[((n * p.out_channels + oc) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    Ok(())
}

/// Gradient of [`conv2d`] with respect to its input (overwrites `grad_x`).
pub fn conv2d_backward_input(
    s: &Conv2dShape,
    grad_y: &[f32],
    w: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    let (oh, ow) = check_conv2d(s, grad_x.len(), w.len(), grad_y.len())?;
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    let (kh, kw) = p.kernel;
    grad_x.fill(0.0);
    for n in 0..s.batch {
        for oc in 0..p.out_channels {
            let g = oc / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let gy = grad_y[((n * p.out_channels + oc) * oh + oy) * ow + ox];
                    for ic in 0..cin_g {
                        let c = g * cin_g + ic;
                        for ky in 0..kh {
                            let Some(iy) =
                                tap(oy, ky, p.stride.0, p.padding.0, p.dilation.0, s.in_h)
                            else {
                                continue;
                            };
                            for kx in 0..kw {
                                let Some(ix) =
                                    tap(ox, kx, p.stride.1, p.padding.1, p.dilation.1, s.in_w)
                                else {
                                    continue;
                                };
                                grad_x[((n * p.in_channels + c) * s.in_h + iy) * s.in_w + ix] +=
                                    gy * w[((oc * cin_g + ic) * kh + ky) * kw + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Gradient of [`conv2d`] with respect to its weight, summed over the batch (overwrites `grad_w`).
pub fn conv2d_backward_weight(
    s: &Conv2dShape,
    x: &[f32],
    grad_y: &[f32],
    grad_w: &mut [f32],
) -> Result<()> {
    let (oh, ow) = check_conv2d(s, x.len(), grad_w.len(), grad_y.len())?;
    let p = &s.params;
    let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
    let (kh, kw) = p.kernel;
    for oc in 0..p.out_channels {
        let g = oc / cout_g;
        for ic in 0..cin_g {
            let c = g * cin_g + ic;
            for ky in 0..kh {
                for kx in 0..kw {
                    let mut acc = 0.0f32;
                    for n in 0..s.batch {
                        for oy in 0..oh {
                            let Some(iy) =
                                tap(oy, ky, p.stride.0, p.padding.0, p.dilation.0, s.in_h)
                            else {
                                continue;
                            };
                            for ox in 0..ow {
                                let Some(ix) =
                                    tap(ox, kx, p.stride.1, p.padding.1, p.dilation.1, s.in_w)
                                else {
                                    continue;
                                };
                                acc += grad_y[((n * p.out_channels + oc) * oh + oy) * ow + ox]
                                    * x[((n * p.in_channels + c) * s.in_h + iy) * s.in_w + ix];
                            }
                        }
                    }
                    grad_w[((oc * cin_g + ic) * kh + ky) * kw + kx] = acc;
                }
            }
        }
    }
    Ok(())
}

/// Gradient of [`conv2d`] with respect to its bias: `grad_y` summed over batch and space.
pub fn conv2d_backward_bias(s: &Conv2dShape, grad_y: &[f32], grad_b: &mut [f32]) -> Result<()> {
    s.validate()?;
    check_len("grad_y", grad_y.len(), s.output_len()?)?;
    check_len("grad_bias", grad_b.len(), s.params.out_channels)?;
    let (oh, ow) = s.out_hw()?;
    let plane = oh * ow;
    for (oc, gb) in grad_b.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for n in 0..s.batch {
            let start = (n * s.params.out_channels + oc) * plane;
            for v in &grad_y[start..start + plane] {
                acc += v;
            }
        }
        *gb = acc;
    }
    Ok(())
}

/// Visits the window of output `(oy, ox)`: `(hstart, hend, wstart, wend)` clipped to the
/// input, and PyTorch's divisor for average pooling.
#[inline]
pub(crate) fn pool_window(
    s: &Pool2dShape,
    oy: usize,
    ox: usize,
) -> (usize, usize, usize, usize, usize) {
    let p = &s.params;
    // Work in coordinates shifted by the padding, so nothing goes negative.
    let hs = oy * p.stride.0;
    let ws = ox * p.stride.1;
    let he = (hs + p.kernel.0).min(s.in_h + 2 * p.padding.0);
    let we = (ws + p.kernel.1).min(s.in_w + 2 * p.padding.1);
    let full = (he - hs) * (we - ws);
    let h0 = hs.max(p.padding.0) - p.padding.0;
    let w0 = ws.max(p.padding.1) - p.padding.1;
    let h1 = he.min(s.in_h + p.padding.0).saturating_sub(p.padding.0);
    let w1 = we.min(s.in_w + p.padding.1).saturating_sub(p.padding.1);
    let divisor = if p.count_include_pad {
        full
    } else {
        (h1 - h0) * (w1 - w0)
    };
    (h0, h1, w0, w1, divisor)
}

/// Max pooling; `argmax` receives, per output, the index of the chosen input within its
/// `in_h * in_w` plane (PyTorch's `return_indices`). A window holding NaN gives NaN and
/// the index of its last NaN in row-major order, as PyTorch's CPU `max_pool2d` does.
pub fn max_pool2d(s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) -> Result<()> {
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    check_len("argmax", argmax.len(), y.len())?;
    let plane_in = s.in_h * s.in_w;
    for pl in 0..s.batch * s.channels {
        let xp = &x[pl * plane_in..(pl + 1) * plane_in];
        for oy in 0..oh {
            for ox in 0..ow {
                let (h0, h1, w0, w1, _) = pool_window(s, oy, ox);
                let mut best = f32::NEG_INFINITY;
                let mut idx = h0 * s.in_w + w0;
                for iy in h0..h1 {
                    for ix in w0..w1 {
                        let v = xp[iy * s.in_w + ix];
                        // PyTorch's CPU rule: NaN always takes over, so the last NaN wins.
                        if v > best || v.is_nan() {
                            best = v;
                            idx = iy * s.in_w + ix;
                        }
                    }
                }
                let o = (pl * oh + oy) * ow + ox;
                y[o] = best;
                argmax[o] = idx as u32;
            }
        }
    }
    Ok(())
}

/// Gradient of [`max_pool2d`]: each output's gradient goes to its argmax (overwrites `grad_x`).
pub fn max_pool2d_backward(
    s: &Pool2dShape,
    grad_y: &[f32],
    argmax: &[u32],
    grad_x: &mut [f32],
) -> Result<()> {
    let (oh, ow) = check_pool2d(s, grad_x.len(), grad_y.len())?;
    check_len("argmax", argmax.len(), grad_y.len())?;
    let plane_in = s.in_h * s.in_w;
    let plane_out = oh * ow;
    grad_x.fill(0.0);
    for pl in 0..s.batch * s.channels {
        for o in 0..plane_out {
            let i = argmax[pl * plane_out + o] as usize;
            if i >= plane_in {
                return Err(KernelError::InvalidArgument {
                    what: "argmax index outside the input plane",
                });
            }
            grad_x[pl * plane_in + i] += grad_y[pl * plane_out + o];
        }
    }
    Ok(())
}

/// Average pooling with zero padding (divisor per `count_include_pad`).
pub fn avg_pool2d(s: &Pool2dShape, x: &[f32], y: &mut [f32]) -> Result<()> {
    let (oh, ow) = check_pool2d(s, x.len(), y.len())?;
    let plane_in = s.in_h * s.in_w;
    for pl in 0..s.batch * s.channels {
        let xp = &x[pl * plane_in..(pl + 1) * plane_in];
        for oy in 0..oh {
            for ox in 0..ow {
                let (h0, h1, w0, w1, div) = pool_window(s, oy, ox);
                let mut acc = 0.0f32;
                for iy in h0..h1 {
                    for ix in w0..w1 {
                        acc += xp[iy * s.in_w + ix];
                    }
                }
                y[(pl * oh + oy) * ow + ox] = acc / div as f32;
            }
        }
    }
    Ok(())
}

/// Gradient of [`avg_pool2d`] (overwrites `grad_x`).
pub fn avg_pool2d_backward(s: &Pool2dShape, grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    let (oh, ow) = check_pool2d(s, grad_x.len(), grad_y.len())?;
    let plane_in = s.in_h * s.in_w;
    grad_x.fill(0.0);
    for pl in 0..s.batch * s.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let (h0, h1, w0, w1, div) = pool_window(s, oy, ox);
                let g = grad_y[(pl * oh + oy) * ow + ox] / div as f32;
                for iy in h0..h1 {
                    for ix in w0..w1 {
                        grad_x[pl * plane_in + iy * s.in_w + ix] += g;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `C = alpha op(A) op(B) + beta C`, three loops. With `beta == 0`, C is not read.
pub fn sgemm(
    g: &GemmShape,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> Result<()> {
    g.validate(a.len(), b.len(), c.len())?;
    for i in 0..g.m {
        for j in 0..g.n {
            let mut acc = 0.0f32;
            for p in 0..g.k {
                let av = match g.trans_a {
                    Transpose::No => a[i * g.lda + p],
                    Transpose::Yes => a[p * g.lda + i],
                };
                let bv = match g.trans_b {
                    Transpose::No => b[p * g.ldb + j],
                    Transpose::Yes => b[j * g.ldb + p],
                };
                acc += av * bv;
            }
            let ci = &mut c[i * g.ldc + j];
            *ci = if beta == 0.0 {
                alpha * acc
            } else {
                alpha * acc + beta * *ci
            };
        }
    }
    Ok(())
}

/// `y = max(x, 0)` with NaN kept: PyTorch's `threshold(x, 0, 0)`, `x <= 0 ? 0 : x`.
pub fn relu(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = if v <= 0.0 { 0.0 } else { v };
    }
    Ok(())
}

/// `grad_x = x <= 0 ? 0 : grad_y`: PyTorch's `threshold_backward(grad_y, x, 0)`, so the
/// gradient is 0 at `x == 0` and passes through where `x` is NaN.
pub fn relu_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(x.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), x.len())?;
    for ((o, &v), &g) in grad_x.iter_mut().zip(x).zip(grad_y) {
        *o = if v <= 0.0 { 0.0 } else { g };
    }
    Ok(())
}

/// `y = min(max(x, 0), 6)` with NaN and -0.0 kept: PyTorch's `hardtanh(x, 0, 6)`.
// Spelled out rather than `clamp`, which the fast kernel's tail uses.
#[allow(clippy::manual_clamp)]
pub fn relu6(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = if v.is_nan() {
            v
        } else if v < 0.0 {
            0.0
        } else if v > 6.0 {
            6.0
        } else {
            v
        };
    }
    Ok(())
}

/// `grad_x = grad_y` strictly inside `(0, 6)` and where `x` is NaN, else 0 (PyTorch's
/// `hardtanh_backward`).
pub fn relu6_backward(x: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(x.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), x.len())?;
    for ((o, &v), &g) in grad_x.iter_mut().zip(x).zip(grad_y) {
        *o = if v.is_nan() || (v > 0.0 && v < 6.0) {
            g
        } else {
            0.0
        };
    }
    Ok(())
}

/// `y = 1 / (1 + exp(-x))`.
pub fn sigmoid(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = 1.0 / (1.0 + libm::expf(-v));
    }
    Ok(())
}

/// `grad_x = grad_y * y * (1 - y)`, from the forward output `y`.
pub fn sigmoid_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    for ((o, &s), &g) in grad_x.iter_mut().zip(y).zip(grad_y) {
        *o = g * s * (1.0 - s);
    }
    Ok(())
}

/// `y = tanh(x)`.
pub fn tanh(x: &[f32], y: &mut [f32]) -> Result<()> {
    check_unary(x.len(), y.len())?;
    for (o, &v) in y.iter_mut().zip(x) {
        *o = libm::tanhf(v);
    }
    Ok(())
}

/// `grad_x = grad_y * (1 - y^2)`, from the forward output `y`.
pub fn tanh_backward(y: &[f32], grad_y: &[f32], grad_x: &mut [f32]) -> Result<()> {
    check_unary(y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    for ((o, &t), &g) in grad_x.iter_mut().zip(y).zip(grad_y) {
        *o = g * (1.0 - t * t);
    }
    Ok(())
}

/// Row-wise softmax of a `rows x cols` matrix.
pub fn softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_rows(rows, cols, x.len(), y.len())?;
    for r in 0..rows {
        let xr = &x[r * cols..(r + 1) * cols];
        // NaN-propagating: a row holding NaN is all NaN, as in PyTorch.
        let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| max_nan(a, b));
        let mut sum = 0.0f32;
        for (o, &v) in y[r * cols..(r + 1) * cols].iter_mut().zip(xr) {
            *o = libm::expf(v - m);
            sum += *o;
        }
        for o in &mut y[r * cols..(r + 1) * cols] {
            *o /= sum;
        }
    }
    Ok(())
}

/// Row-wise log-softmax: `x - max - log(sum(exp(x - max)))`.
pub fn log_softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_rows(rows, cols, x.len(), y.len())?;
    for r in 0..rows {
        let xr = &x[r * cols..(r + 1) * cols];
        let lse = logsumexp(xr);
        for (o, &v) in y[r * cols..(r + 1) * cols].iter_mut().zip(xr) {
            *o = v - lse;
        }
    }
    Ok(())
}

/// `log(sum(exp(x)))`, shifted by the maximum for stability; NaN if any element is NaN
/// (PyTorch's `logsumexp`), `-inf` for a row of `-inf`.
pub fn logsumexp(x: &[f32]) -> f32 {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| max_nan(a, b));
    if m.is_nan() || m == f32::NEG_INFINITY {
        return m;
    }
    let mut sum = 0.0f32;
    for &v in x {
        sum += libm::expf(v - m);
    }
    m + libm::logf(sum)
}

/// Gradient of [`softmax`]: `grad_x = y * (grad_y - sum(grad_y * y))`, row-wise.
pub fn softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    check_rows(rows, cols, y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    for r in 0..rows {
        let s = r * cols..(r + 1) * cols;
        let dot: f32 = y[s.clone()]
            .iter()
            .zip(&grad_y[s.clone()])
            .map(|(a, b)| a * b)
            .sum();
        for i in s {
            grad_x[i] = y[i] * (grad_y[i] - dot);
        }
    }
    Ok(())
}

/// Gradient of [`log_softmax`]: `grad_x = grad_y - exp(y) * sum(grad_y)`, row-wise.
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    check_rows(rows, cols, y.len(), grad_x.len())?;
    check_len("grad_y", grad_y.len(), y.len())?;
    for r in 0..rows {
        let s = r * cols..(r + 1) * cols;
        let sum: f32 = grad_y[s.clone()].iter().sum();
        for i in s {
            grad_x[i] = grad_y[i] - libm::expf(y[i]) * sum;
        }
    }
    Ok(())
}

/// Mean cross-entropy of `rows` logit rows against class `labels` (PyTorch's
/// `F.cross_entropy` with `reduction='mean'`).
pub fn cross_entropy(rows: usize, cols: usize, logits: &[f32], labels: &[u32]) -> Result<f32> {
    check_rows(rows, cols, logits.len(), logits.len())?;
    check_labels(rows, cols, labels)?;
    let mut total = 0.0f32;
    for r in 0..rows {
        let xr = &logits[r * cols..(r + 1) * cols];
        total += logsumexp(xr) - xr[labels[r] as usize];
    }
    Ok(total / rows as f32)
}

/// Per row of a `rows x cols` matrix, the index of its maximum (`torch.argmax(x, 1)`): the
/// first one on ties, and NaN counts as the maximum (the first NaN wins).
pub fn argmax_rows(rows: usize, cols: usize, x: &[f32], out: &mut [u32]) -> Result<()> {
    check_rows(rows, cols, x.len(), rows * cols)?;
    check_len("argmax", out.len(), rows)?;
    for (r, o) in out.iter_mut().enumerate() {
        let xr = &x[r * cols..(r + 1) * cols];
        let mut best = 0;
        for (c, &v) in xr.iter().enumerate() {
            if v > xr[best] || (v.is_nan() && !xr[best].is_nan()) {
                best = c;
            }
        }
        *o = best as u32;
    }
    Ok(())
}

/// Gradient of [`cross_entropy`] scaled by `grad_loss`: `(softmax(x) - onehot) * grad_loss / rows`.
pub fn cross_entropy_backward(
    rows: usize,
    cols: usize,
    logits: &[f32],
    labels: &[u32],
    grad_loss: f32,
    grad_logits: &mut [f32],
) -> Result<()> {
    check_rows(rows, cols, logits.len(), grad_logits.len())?;
    check_labels(rows, cols, labels)?;
    let scale = grad_loss / rows as f32;
    for r in 0..rows {
        let xr = &logits[r * cols..(r + 1) * cols];
        let lse = logsumexp(xr);
        for (c, (o, &v)) in grad_logits[r * cols..(r + 1) * cols]
            .iter_mut()
            .zip(xr)
            .enumerate()
        {
            let onehot = if c == labels[r] as usize { 1.0 } else { 0.0 };
            *o = (libm::expf(v - lse) - onehot) * scale;
        }
    }
    Ok(())
}

/// `x[o, c, i] += bias[c]` for `x` of shape `[outer, channels, inner]` (NCHW: inner = H*W;
/// a linear layer's `[batch, features]`: inner = 1).
pub fn bias_add(
    outer: usize,
    channels: usize,
    inner: usize,
    bias: &[f32],
    x: &mut [f32],
) -> Result<()> {
    check_bias(outer, channels, inner, bias.len(), x.len())?;
    for o in 0..outer {
        for c in 0..channels {
            for i in 0..inner {
                x[(o * channels + c) * inner + i] += bias[c];
            }
        }
    }
    Ok(())
}

/// Gradient of [`bias_add`]: `grad_bias[c] = sum over o, i of grad_y[o, c, i]` (overwrites).
pub fn bias_backward(
    outer: usize,
    channels: usize,
    inner: usize,
    grad_y: &[f32],
    grad_bias: &mut [f32],
) -> Result<()> {
    check_bias(outer, channels, inner, grad_bias.len(), grad_y.len())?;
    for (c, gb) in grad_bias.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for o in 0..outer {
            for i in 0..inner {
                acc += grad_y[(o * channels + c) * inner + i];
            }
        }
        *gb = acc;
    }
    Ok(())
}

/// One step of PyTorch's `torch.optim.SGD` on one parameter.
///
/// `momentum_buf` is unused (may be empty) when `cfg.momentum == 0`; otherwise it must have
/// the parameter's length and `first_step` says it holds nothing yet.
pub fn sgd_step(
    cfg: &SgdConfig,
    param: &mut [f32],
    grad: &[f32],
    momentum_buf: &mut [f32],
    first_step: bool,
) -> Result<()> {
    cfg.check(param.len(), grad.len(), momentum_buf.len())?;
    for i in 0..param.len() {
        let mut d = grad[i] + cfg.weight_decay * param[i];
        if cfg.momentum != 0.0 {
            let b = if first_step {
                d
            } else {
                cfg.momentum * momentum_buf[i] + (1.0 - cfg.dampening) * d
            };
            momentum_buf[i] = b;
            d = if cfg.nesterov {
                d + cfg.momentum * b
            } else {
                b
            };
        }
        param[i] -= cfg.lr * d;
    }
    Ok(())
}

/// One step of PyTorch's `torch.optim.Adam` (not AMSGrad); `step` counts from 1.
pub fn adam_step(
    cfg: &AdamConfig,
    step: u32,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    cfg.check(step, param.len(), grad.len(), m.len(), v.len())?;
    let bc1 = 1.0 - libm::powf(cfg.beta1, step as f32);
    let bc2 = 1.0 - libm::powf(cfg.beta2, step as f32);
    let step_size = cfg.lr / bc1;
    let bc2_sqrt = libm::sqrtf(bc2);
    for i in 0..param.len() {
        let g = grad[i] + cfg.weight_decay * param[i];
        m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g;
        v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g * g;
        let denom = libm::sqrtf(v[i]) / bc2_sqrt + cfg.eps;
        param[i] -= step_size * m[i] / denom;
    }
    Ok(())
}

// ----- batch norm and adaptive pooling --------------------------------------------------------

/// Element `(n, c, i)` of a `[batch, channels, spatial]` buffer.
fn bn_at(s: &BatchNormShape, n: usize, c: usize, i: usize) -> usize {
    (n * s.channels + c) * s.spatial + i
}

/// Mean and biased variance per channel, by definition, in f64.
pub fn batch_norm_stats(
    s: &BatchNormShape,
    x: &[f32],
    mean: &mut [f32],
    var: &mut [f32],
) -> Result<()> {
    check_batch_norm_stats(s, x, mean, var)?;
    let count = s.count() as f64;
    for c in 0..s.channels {
        let values = || (0..s.batch).flat_map(move |n| (0..s.spatial).map(move |i| (n, i)));
        let m = values()
            .map(|(n, i)| x[bn_at(s, n, c, i)] as f64)
            .sum::<f64>()
            / count;
        let v = values()
            .map(|(n, i)| {
                let d = x[bn_at(s, n, c, i)] as f64 - m;
                d * d
            })
            .sum::<f64>()
            / count;
        mean[c] = m as f32;
        var[c] = v as f32;
    }
    Ok(())
}

/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, as written, in f64.
pub fn batch_norm_forward(
    s: &BatchNormShape,
    x: &[f32],
    stats: &BatchNormStats<'_>,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    check_batch_norm_forward(s, x, stats, weight, bias, y)?;
    for n in 0..s.batch {
        for c in 0..s.channels {
            let std = libm::sqrt(stats.var[c] as f64 + stats.eps as f64);
            let w = weight.map_or(1.0, |w| w[c] as f64);
            let b = bias.map_or(0.0, |b| b[c] as f64);
            for i in 0..s.spatial {
                let at = bn_at(s, n, c, i);
                y[at] = ((x[at] as f64 - stats.mean[c] as f64) / std * w + b) as f32;
            }
        }
    }
    Ok(())
}

/// The batch-norm gradients by the chain rule through `xhat = (x - mean) * invstd`, in f64:
/// `grad_x = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))` when the statistics
/// are the batch's own (`training`), `w * invstd * dy` otherwise.
pub fn batch_norm_backward(
    s: &BatchNormShape,
    x: &[f32],
    grad_y: &[f32],
    stats: &BatchNormStats<'_>,
    weight: Option<&[f32]>,
    training: bool,
    grads: BatchNormGrads<'_>,
) -> Result<()> {
    check_batch_norm_backward(s, x, grad_y, stats, weight, &grads)?;
    let BatchNormGrads {
        x: mut gx,
        weight: mut gw,
        bias: mut gb,
    } = grads;
    let count = s.count().max(1) as f64;
    for c in 0..s.channels {
        let invstd = 1.0 / libm::sqrt(stats.var[c] as f64 + stats.eps as f64);
        let w = weight.map_or(1.0, |w| w[c] as f64);
        let xhat =
            |n: usize, i: usize| (x[bn_at(s, n, c, i)] as f64 - stats.mean[c] as f64) * invstd;
        let (mut sum_dy, mut sum_dy_xhat) = (0.0, 0.0);
        for n in 0..s.batch {
            for i in 0..s.spatial {
                let dy = grad_y[bn_at(s, n, c, i)] as f64;
                sum_dy += dy;
                sum_dy_xhat += dy * xhat(n, i);
            }
        }
        if let Some(g) = gw.as_deref_mut() {
            g[c] = sum_dy_xhat as f32;
        }
        if let Some(g) = gb.as_deref_mut() {
            g[c] = sum_dy as f32;
        }
        if let Some(g) = gx.as_deref_mut() {
            for n in 0..s.batch {
                for i in 0..s.spatial {
                    let at = bn_at(s, n, c, i);
                    let dy = grad_y[at] as f64;
                    let d = if training {
                        dy - sum_dy / count - xhat(n, i) * sum_dy_xhat / count
                    } else {
                        dy
                    };
                    g[at] = (w * invstd * d) as f32;
                }
            }
        }
    }
    Ok(())
}

/// Adaptive average pooling: every output the mean of its window, summed in f64.
pub fn adaptive_avg_pool2d(s: &AdaptivePool2dShape, x: &[f32], y: &mut [f32]) -> Result<()> {
    s.check(x.len(), y.len())?;
    for p in 0..s.batch * s.channels {
        for oi in 0..s.out_h {
            let (r0, r1) = adaptive_window(oi, s.in_h, s.out_h);
            for oj in 0..s.out_w {
                let (c0, c1) = adaptive_window(oj, s.in_w, s.out_w);
                let mut sum = 0.0f64;
                for r in r0..r1 {
                    for c in c0..c1 {
                        sum += x[(p * s.in_h + r) * s.in_w + c] as f64;
                    }
                }
                y[(p * s.out_h + oi) * s.out_w + oj] =
                    (sum / ((r1 - r0) * (c1 - c0)) as f64) as f32;
            }
        }
    }
    Ok(())
}

/// The gradient of [`adaptive_avg_pool2d`]: each input gets, from every window holding it,
/// that window's output gradient over the window's size.
pub fn adaptive_avg_pool2d_backward(
    s: &AdaptivePool2dShape,
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    s.check(grad_x.len(), grad_y.len())?;
    for p in 0..s.batch * s.channels {
        for r in 0..s.in_h {
            for c in 0..s.in_w {
                let mut g = 0.0f64;
                for oi in 0..s.out_h {
                    let (r0, r1) = adaptive_window(oi, s.in_h, s.out_h);
                    if !(r0..r1).contains(&r) {
                        continue;
                    }
                    for oj in 0..s.out_w {
                        let (c0, c1) = adaptive_window(oj, s.in_w, s.out_w);
                        if (c0..c1).contains(&c) {
                            g += grad_y[(p * s.out_h + oi) * s.out_w + oj] as f64
                                / ((r1 - r0) * (c1 - c0)) as f64;
                        }
                    }
                }
                grad_x[(p * s.in_h + r) * s.in_w + c] = g as f32;
            }
        }
    }
    Ok(())
}
