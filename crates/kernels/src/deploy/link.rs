//! The parts of the executor [`super::run_linked`] compiles in, as a bit set (its const parameter).
//!
//! A firmware runs one plan, known when it is built: it links only that plan's precision
//! and op kinds ([`needed_by`], computed by its build script), so the kernels of the
//! others are dead code that the linker drops (several KiB of flash on a Cortex-M). A plan
//! that needs a part the set leaves out is an error at run time, not undefined behaviour.

use super::format::{Act, OpKind, OpRecord, Precision};
use super::Plan;

/// f32 plans.
pub const F32: u32 = 1;
/// int8 plans.
pub const INT8: u32 = 2;
/// Everything ([`super::run`]).
pub const ALL: u32 = u32::MAX;
/// The int8 DSP convolution's window path ([`crate::int8::dsp::qconv2d_takes_window`]).
pub const CONV_WINDOW: u32 = 1 << 9;
/// The int8 DSP convolution's general path (im2col and 2x2 blocks).
pub const CONV_GENERAL: u32 = 1 << 10;
/// The int8 DSP convolution's depthwise path ([`crate::int8::dsp::qconv2d_takes_depthwise`]).
pub const CONV_DEPTHWISE: u32 = 1 << 12;
/// The int8 DSP convolution's pointwise path ([`crate::int8::dsp::qconv2d_takes_pointwise`]).
pub const CONV_POINTWISE: u32 = 1 << 13;
/// Every path of the int8 DSP convolution.
pub const CONV_PATHS: u32 = CONV_WINDOW | CONV_DEPTHWISE | CONV_POINTWISE | CONV_GENERAL;
/// int8 average pooling with a table op fused in before it (`act` Sigmoid or Tanh), the
/// bit [`of_op`] gives it instead of the average pooling's [`op`] bit: a plan whose average
/// poolings all have tables links no plain average pooling, and one without links no
/// fused kernel.
pub const AVG_POOL_TABLE: u32 = 1 << 11;

/// The bit of one op kind.
pub const fn op(kind: OpKind) -> u32 {
    let i = match kind {
        OpKind::Conv => 0,
        OpKind::Linear => 1,
        OpKind::MaxPool => 2,
        OpKind::AvgPool => 3,
        OpKind::Add => 4,
        OpKind::Act => 5,
        OpKind::Lut => 6,
    };
    4 << i
}

/// The bit op `op` needs: [`AVG_POOL_TABLE`] for an average pooling with a table, else its
/// kind's [`op`] bit.
pub fn of_op(op: &OpRecord) -> u32 {
    match op.kind == OpKind::AvgPool && op.act != Act::None {
        true => AVG_POOL_TABLE,
        false => self::op(op.kind),
    }
}

/// The bit of a precision.
pub const fn precision(p: Precision) -> u32 {
    match p {
        Precision::F32 => F32,
        Precision::Int8 => INT8,
    }
}

/// The smallest set that runs `plan` with any workspace: its precision and what its ops
/// need ([`of_op`]), and for an int8 plan with convolutions every path of the DSP
/// convolution.
///
/// ```
/// use tinycnn_kernels::deploy::{link, format::{OpKind, Precision}};
/// let set = link::precision(Precision::Int8) | link::op(OpKind::Conv);
/// assert!(link::has(set, link::INT8) && !link::has(set, link::F32));
/// ```
pub fn needed_by(plan: &Plan<'_>) -> u32 {
    let set = (0..plan.ops()).fold(precision(plan.precision()), |set, k| {
        set | of_op(&plan.op(k))
    });
    match plan.precision() == Precision::Int8 && has(set, op(OpKind::Conv)) {
        true => set | CONV_PATHS,
        false => set,
    }
}

/// The smallest set that runs `plan` with the DSP kernels and `workspace_words` of workspace
/// (or more) in an arena of [`Plan::arena_words`] (or more): [`needed_by`] with only the
/// DSP convolution paths its convolutions take there (see [`super::fast_workspace_words`]
/// for how the executor finds them room in the arena). A firmware passes its workspace
/// size; with less workspace, a convolution whose path is left out is an error.
pub fn needed_by_dsp(plan: &Plan<'_>, workspace_words: usize) -> u32 {
    let set = needed_by(plan) & !CONV_PATHS;
    if plan.precision() != Precision::Int8 {
        return set;
    }
    (0..plan.ops())
        .filter(|&k| plan.op(k).kind == OpKind::Conv)
        .fold(set, |set, k| {
            set | super::exec::dsp_conv_path(plan, k, workspace_words)
        })
}

/// Whether `set` holds every bit of `bits`.
pub const fn has(set: u32, bits: u32) -> bool {
    set & bits == bits
}
