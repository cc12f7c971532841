//! Max, average and adaptive average pooling on the kernel crate, batch-parallel, with
//! their backward rules.

use super::{cpu_backward, par_batch};
use crate::autograd::Backward;
use crate::error::{Error, Result};
use crate::parallel;
use crate::tensor::{numel_of, Tensor};
use rayon::prelude::*;
use tinycnn_kernels as k;
use tinycnn_kernels::{Pool2dParams, Pool2dShape};

impl Tensor {
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
        #[cfg(feature = "cuda")]
        if let Some((y, argmax)) = cuda::max_forward(self, &shape, &out_shape)? {
            let op = MaxPool2dBackward {
                x: self.clone(),
                shape,
                argmax: Vec::new(),
                argmax_cuda: Some(argmax),
            };
            return Ok(Tensor::from_buffer_op(y, out_shape, op));
        }
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
            MaxPool2dBackward {
                x: self.clone(),
                shape,
                argmax,
                #[cfg(feature = "cuda")]
                argmax_cuda: None,
            },
        ))
    }

    /// Average pooling of `[N, C, H, W]` (or `[C, H, W]`); zero padding.
    pub fn avg_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        if self.rank() == 3 {
            return self.unsqueeze(0)?.avg_pool2d(params)?.squeeze(0);
        }
        let (shape, out_shape) = self.pool_shape("avg_pool2d", params)?;
        #[cfg(feature = "cuda")]
        if let Some(y) = cuda::avg_forward(self, &shape, &out_shape)? {
            let op = AvgPool2dBackward {
                x: self.clone(),
                shape,
            };
            return Ok(Tensor::from_buffer_op(y, out_shape, op));
        }
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
            AvgPool2dBackward {
                x: self.clone(),
                shape,
            },
        ))
    }
}

impl Tensor {
    /// Average pooling of `[N, C, H, W]` (or `[C, H, W]`) to an `out` = `(oh, ow)` grid
    /// (`F.adaptive_avg_pool2d`; kernel `adaptive_avg_pool2d_forward`): output cell `(i, j)`
    /// averages input rows `floor(i * H / oh) .. ceil((i + 1) * H / oh)` and the columns
    /// likewise, so windows overlap when the sizes do not divide. `(1, 1)` is global average
    /// pooling. On a CUDA device the kernels of the same names run there.
    ///
    /// ```
    /// let x = tinycnn::Tensor::from_vec((0..9).map(|v| v as f32).collect(), &[1, 1, 3, 3]).unwrap();
    /// assert_eq!(x.adaptive_avg_pool2d((2, 2)).unwrap().to_vec(), vec![2.0, 3.0, 5.0, 6.0]);
    /// assert_eq!(x.adaptive_avg_pool2d((1, 1)).unwrap().to_vec(), vec![4.0]);
    /// ```
    pub fn adaptive_avg_pool2d(&self, out: (usize, usize)) -> Result<Tensor> {
        const OP: &str = "adaptive_avg_pool2d";
        if self.rank() == 3 {
            return self.unsqueeze(0)?.adaptive_avg_pool2d(out)?.squeeze(0);
        }
        if self.rank() != 4 {
            return Err(Error::bad_shape(OP, self.shape(), "expects [N, C, H, W]"));
        }
        let d = self.shape();
        let shape = k::AdaptivePool2dShape::new(d[0], d[1], (d[2], d[3]), out);
        shape.validate().map_err(Error::kernel(OP))?;
        let out_shape = vec![d[0], d[1], out.0, out.1];
        #[cfg(feature = "cuda")]
        if let Some(y) = cuda::adaptive_forward(self, &shape, &out_shape)? {
            let op = AdaptiveAvgPool2dBackward {
                x: self.clone(),
                shape,
            };
            return Ok(Tensor::from_buffer_op(y, out_shape, op));
        }
        let y = par_batch(
            shape.batch,
            &self.data(),
            d[1] * d[2] * d[3],
            d[1] * out.0 * out.1,
            |nb, xc, yc| k::adaptive_avg_pool2d_forward(&shape.with_batch(nb), xc, yc),
        )
        .map_err(Error::kernel(OP))?;
        Ok(Tensor::from_op(
            y,
            out_shape,
            AdaptiveAvgPool2dBackward {
                x: self.clone(),
                shape,
            },
        ))
    }
}

pub(crate) struct AdaptiveAvgPool2dBackward {
    x: Tensor,
    shape: k::AdaptivePool2dShape,
}

impl Backward for AdaptiveAvgPool2dBackward {
    fn name(&self) -> &'static str {
        "AdaptiveAvgPool2DBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda::adaptive_backward(self, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let s = &self.shape;
            let per_in = s.channels * s.in_h * s.in_w;
            let per_out = s.channels * s.out_h * s.out_w;
            let gx = par_batch(s.batch, g, per_out, per_in, |nb, gc, xc| {
                k::adaptive_avg_pool2d_backward(&s.with_batch(nb), gc, xc)
            })
            .map_err(Error::kernel("adaptive_avg_pool2d backward"))?;
            Ok(vec![Some(gx)])
        })
    }
}

pub(crate) struct MaxPool2dBackward {
    x: Tensor,
    shape: Pool2dShape,
    argmax: Vec<u32>,
    /// The indices on the device, when the forward ran on CUDA.
    #[cfg(feature = "cuda")]
    argmax_cuda: Option<crate::cuda::CudaBufferU32>,
}

impl Backward for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "MaxPool2DWithIndicesBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda::max_backward(self, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let MaxPool2dBackward {
                x, shape, argmax, ..
            } = self;
            Ok({
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
            })
        })
    }
}

pub(crate) struct AvgPool2dBackward {
    x: Tensor,
    shape: Pool2dShape,
}

impl Backward for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "AvgPool2DBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda::avg_backward(self, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let AvgPool2dBackward { shape, .. } = self;
            Ok({
                let per_in = shape.channels * shape.in_h * shape.in_w;
                let per_out = g.len() / shape.batch.max(1);
                let gx = par_batch(shape.batch, g, per_out, per_in, |nb, gc, xc| {
                    k::avg_pool2d_backward(&shape.with_batch(nb), gc, xc)
                })
                .map_err(Error::kernel("avg_pool2d backward"))?;
                vec![Some(gx)]
            })
        })
    }
}

/// Pooling on a CUDA device (the indices of max-pooling stay there for the backward).
#[cfg(feature = "cuda")]
mod cuda {
    use super::{AdaptiveAvgPool2dBackward, AvgPool2dBackward, MaxPool2dBackward};
    use crate::cuda::{err, CudaBufferU32};
    use crate::error::Result;
    use crate::ops::{cuda_tensor, on_cuda};
    use crate::storage::Buffer;
    use crate::tensor::Tensor;
    use tinycnn_kernels::{AdaptivePool2dShape, Pool2dShape};

    pub(super) fn max_forward(
        x: &Tensor,
        s: &Pool2dShape,
        out_shape: &[usize],
    ) -> Result<Option<(Buffer, CudaBufferU32)>> {
        let xb = x.buffer();
        let Some(xc) = on_cuda(&xb) else {
            return Ok(None);
        };
        let n = out_shape.iter().product();
        let mut y = xc.alloc_like(n)?;
        let mut idx = xc.dev.alloc_u32(n).map_err(err("max_pool2d"))?;
        xc.dev
            .max_pool2d_forward(s, &xc.buf, &mut y.buf, &mut idx)
            .map_err(err("max_pool2d"))?;
        Ok(Some((Buffer::Cuda(y), idx)))
    }

    pub(super) fn avg_forward(
        x: &Tensor,
        s: &Pool2dShape,
        out_shape: &[usize],
    ) -> Result<Option<Buffer>> {
        let xb = x.buffer();
        let Some(xc) = on_cuda(&xb) else {
            return Ok(None);
        };
        let mut y = xc.alloc_like(out_shape.iter().product())?;
        xc.dev
            .avg_pool2d_forward(s, &xc.buf, &mut y.buf)
            .map_err(err("avg_pool2d"))?;
        Ok(Some(Buffer::Cuda(y)))
    }

    pub(super) fn max_backward(
        op: &MaxPool2dBackward,
        grad: &Tensor,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let gb = grad.buffer();
        let (Some(g), Some(idx)) = (on_cuda(&gb), op.argmax_cuda.as_ref()) else {
            return Ok(None);
        };
        let mut gx = g.alloc_like(op.x.numel())?;
        g.dev
            .max_pool2d_backward(&op.shape, &g.buf, idx, &mut gx.buf)
            .map_err(err("max_pool2d backward"))?;
        Ok(Some(vec![Some(cuda_tensor(gx, op.x.shape()))]))
    }

    pub(super) fn avg_backward(
        op: &AvgPool2dBackward,
        grad: &Tensor,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let gb = grad.buffer();
        let Some(g) = on_cuda(&gb) else {
            return Ok(None);
        };
        let mut gx = g.alloc_like(op.x.numel())?;
        g.dev
            .avg_pool2d_backward(&op.shape, &g.buf, &mut gx.buf)
            .map_err(err("avg_pool2d backward"))?;
        Ok(Some(vec![Some(cuda_tensor(gx, op.x.shape()))]))
    }

    pub(super) fn adaptive_forward(
        x: &Tensor,
        s: &AdaptivePool2dShape,
        out_shape: &[usize],
    ) -> Result<Option<Buffer>> {
        let xb = x.buffer();
        let Some(xc) = on_cuda(&xb) else {
            return Ok(None);
        };
        let mut y = xc.alloc_like(out_shape.iter().product())?;
        xc.dev
            .adaptive_avg_pool2d_forward(s, &xc.buf, &mut y.buf)
            .map_err(err("adaptive_avg_pool2d"))?;
        Ok(Some(Buffer::Cuda(y)))
    }

    pub(super) fn adaptive_backward(
        op: &AdaptiveAvgPool2dBackward,
        grad: &Tensor,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let gb = grad.buffer();
        let Some(g) = on_cuda(&gb) else {
            return Ok(None);
        };
        let mut gx = g.alloc_like(op.x.numel())?;
        g.dev
            .adaptive_avg_pool2d_backward(&op.shape, &g.buf, &mut gx.buf)
            .map_err(err("adaptive_avg_pool2d backward"))?;
        Ok(Some(vec![Some(cuda_tensor(gx, op.x.shape()))]))
    }
}
