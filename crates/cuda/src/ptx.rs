//! The precompiled PTX modules (kernels-cuda/ptx, see scripts/gen-ptx.sh) and the table of
//! every kernel the Rust side launches.

/// One PTX module: its name (the `.cu` file stem) and its text.
#[derive(Debug, Clone, Copy)]
pub struct PtxModule {
    pub name: &'static str,
    pub ptx: &'static str,
}

/// All modules, embedded at build time.
pub const MODULES: [PtxModule; 6] = [
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
    PtxModule {
        name: "norm",
        ptx: include_str!("../../../kernels-cuda/ptx/norm.ptx"),
    },
];

/// Kernel names, as the `extern "C" __global__` functions are called (from the kernel
/// table, [`crate::kernels`]).
pub mod names {
    use crate::kernels as k;
    pub const SGEMM_NN: &str = k::sgemm_nn::NAME;
    pub const SGEMM_NT: &str = k::sgemm_nt::NAME;
    pub const SGEMM_TN: &str = k::sgemm_tn::NAME;
    pub const SGEMM_TT: &str = k::sgemm_tt::NAME;
    pub const CONV_FORWARD_T64: &str = k::conv2d_forward_t64::NAME;
    pub const CONV_FORWARD_T16: &str = k::conv2d_forward_t16::NAME;
    pub const CONV_BACKWARD_INPUT_T64: &str = k::conv2d_backward_input_t64::NAME;
    pub const CONV_BACKWARD_INPUT_T16: &str = k::conv2d_backward_input_t16::NAME;
    pub const CONV_BACKWARD_WEIGHT_T64: &str = k::conv2d_backward_weight_t64::NAME;
    pub const CONV_BACKWARD_WEIGHT_T16: &str = k::conv2d_backward_weight_t16::NAME;
    pub const SUM_SPLITS: &str = k::sum_splits::NAME;
    pub const MAX_POOL_FORWARD: &str = k::max_pool2d_forward::NAME;
    pub const MAX_POOL_BACKWARD: &str = k::max_pool2d_backward::NAME;
    pub const AVG_POOL_FORWARD: &str = k::avg_pool2d_forward::NAME;
    pub const AVG_POOL_BACKWARD: &str = k::avg_pool2d_backward::NAME;
    pub const RELU_FORWARD: &str = k::relu_forward::NAME;
    pub const RELU_BACKWARD: &str = k::relu_backward::NAME;
    pub const SIGMOID_FORWARD: &str = k::sigmoid_forward::NAME;
    pub const SIGMOID_BACKWARD: &str = k::sigmoid_backward::NAME;
    pub const TANH_FORWARD: &str = k::tanh_forward::NAME;
    pub const TANH_BACKWARD: &str = k::tanh_backward::NAME;
    pub const BIAS_ADD: &str = k::bias_add::NAME;
    pub const BIAS_BACKWARD: &str = k::bias_backward::NAME;
    pub const SGD_STEP: &str = k::sgd_step::NAME;
    pub const ADAM_STEP: &str = k::adam_step::NAME;
    pub const GATHER_BATCH: &str = k::gather_batch::NAME;
    pub const SOFTMAX_FORWARD: &str = k::softmax_forward::NAME;
    pub const LOG_SOFTMAX_FORWARD: &str = k::log_softmax_forward::NAME;
    pub const SOFTMAX_XENT_FORWARD: &str = k::softmax_xent_forward::NAME;
    pub const SOFTMAX_XENT_BACKWARD: &str = k::softmax_xent_backward::NAME;
    pub const ARGMAX_ROWS: &str = k::argmax_rows::NAME;
    pub const CORRECT_ROWS: &str = k::correct_rows::NAME;
    pub const REDUCE_SUM: &str = k::reduce_sum::NAME;
    pub const ADD_INPLACE: &str = k::add_inplace::NAME;
    pub const AXPBY: &str = k::axpby::NAME;
    pub const SCALE: &str = k::scale::NAME;
    pub const FILL: &str = k::fill::NAME;
    pub const MUL: &str = k::mul::NAME;
    pub const RELU6_FORWARD: &str = k::relu6_forward::NAME;
    pub const RELU6_BACKWARD: &str = k::relu6_backward::NAME;
    pub const AUGMENT_BATCH: &str = k::augment_batch::NAME;
    pub const ADAPTIVE_AVG_POOL_FORWARD: &str = k::adaptive_avg_pool2d_forward::NAME;
    pub const ADAPTIVE_AVG_POOL_BACKWARD: &str = k::adaptive_avg_pool2d_backward::NAME;
    pub const BATCH_NORM_STATS: &str = k::batch_norm_stats::NAME;
    pub const BATCH_NORM_FORWARD: &str = k::batch_norm_forward::NAME;
    pub const BATCH_NORM_BACKWARD_REDUCE: &str = k::batch_norm_backward_reduce::NAME;
    pub const BATCH_NORM_BACKWARD_INPUT: &str = k::batch_norm_backward_input::NAME;
}

/// Every kernel the Rust side launches, with the module that defines it. Both devices load
/// all of them up front, so a missing one fails at start-up, not mid-training.
pub const KERNELS: &[(&str, &str)] = crate::kernels::KERNELS;

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
