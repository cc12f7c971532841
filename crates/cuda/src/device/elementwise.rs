//! Element-wise kernels and bias on the device: one checked wrapper per kernel.

use super::*;

impl CudaDevice {
    // ---- element-wise ----------------------------------------------------------------------

    /// Checks `(name, len)` pairs all equal the first one's length; returns `n` for the
    /// kernel and its launch, or `None` when there is nothing to do.
    fn same_len(
        kernel: &'static str,
        bufs: &[(&'static str, usize)],
    ) -> Result<Option<(i32, LaunchShape)>> {
        let n = bufs[0].1;
        for &(name, len) in &bufs[1..] {
            expect_len(kernel, name, len, n)?;
        }
        if n == 0 {
            return Ok(None);
        }
        Ok(Some((n as i32, launch::elementwise(kernel, n)?)))
    }

    fn unary(
        &self,
        kernel: &'static str,
        f: k::UnaryLaunch,
        x: CudaBufferView<'_, f32>,
        mut y: CudaBufferViewMut<'_, f32>,
    ) -> Result<()> {
        let lens = (x.len(), y.len());
        let shapes = || format!("x [{}], y [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            match Self::same_len(kernel, &[("x", lens.0), ("y", lens.1)])? {
                Some((n, shape)) => f(self, &shapes, shape, n, &x, &mut y),
                None => Ok(()),
            }
        })
    }

    fn unary_backward(
        &self,
        kernel: &'static str,
        f: k::BinaryLaunch,
        saved: CudaBufferView<'_, f32>,
        gy: CudaBufferView<'_, f32>,
        mut gx: CudaBufferViewMut<'_, f32>,
    ) -> Result<()> {
        let lens = (saved.len(), gy.len(), gx.len());
        let shapes = || {
            format!(
                "saved [{}], grad_y [{}], grad_x [{}]",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            match Self::same_len(
                kernel,
                &[("saved", lens.0), ("grad_y", lens.1), ("grad_x", lens.2)],
            )? {
                Some((n, shape)) => f(self, &shapes, shape, n, &saved, &gy, &mut gx),
                None => Ok(()),
            }
        })
    }

    /// `y = max(x, 0)`.
    pub fn relu_forward(
        &self,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary(
            names::RELU_FORWARD,
            k::relu_forward::launch,
            x.device_view(),
            y.device_view_mut(),
        )
    }
    /// ReLU gradient from the forward input `x` (zero at `x == 0`, as PyTorch).
    pub fn relu_backward(
        &self,
        x: &impl DeviceSlice<f32>,
        grad_y: &impl DeviceSlice<f32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary_backward(
            names::RELU_BACKWARD,
            k::relu_backward::launch,
            x.device_view(),
            grad_y.device_view(),
            grad_x.device_view_mut(),
        )
    }
    /// `y = min(max(x, 0), 6)` ([`tinycnn_kernels::relu6_forward`]: NaN passes, `-0.0` stays).
    pub fn relu6_forward(
        &self,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary(
            names::RELU6_FORWARD,
            k::relu6_forward::launch,
            x.device_view(),
            y.device_view_mut(),
        )
    }
    /// ReLU6 gradient from the forward input `x`: zero at `x <= 0` and `x >= 6`
    /// ([`tinycnn_kernels::relu6_backward`]).
    pub fn relu6_backward(
        &self,
        x: &impl DeviceSlice<f32>,
        grad_y: &impl DeviceSlice<f32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary_backward(
            names::RELU6_BACKWARD,
            k::relu6_backward::launch,
            x.device_view(),
            grad_y.device_view(),
            grad_x.device_view_mut(),
        )
    }
    /// `y = 1 / (1 + exp(-x))`.
    pub fn sigmoid_forward(
        &self,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary(
            names::SIGMOID_FORWARD,
            k::sigmoid_forward::launch,
            x.device_view(),
            y.device_view_mut(),
        )
    }
    /// Sigmoid gradient from the forward output `y`.
    pub fn sigmoid_backward(
        &self,
        y: &impl DeviceSlice<f32>,
        grad_y: &impl DeviceSlice<f32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary_backward(
            names::SIGMOID_BACKWARD,
            k::sigmoid_backward::launch,
            y.device_view(),
            grad_y.device_view(),
            grad_x.device_view_mut(),
        )
    }
    /// `y = tanh(x)`.
    pub fn tanh_forward(
        &self,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary(
            names::TANH_FORWARD,
            k::tanh_forward::launch,
            x.device_view(),
            y.device_view_mut(),
        )
    }
    /// Tanh gradient from the forward output `y`.
    pub fn tanh_backward(
        &self,
        y: &impl DeviceSlice<f32>,
        grad_y: &impl DeviceSlice<f32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary_backward(
            names::TANH_BACKWARD,
            k::tanh_backward::launch,
            y.device_view(),
            grad_y.device_view(),
            grad_x.device_view_mut(),
        )
    }

    /// `y += x` (gradient accumulation).
    pub fn add_inplace(
        &self,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary(
            names::ADD_INPLACE,
            k::add_inplace::launch,
            x.device_view(),
            y.device_view_mut(),
        )
    }

    /// `y = a x + b y`; with `b == 0`, `y` is not read.
    pub fn axpby(
        &self,
        a: f32,
        x: &impl DeviceSlice<f32>,
        b: f32,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, mut y) = (x.device_view(), y.device_view_mut());
        let lens = (x.len(), y.len());
        let shapes = || format!("a {a}, x [{}], b {b}, y [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            match Self::same_len(names::AXPBY, &[("x", lens.0), ("y", lens.1)])? {
                Some((n, shape)) => k::axpby::launch(self, &shapes, shape, n, a, &x, b, &mut y),
                None => Ok(()),
            }
        })
    }

    /// `y *= a`.
    pub fn scale(&self, a: f32, y: &mut impl DeviceSliceMut<f32>) -> Result<()> {
        let mut y = y.device_view_mut();
        let len = y.len();
        let shapes = || format!("a {a}, y [{len}]");
        self.op(&shapes, || {
            match Self::same_len(names::SCALE, &[("y", len)])? {
                Some((n, shape)) => k::scale::launch(self, &shapes, shape, n, a, &mut y),
                None => Ok(()),
            }
        })
    }

    /// `y = v` everywhere.
    pub fn fill(&self, v: f32, y: &mut impl DeviceSliceMut<f32>) -> Result<()> {
        let mut y = y.device_view_mut();
        let len = y.len();
        let shapes = || format!("v {v}, y [{len}]");
        self.op(&shapes, || {
            match Self::same_len(names::FILL, &[("y", len)])? {
                Some((n, shape)) => k::fill::launch(self, &shapes, shape, n, v, &mut y),
                None => Ok(()),
            }
        })
    }

    /// `z = x * y`, element-wise.
    pub fn mul(
        &self,
        x: &impl DeviceSlice<f32>,
        y: &impl DeviceSlice<f32>,
        z: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        self.unary_backward(
            names::MUL,
            k::mul::launch,
            x.device_view(),
            y.device_view(),
            z.device_view_mut(),
        )
    }

    // ---- bias ------------------------------------------------------------------------------

    fn bias_dims(
        kernel: &'static str,
        outer: usize,
        channels: usize,
        inner: usize,
        bias: usize,
        x: usize,
    ) -> Result<()> {
        if outer == 0 || channels == 0 || inner == 0 {
            return Err(zero(kernel, "bias outer/channels/inner"));
        }
        expect_len(kernel, "bias", bias, channels)?;
        let total = outer
            .checked_mul(channels)
            .and_then(|v| v.checked_mul(inner))
            .ok_or_else(|| shape(kernel)(KernelError::Overflow { what: "bias input" }))?;
        expect_len(kernel, "x", x, total)
    }

    /// `x[o, c, i] += bias[c]` ([`reference::bias_add`]). With `inner == 1` this is the
    /// broadcast add of a `[cols]` row onto `[rows, cols]`.
    pub fn bias_add(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        bias: &impl DeviceSlice<f32>,
        x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (bias, mut x) = (bias.device_view(), x.device_view_mut());
        let lens = (bias.len(), x.len());
        let shapes = || {
            format!(
                "[{outer}, {channels}, {inner}], bias [{}], x [{}]",
                lens.0, lens.1
            )
        };
        self.op(&shapes, || {
            let kernel = names::BIAS_ADD;
            Self::bias_dims(kernel, outer, channels, inner, lens.0, lens.1)?;
            let shape = launch::elementwise(kernel, lens.1)?;
            let (o, c, i) = (outer as i32, channels as i32, inner as i32);
            k::bias_add::launch(self, &shapes, shape, o, c, i, &bias, &mut x)
        })
    }

    /// `grad_bias[c] = sum over o, i of grad_y[o, c, i]` ([`reference::bias_backward`]).
    pub fn bias_backward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        grad_y: &impl DeviceSlice<f32>,
        grad_bias: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (gy, mut gb) = (grad_y.device_view(), grad_bias.device_view_mut());
        let lens = (gy.len(), gb.len());
        let shapes = || {
            format!(
                "[{outer}, {channels}, {inner}], grad_y [{}], grad_bias [{}]",
                lens.0, lens.1
            )
        };
        self.op(&shapes, || {
            let kernel = names::BIAS_BACKWARD;
            Self::bias_dims(kernel, outer, channels, inner, lens.1, lens.0)?;
            launch::elementwise(kernel, lens.0)?;
            let shape = LaunchShape {
                grid: (channels as u32, 1, 1),
                block: (launch::BLOCK, 1, 1),
            };
            let (o, c, i) = (outer as i32, channels as i32, inner as i32);
            k::bias_backward::launch(self, &shapes, shape, o, c, i, &gy, &mut gb)
        })
    }
}
