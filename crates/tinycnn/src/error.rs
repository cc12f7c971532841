//! The one error type of the runtime.

use std::path::PathBuf;

/// Everything that can go wrong in the runtime, with the context needed to find the cause:
/// the operation, the shapes involved, the state-dict key or the file path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel of `tinycnn-kernels` refused its arguments.
    #[error("{op}: {source}")]
    Kernel {
        op: &'static str,
        #[source]
        source: tinycnn_kernels::KernelError,
    },
    /// Operand shapes that do not fit together.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// A shape that is wrong for the operation on its own (wrong rank, bad reshape, ...).
    #[error("{op}: {msg} (shape {shape:?})")]
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        msg: String,
    },
    /// A dimension index outside `-rank..rank`.
    #[error("{op}: dimension {dim} out of range for a tensor of rank {rank}")]
    DimOutOfRange {
        op: &'static str,
        dim: isize,
        rank: usize,
    },
    /// An index or range outside a dimension.
    #[error("{op}: index {index} out of range for dimension {dim} of size {size}")]
    IndexOutOfRange {
        op: &'static str,
        index: usize,
        dim: usize,
        size: usize,
    },
    /// A value outside its domain (negative std, zero threads, ...).
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument { op: &'static str, msg: String },
    /// An autograd rule was broken (backward from a non-scalar, in-place on a leaf, ...).
    #[error("autograd: {0}")]
    Autograd(String),
    /// A state dict does not match the module or optimizer it is loaded into.
    #[error("state dict: key `{key}`: {msg}")]
    StateDict { key: String, msg: String },
    /// A safetensors file could not be read or written.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// An I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An op's inputs are on different devices.
    #[error("{op}: tensors on different devices: {lhs} and {rhs}")]
    DeviceMismatch {
        op: &'static str,
        lhs: crate::Device,
        rhs: crate::Device,
    },
    /// An op with no implementation on a device.
    #[error("{op}: not implemented on {device}")]
    Unsupported {
        op: &'static str,
        device: crate::Device,
    },
    /// The CUDA backend failed (driver, allocation or a kernel launch, which it names).
    #[cfg(feature = "cuda")]
    #[error("{op}: {source}")]
    Cuda {
        op: &'static str,
        #[source]
        source: tinycnn_cuda::CudaError,
    },
    /// Training met a NaN or infinite loss ([`crate::train`]): in batch `batch` (0-based)
    /// when known, which it is on the CPU; on a CUDA device only the epoch's sum is read.
    #[error("{}", diverged_msg(*epoch, *batch, *loss))]
    Diverged {
        epoch: usize,
        batch: Option<usize>,
        loss: f32,
    },
    /// Training was asked to stop ([`crate::train::Trainer::stop_flag`]) before batch `batch`
    /// (0-based) of epoch `epoch` (0-based).
    #[error("training stopped before batch {} of epoch {}", batch + 1, epoch + 1)]
    Stopped { epoch: usize, batch: usize },
    /// A collective of data-parallel training ([`crate::distributed`]) failed: another rank
    /// disagreed (settings, buffer sizes), left the group or did not answer in time.
    #[error("distributed {op}: {msg}")]
    Distributed { op: &'static str, msg: String },
    /// Anything else (data loading, thread pool construction), with its context.
    #[error("{0}")]
    Msg(String),
}

fn diverged_msg(epoch: usize, batch: Option<usize>, loss: f32) -> String {
    match batch {
        Some(b) => format!("loss is {loss} at epoch {}, batch {}", epoch + 1, b + 1),
        None => format!("loss summed over epoch {} is {loss}", epoch + 1),
    }
}

/// `Result` with the runtime's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps a kernel error with the name of the runtime op that called the kernel.
    pub fn kernel(op: &'static str) -> impl FnOnce(tinycnn_kernels::KernelError) -> Error {
        move |source| Error::Kernel { op, source }
    }
    /// An [`Error::InvalidArgument`] for `op` (for crates built on the runtime).
    pub fn invalid_argument(op: &'static str, msg: impl Into<String>) -> Error {
        Error::invalid(op, msg)
    }
    pub(crate) fn bad_shape(op: &'static str, shape: &[usize], msg: impl Into<String>) -> Error {
        Error::BadShape {
            op,
            shape: shape.to_vec(),
            msg: msg.into(),
        }
    }
    pub(crate) fn mismatch(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Error {
        Error::ShapeMismatch {
            op,
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
        }
    }
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Error {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
}
