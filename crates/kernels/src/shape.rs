//! Shapes and options of the kernels: small `Copy` structs, validated once per call.
//!
//! Layout everywhere is NCHW, row-major, f32. Convolution weights are
//! `[out_channels, in_channels / groups, kernel_h, kernel_w]`, as in PyTorch.

use crate::error::{mul, product, KernelError, Result};

/// PyTorch's output size: `floor((n + 2p - d(k - 1) - 1) / s) + 1`.
///
/// Returns an error when the dilated kernel does not fit in the padded input or a
/// size is zero.
///
/// ```
/// use tinycnn_kernels::out_size;
/// assert_eq!(out_size("height", 28, 5, 1, 2, 1).unwrap(), 28); // LeNet's first conv
/// assert_eq!(out_size("height", 8, 3, 2, 1, 1).unwrap(), 4);
/// ```
pub fn out_size(
    axis: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize> {
    if kernel == 0 {
        return Err(KernelError::Zero { what: "kernel" });
    }
    if stride == 0 {
        return Err(KernelError::Zero { what: "stride" });
    }
    if dilation == 0 {
        return Err(KernelError::Zero { what: "dilation" });
    }
    if input == 0 {
        return Err(KernelError::Zero { what: "input size" });
    }
    let padded = padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(input))
        .ok_or(KernelError::Overflow {
            what: "padded input",
        })?;
    let span = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|s| s.checked_add(1))
        .ok_or(KernelError::Overflow {
            what: "dilated kernel",
        })?;
    if span > padded {
        return Err(KernelError::KernelTooLarge {
            axis,
            kernel: span,
            padded_input: padded,
        });
    }
    Ok((padded - span) / stride + 1)
}

/// The options of a 2-D convolution layer, as PyTorch's `nn.Conv2d` takes them.
///
/// ```
/// use tinycnn_kernels::Conv2dParams;
/// let p = Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2));
/// assert_eq!(p.weight_len(), 6 * 1 * 5 * 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    pub in_channels: usize,
    pub out_channels: usize,
    /// (height, width)
    pub kernel: (usize, usize),
    /// (height, width); PyTorch's default is (1, 1).
    pub stride: (usize, usize),
    /// Zero padding on each side, (height, width).
    pub padding: (usize, usize),
    /// (height, width); PyTorch's default is (1, 1).
    pub dilation: (usize, usize),
    /// Channel groups: 1 is a dense convolution, `in_channels` is depthwise.
    pub groups: usize,
}

impl Conv2dParams {
    /// Stride 1, no padding, no dilation, one group: PyTorch's defaults.
    pub const fn new(in_channels: usize, out_channels: usize, kernel: (usize, usize)) -> Self {
        Conv2dParams {
            in_channels,
            out_channels,
            kernel,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
    pub const fn with_stride(mut self, stride: (usize, usize)) -> Self {
        self.stride = stride;
        self
    }
    pub const fn with_padding(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }
    pub const fn with_dilation(mut self, dilation: (usize, usize)) -> Self {
        self.dilation = dilation;
        self
    }
    pub const fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// Input channels per group.
    ///
    /// 0 when `groups` is 0 (an invalid shape that `validate` rejects), so it never divides by zero.
    pub const fn in_per_group(&self) -> usize {
        match self.in_channels.checked_div(self.groups) {
            Some(c) => c,
            None => 0,
        }
    }
    /// Output channels per group.
    ///
    /// 0 when `groups` is 0 (an invalid shape that `validate` rejects), so it never divides by zero.
    pub const fn out_per_group(&self) -> usize {
        match self.out_channels.checked_div(self.groups) {
            Some(c) => c,
            None => 0,
        }
    }
    /// Elements of the weight tensor `[out, in / groups, kh, kw]` (saturating; `validate` checks overflow).
    pub const fn weight_len(&self) -> usize {
        if self.groups == 0 {
            return 0;
        }
        self.out_channels
            .saturating_mul(self.in_channels / self.groups)
            .saturating_mul(self.kernel.0)
            .saturating_mul(self.kernel.1)
    }
    /// Checks the options that do not depend on the input size.
    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 {
            return Err(KernelError::Zero {
                what: "in_channels",
            });
        }
        if self.out_channels == 0 {
            return Err(KernelError::Zero {
                what: "out_channels",
            });
        }
        if self.groups == 0 {
            return Err(KernelError::Zero { what: "groups" });
        }
        if self.kernel.0 == 0 || self.kernel.1 == 0 {
            return Err(KernelError::Zero { what: "kernel" });
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(KernelError::Zero { what: "stride" });
        }
        if self.dilation.0 == 0 || self.dilation.1 == 0 {
            return Err(KernelError::Zero { what: "dilation" });
        }
        if !self.in_channels.is_multiple_of(self.groups) {
            return Err(KernelError::ChannelsNotDivisibleByGroups {
                what: "in_channels",
                channels: self.in_channels,
                groups: self.groups,
            });
        }
        if !self.out_channels.is_multiple_of(self.groups) {
            return Err(KernelError::ChannelsNotDivisibleByGroups {
                what: "out_channels",
                channels: self.out_channels,
                groups: self.groups,
            });
        }
        product(
            "weight",
            &[
                self.out_channels,
                self.in_channels / self.groups,
                self.kernel.0,
                self.kernel.1,
            ],
        )?;
        Ok(())
    }
    /// Output (height, width) for an input of (height, width).
    pub fn out_hw(&self, in_h: usize, in_w: usize) -> Result<(usize, usize)> {
        Ok((
            out_size(
                "height",
                in_h,
                self.kernel.0,
                self.stride.0,
                self.padding.0,
                self.dilation.0,
            )?,
            out_size(
                "width",
                in_w,
                self.kernel.1,
                self.stride.1,
                self.padding.1,
                self.dilation.1,
            )?,
        ))
    }
}

/// A whole convolution problem: the layer's options and the input's batch and size.
///
/// ```
/// use tinycnn_kernels::{Conv2dParams, Conv2dShape};
/// let s = Conv2dShape::new(Conv2dParams::new(6, 16, (5, 5)), 256, 14, 14);
/// s.validate().unwrap();
/// assert_eq!(s.out_hw().unwrap(), (10, 10));
/// assert_eq!(s.output_len().unwrap(), 256 * 16 * 10 * 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub params: Conv2dParams,
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
}

impl Conv2dShape {
    pub const fn new(params: Conv2dParams, batch: usize, in_h: usize, in_w: usize) -> Self {
        Conv2dShape {
            params,
            batch,
            in_h,
            in_w,
        }
    }
    /// Checks every option and that all buffer sizes fit in `usize`.
    pub fn validate(&self) -> Result<()> {
        self.checked_sizes().map(|_| ())
    }
    /// [`Self::validate`], returning what it computes: the input and output lengths and the
    /// output (height, width) (the kernels' checks use them without computing them again).
    pub(crate) fn checked_sizes(&self) -> Result<(usize, usize, (usize, usize))> {
        self.params.validate()?;
        if self.batch == 0 {
            return Err(KernelError::Zero { what: "batch" });
        }
        let (oh, ow) = self.out_hw()?;
        let input = self.input_len()?;
        let output = product(
            "conv output",
            &[self.batch, self.params.out_channels, oh, ow],
        )?;
        Ok((input, output, (oh, ow)))
    }
    /// Output (height, width).
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        self.params.out_hw(self.in_h, self.in_w)
    }
    /// Elements of the input `[batch, in_channels, in_h, in_w]`.
    pub fn input_len(&self) -> Result<usize> {
        product(
            "conv input",
            &[self.batch, self.params.in_channels, self.in_h, self.in_w],
        )
    }
    /// Elements of the output `[batch, out_channels, out_h, out_w]`.
    pub fn output_len(&self) -> Result<usize> {
        let (oh, ow) = self.out_hw()?;
        product(
            "conv output",
            &[self.batch, self.params.out_channels, oh, ow],
        )
    }
    /// Elements of the weight `[out, in / groups, kh, kw]`.
    pub fn weight_len(&self) -> usize {
        self.params.weight_len()
    }
    /// Rows of the im2col matrix of one group: `in_per_group * kh * kw`.
    pub fn col_rows(&self) -> Result<usize> {
        self.params.validate()?;
        product(
            "im2col rows",
            &[
                self.params.in_per_group(),
                self.params.kernel.0,
                self.params.kernel.1,
            ],
        )
    }
    /// Columns of the im2col matrix: `out_h * out_w`.
    pub fn col_cols(&self) -> Result<usize> {
        let (oh, ow) = self.out_hw()?;
        mul("im2col columns", oh, ow)
    }
    /// The same problem with another batch size (used to split a batch over threads).
    pub const fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
}

/// Options of a 2-D pooling layer (`nn.MaxPool2d` / `nn.AvgPool2d`).
///
/// `Pool2dParams::new(k)` is PyTorch's `MaxPool2d(k)`: stride equal to the kernel, no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// (height, width)
    pub kernel: (usize, usize),
    /// (height, width); PyTorch's default is the kernel size.
    pub stride: (usize, usize),
    /// (height, width); max pooling pads with -inf, average pooling with zeros.
    pub padding: (usize, usize),
    /// Average pooling only: divide by the whole window, padding included (PyTorch's default `true`).
    pub count_include_pad: bool,
}

impl Pool2dParams {
    /// Square kernel `k`, stride `k`, no padding, `count_include_pad = true`.
    pub const fn new(kernel: usize) -> Self {
        Pool2dParams {
            kernel: (kernel, kernel),
            stride: (kernel, kernel),
            padding: (0, 0),
            count_include_pad: true,
        }
    }
    /// Kernel (h, w) with stride equal to the kernel.
    pub const fn with_kernel(kernel: (usize, usize)) -> Self {
        Pool2dParams {
            kernel,
            stride: kernel,
            padding: (0, 0),
            count_include_pad: true,
        }
    }
    pub const fn with_stride(mut self, stride: (usize, usize)) -> Self {
        self.stride = stride;
        self
    }
    pub const fn with_padding(mut self, padding: (usize, usize)) -> Self {
        self.padding = padding;
        self
    }
    pub const fn with_count_include_pad(mut self, include: bool) -> Self {
        self.count_include_pad = include;
        self
    }
    /// Checks the options that do not depend on the input size.
    pub fn validate(&self) -> Result<()> {
        if self.kernel.0 == 0 || self.kernel.1 == 0 {
            return Err(KernelError::Zero { what: "kernel" });
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(KernelError::Zero { what: "stride" });
        }
        if self.padding.0 > self.kernel.0 / 2 {
            return Err(KernelError::PaddingTooLarge {
                axis: "height",
                padding: self.padding.0,
                kernel: self.kernel.0,
            });
        }
        if self.padding.1 > self.kernel.1 / 2 {
            return Err(KernelError::PaddingTooLarge {
                axis: "width",
                padding: self.padding.1,
                kernel: self.kernel.1,
            });
        }
        Ok(())
    }
    /// Output (height, width) for an input of (height, width).
    pub fn out_hw(&self, in_h: usize, in_w: usize) -> Result<(usize, usize)> {
        Ok((
            out_size(
                "height",
                in_h,
                self.kernel.0,
                self.stride.0,
                self.padding.0,
                1,
            )?,
            out_size(
                "width",
                in_w,
                self.kernel.1,
                self.stride.1,
                self.padding.1,
                1,
            )?,
        ))
    }
}

/// A whole pooling problem: options and the input `[batch, channels, in_h, in_w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    pub params: Pool2dParams,
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
}

impl Pool2dShape {
    pub const fn new(
        params: Pool2dParams,
        batch: usize,
        channels: usize,
        in_h: usize,
        in_w: usize,
    ) -> Self {
        Pool2dShape {
            params,
            batch,
            channels,
            in_h,
            in_w,
        }
    }
    pub fn validate(&self) -> Result<()> {
        self.checked_sizes().map(|_| ())
    }
    /// [`Self::validate`], returning the input and output lengths and the output (height,
    /// width) it computes.
    pub(crate) fn checked_sizes(&self) -> Result<(usize, usize, (usize, usize))> {
        self.params.validate()?;
        if self.batch == 0 {
            return Err(KernelError::Zero { what: "batch" });
        }
        if self.channels == 0 {
            return Err(KernelError::Zero { what: "channels" });
        }
        let (oh, ow) = self.out_hw()?;
        let input = self.input_len()?;
        let output = product("pool output", &[self.batch, self.channels, oh, ow])?;
        Ok((input, output, (oh, ow)))
    }
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        self.params.out_hw(self.in_h, self.in_w)
    }
    /// Number of (image, channel) planes: `batch * channels`.
    pub fn planes(&self) -> Result<usize> {
        mul("pool planes", self.batch, self.channels)
    }
    pub fn input_len(&self) -> Result<usize> {
        product(
            "pool input",
            &[self.batch, self.channels, self.in_h, self.in_w],
        )
    }
    pub fn output_len(&self) -> Result<usize> {
        let (oh, ow) = self.out_hw()?;
        product("pool output", &[self.batch, self.channels, oh, ow])
    }
    pub const fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
}

/// Whether a GEMM operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transpose {
    No,
    Yes,
}

/// `C = alpha op(A) op(B) + beta C`, all row-major.
///
/// `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`. A stored untransposed is
/// `m` rows of `lda >= k` elements; transposed it is `k` rows of `lda >= m`. Likewise B.
/// When `beta == 0`, C is overwritten and its old contents (NaN included) are ignored, as in BLAS.
///
/// ```
/// use tinycnn_kernels::GemmShape;
/// let g = GemmShape::new(2, 3, 4); // A 2x4, B 4x3, C 2x3, packed
/// assert_eq!((g.lda, g.ldb, g.ldc), (4, 3, 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: Transpose,
    pub trans_b: Transpose,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
}

impl GemmShape {
    /// Untransposed, tightly packed operands.
    pub const fn new(m: usize, n: usize, k: usize) -> Self {
        GemmShape {
            m,
            n,
            k,
            trans_a: Transpose::No,
            trans_b: Transpose::No,
            lda: k,
            ldb: n,
            ldc: n,
        }
    }
    /// Sets the transposes and resets the leading dimensions to the packed ones.
    pub const fn with_transpose(mut self, trans_a: Transpose, trans_b: Transpose) -> Self {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self.lda = match trans_a {
            Transpose::No => self.k,
            Transpose::Yes => self.m,
        };
        self.ldb = match trans_b {
            Transpose::No => self.n,
            Transpose::Yes => self.k,
        };
        self
    }
    pub const fn with_ld(mut self, lda: usize, ldb: usize, ldc: usize) -> Self {
        self.lda = lda;
        self.ldb = ldb;
        self.ldc = ldc;
        self
    }
    /// (rows, columns) of A as stored.
    pub const fn a_stored(&self) -> (usize, usize) {
        match self.trans_a {
            Transpose::No => (self.m, self.k),
            Transpose::Yes => (self.k, self.m),
        }
    }
    /// (rows, columns) of B as stored.
    pub const fn b_stored(&self) -> (usize, usize) {
        match self.trans_b {
            Transpose::No => (self.k, self.n),
            Transpose::Yes => (self.n, self.k),
        }
    }
    /// Elements a slice must hold for a `rows x cols` matrix with leading dimension `ld`.
    fn strided_len(what: &'static str, rows: usize, cols: usize, ld: usize) -> Result<usize> {
        if rows == 0 || cols == 0 {
            return Ok(0);
        }
        mul(what, rows - 1, ld)?
            .checked_add(cols)
            .ok_or(KernelError::Overflow { what })
    }
    /// Checks leading dimensions and the lengths of `a`, `b` and `c`.
    ///
    /// Slices may be longer than needed (sub-matrices of larger ones are common).
    pub fn validate(&self, a_len: usize, b_len: usize, c_len: usize) -> Result<()> {
        let (ar, ac) = self.a_stored();
        let (br, bc) = self.b_stored();
        if self.lda < ac.max(1) {
            return Err(KernelError::LeadingDimension {
                matrix: "A",
                ld: self.lda,
                min: ac.max(1),
            });
        }
        if self.ldb < bc.max(1) {
            return Err(KernelError::LeadingDimension {
                matrix: "B",
                ld: self.ldb,
                min: bc.max(1),
            });
        }
        if self.ldc < self.n.max(1) {
            return Err(KernelError::LeadingDimension {
                matrix: "C",
                ld: self.ldc,
                min: self.n.max(1),
            });
        }
        let need = |buffer, rows, cols, ld, actual| -> Result<()> {
            let n = Self::strided_len(buffer, rows, cols, ld)?;
            if actual < n {
                Err(KernelError::BufferLength {
                    buffer,
                    expected: n,
                    actual,
                })
            } else {
                Ok(())
            }
        };
        need("a", ar, ac, self.lda, a_len)?;
        need("b", br, bc, self.ldb, b_len)?;
        need("c", self.m, self.n, self.ldc, c_len)?;
        Ok(())
    }
}
