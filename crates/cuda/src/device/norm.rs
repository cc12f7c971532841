//! Batch normalization on the device: one checked wrapper per kernel.

use super::*;

impl CudaDevice {
    // ---- batch normalization ---------------------------------------------------------------

    /// Checks a batch-norm problem: `x` (and every `[batch, channels, spatial]` buffer) and
    /// the `[channels]` ones; returns the element count, 0 when there is nothing to do.
    fn batch_norm_dims(
        kernel: &'static str,
        s: &BatchNormShape,
        full: &[(&'static str, usize)],
        per_channel: &[(&'static str, usize)],
    ) -> Result<usize> {
        let n = s.len().map_err(shape(kernel))?;
        for &(name, len) in full {
            expect_len(kernel, name, len, n)?;
        }
        for &(name, len) in per_channel {
            expect_len(kernel, name, len, s.channels)?;
        }
        if n > 0 {
            launch::elementwise(kernel, n)?;
        }
        Ok(n)
    }

    fn per_channel_blocks(s: &BatchNormShape) -> LaunchShape {
        LaunchShape {
            grid: (s.channels as u32, 1, 1),
            block: (launch::BLOCK, 1, 1),
        }
    }

    /// The mean and the biased variance of every channel of `x` `[batch, channels, spatial]`
    /// ([`tinycnn_kernels::batch_norm_stats`]; one block per channel, a fixed order of
    /// additions).
    pub fn batch_norm_stats(
        &self,
        s: &BatchNormShape,
        x: &impl DeviceSlice<f32>,
        mean: &mut impl DeviceSliceMut<f32>,
        var: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, mut m, mut v) = (
            x.device_view(),
            mean.device_view_mut(),
            var.device_view_mut(),
        );
        let lens = (x.len(), m.len(), v.len());
        let shapes = || format!("{s:?}, x [{}], mean [{}], var [{}]", lens.0, lens.1, lens.2);
        self.op(&shapes, || {
            let kernel = names::BATCH_NORM_STATS;
            Self::batch_norm_dims(
                kernel,
                s,
                &[("x", lens.0)],
                &[("mean", lens.1), ("var", lens.2)],
            )?;
            if s.count() == 0 {
                return Err(zero(kernel, "values per channel (batch * spatial)"));
            }
            if s.channels == 0 {
                return Ok(());
            }
            let (b, c, sp) = (s.batch as i32, s.channels as i32, s.spatial as i32);
            let grid = Self::per_channel_blocks(s);
            k::batch_norm_stats::launch(self, &shapes, grid, b, c, sp, &x, &mut m, &mut v)
        })
    }

    /// `y = (x - mean) / sqrt(var + eps) * weight + bias` per channel, weight 1 and bias 0
    /// when not given ([`tinycnn_kernels::batch_norm_forward`]).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_forward(
        &self,
        s: &BatchNormShape,
        x: &impl DeviceSlice<f32>,
        mean: &impl DeviceSlice<f32>,
        var: &impl DeviceSlice<f32>,
        eps: f32,
        weight: Option<&CudaBuffer>,
        bias: Option<&CudaBuffer>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, m, v, mut y) = (
            x.device_view(),
            mean.device_view(),
            var.device_view(),
            y.device_view_mut(),
        );
        let (w, b) = (weight.map(|t| t.view()), bias.map(|t| t.view()));
        let lens = [x.len(), m.len(), v.len(), y.len()];
        let (wl, bl) = (w.as_ref().map(|t| t.len()), b.as_ref().map(|t| t.len()));
        let shapes = || {
            format!(
                "{s:?}, x [{}], mean [{}], var [{}], weight {wl:?}, bias {bl:?}, y [{}]",
                lens[0], lens[1], lens[2], lens[3]
            )
        };
        self.op(&shapes, || {
            let kernel = names::BATCH_NORM_FORWARD;
            let mut per_channel = vec![("mean", lens[1]), ("var", lens[2])];
            per_channel.extend(wl.map(|l| ("weight", l)));
            per_channel.extend(bl.map(|l| ("bias", l)));
            let n =
                Self::batch_norm_dims(kernel, s, &[("x", lens[0]), ("y", lens[3])], &per_channel)?;
            if n == 0 {
                return Ok(());
            }
            let shape = launch::elementwise(kernel, n)?;
            let (bt, c, sp) = (s.batch as i32, s.channels as i32, s.spatial as i32);
            k::batch_norm_forward::launch(
                self,
                &shapes,
                shape,
                bt,
                c,
                sp,
                &x,
                &m,
                &v,
                eps,
                w.as_ref(),
                b.as_ref(),
                &mut y,
            )
        })
    }

    /// The gradients of [`CudaDevice::batch_norm_forward`] from `grad_y`, each computed only
    /// when its buffer is given ([`tinycnn_kernels::batch_norm_backward`]): with `training`
    /// the statistics were the batch's own and the input gradient flows through them,
    /// without it they are constants. `grad_weight = sum(dy * (x - mean)) * invstd` and
    /// `grad_bias = sum(dy)` per channel.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_backward(
        &self,
        s: &BatchNormShape,
        x: &impl DeviceSlice<f32>,
        grad_y: &impl DeviceSlice<f32>,
        mean: &impl DeviceSlice<f32>,
        var: &impl DeviceSlice<f32>,
        eps: f32,
        weight: Option<&CudaBuffer>,
        training: bool,
        grad_x: Option<&mut CudaBuffer>,
        grad_weight: Option<&mut CudaBuffer>,
        grad_bias: Option<&mut CudaBuffer>,
    ) -> Result<()> {
        let (x, gy, m, v) = (
            x.device_view(),
            grad_y.device_view(),
            mean.device_view(),
            var.device_view(),
        );
        let w = weight.map(|t| t.view());
        let mut gx = grad_x.map(|t| t.view_mut());
        let mut gw = grad_weight.map(|t| t.view_mut());
        let mut gb = grad_bias.map(|t| t.view_mut());
        let lens = [x.len(), gy.len(), m.len(), v.len()];
        let opt = [
            w.as_ref().map(|t| t.len()),
            gx.as_ref().map(|t| t.len()),
            gw.as_ref().map(|t| t.len()),
            gb.as_ref().map(|t| t.len()),
        ];
        let shapes = || {
            format!(
                "{s:?}, x [{}], grad_y [{}], mean [{}], var [{}], weight {:?}, training {training}, grad_x {:?}, grad_weight {:?}, grad_bias {:?}",
                lens[0], lens[1], lens[2], lens[3], opt[0], opt[1], opt[2], opt[3]
            )
        };
        self.op(&shapes, || {
            let kernel = names::BATCH_NORM_BACKWARD_REDUCE;
            let mut full = vec![("x", lens[0]), ("grad_y", lens[1])];
            full.extend(opt[1].map(|l| ("grad_x", l)));
            let mut per_channel = vec![("mean", lens[2]), ("var", lens[3])];
            per_channel.extend(opt[0].map(|l| ("weight", l)));
            per_channel.extend(opt[2].map(|l| ("grad_weight", l)));
            per_channel.extend(opt[3].map(|l| ("grad_bias", l)));
            let n = Self::batch_norm_dims(kernel, s, &full, &per_channel)?;
            if n == 0 {
                // No values: the sums are empty, so the parameter gradients are zeros.
                for g in [gw.as_mut(), gb.as_mut()].into_iter().flatten() {
                    self.fill(0.0, g)?;
                }
                return Ok(());
            }
            let (bt, c, sp) = (s.batch as i32, s.channels as i32, s.spatial as i32);
            // The sums are needed for the parameter gradients and, in training, the input's.
            let sums = if gw.is_some() || gb.is_some() || (training && gx.is_some()) {
                let (mut sum_dy, mut sum_dy_xmu) =
                    (self.alloc(s.channels)?, self.alloc(s.channels)?);
                let grid = Self::per_channel_blocks(s);
                k::batch_norm_backward_reduce::launch(
                    self,
                    &shapes,
                    grid,
                    bt,
                    c,
                    sp,
                    &x,
                    &gy,
                    &m,
                    &v,
                    eps,
                    &mut sum_dy.view_mut(),
                    &mut sum_dy_xmu.view_mut(),
                    gw.as_mut(),
                    gb.as_mut(),
                )?;
                Some((sum_dy, sum_dy_xmu))
            } else {
                None
            };
            let Some(gx) = gx.as_mut() else {
                return Ok(());
            };
            let (sdy, sdx) = match (&sums, training) {
                (Some((a, b)), true) => (Some(a.view()), Some(b.view())),
                _ => (None, None),
            };
            let kernel = names::BATCH_NORM_BACKWARD_INPUT;
            let shape = launch::elementwise(kernel, n)?;
            k::batch_norm_backward_input::launch(
                self,
                &shapes,
                shape,
                bt,
                c,
                sp,
                &x,
                &gy,
                &m,
                &v,
                eps,
                w.as_ref(),
                sdy.as_ref(),
                sdx.as_ref(),
                gx,
            )
        })
    }
}
