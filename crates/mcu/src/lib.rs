//! # tinycnn-mcu
//!
//! LeNet inference for a Cortex-M4F microcontroller, in a `no_std`, allocation-free library
//! that runs unchanged on the host:
//!
//! * [`safetensors`]: a zero-copy reader of `.safetensors` blobs (header JSON parsed into
//!   `heapless` tables; every dtype, shape and offset checked, so a malformed blob is an
//!   error, never UB);
//! * [`idx`]: the (Fashion-)MNIST IDX format, read in place;
//! * `host` (feature `std`): the post-training quantizer, a safetensors writer and the
//!   random-weights generator used by the host tool `mcu-host` and the tests.
//!
//! The firmware (`src/main.rs`, feature `firmware`, target `thumbv7em-none-eabihf`) embeds
//! one deployment plan (`tinycnn deploy`, selected by `TINYCNN_DEPLOY`), reads a few test
//! images from the host over semihosting, runs them with `tinycnn_kernels::deploy` and
//! prints the predictions over semihosting.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod error;
pub mod idx;
pub mod safetensors;

#[cfg(feature = "std")]
pub mod host;

pub use error::{Error, Result};
pub use safetensors::Safetensors;

/// A byte blob aligned to 16 bytes, so `include_bytes!` data can be viewed as `f32`s.
///
/// ```
/// use tinycnn_mcu::Aligned;
/// static BLOB: &Aligned<[u8]> = &Aligned(*b"abcd");
/// assert_eq!(BLOB.0.as_ptr() as usize % 16, 0);
/// ```
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);
