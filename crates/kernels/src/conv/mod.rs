//! 2-D cross-correlation ("convolution" in deep learning), forward and backward.
//!
//! Two algorithms, picked per shape by [`choose_algo`]:
//!
//! * [`ConvAlgo::Direct`] loops over output rows and keeps a few vectors of outputs in
//!   registers while it runs through the kernel taps (stride 1 along the width is
//!   vectorized; other strides use plain loops). It pays where channels per group are few
//!   (depthwise) and the GEMM would be a thin sliver. Its only scratch is a zero-padded
//!   copy of one image-group's input when the convolution pads.
//! * [`ConvAlgo::Im2colGemm`] unfolds one image-group into a `[cin_g*kh*kw, oh*ow]` column
//!   matrix and multiplies it by the group's weight with [`crate::gemm::sgemm`]. A 1x1,
//!   stride-1, unpadded convolution is already a matrix and skips the unfold.
//!
//! The backward passes mirror them: the direct one scatters `grad_y` rows into `grad_x`
//! rows and takes row dot products for `grad_w`; the GEMM one computes
//! `W_g^T x grad_y` and folds it back (col2im), and `grad_y x col^T` summed over the batch.
//! [`crate::reference::conv2d`] and its siblings define what all of them compute.

mod direct;
mod im2col;
pub(crate) mod rows;

use crate::error::{add, check_len, check_workspace, mul, product, Result};
use crate::gemm::sgemm_workspace_len;
use crate::shape::{Conv2dParams, Conv2dShape};
use crate::simd::{vectorize, Simd, WithSimd};

/// Checks a conv problem and its buffer lengths; returns the output (height, width).
pub(crate) fn check_conv2d(
    s: &Conv2dShape,
    x_len: usize,
    w_len: usize,
    y_len: usize,
) -> Result<(usize, usize)> {
    // The sizes `validate` computes, not computed again (flash on a microcontroller).
    let (input, output, hw) = s.checked_sizes()?;
    check_len("input", x_len, input)?;
    check_len("weight", w_len, s.weight_len())?;
    check_len("output", y_len, output)?;
    Ok(hw)
}

/// Checks d2l's corr2d arguments; returns the output (height, width).
pub(crate) fn check_corr2d(
    x_len: usize,
    x_hw: (usize, usize),
    k_len: usize,
    k_hw: (usize, usize),
    y_len: usize,
) -> Result<(usize, usize)> {
    let p = Conv2dParams::new(1, 1, k_hw);
    p.validate()?;
    let (oh, ow) = p.out_hw(x_hw.0, x_hw.1)?;
    check_len("x", x_len, mul("corr2d input", x_hw.0, x_hw.1)?)?;
    check_len("k", k_len, mul("corr2d kernel", k_hw.0, k_hw.1)?)?;
    check_len("y", y_len, mul("corr2d output", oh, ow)?)?;
    Ok((oh, ow))
}

/// Which algorithm computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// Chosen from the shape (see [`choose_algo`] and [`choose_backward_input_algo`], [`choose_backward_weight_algo`]).
    Auto,
    /// Loops over output pixels with SIMD along the output row; no workspace for the data.
    Direct,
    /// Unfold the input into columns, then one GEMM per image and group; 1x1 stride-1
    /// unpadded convolutions skip the unfold.
    Im2colGemm,
}

/// The algorithm [`ConvAlgo::Auto`] picks for the forward pass of `s`: never `Auto` itself.
///
/// GEMM wins as soon as a group's reduction (`cin_g * kh * kw`, the GEMM's depth) is long:
/// its micro-kernel keeps a 6x16 (AVX2) or 8x48 (AVX-512) tile of outputs in registers
/// across the whole depth. With one or two output channels per group (depthwise
/// convolutions) the GEMM degenerates to a matrix-vector product and the unfold is pure
/// overhead, so the direct loop takes over.
/// The direct loop also wins on short reductions with unit stride along rows at least a
/// vector wide (LeNet's first layer: 1 input channel, 5x5): it blocks four output channels
/// times two vectors in registers and never writes the 25-row column matrix.
///
/// ```
/// use tinycnn_kernels::{choose_algo, ConvAlgo, Conv2dParams, Conv2dShape};
/// let depthwise = Conv2dParams::new(32, 32, (3, 3)).with_padding((1, 1)).with_groups(32);
/// assert_eq!(choose_algo(&Conv2dShape::new(depthwise, 8, 56, 56)), ConvAlgo::Direct);
/// let lenet1 = Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2));
/// assert_eq!(choose_algo(&Conv2dShape::new(lenet1, 256, 28, 28)), ConvAlgo::Direct);
/// let lenet2 = Conv2dParams::new(6, 16, (5, 5));
/// assert_eq!(choose_algo(&Conv2dShape::new(lenet2, 256, 14, 14)), ConvAlgo::Im2colGemm);
/// ```
pub fn choose_algo(s: &Conv2dShape) -> ConvAlgo {
    let p = &s.params;
    if p.groups == 0 {
        return ConvAlgo::Direct;
    }
    if is_pointwise(p) {
        return ConvAlgo::Im2colGemm;
    }
    let reduction = reduction(p);
    let ow = s.out_hw().map_or(0, |(_, ow)| ow);
    let short_rows_ok = p.stride.1 == 1 && ow >= 8 && reduction <= 64;
    if p.out_per_group() <= 2 || reduction <= 4 || short_rows_ok {
        ConvAlgo::Direct
    } else {
        ConvAlgo::Im2colGemm
    }
}

/// The algorithm [`ConvAlgo::Auto`] picks for the input gradient of `s`: never `Auto`.
///
/// The direct input gradient is a row scatter (one axpy per tap and row) without the
/// forward's register blocking, so GEMM is taken whenever a group has more than two output
/// channels and a non-trivial reduction; depthwise and tiny reductions stay direct.
///
/// ```
/// use tinycnn_kernels::{choose_backward_input_algo, ConvAlgo, Conv2dParams, Conv2dShape};
/// let lenet2 = Conv2dParams::new(6, 16, (5, 5));
/// let s = Conv2dShape::new(lenet2, 256, 14, 14);
/// assert_eq!(choose_backward_input_algo(&s), ConvAlgo::Im2colGemm);
/// ```
pub fn choose_backward_input_algo(s: &Conv2dShape) -> ConvAlgo {
    let p = &s.params;
    if p.groups == 0 {
        return ConvAlgo::Direct;
    }
    if is_pointwise(p) {
        return ConvAlgo::Im2colGemm;
    }
    if p.out_per_group() <= 2 || reduction(p) <= 4 {
        ConvAlgo::Direct
    } else {
        ConvAlgo::Im2colGemm
    }
}

/// The algorithm [`ConvAlgo::Auto`] picks for the weight gradient of `s`: never `Auto`.
///
/// The direct weight gradient is register-blocked (two output channels times one kernel row
/// of taps). It wins where the GEMM is thin: with one or two input channels per group the
/// GEMM has `cin_g * kh * kw` rows of unfolded input but only `cout_g` rows of output
/// gradient, and the unfold costs more than the product (2.5x at LeNet's first layer, see
/// benches/README.md). With more input channels GEMM's blocking wins.
///
/// ```
/// use tinycnn_kernels::{choose_backward_weight_algo, ConvAlgo, Conv2dParams, Conv2dShape};
/// let lenet1 = Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2));
/// let s = Conv2dShape::new(lenet1, 256, 28, 28);
/// assert_eq!(choose_backward_weight_algo(&s), ConvAlgo::Direct);
/// let lenet2 = Conv2dParams::new(6, 16, (5, 5));
/// let s = Conv2dShape::new(lenet2, 256, 14, 14);
/// assert_eq!(choose_backward_weight_algo(&s), ConvAlgo::Im2colGemm);
/// ```
pub fn choose_backward_weight_algo(s: &Conv2dShape) -> ConvAlgo {
    let p = &s.params;
    if p.groups == 0 {
        return ConvAlgo::Direct;
    }
    if is_pointwise(p) {
        return ConvAlgo::Im2colGemm;
    }
    let narrow_input = p.in_per_group() <= 2 && p.stride.1 == 1;
    if narrow_input || p.out_per_group() <= 2 || reduction(p) <= 4 {
        ConvAlgo::Direct
    } else {
        ConvAlgo::Im2colGemm
    }
}

/// `cin_g * kh * kw`, saturating (only compared against small bounds).
fn reduction(p: &Conv2dParams) -> usize {
    p.in_per_group()
        .saturating_mul(p.kernel.0)
        .saturating_mul(p.kernel.1)
}

/// A 1x1 convolution with stride 1 and no padding: the input of one image-group already is
/// the `[cin_g, h*w]` column matrix.
fn is_pointwise(p: &Conv2dParams) -> bool {
    p.kernel == (1, 1) && p.stride == (1, 1) && p.padding == (0, 0)
}

fn resolve(algo: ConvAlgo, s: &Conv2dShape) -> ConvAlgo {
    match algo {
        ConvAlgo::Auto => choose_algo(s),
        other => other,
    }
}

fn resolve_backward_input(algo: ConvAlgo, s: &Conv2dShape) -> ConvAlgo {
    match algo {
        ConvAlgo::Auto => choose_backward_input_algo(s),
        other => other,
    }
}

fn resolve_backward_weight(algo: ConvAlgo, s: &Conv2dShape) -> ConvAlgo {
    match algo {
        ConvAlgo::Auto => choose_backward_weight_algo(s),
        other => other,
    }
}

/// The sizes of a validated convolution, every derived size computed once, checked.
///
/// This is the one place the convolution combines shape values (products of sizes,
/// padded sizes, the backward-weight row margin), so the loops that use the fields can do
/// plain arithmetic on them: a shape whose derived sizes overflow `usize` never gets a
/// `Geom`, it gets [`crate::KernelError::Overflow`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geom {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    pub cin_g: usize,
    pub cout_g: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    /// `in_h * in_w`
    pub in_plane: usize,
    /// `oh * ow`
    pub out_plane: usize,
    /// `kh * kw`
    pub taps: usize,
    /// `cin_g * kh * kw`: rows of the column matrix, columns of a group's weight.
    pub k: usize,
    /// `in_h + 2 * ph`: rows of the zero-padded input.
    pub hp: usize,
    /// `in_w + 2 * pw`: row length of the zero-padded input.
    pub wp: usize,
    /// `wp + direct::ROW_MARGIN`: row length of the backward-weight copy.
    pub wp_margin: usize,
}

impl Geom {
    /// Only call after `s.validate()` succeeded (which checks the buffer lengths); the
    /// derived sizes that are not buffer lengths are checked here.
    fn new(s: &Conv2dShape, (oh, ow): (usize, usize)) -> Result<Geom> {
        let p = &s.params;
        let (cin_g, cout_g) = (p.in_per_group(), p.out_per_group());
        let padded = |what, size: usize, pad: usize| add(what, size, mul(what, pad, 2)?);
        let hp = padded("padded input height", s.in_h, p.padding.0)?;
        let wp = padded("padded input width", s.in_w, p.padding.1)?;
        Ok(Geom {
            batch: s.batch,
            cin: p.in_channels,
            cout: p.out_channels,
            groups: p.groups,
            cin_g,
            cout_g,
            in_h: s.in_h,
            in_w: s.in_w,
            oh,
            ow,
            kh: p.kernel.0,
            kw: p.kernel.1,
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            dh: p.dilation.0,
            dw: p.dilation.1,
            in_plane: mul("input plane", s.in_h, s.in_w)?,
            out_plane: mul("output plane", oh, ow)?,
            taps: mul("kernel taps", p.kernel.0, p.kernel.1)?,
            k: product("im2col rows", &[cin_g, p.kernel.0, p.kernel.1])?,
            hp,
            wp,
            wp_margin: add("padded input width plus margin", wp, direct::ROW_MARGIN)?,
        })
    }

    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Elements of the im2col matrix of one image-group (0 for pointwise convolutions).
    fn col_len(&self) -> Result<usize> {
        if self.pointwise() {
            Ok(0)
        } else {
            mul("im2col matrix", self.k, self.out_plane)
        }
    }

    /// Elements of one image-group's zero-padded input (0 without padding).
    fn padded_len(&self) -> Result<usize> {
        if self.ph == 0 && self.pw == 0 {
            return Ok(0);
        }
        product("padded input", &[self.cin_g, self.hp, self.wp])
    }
}

/// Outputs `o` in `0..count` whose tap at offset `off` (kernel index times dilation) lands
/// inside an input of `size` after `pad` zeros: `pad <= o * stride + off < pad + size`.
/// Returns `(lo, hi)` with `lo <= hi <= count`.
#[inline]
pub(crate) fn valid_range(
    off: usize,
    pad: usize,
    stride: usize,
    size: usize,
    count: usize,
) -> (usize, usize) {
    let lo = if pad > off {
        (pad - off).div_ceil(stride)
    } else {
        0
    };
    let end = pad + size;
    let hi = if end > off {
        (end - off - 1) / stride + 1
    } else {
        0
    };
    let hi = hi.min(count);
    (lo.min(hi), hi)
}

fn forward_need(algo: ConvAlgo, g: &Geom) -> Result<usize> {
    match algo {
        ConvAlgo::Im2colGemm => add_need(
            g.col_len()?,
            sgemm_workspace_len(g.cout_g, g.out_plane, g.k),
        ),
        _ => g.padded_len(),
    }
}

fn backward_input_need(algo: ConvAlgo, g: &Geom) -> Result<usize> {
    match algo {
        ConvAlgo::Im2colGemm => add_need(
            g.col_len()?,
            sgemm_workspace_len(g.k, g.out_plane, g.cout_g),
        ),
        _ => Ok(0),
    }
}

fn backward_weight_need(algo: ConvAlgo, g: &Geom) -> Result<usize> {
    match algo {
        ConvAlgo::Im2colGemm => add_need(
            g.col_len()?,
            sgemm_workspace_len(g.cout_g, g.k, g.out_plane),
        ),
        _ if direct::blocked_weight(g) => direct::weight_copy_len(g),
        _ => Ok(0),
    }
}

fn add_need(a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or(crate::error::KernelError::Overflow {
        what: "conv workspace",
    })
}

/// Validates `s` and returns its geometry, for the workspace-size functions.
fn geom_of(s: &Conv2dShape) -> Result<Geom> {
    s.validate()?;
    Geom::new(s, s.out_hw()?)
}

/// Scratch elements [`conv2d_forward`] needs for `s` (0 for an invalid shape).
pub fn conv2d_workspace_len(s: &Conv2dShape) -> usize {
    conv2d_workspace_len_for(ConvAlgo::Auto, s)
}

/// Scratch elements [`conv2d_forward_with`] needs for `s` with `algo` (0 for an invalid shape).
///
/// ```
/// use tinycnn_kernels::{conv2d_workspace_len_for, ConvAlgo, Conv2dParams, Conv2dShape};
/// let s = Conv2dShape::new(Conv2dParams::new(3, 8, (3, 3)), 1, 10, 10);
/// // An unpadded direct convolution needs no scratch; im2col needs at least its columns.
/// assert_eq!(conv2d_workspace_len_for(ConvAlgo::Direct, &s), 0);
/// assert!(conv2d_workspace_len_for(ConvAlgo::Im2colGemm, &s) >= 3 * 3 * 3 * 8 * 8);
/// ```
pub fn conv2d_workspace_len_for(algo: ConvAlgo, s: &Conv2dShape) -> usize {
    geom_of(s)
        .and_then(|g| forward_need(resolve(algo, s), &g))
        .unwrap_or(0)
}

/// Scratch elements [`conv2d_backward_input`] needs (0 for an invalid shape).
pub fn conv2d_backward_input_workspace_len(s: &Conv2dShape) -> usize {
    conv2d_backward_input_workspace_len_for(ConvAlgo::Auto, s)
}

/// Scratch elements [`conv2d_backward_input_with`] needs with `algo` (0 for an invalid shape).
pub fn conv2d_backward_input_workspace_len_for(algo: ConvAlgo, s: &Conv2dShape) -> usize {
    geom_of(s)
        .and_then(|g| backward_input_need(resolve_backward_input(algo, s), &g))
        .unwrap_or(0)
}

/// Scratch elements [`conv2d_backward_weight`] needs (0 for an invalid shape).
pub fn conv2d_backward_weight_workspace_len(s: &Conv2dShape) -> usize {
    conv2d_backward_weight_workspace_len_for(ConvAlgo::Auto, s)
}

/// Scratch elements [`conv2d_backward_weight_with`] needs with `algo` (0 for an invalid shape).
pub fn conv2d_backward_weight_workspace_len_for(algo: ConvAlgo, s: &Conv2dShape) -> usize {
    geom_of(s)
        .and_then(|g| backward_weight_need(resolve_backward_weight(algo, s), &g))
        .unwrap_or(0)
}

/// d2l's `corr2d`, single channel, no padding, stride 1 (see [`crate::reference::corr2d`]).
///
/// Runs the direct algorithm, which needs no scratch without padding.
///
/// ```
/// use tinycnn_kernels::corr2d;
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
    let s = Conv2dShape::new(Conv2dParams::new(1, 1, k_hw), 1, x_hw.0, x_hw.1);
    let g = Geom::new(&s, (oh, ow))?;
    direct::forward(&g, x, k, None, y, &mut []);
    Ok(())
}

/// `y = conv2d(x, w) + bias` with the algorithm picked by [`choose_algo`].
///
/// `x` is `[batch, in, in_h, in_w]`, `w` is `[out, in / groups, kh, kw]`, `bias` is `[out]`,
/// `y` is `[batch, out, out_h, out_w]`; `workspace` holds at least [`conv2d_workspace_len`].
pub fn conv2d_forward(
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    conv2d_forward_with(ConvAlgo::Auto, s, x, w, bias, y, workspace)
}

/// [`conv2d_forward`] with an explicit algorithm; `workspace` holds at least
/// [`conv2d_workspace_len_for`]`(algo, s)`.
pub fn conv2d_forward_with(
    algo: ConvAlgo,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    let hw = check_conv2d(s, x.len(), w.len(), y.len())?;
    if let Some(b) = bias {
        check_len("bias", b.len(), s.params.out_channels)?;
    }
    let g = Geom::new(s, hw)?;
    let algo = resolve(algo, s);
    check_workspace(workspace.len(), forward_need(algo, &g)?)?;
    match algo {
        ConvAlgo::Im2colGemm => im2col::forward(&g, x, w, bias, y, workspace),
        _ => {
            direct::forward(&g, x, w, bias, y, workspace);
            Ok(())
        }
    }
}

/// Gradient with respect to the input (overwrites `grad_x`); `workspace` holds at least
/// [`conv2d_backward_input_workspace_len`].
pub fn conv2d_backward_input(
    s: &Conv2dShape,
    grad_y: &[f32],
    w: &[f32],
    grad_x: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    conv2d_backward_input_with(ConvAlgo::Auto, s, grad_y, w, grad_x, workspace)
}

/// [`conv2d_backward_input`] with an explicit algorithm; `workspace` holds at least
/// [`conv2d_backward_input_workspace_len_for`]`(algo, s)`.
pub fn conv2d_backward_input_with(
    algo: ConvAlgo,
    s: &Conv2dShape,
    grad_y: &[f32],
    w: &[f32],
    grad_x: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    let hw = check_conv2d(s, grad_x.len(), w.len(), grad_y.len())?;
    let g = Geom::new(s, hw)?;
    let algo = resolve_backward_input(algo, s);
    check_workspace(workspace.len(), backward_input_need(algo, &g)?)?;
    match algo {
        ConvAlgo::Im2colGemm => im2col::backward_input(&g, grad_y, w, grad_x, workspace),
        _ => {
            direct::backward_input(&g, grad_y, w, grad_x);
            Ok(())
        }
    }
}

/// Gradient with respect to the weight, summed over the batch (overwrites `grad_w`);
/// `workspace` holds at least [`conv2d_backward_weight_workspace_len`].
pub fn conv2d_backward_weight(
    s: &Conv2dShape,
    x: &[f32],
    grad_y: &[f32],
    grad_w: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    conv2d_backward_weight_with(ConvAlgo::Auto, s, x, grad_y, grad_w, workspace)
}

/// [`conv2d_backward_weight`] with an explicit algorithm; `workspace` holds at least
/// [`conv2d_backward_weight_workspace_len_for`]`(algo, s)`.
pub fn conv2d_backward_weight_with(
    algo: ConvAlgo,
    s: &Conv2dShape,
    x: &[f32],
    grad_y: &[f32],
    grad_w: &mut [f32],
    workspace: &mut [f32],
) -> Result<()> {
    let hw = check_conv2d(s, x.len(), grad_w.len(), grad_y.len())?;
    let g = Geom::new(s, hw)?;
    let algo = resolve_backward_weight(algo, s);
    check_workspace(workspace.len(), backward_weight_need(algo, &g)?)?;
    match algo {
        ConvAlgo::Im2colGemm => im2col::backward_weight(&g, x, grad_y, grad_w, workspace),
        _ => {
            direct::backward_weight(&g, x, grad_y, grad_w, workspace);
            Ok(())
        }
    }
}

/// Gradient with respect to the bias: `grad_y` summed over batch and space (overwrites `grad_b`).
pub fn conv2d_backward_bias(s: &Conv2dShape, grad_y: &[f32], grad_b: &mut [f32]) -> Result<()> {
    s.validate()?;
    check_len("grad_y", grad_y.len(), s.output_len()?)?;
    check_len("grad_bias", grad_b.len(), s.params.out_channels)?;
    let (oh, ow) = s.out_hw()?;
    vectorize(BiasGrad {
        batch: s.batch,
        plane: oh * ow,
        grad_y,
        grad_b,
    });
    Ok(())
}

struct BiasGrad<'a> {
    batch: usize,
    plane: usize,
    grad_y: &'a [f32],
    grad_b: &'a mut [f32],
}

impl WithSimd for BiasGrad<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let cout = self.grad_b.len();
        self.grad_b.fill(0.0);
        for n in 0..self.batch {
            for (oc, gb) in self.grad_b.iter_mut().enumerate() {
                let start = (n * cout + oc) * self.plane;
                *gb += rows::sum(s, &self.grad_y[start..start + self.plane]);
            }
        }
    }
}

#[cfg(test)]
mod tests;
