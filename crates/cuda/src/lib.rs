//! # tinycnn-cuda
//!
//! The CUDA back end of tinycnn: the kernels of `kernels-cuda/*.cu`, precompiled to PTX
//! (`kernels-cuda/ptx`, embedded with `include_str!`), launched through cudarc's driver API.
//! The driver library is loaded at run time, so this crate builds and its host-side tests
//! run on machines without CUDA; [`CudaDevice::new`] returns [`CudaError::NoDriver`] or
//! [`CudaError::NoDevice`] there.
//!
//! Layers:
//! - [`launch`]: launch planning (argument structs, grid/block shapes, shape checks), pure;
//! - [`CudaDevice`]: context, device tensors, one checked wrapper per kernel;
//! - [`net`]: a GPU executor for sequential CNNs (LeNet and kin) with the whole data set on
//!   the GPU, SGD/Adam, and PyTorch state-dict import/export.
//!
//! Every kernel matches the CPU kernel of `tinycnn_kernels::reference` with the same name;
//! `tests/kernels.rs` checks that on random inputs when a GPU is present.
//!
//! ```no_run
//! use tinycnn_cuda::{CudaDevice, net::{lenet, CudaSequential, Optimizer}};
//! use tinycnn_kernels::SgdConfig;
//! let dev = CudaDevice::new(0)?;
//! let mut net = CudaSequential::new(&dev, lenet(), [1, 28, 28], 256)?;
//! net.init_xavier(0)?;
//! # Ok::<(), tinycnn_cuda::CudaError>(())
//! ```
#![warn(missing_docs)]
#![allow(missing_docs)] // field-level docs follow the kernel crate's convention

mod device;
mod error;
pub mod launch;
pub mod net;
pub mod ptx;

pub use device::{adam_scalars, CudaDevice, CudaTensor};
pub use error::{CudaError, Result};

/// Re-export of the cudarc driver types that appear in this crate's API (views, slices).
pub use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};
