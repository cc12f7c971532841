//! Softmax, log-softmax and the losses (cross-entropy, MSE), with their backward rules.

use super::cpu_backward;
use crate::autograd::Backward;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use tinycnn_kernels as k;

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
                SoftmaxBackward(x.clone()),
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
                LogSoftmaxBackward(x.clone()),
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
        #[cfg(feature = "cuda")]
        if let Some((loss, labels_cuda)) = cuda::cross_entropy(self, labels)? {
            let op = CrossEntropyBackward {
                logits: self.clone(),
                labels: labels.to_vec(),
                labels_cuda: Some(labels_cuda),
            };
            return Ok(Tensor::from_buffer_op(loss, vec![], op));
        }
        let l = k::cross_entropy_forward(rows, cols, &self.data(), labels)
            .map_err(Error::kernel("cross_entropy"))?;
        Ok(Tensor::from_op(
            vec![l],
            vec![],
            CrossEntropyBackward {
                logits: self.clone(),
                labels: labels.to_vec(),
                #[cfg(feature = "cuda")]
                labels_cuda: None,
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

pub(crate) struct SoftmaxBackward(Tensor);

impl Backward for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "SoftmaxBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let SoftmaxBackward(x) = self;
            Ok({
                let (rows, cols) = x.rows_cols("softmax backward")?;
                let mut gx = vec![0.0; g.len()];
                k::softmax_backward(rows, cols, &out.data(), g, &mut gx)
                    .map_err(Error::kernel("softmax backward"))?;
                vec![Some(gx)]
            })
        })
    }
}

pub(crate) struct LogSoftmaxBackward(Tensor);

impl Backward for LogSoftmaxBackward {
    fn name(&self) -> &'static str {
        "LogSoftmaxBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.0]
    }
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let LogSoftmaxBackward(x) = self;
            Ok({
                let (rows, cols) = x.rows_cols("log_softmax backward")?;
                let mut gx = vec![0.0; g.len()];
                k::log_softmax_backward(rows, cols, &out.data(), g, &mut gx)
                    .map_err(Error::kernel("log_softmax backward"))?;
                vec![Some(gx)]
            })
        })
    }
}

pub(crate) struct CrossEntropyBackward {
    logits: Tensor,
    labels: Vec<u32>,
    #[cfg(feature = "cuda")]
    labels_cuda: Option<crate::cuda::CudaBufferU32>,
}

impl Backward for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "NllLossBackward0"
    }
    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.logits]
    }
    fn backward(
        &self,
        _out: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = cuda::cross_entropy_backward(self, grad)? {
            return Ok(g);
        }
        cpu_backward(self, grad, needs, |g, _os, _want| {
            let CrossEntropyBackward { logits, labels, .. } = self;
            Ok({
                let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
                let mut gx = vec![0.0; logits.numel()];
                k::cross_entropy_backward(rows, cols, &logits.data(), labels, g[0], &mut gx)
                    .map_err(Error::kernel("cross_entropy backward"))?;
                vec![Some(gx)]
            })
        })
    }
}

/// Cross-entropy on a CUDA device: per-row losses and their mean stay on the device.
#[cfg(feature = "cuda")]
mod cuda {
    use super::CrossEntropyBackward;
    use crate::cuda::{err, CudaBufferU32};
    use crate::error::Result;
    use crate::ops::{cuda_tensor, on_cuda};
    use crate::storage::Buffer;
    use crate::tensor::Tensor;

    pub(super) fn cross_entropy(
        logits: &Tensor,
        labels: &[u32],
    ) -> Result<Option<(Buffer, CudaBufferU32)>> {
        let lb = logits.buffer();
        let Some(x) = on_cuda(&lb) else {
            return Ok(None);
        };
        let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
        let dev = &x.dev;
        let labels = dev.upload_u32(labels).map_err(err("cross_entropy"))?;
        let mut per_row = x.alloc_like(rows)?;
        dev.softmax_xent_forward(rows, cols, &x.buf, &labels, &mut per_row.buf)
            .map_err(err("cross_entropy"))?;
        let mut partials = x.alloc_like(tinycnn_cuda::launch::BLOCK as usize)?;
        let mut loss = x.alloc_like(1)?;
        dev.reduce_sum_into(
            &per_row.buf,
            1.0 / rows as f32,
            &mut partials.buf,
            &mut loss.buf,
        )
        .map_err(err("cross_entropy (mean)"))?;
        Ok(Some((Buffer::Cuda(loss), labels)))
    }

    pub(super) fn cross_entropy_backward(
        op: &CrossEntropyBackward,
        grad: &Tensor,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let (lb, gb) = (op.logits.buffer(), grad.buffer());
        let (Some(x), Some(_), Some(labels)) =
            (on_cuda(&lb), on_cuda(&gb), op.labels_cuda.as_ref())
        else {
            return Ok(None);
        };
        // The kernel takes the loss gradient as a scalar argument: one value read back.
        let g = grad.to_host()?[0];
        let (rows, cols) = (op.logits.shape()[0], op.logits.shape()[1]);
        let mut gx = x.alloc_like(rows * cols)?;
        x.dev
            .softmax_xent_backward(rows, cols, &x.buf, labels, g, &mut gx.buf)
            .map_err(err("cross_entropy backward"))?;
        Ok(Some(vec![Some(cuda_tensor(gx, op.logits.shape()))]))
    }
}
