//! Batch normalization and adaptive (global) average pooling, forward and backward.
//!
//! Batch norm works on `[batch, channels, spatial]` row-major data (NCHW with `H * W`
//! flattened): every channel is normalized over its `batch * spatial` values. The sums run
//! in vector lanes of f32 within one `spatial` plane and in f64 across planes, so large
//! batches do not lose precision. The forward applies PyTorch's CPU form
//! `y = x * alpha + beta` with `alpha = weight / sqrt(var + eps)`,
//! `beta = bias - mean * alpha`.
//!
//! Adaptive average pooling uses PyTorch's windows: output row `i` of `out_h` averages input
//! rows `floor(i * in_h / out_h) .. ceil((i + 1) * in_h / out_h)` (columns likewise); output
//! `(1, 1)` is global average pooling, which has its own vectorized path.

use crate::error::{check_len, KernelError, Result};
use crate::simd::{vectorize, Simd, WithSimd};

/// The layout of a batch-norm problem: `x` is `[batch, channels, spatial]`, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchNormShape {
    /// `N`.
    pub batch: usize,
    /// `C`: one mean, variance, weight and bias per channel.
    pub channels: usize,
    /// `H * W` (1 for `[N, C]` inputs).
    pub spatial: usize,
}

impl BatchNormShape {
    /// A shape of `batch` images of `channels` planes of `spatial` elements.
    pub const fn new(batch: usize, channels: usize, spatial: usize) -> Self {
        BatchNormShape {
            batch,
            channels,
            spatial,
        }
    }
    /// Elements of `x` (and `y`).
    pub fn len(&self) -> Result<usize> {
        self.batch
            .checked_mul(self.channels)
            .and_then(|v| v.checked_mul(self.spatial))
            .ok_or(KernelError::Overflow {
                what: "batch norm input length",
            })
    }
    /// Whether `x` has no elements.
    pub fn is_empty(&self) -> bool {
        self.batch == 0 || self.channels == 0 || self.spatial == 0
    }
    /// Values per channel, `batch * spatial`.
    pub fn count(&self) -> usize {
        self.batch.saturating_mul(self.spatial)
    }
    /// The same problem for `batch` images (a chunk of the batch).
    pub const fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    pub(crate) fn check(&self, x_len: usize) -> Result<usize> {
        let n = self.len()?;
        check_len("x", x_len, n)?;
        Ok(n)
    }
}

/// The per-channel statistics a batch norm normalizes with: the batch's (training) or the
/// running ones (evaluation). `var` is the variance itself, not its inverse square root.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormStats<'a> {
    /// Mean per channel, `[channels]`.
    pub mean: &'a [f32],
    /// Variance per channel, `[channels]`.
    pub var: &'a [f32],
    /// Added to the variance before the square root.
    pub eps: f32,
}

impl BatchNormStats<'_> {
    pub(crate) fn check(&self, channels: usize) -> Result<()> {
        check_len("mean", self.mean.len(), channels)?;
        check_len("var", self.var.len(), channels)
    }
    fn invstd(&self, c: usize) -> f32 {
        1.0 / libm::sqrtf(self.var[c] + self.eps)
    }
    /// Channel `c`'s normalization as one affine map `y = x * alpha + beta` (weight 1 and
    /// bias 0 when not given), computed as PyTorch's CPU kernel does: [`batch_norm_forward`]
    /// applies it, and an inference path folds it into the convolution before the norm.
    ///
    /// ```
    /// use tinycnn_kernels::BatchNormStats;
    /// let stats = BatchNormStats { mean: &[4.0], var: &[4.0], eps: 0.0 };
    /// assert_eq!(stats.alpha_beta(0, Some(&[3.0]), Some(&[1.0])), (1.5, -5.0));
    /// ```
    pub fn alpha_beta(&self, c: usize, weight: Option<&[f32]>, bias: Option<&[f32]>) -> (f32, f32) {
        let alpha = self.invstd(c) * weight.map_or(1.0, |w| w[c]);
        (alpha, bias.map_or(0.0, |b| b[c]) - self.mean[c] * alpha)
    }
}

/// Where [`batch_norm_backward`] writes; each gradient is computed only when asked for.
#[derive(Debug, Default)]
pub struct BatchNormGrads<'a> {
    /// `[batch, channels, spatial]`, overwritten.
    pub x: Option<&'a mut [f32]>,
    /// `[channels]`, overwritten.
    pub weight: Option<&'a mut [f32]>,
    /// `[channels]`, overwritten.
    pub bias: Option<&'a mut [f32]>,
}

/// The mean and the *biased* variance (divided by `batch * spatial`) of every channel,
/// computed in two passes (mean first, then squared deviations) for accuracy.
///
/// ```
/// use tinycnn_kernels::{batch_norm_stats, BatchNormShape};
/// // Two images of one channel of two values: 1, 3 | 5, 7.
/// let (mut mean, mut var) = ([0.0], [0.0]);
/// batch_norm_stats(&BatchNormShape::new(2, 1, 2), &[1.0, 3.0, 5.0, 7.0], &mut mean, &mut var).unwrap();
/// assert_eq!((mean[0], var[0]), (4.0, 5.0));
/// ```
pub fn batch_norm_stats(
    s: &BatchNormShape,
    x: &[f32],
    mean: &mut [f32],
    var: &mut [f32],
) -> Result<()> {
    check_batch_norm_stats(s, x, mean, var)?;
    let inv_count = 1.0 / s.count() as f64;
    for c in 0..s.channels {
        let planes = planes(s, x, c);
        let sum: f64 = planes.clone().map(|p| vectorize(Sum { x: p }) as f64).sum();
        let m = (sum * inv_count) as f32;
        let sq: f64 = planes
            .map(|p| vectorize(SquaredDeviation { x: p, mean: m }) as f64)
            .sum();
        mean[c] = m;
        var[c] = (sq * inv_count) as f32;
    }
    Ok(())
}

/// The `batch` planes of channel `c`.
fn planes<'a>(
    s: &BatchNormShape,
    x: &'a [f32],
    c: usize,
) -> impl Iterator<Item = &'a [f32]> + Clone + 'a {
    let (per_image, spatial, start) = (s.channels * s.spatial, s.spatial, c * s.spatial);
    (0..s.batch).map(move |n| &x[n * per_image + start..][..spatial])
}

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` per channel (weight 1 and bias 0 when
/// not given), as PyTorch's CPU kernel computes it: `y = x * alpha + beta`.
///
/// ```
/// use tinycnn_kernels::{batch_norm_forward, BatchNormShape, BatchNormStats};
/// let stats = BatchNormStats { mean: &[4.0], var: &[4.0], eps: 0.0 };
/// let mut y = [0.0; 2];
/// batch_norm_forward(&BatchNormShape::new(1, 1, 2), &[2.0, 8.0], &stats, Some(&[3.0]), Some(&[1.0]), &mut y).unwrap();
/// assert_eq!(y, [-2.0, 7.0]);
/// ```
pub fn batch_norm_forward(
    s: &BatchNormShape,
    x: &[f32],
    stats: &BatchNormStats<'_>,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    check_batch_norm_forward(s, x, stats, weight, bias, y)?;
    let per_image = s.channels * s.spatial;
    for c in 0..s.channels {
        let (alpha, beta) = stats.alpha_beta(c, weight, bias);
        for b in 0..s.batch {
            let at = b * per_image + c * s.spatial;
            let (xp, yp) = (&x[at..at + s.spatial], &mut y[at..at + s.spatial]);
            vectorize(Affine {
                x: xp,
                y: yp,
                alpha,
                beta,
            });
        }
    }
    Ok(())
}

/// The argument checks of [`batch_norm_stats`] and its naive twin.
pub(crate) fn check_batch_norm_stats(
    s: &BatchNormShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
) -> Result<()> {
    s.check(x.len())?;
    check_len("mean", mean.len(), s.channels)?;
    check_len("var", var.len(), s.channels)?;
    if s.count() == 0 {
        return Err(KernelError::Zero {
            what: "values per channel (batch * spatial)",
        });
    }
    Ok(())
}

/// The argument checks of [`batch_norm_forward`] and its naive twin.
pub(crate) fn check_batch_norm_forward(
    s: &BatchNormShape,
    x: &[f32],
    stats: &BatchNormStats<'_>,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    y: &[f32],
) -> Result<()> {
    let n = s.check(x.len())?;
    check_len("y", y.len(), n)?;
    stats.check(s.channels)?;
    check_affine(s.channels, weight, bias)
}

/// The argument checks of [`batch_norm_backward`] and its naive twin.
pub(crate) fn check_batch_norm_backward(
    s: &BatchNormShape,
    x: &[f32],
    grad_y: &[f32],
    stats: &BatchNormStats<'_>,
    weight: Option<&[f32]>,
    grads: &BatchNormGrads<'_>,
) -> Result<()> {
    let n = s.check(x.len())?;
    check_len("grad_y", grad_y.len(), n)?;
    stats.check(s.channels)?;
    check_affine(s.channels, weight, None)?;
    if let Some(g) = grads.x.as_deref() {
        check_len("grad_x", g.len(), n)?;
    }
    if let Some(g) = grads.weight.as_deref() {
        check_len("grad_weight", g.len(), s.channels)?;
    }
    if let Some(g) = grads.bias.as_deref() {
        check_len("grad_bias", g.len(), s.channels)?;
    }
    Ok(())
}

fn check_affine(channels: usize, weight: Option<&[f32]>, bias: Option<&[f32]>) -> Result<()> {
    if let Some(w) = weight {
        check_len("weight", w.len(), channels)?;
    }
    if let Some(b) = bias {
        check_len("bias", b.len(), channels)?;
    }
    Ok(())
}

/// Gradients of [`batch_norm_forward`] from `grad_y`.
///
/// With `training`, `stats` are the batch's own (from [`batch_norm_stats`] on this `x`), so
/// the gradient also flows through the mean and variance:
/// `grad_x = (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean))) * invstd * w`.
/// Without it the statistics are constants: `grad_x = dy * invstd * w`. Always
/// `grad_weight = sum(dy * (x - mean)) * invstd` and `grad_bias = sum(dy)` per channel.
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
    let per_image = s.channels * s.spatial;
    let inv_count = if s.count() == 0 {
        0.0
    } else {
        1.0 / s.count() as f64
    };
    for c in 0..s.channels {
        let (mean, invstd) = (stats.mean[c], stats.invstd(c));
        let (mut sum_dy, mut sum_dy_xmu) = (0.0f64, 0.0f64);
        for (xp, gp) in planes(s, x, c).zip(planes(s, grad_y, c)) {
            let (a, b) = vectorize(DotCentered { x: xp, g: gp, mean });
            sum_dy += a as f64;
            sum_dy_xmu += b as f64;
        }
        if let Some(g) = gw.as_deref_mut() {
            g[c] = (sum_dy_xmu * invstd as f64) as f32;
        }
        if let Some(g) = gb.as_deref_mut() {
            g[c] = sum_dy as f32;
        }
        let Some(gx) = gx.as_deref_mut() else {
            continue;
        };
        let scale = invstd * weight.map_or(1.0, |w| w[c]);
        // dx = (dy - mean_dy - (x - mean) * k) * scale; without training mean_dy = k = 0.
        let (mean_dy, k) = if training {
            (
                (sum_dy * inv_count) as f32,
                (sum_dy_xmu * inv_count) as f32 * invstd * invstd,
            )
        } else {
            (0.0, 0.0)
        };
        for b in 0..s.batch {
            let at = b * per_image + c * s.spatial;
            vectorize(BackwardInput {
                x: &x[at..at + s.spatial],
                g: &grad_y[at..at + s.spatial],
                gx: &mut gx[at..at + s.spatial],
                mean,
                mean_dy,
                k,
                scale,
            });
        }
    }
    Ok(())
}

struct Sum<'a> {
    x: &'a [f32],
}

impl WithSimd for Sum<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> f32 {
        let l = S::LANES;
        let mut acc = s.zero();
        let mut i = 0;
        while i + l <= self.x.len() {
            acc = s.add(acc, s.load(&self.x[i..]));
            i += l;
        }
        s.reduce_sum(acc) + self.x[i..].iter().sum::<f32>()
    }
}

struct SquaredDeviation<'a> {
    x: &'a [f32],
    mean: f32,
}

impl WithSimd for SquaredDeviation<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> f32 {
        let l = S::LANES;
        let m = s.splat(self.mean);
        let mut acc = s.zero();
        let mut i = 0;
        while i + l <= self.x.len() {
            let d = s.sub(s.load(&self.x[i..]), m);
            acc = s.mul_add(d, d, acc);
            i += l;
        }
        let tail: f32 = self.x[i..]
            .iter()
            .map(|&v| (v - self.mean) * (v - self.mean))
            .sum();
        s.reduce_sum(acc) + tail
    }
}

struct Affine<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
    alpha: f32,
    beta: f32,
}

impl WithSimd for Affine<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let n = self.x.len().min(self.y.len());
        let (a, b) = (s.splat(self.alpha), s.splat(self.beta));
        let mut i = 0;
        while i + l <= n {
            s.store(&mut self.y[i..], s.mul_add(s.load(&self.x[i..]), a, b));
            i += l;
        }
        for (o, &v) in self.y[i..n].iter_mut().zip(&self.x[i..n]) {
            *o = v * self.alpha + self.beta;
        }
    }
}

/// `(sum(g), sum(g * (x - mean)))` of one plane.
struct DotCentered<'a> {
    x: &'a [f32],
    g: &'a [f32],
    mean: f32,
}

impl WithSimd for DotCentered<'_> {
    type Output = (f32, f32);
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> (f32, f32) {
        let l = S::LANES;
        let n = self.x.len().min(self.g.len());
        let m = s.splat(self.mean);
        let (mut sg, mut sgx) = (s.zero(), s.zero());
        let mut i = 0;
        while i + l <= n {
            let g = s.load(&self.g[i..]);
            sg = s.add(sg, g);
            sgx = s.mul_add(g, s.sub(s.load(&self.x[i..]), m), sgx);
            i += l;
        }
        let (mut tg, mut tgx) = (0.0f32, 0.0f32);
        for (&x, &g) in self.x[i..n].iter().zip(&self.g[i..n]) {
            tg += g;
            tgx += g * (x - self.mean);
        }
        (s.reduce_sum(sg) + tg, s.reduce_sum(sgx) + tgx)
    }
}

struct BackwardInput<'a> {
    x: &'a [f32],
    g: &'a [f32],
    gx: &'a mut [f32],
    mean: f32,
    mean_dy: f32,
    k: f32,
    scale: f32,
}

impl WithSimd for BackwardInput<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let l = S::LANES;
        let n = self.x.len().min(self.g.len()).min(self.gx.len());
        let (m, mdy, k, sc) = (
            s.splat(self.mean),
            s.splat(self.mean_dy),
            s.splat(self.k),
            s.splat(self.scale),
        );
        let mut i = 0;
        while i + l <= n {
            let xmu = s.sub(s.load(&self.x[i..]), m);
            let d = s.sub(s.sub(s.load(&self.g[i..]), mdy), s.mul(xmu, k));
            s.store(&mut self.gx[i..], s.mul(d, sc));
            i += l;
        }
        for ((o, &x), &g) in self.gx[i..n]
            .iter_mut()
            .zip(&self.x[i..n])
            .zip(&self.g[i..n])
        {
            *o = (g - self.mean_dy - (x - self.mean) * self.k) * self.scale;
        }
    }
}

// ----- adaptive average pooling ---------------------------------------------------------------

/// The layout of an adaptive average pooling: `[batch, channels, in_h, in_w]` to
/// `[batch, channels, out_h, out_w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptivePool2dShape {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl AdaptivePool2dShape {
    /// Pooling of `[batch, channels, in_h, in_w]` to `out = (out_h, out_w)`.
    pub const fn new(
        batch: usize,
        channels: usize,
        (in_h, in_w): (usize, usize),
        (out_h, out_w): (usize, usize),
    ) -> Self {
        AdaptivePool2dShape {
            batch,
            channels,
            in_h,
            in_w,
            out_h,
            out_w,
        }
    }
    /// The same problem for `batch` images.
    pub const fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    /// Errors when a spatial size is zero (every window must hold an element).
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("input height", self.in_h),
            ("input width", self.in_w),
            ("output height", self.out_h),
            ("output width", self.out_w),
        ] {
            if v == 0 {
                return Err(KernelError::Zero { what });
            }
        }
        Ok(())
    }
    fn planes(&self) -> Result<usize> {
        self.batch
            .checked_mul(self.channels)
            .ok_or(KernelError::Overflow {
                what: "adaptive pool planes",
            })
    }
    /// Elements of the input.
    pub fn input_len(&self) -> Result<usize> {
        self.planes()?
            .checked_mul(self.in_h)
            .and_then(|v| v.checked_mul(self.in_w))
            .ok_or(KernelError::Overflow {
                what: "adaptive pool input length",
            })
    }
    /// Elements of the output.
    pub fn output_len(&self) -> Result<usize> {
        self.planes()?
            .checked_mul(self.out_h)
            .and_then(|v| v.checked_mul(self.out_w))
            .ok_or(KernelError::Overflow {
                what: "adaptive pool output length",
            })
    }
    pub(crate) fn check(&self, x_len: usize, y_len: usize) -> Result<()> {
        self.validate()?;
        check_len("input", x_len, self.input_len()?)?;
        check_len("output", y_len, self.output_len()?)
    }
}

/// PyTorch's adaptive pooling window along one axis: output index `i` of `out` covers input
/// `floor(i * input / out) .. ceil((i + 1) * input / out)`.
///
/// ```
/// // 5 rows pooled to 3: rows 0..2, 1..4, 3..5 (the windows overlap).
/// let w: Vec<_> = (0..3).map(|i| tinycnn_kernels::adaptive_window(i, 5, 3)).collect();
/// assert_eq!(w, [(0, 2), (1, 4), (3, 5)]);
/// ```
pub const fn adaptive_window(i: usize, input: usize, out: usize) -> (usize, usize) {
    (i * input / out, ((i + 1) * input).div_ceil(out))
}

/// Adaptive average pooling (`F.adaptive_avg_pool2d`).
pub fn adaptive_avg_pool2d_forward(
    s: &AdaptivePool2dShape,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    s.check(x.len(), y.len())?;
    let (plane_in, plane_out) = (s.in_h * s.in_w, s.out_h * s.out_w);
    if plane_out == 1 {
        let inv = 1.0 / plane_in as f32;
        for (xp, o) in x.chunks_exact(plane_in).zip(y.iter_mut()) {
            *o = vectorize(Sum { x: xp }) * inv;
        }
        return Ok(());
    }
    for (xp, yp) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(plane_out)) {
        for oi in 0..s.out_h {
            let (r0, r1) = adaptive_window(oi, s.in_h, s.out_h);
            for oj in 0..s.out_w {
                let (c0, c1) = adaptive_window(oj, s.in_w, s.out_w);
                let mut sum = 0.0f32;
                for r in r0..r1 {
                    sum += xp[r * s.in_w + c0..r * s.in_w + c1].iter().sum::<f32>();
                }
                yp[oi * s.out_w + oj] = sum / ((r1 - r0) * (c1 - c0)) as f32;
            }
        }
    }
    Ok(())
}

/// The gradient of [`adaptive_avg_pool2d_forward`]: each output gradient divided by its
/// window's size and added to every input of the window (`grad_x` is overwritten).
pub fn adaptive_avg_pool2d_backward(
    s: &AdaptivePool2dShape,
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    s.check(grad_x.len(), grad_y.len())?;
    let (plane_in, plane_out) = (s.in_h * s.in_w, s.out_h * s.out_w);
    if plane_out == 1 {
        let inv = 1.0 / plane_in as f32;
        for (gp, &g) in grad_x.chunks_exact_mut(plane_in).zip(grad_y) {
            gp.fill(g * inv);
        }
        return Ok(());
    }
    for (gxp, gyp) in grad_x
        .chunks_exact_mut(plane_in)
        .zip(grad_y.chunks_exact(plane_out))
    {
        gxp.fill(0.0);
        for oi in 0..s.out_h {
            let (r0, r1) = adaptive_window(oi, s.in_h, s.out_h);
            for oj in 0..s.out_w {
                let (c0, c1) = adaptive_window(oj, s.in_w, s.out_w);
                let g = gyp[oi * s.out_w + oj] / ((r1 - r0) * (c1 - c0)) as f32;
                for r in r0..r1 {
                    for v in &mut gxp[r * s.in_w + c0..r * s.in_w + c1] {
                        *v += g;
                    }
                }
            }
        }
    }
    Ok(())
}
