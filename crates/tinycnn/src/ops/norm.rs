//! Batch normalization (kernels `batch_norm_stats` / `_forward` / `_backward`) and dropout.
//!
//! On a CUDA device batch norm runs the device kernels of the same names (statistics,
//! running-statistics update, forward and backward stay on the device); dropout draws its
//! mask on the host from the global generator (so a seed gives the same mask on every
//! device), uploads it once, and multiplies on the device.

use super::{cpu_backward, par_batch};
use crate::autograd::Backward;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use tinycnn_kernels as k;

impl Tensor {
    /// Batch normalization over dim 1 of `[N, C, ...]` (`F.batch_norm(x, running_mean,
    /// running_var, weight, bias, training, momentum, eps)`).
    ///
    /// With `training` (or without running statistics) the input is normalized with the
    /// batch's mean and biased variance over every dim but 1; then, when running statistics
    /// are given, they are updated in place as PyTorch does:
    /// `running = (1 - momentum) * running + momentum * batch_stat`, with the *unbiased*
    /// variance. Without `training` the running statistics normalize. `weight` and `bias`
    /// (`[C]`) scale and shift the result.
    ///
    /// ```
    /// use tinycnn::Tensor;
    /// let x = Tensor::from_vec(vec![1.0, 3.0], &[2, 1]).unwrap();
    /// let y = x.batch_norm(None, None, None, None, true, 0.1, 0.0).unwrap();
    /// assert_eq!(y.to_vec(), vec![-1.0, 1.0]);
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<Tensor> {
        const OP: &str = "batch_norm";
        let rank = self.rank();
        if rank < 2 {
            return Err(Error::bad_shape(OP, self.shape(), "expects [N, C, ...]"));
        }
        let channels = self.shape()[1];
        for (what, t) in [
            ("running_mean", running_mean),
            ("running_var", running_var),
            ("weight", weight),
            ("bias", bias),
        ] {
            if let Some(t) = t {
                if t.shape() != [channels] {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "{what} has shape {:?}, expected [{channels}] (the input's channels)",
                            t.shape()
                        ),
                    ));
                }
            }
        }
        if running_mean.is_some() != running_var.is_some() {
            return Err(Error::invalid(
                OP,
                "running_mean and running_var must be given together",
            ));
        }
        let use_batch_stats = training || running_mean.is_none();
        let spatial = self.shape()[2..].iter().product::<usize>();
        let shape = k::BatchNormShape::new(self.shape()[0], channels, spatial);
        let count = shape.count();
        if use_batch_stats && count <= 1 {
            return Err(Error::bad_shape(
                OP,
                self.shape(),
                format!("expected more than 1 value per channel when training, got {count}"),
            ));
        }
        if count == 0 || channels == 0 {
            return Err(Error::bad_shape(OP, self.shape(), "has no elements"));
        }
        #[cfg(feature = "cuda")]
        if let Some(r) = cuda::forward(
            self,
            &shape,
            [running_mean, running_var, weight, bias],
            training,
            use_batch_stats,
            momentum,
            eps,
        )? {
            let (y, stats) = r;
            let mut inputs = vec![self.clone()];
            inputs.extend(weight.cloned());
            inputs.extend(bias.cloned());
            return Ok(Tensor::from_buffer_op(
                y,
                self.shape().to_vec(),
                BatchNormBackward {
                    inputs,
                    has_weight: weight.is_some(),
                    has_bias: bias.is_some(),
                    shape,
                    mean: Vec::new(),
                    var: Vec::new(),
                    eps,
                    batch_stats: use_batch_stats,
                    device_stats: Some(stats),
                },
            ));
        }
        let x = self.data();
        let (mean, var) = if use_batch_stats {
            let (mut mean, mut var) = (vec![0.0; channels], vec![0.0; channels]);
            k::batch_norm_stats(&shape, &x, &mut mean, &mut var).map_err(Error::kernel(OP))?;
            (mean, var)
        } else {
            let rm = running_mean.expect("checked above").data().to_vec();
            (rm, running_var.expect("checked above").data().to_vec())
        };
        let (w, b) = (weight.map(|t| t.data()), bias.map(|t| t.data()));
        let stats = k::BatchNormStats {
            mean: &mean,
            var: &var,
            eps,
        };
        let per_image = channels * spatial;
        let y = par_batch(shape.batch, &x, per_image, per_image, |nb, xc, yc| {
            k::batch_norm_forward(
                &shape.with_batch(nb),
                xc,
                &stats,
                w.as_deref(),
                b.as_deref(),
                yc,
            )
        })
        .map_err(Error::kernel(OP))?;
        if let (true, Some(rm), Some(rv)) = (training, running_mean, running_var) {
            // PyTorch's update: the batch mean, and the unbiased batch variance.
            let unbias = count as f32 / (count - 1) as f32;
            let blend = |old: &Tensor, new: &[f32], scale: f32| -> Result<()> {
                let old_v = old.data();
                let v: Vec<f32> = old_v
                    .iter()
                    .zip(new)
                    .map(|(&o, &n)| (1.0 - momentum) * o + momentum * (n * scale))
                    .collect();
                crate::no_grad(|| old.copy_(&Tensor::raw(v, vec![channels])))
            };
            blend(rm, &mean, 1.0)?;
            blend(rv, &var, unbias)?;
        }
        let mut inputs = vec![self.clone()];
        inputs.extend(weight.cloned());
        inputs.extend(bias.cloned());
        Ok(Tensor::from_op(
            y,
            self.shape().to_vec(),
            BatchNormBackward {
                inputs,
                has_weight: weight.is_some(),
                has_bias: bias.is_some(),
                shape,
                mean,
                var,
                eps,
                batch_stats: use_batch_stats,
                #[cfg(feature = "cuda")]
                device_stats: None,
            },
        ))
    }

    /// Dropout (`F.dropout(x, p, training)`): in training each element is zeroed with
    /// probability `p` (drawn from the calling thread's default generator,
    /// [`crate::manual_seed`]) and the kept ones are scaled by `1 / (1 - p)`; otherwise the
    /// input is returned. `p = 1` gives `x * 0`, as PyTorch; `p` outside `[0, 1]` is an error.
    pub fn dropout(&self, p: f32, training: bool) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("probability has to be between 0 and 1, but got {p}"),
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        if p == 1.0 {
            return Ok(self.mul_scalar(0.0));
        }
        let scale = 1.0 / (1.0 - p);
        let mask: Vec<f32> = crate::with_global_rng(|rng| {
            (0..self.numel())
                .map(|_| if rng.uniform() < p { 0.0 } else { scale })
                .collect()
        });
        // One upload of the mask; on a CUDA device the product (and its gradient, the
        // same product with the output's gradient) runs there.
        let mask = Tensor::from_vec(mask, self.shape())?.to(&self.device())?;
        self.mul(&mask)
    }
}

/// The gradients of [`Tensor::batch_norm`] for the input, the weight and the bias (those
/// given), from the statistics the forward normalized with.
pub(crate) struct BatchNormBackward {
    /// `[x, weight?, bias?]`.
    inputs: Vec<Tensor>,
    has_weight: bool,
    has_bias: bool,
    shape: k::BatchNormShape,
    mean: Vec<f32>,
    var: Vec<f32>,
    eps: f32,
    /// The statistics were the batch's own, so the gradient flows through them too.
    batch_stats: bool,
    /// The statistics on the device (`mean` and `var` are then empty), when the forward
    /// ran there.
    #[cfg(feature = "cuda")]
    device_stats: Option<cuda::DeviceStats>,
}

impl Backward for BatchNormBackward {
    fn name(&self) -> &'static str {
        "NativeBatchNormBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        self.inputs.iter().collect()
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(stats) = &self.device_stats {
            return cuda::backward(self, stats, grad, needs);
        }
        cpu_backward(self, grad, needs, |g, _os, want| {
            let c = self.shape.channels;
            let weight_at = self.has_weight.then_some(1);
            let bias_at = self.has_bias.then_some(1 + usize::from(self.has_weight));
            let x = self.inputs[0].data();
            let w = weight_at.map(|i| self.inputs[i].data());
            let mut gx = want(0).then(|| vec![0.0; x.len()]);
            let mut gw = weight_at.filter(|&i| want(i)).map(|_| vec![0.0; c]);
            let mut gb = bias_at.filter(|&i| want(i)).map(|_| vec![0.0; c]);
            let stats = k::BatchNormStats {
                mean: &self.mean,
                var: &self.var,
                eps: self.eps,
            };
            let grads = k::BatchNormGrads {
                x: gx.as_deref_mut(),
                weight: gw.as_deref_mut(),
                bias: gb.as_deref_mut(),
            };
            k::batch_norm_backward(
                &self.shape,
                &x,
                g,
                &stats,
                w.as_deref(),
                self.batch_stats,
                grads,
            )
            .map_err(Error::kernel("batch_norm backward"))?;
            let mut out = vec![gx];
            if self.has_weight {
                out.push(gw);
            }
            if self.has_bias {
                out.push(gb);
            }
            Ok(out)
        })
    }
}

/// Batch norm on a CUDA device.
#[cfg(feature = "cuda")]
mod cuda {
    use super::BatchNormBackward;
    use crate::cuda::{err, CudaStorage};
    use crate::error::{Error, Result};
    use crate::ops::{cuda_tensor, on_cuda};
    use crate::storage::Buffer;
    use crate::tensor::Tensor;
    use std::sync::Arc;
    use tinycnn_kernels::BatchNormShape;

    /// The mean and variance the forward normalized with, on the device: the batch's own,
    /// or the running statistics' buffers of that moment (buffers are never written in
    /// place, so a later update of the running statistics does not change these).
    pub(crate) struct DeviceStats {
        mean: Arc<Buffer>,
        var: Arc<Buffer>,
    }

    fn cuda_of(b: &Arc<Buffer>) -> &CudaStorage {
        on_cuda(b).expect("device statistics are CUDA buffers")
    }

    /// The forward on the device when `x` and every given tensor are there; `None`
    /// otherwise (the host rule runs). `[running_mean, running_var, weight, bias]`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        x: &Tensor,
        s: &BatchNormShape,
        tensors: [Option<&Tensor>; 4],
        training: bool,
        use_batch_stats: bool,
        momentum: f32,
        eps: f32,
    ) -> Result<Option<(Buffer, DeviceStats)>> {
        const OP: &str = "batch_norm";
        let xb = x.buffer();
        let Some(xc) = on_cuda(&xb) else {
            return Ok(None);
        };
        let bufs = tensors.map(|t| t.map(Tensor::buffer));
        let same_device = |b: &Option<Arc<Buffer>>| {
            b.as_ref()
                .is_none_or(|b| on_cuda(b).is_some_and(|c| c.ordinal == xc.ordinal))
        };
        if !bufs.iter().all(same_device) {
            return Ok(None);
        }
        let [rm, rv, w, b] = &bufs;
        let (weight, bias) = (
            w.as_ref().map(|b| &cuda_of(b).buf),
            b.as_ref().map(|b| &cuda_of(b).buf),
        );
        let stats = if use_batch_stats {
            let (mut mean, mut var) = (xc.alloc_like(s.channels)?, xc.alloc_like(s.channels)?);
            xc.dev
                .batch_norm_stats(s, &xc.buf, &mut mean.buf, &mut var.buf)
                .map_err(err(OP))?;
            DeviceStats {
                mean: Arc::new(Buffer::Cuda(mean)),
                var: Arc::new(Buffer::Cuda(var)),
            }
        } else {
            let (Some(rm), Some(rv)) = (rm, rv) else {
                unreachable!("statistics come from the batch without running ones")
            };
            DeviceStats {
                mean: Arc::clone(rm),
                var: Arc::clone(rv),
            }
        };
        let (mean, var) = (cuda_of(&stats.mean), cuda_of(&stats.var));
        let mut y = xc.alloc_like(xc.buf.len())?;
        xc.dev
            .batch_norm_forward(
                s, &xc.buf, &mean.buf, &var.buf, eps, weight, bias, &mut y.buf,
            )
            .map_err(err(OP))?;
        if let (true, [Some(rm_t), Some(rv_t), ..]) = (training, tensors) {
            // PyTorch's update, `running = (1 - momentum) * running + momentum * batch_stat`
            // with the unbiased batch variance, into new buffers (as optimizers do).
            let unbias = s.count() as f32 / (s.count() - 1) as f32;
            for (t, new, scale) in [(rm_t, mean, 1.0), (rv_t, var, unbias)] {
                let old = t.buffer();
                let old = cuda_of(&old);
                let mut blended = old.alloc_like(old.buf.len())?;
                old.dev
                    .copy_device(&old.buf, &mut blended.buf)
                    .map_err(err(OP))?;
                old.dev
                    .axpby(momentum * scale, &new.buf, 1.0 - momentum, &mut blended.buf)
                    .map_err(err(OP))?;
                t.set_buffer(Buffer::Cuda(blended));
            }
        }
        Ok(Some((Buffer::Cuda(y), stats)))
    }

    /// The backward on the device: the gradients asked for, of the input, the weight and
    /// the bias.
    pub(super) fn backward(
        op: &BatchNormBackward,
        stats: &DeviceStats,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "batch_norm backward";
        let want = |i: usize| needs.get(i).copied().unwrap_or(false);
        let weight_at = op.has_weight.then_some(1);
        let bias_at = op.has_bias.then_some(1 + usize::from(op.has_weight));
        let (xb, gb) = (
            op.inputs[0].buffer(),
            grad.to(&op.inputs[0].device())?.buffer(),
        );
        let (Some(xc), Some(g)) = (on_cuda(&xb), on_cuda(&gb)) else {
            return Err(Error::invalid(OP, "the input left its CUDA device"));
        };
        let wb = weight_at.map(|i| op.inputs[i].buffer());
        let weight = match &wb {
            Some(b) => Some(
                &on_cuda(b)
                    .ok_or_else(|| Error::invalid(OP, "the weight left its CUDA device"))?
                    .buf,
            ),
            None => None,
        };
        let c = op.shape.channels;
        let mut gx = want(0).then(|| xc.alloc_like(xc.buf.len())).transpose()?;
        let mut gw = weight_at
            .filter(|&i| want(i))
            .map(|_| xc.alloc_like(c))
            .transpose()?;
        let mut gbias = bias_at
            .filter(|&i| want(i))
            .map(|_| xc.alloc_like(c))
            .transpose()?;
        let (mean, var) = (cuda_of(&stats.mean), cuda_of(&stats.var));
        xc.dev
            .batch_norm_backward(
                &op.shape,
                &xc.buf,
                &g.buf,
                &mean.buf,
                &var.buf,
                op.eps,
                weight,
                op.batch_stats,
                gx.as_mut().map(|t| &mut t.buf),
                gw.as_mut().map(|t| &mut t.buf),
                gbias.as_mut().map(|t| &mut t.buf),
            )
            .map_err(err(OP))?;
        let mut out = vec![gx.map(|t| cuda_tensor(t, op.inputs[0].shape()))];
        if op.has_weight {
            out.push(gw.map(|t| cuda_tensor(t, &[c])));
        }
        if op.has_bias {
            out.push(gbias.map(|t| cuda_tensor(t, &[c])));
        }
        Ok(out)
    }
}
