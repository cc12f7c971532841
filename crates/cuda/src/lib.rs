//! # tinycnn-cuda
//!
//! The CUDA back end of tinycnn: the kernels of `kernels-cuda/*.cu`, precompiled to PTX
//! (`kernels-cuda/ptx`, embedded with `include_str!`), launched through cudarc's driver API
//! on one non-default stream per device. The driver library is loaded at run time, so this
//! crate builds and its host-side tests run on machines without CUDA; [`CudaDevice::new`]
//! returns [`CudaError::NoDriver`] or [`CudaError::NoDevice`] there.
//!
//! Layers:
//! - [`launch`]: launch planning (argument structs, grid/block shapes, shape checks), pure;
//! - [`kernels`]: the kernel table, each kernel's name and C argument list written once,
//!   from which both the cudarc launch and the emulator call are generated;
//! - [`buffer`]: [`CudaBuffer`] / [`CudaBufferU32`], owned device memory that goes back to
//!   its device's caching allocator on drop, and views of it;
//! - [`CudaDevice`]: context and stream, memory, and one checked wrapper per kernel. The
//!   wrappers take whole buffers (or views, [`CudaBuffer::slice`]) and check their exact
//!   lengths before launching; errors name the kernel and the op's shapes;
//!
//! ## The emulated device (feature `emu`)
//!
//! With feature `emu`, build.rs compiles the same `.cu` files for the host against
//! `kernels-cuda/emu/cuda_emu.h` (C++20, g++ >= 10) and [`CudaDevice::emulated`] returns a
//! device whose buffers are host memory and whose launches run those host kernels, through
//! the same checks, launch planning and argument lists as a GPU. So code above this crate
//! (the runtime) can test its CUDA paths in `cargo test` without a GPU:
//!
//! ```toml
//! [dev-dependencies]
//! tinycnn-cuda = { workspace = true, features = ["emu"] }
//! ```
//!
//! Every kernel matches the CPU kernel of `tinycnn_kernels::reference` with the same name;
//! `tests/kernels.rs` checks that on random inputs, on the emulated device and, when there
//! is one, on a GPU. Set `TINYCNN_CUDA_SYNC=1` to synchronise after every launch, so that
//! a device fault names the kernel that caused it ([`CudaError::Fault`]).
//!
//! ```no_run
//! use tinycnn_cuda::CudaDevice;
//! let dev = CudaDevice::new(0)?;
//! let x = dev.upload(&[-1.0, 2.0, -3.0])?;
//! let mut y = dev.alloc(3)?;
//! dev.relu_forward(&x, &mut y)?;
//! assert_eq!(dev.download(&y)?, vec![0.0, 2.0, 0.0]);
//! # Ok::<(), tinycnn_cuda::CudaError>(())
//! ```
#![warn(missing_docs)]
#![allow(missing_docs)] // field-level docs follow the kernel crate's convention

pub mod buffer;
mod device;
#[cfg(feature = "emu")]
mod emu;
mod error;
pub mod kernels;
pub mod launch;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod ptx;

pub use buffer::{
    CudaBuffer, CudaBufferU32, CudaBufferView, CudaBufferViewMut, DeviceBuffer, DeviceSlice,
    DeviceSliceMut, Elem, MemoryStats,
};
pub use device::{adam_scalars, CudaDevice};
pub use error::{BackendError, CudaError, Result};
