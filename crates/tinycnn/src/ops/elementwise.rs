//! Elementwise arithmetic (broadcasting), scalar ops and activations: forward as `Tensor`
//! methods, then each op's backward rule.

use super::broadcast::{bcast_strides, broadcast_shape, mul_bcast_sum, scale, sum_to, walk2};
use super::{cpu_backward, par_elementwise};
use crate::autograd::Backward;
use crate::device::same_device;
use crate::error::{Error, Result};
use crate::tensor::{numel_of, Tensor};
use tinycnn_kernels as k;

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

fn binary<B: Backward + 'static>(
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32,
    op: fn(Tensor, Tensor) -> B,
) -> Result<Tensor> {
    same_device(name, &[a, b])?;
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
    same_device(name, &[a, b])?;
    let out = broadcast_shape(name, a.shape(), b.shape())?;
    let v = binary_data(a, b, &out, |x, y| if f(x, y) { 1.0 } else { 0.0 });
    Ok(Tensor::raw(v, out))
}

fn unary(x: &Tensor, f: impl Fn(f32) -> f32, op: impl Backward + 'static) -> Tensor {
    let v: Vec<f32> = x.data().iter().map(|&a| f(a)).collect();
    Tensor::from_op(v, x.shape().to_vec(), op)
}

fn kernel_unary(
    name: &'static str,
    x: &Tensor,
    kern: fn(&[f32], &mut [f32]) -> k::Result<()>,
    op: impl Backward + 'static,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(c) = super::on_cuda(&x.buffer()) {
        let mut y = c.alloc_like(c.buf.len())?;
        let run = match name {
            "relu" => c.dev.relu_forward(&c.buf, &mut y.buf),
            "relu6" => c.dev.relu6_forward(&c.buf, &mut y.buf),
            "sigmoid" => c.dev.sigmoid_forward(&c.buf, &mut y.buf),
            _ => c.dev.tanh_forward(&c.buf, &mut y.buf),
        };
        run.map_err(crate::cuda::err(name))?;
        return Ok(Tensor::from_buffer_op(
            crate::storage::Buffer::Cuda(y),
            x.shape().to_vec(),
            op,
        ));
    }
    let y = par_elementwise(&x.data(), None, |x, _, y| kern(x, y)).map_err(Error::kernel(name))?;
    Ok(Tensor::from_op(y, x.shape().to_vec(), op))
}

/// The backward of an activation on CUDA: `kernel(saved, grad, grad_x)` where `saved` is the
/// input (ReLU, ReLU6) or the output (sigmoid, tanh). `None` when the tensors are not on CUDA.
#[cfg(feature = "cuda")]
fn cuda_activation_backward(
    name: &'static str,
    saved: &Tensor,
    grad: &Tensor,
) -> Result<Option<Vec<Option<Tensor>>>> {
    let (sb, gb) = (saved.buffer(), grad.buffer());
    let (Some(s), Some(g)) = (super::on_cuda(&sb), super::on_cuda(&gb)) else {
        return Ok(None);
    };
    let mut gx = s.alloc_like(s.buf.len())?;
    let run = match name {
        "relu backward" => s.dev.relu_backward(&s.buf, &g.buf, &mut gx.buf),
        "relu6 backward" => s.dev.relu6_backward(&s.buf, &g.buf, &mut gx.buf),
        "sigmoid backward" => s.dev.sigmoid_backward(&s.buf, &g.buf, &mut gx.buf),
        _ => s.dev.tanh_backward(&s.buf, &g.buf, &mut gx.buf),
    };
    run.map_err(crate::cuda::err(name))?;
    Ok(Some(vec![Some(super::cuda_tensor(gx, saved.shape()))]))
}

/// `a + alpha * b` of two same-shaped tensors on one CUDA device (`None` otherwise).
#[cfg(feature = "cuda")]
fn cuda_axpy(
    name: &'static str,
    a: &Tensor,
    b: &Tensor,
    alpha: f32,
) -> Result<Option<crate::storage::Buffer>> {
    let (ab, bb) = (a.buffer(), b.buffer());
    let (Some(ac), Some(bc)) = (super::on_cuda(&ab), super::on_cuda(&bb)) else {
        return Ok(None);
    };
    if a.shape() != b.shape() {
        return Ok(None);
    }
    let mut y = ac.alloc_like(ac.buf.len())?;
    ac.dev
        .copy_device(&ac.buf, &mut y.buf)
        .map_err(crate::cuda::err(name))?;
    ac.dev
        .axpby(alpha, &bc.buf, 1.0, &mut y.buf)
        .map_err(crate::cuda::err(name))?;
    Ok(Some(crate::storage::Buffer::Cuda(y)))
}

/// `a * b` of two same-shaped tensors on one CUDA device (`None` otherwise).
#[cfg(feature = "cuda")]
fn cuda_mul(a: &Tensor, b: &Tensor) -> Result<Option<crate::storage::Buffer>> {
    let (ab, bb) = (a.buffer(), b.buffer());
    let (Some(ac), Some(bc)) = (super::on_cuda(&ab), super::on_cuda(&bb)) else {
        return Ok(None);
    };
    if a.shape() != b.shape() {
        return Ok(None);
    }
    let mut y = ac.alloc_like(ac.buf.len())?;
    ac.dev
        .mul(&ac.buf, &bc.buf, &mut y.buf)
        .map_err(crate::cuda::err("mul"))?;
    Ok(Some(crate::storage::Buffer::Cuda(y)))
}

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(y) = cuda_axpy("add", self, other, 1.0)? {
            let op = AddBackward(self.clone(), other.clone());
            return Ok(Tensor::from_buffer_op(y, self.shape().to_vec(), op));
        }
        binary("add", self, other, |a, b| a + b, AddBackward)
    }
    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(y) = cuda_axpy("sub", self, other, -1.0)? {
            let op = SubBackward(self.clone(), other.clone());
            return Ok(Tensor::from_buffer_op(y, self.shape().to_vec(), op));
        }
        binary("sub", self, other, |a, b| a - b, SubBackward)
    }
    /// `self * other` elementwise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(y) = cuda_mul(self, other)? {
            let op = MulBackward(self.clone(), other.clone());
            return Ok(Tensor::from_buffer_op(y, self.shape().to_vec(), op));
        }
        binary("mul", self, other, |a, b| a * b, MulBackward)
    }
    /// `self / other` elementwise, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary("div", self, other, |a, b| a / b, DivBackward)
    }
    /// `self + v`.
    pub fn add_scalar(&self, v: f32) -> Tensor {
        #[cfg(feature = "cuda")]
        if let Some(c) = super::on_cuda(&self.buffer()) {
            // y = v, then y += x: two launches, no trip through the host (batch norm's
            // `num_batches_tracked += 1` runs every training step).
            let shifted = c.alloc_like(c.buf.len()).and_then(|mut y| {
                c.dev
                    .fill(v, &mut y.buf)
                    .map_err(crate::cuda::err("add_scalar"))?;
                c.dev
                    .add_inplace(&c.buf, &mut y.buf)
                    .map_err(crate::cuda::err("add_scalar"))?;
                Ok(y)
            });
            if let Ok(y) = shifted {
                let op = AddScalarBackward(self.clone());
                return Tensor::from_buffer_op(
                    crate::storage::Buffer::Cuda(y),
                    self.shape().to_vec(),
                    op,
                );
            }
        }
        unary(self, |a| a + v, AddScalarBackward(self.clone()))
    }
    /// `self * v`.
    pub fn mul_scalar(&self, v: f32) -> Tensor {
        #[cfg(feature = "cuda")]
        if let Some(c) = super::on_cuda(&self.buffer()) {
            let scaled = c.alloc_like(c.buf.len()).and_then(|mut y| {
                c.dev
                    .copy_device(&c.buf, &mut y.buf)
                    .map_err(crate::cuda::err("mul_scalar"))?;
                c.dev
                    .scale(v, &mut y.buf)
                    .map_err(crate::cuda::err("mul_scalar"))?;
                Ok(y)
            });
            if let Ok(y) = scaled {
                let op = MulScalarBackward(self.clone(), v);
                return Tensor::from_buffer_op(
                    crate::storage::Buffer::Cuda(y),
                    self.shape().to_vec(),
                    op,
                );
            }
        }
        unary(self, |a| a * v, MulScalarBackward(self.clone(), v))
    }
    /// `self / v`.
    pub fn div_scalar(&self, v: f32) -> Tensor {
        unary(self, |a| a / v, DivScalarBackward(self.clone(), v))
    }
    /// `-self`.
    pub fn neg(&self) -> Tensor {
        self.mul_scalar(-1.0)
    }
    /// `self ** p` elementwise.
    pub fn pow(&self, p: f32) -> Tensor {
        let f = move |a: f32| if p == 2.0 { a * a } else { a.powf(p) };
        unary(self, f, PowScalarBackward(self.clone(), p))
    }
    /// `e ** self`.
    pub fn exp(&self) -> Tensor {
        unary(self, f32::exp, ExpBackward(self.clone()))
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        unary(self, f32::ln, LogBackward(self.clone()))
    }
    /// `|self|`.
    pub fn abs(&self) -> Tensor {
        unary(self, f32::abs, AbsBackward(self.clone()))
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        unary(self, f32::sqrt, SqrtBackward(self.clone()))
    }
    /// `max(self, 0)` (kernel `relu_forward`).
    pub fn relu(&self) -> Result<Tensor> {
        kernel_unary("relu", self, k::relu_forward, ReluBackward(self.clone()))
    }
    /// `min(max(self, 0), 6)` (`F.relu6`, PyTorch's `hardtanh(x, 0, 6)`; kernel
    /// `relu6_forward`); NaN stays NaN. The gradient is 0 at the kinks 0 and 6.
    ///
    /// ```
    /// let y = tinycnn::Tensor::new([-1.0, 3.0, 8.0]).relu6().unwrap();
    /// assert_eq!(y.to_vec(), vec![0.0, 3.0, 6.0]);
    /// ```
    pub fn relu6(&self) -> Result<Tensor> {
        kernel_unary("relu6", self, k::relu6_forward, Relu6Backward(self.clone()))
    }
    /// `1 / (1 + e^-self)` (kernel `sigmoid_forward`).
    pub fn sigmoid(&self) -> Result<Tensor> {
        kernel_unary(
            "sigmoid",
            self,
            k::sigmoid_forward,
            SigmoidBackward(self.clone()),
        )
    }
    /// `tanh(self)` (kernel `tanh_forward`).
    pub fn tanh(&self) -> Result<Tensor> {
        kernel_unary("tanh", self, k::tanh_forward, TanhBackward(self.clone()))
    }
}

pub(crate) struct AddBackward(Tensor, Tensor);

impl Backward for AddBackward {
    fn name(&self) -> &'static str {
        "AddBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0, &self.1]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let AddBackward(a, b) = self;
        if a.shape() == grad.shape() && b.shape() == grad.shape() {
            // No broadcasting: the gradient passes through unchanged, on any device.
            return Ok(vec![
                needs[0].then(|| grad.detach()),
                needs[1].then(|| grad.detach()),
            ]);
        }
        cpu_backward(self, grad, needs, |g, os, want| {
            Ok(vec![
                want(0).then(|| sum_to(g, os, a.shape())),
                want(1).then(|| sum_to(g, os, b.shape())),
            ])
        })
    }
}

pub(crate) struct SubBackward(Tensor, Tensor);

impl Backward for SubBackward {
    fn name(&self) -> &'static str {
        "SubBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0, &self.1]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let SubBackward(a, b) = self;
        if a.shape() == grad.shape() && b.shape() == grad.shape() {
            let neg = if needs[1] {
                Some(grad.mul_scalar(-1.0))
            } else {
                None
            };
            return Ok(vec![needs[0].then(|| grad.detach()), neg]);
        }
        cpu_backward(self, grad, needs, |g, os, want| {
            Ok(vec![
                want(0).then(|| sum_to(g, os, a.shape())),
                want(1).then(|| scale(&sum_to(g, os, b.shape()), -1.0)),
            ])
        })
    }
}

pub(crate) struct MulBackward(Tensor, Tensor);

impl Backward for MulBackward {
    fn name(&self) -> &'static str {
        "MulBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0, &self.1]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        {
            // Same shapes on the device: each gradient is one product there.
            let want = |i: usize| needs.get(i).copied().unwrap_or(false);
            let MulBackward(a, b) = self;
            let same = a.shape() == b.shape() && a.shape() == grad.shape();
            if same
                && [a, b, grad]
                    .iter()
                    .all(|t| super::on_cuda(&t.buffer()).is_some())
            {
                let ga = want(0).then(|| cuda_mul(grad, b)).transpose()?.flatten();
                let gb = want(1).then(|| cuda_mul(grad, a)).transpose()?.flatten();
                let tensor = |y: crate::storage::Buffer| Tensor::from_buffer(y, a.shape().to_vec());
                return Ok(vec![ga.map(tensor), gb.map(tensor)]);
            }
        }
        cpu_backward(self, grad, needs, |g, os, want| {
            let MulBackward(a, b) = self;
            Ok(vec![
                want(0).then(|| mul_bcast_sum(g, os, b, a.shape(), |g, y| g * y)),
                want(1).then(|| mul_bcast_sum(g, os, a, b.shape(), |g, x| g * x)),
            ])
        })
    }
}

pub(crate) struct DivBackward(Tensor, Tensor);

impl Backward for DivBackward {
    fn name(&self) -> &'static str {
        "DivBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0, &self.1]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, os, want| {
            let DivBackward(a, b) = self;
            Ok({
                let ga = want(0).then(|| mul_bcast_sum(g, os, b, a.shape(), |g, y| g / y));
                let gb = want(1).then(|| {
                    // d(a/b)/db = -(a/b)/b = -out/b
                    let od = out.data();
                    let gq: Vec<f32> = g.iter().zip(od.iter()).map(|(g, q)| -g * q).collect();
                    mul_bcast_sum(&gq, os, b, b.shape(), |gq, y| gq / y)
                });
                vec![ga, gb]
            })
        })
    }
}

pub(crate) struct AddScalarBackward(Tensor);

impl Backward for AddScalarBackward {
    fn name(&self) -> &'static str {
        "AddBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        _needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        // The gradient passes unchanged (on its device; buffers are copy-on-write).
        Ok(vec![Some(grad.to(&self.0.device())?)])
    }
}

pub(crate) struct MulScalarBackward(Tensor, f32);

impl Backward for MulScalarBackward {
    fn name(&self) -> &'static str {
        "MulBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let MulScalarBackward(_, v) = self;
        Ok(vec![needs[0].then(|| grad.mul_scalar(*v))])
    }
}

pub(crate) struct DivScalarBackward(Tensor, f32);

impl Backward for DivScalarBackward {
    fn name(&self) -> &'static str {
        "DivBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let DivScalarBackward(_, s) = self;
            Ok(vec![Some(g.iter().map(|v| v / s).collect())])
        })
    }
}

pub(crate) struct PowScalarBackward(Tensor, f32);

impl Backward for PowScalarBackward {
    fn name(&self) -> &'static str {
        "PowBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let PowScalarBackward(x, p) = self;
            Ok({
                let xd = x.data();
                vec![Some(
                    g.iter()
                        .zip(xd.iter())
                        .map(|(g, &x)| g * p * x.powf(p - 1.0))
                        .collect(),
                )]
            })
        })
    }
}

pub(crate) struct ExpBackward(Tensor);

impl Backward for ExpBackward {
    fn name(&self) -> &'static str {
        "ExpBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let ExpBackward(_) = self;
            Ok(vec![Some(
                g.iter()
                    .zip(out.data().iter())
                    .map(|(g, y)| g * y)
                    .collect(),
            )])
        })
    }
}

pub(crate) struct LogBackward(Tensor);

impl Backward for LogBackward {
    fn name(&self) -> &'static str {
        "LogBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let LogBackward(x) = self;
            Ok(vec![Some(
                g.iter().zip(x.data().iter()).map(|(g, x)| g / x).collect(),
            )])
        })
    }
}

pub(crate) struct AbsBackward(Tensor);

impl Backward for AbsBackward {
    fn name(&self) -> &'static str {
        "AbsBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let AbsBackward(x) = self;
            Ok(vec![Some(
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
            )])
        })
    }
}

pub(crate) struct SqrtBackward(Tensor);

impl Backward for SqrtBackward {
    fn name(&self) -> &'static str {
        "SqrtBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let SqrtBackward(_) = self;
            Ok(vec![Some(
                g.iter()
                    .zip(out.data().iter())
                    .map(|(g, y)| g / (2.0 * y))
                    .collect(),
            )])
        })
    }
}

pub(crate) struct ReluBackward(Tensor);

impl Backward for ReluBackward {
    fn name(&self) -> &'static str {
        "ReluBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda_activation_backward("relu backward", &self.0, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let ReluBackward(x) = self;
            Ok({
                let gx = par_elementwise(&x.data(), Some(g), |x, g, gx| {
                    k::relu_backward(x, g.unwrap_or_default(), gx)
                })
                .map_err(Error::kernel("relu backward"))?;
                vec![Some(gx)]
            })
        })
    }
}

pub(crate) struct Relu6Backward(Tensor);

impl Backward for Relu6Backward {
    fn name(&self) -> &'static str {
        "HardtanhBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda_activation_backward("relu6 backward", &self.0, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let gx = par_elementwise(&self.0.data(), Some(g), |x, g, gx| {
                k::relu6_backward(x, g.unwrap_or_default(), gx)
            })
            .map_err(Error::kernel("relu6 backward"))?;
            Ok(vec![Some(gx)])
        })
    }
}

pub(crate) struct SigmoidBackward(Tensor);

impl Backward for SigmoidBackward {
    fn name(&self) -> &'static str {
        "SigmoidBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda_activation_backward("sigmoid backward", out, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let SigmoidBackward(_) = self;
            Ok({
                let gx = par_elementwise(&out.data(), Some(g), |y, g, gx| {
                    k::sigmoid_backward(y, g.unwrap_or_default(), gx)
                })
                .map_err(Error::kernel("sigmoid backward"))?;
                vec![Some(gx)]
            })
        })
    }
}

pub(crate) struct TanhBackward(Tensor);

impl Backward for TanhBackward {
    fn name(&self) -> &'static str {
        "TanhBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda_activation_backward("tanh backward", out, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let TanhBackward(_) = self;
            Ok({
                let mut gx = vec![0.0; g.len()];
                k::tanh_backward(&out.data(), g, &mut gx)
                    .map_err(Error::kernel("tanh backward"))?;
                vec![Some(gx)]
            })
        })
    }
}
