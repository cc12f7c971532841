//! The device: a CUDA context and stream with the kernels loaded (or the emulated device),
//! memory through the caching allocator, and one safe wrapper per kernel that checks shapes
//! on the host before launching through the kernel table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use cudarc::nvrtc::Ptx;
use tinycnn_kernels::{
    reference, AdamConfig, AdaptivePool2dShape, BatchNormShape, Conv2dShape, GemmShape,
    KernelError, Pool2dShape, SgdConfig, Transpose,
};

use crate::buffer::{
    size_class, CudaBuffer, CudaBufferU32, CudaBufferView, CudaBufferViewMut, DeviceBuffer,
    DeviceSlice, DeviceSliceMut, Elem, MemoryStats, Pool, Raw, ViewInner, ViewMutInner,
};
use crate::error::{driver, expect_len, shape, BackendError, CudaError, Result};
use crate::kernels as k;
use crate::launch::{self, LaunchShape};
use crate::ptx::{self, names};

/// Where the kernels run.
pub(crate) enum Backend {
    Cuda {
        ctx: Arc<CudaContext>,
        stream: Arc<CudaStream>,
        functions: HashMap<&'static str, CudaFunction>,
    },
    #[cfg(feature = "emu")]
    Emu {
        functions: HashMap<&'static str, crate::emu::Entry>,
    },
}

pub(crate) fn function<'a>(
    functions: &'a HashMap<&'static str, CudaFunction>,
    kernel: &'static str,
) -> Result<&'a CudaFunction> {
    functions
        .get(kernel)
        .ok_or_else(|| CudaError::Invalid(format!("kernel `{kernel}` is not in the kernel table")))
}

/// Tells devices apart, so a buffer of one device passed to another is refused.
static NEXT_DEVICE_ID: AtomicU64 = AtomicU64::new(1);

/// One GPU (or the emulated device) with the tinycnn kernels loaded. All work goes, in
/// order, to one stream of its own (not the legacy default stream, which would serialise
/// with every other library in the process).
pub struct CudaDevice {
    id: u64,
    ordinal: usize,
    backend: Backend,
    pool: Arc<Pool>,
    sync_launches: AtomicBool,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("emulated", &self.is_emulated())
            .finish_non_exhaustive()
    }
}

/// `TINYCNN_CUDA_SYNC=1`: synchronise after every launch, so a device fault is reported by
/// the launch of the kernel that caused it (slow; for debugging).
fn sync_from_env() -> bool {
    std::env::var("TINYCNN_CUDA_SYNC").is_ok_and(|v| v == "1")
}

fn zero(kernel: &'static str, what: &'static str) -> CudaError {
    shape(kernel)(KernelError::Zero { what })
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
        // SAFETY: every buffer of this device is allocated, used and freed on its one stream
        // (the caching allocator hands memory back in stream order), so the per-slice events
        // cudarc would otherwise record at every launch once a second stream exists guard
        // nothing here; they would only cost two event records per argument.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(driver("create stream"))?;
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
                            source: source.into(),
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
                    source: source.into(),
                })?;
            functions.insert(kernel, f);
        }
        Ok(Self::with_backend(
            ordinal,
            Backend::Cuda {
                ctx,
                stream,
                functions,
            },
        ))
    }

    /// The emulated device: the same kernels compiled for the host (kernels-cuda/emu), on
    /// host memory. Every wrapper runs the same checks, launch planning and argument list as
    /// on a GPU; only the final launch differs. Launches run synchronously on the calling
    /// thread. For tests: correctness, not speed.
    #[cfg(feature = "emu")]
    pub fn emulated() -> Result<Arc<Self>> {
        let functions = crate::emu::load(ptx::KERNELS)?;
        Ok(Self::with_backend(0, Backend::Emu { functions }))
    }

    fn with_backend(ordinal: usize, backend: Backend) -> Arc<Self> {
        Arc::new(CudaDevice {
            id: NEXT_DEVICE_ID.fetch_add(1, Ordering::Relaxed),
            ordinal,
            backend,
            pool: Arc::new(Pool::default()),
            sync_launches: AtomicBool::new(sync_from_env()),
        })
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The CUDA ordinal this device was opened with (0 for the emulated device).
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Whether this is the emulated device.
    pub fn is_emulated(&self) -> bool {
        !matches!(self.backend, Backend::Cuda { .. })
    }

    /// The GPU's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> Result<String> {
        match &self.backend {
            Backend::Cuda { ctx, .. } => ctx.name().map_err(driver("device name")),
            #[cfg(feature = "emu")]
            Backend::Emu { .. } => Ok("tinycnn emulated CUDA device (host)".into()),
        }
    }

    /// (major, minor) compute capability; the emulated device reports (8, 0), the PTX target.
    pub fn compute_capability(&self) -> Result<(i32, i32)> {
        match &self.backend {
            Backend::Cuda { ctx, .. } => ctx
                .compute_capability()
                .map_err(driver("compute capability")),
            #[cfg(feature = "emu")]
            Backend::Emu { .. } => Ok((8, 0)),
        }
    }

    /// The stream all kernels run on (`None` on the emulated device).
    pub fn stream(&self) -> Option<&Arc<CudaStream>> {
        match &self.backend {
            Backend::Cuda { stream, .. } => Some(stream),
            #[cfg(feature = "emu")]
            Backend::Emu { .. } => None,
        }
    }

    /// Waits for all queued work; kernel faults are reported here.
    pub fn synchronize(&self) -> Result<()> {
        self.sync_inner().map_err(|e| match e {
            BackendError::Driver(source) => CudaError::Driver {
                op: "synchronize",
                source,
            },
            other => CudaError::Invalid(other.to_string()),
        })
    }

    fn sync_inner(&self) -> std::result::Result<(), BackendError> {
        match &self.backend {
            Backend::Cuda { stream, .. } => Ok(stream.synchronize()?),
            #[cfg(feature = "emu")]
            Backend::Emu { .. } => Ok(()),
        }
    }

    /// Whether every launch synchronises (see [`CudaError::Fault`]); set at creation from
    /// `TINYCNN_CUDA_SYNC=1`.
    pub fn sync_launches(&self) -> bool {
        self.sync_launches.load(Ordering::Relaxed)
    }

    /// Turns synchronising after every launch on or off.
    pub fn set_sync_launches(&self, on: bool) {
        self.sync_launches.store(on, Ordering::Relaxed)
    }

    /// The end of every launch: names the kernel and shapes in an error, and synchronises
    /// when asked to so that a fault is blamed on its kernel.
    pub(crate) fn finish_launch(
        &self,
        kernel: &'static str,
        shapes: &dyn Fn() -> String,
        shape: LaunchShape,
        result: std::result::Result<(), BackendError>,
    ) -> Result<()> {
        result.map_err(|source| CudaError::Launch {
            kernel,
            shapes: shapes(),
            grid: shape.grid,
            block: shape.block,
            source,
        })?;
        if self.sync_launches() {
            self.sync_inner().map_err(|source| CudaError::Fault {
                kernel,
                shapes: shapes(),
                source,
            })?;
        }
        Ok(())
    }

    // ---- memory --------------------------------------------------------------------------

    /// Counters of the caching allocator.
    pub fn memory_stats(&self) -> MemoryStats {
        self.pool.stats()
    }

    /// Returns every cached (free) block to the driver; returns the bytes released.
    pub fn empty_cache(&self) -> usize {
        self.pool.empty()
    }

    fn fresh<T: Elem>(&self, class: usize) -> Result<Raw<T>> {
        match &self.backend {
            Backend::Cuda { stream, .. } => {
                // SAFETY: the memory is uninitialised, which `alloc` documents; any bit
                // pattern is a valid f32/u32, so reading it back is garbage, not UB.
                let first = unsafe { stream.alloc::<T>(class) };
                let slice = match first {
                    Ok(s) => s,
                    Err(_) => {
                        // Out of memory (most likely): give the cache back and retry once.
                        self.pool.empty();
                        // SAFETY: as above.
                        unsafe { stream.alloc::<T>(class) }.map_err(driver("alloc"))?
                    }
                };
                Ok(Raw::Cuda(slice))
            }
            #[cfg(feature = "emu")]
            Backend::Emu { .. } => Ok(Raw::Host(vec![T::default(); class].into_boxed_slice())),
        }
    }

    /// A buffer of `len` elements of `T` with unspecified contents (on the emulated device:
    /// NaN or `u32::MAX`, so reading what no kernel wrote shows up).
    pub fn alloc_elem<T: Elem>(&self, len: usize) -> Result<DeviceBuffer<T>> {
        let class = size_class(len);
        let raw = match self.pool.take::<T>(class) {
            Some(raw) => raw,
            None => {
                let raw = self.fresh::<T>(class)?;
                self.pool.note_alloc::<T>(class);
                raw
            }
        };
        #[allow(unused_mut)]
        let mut buf = DeviceBuffer::new(raw, len, class, Arc::clone(&self.pool), self.id);
        #[cfg(feature = "emu")]
        if let ViewMutInner::Host(h) = buf.view_mut().inner {
            h.fill(T::POISON);
        }
        Ok(buf)
    }

    /// An f32 buffer of `len` elements with unspecified contents.
    pub fn alloc(&self, len: usize) -> Result<CudaBuffer> {
        self.alloc_elem(len)
    }

    /// A u32 buffer of `len` elements with unspecified contents.
    pub fn alloc_u32(&self, len: usize) -> Result<CudaBufferU32> {
        self.alloc_elem(len)
    }

    /// A zero-filled buffer of `len` elements of `T`.
    pub fn alloc_zeros<T: Elem>(&self, len: usize) -> Result<DeviceBuffer<T>> {
        let mut buf = self.alloc_elem::<T>(len)?;
        self.fill_zeros(&mut buf)?;
        Ok(buf)
    }

    /// A zero-filled f32 buffer of `len` elements.
    pub fn zeros(&self, len: usize) -> Result<CudaBuffer> {
        self.alloc_zeros(len)
    }

    fn mine<T: Elem>(&self, device: u64, op: &str) -> Result<()> {
        if device == self.id {
            Ok(())
        } else {
            Err(CudaError::Invalid(format!(
                "{op}: the {} buffer belongs to another device",
                std::any::type_name::<T>()
            )))
        }
    }

    /// Sets every element to zero.
    pub fn fill_zeros<T: Elem>(&self, dst: &mut impl DeviceSliceMut<T>) -> Result<()> {
        let dst = dst.device_view_mut();
        self.mine::<T>(dst.device, "fill zeros")?;
        match (dst.inner, &self.backend) {
            (ViewMutInner::Cuda(mut v), Backend::Cuda { stream, .. }) => {
                if v.is_empty() {
                    return Ok(());
                }
                stream.memset_zeros(&mut v).map_err(driver("memset"))
            }
            #[cfg(feature = "emu")]
            (ViewMutInner::Host(h), _) => {
                h.fill(T::default());
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => Err(CudaError::Invalid(
                "fill zeros: buffer of another device".into(),
            )),
        }
    }

    /// Copies host data into `dst`, which must have the same length.
    pub fn copy_to_device<T: Elem>(
        &self,
        src: &[T],
        dst: &mut impl DeviceSliceMut<T>,
    ) -> Result<()> {
        let dst = dst.device_view_mut();
        self.mine::<T>(dst.device, "copy to device")?;
        if src.len() != dst.len() {
            return Err(CudaError::Invalid(format!(
                "copy to device: {} host elements into a device buffer of {}",
                src.len(),
                dst.len()
            )));
        }
        if src.is_empty() {
            return Ok(());
        }
        match (dst.inner, &self.backend) {
            (ViewMutInner::Cuda(mut v), Backend::Cuda { stream, .. }) => stream
                .memcpy_htod(src, &mut v)
                .map_err(driver("host-to-device copy")),
            #[cfg(feature = "emu")]
            (ViewMutInner::Host(h), _) => {
                h.copy_from_slice(src);
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => Err(CudaError::Invalid(
                "copy to device: buffer of another device".into(),
            )),
        }
    }

    /// Copies any device buffer or view back to the host (waits for queued work).
    pub fn download_view<T: Elem>(&self, src: &impl DeviceSlice<T>) -> Result<Vec<T>> {
        let src = src.device_view();
        self.mine::<T>(src.device, "download")?;
        if src.is_empty() {
            return Ok(Vec::new());
        }
        match (src.inner, &self.backend) {
            (ViewInner::Cuda(v), Backend::Cuda { stream, .. }) => {
                stream.clone_dtoh(&v).map_err(driver("download"))
            }
            #[cfg(feature = "emu")]
            (ViewInner::Host(h), _) => Ok(h.to_vec()),
            #[allow(unreachable_patterns)]
            _ => Err(CudaError::Invalid(
                "download: buffer of another device".into(),
            )),
        }
    }

    /// A new buffer holding `data`.
    pub fn upload_elem<T: Elem>(&self, data: &[T]) -> Result<DeviceBuffer<T>> {
        let mut buf = self.alloc_elem::<T>(data.len())?;
        self.copy_to_device(data, &mut buf)?;
        Ok(buf)
    }

    /// Copies `data` to a new f32 buffer.
    pub fn upload(&self, data: &[f32]) -> Result<CudaBuffer> {
        self.upload_elem(data)
    }

    /// Copies `data` to a new u32 buffer (labels, arg-max indices).
    pub fn upload_u32(&self, data: &[u32]) -> Result<CudaBufferU32> {
        self.upload_elem(data)
    }

    /// Copies an f32 buffer (or view) back to the host (waits for queued work).
    pub fn download(&self, src: &impl DeviceSlice<f32>) -> Result<Vec<f32>> {
        self.download_view(src)
    }

    /// Copies a u32 buffer (or view) back to the host (waits for queued work).
    pub fn download_u32(&self, src: &impl DeviceSlice<u32>) -> Result<Vec<u32>> {
        self.download_view(src)
    }

    /// Device-to-device copy between buffers (or views) of the same length.
    pub fn copy_device<T: Elem>(
        &self,
        src: &impl DeviceSlice<T>,
        dst: &mut impl DeviceSliceMut<T>,
    ) -> Result<()> {
        let (src, dst) = (src.device_view(), dst.device_view_mut());
        self.mine::<T>(src.device, "device copy")?;
        self.mine::<T>(dst.device, "device copy")?;
        if src.len() != dst.len() {
            return Err(CudaError::Invalid(format!(
                "device copy: {} elements into a buffer of {}",
                src.len(),
                dst.len()
            )));
        }
        if src.is_empty() {
            return Ok(());
        }
        match (src.inner, dst.inner, &self.backend) {
            (ViewInner::Cuda(s), ViewMutInner::Cuda(mut d), Backend::Cuda { stream, .. }) => stream
                .memcpy_dtod(&s, &mut d)
                .map_err(driver("device-to-device copy")),
            #[cfg(feature = "emu")]
            (ViewInner::Host(s), ViewMutInner::Host(d), _) => {
                d.copy_from_slice(s);
                Ok(())
            }
            #[allow(unreachable_patterns)]
            _ => Err(CudaError::Invalid(
                "device copy: buffer of another device".into(),
            )),
        }
    }

    /// A new buffer with the contents of `src`.
    pub fn clone_buffer<T: Elem>(&self, src: &impl DeviceSlice<T>) -> Result<DeviceBuffer<T>> {
        let src = src.device_view();
        let mut out = self.alloc_elem::<T>(src.len())?;
        self.copy_device(&src, &mut out)?;
        Ok(out)
    }

    /// Runs an op's checks and launches; shape errors get the op's shapes.
    fn op<R>(&self, shapes: &dyn Fn() -> String, f: impl FnOnce() -> Result<R>) -> Result<R> {
        f().map_err(|e| e.with_shapes(shapes))
    }

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

/// Adam's host-side scalars, computed as the CPU reference does: `lr / (1 - beta1^t)` and
/// `sqrt(1 - beta2^t)`.
pub fn adam_scalars(cfg: &AdamConfig, step: u32) -> (f32, f32) {
    let bc1 = 1.0 - cfg.beta1.powf(step as f32);
    let bc2 = 1.0 - cfg.beta2.powf(step as f32);
    (cfg.lr / bc1, bc2.sqrt())
}
