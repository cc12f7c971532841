//! The one error type of the kernel crate.

use core::fmt;

/// Why a kernel refused its arguments.
///
/// Every kernel checks its shape struct and its slice lengths before it touches memory, so
/// bad input comes back as one of these instead of a panic. The variants carry the numbers
/// that were wrong, so the caller can print a message that names the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelError {
    /// A size that must be at least 1 was 0 (`what` names it: "stride", "groups", ...).
    Zero { what: &'static str },
    /// `channels` (input or output, named by `what`) is not a multiple of `groups`.
    ChannelsNotDivisibleByGroups {
        what: &'static str,
        channels: usize,
        groups: usize,
    },
    /// The (dilated) kernel does not fit in the padded input along one axis.
    KernelTooLarge {
        axis: &'static str,
        kernel: usize,
        padded_input: usize,
    },
    /// Pooling padding must be at most half the kernel (PyTorch's rule), so every window
    /// holds at least one real element.
    PaddingTooLarge {
        axis: &'static str,
        padding: usize,
        kernel: usize,
    },
    /// A slice had the wrong number of elements (`buffer` names the argument).
    BufferLength {
        buffer: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A leading dimension is smaller than the row it must hold.
    LeadingDimension {
        matrix: &'static str,
        ld: usize,
        min: usize,
    },
    /// A size computation overflowed `usize`.
    Overflow { what: &'static str },
    /// A class label is not below the number of classes.
    LabelOutOfRange {
        row: usize,
        label: usize,
        classes: usize,
    },
    /// A scalar argument is outside its domain (negative learning rate, beta >= 1, ...).
    InvalidArgument { what: &'static str },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KernelError::Zero { what } => write!(f, "{what} must be at least 1, got 0"),
            KernelError::ChannelsNotDivisibleByGroups {
                what,
                channels,
                groups,
            } => write!(f, "{what} ({channels}) is not divisible by groups ({groups})"),
            KernelError::KernelTooLarge {
                axis,
                kernel,
                padded_input,
            } => write!(
                f,
                "kernel {axis} {kernel} (dilated) is larger than the padded input {axis} {padded_input}"
            ),
            KernelError::PaddingTooLarge {
                axis,
                padding,
                kernel,
            } => write!(
                f,
                "pooling padding {axis} {padding} must be at most half the kernel {axis} {kernel}"
            ),
            KernelError::BufferLength {
                buffer,
                expected,
                actual,
            } => write!(
                f,
                "buffer `{buffer}` has {actual} elements, expected {expected}"
            ),
            KernelError::LeadingDimension { matrix, ld, min } => write!(
                f,
                "leading dimension of {matrix} is {ld}, must be at least {min}"
            ),
            KernelError::Overflow { what } => write!(f, "size of {what} overflows usize"),
            KernelError::LabelOutOfRange {
                row,
                label,
                classes,
            } => write!(
                f,
                "label {label} in row {row} is out of range for {classes} classes"
            ),
            KernelError::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
        }
    }
}

impl core::error::Error for KernelError {}

/// Shorthand used by every kernel.
pub type Result<T> = core::result::Result<T, KernelError>;

/// Checks that `buf` has exactly `expected` elements.
#[inline]
pub(crate) fn check_len(buffer: &'static str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(KernelError::BufferLength {
            buffer,
            expected,
            actual,
        })
    }
}

/// Checks that a workspace holds at least `expected` elements (longer is fine).
#[inline]
pub(crate) fn check_workspace(actual: usize, expected: usize) -> Result<()> {
    if actual >= expected {
        Ok(())
    } else {
        Err(KernelError::BufferLength {
            buffer: "workspace",
            expected,
            actual,
        })
    }
}

/// `a * b` or an overflow error naming `what`.
#[inline]
pub(crate) fn mul(what: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(KernelError::Overflow { what })
}

/// `a + b` or an overflow error naming `what`.
#[inline]
pub(crate) fn add(what: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or(KernelError::Overflow { what })
}

/// Product of all `dims` or an overflow error naming `what`.
#[inline]
pub(crate) fn product(what: &'static str, dims: &[usize]) -> Result<usize> {
    let mut p = 1usize;
    for &d in dims {
        p = mul(what, p, d)?;
    }
    Ok(p)
}
