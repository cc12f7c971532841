//! The precompiled PTX modules (kernels-cuda/ptx, see scripts/gen-ptx.sh) and the table of
//! every kernel the Rust side launches.

/// One PTX module: its name (the `.cu` file stem) and its text.
#[derive(Debug, Clone, Copy)]
pub struct PtxModule {
    pub name: &'static str,
    pub ptx: &'static str,
}

/// All modules, embedded at build time.
pub const MODULES: [PtxModule; 5] = [
    PtxModule {
        name: "gemm",
        ptx: include_str!("../../../kernels-cuda/ptx/gemm.ptx"),
    },
    PtxModule {
        name: "conv",
        ptx: include_str!("../../../kernels-cuda/ptx/conv.ptx"),
    },
    PtxModule {
        name: "pool",
        ptx: include_str!("../../../kernels-cuda/ptx/pool.ptx"),
    },
    PtxModule {
        name: "elementwise",
        ptx: include_str!("../../../kernels-cuda/ptx/elementwise.ptx"),
    },
    PtxModule {
        name: "loss",
        ptx: include_str!("../../../kernels-cuda/ptx/loss.ptx"),
    },
];

/// Kernel names, as the `extern "C" __global__` functions are called.
pub mod names {
    pub const SGEMM_NN: &str = "sgemm_nn";
    pub const SGEMM_NT: &str = "sgemm_nt";
    pub const SGEMM_TN: &str = "sgemm_tn";
    pub const SGEMM_TT: &str = "sgemm_tt";
    pub const CONV_FORWARD_T64: &str = "conv2d_forward_t64";
    pub const CONV_FORWARD_T16: &str = "conv2d_forward_t16";
    pub const CONV_BACKWARD_INPUT_T64: &str = "conv2d_backward_input_t64";
    pub const CONV_BACKWARD_INPUT_T16: &str = "conv2d_backward_input_t16";
    pub const CONV_BACKWARD_WEIGHT_T64: &str = "conv2d_backward_weight_t64";
    pub const CONV_BACKWARD_WEIGHT_T16: &str = "conv2d_backward_weight_t16";
    pub const SUM_SPLITS: &str = "sum_splits";
    pub const MAX_POOL_FORWARD: &str = "max_pool2d_forward";
    pub const MAX_POOL_BACKWARD: &str = "max_pool2d_backward";
    pub const AVG_POOL_FORWARD: &str = "avg_pool2d_forward";
    pub const AVG_POOL_BACKWARD: &str = "avg_pool2d_backward";
    pub const RELU_FORWARD: &str = "relu_forward";
    pub const RELU_BACKWARD: &str = "relu_backward";
    pub const SIGMOID_FORWARD: &str = "sigmoid_forward";
    pub const SIGMOID_BACKWARD: &str = "sigmoid_backward";
    pub const TANH_FORWARD: &str = "tanh_forward";
    pub const TANH_BACKWARD: &str = "tanh_backward";
    pub const BIAS_ADD: &str = "bias_add";
    pub const BIAS_BACKWARD: &str = "bias_backward";
    pub const SGD_STEP: &str = "sgd_step";
    pub const ADAM_STEP: &str = "adam_step";
    pub const GATHER_BATCH: &str = "gather_batch";
    pub const SOFTMAX_FORWARD: &str = "softmax_forward";
    pub const LOG_SOFTMAX_FORWARD: &str = "log_softmax_forward";
    pub const SOFTMAX_XENT_FORWARD: &str = "softmax_xent_forward";
    pub const SOFTMAX_XENT_BACKWARD: &str = "softmax_xent_backward";
    pub const ARGMAX_ROWS: &str = "argmax_rows";
    pub const CORRECT_ROWS: &str = "correct_rows";
    pub const REDUCE_SUM: &str = "reduce_sum";
}

use names::*;

/// Every kernel the Rust side launches, with the module that defines it. `CudaDevice::new`
/// loads all of them up front, so a missing one fails at start-up, not mid-training.
pub const KERNELS: &[(&str, &str)] = &[
    ("gemm", SGEMM_NN),
    ("gemm", SGEMM_NT),
    ("gemm", SGEMM_TN),
    ("gemm", SGEMM_TT),
    ("conv", CONV_FORWARD_T64),
    ("conv", CONV_FORWARD_T16),
    ("conv", CONV_BACKWARD_INPUT_T64),
    ("conv", CONV_BACKWARD_INPUT_T16),
    ("conv", CONV_BACKWARD_WEIGHT_T64),
    ("conv", CONV_BACKWARD_WEIGHT_T16),
    ("conv", SUM_SPLITS),
    ("pool", MAX_POOL_FORWARD),
    ("pool", MAX_POOL_BACKWARD),
    ("pool", AVG_POOL_FORWARD),
    ("pool", AVG_POOL_BACKWARD),
    ("elementwise", RELU_FORWARD),
    ("elementwise", RELU_BACKWARD),
    ("elementwise", SIGMOID_FORWARD),
    ("elementwise", SIGMOID_BACKWARD),
    ("elementwise", TANH_FORWARD),
    ("elementwise", TANH_BACKWARD),
    ("elementwise", BIAS_ADD),
    ("elementwise", BIAS_BACKWARD),
    ("elementwise", SGD_STEP),
    ("elementwise", ADAM_STEP),
    ("elementwise", GATHER_BATCH),
    ("loss", SOFTMAX_FORWARD),
    ("loss", LOG_SOFTMAX_FORWARD),
    ("loss", SOFTMAX_XENT_FORWARD),
    ("loss", SOFTMAX_XENT_BACKWARD),
    ("loss", ARGMAX_ROWS),
    ("loss", CORRECT_ROWS),
    ("loss", REDUCE_SUM),
];

/// The names of the `.entry` (kernel) functions a PTX text defines, in order.
///
/// ```
/// let ptx = ".visible .entry relu_forward(\n.param .u32 n\n)\n{ ret; }";
/// assert_eq!(tinycnn_cuda::ptx::entries(ptx), vec!["relu_forward"]);
/// ```
pub fn entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|line| {
            let rest = line.split(".entry").nth(1)?;
            let name = rest
                .trim_start()
                .split(|c: char| c == '(' || c.is_whitespace())
                .next()?;
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The module named `name`.
pub fn module(name: &str) -> Option<&'static PtxModule> {
    MODULES.iter().find(|m| m.name == name)
}
