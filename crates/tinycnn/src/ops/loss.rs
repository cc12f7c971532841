//! Softmax, log-softmax and the losses (cross-entropy, MSE), with their backward rules.

use super::cpu_backward;
use crate::autograd::Backward;
use crate::error::{Error, Result};
use crate::labels::Labels;
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
        self.cross_entropy_labels(&Labels::new(labels))
    }

    /// [`Tensor::cross_entropy`] with labels that may live on the logits' device (then
    /// nothing is copied between host and device).
    pub fn cross_entropy_labels(&self, labels: &Labels) -> Result<Tensor> {
        let (rows, cols) = self.logits_shape("cross_entropy", labels)?;
        labels.check("cross_entropy", cols)?;
        #[cfg(feature = "cuda")]
        if let Some((loss, on_device)) = cuda::cross_entropy(self, labels)? {
            let op = CrossEntropyBackward {
                logits: self.clone(),
                labels: on_device,
            };
            return Ok(Tensor::from_buffer_op(loss, vec![], op));
        }
        let host = labels.to_vec()?;
        let l = k::cross_entropy_forward(rows, cols, &self.data(), &host)
            .map_err(Error::kernel("cross_entropy"))?;
        Ok(Tensor::from_op(
            vec![l],
            vec![],
            CrossEntropyBackward {
                logits: self.clone(),
                labels: Labels::new(&host),
            },
        ))
    }

    /// How many rows' arg-max is their label, as a 0-d tensor on the logits' device (so a
    /// training loop can add it up there and read it once per epoch). NaN counts as the
    /// maximum, as in `torch.argmax`.
    pub fn count_correct(&self, labels: &Labels) -> Result<Tensor> {
        let (rows, cols) = self.logits_shape("count_correct", labels)?;
        #[cfg(feature = "cuda")]
        if let Some(n) = cuda::count_correct(self, labels)? {
            return Ok(n);
        }
        let host = labels.to_vec()?;
        let mut pred = vec![0u32; rows];
        if rows > 0 && cols > 0 {
            k::argmax_rows(rows, cols, &self.data(), &mut pred)
                .map_err(Error::kernel("count_correct"))?;
        }
        let correct = pred.iter().zip(&host).filter(|(p, l)| p == l).count();
        Tensor::scalar(correct as f32).to(&self.device())
    }

    fn logits_shape(&self, op: &'static str, labels: &Labels) -> Result<(usize, usize)> {
        if self.rank() != 2 {
            return Err(Error::bad_shape(
                op,
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
        if labels.device() != self.device() && labels.device() != crate::Device::Cpu {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.device(),
                rhs: labels.device(),
            });
        }
        Ok((rows, cols))
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
    labels: Labels,
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
            let CrossEntropyBackward { logits, labels } = self;
            let labels = &labels.to_vec()?;
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

/// Cross-entropy and accuracy on a CUDA device: per-row values and their sums stay there.
#[cfg(feature = "cuda")]
mod cuda {
    use super::CrossEntropyBackward;
    use crate::cuda::{err, CudaStorage};
    use crate::error::Result;
    use crate::labels::{LabelData, Labels};
    use crate::ops::{cuda_tensor, on_cuda};
    use crate::storage::Buffer;
    use crate::tensor::Tensor;

    /// The labels on the logits' device (uploaded if they are on the host).
    fn on_device(x: &CudaStorage, labels: &Labels) -> Result<Labels> {
        match &labels.0 {
            LabelData::Cuda { .. } => Ok(labels.clone()),
            LabelData::Cpu(_) => labels.to(&x.device()),
        }
    }

    fn device_buf(labels: &Labels) -> Option<&crate::cuda::CudaBufferU32> {
        match &labels.0 {
            LabelData::Cuda { buf, .. } => Some(&**buf),
            LabelData::Cpu(_) => None,
        }
    }

    /// `scale * sum(v)` into a one-element buffer on the same device.
    fn sum_into(v: &CudaStorage, scale: f32, op: &'static str) -> Result<CudaStorage> {
        let mut partials = v.alloc_like(tinycnn_cuda::launch::BLOCK as usize)?;
        let mut out = v.alloc_like(1)?;
        v.dev
            .reduce_sum_into(&v.buf, scale, &mut partials.buf, &mut out.buf)
            .map_err(err(op))?;
        Ok(out)
    }

    pub(super) fn cross_entropy(
        logits: &Tensor,
        labels: &Labels,
    ) -> Result<Option<(Buffer, Labels)>> {
        let lb = logits.buffer();
        let Some(x) = on_cuda(&lb) else {
            return Ok(None);
        };
        let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
        let labels = on_device(x, labels)?;
        let lbuf = device_buf(&labels).expect("on the device");
        let mut per_row = x.alloc_like(rows)?;
        x.dev
            .softmax_xent_forward(rows, cols, &x.buf, lbuf, &mut per_row.buf)
            .map_err(err("cross_entropy"))?;
        let loss = sum_into(&per_row, 1.0 / rows.max(1) as f32, "cross_entropy (mean)")?;
        Ok(Some((Buffer::Cuda(loss), labels)))
    }

    pub(super) fn count_correct(logits: &Tensor, labels: &Labels) -> Result<Option<Tensor>> {
        let lb = logits.buffer();
        let Some(x) = on_cuda(&lb) else {
            return Ok(None);
        };
        let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
        let labels = on_device(x, labels)?;
        let lbuf = device_buf(&labels).expect("on the device");
        let mut per_row = x.alloc_like(rows)?;
        x.dev
            .correct_rows(rows, cols, &x.buf, lbuf, &mut per_row.buf)
            .map_err(err("count_correct"))?;
        let n = sum_into(&per_row, 1.0, "count_correct")?;
        Ok(Some(cuda_tensor(n, &[])))
    }

    pub(super) fn cross_entropy_backward(
        op: &CrossEntropyBackward,
        grad: &Tensor,
    ) -> Result<Option<Vec<Option<Tensor>>>> {
        let (lb, gb) = (op.logits.buffer(), grad.buffer());
        let (Some(x), Some(_), Some(labels)) = (on_cuda(&lb), on_cuda(&gb), device_buf(&op.labels))
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
