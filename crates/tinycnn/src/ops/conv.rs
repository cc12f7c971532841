//! 2-D convolution (and d2l's `corr2d`) on the kernel crate, batch-parallel, with its backward
//! rule: input and weight gradients per batch chunk, bias over the batch.

use super::{cpu_backward, par_batch};
use crate::autograd::Backward;
use crate::device::same_device;
use crate::error::{Error, Result};
use crate::parallel;
use crate::tensor::Tensor;
use rayon::prelude::*;
use tinycnn_kernels as k;
use tinycnn_kernels::{Conv2dParams, Conv2dShape};

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
        let mut inputs = vec![self, w];
        inputs.extend(b);
        same_device("conv2d", &inputs)?;
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
        #[cfg(feature = "cuda")]
        if let Some(y) = cuda::forward(self, w, b, &shape, &out_shape)? {
            let op = Conv2dBackward {
                x: self.clone(),
                w: w.clone(),
                b: b.cloned(),
                shape,
            };
            return Ok(Tensor::from_buffer_op(y, out_shape, op));
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
            Conv2dBackward {
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
}

pub(crate) struct Conv2dBackward {
    x: Tensor,
    w: Tensor,
    b: Option<Tensor>,
    shape: Conv2dShape,
}

impl Backward for Conv2dBackward {
    fn name(&self) -> &'static str {
        "ConvolutionBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        {
            let mut v = vec![&self.x, &self.w];
            v.extend(self.b.iter());
            v
        }
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda::backward(self, grad, needs)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let Conv2dBackward { x, w, b, shape } = self;
            conv2d_backward(x, w, b.is_some(), shape, g, needs)
        })
    }
}

type Grads = Vec<Option<Vec<f32>>>;

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

/// The convolution on a CUDA device: `tinycnn-cuda`'s direct kernels, forward and backward.
#[cfg(feature = "cuda")]
mod cuda {
    use super::Conv2dBackward;
    use crate::cuda::err;
    use crate::error::Result;
    use crate::ops::{cuda_tensor, on_cuda};
    use crate::storage::Buffer;
    use crate::tensor::Tensor;
    use tinycnn_kernels::Conv2dShape;

    pub(super) fn forward(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        shape: &Conv2dShape,
        out_shape: &[usize],
    ) -> Result<Option<Buffer>> {
        let (xb, wb) = (x.buffer(), w.buffer());
        let bb = b.map(|b| b.buffer());
        let (Some(xc), Some(wc)) = (on_cuda(&xb), on_cuda(&wb)) else {
            return Ok(None);
        };
        let bias = match &bb {
            Some(bb) => match on_cuda(bb) {
                Some(c) => Some(&c.buf),
                None => return Ok(None),
            },
            None => None,
        };
        let mut y = xc.alloc_like(out_shape.iter().product())?;
        xc.dev
            .conv2d_forward(shape, &xc.buf, &wc.buf, bias, &mut y.buf)
            .map_err(err("conv2d"))?;
        Ok(Some(Buffer::Cuda(y)))
    }

    pub(super) fn backward(
        op: &Conv2dBackward,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let (xb, wb, gb) = (op.x.buffer(), op.w.buffer(), grad.buffer());
        let (Some(x), Some(w), Some(g)) = (on_cuda(&xb), on_cuda(&wb), on_cuda(&gb)) else {
            return Ok(None);
        };
        let s = &op.shape;
        let mut grads = vec![None, None];
        if needs[0] {
            let mut gx = x.alloc_like(x.buf.len())?;
            x.dev
                .conv2d_backward_input(s, &g.buf, &w.buf, &mut gx.buf)
                .map_err(err("conv2d backward (input)"))?;
            grads[0] = Some(cuda_tensor(gx, op.x.shape()));
        }
        if needs[1] {
            let mut gw = w.alloc_like(w.buf.len())?;
            x.dev
                .conv2d_backward_weight(s, &x.buf, &g.buf, &mut gw.buf, None)
                .map_err(err("conv2d backward (weight)"))?;
            grads[1] = Some(cuda_tensor(gw, op.w.shape()));
        }
        if let Some(b) = &op.b {
            let mut gbias = None;
            if needs.get(2).copied().unwrap_or(false) {
                let mut gbuf = x.alloc_like(b.numel())?;
                x.dev
                    .conv2d_backward_bias(s, &g.buf, &mut gbuf.buf)
                    .map_err(err("conv2d backward (bias)"))?;
                gbias = Some(cuda_tensor(gbuf, b.shape()));
            }
            grads.push(gbias);
        }
        Ok(Some(grads))
    }
}
