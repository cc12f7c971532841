//! # tinycnn-kernels
//!
//! The compute kernels of tinycnn: `#![no_std]`, no `alloc`, f32, NCHW, row-major. Every
//! kernel takes its input, output and scratch slices from the caller, says how much scratch
//! it needs up front (`*_workspace_len`), and returns a [`KernelError`] instead of panicking
//! when a shape or a slice length is wrong.
//!
//! | family | forward | backward |
//! |---|---|---|
//! | convolution | [`corr2d`], [`conv2d_forward`] | [`conv2d_backward_input`], [`conv2d_backward_weight`], [`conv2d_backward_bias`] |
//! | pooling | [`max_pool2d_forward`], [`avg_pool2d_forward`] | [`max_pool2d_backward`], [`avg_pool2d_backward`] |
//! | matrix product | [`sgemm`] | (two more `sgemm` calls) |
//! | activations | [`relu_forward`], [`relu6_forward`], [`sigmoid_forward`], [`tanh_forward`] | `*_backward` |
//! | losses | [`softmax_forward`], [`log_softmax_forward`], [`cross_entropy_forward`] | `*_backward` |
//! | batch norm | [`batch_norm_stats`], [`batch_norm_forward`] | [`batch_norm_backward`] |
//! | adaptive pooling | [`adaptive_avg_pool2d_forward`] | [`adaptive_avg_pool2d_backward`] |
//! | bias | [`bias_add`] | [`bias_backward`] |
//! | optimizers | [`sgd_step`], [`adam_step`] | |
//!
//! [`deploy`] holds the deployment plan format (a whole network as bytes, read in place and
//! checked field by field) and its allocation-free executor, shared by `tinycnn deploy`, the
//! host tests and the firmware.
//!
//! The [`reference`] module holds the naive loop of each kernel: it defines what the fast
//! kernel means, and the tests compare the two. The fast kernels are written once over the
//! lane-generic [`simd`] layer (AVX-512, AVX2+FMA, SSE2, NEON or scalar, picked at run time).
//!
//! ```
//! use tinycnn_kernels::{conv2d_forward, conv2d_workspace_len, Conv2dParams, Conv2dShape};
//! // d2l's corr2d example as a 1-channel convolution.
//! let s = Conv2dShape::new(Conv2dParams::new(1, 1, (2, 2)), 1, 3, 3);
//! let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
//! let w = [0.0, 1.0, 2.0, 3.0];
//! let mut y = [0.0; 4];
//! let mut ws = vec![0.0; conv2d_workspace_len(&s)];
//! conv2d_forward(&s, &x, &w, None, &mut y, &mut ws).unwrap();
//! assert_eq!(y, [19.0, 25.0, 37.0, 43.0]);
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod activation;
pub mod bias;
pub mod conv;
pub mod deploy;
pub mod error;
pub mod gemm;
pub mod int8;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reference;
pub mod shape;
pub mod simd;
pub mod softmax;

pub use activation::*;
pub use bias::*;
pub use conv::*;
pub use error::{KernelError, Result};
pub use gemm::*;
pub use norm::*;
pub use optim::*;
pub use pool::*;
pub use shape::*;
pub use softmax::*;
