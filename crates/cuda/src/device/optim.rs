//! Optimizer steps on the device: one checked wrapper per kernel.

use super::*;

impl CudaDevice {
    // ---- optimizers --------------------------------------------------------------------------

    /// One `torch.optim.SGD` step ([`reference::sgd_step`]); `momentum_buf` is needed (and
    /// must match the parameter) when `cfg.momentum != 0`.
    pub fn sgd_step(
        &self,
        cfg: &SgdConfig,
        param: &mut impl DeviceSliceMut<f32>,
        grad: &impl DeviceSlice<f32>,
        momentum_buf: Option<&mut CudaBuffer>,
        first_step: bool,
    ) -> Result<()> {
        let (mut p, g) = (param.device_view_mut(), grad.device_view());
        let mut buf = momentum_buf.map(|b| b.view_mut());
        let lens = (p.len(), g.len(), buf.as_ref().map(|b| b.len()));
        let shapes = || {
            format!(
                "param [{}], grad [{}], momentum_buf {:?}",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let kernel = names::SGD_STEP;
            // The CPU reference's own checks on empty slices validate the hyper-parameters,
            // so both back ends refuse the same configurations.
            reference::sgd_step(cfg, &mut [], &[], &mut [], true).map_err(shape(kernel))?;
            expect_len(kernel, "grad", lens.1, lens.0)?;
            match lens.2 {
                Some(bl) => expect_len(kernel, "momentum_buf", bl, lens.0)?,
                None if cfg.momentum != 0.0 => expect_len(kernel, "momentum_buf", 0, lens.0)?,
                None => {}
            }
            if lens.0 == 0 {
                return Ok(());
            }
            let shape = launch::elementwise(kernel, lens.0)?;
            k::sgd_step::launch(
                self,
                &shapes,
                shape,
                lens.0 as i32,
                cfg.lr,
                cfg.momentum,
                cfg.dampening,
                cfg.weight_decay,
                cfg.nesterov as i32,
                first_step as i32,
                &mut p,
                &g,
                buf.as_mut(),
            )
        })
    }

    /// One `torch.optim.Adam` step ([`reference::adam_step`]); `step` counts from 1.
    pub fn adam_step(
        &self,
        cfg: &AdamConfig,
        step: u32,
        param: &mut impl DeviceSliceMut<f32>,
        grad: &impl DeviceSlice<f32>,
        m: &mut impl DeviceSliceMut<f32>,
        v: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (mut p, g, mut m, mut v) = (
            param.device_view_mut(),
            grad.device_view(),
            m.device_view_mut(),
            v.device_view_mut(),
        );
        let lens = (p.len(), g.len(), m.len(), v.len());
        let shapes = || {
            format!(
                "step {step}, param [{}], grad [{}], m [{}], v [{}]",
                lens.0, lens.1, lens.2, lens.3
            )
        };
        self.op(&shapes, || {
            let kernel = names::ADAM_STEP;
            reference::adam_step(cfg, step, &mut [], &[], &mut [], &mut [])
                .map_err(shape(kernel))?;
            expect_len(kernel, "grad", lens.1, lens.0)?;
            expect_len(kernel, "m", lens.2, lens.0)?;
            expect_len(kernel, "v", lens.3, lens.0)?;
            if lens.0 == 0 {
                return Ok(());
            }
            let (step_size, bc2_sqrt) = adam_scalars(cfg, step);
            let shape = launch::elementwise(kernel, lens.0)?;
            k::adam_step::launch(
                self,
                &shapes,
                shape,
                lens.0 as i32,
                step_size,
                cfg.beta1,
                cfg.beta2,
                cfg.eps,
                cfg.weight_decay,
                bc2_sqrt,
                &mut p,
                &g,
                &mut m,
                &mut v,
            )
        })
    }

    /// Copies samples `perm[offset..offset + batch]` of a device data set (`images`
    /// `[samples, sample_len]`, `labels` `[samples]`) into a batch. Permutation entries are
    /// not checked against the data set (they are device memory).
    #[allow(clippy::too_many_arguments)]
    pub fn gather_batch(
        &self,
        batch: usize,
        sample_len: usize,
        perm: &impl DeviceSlice<u32>,
        offset: usize,
        images: &impl DeviceSlice<f32>,
        labels: &impl DeviceSlice<u32>,
        out_images: &mut impl DeviceSliceMut<f32>,
        out_labels: &mut impl DeviceSliceMut<u32>,
    ) -> Result<()> {
        let (perm, images, labels) = (
            perm.device_view(),
            images.device_view(),
            labels.device_view(),
        );
        let (mut oi, mut ol) = (out_images.device_view_mut(), out_labels.device_view_mut());
        let lens = (perm.len(), images.len(), labels.len(), oi.len(), ol.len());
        let shapes = || {
            format!(
                "batch {batch}, sample_len {sample_len}, offset {offset}, perm [{}], images [{}], labels [{}], out_images [{}], out_labels [{}]",
                lens.0, lens.1, lens.2, lens.3, lens.4
            )
        };
        self.op(&shapes, || {
            let kernel = names::GATHER_BATCH;
            if offset + batch > lens.0 {
                return Err(CudaError::Invalid(format!(
                    "gather: rows {offset}..{} past the permutation ({})",
                    offset + batch,
                    lens.0
                )));
            }
            expect_len(kernel, "out_images", lens.3, batch * sample_len)?;
            expect_len(kernel, "out_labels", lens.4, batch)?;
            expect_len(kernel, "images", lens.1, lens.2 * sample_len)?;
            if batch * sample_len == 0 {
                return Ok(());
            }
            let shape = launch::elementwise(kernel, batch * sample_len)?;
            k::gather_batch::launch(
                self,
                &shapes,
                shape,
                batch as i32,
                sample_len as i32,
                &perm,
                offset as i32,
                &images,
                &labels,
                &mut oi,
                &mut ol,
            )
        })
    }

    /// The crop-and-flip augmentation of `batch` images of `image = [c, h, w]` from `x` into
    /// `y` (same length): `transforms` holds three values per sample, `(dy, dx, flip)`, the
    /// offsets as two's complement `i32` bits (`tinycnn::data::SampleTransform`). Output
    /// `(y, x)` of every channel reads input `(y + dy, x' + dx)`, `x' = w - 1 - x` when
    /// `flip != 0`, or is 0 outside the image.
    pub fn augment_batch(
        &self,
        batch: usize,
        image: [usize; 3],
        transforms: &impl DeviceSlice<u32>,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (t, x, mut y) = (
            transforms.device_view(),
            x.device_view(),
            y.device_view_mut(),
        );
        let lens = (t.len(), x.len(), y.len());
        let [c, h, w] = image;
        let shapes = || {
            format!(
                "batch {batch}, image {image:?}, transforms [{}], x [{}], y [{}]",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let kernel = names::AUGMENT_BATCH;
            let n = [batch, c, h, w]
                .into_iter()
                .try_fold(1usize, usize::checked_mul)
                .ok_or_else(|| shape(kernel)(KernelError::Overflow { what: "batch" }))?;
            expect_len(kernel, "transforms", lens.0, batch.saturating_mul(3))?;
            expect_len(kernel, "x", lens.1, n)?;
            expect_len(kernel, "y", lens.2, n)?;
            if n == 0 {
                return Ok(());
            }
            let shape = launch::elementwise(kernel, n)?;
            let [b, c, h, w] = [batch, c, h, w].map(|v| v as i32);
            k::augment_batch::launch(self, &shapes, shape, b, c, h, w, &t, &x, &mut y)
        })
    }
}

/// Adam's host-side scalars, computed as the CPU reference does: `lr / (1 - beta1^t)` and
/// `sqrt(1 - beta2^t)`.
pub fn adam_scalars(cfg: &AdamConfig, step: u32) -> (f32, f32) {
    let bc1 = 1.0 - cfg.beta1.powf(step as f32);
    let bc2 = 1.0 - cfg.beta2.powf(step as f32);
    (cfg.lr / bc1, bc2.sqrt())
}
