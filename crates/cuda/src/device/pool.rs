//! Pooling on the device: one checked wrapper per kernel.

use super::*;

impl CudaDevice {
    // ---- pooling -------------------------------------------------------------------------

    /// Max pooling with arg-max within each plane ([`reference::max_pool2d`]).
    pub fn max_pool2d_forward(
        &self,
        s: &Pool2dShape,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
        argmax: &mut impl DeviceSliceMut<u32>,
    ) -> Result<()> {
        let (x, mut y, mut am) = (
            x.device_view(),
            y.device_view_mut(),
            argmax.device_view_mut(),
        );
        let lens = (x.len(), y.len(), am.len());
        let shapes = || format!("{s:?}, x [{}], y [{}], argmax [{}]", lens.0, lens.1, lens.2);
        self.op(&shapes, || {
            let kernel = names::MAX_POOL_FORWARD;
            let geom = launch::pool_geom(kernel, s)?;
            launch::pool_lens(kernel, s, lens.0, lens.1)?;
            expect_len(kernel, "argmax", lens.2, lens.1)?;
            let shape = launch::elementwise(kernel, lens.1)?;
            k::max_pool2d_forward::launch(self, &shapes, shape, geom, &x, &mut y, &mut am)
        })
    }

    /// Gradient of max pooling, overwriting `grad_x` ([`reference::max_pool2d_backward`]).
    /// An arg-max outside its plane contributes nothing (the CPU kernel reports an error).
    pub fn max_pool2d_backward(
        &self,
        s: &Pool2dShape,
        grad_y: &impl DeviceSlice<f32>,
        argmax: &impl DeviceSlice<u32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (gy, am, mut gx) = (
            grad_y.device_view(),
            argmax.device_view(),
            grad_x.device_view_mut(),
        );
        let lens = (gy.len(), am.len(), gx.len());
        let shapes = || {
            format!(
                "{s:?}, grad_y [{}], argmax [{}], grad_x [{}]",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let kernel = names::MAX_POOL_BACKWARD;
            let geom = launch::pool_geom(kernel, s)?;
            launch::pool_lens(kernel, s, lens.2, lens.0)?;
            expect_len(kernel, "argmax", lens.1, lens.0)?;
            let shape = launch::elementwise(kernel, lens.2)?;
            k::max_pool2d_backward::launch(self, &shapes, shape, geom, &gy, &am, &mut gx)
        })
    }

    /// Average pooling ([`reference::avg_pool2d`]).
    pub fn avg_pool2d_forward(
        &self,
        s: &Pool2dShape,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, mut y) = (x.device_view(), y.device_view_mut());
        let lens = (x.len(), y.len());
        let shapes = || format!("{s:?}, x [{}], y [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            let kernel = names::AVG_POOL_FORWARD;
            let geom = launch::pool_geom(kernel, s)?;
            launch::pool_lens(kernel, s, lens.0, lens.1)?;
            let shape = launch::elementwise(kernel, lens.1)?;
            k::avg_pool2d_forward::launch(self, &shapes, shape, geom, &x, &mut y)
        })
    }

    /// Gradient of average pooling, overwriting `grad_x` ([`reference::avg_pool2d_backward`]).
    pub fn avg_pool2d_backward(
        &self,
        s: &Pool2dShape,
        grad_y: &impl DeviceSlice<f32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (gy, mut gx) = (grad_y.device_view(), grad_x.device_view_mut());
        let lens = (gy.len(), gx.len());
        let shapes = || format!("{s:?}, grad_y [{}], grad_x [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            let kernel = names::AVG_POOL_BACKWARD;
            let geom = launch::pool_geom(kernel, s)?;
            launch::pool_lens(kernel, s, lens.1, lens.0)?;
            let shape = launch::elementwise(kernel, lens.1)?;
            k::avg_pool2d_backward::launch(self, &shapes, shape, geom, &gy, &mut gx)
        })
    }

    /// The kernels' `(planes, h, w, oh, ow)` of an adaptive pooling, after checking the
    /// input and output lengths; `None` when there are no planes.
    fn adaptive_dims(
        kernel: &'static str,
        s: &AdaptivePool2dShape,
        x: usize,
        y: usize,
    ) -> Result<Option<[i32; 5]>> {
        s.validate().map_err(shape(kernel))?;
        let xl = s.input_len().map_err(shape(kernel))?;
        let yl = s.output_len().map_err(shape(kernel))?;
        expect_len(kernel, "input", x, xl)?;
        expect_len(kernel, "output", y, yl)?;
        // Both lengths below 2^31 keep every index in range, and the window bounds
        // `((i + 1) * in + out - 1) / out` (32-bit in the kernels) need `in * out + out` too.
        launch::elementwise(kernel, xl.max(yl))?;
        for (what, n_in, n_out) in [
            ("input height x output height", s.in_h, s.out_h),
            ("input width x output width", s.in_w, s.out_w),
        ] {
            let product = n_in.saturating_mul(n_out).saturating_add(n_out);
            if product > launch::MAX_ELEMENTS {
                return Err(CudaError::TooLarge {
                    kernel,
                    what,
                    value: product,
                    limit: launch::MAX_ELEMENTS,
                });
            }
        }
        if xl == 0 {
            return Ok(None);
        }
        let planes = s.batch * s.channels;
        Ok(Some(
            [planes, s.in_h, s.in_w, s.out_h, s.out_w].map(|v| v as i32),
        ))
    }

    /// Adaptive average pooling with PyTorch's windows
    /// ([`tinycnn_kernels::adaptive_avg_pool2d_forward`]).
    pub fn adaptive_avg_pool2d_forward(
        &self,
        s: &AdaptivePool2dShape,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, mut y) = (x.device_view(), y.device_view_mut());
        let lens = (x.len(), y.len());
        let shapes = || format!("{s:?}, x [{}], y [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            let kernel = names::ADAPTIVE_AVG_POOL_FORWARD;
            let Some([p, h, w, oh, ow]) = Self::adaptive_dims(kernel, s, lens.0, lens.1)? else {
                return Ok(());
            };
            let shape = launch::elementwise(kernel, lens.1)?;
            k::adaptive_avg_pool2d_forward::launch(
                self, &shapes, shape, p, h, w, oh, ow, &x, &mut y,
            )
        })
    }

    /// Gradient of adaptive average pooling, overwriting `grad_x`
    /// ([`tinycnn_kernels::adaptive_avg_pool2d_backward`]).
    pub fn adaptive_avg_pool2d_backward(
        &self,
        s: &AdaptivePool2dShape,
        grad_y: &impl DeviceSlice<f32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (gy, mut gx) = (grad_y.device_view(), grad_x.device_view_mut());
        let lens = (gy.len(), gx.len());
        let shapes = || format!("{s:?}, grad_y [{}], grad_x [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            let kernel = names::ADAPTIVE_AVG_POOL_BACKWARD;
            let Some([p, h, w, oh, ow]) = Self::adaptive_dims(kernel, s, lens.1, lens.0)? else {
                return Ok(());
            };
            let shape = launch::elementwise(kernel, lens.1)?;
            k::adaptive_avg_pool2d_backward::launch(
                self, &shapes, shape, p, h, w, oh, ow, &gy, &mut gx,
            )
        })
    }
}
