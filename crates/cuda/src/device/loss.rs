//! Softmax and losses on the device: one checked wrapper per kernel.

use super::*;

impl CudaDevice {
    // ---- softmax and losses ---------------------------------------------------------------

    fn row_dims(
        kernel: &'static str,
        rows: usize,
        cols: usize,
        x: usize,
        y: usize,
        y_name: &'static str,
        y_cols: usize,
    ) -> Result<LaunchShape> {
        if rows == 0 || cols == 0 {
            return Err(zero(kernel, "rows and cols"));
        }
        expect_len(kernel, "x", x, rows.saturating_mul(cols))?;
        expect_len(kernel, y_name, y, rows.saturating_mul(y_cols))?;
        launch::rows(kernel, rows, cols)
    }

    /// Row-wise softmax ([`reference::softmax`]).
    pub fn softmax_forward(
        &self,
        rows: usize,
        cols: usize,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, mut y) = (x.device_view(), y.device_view_mut());
        let lens = (x.len(), y.len());
        let shapes = || format!("[{rows}, {cols}], x [{}], y [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            let shape = Self::row_dims(
                names::SOFTMAX_FORWARD,
                rows,
                cols,
                lens.0,
                lens.1,
                "y",
                cols,
            )?;
            k::softmax_forward::launch(self, &shapes, shape, rows as i32, cols as i32, &x, &mut y)
        })
    }

    /// Row-wise log-softmax ([`reference::log_softmax`]).
    pub fn log_softmax_forward(
        &self,
        rows: usize,
        cols: usize,
        x: &impl DeviceSlice<f32>,
        y: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, mut y) = (x.device_view(), y.device_view_mut());
        let lens = (x.len(), y.len());
        let shapes = || format!("[{rows}, {cols}], x [{}], y [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            let shape = Self::row_dims(
                names::LOG_SOFTMAX_FORWARD,
                rows,
                cols,
                lens.0,
                lens.1,
                "y",
                cols,
            )?;
            k::log_softmax_forward::launch(
                self,
                &shapes,
                shape,
                rows as i32,
                cols as i32,
                &x,
                &mut y,
            )
        })
    }

    /// Per-row cross-entropy `logsumexp(x) - x[label]` into `loss_rows` (NaN for a label
    /// `>= cols`: device labels are not read back to check them).
    pub fn softmax_xent_forward(
        &self,
        rows: usize,
        cols: usize,
        logits: &impl DeviceSlice<f32>,
        labels: &impl DeviceSlice<u32>,
        loss_rows: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, l, mut out) = (
            logits.device_view(),
            labels.device_view(),
            loss_rows.device_view_mut(),
        );
        let lens = (x.len(), l.len(), out.len());
        let shapes = || {
            format!(
                "[{rows}, {cols}], logits [{}], labels [{}], loss_rows [{}]",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let kernel = names::SOFTMAX_XENT_FORWARD;
            let shape = Self::row_dims(kernel, rows, cols, lens.0, lens.2, "loss_rows", 1)?;
            expect_len(kernel, "labels", lens.1, rows)?;
            k::softmax_xent_forward::launch(
                self,
                &shapes,
                shape,
                rows as i32,
                cols as i32,
                &x,
                &l,
                &mut out,
            )
        })
    }

    /// Gradient of the mean cross-entropy times `grad_loss`
    /// ([`reference::cross_entropy_backward`]), overwriting `grad`.
    pub fn softmax_xent_backward(
        &self,
        rows: usize,
        cols: usize,
        logits: &impl DeviceSlice<f32>,
        labels: &impl DeviceSlice<u32>,
        grad_loss: f32,
        grad: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, l, mut g) = (
            logits.device_view(),
            labels.device_view(),
            grad.device_view_mut(),
        );
        let lens = (x.len(), l.len(), g.len());
        let shapes = || {
            format!(
                "[{rows}, {cols}], logits [{}], labels [{}], grad [{}]",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let kernel = names::SOFTMAX_XENT_BACKWARD;
            let shape = Self::row_dims(kernel, rows, cols, lens.0, lens.2, "grad", cols)?;
            expect_len(kernel, "labels", lens.1, rows)?;
            let scale = grad_loss / rows as f32;
            k::softmax_xent_backward::launch(
                self,
                &shapes,
                shape,
                rows as i32,
                cols as i32,
                &x,
                &l,
                scale,
                &mut g,
            )
        })
    }

    /// Index of the first maximum of each row (NaN counts as the maximum).
    pub fn argmax_rows(
        &self,
        rows: usize,
        cols: usize,
        x: &impl DeviceSlice<f32>,
        out: &mut impl DeviceSliceMut<u32>,
    ) -> Result<()> {
        let (x, mut out) = (x.device_view(), out.device_view_mut());
        let lens = (x.len(), out.len());
        let shapes = || format!("[{rows}, {cols}], x [{}], out [{}]", lens.0, lens.1);
        self.op(&shapes, || {
            let shape = Self::row_dims(names::ARGMAX_ROWS, rows, cols, lens.0, lens.1, "out", 1)?;
            k::argmax_rows::launch(self, &shapes, shape, rows as i32, cols as i32, &x, &mut out)
        })
    }

    /// `correct[row] = 1.0` when the row's arg-max is its label, else 0.
    pub fn correct_rows(
        &self,
        rows: usize,
        cols: usize,
        logits: &impl DeviceSlice<f32>,
        labels: &impl DeviceSlice<u32>,
        correct: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, l, mut c) = (
            logits.device_view(),
            labels.device_view(),
            correct.device_view_mut(),
        );
        let lens = (x.len(), l.len(), c.len());
        let shapes = || {
            format!(
                "[{rows}, {cols}], logits [{}], labels [{}], correct [{}]",
                lens.0, lens.1, lens.2
            )
        };
        self.op(&shapes, || {
            let kernel = names::CORRECT_ROWS;
            let shape = Self::row_dims(kernel, rows, cols, lens.0, lens.2, "correct", 1)?;
            expect_len(kernel, "labels", lens.1, rows)?;
            k::correct_rows::launch(
                self,
                &shapes,
                shape,
                rows as i32,
                cols as i32,
                &x,
                &l,
                &mut c,
            )
        })
    }

    /// `out[0] = scale * sum(x)` in a fixed order; `partials` needs 256 elements, `out` one.
    pub fn reduce_sum_into(
        &self,
        x: &impl DeviceSlice<f32>,
        scale: f32,
        partials: &mut impl DeviceSliceMut<f32>,
        out: &mut impl DeviceSliceMut<f32>,
    ) -> Result<()> {
        let (x, mut partials, mut out) = (
            x.device_view(),
            partials.device_view_mut(),
            out.device_view_mut(),
        );
        let lens = (x.len(), partials.len(), out.len());
        let shapes = || format!("x [{}], partials [{}], out [{}]", lens.0, lens.1, lens.2);
        self.op(&shapes, || {
            let kernel = names::REDUCE_SUM;
            if lens.0 == 0 {
                return Err(zero(kernel, "elements to sum"));
            }
            let (first, second) = launch::reduce_sum(lens.0)?;
            if lens.1 < first.grid.0 as usize || lens.2 == 0 {
                return Err(CudaError::Invalid(format!(
                    "reduce_sum: partials needs {} elements (has {}), out needs 1 (has {})",
                    first.grid.0, lens.1, lens.2
                )));
            }
            k::reduce_sum::launch(self, &shapes, first, lens.0 as i32, &x, 1.0, &mut partials)?;
            let np = first.grid.0 as i32;
            let partials = partials.device_view();
            k::reduce_sum::launch(self, &shapes, second, np, &partials, scale, &mut out)
        })
    }

    /// `scale * sum(x)` read back to the host.
    pub fn sum(&self, x: &impl DeviceSlice<f32>, scale: f32) -> Result<f32> {
        let mut partials = self.alloc(launch::BLOCK as usize)?;
        let mut out = self.alloc(1)?;
        self.reduce_sum_into(x, scale, &mut partials, &mut out)?;
        Ok(self.download(&out)?[0])
    }

    /// Mean cross-entropy of `rows` logit rows ([`reference::cross_entropy`]); labels are
    /// checked on the host.
    pub fn cross_entropy(
        &self,
        rows: usize,
        cols: usize,
        logits: &impl DeviceSlice<f32>,
        labels: &[u32],
    ) -> Result<f32> {
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= cols) {
            return Err(shape(names::SOFTMAX_XENT_FORWARD)(
                KernelError::LabelOutOfRange {
                    row,
                    label: label as usize,
                    classes: cols,
                },
            ));
        }
        let labels_dev = self.upload_u32(labels)?;
        let mut loss = self.alloc(rows)?;
        self.softmax_xent_forward(rows, cols, logits, &labels_dev, &mut loss)?;
        self.sum(&loss, 1.0 / rows as f32)
    }
}
