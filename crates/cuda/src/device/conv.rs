//! Matrix products and convolutions on the device: one checked wrapper per kernel.

use super::*;

impl CudaDevice {
    // ---- matrix product ----------------------------------------------------------------

    /// `C = alpha op(A) op(B) + beta C` ([`reference::sgemm`]); with `beta == 0` C is not read.
    pub fn sgemm(
        &self,
        g: &GemmShape,
        alpha: f32,
        a: &impl DeviceSlice<f32>,
        b: &impl DeviceSlice<f32>,
        beta: f32,
        c: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (a, b, mut c) = (a.device_view(), b.device_view(), c.device_view_mut());
        let lens = (a.len(), b.len(), c.len());
        let shapes = || format!("{g:?}, a [{}], b [{}], c [{}]", lens.0, lens.1, lens.2);
        self.op(&shapes, || {
            let (_, shape) = launch::sgemm(g, lens.0, lens.1, lens.2)?;
            let (m, n, kk) = (g.m as i32, g.n as i32, g.k as i32);
            let (lda, ldb, ldc) = (g.lda as i32, g.ldb as i32, g.ldc as i32);
            macro_rules! go {
                ($k:ident) => {
                    k::$k::launch(
                        self, &shapes, shape, m, n, kk, alpha, &a, lda, &b, ldb, beta, &mut c, ldc,
                    )
                };
            }
            match (g.trans_a, g.trans_b) {
                (Transpose::No, Transpose::No) => go!(sgemm_nn),
                (Transpose::No, Transpose::Yes) => go!(sgemm_nt),
                (Transpose::Yes, Transpose::No) => go!(sgemm_tn),
                (Transpose::Yes, Transpose::Yes) => go!(sgemm_tt),
            }
        })
    }

    // ---- convolution -------------------------------------------------------------------

    /// `y = conv(x, w) + bias` ([`reference::conv2d`]).
    pub fn conv2d_forward(
        &self,
        s: &Conv2dShape,
        x: &impl DeviceSlice<f32>,
        w: &impl DeviceSlice<f32>,
        bias: Option<&CudaBuffer>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, w, mut y) = (x.device_view(), w.device_view(), y.device_view_mut());
        let bias = bias.map(|b| b.view());
        let lens = (x.len(), w.len(), bias.as_ref().map(|b| b.len()), y.len());
        let shapes = || {
            format!(
                "{s:?}, x [{}], w [{}], bias {:?}, y [{}]",
                lens.0, lens.1, lens.2, lens.3
            )
        };
        self.op(&shapes, || {
            let (kernel, geom, shape) = launch::conv2d_forward(s)?;
            let (xl, wl, yl) = launch::conv_lens(kernel, s)?;
            expect_len(kernel, "x", lens.0, xl)?;
            expect_len(kernel, "w", lens.1, wl)?;
            expect_len(kernel, "y", lens.3, yl)?;
            if let Some(bl) = lens.2 {
                expect_len(kernel, "bias", bl, s.params.out_channels)?;
            }
            let f = if kernel == k::conv2d_forward_t64::NAME {
                k::conv2d_forward_t64::launch
            } else {
                k::conv2d_forward_t16::launch
            };
            f(self, &shapes, shape, geom, &x, &w, bias.as_ref(), &mut y)
        })
    }

    /// Gradient w.r.t. the input, overwriting `grad_x` ([`reference::conv2d_backward_input`]).
    pub fn conv2d_backward_input(
        &self,
        s: &Conv2dShape,
        grad_y: &impl DeviceSlice<f32>,
        w: &impl DeviceSlice<f32>,
        grad_x: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (gy, w, mut gx) = (
            grad_y.device_view(),
            w.device_view(),
            grad_x.device_view_mut(),
        );
        let lens = (gy.len(), w.len(), gx.len());
        let shapes = || {
            format!(
                "{s:?}, grad_y [{}], w [{}], grad_x [{}]",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let (kernel, geom, shape) = launch::conv2d_backward_input(s)?;
            let (xl, wl, yl) = launch::conv_lens(kernel, s)?;
            expect_len(kernel, "grad_y", lens.0, yl)?;
            expect_len(kernel, "w", lens.1, wl)?;
            expect_len(kernel, "grad_x", lens.2, xl)?;
            let f = if kernel == k::conv2d_backward_input_t64::NAME {
                k::conv2d_backward_input_t64::launch
            } else {
                k::conv2d_backward_input_t16::launch
            };
            f(self, &shapes, shape, geom, &gy, &w, &mut gx)
        })
    }

    /// Gradient w.r.t. the weight summed over the batch, overwriting `grad_w`
    /// ([`reference::conv2d_backward_weight`]). `workspace` must hold at least
    /// [`launch::conv2d_backward_weight_workspace_len`] elements; `None` takes it from the
    /// caching allocator.
    pub fn conv2d_backward_weight(
        &self,
        s: &Conv2dShape,
        x: &impl DeviceSlice<f32>,
        grad_y: &impl DeviceSlice<f32>,
        grad_w: &mut impl DeviceSliceMut<f32>,
        workspace: Option<&mut CudaBufferViewMut<'_, f32>>,
    ) -> Result<()> {
        let (x, gy, mut gw) = (
            x.device_view(),
            grad_y.device_view(),
            grad_w.device_view_mut(),
        );
        let ws_len = workspace.as_ref().map(|w| w.len());
        let lens = (x.len(), gy.len(), gw.len());
        let shapes = || {
            format!(
                "{s:?}, x [{}], grad_y [{}], grad_w [{}], workspace {ws_len:?}",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let plan = launch::conv2d_backward_weight(s)?;
            let kernel = plan.kernel;
            let (xl, wl, yl) = launch::conv_lens(kernel, s)?;
            expect_len(kernel, "x", lens.0, xl)?;
            expect_len(kernel, "grad_y", lens.1, yl)?;
            expect_len(kernel, "grad_w", lens.2, wl)?;
            let f = if kernel == k::conv2d_backward_weight_t64::NAME {
                k::conv2d_backward_weight_t64::launch
            } else {
                k::conv2d_backward_weight_t16::launch
            };
            let (splits, k_chunk) = (plan.splits as i32, plan.k_chunk as i32);
            if plan.splits == 1 {
                return f(
                    self,
                    &shapes,
                    plan.launch,
                    plan.geom,
                    &x,
                    &gy,
                    &mut gw,
                    splits,
                    k_chunk,
                );
            }
            let need = plan.splits * wl;
            let mut owned;
            let mut ws = match workspace {
                Some(ws) => {
                    if ws.len() < need {
                        return Err(shape(kernel)(KernelError::BufferLength {
                            buffer: "workspace",
                            expected: need,
                            actual: ws.len(),
                        }));
                    }
                    ws.slice_mut(..need)
                }
                None => {
                    owned = self.alloc(need)?;
                    owned.view_mut()
                }
            };
            f(
                self,
                &shapes,
                plan.launch,
                plan.geom,
                &x,
                &gy,
                &mut ws,
                splits,
                k_chunk,
            )?;
            let ws = ws.device_view();
            k::sum_splits::launch(
                self,
                &shapes,
                launch::elementwise(names::SUM_SPLITS, wl)?,
                wl as i32,
                splits,
                &ws,
                &mut gw,
            )
        })
    }

    /// Gradient w.r.t. the bias: `grad_y` summed over batch and space.
    pub fn conv2d_backward_bias(
        &self,
        s: &Conv2dShape,
        grad_y: &impl DeviceSlice<f32>,
        grad_b: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        s.validate().map_err(shape(names::BIAS_BACKWARD))?;
        let (oh, ow) = s.out_hw().map_err(shape(names::BIAS_BACKWARD))?;
        self.bias_backward(s.batch, s.params.out_channels, oh * ow, grad_y, grad_b)
    }
}
