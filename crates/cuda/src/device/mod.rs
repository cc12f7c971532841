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

mod conv;
mod elementwise;
mod loss;
mod norm;
mod optim;
mod pool;

pub use optim::adam_scalars;

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
}
