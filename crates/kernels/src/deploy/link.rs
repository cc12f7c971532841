//! The parts of the executor [`super::run_linked`] compiles in, as a bit set (its const parameter).
//!
//! A firmware runs one plan, known when it is built: it links only that plan's precision
//! and op kinds ([`needed_by`], computed by its build script), so the kernels of the
//! others are dead code that the linker drops (several KiB of flash on a Cortex-M). A plan
//! that needs a part the set leaves out is an error at run time, not undefined behaviour.

use super::format::{OpKind, Precision};
use super::Plan;

/// f32 plans.
pub const F32: u32 = 1;
/// int8 plans.
pub const INT8: u32 = 2;
/// Everything ([`super::run`]).
pub const ALL: u32 = u32::MAX;

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

/// The bit of a precision.
pub const fn precision(p: Precision) -> u32 {
    match p {
        Precision::F32 => F32,
        Precision::Int8 => INT8,
    }
}

/// The smallest set that runs `plan`: its precision and the kinds of its ops.
///
/// ```
/// use tinycnn_kernels::deploy::{link, format::{OpKind, Precision}};
/// let set = link::precision(Precision::Int8) | link::op(OpKind::Conv);
/// assert!(link::has(set, link::INT8) && !link::has(set, link::F32));
/// ```
pub fn needed_by(plan: &Plan<'_>) -> u32 {
    (0..plan.ops()).fold(precision(plan.precision()), |set, k| {
        set | op(plan.op(k).kind)
    })
}

/// Whether `set` holds every bit of `bits`.
pub const fn has(set: u32, bits: u32) -> bool {
    set & bits == bits
}
