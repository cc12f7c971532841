//! The one error type of the CUDA back end.

use cudarc::driver::DriverError;
use tinycnn_kernels::KernelError;

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
    /// A PTX module did not load or lacks a kernel.
    #[error("loading kernel `{kernel}` from PTX module `{module}`: {source}")]
    Module {
        module: &'static str,
        kernel: &'static str,
        #[source]
        source: DriverError,
    },
    /// The driver refused a kernel launch.
    #[error("launching kernel `{kernel}` with grid {grid:?}, block {block:?}: {source}")]
    Launch {
        kernel: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        #[source]
        source: DriverError,
    },
    /// A kernel's shapes or buffer lengths are wrong (checked before launching).
    #[error("kernel `{kernel}`: {source}")]
    Shape {
        kernel: &'static str,
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
}

/// Shorthand for this crate's results.
pub type Result<T> = std::result::Result<T, CudaError>;

pub(crate) fn driver(op: &'static str) -> impl FnOnce(DriverError) -> CudaError {
    move |source| CudaError::Driver { op, source }
}

pub(crate) fn shape(kernel: &'static str) -> impl FnOnce(KernelError) -> CudaError {
    move |source| CudaError::Shape { kernel, source }
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
        Err(CudaError::Shape {
            kernel,
            source: KernelError::BufferLength {
                buffer,
                expected,
                actual,
            },
        })
    }
}
