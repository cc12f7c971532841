//! The one error type of the CUDA back end.

use cudarc::driver::DriverError;
use tinycnn_kernels::KernelError;

/// What went wrong below a launch: the driver's error, or the emulator's.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// An error code of the CUDA driver.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The emulated device refused a launch (message says why).
    #[error("emulator: {0}")]
    Emulator(String),
}

/// Why a CUDA operation failed; every variant names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// `libcuda` could not be loaded: no NVIDIA driver on this machine.
    #[error(
        "no CUDA driver/GPU: libcuda.so could not be loaded (is the NVIDIA driver installed?)"
    )]
    NoDriver,
    /// The driver is there but device `ordinal` could not be opened (no GPU, bad ordinal, ...).
    #[error("no CUDA driver/GPU: cannot open CUDA device {ordinal}: {source}")]
    NoDevice {
        ordinal: usize,
        #[source]
        source: DriverError,
    },
    /// A PTX module did not load, or a kernel is missing from it (or from the emulator).
    #[error("loading kernel `{kernel}` from module `{module}`: {source}")]
    Module {
        module: &'static str,
        kernel: &'static str,
        #[source]
        source: BackendError,
    },
    /// The driver (or the emulator) refused a kernel launch.
    #[error(
        "launching kernel `{kernel}` ({shapes}) with grid {grid:?}, block {block:?}: {source}"
    )]
    Launch {
        kernel: &'static str,
        /// The op's shapes and buffer lengths, as the wrapper saw them.
        shapes: String,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        #[source]
        source: BackendError,
    },
    /// A kernel failed while running. Reported by the launch itself only when launches
    /// synchronise (`TINYCNN_CUDA_SYNC=1` or [`crate::CudaDevice::set_sync_launches`]);
    /// otherwise a fault surfaces as [`CudaError::Driver`] at the next synchronising call.
    #[error("kernel `{kernel}` ({shapes}) failed on the device: {source}")]
    Fault {
        kernel: &'static str,
        shapes: String,
        #[source]
        source: BackendError,
    },
    /// A kernel's shapes or buffer lengths are wrong (checked before launching).
    #[error("kernel `{kernel}`{}: {source}", in_op(shapes))]
    Shape {
        kernel: &'static str,
        /// The op's shapes and buffer lengths; empty when the check ran outside a wrapper.
        shapes: String,
        #[source]
        source: KernelError,
    },
    /// A problem is too large for the kernels' 32-bit indexing or the launch grid limits.
    #[error("kernel `{kernel}`: {what} is {value}, the limit is {limit}")]
    TooLarge {
        kernel: &'static str,
        what: &'static str,
        value: usize,
        limit: usize,
    },
    /// A memory transfer, allocation or synchronization failed (asynchronous kernel faults
    /// surface here, at the next synchronizing call).
    #[error("CUDA {op}: {source}")]
    Driver {
        op: &'static str,
        #[source]
        source: DriverError,
    },
    /// Bad argument to the executor or a tensor (message says which).
    #[error("{0}")]
    Invalid(String),
    /// An NCCL call failed (feature `nccl`): no libnccl.so.2, a peer that left, a bad id.
    #[error("NCCL {op}: {msg}")]
    Nccl { op: &'static str, msg: String },
}

fn in_op(shapes: &str) -> String {
    if shapes.is_empty() {
        String::new()
    } else {
        format!(" ({shapes})")
    }
}

impl CudaError {
    /// Adds the op's shapes to a shape error that lacks them (the launch planners of
    /// [`crate::launch`] know the problem, not the buffers the wrapper was given).
    pub(crate) fn with_shapes(mut self, shapes: &dyn Fn() -> String) -> Self {
        if let CudaError::Shape { shapes: s, .. } = &mut self {
            if s.is_empty() {
                *s = shapes();
            }
        }
        self
    }
}

/// Shorthand for this crate's results.
pub type Result<T> = std::result::Result<T, CudaError>;

pub(crate) fn driver(op: &'static str) -> impl FnOnce(DriverError) -> CudaError {
    move |source| CudaError::Driver { op, source }
}

pub(crate) fn shape(kernel: &'static str) -> impl FnOnce(KernelError) -> CudaError {
    move |source| CudaError::Shape {
        kernel,
        shapes: String::new(),
        source,
    }
}

/// Checks that `buffer` of kernel `kernel` has exactly `expected` elements.
pub(crate) fn expect_len(
    kernel: &'static str,
    buffer: &'static str,
    actual: usize,
    expected: usize,
) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(shape(kernel)(KernelError::BufferLength {
            buffer,
            expected,
            actual,
        }))
    }
}
