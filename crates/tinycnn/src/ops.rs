//! Every differentiable op: its forward (a `Tensor` method) and its backward rule.
//!
//! The ops are one small enum, [`Op`]; [`Op::backward`] is the one `match` that turns the
//! gradient of an op's output into gradients of its inputs. Sections below go family by
//! family, forward first; the backward arms follow in the same order at the end of the file.
//! Convolution, pooling, activations, softmax / cross-entropy, bias and matrix products run
//! on the kernels of `tinycnn-kernels`, forward and backward.

use crate::error::{Error, Result};
use crate::parallel;
use crate::tensor::{numel_of, resolve_dim, Dims, Tensor};
use rayon::prelude::*;
use tinycnn_kernels as k;
use tinycnn_kernels::{Conv2dParams, Conv2dShape, GemmShape, Pool2dParams, Pool2dShape, Transpose};

/// A recorded operation: its inputs and what its backward rule needs.
pub(crate) enum Op {
    Add(Tensor, Tensor),
    Sub(Tensor, Tensor),
    Mul(Tensor, Tensor),
    Div(Tensor, Tensor),
    AddScalar(Tensor),
    MulScalar(Tensor, f32),
    DivScalar(Tensor, f32),
    PowScalar(Tensor, f32),
    Exp(Tensor),
    Log(Tensor),
    Abs(Tensor),
    Sqrt(Tensor),
    Relu(Tensor),
    Sigmoid(Tensor),
    Tanh(Tensor),
    /// Sum over the dims that are 1 in `keep_shape` (the keepdim shape of the result).
    Sum {
        x: Tensor,
        keep_shape: Vec<usize>,
        all: bool,
    },
    Mean {
        x: Tensor,
        keep_shape: Vec<usize>,
        all: bool,
    },
    /// `indices[o]` is the flat input index output `o` took.
    Max {
        x: Tensor,
        indices: Vec<usize>,
        all: bool,
    },
    Reshape(Tensor),
    Expand(Tensor),
    Permute {
        x: Tensor,
        perm: Vec<usize>,
    },
    Narrow {
        x: Tensor,
        dim: usize,
        start: usize,
    },
    Cat {
        xs: Vec<Tensor>,
        dim: usize,
    },
    MatMul(Tensor, Tensor),
    Linear {
        x: Tensor,
        w: Tensor,
        b: Option<Tensor>,
    },
    Conv2d {
        x: Tensor,
        w: Tensor,
        b: Option<Tensor>,
        shape: Conv2dShape,
    },
    MaxPool2d {
        x: Tensor,
        shape: Pool2dShape,
        argmax: Vec<u32>,
    },
    AvgPool2d {
        x: Tensor,
        shape: Pool2dShape,
    },
    Softmax(Tensor),
    LogSoftmax(Tensor),
    CrossEntropy {
        logits: Tensor,
        labels: Vec<u32>,
    },
}

impl Op {
    pub(crate) fn inputs(&self) -> Vec<&Tensor> {
        use Op::*;
        match self {
            Add(a, b) | Sub(a, b) | Mul(a, b) | Div(a, b) | MatMul(a, b) => vec![a, b],
            AddScalar(x)
            | MulScalar(x, _)
            | DivScalar(x, _)
            | PowScalar(x, _)
            | Exp(x)
            | Log(x)
            | Abs(x)
            | Sqrt(x)
            | Relu(x)
            | Sigmoid(x)
            | Tanh(x)
            | Reshape(x)
            | Expand(x)
            | Softmax(x)
            | LogSoftmax(x) => vec![x],
            Sum { x, .. }
            | Mean { x, .. }
            | Max { x, .. }
            | Permute { x, .. }
            | Narrow { x, .. }
            | MaxPool2d { x, .. }
            | AvgPool2d { x, .. } => vec![x],
            Cat { xs, .. } => xs.iter().collect(),
            Linear { x, w, b } | Conv2d { x, w, b, .. } => {
                let mut v = vec![x, w];
                v.extend(b.iter());
                v
            }
            CrossEntropy { logits, .. } => vec![logits],
        }
    }

    /// PyTorch's `grad_fn` name for the op.
    pub(crate) fn name(&self) -> &'static str {
        use Op::*;
        match self {
            Add(..) | AddScalar(..) => "AddBackward0",
            Sub(..) => "SubBackward0",
            Mul(..) | MulScalar(..) => "MulBackward0",
            Div(..) | DivScalar(..) => "DivBackward0",
            PowScalar(..) => "PowBackward0",
            Exp(..) => "ExpBackward0",
            Log(..) => "LogBackward0",
            Abs(..) => "AbsBackward0",
            Sqrt(..) => "SqrtBackward0",
            Relu(..) => "ReluBackward0",
            Sigmoid(..) => "SigmoidBackward0",
            Tanh(..) => "TanhBackward0",
            Sum { all: true, .. } => "SumBackward0",
            Sum { .. } => "SumBackward1",
            Mean { all: true, .. } => "MeanBackward0",
            Mean { .. } => "MeanBackward1",
            Max { all: true, .. } => "MaxBackward1",
            Max { .. } => "MaxBackward0",
            Reshape(..) => "ViewBackward0",
            Expand(..) => "ExpandBackward0",
            Permute { .. } => "PermuteBackward0",
            Narrow { .. } => "SliceBackward0",
            Cat { .. } => "CatBackward0",
            MatMul(..) => "MmBackward0",
            Linear { .. } => "AddmmBackward0",
            Conv2d { .. } => "ConvolutionBackward0",
            MaxPool2d { .. } => "MaxPool2DWithIndicesBackward0",
            AvgPool2d { .. } => "AvgPool2DBackward0",
            Softmax(..) => "SoftmaxBackward0",
            LogSoftmax(..) => "LogSoftmaxBackward0",
            CrossEntropy { .. } => "NllLossBackward0",
        }
    }
}

// ===== broadcasting machinery ================================================================

/// NumPy's broadcast of two shapes (aligned at the last dimension).
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::mismatch(op, a, b));
        };
    }
    // Every broadcasting op allocates the result: refuse absurd ones here, in one place.
    crate::limits::checked_numel(op, &out)?;
    Ok(out)
}

/// Strides of `shape` read as if broadcast to `out` (0 along broadcast or missing dims).
fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut strides = vec![0; r];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let o = i + r - shape.len();
        strides[o] = if shape[i] == 1 && out[o] != 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Calls `f(out_index, a_offset, b_offset)` for every element of `out` in row-major order.
fn walk2(out: &[usize], sa: &[usize], sb: &[usize], mut f: impl FnMut(usize, usize, usize)) {
    if numel_of(out) == 0 {
        return;
    }
    let r = out.len();
    let (last, la, lb) = if r > 0 {
        (out[r - 1], sa[r - 1], sb[r - 1])
    } else {
        (1, 0, 0)
    };
    let mut idx = vec![0usize; r];
    let (mut oa, mut ob, mut o) = (0usize, 0usize, 0usize);
    loop {
        for j in 0..last {
            f(o, oa + j * la, ob + j * lb);
            o += 1;
        }
        let mut d = r as isize - 2;
        loop {
            if d < 0 {
                return;
            }
            let du = d as usize;
            idx[du] += 1;
            oa += sa[du];
            ob += sb[du];
            if idx[du] < out[du] {
                break;
            }
            oa -= sa[du] * out[du];
            ob -= sb[du] * out[du];
            idx[du] = 0;
            d -= 1;
        }
    }
}

/// Sums `g` (shaped `from`) down to `to`, which broadcasts to `from`.
fn sum_to(g: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return g.to_vec();
    }
    let mut out = vec![0.0; numel_of(to)];
    let st = bcast_strides(to, from);
    walk2(from, &st, &st, |o, i, _| out[i] += g[o]);
    out
}

/// Expands `x` (shaped `from`, broadcastable) to `to`.
fn expand_data(x: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    let mut out = vec![0.0; numel_of(to)];
    let st = bcast_strides(from, to);
    walk2(to, &st, &st, |o, i, _| out[o] = x[i]);
    out
}

fn binary_data(a: &Tensor, b: &Tensor, out: &[usize], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    let (da, db) = (a.data(), b.data());
    if a.shape() == b.shape() {
        return da.iter().zip(db.iter()).map(|(&x, &y)| f(x, y)).collect();
    }
    let mut v = vec![0.0; numel_of(out)];
    let (sa, sb) = (bcast_strides(a.shape(), out), bcast_strides(b.shape(), out));
    walk2(out, &sa, &sb, |o, i, j| v[o] = f(da[i], db[j]));
    v
}

fn binary(
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32,
    op: fn(Tensor, Tensor) -> Op,
) -> Result<Tensor> {
    let out = broadcast_shape(name, a.shape(), b.shape())?;
    let v = binary_data(a, b, &out, f);
    Ok(Tensor::from_op(v, out, op(a.clone(), b.clone())))
}

pub(crate) fn broadcast_compare(
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> bool,
) -> Result<Tensor> {
    let out = broadcast_shape(name, a.shape(), b.shape())?;
    let v = binary_data(a, b, &out, |x, y| if f(x, y) { 1.0 } else { 0.0 });
    Ok(Tensor::raw(v, out))
}

fn unary(x: &Tensor, f: impl Fn(f32) -> f32, op: Op) -> Tensor {
    let v: Vec<f32> = x.data().iter().map(|&a| f(a)).collect();
    Tensor::from_op(v, x.shape().to_vec(), op)
}

fn kernel_unary(
    name: &'static str,
    x: &Tensor,
    kern: fn(&[f32], &mut [f32]) -> k::Result<()>,
    op: Op,
) -> Result<Tensor> {
    let y = par_elementwise(&x.data(), None, |x, _, y| kern(x, y)).map_err(Error::kernel(name))?;
    Ok(Tensor::from_op(y, x.shape().to_vec(), op))
}

/// Below this many elements an elementwise kernel runs on the calling thread: a rayon
/// hand-off costs a few microseconds, about what 16K elements of sigmoid take.
const PAR_ELEMENTWISE_MIN: usize = 1 << 15;

/// A new buffer of `x.len()` elements filled by an elementwise kernel `f(x, aux, y)`, split
/// into one chunk per thread when the input is long enough to pay for it.
fn par_elementwise(
    x: &[f32],
    aux: Option<&[f32]>,
    f: impl Fn(&[f32], Option<&[f32]>, &mut [f32]) -> k::Result<()> + Sync,
) -> k::Result<Vec<f32>> {
    let n = x.len();
    let threads = parallel::num_threads();
    // Mismatched lengths go straight to the kernel, which reports them.
    if threads <= 1 || n < 2 * PAR_ELEMENTWISE_MIN || aux.is_some_and(|a| a.len() != n) {
        let mut y = vec![0.0; n];
        f(x, aux, &mut y)?;
        return Ok(y);
    }
    // Chunks are multiples of 64 elements, so every chunk but the last is whole vectors.
    let chunk = n.div_ceil(threads).div_ceil(64) * 64;
    par_new_buffer(n, chunk, |i, yc| {
        let start = i * chunk;
        let end = start + yc.len();
        f(&x[start..end], aux.map(|a| &a[start..end]), yc)
    })
}

/// A new `len`-element buffer whose chunks of `chunk` elements (the last may be shorter) are
/// written by `f(chunk_index, chunk)` on the thread pool.
///
/// Each worker zeroes its own chunk just before `f` runs on it, instead of the caller
/// zeroing the whole buffer first: the clearing runs in parallel, and the chunk is in cache
/// when `f` writes it. (Zeroing up front on the calling thread was about a tenth of a LeNet
/// training step.)
fn par_new_buffer(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [f32]) -> k::Result<()> + Sync,
) -> k::Result<Vec<f32>> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    if len > 0 {
        parallel::install(|| {
            v.spare_capacity_mut()[..len]
                .par_chunks_mut(chunk.max(1))
                .enumerate()
                .try_for_each(|(i, c)| {
                    for e in c.iter_mut() {
                        e.write(0.0);
                    }
                    // SAFETY: every element of `c` was initialized just above, and
                    // `MaybeUninit<f32>` has the layout of `f32`.
                    let c = unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                    f(i, c)
                })
        })?;
    }
    // SAFETY: `try_for_each` returned Ok, so every chunk of `0..len` was initialized.
    unsafe { v.set_len(len) };
    Ok(v)
}

// ===== elementwise ===========================================================================

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary("add", self, other, |a, b| a + b, Op::Add)
    }
    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary("sub", self, other, |a, b| a - b, Op::Sub)
    }
    /// `self * other` elementwise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary("mul", self, other, |a, b| a * b, Op::Mul)
    }
    /// `self / other` elementwise, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary("div", self, other, |a, b| a / b, Op::Div)
    }
    /// `self + v`.
    pub fn add_scalar(&self, v: f32) -> Tensor {
        unary(self, |a| a + v, Op::AddScalar(self.clone()))
    }
    /// `self * v`.
    pub fn mul_scalar(&self, v: f32) -> Tensor {
        unary(self, |a| a * v, Op::MulScalar(self.clone(), v))
    }
    /// `self / v`.
    pub fn div_scalar(&self, v: f32) -> Tensor {
        unary(self, |a| a / v, Op::DivScalar(self.clone(), v))
    }
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        self.mul_scalar(-1.0)
    }
    /// `self ** p` elementwise.
    pub fn pow(&self, p: f32) -> Tensor {
        let f = move |a: f32| if p == 2.0 { a * a } else { a.powf(p) };
        unary(self, f, Op::PowScalar(self.clone(), p))
    }
    /// `e ** self`.
    pub fn exp(&self) -> Tensor {
        unary(self, f32::exp, Op::Exp(self.clone()))
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        unary(self, f32::ln, Op::Log(self.clone()))
    }
    /// `|self|`.
    pub fn abs(&self) -> Tensor {
        unary(self, f32::abs, Op::Abs(self.clone()))
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        unary(self, f32::sqrt, Op::Sqrt(self.clone()))
    }
    /// `max(self, 0)` (kernel `relu_forward`).
    pub fn relu(&self) -> Result<Tensor> {
        kernel_unary("relu", self, k::relu_forward, Op::Relu(self.clone()))
    }
    /// `1 / (1 + e^-self)` (kernel `sigmoid_forward`).
    pub fn sigmoid(&self) -> Result<Tensor> {
        kernel_unary(
            "sigmoid",
            self,
            k::sigmoid_forward,
            Op::Sigmoid(self.clone()),
        )
    }
    /// `tanh(self)` (kernel `tanh_forward`).
    pub fn tanh(&self) -> Result<Tensor> {
        kernel_unary("tanh", self, k::tanh_forward, Op::Tanh(self.clone()))
    }
}

// ===== reductions ============================================================================

impl Tensor {
    fn keep_shape(&self, op: &'static str, dims: &[isize]) -> Result<(Vec<usize>, Vec<usize>)> {
        let mut keep = self.shape().to_vec();
        let mut reduced = vec![false; self.rank()];
        for &d in dims {
            let d = self.dim_index(op, d)?;
            keep[d] = 1;
            reduced[d] = true;
        }
        let squeezed = self
            .shape()
            .iter()
            .zip(&reduced)
            .filter(|(_, &r)| !r)
            .map(|(&n, _)| n)
            .collect();
        Ok((keep, squeezed))
    }

    /// Sum of all elements (a 0-d tensor).
    pub fn sum_all(&self) -> Tensor {
        let s: f32 = self.data().iter().sum();
        let keep = vec![1; self.rank()];
        Tensor::from_op(
            vec![s],
            vec![],
            Op::Sum {
                x: self.clone(),
                keep_shape: keep,
                all: true,
            },
        )
    }
    /// Sum over `dims` (negative counts from the end); `keepdim` keeps them as size 1.
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let (keep, squeezed) = self.keep_shape("sum", dims)?;
        let v = sum_to(&self.data(), self.shape(), &keep);
        let shape = if keepdim { keep.clone() } else { squeezed };
        Ok(Tensor::from_op(
            v,
            shape,
            Op::Sum {
                x: self.clone(),
                keep_shape: keep,
                all: false,
            },
        ))
    }
    /// Mean of all elements (a 0-d tensor).
    pub fn mean_all(&self) -> Tensor {
        let n = self.numel().max(1) as f32;
        let s: f32 = self.data().iter().sum::<f32>() / n;
        let keep = vec![1; self.rank()];
        Tensor::from_op(
            vec![s],
            vec![],
            Op::Mean {
                x: self.clone(),
                keep_shape: keep,
                all: true,
            },
        )
    }
    /// Mean over `dims`; `keepdim` keeps them as size 1.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let (keep, squeezed) = self.keep_shape("mean", dims)?;
        let count = (self.numel() / numel_of(&keep).max(1)).max(1) as f32;
        let mut v = sum_to(&self.data(), self.shape(), &keep);
        v.iter_mut().for_each(|x| *x /= count);
        let shape = if keepdim { keep.clone() } else { squeezed };
        Ok(Tensor::from_op(
            v,
            shape,
            Op::Mean {
                x: self.clone(),
                keep_shape: keep,
                all: false,
            },
        ))
    }
    /// Largest element (a 0-d tensor; NaN wins, as in PyTorch).
    pub fn max_all(&self) -> Result<Tensor> {
        let d = self.data();
        if d.is_empty() {
            return Err(Error::bad_shape("max", self.shape(), "empty tensor"));
        }
        let mut best = 0;
        for (i, &v) in d.iter().enumerate() {
            if v > d[best] || (v.is_nan() && !d[best].is_nan()) {
                best = i;
            }
        }
        let v = d[best];
        drop(d);
        Ok(Tensor::from_op(
            vec![v],
            vec![],
            Op::Max {
                x: self.clone(),
                indices: vec![best],
                all: true,
            },
        ))
    }
    /// Smallest element (a 0-d tensor).
    pub fn min_all(&self) -> Result<Tensor> {
        Ok(self.neg().max_all()?.neg())
    }
    /// Maximum along `dim` and the index where it is (first on ties), like `torch.max(x, dim)`.
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let d = self.dim_index("max", dim)?;
        let shape = self.shape();
        let (outer, n, inner): (usize, usize, usize) = (
            shape[..d].iter().product(),
            shape[d],
            shape[d + 1..].iter().product(),
        );
        if n == 0 {
            return Err(Error::bad_shape("max", shape, "reduced dimension is empty"));
        }
        let x = self.data();
        let mut vals = Vec::with_capacity(outer * inner);
        let mut flat = Vec::with_capacity(outer * inner);
        let mut pos = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let base = o * n * inner + i;
                let mut best = 0;
                for j in 1..n {
                    let (v, b) = (x[base + j * inner], x[base + best * inner]);
                    if v > b || (v.is_nan() && !b.is_nan()) {
                        best = j;
                    }
                }
                vals.push(x[base + best * inner]);
                flat.push(base + best * inner);
                pos.push(best as f32);
            }
        }
        drop(x);
        let mut out_shape = shape.to_vec();
        if keepdim {
            out_shape[d] = 1;
        } else {
            out_shape.remove(d);
        }
        let values = Tensor::from_op(
            vals,
            out_shape.clone(),
            Op::Max {
                x: self.clone(),
                indices: flat,
                all: false,
            },
        );
        Ok((values, Tensor::raw(pos, out_shape)))
    }
    /// Index of the maximum along `dim`, as f32 values.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.max(dim, keepdim)?.1)
    }
}

// ===== shape ops =============================================================================

impl Tensor {
    /// The same elements with another shape; one entry may be `-1` (inferred). Shares storage
    /// with `self`, like PyTorch's `view` / `reshape` of a contiguous tensor.
    pub fn reshape(&self, dims: impl Dims) -> Result<Tensor> {
        let dims = dims.dims();
        let n = self.numel();
        let mut infer = None;
        let mut known = 1usize;
        for (i, &d) in dims.iter().enumerate() {
            if d == -1 {
                if infer.replace(i).is_some() {
                    return Err(Error::bad_shape(
                        "reshape",
                        self.shape(),
                        format!("only one -1 allowed in {dims:?}"),
                    ));
                }
            } else if d < 0 {
                return Err(Error::bad_shape(
                    "reshape",
                    self.shape(),
                    format!("invalid size in {dims:?}"),
                ));
            } else {
                known = known.checked_mul(d as usize).ok_or_else(|| {
                    Error::bad_shape("reshape", self.shape(), format!("{dims:?} overflows"))
                })?;
            }
        }
        let mut shape: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(i) = infer {
            if known == 0 || n % known != 0 {
                return Err(Error::bad_shape(
                    "reshape",
                    self.shape(),
                    format!("cannot reshape {n} elements into {dims:?}"),
                ));
            }
            shape[i] = n / known;
        } else if known != n {
            return Err(Error::bad_shape(
                "reshape",
                self.shape(),
                format!("cannot reshape {n} elements into {dims:?}"),
            ));
        }
        Ok(self.view_as(shape))
    }

    /// A view with `shape` (same element count), recorded as a reshape.
    pub(crate) fn view_as(&self, shape: Vec<usize>) -> Tensor {
        let node = if crate::autograd::grad_enabled() && self.requires_grad() {
            Some(crate::autograd::Node::new(Op::Reshape(self.clone())))
        } else {
            None
        };
        Tensor::from_parts(shape, self.storage().clone(), node)
    }

    /// Alias of [`Tensor::reshape`].
    pub fn view(&self, dims: impl Dims) -> Result<Tensor> {
        self.reshape(dims)
    }

    /// Merges dims `start..=end` into one (`torch.flatten(x, start, end)`).
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return Ok(self.view_as(vec![1]));
        }
        let s = self.dim_index("flatten", start)?;
        let e = self.dim_index("flatten", end)?;
        if s > e {
            return Err(Error::invalid(
                "flatten",
                format!("start dim {start} is after end dim {end}"),
            ));
        }
        let mut shape = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        Ok(self.view_as(shape))
    }

    /// Inserts a dimension of size 1 at `dim` (`-1` appends).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        Ok(self.view_as(shape))
    }

    /// Removes dimension `dim` if it has size 1 (otherwise returns the same shape, as PyTorch).
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.dim_index("squeeze", dim)?;
        let mut shape = self.shape().to_vec();
        if shape[d] == 1 {
            shape.remove(d);
        }
        Ok(self.view_as(shape))
    }

    /// Expands size-1 dimensions to `shape` (NumPy broadcasting rules), copying.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let out = broadcast_shape("broadcast_to", self.shape(), shape)?;
        if out != shape {
            return Err(Error::mismatch("broadcast_to", self.shape(), shape));
        }
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let v = expand_data(&self.data(), self.shape(), shape);
        Ok(Tensor::from_op(v, shape.to_vec(), Op::Expand(self.clone())))
    }

    /// Reorders the dimensions (`x.permute(perm)`), copying into a contiguous tensor.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::bad_shape(
                "permute",
                self.shape(),
                format!("{perm:?} is not a permutation of 0..{r}"),
            ));
        }
        let out: Vec<usize> = perm.iter().map(|&p| self.shape()[p]).collect();
        let v = permute_data(&self.data(), self.shape(), perm);
        Ok(Tensor::from_op(
            v,
            out,
            Op::Permute {
                x: self.clone(),
                perm: perm.to_vec(),
            },
        ))
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = self.dim_index("transpose", d0)?;
        let b = self.dim_index("transpose", d1)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of a matrix (rank <= 2, as PyTorch's `t()`).
    pub fn t(&self) -> Result<Tensor> {
        match self.rank() {
            0 | 1 => Ok(self.clone()),
            2 => self.transpose(0, 1),
            _ => Err(Error::bad_shape(
                "t",
                self.shape(),
                "t() expects a tensor of rank <= 2",
            )),
        }
    }

    /// `len` entries of `dim` starting at `start` (copying).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.dim_index("narrow", dim)?;
        let n = self.shape()[d];
        if start.checked_add(len).is_none_or(|e| e > n) {
            return Err(Error::IndexOutOfRange {
                op: "narrow",
                index: start.saturating_add(len),
                dim: d,
                size: n,
            });
        }
        let outer: usize = self.shape()[..d].iter().product();
        let inner: usize = self.shape()[d + 1..].iter().product();
        let x = self.data();
        let mut v = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let s = (o * n + start) * inner;
            v.extend_from_slice(&x[s..s + len * inner]);
        }
        drop(x);
        let mut shape = self.shape().to_vec();
        shape[d] = len;
        Ok(Tensor::from_op(
            v,
            shape,
            Op::Narrow {
                x: self.clone(),
                dim: d,
                start,
            },
        ))
    }

    /// `self[.., range, ..]` along `dim` (Python's `x[:, 2:6]` is `x.slice(1, 2..6)`).
    pub fn slice(&self, dim: isize, range: std::ops::Range<usize>) -> Result<Tensor> {
        if range.start > range.end {
            return Err(Error::invalid("slice", format!("empty range {range:?}")));
        }
        self.narrow(dim, range.start, range.len())
    }

    /// Entry `index` of `dim`, with that dimension removed (`x[i]` is `x.select(0, i)`).
    pub fn select(&self, dim: isize, index: usize) -> Result<Tensor> {
        let d = self.dim_index("select", dim)?;
        let t = self.narrow(d as isize, index, 1)?;
        let mut shape = self.shape().to_vec();
        shape.remove(d);
        Ok(t.view_as(shape))
    }

    /// Joins tensors along an existing dimension (`torch.cat`).
    pub fn cat(xs: &[Tensor], dim: isize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("cat", "needs at least one tensor"))?;
        let d = first.dim_index("cat", dim)?;
        let mut shape = first.shape().to_vec();
        shape[d] = 0;
        for x in xs {
            let ok = x.rank() == first.rank()
                && x.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            if !ok {
                return Err(Error::mismatch("cat", first.shape(), x.shape()));
            }
            shape[d] += x.shape()[d];
        }
        let outer: usize = shape[..d].iter().product();
        let inner: usize = shape[d + 1..].iter().product();
        let mut v = Vec::with_capacity(numel_of(&shape));
        let datas: Vec<_> = xs.iter().map(|x| x.data()).collect();
        for o in 0..outer {
            for (x, data) in xs.iter().zip(&datas) {
                let chunk = x.shape()[d] * inner;
                v.extend_from_slice(&data[o * chunk..(o + 1) * chunk]);
            }
        }
        drop(datas);
        Ok(Tensor::from_op(
            v,
            shape,
            Op::Cat {
                xs: xs.to_vec(),
                dim: d,
            },
        ))
    }

    /// Joins same-shaped tensors along a new dimension (`torch.stack`).
    pub fn stack(xs: &[Tensor], dim: isize) -> Result<Tensor> {
        let first = xs
            .first()
            .ok_or_else(|| Error::invalid("stack", "needs at least one tensor"))?;
        for x in xs {
            if x.shape() != first.shape() {
                return Err(Error::mismatch("stack", first.shape(), x.shape()));
            }
        }
        let parts = xs
            .iter()
            .map(|x| x.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, dim)
    }
}

fn permute_data(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut in_strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let st: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut v = vec![0.0; x.len()];
    walk2(&out, &st, &st, |o, i, _| v[o] = x[i]);
    v
}

// ===== matrix products =======================================================================

fn gemm(
    op: &'static str,
    g: GemmShape,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    ws: &mut Vec<f32>,
) -> Result<()> {
    let threads = parallel::num_threads();
    let macs = g.m.saturating_mul(g.n).saturating_mul(g.k);
    if threads > 1 && macs >= PAR_GEMM_MIN_MACS && g.m >= 2 * PAR_GEMM_MIN_ROWS && g.n > 0 {
        // Row blocks of C are independent products with the same k order, so the split
        // gives the same bits as one call.
        g.validate(a.len(), b.len(), c.len())
            .map_err(Error::kernel(op))?;
        let rows = g.m.div_ceil(threads).max(PAR_GEMM_MIN_ROWS);
        let a_step = match g.trans_a {
            Transpose::No => rows * g.lda,
            Transpose::Yes => rows,
        };
        return parallel::install(|| {
            c.par_chunks_mut(rows * g.ldc)
                .enumerate()
                .try_for_each(|(i, cc)| {
                    let m = rows.min(g.m.saturating_sub(i * rows));
                    if m == 0 {
                        // Only a `c` longer than the product needs gets here; leave the rest.
                        return Ok(());
                    }
                    let sub = GemmShape { m, ..g };
                    let a_sub = a.get(i * a_step..).unwrap_or_default();
                    let mut ws = vec![0.0; k::sgemm_workspace_len(m, g.n, g.k)];
                    k::sgemm(&sub, 1.0, a_sub, b, beta, cc, &mut ws)
                })
        })
        .map_err(Error::kernel(op));
    }
    let need = k::sgemm_workspace_len(g.m, g.n, g.k);
    if ws.len() < need {
        ws.resize(need, 0.0);
    }
    k::sgemm(&g, 1.0, a, b, beta, c, ws).map_err(Error::kernel(op))
}

/// Products smaller than this many multiply-adds (about 50 microseconds) run on one thread.
const PAR_GEMM_MIN_MACS: usize = 1 << 21;
/// The least number of rows of C a thread gets.
const PAR_GEMM_MIN_ROWS: usize = 16;

impl Tensor {
    /// Matrix product (`torch.matmul`): 1-D and 2-D operands, and batched products whose
    /// leading (batch) dimensions broadcast. Runs on the kernel crate's `sgemm`.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        match (self.rank(), other.rank()) {
            (0, _) | (_, 0) => Err(Error::mismatch("matmul", self.shape(), other.shape())),
            (1, 1) => self
                .unsqueeze(0)?
                .matmul(&other.unsqueeze(1)?)?
                .reshape([0usize; 0]),
            (1, _) => {
                let y = self.unsqueeze(0)?.matmul(other)?;
                y.squeeze(-2)
            }
            (_, 1) => {
                let y = self.matmul(&other.unsqueeze(1)?)?;
                y.squeeze(-1)
            }
            _ => self.matmul_nd(other),
        }
    }

    /// 2-D matrix product (`torch.mm`).
    pub fn mm(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 || other.rank() != 2 {
            return Err(Error::mismatch("mm", self.shape(), other.shape()));
        }
        self.matmul_nd(other)
    }

    fn matmul_nd(&self, other: &Tensor) -> Result<Tensor> {
        let (ash, bsh) = (self.shape(), other.shape());
        let (ra, rb) = (ash.len(), bsh.len());
        let (m, ka, kb, n) = (ash[ra - 2], ash[ra - 1], bsh[rb - 2], bsh[rb - 1]);
        if ka != kb {
            return Err(Error::mismatch("matmul", ash, bsh));
        }
        let batch = broadcast_shape("matmul", &ash[..ra - 2], &bsh[..rb - 2])?;
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        let mut c = vec![0.0; crate::limits::checked_numel("matmul", &out_shape)?];
        let (a, b) = (self.data(), other.data());
        let (sa, sb) = (
            bcast_strides(&ash[..ra - 2], &batch),
            bcast_strides(&bsh[..rb - 2], &batch),
        );
        let mut ws = Vec::new();
        let mut res = Ok(());
        walk2(&batch, &sa, &sb, |o, ia, ib| {
            if res.is_ok() && m * n > 0 {
                res = gemm(
                    "matmul",
                    GemmShape::new(m, n, ka),
                    &a[ia * m * ka..(ia + 1) * m * ka],
                    &b[ib * ka * n..(ib + 1) * ka * n],
                    0.0,
                    &mut c[o * m * n..(o + 1) * m * n],
                    &mut ws,
                );
            }
        });
        res?;
        drop((a, b));
        Ok(Tensor::from_op(
            c,
            out_shape,
            Op::MatMul(self.clone(), other.clone()),
        ))
    }

    /// `self @ w^T + b` for `self` of shape `[.., in]`, `w` `[out, in]`, `b` `[out]`
    /// (`F.linear`); one `sgemm` and one `bias_add`.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if self.rank() == 0 || w.rank() != 2 || *self.shape().last().unwrap_or(&0) != w.shape()[1] {
            return Err(Error::mismatch("linear", self.shape(), w.shape()));
        }
        let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
        if let Some(b) = b {
            if b.shape() != [out_f] {
                return Err(Error::mismatch("linear (bias)", &[out_f], b.shape()));
            }
        }
        let rows = self.numel() / in_f.max(1);
        let mut y = vec![0.0; crate::limits::checked_numel("linear", &[rows, out_f])?];
        if rows > 0 && out_f > 0 {
            let g = GemmShape::new(rows, out_f, in_f).with_transpose(Transpose::No, Transpose::Yes);
            gemm(
                "linear",
                g,
                &self.data(),
                &w.data(),
                0.0,
                &mut y,
                &mut Vec::new(),
            )?;
            if let Some(b) = b {
                k::bias_add(rows, out_f, 1, &b.data(), &mut y)
                    .map_err(Error::kernel("linear (bias)"))?;
            }
        }
        let mut shape = self.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = out_f;
        Ok(Tensor::from_op(
            y,
            shape,
            Op::Linear {
                x: self.clone(),
                w: w.clone(),
                b: b.cloned(),
            },
        ))
    }
}

// ===== convolution and pooling (batch-parallel) ==============================================

/// A new buffer of `batch * y_per` elements, written by `f(chunk_batch, x_chunk, y_chunk)`
/// on per-thread chunks of the batch.
fn par_batch(
    batch: usize,
    x: &[f32],
    x_per: usize,
    y_per: usize,
    f: impl Fn(usize, &[f32], &mut [f32]) -> k::Result<()> + Sync,
) -> k::Result<Vec<f32>> {
    let cl = parallel::chunk_len(batch);
    if cl >= batch || x_per == 0 || y_per == 0 {
        let mut y = vec![0.0; batch * y_per];
        f(batch, x, &mut y)?;
        return Ok(y);
    }
    par_new_buffer(batch * y_per, cl * y_per, |i, yc| {
        // A short `x` gives a short (or empty) chunk, which the kernel reports.
        let xc = x.chunks(cl * x_per).nth(i).unwrap_or_default();
        f(yc.len() / y_per, xc, yc)
    })
}

impl Tensor {
    /// 2-D convolution (cross-correlation) of `self` `[N, C, H, W]` with `w`
    /// `[O, C / groups, kh, kw]` and optional bias `[O]` (`F.conv2d`).
    pub fn conv2d(
        &self,
        w: &Tensor,
        b: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        if self.rank() != 4 || w.rank() != 4 {
            return Err(Error::mismatch(
                "conv2d (input vs weight, both must be 4-D)",
                self.shape(),
                w.shape(),
            ));
        }
        let (xs, ws) = (self.shape(), w.shape());
        if groups == 0 || ws[1].checked_mul(groups) != Some(xs[1]) {
            return Err(Error::mismatch(
                "conv2d (input channels vs weight [out, in/groups, kh, kw])",
                xs,
                ws,
            ));
        }
        let params = Conv2dParams::new(xs[1], ws[0], (ws[2], ws[3]))
            .with_stride(stride)
            .with_padding(padding)
            .with_dilation(dilation)
            .with_groups(groups);
        let shape = Conv2dShape::new(params, xs[0], xs[2], xs[3]);
        shape.validate().map_err(Error::kernel("conv2d"))?;
        if let Some(b) = b {
            if b.shape() != [ws[0]] {
                return Err(Error::mismatch("conv2d (bias)", &[ws[0]], b.shape()));
            }
        }
        let (oh, ow) = shape.out_hw().map_err(Error::kernel("conv2d"))?;
        let out_shape = vec![xs[0], ws[0], oh, ow];
        // A huge padding can make the output or the padded scratch copy enormous while the
        // input stays small: bound both before allocating.
        crate::limits::checked_numel("conv2d", &out_shape)?;
        for s in [
            k::conv2d_workspace_len(&shape.with_batch(1)),
            k::conv2d_backward_input_workspace_len(&shape.with_batch(1)),
            k::conv2d_backward_weight_workspace_len(&shape.with_batch(1)),
        ] {
            crate::limits::check_count("conv2d (scratch)", &out_shape, s)?;
        }
        let y = {
            let (xd, wd) = (self.data(), w.data());
            let bd = b.map(|b| b.data());
            let bs: Option<&[f32]> = bd.as_deref();
            par_batch(
                xs[0],
                &xd,
                xs[1] * xs[2] * xs[3],
                ws[0] * oh * ow,
                |nb, xc, yc| {
                    let s = shape.with_batch(nb);
                    let mut scratch = vec![0.0; k::conv2d_workspace_len(&s)];
                    k::conv2d_forward(&s, xc, &wd, bs, yc, &mut scratch)
                },
            )
            .map_err(Error::kernel("conv2d"))?
        };
        Ok(Tensor::from_op(
            y,
            out_shape,
            Op::Conv2d {
                x: self.clone(),
                w: w.clone(),
                b: b.cloned(),
                shape,
            },
        ))
    }

    /// d2l's `corr2d(X, K)` on 2-D tensors: one-channel cross-correlation, no padding.
    pub fn corr2d(&self, kernel: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 || kernel.rank() != 2 {
            return Err(Error::mismatch(
                "corr2d (both must be 2-D)",
                self.shape(),
                kernel.shape(),
            ));
        }
        let x = self.reshape([1, 1, self.shape()[0] as isize, self.shape()[1] as isize])?;
        let w = kernel.reshape([1, 1, kernel.shape()[0] as isize, kernel.shape()[1] as isize])?;
        let y = x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 1)?;
        let (h, wd) = (y.shape()[2], y.shape()[3]);
        y.reshape([h, wd])
    }

    fn pool_shape(
        &self,
        op: &'static str,
        params: Pool2dParams,
    ) -> Result<(Pool2dShape, Vec<usize>)> {
        if self.rank() != 4 {
            return Err(Error::bad_shape(op, self.shape(), "expects [N, C, H, W]"));
        }
        let s = self.shape();
        let shape = Pool2dShape::new(params, s[0], s[1], s[2], s[3]);
        shape.validate().map_err(Error::kernel(op))?;
        let (oh, ow) = shape.out_hw().map_err(Error::kernel(op))?;
        Ok((shape, vec![s[0], s[1], oh, ow]))
    }

    /// Max pooling of `[N, C, H, W]` (or `[C, H, W]`); padding counts as -inf.
    pub fn max_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        if self.rank() == 3 {
            return self.unsqueeze(0)?.max_pool2d(params)?.squeeze(0);
        }
        let (shape, out_shape) = self.pool_shape("max_pool2d", params)?;
        let n = numel_of(&out_shape);
        let mut y = vec![0.0; n];
        let mut argmax = vec![0u32; n];
        let (c, h, w) = (shape.channels, shape.in_h, shape.in_w);
        let per_out = c * out_shape[2] * out_shape[3];
        {
            let xd = self.data();
            let cl = parallel::chunk_len(shape.batch);
            let run = |nb: usize, xc: &[f32], yc: &mut [f32], ac: &mut [u32]| {
                k::max_pool2d_forward(&shape.with_batch(nb), xc, yc, ac)
            };
            let res = if cl >= shape.batch || per_out == 0 {
                run(shape.batch, &xd, &mut y, &mut argmax)
            } else {
                parallel::install(|| {
                    xd.par_chunks(cl * c * h * w)
                        .zip(y.par_chunks_mut(cl * per_out))
                        .zip(argmax.par_chunks_mut(cl * per_out))
                        .try_for_each(|((xc, yc), ac)| run(yc.len() / per_out, xc, yc, ac))
                })
            };
            res.map_err(Error::kernel("max_pool2d"))?;
        }
        Ok(Tensor::from_op(
            y,
            out_shape,
            Op::MaxPool2d {
                x: self.clone(),
                shape,
                argmax,
            },
        ))
    }

    /// Average pooling of `[N, C, H, W]` (or `[C, H, W]`); zero padding.
    pub fn avg_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        if self.rank() == 3 {
            return self.unsqueeze(0)?.avg_pool2d(params)?.squeeze(0);
        }
        let (shape, out_shape) = self.pool_shape("avg_pool2d", params)?;
        let (c, h, w) = (shape.channels, shape.in_h, shape.in_w);
        let y = par_batch(
            shape.batch,
            &self.data(),
            c * h * w,
            c * out_shape[2] * out_shape[3],
            |nb, xc, yc| k::avg_pool2d_forward(&shape.with_batch(nb), xc, yc),
        )
        .map_err(Error::kernel("avg_pool2d"))?;
        Ok(Tensor::from_op(
            y,
            out_shape,
            Op::AvgPool2d {
                x: self.clone(),
                shape,
            },
        ))
    }
}

// ===== softmax and losses ====================================================================

/// Labels given as a tensor of class indices (integral, non-negative f32 values).
pub fn labels_from_tensor(labels: &Tensor) -> Result<Vec<u32>> {
    labels
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f32 {
                Ok(v as u32)
            } else {
                Err(Error::invalid(
                    "cross_entropy",
                    format!("label {i} is {v}, not a class index"),
                ))
            }
        })
        .collect()
}

impl Tensor {
    fn rows_cols(&self, op: &'static str) -> Result<(usize, usize)> {
        if self.rank() == 0 || self.numel() == 0 {
            return Err(Error::bad_shape(
                op,
                self.shape(),
                "needs a non-empty tensor of rank >= 1",
            ));
        }
        let cols = self.shape()[self.rank() - 1];
        Ok((self.numel() / cols, cols))
    }

    fn last_dim_op(
        &self,
        op: &'static str,
        dim: isize,
        f: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let d = self.dim_index(op, dim)?;
        let last = self.rank() - 1;
        if d == last {
            f(self)
        } else {
            let moved = self.transpose(d as isize, last as isize)?;
            f(&moved)?.transpose(d as isize, last as isize)
        }
    }

    /// Softmax along `dim` (kernel `softmax_forward` on rows).
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        self.last_dim_op("softmax", dim, |x| {
            let (rows, cols) = x.rows_cols("softmax")?;
            let mut y = vec![0.0; x.numel()];
            k::softmax_forward(rows, cols, &x.data(), &mut y).map_err(Error::kernel("softmax"))?;
            Ok(Tensor::from_op(
                y,
                x.shape().to_vec(),
                Op::Softmax(x.clone()),
            ))
        })
    }

    /// Log-softmax along `dim` (kernel `log_softmax_forward`).
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        self.last_dim_op("log_softmax", dim, |x| {
            let (rows, cols) = x.rows_cols("log_softmax")?;
            let mut y = vec![0.0; x.numel()];
            k::log_softmax_forward(rows, cols, &x.data(), &mut y)
                .map_err(Error::kernel("log_softmax"))?;
            Ok(Tensor::from_op(
                y,
                x.shape().to_vec(),
                Op::LogSoftmax(x.clone()),
            ))
        })
    }

    /// Mean cross-entropy of logits `[N, C]` against class labels (`F.cross_entropy`).
    pub fn cross_entropy(&self, labels: &[u32]) -> Result<Tensor> {
        if self.rank() != 2 {
            return Err(Error::bad_shape(
                "cross_entropy",
                self.shape(),
                "logits must be [batch, classes]",
            ));
        }
        let (rows, cols) = (self.shape()[0], self.shape()[1]);
        if labels.len() != rows {
            return Err(Error::mismatch(
                "cross_entropy (logits vs labels)",
                self.shape(),
                &[labels.len()],
            ));
        }
        let l = k::cross_entropy_forward(rows, cols, &self.data(), labels)
            .map_err(Error::kernel("cross_entropy"))?;
        Ok(Tensor::from_op(
            vec![l],
            vec![],
            Op::CrossEntropy {
                logits: self.clone(),
                labels: labels.to_vec(),
            },
        ))
    }

    /// [`Tensor::cross_entropy`] with labels given as a tensor of class indices.
    pub fn cross_entropy_t(&self, labels: &Tensor) -> Result<Tensor> {
        self.cross_entropy(&labels_from_tensor(labels)?)
    }

    /// Mean squared error (`F.mse_loss`, reduction "mean"); shapes must match.
    pub fn mse_loss(&self, target: &Tensor) -> Result<Tensor> {
        if self.shape() != target.shape() {
            return Err(Error::mismatch("mse_loss", self.shape(), target.shape()));
        }
        Ok(self.sub(target)?.pow(2.0).mean_all())
    }
}

// ===== backward rules ========================================================================

type Grads = Vec<Option<Vec<f32>>>;

fn scale(g: &[f32], s: f32) -> Vec<f32> {
    g.iter().map(|v| v * s).collect()
}

/// `g` times `other` broadcast to `out`, then summed down to `to`.
fn mul_bcast_sum(
    g: &[f32],
    out: &[usize],
    other: &Tensor,
    to: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let od = other.data();
    let so = bcast_strides(other.shape(), out);
    let mut prod = vec![0.0; g.len()];
    walk2(out, &so, &so, |o, i, _| prod[o] = f(g[o], od[i]));
    sum_to(&prod, out, to)
}

impl Op {
    /// Gradients of the inputs (in [`Op::inputs`] order) from the gradient `g` of `out`;
    /// `needs[i]` says whether input `i` wants one.
    pub(crate) fn backward(&self, out: &Tensor, g: &[f32], needs: &[bool]) -> Result<Grads> {
        use Op::*;
        let os = out.shape();
        let want = |i: usize| needs.get(i).copied().unwrap_or(false);
        Ok(match self {
            Add(a, b) => vec![
                want(0).then(|| sum_to(g, os, a.shape())),
                want(1).then(|| sum_to(g, os, b.shape())),
            ],
            Sub(a, b) => vec![
                want(0).then(|| sum_to(g, os, a.shape())),
                want(1).then(|| scale(&sum_to(g, os, b.shape()), -1.0)),
            ],
            Mul(a, b) => vec![
                want(0).then(|| mul_bcast_sum(g, os, b, a.shape(), |g, y| g * y)),
                want(1).then(|| mul_bcast_sum(g, os, a, b.shape(), |g, x| g * x)),
            ],
            Div(a, b) => {
                let ga = want(0).then(|| mul_bcast_sum(g, os, b, a.shape(), |g, y| g / y));
                let gb = want(1).then(|| {
                    // d(a/b)/db = -(a/b)/b = -out/b
                    let od = out.data();
                    let gq: Vec<f32> = g.iter().zip(od.iter()).map(|(g, q)| -g * q).collect();
                    mul_bcast_sum(&gq, os, b, b.shape(), |gq, y| gq / y)
                });
                vec![ga, gb]
            }
            AddScalar(_) => vec![Some(g.to_vec())],
            MulScalar(_, s) => vec![Some(scale(g, *s))],
            DivScalar(_, s) => vec![Some(g.iter().map(|v| v / s).collect())],
            PowScalar(x, p) => {
                let xd = x.data();
                vec![Some(
                    g.iter()
                        .zip(xd.iter())
                        .map(|(g, &x)| g * p * x.powf(p - 1.0))
                        .collect(),
                )]
            }
            Exp(_) => vec![Some(
                g.iter()
                    .zip(out.data().iter())
                    .map(|(g, y)| g * y)
                    .collect(),
            )],
            Log(x) => vec![Some(
                g.iter().zip(x.data().iter()).map(|(g, x)| g / x).collect(),
            )],
            Abs(x) => vec![Some(
                g.iter()
                    .zip(x.data().iter())
                    .map(|(g, &x)| {
                        if x > 0.0 {
                            *g
                        } else if x < 0.0 {
                            -g
                        } else {
                            0.0
                        }
                    })
                    .collect(),
            )],
            Sqrt(_) => vec![Some(
                g.iter()
                    .zip(out.data().iter())
                    .map(|(g, y)| g / (2.0 * y))
                    .collect(),
            )],
            Relu(x) => {
                let gx = par_elementwise(&x.data(), Some(g), |x, g, gx| {
                    k::relu_backward(x, g.unwrap_or_default(), gx)
                })
                .map_err(Error::kernel("relu backward"))?;
                vec![Some(gx)]
            }
            Sigmoid(_) => {
                let gx = par_elementwise(&out.data(), Some(g), |y, g, gx| {
                    k::sigmoid_backward(y, g.unwrap_or_default(), gx)
                })
                .map_err(Error::kernel("sigmoid backward"))?;
                vec![Some(gx)]
            }
            Tanh(_) => {
                let mut gx = vec![0.0; g.len()];
                k::tanh_backward(&out.data(), g, &mut gx)
                    .map_err(Error::kernel("tanh backward"))?;
                vec![Some(gx)]
            }
            Sum { x, keep_shape, .. } => vec![Some(expand_data(g, keep_shape, x.shape()))],
            Mean { x, keep_shape, .. } => {
                let count = (x.numel() / numel_of(keep_shape).max(1)).max(1) as f32;
                vec![Some(scale(
                    &expand_data(g, keep_shape, x.shape()),
                    1.0 / count,
                ))]
            }
            Max { x, indices, .. } => {
                let mut gx = vec![0.0; x.numel()];
                for (o, &i) in indices.iter().enumerate() {
                    gx[i] += g[o];
                }
                vec![Some(gx)]
            }
            Reshape(_) => vec![Some(g.to_vec())],
            Expand(x) => vec![Some(sum_to(g, os, x.shape()))],
            Permute { perm, .. } => {
                let mut inv = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                vec![Some(permute_data(g, os, &inv))]
            }
            Narrow { x, dim, start } => {
                let xs = x.shape();
                let (n, len) = (xs[*dim], os[*dim]);
                let outer: usize = xs[..*dim].iter().product();
                let inner: usize = xs[*dim + 1..].iter().product();
                let mut gx = vec![0.0; x.numel()];
                for o in 0..outer {
                    let d = (o * n + start) * inner;
                    gx[d..d + len * inner]
                        .copy_from_slice(&g[o * len * inner..(o + 1) * len * inner]);
                }
                vec![Some(gx)]
            }
            Cat { xs, dim } => {
                let outer: usize = os[..*dim].iter().product();
                let inner: usize = os[*dim + 1..].iter().product();
                let mut grads: Vec<Vec<f32>> =
                    xs.iter().map(|x| Vec::with_capacity(x.numel())).collect();
                let mut pos = 0;
                for _ in 0..outer {
                    for (x, gx) in xs.iter().zip(grads.iter_mut()) {
                        let chunk = x.shape()[*dim] * inner;
                        gx.extend_from_slice(&g[pos..pos + chunk]);
                        pos += chunk;
                    }
                }
                grads
                    .into_iter()
                    .enumerate()
                    .map(|(i, gx)| want(i).then_some(gx))
                    .collect()
            }
            MatMul(a, b) => {
                let (ash, bsh) = (a.shape(), b.shape());
                let (ra, rb) = (ash.len(), bsh.len());
                let (m, kk, n) = (ash[ra - 2], ash[ra - 1], bsh[rb - 1]);
                let batch = &os[..os.len() - 2];
                let (sa, sb) = (
                    bcast_strides(&ash[..ra - 2], batch),
                    bcast_strides(&bsh[..rb - 2], batch),
                );
                let (ad, bd) = (a.data(), b.data());
                let mut ga = want(0).then(|| vec![0.0; a.numel()]);
                let mut gb = want(1).then(|| vec![0.0; b.numel()]);
                let mut ws = Vec::new();
                let mut res = Ok(());
                walk2(batch, &sa, &sb, |o, ia, ib| {
                    if res.is_err() || m * n * kk == 0 {
                        return;
                    }
                    let gc = &g[o * m * n..(o + 1) * m * n];
                    if let Some(ga) = ga.as_mut() {
                        // dA = dC B^T
                        let s =
                            GemmShape::new(m, kk, n).with_transpose(Transpose::No, Transpose::Yes);
                        res = gemm(
                            "matmul backward",
                            s,
                            gc,
                            &bd[ib * kk * n..(ib + 1) * kk * n],
                            1.0,
                            &mut ga[ia * m * kk..(ia + 1) * m * kk],
                            &mut ws,
                        );
                    }
                    if let (Some(gb), true) = (gb.as_mut(), res.is_ok()) {
                        // dB = A^T dC
                        let s =
                            GemmShape::new(kk, n, m).with_transpose(Transpose::Yes, Transpose::No);
                        res = gemm(
                            "matmul backward",
                            s,
                            &ad[ia * m * kk..(ia + 1) * m * kk],
                            gc,
                            1.0,
                            &mut gb[ib * kk * n..(ib + 1) * kk * n],
                            &mut ws,
                        );
                    }
                });
                res?;
                vec![ga, gb]
            }
            Linear { x, w, b } => {
                let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
                let rows = x.numel() / in_f.max(1);
                let mut ws = Vec::new();
                let mut grads = vec![None, None];
                if want(0) {
                    let mut gx = vec![0.0; x.numel()];
                    if rows * in_f * out_f > 0 {
                        gemm(
                            "linear backward (input)",
                            GemmShape::new(rows, in_f, out_f),
                            g,
                            &w.data(),
                            0.0,
                            &mut gx,
                            &mut ws,
                        )?;
                    }
                    grads[0] = Some(gx);
                }
                if want(1) {
                    let mut gw = vec![0.0; w.numel()];
                    if rows * in_f * out_f > 0 {
                        let s = GemmShape::new(out_f, in_f, rows)
                            .with_transpose(Transpose::Yes, Transpose::No);
                        gemm(
                            "linear backward (weight)",
                            s,
                            g,
                            &x.data(),
                            0.0,
                            &mut gw,
                            &mut ws,
                        )?;
                    }
                    grads[1] = Some(gw);
                }
                if b.is_some() {
                    grads.push(if want(2) {
                        let mut gb = vec![0.0; out_f];
                        if rows > 0 {
                            k::bias_backward(rows, out_f, 1, g, &mut gb)
                                .map_err(Error::kernel("linear backward (bias)"))?;
                        }
                        Some(gb)
                    } else {
                        None
                    });
                }
                grads
            }
            Conv2d { x, w, b, shape } => conv2d_backward(x, w, b.is_some(), shape, g, needs)?,
            MaxPool2d { x, shape, argmax } => {
                let mut gx = vec![0.0; x.numel()];
                let per_in = shape.channels * shape.in_h * shape.in_w;
                let per_out = g.len() / shape.batch.max(1);
                let cl = parallel::chunk_len(shape.batch);
                let run = |nb: usize, gc: &[f32], ac: &[u32], xc: &mut [f32]| {
                    k::max_pool2d_backward(&shape.with_batch(nb), gc, ac, xc)
                };
                let res = if cl >= shape.batch || per_out == 0 {
                    run(shape.batch, g, argmax, &mut gx)
                } else {
                    parallel::install(|| {
                        g.par_chunks(cl * per_out)
                            .zip(argmax.par_chunks(cl * per_out))
                            .zip(gx.par_chunks_mut(cl * per_in))
                            .try_for_each(|((gc, ac), xc)| run(gc.len() / per_out, gc, ac, xc))
                    })
                };
                res.map_err(Error::kernel("max_pool2d backward"))?;
                vec![Some(gx)]
            }
            AvgPool2d { shape, .. } => {
                let per_in = shape.channels * shape.in_h * shape.in_w;
                let per_out = g.len() / shape.batch.max(1);
                let gx = par_batch(shape.batch, g, per_out, per_in, |nb, gc, xc| {
                    k::avg_pool2d_backward(&shape.with_batch(nb), gc, xc)
                })
                .map_err(Error::kernel("avg_pool2d backward"))?;
                vec![Some(gx)]
            }
            Softmax(x) => {
                let (rows, cols) = x.rows_cols("softmax backward")?;
                let mut gx = vec![0.0; g.len()];
                k::softmax_backward(rows, cols, &out.data(), g, &mut gx)
                    .map_err(Error::kernel("softmax backward"))?;
                vec![Some(gx)]
            }
            LogSoftmax(x) => {
                let (rows, cols) = x.rows_cols("log_softmax backward")?;
                let mut gx = vec![0.0; g.len()];
                k::log_softmax_backward(rows, cols, &out.data(), g, &mut gx)
                    .map_err(Error::kernel("log_softmax backward"))?;
                vec![Some(gx)]
            }
            CrossEntropy { logits, labels } => {
                let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
                let mut gx = vec![0.0; logits.numel()];
                k::cross_entropy_backward(rows, cols, &logits.data(), labels, g[0], &mut gx)
                    .map_err(Error::kernel("cross_entropy backward"))?;
                vec![Some(gx)]
            }
        })
    }
}

/// Gradients of a convolution: input and weight per batch chunk in parallel (each chunk
/// with its own workspace; the partial weight gradients are summed), bias over the batch.
fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    has_bias: bool,
    shape: &Conv2dShape,
    g: &[f32],
    needs: &[bool],
) -> Result<Grads> {
    let batch = shape.batch;
    let per_in = x.numel() / batch;
    let per_out = g.len() / batch;
    let cl = parallel::chunk_len(batch);
    let mut grads: Grads = vec![None, None];
    if needs[0] {
        let wd = w.data();
        let gx = par_batch(batch, g, per_out, per_in, |nb, gc, xc| {
            let s = shape.with_batch(nb);
            let mut scratch = vec![0.0; k::conv2d_backward_input_workspace_len(&s)];
            k::conv2d_backward_input(&s, gc, &wd, xc, &mut scratch)
        })
        .map_err(Error::kernel("conv2d backward (input)"))?;
        grads[0] = Some(gx);
    }
    let want_bias = has_bias && needs.get(2).copied().unwrap_or(false);
    let mut gb = None;
    if needs[1] {
        // Each thread's chunk gives a partial weight gradient (and bias gradient, folded into
        // the same pass so the bias reduction runs in parallel too); the partials are summed.
        let xd = x.data();
        let wl = w.numel();
        let bl = if want_bias {
            shape.params.out_channels
        } else {
            0
        };
        let partial = |nb: usize, xc: &[f32], gc: &[f32]| -> k::Result<Vec<f32>> {
            let s = shape.with_batch(nb);
            let mut scratch = vec![0.0; k::conv2d_backward_weight_workspace_len(&s)];
            let mut gwb = vec![0.0; wl + bl];
            let (gw, gbias) = gwb.split_at_mut(wl);
            k::conv2d_backward_weight(&s, xc, gc, gw, &mut scratch)?;
            if want_bias {
                k::conv2d_backward_bias(&s, gc, gbias)?;
            }
            Ok(gwb)
        };
        let mut gwb = if cl >= batch {
            partial(batch, &xd, g)
        } else {
            parallel::install(|| {
                xd.par_chunks(cl * per_in)
                    .zip(g.par_chunks(cl * per_out))
                    .map(|(xc, gc)| partial(xc.len() / per_in, xc, gc))
                    .try_reduce(
                        || vec![0.0; wl + bl],
                        |mut a, b| {
                            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                            Ok(a)
                        },
                    )
            })
        }
        .map_err(Error::kernel("conv2d backward (weight)"))?;
        if want_bias {
            gb = Some(gwb.split_off(wl));
        }
        grads[1] = Some(gwb);
    }
    if has_bias {
        if want_bias && gb.is_none() {
            let mut b = vec![0.0; shape.params.out_channels];
            k::conv2d_backward_bias(shape, g, &mut b)
                .map_err(Error::kernel("conv2d backward (bias)"))?;
            gb = Some(b);
        }
        grads.push(gb);
    }
    Ok(grads)
}
