//! Batch normalization, adaptive average pooling and dropout.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The dims a batch norm reduces over: every dim but the channels (dim 1).
fn stat_dims(rank: usize) -> Vec<isize> {
    std::iter::once(0)
        .chain(2..rank as isize)
        .collect::<Vec<isize>>()
}

/// `[C]` viewed as `[1, C, 1, ...]` to broadcast against an input of `rank` dims.
fn per_channel(t: &Tensor, rank: usize) -> Result<Tensor> {
    let mut shape = vec![1usize; rank];
    shape[1] = t.numel();
    t.reshape(shape)
}

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
        let count = self.numel() / channels.max(1);
        if use_batch_stats && count <= 1 {
            return Err(Error::bad_shape(
                OP,
                self.shape(),
                format!("expected more than 1 value per channel when training, got {count}"),
            ));
        }
        let normalized = if use_batch_stats {
            let dims = stat_dims(rank);
            let mean = self.mean(&dims, true)?;
            let centered = self.sub(&mean)?;
            let var = centered.mul(&centered)?.mean(&dims, true)?;
            if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                if training {
                    crate::no_grad(|| -> Result<()> {
                        let batch_mean = mean.detach().reshape([channels])?;
                        let unbiased = var
                            .detach()
                            .reshape([channels])?
                            .mul_scalar(count as f32 / (count - 1) as f32);
                        rm.copy_(
                            &rm.mul_scalar(1.0 - momentum)
                                .add(&batch_mean.mul_scalar(momentum))?,
                        )?;
                        rv.copy_(
                            &rv.mul_scalar(1.0 - momentum)
                                .add(&unbiased.mul_scalar(momentum))?,
                        )
                    })?;
                }
            }
            centered.div(&var.add_scalar(eps).sqrt())?
        } else {
            let (rm, rv) = (
                running_mean.expect("checked above"),
                running_var.expect("checked above"),
            );
            self.sub(&per_channel(rm, rank)?)?
                .div(&per_channel(rv, rank)?.add_scalar(eps).sqrt())?
        };
        let scaled = match weight {
            Some(w) => normalized.mul(&per_channel(w, rank)?)?,
            None => normalized,
        };
        match bias {
            Some(b) => scaled.add(&per_channel(b, rank)?),
            None => Ok(scaled),
        }
    }

    /// Average pooling of `[N, C, H, W]` (or `[C, H, W]`) to an `out` = `(oh, ow)` grid
    /// (`F.adaptive_avg_pool2d`): output cell `(i, j)` averages input rows
    /// `floor(i * H / oh) .. ceil((i + 1) * H / oh)` and the columns likewise, so windows
    /// may overlap when the sizes do not divide. `(1, 1)` is global average pooling.
    pub fn adaptive_avg_pool2d(&self, out: (usize, usize)) -> Result<Tensor> {
        const OP: &str = "adaptive_avg_pool2d";
        if self.rank() == 3 {
            return self.unsqueeze(0)?.adaptive_avg_pool2d(out)?.squeeze(0);
        }
        if self.rank() != 4 {
            return Err(Error::bad_shape(OP, self.shape(), "expects [N, C, H, W]"));
        }
        let (h, w) = (self.shape()[2], self.shape()[3]);
        if out.0 == 0 || out.1 == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(
                OP,
                format!("output size {out:?} and input size ({h}, {w}) must be non-zero"),
            ));
        }
        if out == (1, 1) {
            return self.mean(&[2, 3], true);
        }
        let mut rows = Vec::with_capacity(out.0);
        for i in 0..out.0 {
            let (r0, r1) = (i * h / out.0, ((i + 1) * h).div_ceil(out.0));
            let band = self.narrow(2, r0, r1 - r0)?;
            let mut cells = Vec::with_capacity(out.1);
            for j in 0..out.1 {
                let (c0, c1) = (j * w / out.1, ((j + 1) * w).div_ceil(out.1));
                cells.push(band.narrow(3, c0, c1 - c0)?.mean(&[2, 3], true)?);
            }
            rows.push(Tensor::cat(&cells, 3)?);
        }
        Tensor::cat(&rows, 2)
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
        let mask = Tensor::from_vec(mask, self.shape())?.to(&self.device())?;
        self.mul(&mask)
    }
}
