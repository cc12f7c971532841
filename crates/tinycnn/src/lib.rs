//! tinycnn runtime (work in progress).
pub mod arith;
pub mod autograd;
pub mod data;
pub mod display;
pub mod error;
pub mod io;
pub mod nn;
pub mod optim;
pub mod ops;
pub mod parallel;
pub mod rng;
pub mod tensor;

pub use autograd::{grad_enabled, no_grad, no_grad_guard, NoGradGuard};
pub use error::{Error, Result};
pub use parallel::{num_threads, set_num_threads};
pub use rng::{manual_seed, with_global_rng, Rng};
pub use tensor::{Dims, Tensor, TensorData};
pub use tinycnn_kernels::{Conv2dParams, Pool2dParams};
