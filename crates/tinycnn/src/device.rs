//! Where tensors live and ops run: [`Device::Cpu`] (the kernel crate, SIMD and threads) or
//! [`Device::Cuda`] (the PTX kernels of `tinycnn-cuda`, with the `cuda` feature).
//!
//! ```
//! use tinycnn::{Device, Tensor};
//! let x = Tensor::new([1.0, 2.0]);
//! assert_eq!(x.device(), Device::Cpu);
//! assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
//! assert_eq!(Device::Cuda(0).to_string(), "cuda:0");
//! ```

use crate::error::{Error, Result};

/// A device: the CPU, or CUDA GPU number `ordinal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl Device {
    /// Whether this is a CUDA device.
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
    /// Whether CUDA device `ordinal` can be opened (a driver and such a GPU, or the emulated
    /// device in tests); always false without the `cuda` feature.
    pub fn cuda_is_available(ordinal: usize) -> bool {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::device(ordinal).is_ok()
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            false
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;
    /// `cpu`, `cuda` (GPU 0) or `cuda:N`, as PyTorch spells them.
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    Error::invalid("Device", format!("`{s}` is not cpu, cuda or cuda:N"))
                }),
        }
    }
}

/// The error for a CUDA tensor in a build without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub(crate) fn no_cuda(op: &'static str) -> Error {
    Error::invalid(
        op,
        "this build of tinycnn has no CUDA support (enable the `cuda` feature)",
    )
}

/// The common device of an op's inputs, or an error naming the op and both devices.
pub(crate) fn same_device(op: &'static str, tensors: &[&crate::Tensor]) -> Result<Device> {
    let mut devices = tensors.iter().map(|t| t.device());
    let first = devices.next().unwrap_or(Device::Cpu);
    match devices.find(|&d| d != first) {
        None => Ok(first),
        Some(other) => Err(Error::DeviceMismatch {
            op,
            lhs: first,
            rhs: other,
        }),
    }
}
