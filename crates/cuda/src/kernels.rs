//! The kernel table: every kernel's module, name and C argument list, written once. From it
//! come the launch function of each kernel (one per entry of this table, in a module named
//! after the kernel), which pushes the arguments either to cudarc's launch builder or, on
//! the emulated device, into the argument array of the emulator's entry, and the list of
//! kernels both devices load at creation ([`crate::ptx::KERNELS`]).
//!
//! Argument kinds: a plain `name: type` is a value (`int`, `float`, a geometry struct);
//! `[src] name: T` is `const T*` (a [`CudaBufferView`]), `[dst] name: T` is `T*` (a
//! [`CudaBufferViewMut`]), and `[opt]` / `[opt_dst]` are the same but may be null (`None`).
//! The sizes of the values are checked against the PTX in tests/host.rs and against the C
//! signature by the emulator at every launch.

use crate::buffer::{CudaBufferView, CudaBufferViewMut};
use crate::device::CudaDevice;
use crate::error::Result;
use crate::launch::{ConvGeom, LaunchShape, PoolGeom};

macro_rules! arg_ty {
    (src $t:ty) => { &CudaBufferView<'_, $t> };
    (dst $t:ty) => { &mut CudaBufferViewMut<'_, $t> };
    (opt $t:ty) => { Option<&CudaBufferView<'_, $t>> };
    (opt_dst $t:ty) => { Option<&mut CudaBufferViewMut<'_, $t>> };
    ($t:ty) => { $t };
}

/// Size in bytes of the C parameter: a pointer for buffers, the value's size otherwise.
macro_rules! arg_size {
    (src $t:ty) => {
        std::mem::size_of::<*const $t>()
    };
    (dst $t:ty) => {
        std::mem::size_of::<*mut $t>()
    };
    (opt $t:ty) => {
        std::mem::size_of::<*const $t>()
    };
    (opt_dst $t:ty) => {
        std::mem::size_of::<*mut $t>()
    };
    ($t:ty) => {
        std::mem::size_of::<$t>()
    };
}

/// Pushes one argument to a cudarc launch builder.
macro_rules! cuda_arg {
    ($b:ident, $dev:ident, $null:ident, $name:ident, src) => {
        $b.arg($name.cuda($dev.id(), NAME, stringify!($name))?)
    };
    ($b:ident, $dev:ident, $null:ident, $name:ident, dst) => {
        $b.arg($name.cuda_mut($dev.id(), NAME, stringify!($name))?)
    };
    ($b:ident, $dev:ident, $null:ident, $name:ident, opt) => {
        match $name {
            Some(v) => $b.arg(v.cuda($dev.id(), NAME, stringify!($name))?),
            None => $b.arg(&$null),
        }
    };
    ($b:ident, $dev:ident, $null:ident, $name:ident, opt_dst) => {
        match $name {
            Some(v) => $b.arg(v.cuda_mut($dev.id(), NAME, stringify!($name))?),
            None => $b.arg(&$null),
        }
    };
    ($b:ident, $dev:ident, $null:ident, $name:ident,) => {
        $b.arg(&$name)
    };
}

/// The emulator's argument value: the host pointer for buffers, the value otherwise.
#[cfg(feature = "emu")]
macro_rules! emu_arg {
    ($dev:ident, $name:ident, src) => {
        $name.host_ptr($dev.id(), NAME, stringify!($name))?
    };
    ($dev:ident, $name:ident, dst) => {
        $name.host_ptr_mut($dev.id(), NAME, stringify!($name))?
    };
    ($dev:ident, $name:ident, opt) => {
        match $name {
            Some(v) => v.host_ptr($dev.id(), NAME, stringify!($name))?,
            None => std::ptr::null(),
        }
    };
    ($dev:ident, $name:ident, opt_dst) => {
        match $name {
            Some(v) => v.host_ptr_mut($dev.id(), NAME, stringify!($name))?,
            None => std::ptr::null_mut(),
        }
    };
    ($dev:ident, $name:ident,) => {
        $name
    };
}

macro_rules! kernel_table {
    ($(
        $module:ident {
            $( $(#[$doc:meta])* $name:ident ( $( $([$kind:ident])? $arg:ident : $t:ty ),* $(,)? ); )*
        }
    )*) => {
        $($(
            $(#[$doc])*
            #[allow(clippy::too_many_arguments, unused_mut)]
            pub mod $name {
                use super::*;
                /// The kernel's name, as its `extern "C" __global__` function is called.
                pub const NAME: &str = stringify!($name);
                /// The PTX module (`.cu` file stem) that defines it.
                pub const MODULE: &str = stringify!($module);
                /// Size in bytes of each C parameter, in order.
                pub const ARG_SIZES: &[usize] = &[$( arg_size!($($kind)? $t) ),*];

                /// Launches the kernel on `dev` with `shape`. The caller has checked every
                /// buffer against what the kernel indexes for these arguments.
                pub(crate) fn launch(
                    dev: &CudaDevice,
                    shapes: &dyn Fn() -> String,
                    shape: LaunchShape,
                    $( $arg: arg_ty!($($kind)? $t) ),*
                ) -> Result<()> {
                    let result = match dev.backend() {
                        crate::device::Backend::Cuda { stream, functions, .. } => {
                            use cudarc::driver::PushKernelArg;
                            let null: u64 = 0;
                            let func = crate::device::function(functions, NAME)?;
                            let mut b = stream.launch_builder(func);
                            $( cuda_arg!(b, dev, null, $arg, $($kind)?); )*
                            let _ = &null;
                            // SAFETY: the wrapper that called this checked that every buffer
                            // holds exactly the elements the kernel indexes for the values
                            // passed, and the argument list is the kernel's C signature (this
                            // table; sizes checked against the PTX in tests/host.rs).
                            unsafe { b.launch(shape.config()) }
                                .map(|_| ())
                                .map_err(crate::error::BackendError::from)
                        }
                        #[cfg(feature = "emu")]
                        crate::device::Backend::Emu { functions } => {
                            let entry = crate::emu::function(functions, NAME)?;
                            $( let mut $arg = emu_arg!(dev, $arg, $($kind)?); )*
                            let args: &[*mut std::ffi::c_void] = &[
                                $( std::ptr::addr_of_mut!($arg).cast() ),*
                            ];
                            let sizes: &[u32] = &[$( std::mem::size_of_val(&$arg) as u32 ),*];
                            // SAFETY: as above for the buffers, which are host memory here and
                            // stay borrowed for the call (the emulator runs the kernel before
                            // returning); every pointer in `args` points at a live local of
                            // the size given in `sizes`, which the entry checks against the
                            // kernel's C parameter types before reading them.
                            unsafe { crate::emu::launch(entry, shape, args, sizes) }
                        }
                    };
                    dev.finish_launch(NAME, shapes, shape, result)
                }
            }
        )*)*

        /// Every kernel the Rust side launches, as (module, kernel). Both devices load all of
        /// them up front, so a missing one fails at start-up, not mid-training.
        pub const KERNELS: &[(&str, &str)] = &[$($( (stringify!($module), stringify!($name)) ),*),*];

        /// (kernel, argument sizes) of every kernel.
        pub const ARG_SIZES: &[(&str, &[usize])] = &[$($( ($name::NAME, $name::ARG_SIZES) ),*),*];
    };
}

kernel_table! {
    gemm {
        /// `C = alpha A B + beta C`, row-major, no transposes.
        sgemm_nn(m: i32, n: i32, k: i32, alpha: f32, [src] a: f32, lda: i32, [src] b: f32, ldb: i32, beta: f32, [dst] c: f32, ldc: i32);
        /// As [`sgemm_nn`] with B transposed.
        sgemm_nt(m: i32, n: i32, k: i32, alpha: f32, [src] a: f32, lda: i32, [src] b: f32, ldb: i32, beta: f32, [dst] c: f32, ldc: i32);
        /// As [`sgemm_nn`] with A transposed.
        sgemm_tn(m: i32, n: i32, k: i32, alpha: f32, [src] a: f32, lda: i32, [src] b: f32, ldb: i32, beta: f32, [dst] c: f32, ldc: i32);
        /// As [`sgemm_nn`] with both transposed.
        sgemm_tt(m: i32, n: i32, k: i32, alpha: f32, [src] a: f32, lda: i32, [src] b: f32, ldb: i32, beta: f32, [dst] c: f32, ldc: i32);
    }
    conv {
        /// Convolution forward, 64 x 64 tiles.
        conv2d_forward_t64(g: ConvGeom, [src] x: f32, [src] w: f32, [opt] bias: f32, [dst] y: f32);
        /// Convolution forward, 16 x 64 tiles.
        conv2d_forward_t16(g: ConvGeom, [src] x: f32, [src] w: f32, [opt] bias: f32, [dst] y: f32);
        /// Input gradient, 64 x 64 tiles.
        conv2d_backward_input_t64(g: ConvGeom, [src] gy: f32, [src] w: f32, [dst] gx: f32);
        /// Input gradient, 16 x 64 tiles.
        conv2d_backward_input_t16(g: ConvGeom, [src] gy: f32, [src] w: f32, [dst] gx: f32);
        /// Weight gradient (split K), 64 x 64 tiles.
        conv2d_backward_weight_t64(g: ConvGeom, [src] x: f32, [src] gy: f32, [dst] partials: f32, splits: i32, k_chunk: i32);
        /// Weight gradient (split K), 16 x 64 tiles.
        conv2d_backward_weight_t16(g: ConvGeom, [src] x: f32, [src] gy: f32, [dst] partials: f32, splits: i32, k_chunk: i32);
        /// Sum of the split-K partial sums.
        sum_splits(len: i32, splits: i32, [src] partials: f32, [dst] out: f32);
    }
    pool {
        /// Max pooling with arg-max.
        max_pool2d_forward(g: PoolGeom, [src] x: f32, [dst] y: f32, [dst] argmax: u32);
        /// Max pooling gradient.
        max_pool2d_backward(g: PoolGeom, [src] grad_y: f32, [src] argmax: u32, [dst] grad_x: f32);
        /// Average pooling.
        avg_pool2d_forward(g: PoolGeom, [src] x: f32, [dst] y: f32);
        /// Average pooling gradient.
        avg_pool2d_backward(g: PoolGeom, [src] grad_y: f32, [dst] grad_x: f32);
        /// Adaptive average pooling (PyTorch's windows).
        adaptive_avg_pool2d_forward(planes: i32, h: i32, w: i32, oh: i32, ow: i32, [src] x: f32, [dst] y: f32);
        /// Adaptive average pooling gradient.
        adaptive_avg_pool2d_backward(planes: i32, h: i32, w: i32, oh: i32, ow: i32, [src] grad_y: f32, [dst] grad_x: f32);
    }
    elementwise {
        /// `y = max(x, 0)`.
        relu_forward(n: i32, [src] x: f32, [dst] y: f32);
        /// ReLU gradient from the input.
        relu_backward(n: i32, [src] x: f32, [src] gy: f32, [dst] gx: f32);
        /// `y = min(max(x, 0), 6)`, NaN passing.
        relu6_forward(n: i32, [src] x: f32, [dst] y: f32);
        /// ReLU6 gradient from the input.
        relu6_backward(n: i32, [src] x: f32, [src] gy: f32, [dst] gx: f32);
        /// Logistic sigmoid.
        sigmoid_forward(n: i32, [src] x: f32, [dst] y: f32);
        /// Sigmoid gradient from the output.
        sigmoid_backward(n: i32, [src] y: f32, [src] gy: f32, [dst] gx: f32);
        /// Hyperbolic tangent.
        tanh_forward(n: i32, [src] x: f32, [dst] y: f32);
        /// Tanh gradient from the output.
        tanh_backward(n: i32, [src] y: f32, [src] gy: f32, [dst] gx: f32);
        /// `x[o, c, i] += bias[c]`.
        bias_add(outer: i32, channels: i32, inner: i32, [src] bias: f32, [dst] x: f32);
        /// Bias gradient, one block per channel.
        bias_backward(outer: i32, channels: i32, inner: i32, [src] gy: f32, [dst] gb: f32);
        /// One SGD step.
        sgd_step(n: i32, lr: f32, momentum: f32, dampening: f32, weight_decay: f32, nesterov: i32, first_step: i32, [dst] param: f32, [src] grad: f32, [opt_dst] buf: f32);
        /// One Adam step.
        adam_step(n: i32, step_size: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, bc2_sqrt: f32, [dst] param: f32, [src] grad: f32, [dst] m: f32, [dst] v: f32);
        /// Mini-batch gather from a device-resident data set.
        gather_batch(batch: i32, sample_len: i32, [src] perm: u32, offset: i32, [src] images: f32, [src] labels: u32, [dst] out_images: f32, [dst] out_labels: u32);
        /// Crop-and-flip augmentation of a batch, `(dy, dx, flip)` per sample.
        augment_batch(batch: i32, channels: i32, h: i32, w: i32, [src] transforms: u32, [src] x: f32, [dst] y: f32);
        /// `y += x`.
        add_inplace(n: i32, [src] x: f32, [dst] y: f32);
        /// `y = a x + b y`.
        axpby(n: i32, a: f32, [src] x: f32, b: f32, [dst] y: f32);
        /// `y *= a`.
        scale(n: i32, a: f32, [dst] y: f32);
        /// `y = v`.
        fill(n: i32, v: f32, [dst] y: f32);
        /// `z = x * y`.
        mul(n: i32, [src] x: f32, [src] y: f32, [dst] z: f32);
    }
    loss {
        /// Row-wise softmax.
        softmax_forward(rows: i32, cols: i32, [src] x: f32, [dst] y: f32);
        /// Row-wise log-softmax.
        log_softmax_forward(rows: i32, cols: i32, [src] x: f32, [dst] y: f32);
        /// Per-row cross-entropy.
        softmax_xent_forward(rows: i32, cols: i32, [src] logits: f32, [src] labels: u32, [dst] loss_rows: f32);
        /// Cross-entropy gradient.
        softmax_xent_backward(rows: i32, cols: i32, [src] logits: f32, [src] labels: u32, scale: f32, [dst] grad: f32);
        /// Arg-max of each row.
        argmax_rows(rows: i32, cols: i32, [src] x: f32, [dst] out: u32);
        /// 1 where a row's arg-max is its label.
        correct_rows(rows: i32, cols: i32, [src] logits: f32, [src] labels: u32, [dst] correct: f32);
        /// One pass of the deterministic two-pass sum.
        reduce_sum(n: i32, [src] x: f32, scale: f32, [dst] out: f32);
    }
    norm {
        /// Per-channel mean and biased variance, one block per channel.
        batch_norm_stats(batch: i32, channels: i32, spatial: i32, [src] x: f32, [dst] mean: f32, [dst] var: f32);
        /// `y = x * alpha + beta` per channel.
        batch_norm_forward(batch: i32, channels: i32, spatial: i32, [src] x: f32, [src] mean: f32, [src] var: f32, eps: f32, [opt] weight: f32, [opt] bias: f32, [dst] y: f32);
        /// The per-channel sums of the backward, and the weight and bias gradients.
        batch_norm_backward_reduce(batch: i32, channels: i32, spatial: i32, [src] x: f32, [src] gy: f32, [src] mean: f32, [src] var: f32, eps: f32, [dst] sum_dy: f32, [dst] sum_dy_xmu: f32, [opt_dst] grad_weight: f32, [opt_dst] grad_bias: f32);
        /// The input gradient (through the statistics when the sums are given).
        batch_norm_backward_input(batch: i32, channels: i32, spatial: i32, [src] x: f32, [src] gy: f32, [src] mean: f32, [src] var: f32, eps: f32, [opt] weight: f32, [opt] sum_dy: f32, [opt] sum_dy_xmu: f32, [dst] gx: f32);
    }
}

/// The launch function of the kernels `(n, x, y)`: forward activations and `add_inplace`.
pub(crate) type UnaryLaunch = fn(
    &CudaDevice,
    &dyn Fn() -> String,
    LaunchShape,
    i32,
    &CudaBufferView<'_, f32>,
    &mut CudaBufferViewMut<'_, f32>,
) -> Result<()>;

/// The launch function of the kernels `(n, a, b, out)`: activation gradients and `mul`.
pub(crate) type BinaryLaunch = fn(
    &CudaDevice,
    &dyn Fn() -> String,
    LaunchShape,
    i32,
    &CudaBufferView<'_, f32>,
    &CudaBufferView<'_, f32>,
    &mut CudaBufferViewMut<'_, f32>,
) -> Result<()>;
