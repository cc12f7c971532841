//! The one error type of the firmware library.

use core::fmt;
use tinycnn_kernels::KernelError;

/// Why a weights blob was refused or an inference failed.
///
/// Every variant names the problem with the values that were wrong, so the firmware can
/// print it over semihosting and a host tool can show it to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The safetensors container itself is malformed (`what` says how, `at` is a byte offset
    /// into the header JSON where that applies).
    Format { what: &'static str, at: usize },
    /// More tensors or metadata entries than the fixed-capacity tables hold.
    Capacity { what: &'static str, max: usize },
    /// A tensor the LeNet layout needs is absent.
    MissingTensor { name: &'static str },
    /// The file holds a tensor the expected layout does not have.
    UnexpectedTensor,
    /// A tensor has the wrong element type.
    Dtype {
        name: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    /// A tensor has the wrong shape (`dim` is the first axis that differs; `usize::MAX` when
    /// the rank differs).
    Shape {
        name: &'static str,
        dim: usize,
        expected: usize,
        found: usize,
    },
    /// A tensor's bytes are not aligned for its element type (the container must keep
    /// 4-byte tensors on 4-byte boundaries).
    Misaligned { name: &'static str },
    /// A value inside a tensor is out of its domain (a non-positive scale, ...).
    Value {
        name: &'static str,
        what: &'static str,
    },
    /// The file's metadata names another model than the one asked for.
    Variant {
        expected: &'static str,
        found_other: bool,
    },
    /// A kernel refused its arguments.
    Kernel(KernelError),
}

impl From<KernelError> for Error {
    fn from(e: KernelError) -> Self {
        Error::Kernel(e)
    }
}

impl Error {
    /// The kind of problem and the name it concerns, as static strings: what a firmware
    /// prints when it cannot afford `core::fmt` (the `Display` impl says more).
    pub fn summary(&self) -> (&'static str, &'static str) {
        match *self {
            Error::Format { what, .. } => ("malformed file", what),
            Error::Capacity { what, .. } => ("too many", what),
            Error::MissingTensor { name } => ("missing tensor", name),
            Error::UnexpectedTensor => ("unexpected tensor", ""),
            Error::Dtype { name, .. } => ("wrong dtype", name),
            Error::Shape { name, .. } => ("wrong shape", name),
            Error::Misaligned { name } => ("misaligned tensor", name),
            Error::Value { name, what } => (what, name),
            Error::Variant { expected, .. } => ("metadata names another model than", expected),
            Error::Kernel(e) => ("kernel error", kernel_what(&e)),
        }
    }
}

fn kernel_what(e: &KernelError) -> &'static str {
    match *e {
        KernelError::Zero { what } => what,
        KernelError::ChannelsNotDivisibleByGroups { what, .. } => what,
        KernelError::KernelTooLarge { axis, .. } => axis,
        KernelError::PaddingTooLarge { axis, .. } => axis,
        KernelError::BufferLength { buffer, .. } => buffer,
        KernelError::LeadingDimension { matrix, .. } => matrix,
        KernelError::Overflow { what } => what,
        KernelError::LabelOutOfRange { .. } => "label",
        KernelError::InvalidArgument { what } => what,
        // Variants added to the kernel crate later still get a summary.
        #[allow(unreachable_patterns)]
        _ => "",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Format { what, at } => {
                write!(f, "malformed safetensors: {what} (header byte {at})")
            }
            Error::Capacity { what, max } => write!(f, "too many {what} (at most {max})"),
            Error::MissingTensor { name } => write!(f, "tensor `{name}` is missing"),
            Error::UnexpectedTensor => {
                write!(f, "the file holds a tensor the LeNet layout does not have")
            }
            Error::Dtype {
                name,
                expected,
                found,
            } => write!(f, "tensor `{name}` has dtype {found}, expected {expected}"),
            Error::Shape {
                name,
                dim,
                expected,
                found,
            } => {
                if dim == usize::MAX {
                    write!(f, "tensor `{name}` has rank {found}, expected {expected}")
                } else {
                    write!(
                        f,
                        "tensor `{name}` has {found} along axis {dim}, expected {expected}"
                    )
                }
            }
            Error::Misaligned { name } => write!(f, "tensor `{name}` is not aligned for its dtype"),
            Error::Value { name, what } => write!(f, "tensor `{name}`: {what}"),
            Error::Variant { expected, .. } => write!(
                f,
                "the file's metadata names another model than `{expected}`"
            ),
            Error::Kernel(e) => write!(f, "kernel error: {e}"),
        }
    }
}

impl core::error::Error for Error {}

/// Shorthand for this crate's results.
pub type Result<T> = core::result::Result<T, Error>;
