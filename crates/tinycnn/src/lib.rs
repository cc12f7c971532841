//! # tinycnn
//!
//! The runtime of tinycnn: f32 [`Tensor`]s with NumPy/PyTorch broadcasting, reverse-mode
//! autograd, [`nn`] modules shaped like PyTorch's (names, state dicts, reprs, init),
//! [`optim`]izers, [`data`] loading and safetensors [`io`]. Every heavy op (convolution,
//! pooling, matrix products, activations, softmax / cross-entropy, bias, optimizer steps)
//! runs on the kernels of `tinycnn-kernels`; convolution and pooling split the batch over
//! a rayon pool ([`set_num_threads`]).
//!
//! PyTorch is the reference for semantics: default layer initialisation, pooling defaults
//! (stride = kernel), weight layouts (`[out, in, kh, kw]`, `[out, in]`), parameter names
//! (`0.weight`, `block1.0.bias`), the update rules of SGD and Adam, and how tensors print.
//!
//! ## Errors, not panics
//! Everything that can fail on bad input returns [`Result`]; the [`Error`] names the op and
//! the shapes (or the state-dict key, or the path). Tensor-with-tensor operators
//! (`&a + &b`) therefore return `Result<Tensor>`; tensor-with-scalar operators (`&a * 2.0`)
//! cannot fail and return a `Tensor`.
//!
//! ## A training step
//! ```
//! use tinycnn::nn::{init, Conv2d, Flatten, Linear, Module, ReLU, Sequential};
//! use tinycnn::optim::{Optimizer, Sgd};
//! use tinycnn::{manual_seed, Tensor};
//!
//! manual_seed(0);
//! let net = Sequential::new()
//!     .append(Conv2d::new(1, 4, 3)?) // [N, 1, 8, 8] -> [N, 4, 6, 6]
//!     .append(ReLU)
//!     .append(Flatten::new())
//!     .append(Linear::new(4 * 6 * 6, 3));
//! // d2l's init: Xavier-uniform weights for every Linear and Conv2d.
//! net.apply(&mut |m| {
//!     if let Some(l) = m.downcast_ref::<Linear>() {
//!         init::xavier_uniform_(&l.weight, 1.0)?;
//!     } else if let Some(c) = m.downcast_ref::<Conv2d>() {
//!         init::xavier_uniform_(&c.weight, 1.0)?;
//!     }
//!     Ok(())
//! })?;
//! let mut opt = Sgd::new(net.parameters(), 0.1)?;
//! let x = Tensor::rand(&[8, 1, 8, 8]);
//! let labels = [0, 1, 2, 0, 1, 2, 0, 1];
//!
//! let loss_of = |net: &Sequential| net.forward(&x)?.cross_entropy(&labels);
//! let before = loss_of(&net)?.item()?;
//! for _ in 0..10 {
//!     opt.zero_grad();
//!     let loss = loss_of(&net)?;
//!     loss.backward()?;
//!     opt.step()?;
//! }
//! assert!(loss_of(&net)?.item()? < before);
//! // Checkpoint: weights and optimizer state as safetensors.
//! let path = std::env::temp_dir().join(format!("tinycnn-doc-{}.safetensors", std::process::id()));
//! tinycnn::io::save(&path, &net.state_dict())?;
//! net.load_state_dict(&tinycnn::io::load(&path)?)?;
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), tinycnn::Error>(())
//! ```
//!
//! ## Devices
//! Tensors and modules live on a [`Device`]: `net.to(&Device::Cuda(0))` moves a network's
//! parameters in place (feature `cuda`), and every op, optimizer and the training loop of
//! [`train`] run where their inputs are. The same code trains on either device:
//! ```
//! use tinycnn::data::ResidentData;
//! use tinycnn::nn::{Flatten, Linear, Module, Sequential};
//! use tinycnn::optim::Adam;
//! use tinycnn::train::Trainer;
//! use tinycnn::Device;
//!
//! let device = if Device::cuda_is_available(0) { Device::Cuda(0) } else { Device::Cpu };
//! let net = Sequential::new().append(Flatten::new()).append(Linear::new(4, 2));
//! net.to(&device)?;
//! // Four 1x2x2 images; class 1 is bright. Uploaded once, batches gathered on the device.
//! let x = [0.1, 0.0, 0.2, 0.1, 0.9, 1.0, 0.8, 0.9, 0.0, 0.1, 0.1, 0.0, 1.0, 0.9, 0.9, 1.0];
//! let data = ResidentData::new(&x, &[4, 1, 2, 2], &[0, 1, 0, 1], &device)?;
//! let opt = Adam::new(net.parameters(), 0.1)?;
//! let mut trainer = Trainer::new(&net, Box::new(opt), device, 2)?;
//! let first = trainer.train_epoch(&data, &[0, 1, 2, 3], 0, &mut |_, _| {})?;
//! for epoch in 1..20 {
//!     trainer.train_epoch(&data, &[3, 2, 1, 0], epoch, &mut |_, _| {})?;
//! }
//! let last = trainer.train_epoch(&data, &[0, 1, 2, 3], 20, &mut |_, _| {})?;
//! assert!(last.loss < first.loss);
//! assert_eq!(trainer.evaluate(&data)?, (4, 4));
//! # Ok::<(), tinycnn::Error>(())
//! ```
//!
//! ## Map of the crate
//! - [`Tensor`]: constructors (`new`, `from_vec`, `zeros`, `rand`, ...), shape ops
//!   (`reshape`, `flatten`, `permute`, `slice`, `cat`, `stack`), math and reductions, CNN ops
//!   (`conv2d`, `max_pool2d`, `avg_pool2d`, `softmax`, `cross_entropy`), in-place writes
//!   (`slice_assign_`, `sub_`, ...) and printing like PyTorch.
//! - autograd: `backward`, `grad`, `zero_grad`, `detach`, [`no_grad`], [`no_grad_guard`].
//! - [`nn`]: [`nn::Module`], layers, [`nn::Sequential`], [`nn::StateDict`], [`nn::init`].
//! - [`optim`]: [`optim::Sgd`], [`optim::Adam`], their exportable state.
//! - [`io`]: safetensors save / load of state dicts, single tensors and tensor lists.
//! - [`onnx`]: ONNX models read into an architecture with tensors, and written back.
//! - [`train`]: [`train::Trainer`], mini-batch training and evaluation on any device.
//! - [`distributed`]: data-parallel training over MPI processes (feature `mpi`) or threads.
//! - [`Device`], [`data::ResidentData`], [`Labels`]: where tensors, data sets and labels live.
//! - [`Rng`], [`manual_seed`]: ChaCha8, the same stream on every platform.

pub mod arith;
pub mod autograd;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod device;
pub mod display;
pub mod distributed;
pub mod error;
pub mod infer;
pub mod io;
mod labels;
pub mod limits;
pub mod nn;
pub mod onnx;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod rng;
mod storage;
pub mod tensor;
pub mod train;

pub use autograd::{grad_enabled, no_grad, no_grad_guard, NoGradGuard};
pub use device::Device;
pub use display::size_string;
pub use error::{Error, Result};
pub use infer::Inference;
pub use labels::Labels;
pub use ops::labels_from_tensor;
pub use parallel::{num_threads, set_num_threads};
pub use rng::{manual_seed, with_global_rng, Rng, DEFAULT_SEED};
pub use tensor::{Dims, Snapshot, Tensor, TensorData};
pub use tinycnn_kernels::{Conv2dParams, Pool2dParams};
