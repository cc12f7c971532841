//! The device: a CUDA context with the PTX modules loaded, device tensors, and one safe
//! wrapper per kernel that checks shapes on the host before launching.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use tinycnn_kernels::{reference, AdamConfig, Conv2dShape, GemmShape, Pool2dShape, SgdConfig};

use crate::error::{driver, expect_len, shape, CudaError, Result};
use crate::launch::{self, LaunchShape};
use crate::ptx::{self, names};

/// One GPU with the tinycnn kernels loaded; all work goes to one stream, in order.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ctx.ordinal())
            .finish_non_exhaustive()
    }
}

/// An f32 tensor in device memory with its shape (row-major, NCHW for images).
pub struct CudaTensor {
    data: CudaSlice<f32>,
    shape: Vec<usize>,
}

impl CudaTensor {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }
    pub fn view(&self) -> CudaView<'_, f32> {
        self.data.as_view()
    }
    pub fn view_mut(&mut self) -> CudaViewMut<'_, f32> {
        self.data.as_view_mut()
    }
    /// The underlying device buffer.
    pub fn slice(&self) -> &CudaSlice<f32> {
        &self.data
    }
    pub fn slice_mut(&mut self) -> &mut CudaSlice<f32> {
        &mut self.data
    }
}

fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| CudaError::Invalid(format!("tensor shape {shape:?} overflows usize")))
}

/// Launches `$kernel` with `$shape` and the listed arguments, mapping a driver error to
/// [`CudaError::Launch`] with the kernel name and launch shape.
macro_rules! launch {
    ($dev:expr, $kernel:expr, $shape:expr, $($arg:expr),+ $(,)?) => {{
        let kernel: &'static str = $kernel;
        let shape: LaunchShape = $shape;
        let func = $dev.function(kernel)?;
        let mut builder = $dev.stream.launch_builder(func);
        $( builder.arg($arg); )+
        // SAFETY: every wrapper checks, before this point, that each buffer holds exactly
        // the elements the kernel indexes for the geometry it passes, and the argument
        // list matches the kernel's C signature (same order and types).
        unsafe { builder.launch(shape.config()) }
            .map(|_| ())
            .map_err(|source| CudaError::Launch { kernel, grid: shape.grid, block: shape.block, source })
    }};
}

impl CudaDevice {
    /// Opens GPU `ordinal` and loads every kernel.
    ///
    /// Fails with [`CudaError::NoDriver`] when libcuda is missing and
    /// [`CudaError::NoDevice`] when the driver finds no such GPU, so callers can skip.
    pub fn new(ordinal: usize) -> Result<Arc<Self>> {
        // SAFETY: only probes whether the shared library can be opened.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaError::NoDriver);
        }
        let ctx =
            CudaContext::new(ordinal).map_err(|source| CudaError::NoDevice { ordinal, source })?;
        let stream = ctx.default_stream();
        let mut modules = HashMap::new();
        let mut functions = HashMap::new();
        for &(module_name, kernel) in ptx::KERNELS {
            let module = match modules.get(module_name) {
                Some(m) => Arc::clone(m),
                None => {
                    let src = ptx::module(module_name).expect("every KERNELS module is in MODULES");
                    let m = ctx.load_module(Ptx::from_src(src.ptx)).map_err(|source| {
                        CudaError::Module {
                            module: module_name,
                            kernel,
                            source,
                        }
                    })?;
                    modules.insert(module_name, Arc::clone(&m));
                    m
                }
            };
            let f = module
                .load_function(kernel)
                .map_err(|source| CudaError::Module {
                    module: module_name,
                    kernel,
                    source,
                })?;
            functions.insert(kernel, f);
        }
        Ok(Arc::new(CudaDevice {
            ctx,
            stream,
            functions,
        }))
    }

    fn function(&self, kernel: &'static str) -> Result<&CudaFunction> {
        self.functions.get(kernel).ok_or_else(|| {
            CudaError::Invalid(format!("kernel `{kernel}` is not in the kernel table"))
        })
    }

    /// The GPU's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> Result<String> {
        self.ctx.name().map_err(driver("device name"))
    }

    /// (major, minor) compute capability.
    pub fn compute_capability(&self) -> Result<(i32, i32)> {
        self.ctx
            .compute_capability()
            .map_err(driver("compute capability"))
    }

    /// The stream all kernels run on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits for all queued work; kernel faults are reported here.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver("synchronize"))
    }

    /// Copies `data` to the device as a tensor of `shape`.
    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Result<CudaTensor> {
        let n = numel(shape)?;
        if n != data.len() {
            return Err(CudaError::Invalid(format!(
                "upload: shape {shape:?} has {n} elements but the data has {}",
                data.len()
            )));
        }
        if n == 0 {
            return Err(CudaError::Invalid(format!(
                "upload: shape {shape:?} is empty"
            )));
        }
        let data = self.stream.clone_htod(data).map_err(driver("upload"))?;
        Ok(CudaTensor {
            data,
            shape: shape.to_vec(),
        })
    }

    /// A zero-filled tensor of `shape`.
    pub fn zeros(&self, shape: &[usize]) -> Result<CudaTensor> {
        let n = numel(shape)?;
        if n == 0 {
            return Err(CudaError::Invalid(format!(
                "zeros: shape {shape:?} is empty"
            )));
        }
        let data = self.stream.alloc_zeros::<f32>(n).map_err(driver("alloc"))?;
        Ok(CudaTensor {
            data,
            shape: shape.to_vec(),
        })
    }

    /// Copies `data` to a new device buffer of u32 (labels, arg-max indices).
    pub fn upload_u32(&self, data: &[u32]) -> Result<CudaSlice<u32>> {
        if data.is_empty() {
            return Err(CudaError::Invalid("upload_u32: empty data".into()));
        }
        self.stream.clone_htod(data).map_err(driver("upload"))
    }

    /// A zero-filled device buffer of `len` elements (`len >= 1`).
    pub fn alloc_zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len.max(1))
            .map_err(driver("alloc"))
    }

    /// Copies a tensor back to the host (waits for queued work).
    pub fn download(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(&t.data).map_err(driver("download"))
    }

    /// Copies any device view back to the host (waits for queued work).
    pub fn download_view<T: cudarc::driver::DeviceRepr>(
        &self,
        v: &CudaView<'_, T>,
    ) -> Result<Vec<T>> {
        self.stream.clone_dtoh(v).map_err(driver("download"))
    }

    /// Copies host data into an existing device view of the same length.
    pub fn copy_to_device<T: cudarc::driver::DeviceRepr>(
        &self,
        src: &[T],
        dst: &mut CudaViewMut<'_, T>,
    ) -> Result<()> {
        if src.len() != dst.len() {
            return Err(CudaError::Invalid(format!(
                "copy to device: {} host elements into a device buffer of {}",
                src.len(),
                dst.len()
            )));
        }
        self.stream
            .memcpy_htod(src, dst)
            .map_err(driver("host-to-device copy"))
    }

    /// Device-to-device copy between views of the same length.
    pub fn copy_device(
        &self,
        src: &CudaView<'_, f32>,
        dst: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        if src.len() != dst.len() {
            return Err(CudaError::Invalid(format!(
                "device copy: {} elements into a buffer of {}",
                src.len(),
                dst.len()
            )));
        }
        self.stream
            .memcpy_dtod(src, dst)
            .map_err(driver("device-to-device copy"))
    }

    /// Sets a view to zero.
    pub fn fill_zeros(&self, dst: &mut CudaViewMut<'_, f32>) -> Result<()> {
        self.stream.memset_zeros(dst).map_err(driver("memset"))
    }

    // ---- matrix product ----------------------------------------------------------------

    /// `C = alpha op(A) op(B) + beta C` ([`reference::sgemm`]); with `beta == 0` C is not read.
    pub fn sgemm(
        &self,
        g: &GemmShape,
        alpha: f32,
        a: &CudaView<'_, f32>,
        b: &CudaView<'_, f32>,
        beta: f32,
        c: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let (kernel, shape) = launch::sgemm(g, a.len(), b.len(), c.len())?;
        let (m, n, k) = (g.m as i32, g.n as i32, g.k as i32);
        let (lda, ldb, ldc) = (g.lda as i32, g.ldb as i32, g.ldc as i32);
        launch!(self, kernel, shape, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc)
    }

    // ---- convolution -------------------------------------------------------------------

    /// `y = conv(x, w) + bias` ([`reference::conv2d`]).
    pub fn conv2d_forward(
        &self,
        s: &Conv2dShape,
        x: &CudaView<'_, f32>,
        w: &CudaView<'_, f32>,
        bias: Option<&CudaView<'_, f32>>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let (kernel, geom, shape) = launch::conv2d_forward(s)?;
        let (xl, wl, yl) = launch::conv_lens(kernel, s)?;
        expect_len(kernel, "x", x.len(), xl)?;
        expect_len(kernel, "w", w.len(), wl)?;
        expect_len(kernel, "y", y.len(), yl)?;
        match bias {
            Some(b) => {
                expect_len(kernel, "bias", b.len(), s.params.out_channels)?;
                launch!(self, kernel, shape, &geom, x, w, b, y)
            }
            None => {
                let null: u64 = 0;
                launch!(self, kernel, shape, &geom, x, w, &null, y)
            }
        }
    }

    /// Gradient w.r.t. the input, overwriting `grad_x` ([`reference::conv2d_backward_input`]).
    pub fn conv2d_backward_input(
        &self,
        s: &Conv2dShape,
        grad_y: &CudaView<'_, f32>,
        w: &CudaView<'_, f32>,
        grad_x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let (kernel, geom, shape) = launch::conv2d_backward_input(s)?;
        let (xl, wl, yl) = launch::conv_lens(kernel, s)?;
        expect_len(kernel, "grad_y", grad_y.len(), yl)?;
        expect_len(kernel, "w", w.len(), wl)?;
        expect_len(kernel, "grad_x", grad_x.len(), xl)?;
        launch!(self, kernel, shape, &geom, grad_y, w, grad_x)
    }

    /// Gradient w.r.t. the weight summed over the batch, overwriting `grad_w`
    /// ([`reference::conv2d_backward_weight`]). `workspace` must hold
    /// [`launch::conv2d_backward_weight_workspace_len`] elements; `None` allocates it.
    pub fn conv2d_backward_weight(
        &self,
        s: &Conv2dShape,
        x: &CudaView<'_, f32>,
        grad_y: &CudaView<'_, f32>,
        grad_w: &mut CudaViewMut<'_, f32>,
        workspace: Option<&mut CudaViewMut<'_, f32>>,
    ) -> Result<()> {
        let plan = launch::conv2d_backward_weight(s)?;
        let kernel = plan.kernel;
        let (xl, wl, yl) = launch::conv_lens(kernel, s)?;
        expect_len(kernel, "x", x.len(), xl)?;
        expect_len(kernel, "grad_y", grad_y.len(), yl)?;
        expect_len(kernel, "grad_w", grad_w.len(), wl)?;
        let (splits, k_chunk) = (plan.splits as i32, plan.k_chunk as i32);
        if plan.splits == 1 {
            return launch!(
                self,
                kernel,
                plan.launch,
                &plan.geom,
                x,
                grad_y,
                grad_w,
                &splits,
                &k_chunk
            );
        }
        let need = plan.splits * wl;
        let mut owned;
        let mut ws = match workspace {
            Some(ws) => {
                if ws.len() < need {
                    return Err(CudaError::Shape {
                        kernel,
                        source: tinycnn_kernels::KernelError::BufferLength {
                            buffer: "workspace",
                            expected: need,
                            actual: ws.len(),
                        },
                    });
                }
                ws.slice_mut(..need)
            }
            None => {
                owned = self
                    .stream
                    .alloc_zeros::<f32>(need)
                    .map_err(driver("alloc"))?;
                owned.as_view_mut()
            }
        };
        launch!(
            self,
            kernel,
            plan.launch,
            &plan.geom,
            x,
            grad_y,
            &mut ws,
            &splits,
            &k_chunk
        )?;
        let len = wl as i32;
        launch!(
            self,
            names::SUM_SPLITS,
            launch::elementwise(names::SUM_SPLITS, wl)?,
            &len,
            &splits,
            &mut ws,
            grad_w
        )
    }

    /// Gradient w.r.t. the bias: `grad_y` summed over batch and space.
    pub fn conv2d_backward_bias(
        &self,
        s: &Conv2dShape,
        grad_y: &CudaView<'_, f32>,
        grad_b: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let (oh, ow) = s.out_hw().map_err(shape(names::BIAS_BACKWARD))?;
        s.validate().map_err(shape(names::BIAS_BACKWARD))?;
        self.bias_backward(s.batch, s.params.out_channels, oh * ow, grad_y, grad_b)
    }

    // ---- pooling -------------------------------------------------------------------------

    /// Max pooling with arg-max within each plane ([`reference::max_pool2d`]).
    pub fn max_pool2d_forward(
        &self,
        s: &Pool2dShape,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
        argmax: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let kernel = names::MAX_POOL_FORWARD;
        let geom = launch::pool_geom(kernel, s)?;
        launch::pool_lens(kernel, s, x.len(), y.len())?;
        expect_len(kernel, "argmax", argmax.len(), y.len())?;
        launch!(
            self,
            kernel,
            launch::elementwise(kernel, y.len())?,
            &geom,
            x,
            y,
            argmax
        )
    }

    /// Gradient of max pooling, overwriting `grad_x` ([`reference::max_pool2d_backward`]).
    /// An arg-max outside its plane contributes nothing (the CPU kernel reports an error).
    pub fn max_pool2d_backward(
        &self,
        s: &Pool2dShape,
        grad_y: &CudaView<'_, f32>,
        argmax: &CudaView<'_, u32>,
        grad_x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::MAX_POOL_BACKWARD;
        let geom = launch::pool_geom(kernel, s)?;
        launch::pool_lens(kernel, s, grad_x.len(), grad_y.len())?;
        expect_len(kernel, "argmax", argmax.len(), grad_y.len())?;
        launch!(
            self,
            kernel,
            launch::elementwise(kernel, grad_x.len())?,
            &geom,
            grad_y,
            argmax,
            grad_x
        )
    }

    /// Average pooling ([`reference::avg_pool2d`]).
    pub fn avg_pool2d_forward(
        &self,
        s: &Pool2dShape,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::AVG_POOL_FORWARD;
        let geom = launch::pool_geom(kernel, s)?;
        launch::pool_lens(kernel, s, x.len(), y.len())?;
        launch!(
            self,
            kernel,
            launch::elementwise(kernel, y.len())?,
            &geom,
            x,
            y
        )
    }

    /// Gradient of average pooling, overwriting `grad_x` ([`reference::avg_pool2d_backward`]).
    pub fn avg_pool2d_backward(
        &self,
        s: &Pool2dShape,
        grad_y: &CudaView<'_, f32>,
        grad_x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::AVG_POOL_BACKWARD;
        let geom = launch::pool_geom(kernel, s)?;
        launch::pool_lens(kernel, s, grad_x.len(), grad_y.len())?;
        launch!(
            self,
            kernel,
            launch::elementwise(kernel, grad_x.len())?,
            &geom,
            grad_y,
            grad_x
        )
    }

    // ---- activations ---------------------------------------------------------------------

    fn unary(
        &self,
        kernel: &'static str,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        expect_len(kernel, "y", y.len(), x.len())?;
        if x.is_empty() {
            return Ok(());
        }
        let n = x.len() as i32;
        launch!(
            self,
            kernel,
            launch::elementwise(kernel, x.len())?,
            &n,
            x,
            y
        )
    }

    fn unary_backward(
        &self,
        kernel: &'static str,
        saved: &CudaView<'_, f32>,
        grad_y: &CudaView<'_, f32>,
        grad_x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        expect_len(kernel, "grad_y", grad_y.len(), saved.len())?;
        expect_len(kernel, "grad_x", grad_x.len(), saved.len())?;
        if saved.is_empty() {
            return Ok(());
        }
        let n = saved.len() as i32;
        launch!(
            self,
            kernel,
            launch::elementwise(kernel, saved.len())?,
            &n,
            saved,
            grad_y,
            grad_x
        )
    }

    /// `y = max(x, 0)`.
    pub fn relu_forward(&self, x: &CudaView<'_, f32>, y: &mut CudaViewMut<'_, f32>) -> Result<()> {
        self.unary(names::RELU_FORWARD, x, y)
    }
    /// From the forward input `x`.
    pub fn relu_backward(
        &self,
        x: &CudaView<'_, f32>,
        grad_y: &CudaView<'_, f32>,
        grad_x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        self.unary_backward(names::RELU_BACKWARD, x, grad_y, grad_x)
    }
    pub fn sigmoid_forward(
        &self,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        self.unary(names::SIGMOID_FORWARD, x, y)
    }
    /// From the forward output `y`.
    pub fn sigmoid_backward(
        &self,
        y: &CudaView<'_, f32>,
        grad_y: &CudaView<'_, f32>,
        grad_x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        self.unary_backward(names::SIGMOID_BACKWARD, y, grad_y, grad_x)
    }
    pub fn tanh_forward(&self, x: &CudaView<'_, f32>, y: &mut CudaViewMut<'_, f32>) -> Result<()> {
        self.unary(names::TANH_FORWARD, x, y)
    }
    /// From the forward output `y`.
    pub fn tanh_backward(
        &self,
        y: &CudaView<'_, f32>,
        grad_y: &CudaView<'_, f32>,
        grad_x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        self.unary_backward(names::TANH_BACKWARD, y, grad_y, grad_x)
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
            return Err(CudaError::Shape {
                kernel,
                source: tinycnn_kernels::KernelError::Zero {
                    what: "bias outer/channels/inner",
                },
            });
        }
        expect_len(kernel, "bias", bias, channels)?;
        let total = outer
            .checked_mul(channels)
            .and_then(|v| v.checked_mul(inner))
            .ok_or(CudaError::Shape {
                kernel,
                source: tinycnn_kernels::KernelError::Overflow { what: "bias input" },
            })?;
        expect_len(kernel, "x", x, total)
    }

    /// `x[o, c, i] += bias[c]` ([`reference::bias_add`]).
    pub fn bias_add(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        bias: &CudaView<'_, f32>,
        x: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::BIAS_ADD;
        Self::bias_dims(kernel, outer, channels, inner, bias.len(), x.len())?;
        let shape = launch::elementwise(kernel, x.len())?;
        let (o, c, i) = (outer as i32, channels as i32, inner as i32);
        launch!(self, kernel, shape, &o, &c, &i, bias, x)
    }

    /// `grad_bias[c] = sum over o, i of grad_y[o, c, i]` ([`reference::bias_backward`]).
    pub fn bias_backward(
        &self,
        outer: usize,
        channels: usize,
        inner: usize,
        grad_y: &CudaView<'_, f32>,
        grad_bias: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::BIAS_BACKWARD;
        Self::bias_dims(
            kernel,
            outer,
            channels,
            inner,
            grad_bias.len(),
            grad_y.len(),
        )?;
        launch::elementwise(kernel, grad_y.len())?;
        let shape = LaunchShape {
            grid: (channels as u32, 1, 1),
            block: (launch::BLOCK, 1, 1),
        };
        let (o, c, i) = (outer as i32, channels as i32, inner as i32);
        launch!(self, kernel, shape, &o, &c, &i, grad_y, grad_bias)
    }

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
            return Err(CudaError::Shape {
                kernel,
                source: tinycnn_kernels::KernelError::Zero {
                    what: "rows and cols",
                },
            });
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
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::SOFTMAX_FORWARD;
        let shape = Self::row_dims(kernel, rows, cols, x.len(), y.len(), "y", cols)?;
        let (r, c) = (rows as i32, cols as i32);
        launch!(self, kernel, shape, &r, &c, x, y)
    }

    /// Row-wise log-softmax ([`reference::log_softmax`]).
    pub fn log_softmax_forward(
        &self,
        rows: usize,
        cols: usize,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::LOG_SOFTMAX_FORWARD;
        let shape = Self::row_dims(kernel, rows, cols, x.len(), y.len(), "y", cols)?;
        let (r, c) = (rows as i32, cols as i32);
        launch!(self, kernel, shape, &r, &c, x, y)
    }

    /// Per-row cross-entropy `logsumexp(x) - x[label]` into `loss_rows` (NaN for a label
    /// `>= cols`: device labels are not read back to check them).
    pub fn softmax_xent_forward(
        &self,
        rows: usize,
        cols: usize,
        logits: &CudaView<'_, f32>,
        labels: &CudaView<'_, u32>,
        loss_rows: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::SOFTMAX_XENT_FORWARD;
        let shape = Self::row_dims(
            kernel,
            rows,
            cols,
            logits.len(),
            loss_rows.len(),
            "loss_rows",
            1,
        )?;
        expect_len(kernel, "labels", labels.len(), rows)?;
        let (r, c) = (rows as i32, cols as i32);
        launch!(self, kernel, shape, &r, &c, logits, labels, loss_rows)
    }

    /// Gradient of the mean cross-entropy times `grad_loss`
    /// ([`reference::cross_entropy_backward`]), overwriting `grad`.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_xent_backward(
        &self,
        rows: usize,
        cols: usize,
        logits: &CudaView<'_, f32>,
        labels: &CudaView<'_, u32>,
        grad_loss: f32,
        grad: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::SOFTMAX_XENT_BACKWARD;
        let shape = Self::row_dims(kernel, rows, cols, logits.len(), grad.len(), "grad", cols)?;
        expect_len(kernel, "labels", labels.len(), rows)?;
        let (r, c) = (rows as i32, cols as i32);
        let scale = grad_loss / rows as f32;
        launch!(self, kernel, shape, &r, &c, logits, labels, &scale, grad)
    }

    /// Index of the first maximum of each row.
    pub fn argmax_rows(
        &self,
        rows: usize,
        cols: usize,
        x: &CudaView<'_, f32>,
        out: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let kernel = names::ARGMAX_ROWS;
        let shape = Self::row_dims(kernel, rows, cols, x.len(), out.len(), "out", 1)?;
        let (r, c) = (rows as i32, cols as i32);
        launch!(self, kernel, shape, &r, &c, x, out)
    }

    /// `correct[row] = 1.0` when the row's arg-max is its label, else 0.
    pub fn correct_rows(
        &self,
        rows: usize,
        cols: usize,
        logits: &CudaView<'_, f32>,
        labels: &CudaView<'_, u32>,
        correct: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::CORRECT_ROWS;
        let shape = Self::row_dims(
            kernel,
            rows,
            cols,
            logits.len(),
            correct.len(),
            "correct",
            1,
        )?;
        expect_len(kernel, "labels", labels.len(), rows)?;
        let (r, c) = (rows as i32, cols as i32);
        launch!(self, kernel, shape, &r, &c, logits, labels, correct)
    }

    /// `out[0] = scale * sum(x)` in a fixed order; `partials` needs 256 elements.
    pub fn reduce_sum_into(
        &self,
        x: &CudaView<'_, f32>,
        scale: f32,
        partials: &mut CudaViewMut<'_, f32>,
        out: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::REDUCE_SUM;
        if x.is_empty() {
            return Err(CudaError::Shape {
                kernel,
                source: tinycnn_kernels::KernelError::Zero {
                    what: "elements to sum",
                },
            });
        }
        let (first, second) = launch::reduce_sum(x.len())?;
        if partials.len() < first.grid.0 as usize || out.is_empty() {
            return Err(CudaError::Invalid(format!(
                "reduce_sum: partials needs {} elements (has {}), out needs 1 (has {})",
                first.grid.0,
                partials.len(),
                out.len()
            )));
        }
        let n = x.len() as i32;
        let one = 1.0f32;
        launch!(self, kernel, first, &n, x, &one, &mut *partials)?;
        let np = first.grid.0 as i32;
        launch!(self, kernel, second, &np, &mut *partials, &scale, out)
    }

    /// `scale * sum(x)` read back to the host.
    pub fn sum(&self, x: &CudaView<'_, f32>, scale: f32) -> Result<f32> {
        let mut partials = self.alloc_zeros::<f32>(launch::BLOCK as usize)?;
        let mut out = self.alloc_zeros::<f32>(1)?;
        self.reduce_sum_into(
            x,
            scale,
            &mut partials.as_view_mut(),
            &mut out.as_view_mut(),
        )?;
        Ok(self.download_view(&out.as_view())?[0])
    }

    /// Mean cross-entropy of `rows` logit rows ([`reference::cross_entropy`]); labels are
    /// checked on the host.
    pub fn cross_entropy(
        &self,
        rows: usize,
        cols: usize,
        logits: &CudaView<'_, f32>,
        labels: &[u32],
    ) -> Result<f32> {
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= cols) {
            return Err(CudaError::Shape {
                kernel: names::SOFTMAX_XENT_FORWARD,
                source: tinycnn_kernels::KernelError::LabelOutOfRange {
                    row,
                    label: label as usize,
                    classes: cols,
                },
            });
        }
        let labels_dev = self.upload_u32(labels)?;
        let mut loss = self.alloc_zeros::<f32>(rows)?;
        self.softmax_xent_forward(
            rows,
            cols,
            logits,
            &labels_dev.as_view(),
            &mut loss.as_view_mut(),
        )?;
        self.sum(&loss.as_view(), 1.0 / rows as f32)
    }

    // ---- optimizers --------------------------------------------------------------------------

    /// One `torch.optim.SGD` step ([`reference::sgd_step`]); `momentum_buf` is needed (and
    /// must match the parameter) when `cfg.momentum != 0`.
    pub fn sgd_step(
        &self,
        cfg: &SgdConfig,
        param: &mut CudaViewMut<'_, f32>,
        grad: &CudaView<'_, f32>,
        momentum_buf: Option<&mut CudaViewMut<'_, f32>>,
        first_step: bool,
    ) -> Result<()> {
        let kernel = names::SGD_STEP;
        // The CPU reference's own checks on empty slices validate the hyper-parameters,
        // so both back ends refuse the same configurations.
        reference::sgd_step(cfg, &mut [], &[], &mut [], true).map_err(shape(kernel))?;
        expect_len(kernel, "grad", grad.len(), param.len())?;
        if param.is_empty() {
            return Ok(());
        }
        let shape = launch::elementwise(kernel, param.len())?;
        let n = param.len() as i32;
        let (nesterov, first) = (cfg.nesterov as i32, first_step as i32);
        match momentum_buf {
            Some(buf) => {
                expect_len(kernel, "momentum_buf", buf.len(), param.len())?;
                launch!(
                    self,
                    kernel,
                    shape,
                    &n,
                    &cfg.lr,
                    &cfg.momentum,
                    &cfg.dampening,
                    &cfg.weight_decay,
                    &nesterov,
                    &first,
                    param,
                    grad,
                    buf
                )
            }
            None if cfg.momentum != 0.0 => Err(CudaError::Shape {
                kernel,
                source: tinycnn_kernels::KernelError::BufferLength {
                    buffer: "momentum_buf",
                    expected: param.len(),
                    actual: 0,
                },
            }),
            None => {
                let null: u64 = 0;
                launch!(
                    self,
                    kernel,
                    shape,
                    &n,
                    &cfg.lr,
                    &cfg.momentum,
                    &cfg.dampening,
                    &cfg.weight_decay,
                    &nesterov,
                    &first,
                    param,
                    grad,
                    &null
                )
            }
        }
    }

    /// One `torch.optim.Adam` step ([`reference::adam_step`]); `step` counts from 1.
    pub fn adam_step(
        &self,
        cfg: &AdamConfig,
        step: u32,
        param: &mut CudaViewMut<'_, f32>,
        grad: &CudaView<'_, f32>,
        m: &mut CudaViewMut<'_, f32>,
        v: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let kernel = names::ADAM_STEP;
        reference::adam_step(cfg, step, &mut [], &[], &mut [], &mut []).map_err(shape(kernel))?;
        expect_len(kernel, "grad", grad.len(), param.len())?;
        expect_len(kernel, "m", m.len(), param.len())?;
        expect_len(kernel, "v", v.len(), param.len())?;
        if param.is_empty() {
            return Ok(());
        }
        let (step_size, bc2_sqrt) = adam_scalars(cfg, step);
        let shape = launch::elementwise(kernel, param.len())?;
        let n = param.len() as i32;
        launch!(
            self,
            kernel,
            shape,
            &n,
            &step_size,
            &cfg.beta1,
            &cfg.beta2,
            &cfg.eps,
            &cfg.weight_decay,
            &bc2_sqrt,
            param,
            grad,
            m,
            v
        )
    }

    /// Copies samples `perm[offset..offset + batch]` of a device data set into a batch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gather_batch(
        &self,
        batch: usize,
        sample_len: usize,
        perm: &CudaView<'_, u32>,
        offset: usize,
        images: &CudaView<'_, f32>,
        labels: &CudaView<'_, u32>,
        out_images: &mut CudaViewMut<'_, f32>,
        out_labels: &mut CudaViewMut<'_, u32>,
    ) -> Result<()> {
        let kernel = names::GATHER_BATCH;
        if offset + batch > perm.len() {
            return Err(CudaError::Invalid(format!(
                "gather: rows {offset}..{} past the permutation ({})",
                offset + batch,
                perm.len()
            )));
        }
        expect_len(kernel, "out_images", out_images.len(), batch * sample_len)?;
        expect_len(kernel, "out_labels", out_labels.len(), batch)?;
        let shape = launch::elementwise(kernel, batch * sample_len)?;
        let (b, sl, off) = (batch as i32, sample_len as i32, offset as i32);
        launch!(self, kernel, shape, &b, &sl, perm, &off, images, labels, out_images, out_labels)
    }
}

/// Adam's host-side scalars, computed as the CPU reference does: `lr / (1 - beta1^t)` and
/// `sqrt(1 - beta2^t)`.
pub fn adam_scalars(cfg: &AdamConfig, step: u32) -> (f32, f32) {
    let bc1 = 1.0 - cfg.beta1.powf(step as f32);
    let bc2 = 1.0 - cfg.beta2.powf(step as f32);
    (cfg.lr / bc1, bc2.sqrt())
}
