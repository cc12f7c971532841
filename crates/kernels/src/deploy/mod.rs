//! Deployment plans: a whole network as one byte string (layer records, weights, the arena
//! offset of every activation) and the allocation-free executor that runs it.
//!
//! One definition for everyone: `tinycnn deploy` writes plans with the records of
//! [`format`], the host and the firmware read them with [`Plan::parse`] (which checks every
//! field, so a malformed or mismatched plan is an error, never undefined behaviour or a
//! panic) and run them with [`run`] in a caller-provided arena and workspace whose sizes
//! the plan states up front ([`Plan::arena_words`], [`Plan::workspace_words`]), so a
//! firmware can make both `static`.
//!
//! Values (activations) are numbered as in `tinycnn::nn::arch`: value 0 is the input, value
//! `k + 1` is op `k`'s output, the last value is the network's output. Each lives at a fixed
//! offset in the arena ([`plan_arena`] picks them from the values' [`Lifetime`]s); the
//! reader checks that no op overwrites a value that is still to be read.
//!
//! ```
//! use tinycnn_kernels::deploy::{self, format::*, Plan, Int8Kernels};
//! // y = relu(x) for x of 3 elements: two values, one op, no data.
//! let values = [
//!     ValueRecord { dtype: DType::F32, shape: [3, 1, 1], offset: 0, scale: 0.0 },
//!     ValueRecord { dtype: DType::F32, shape: [3, 1, 1], offset: 12, scale: 0.0 },
//! ];
//! let mut op = OpRecord::new(OpKind::Act, 0, 1);
//! op.act = Act::Relu;
//! let header = Header {
//!     precision: Precision::F32, values: 2, ops: 1, arena_bytes: 24, workspace_words: 0,
//!     data_offset: (HEADER_LEN + 2 * VALUE_LEN + OP_LEN) as u32, data_len: 0, macs: 0,
//! };
//! let mut bytes = [0u32; (HEADER_LEN + 2 * VALUE_LEN + OP_LEN) / 4];
//! let b: &mut [u8] = deploy::words_as_bytes_mut(&mut bytes);
//! b[..HEADER_LEN].copy_from_slice(&header.to_bytes());
//! b[HEADER_LEN..][..VALUE_LEN].copy_from_slice(&values[0].to_bytes());
//! b[HEADER_LEN + VALUE_LEN..][..VALUE_LEN].copy_from_slice(&values[1].to_bytes());
//! b[HEADER_LEN + 2 * VALUE_LEN..].copy_from_slice(&op.to_bytes());
//! let plan = Plan::parse(deploy::words_as_bytes(&bytes)).unwrap();
//! let mut arena = [0u32; 6];
//! deploy::run(&plan, deploy::Input::F32(&[-1.0, 0.5, 2.0]), &mut arena, &mut [], Int8Kernels::Plain).unwrap();
//! let mut y = [0.0; 3];
//! deploy::logits(&plan, &arena, &mut y).unwrap();
//! assert_eq!(y, [0.0, 0.5, 2.0]);
//! ```

pub mod arena;
mod exec;
pub mod format;
mod input;
pub mod link;

pub use arena::{peak_live_bytes, plan_arena, Lifetime, ALIGN};
pub use exec::{
    dsp_conv_scratch, fast_workspace_words, logits, output, run, run_linked, run_linked_scratch,
    Int8Kernels, Output,
};
pub use input::{input_pixels_mut, Input, PixelTable};

use crate::error::KernelError;
use crate::int8::{self, Requant};
use crate::shape::{Conv2dParams, Conv2dShape, Pool2dParams, Pool2dShape};
use core::fmt;
use format::*;

/// Why a plan was refused or could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployError {
    /// The bytes are not a well-formed plan (`at`: byte offset of the problem).
    Format { what: &'static str, at: usize },
    /// Op `op`'s fields do not fit its values or its data.
    Op { op: usize, what: &'static str },
    /// A buffer handed to the executor is too small (`what` names it).
    Buffer {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A planning argument is inconsistent.
    Plan { what: &'static str },
    /// A kernel refused its arguments.
    Kernel(KernelError),
}

impl DeployError {
    pub(crate) const fn format(what: &'static str, at: usize) -> DeployError {
        DeployError::Format { what, at }
    }
    pub(crate) const fn op(op: usize, what: &'static str) -> DeployError {
        DeployError::Op { op, what }
    }
    pub(crate) const fn plan(what: &'static str) -> DeployError {
        DeployError::Plan { what }
    }
}

impl From<KernelError> for DeployError {
    fn from(e: KernelError) -> Self {
        DeployError::Kernel(e)
    }
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::Format { what, at } => write!(f, "malformed plan at byte {at}: {what}"),
            DeployError::Op { op, what } => write!(f, "plan op {op}: {what}"),
            DeployError::Buffer { what, need, have } => {
                write!(f, "{what} too small: {need} needed, {have} given")
            }
            DeployError::Plan { what } => write!(f, "cannot plan: {what}"),
            DeployError::Kernel(e) => write!(f, "kernel: {e}"),
        }
    }
}

impl core::error::Error for DeployError {}

/// The bytes of a word buffer (for a 4-byte aligned plan or arena).
pub fn words_as_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding bytes; u8 has alignment 1; same memory, 4x the length.
    unsafe { core::slice::from_raw_parts(words.as_ptr() as *const u8, words.len() * 4) }
}

/// [`words_as_bytes`] for a mutable buffer.
pub fn words_as_bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: as above; every byte pattern is a valid u32, and the borrow is carried over.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 4) }
}

/// The 32-bit FNV-1a hash of a plan's bytes: a firmware whose build script ran
/// [`Plan::parse`] on its plan records this, and at start-up checks the bytes it embeds
/// against it before [`Plan::parse_prechecked`], so a plan that differs from the one that
/// was checked in full (corrupted flash, a mismatched image) is an error, for a few bytes
/// of code instead of the full checks' kilobytes.
///
/// ```
/// use tinycnn_kernels::deploy::plan_checksum;
/// assert_eq!(plan_checksum(b""), 0x811c_9dc5); // FNV-1a's offset basis
/// assert_eq!(plan_checksum(b"a"), 0xe40c_292c); // the FNV authors' published test vector
/// ```
pub fn plan_checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A validated plan, borrowing its bytes (which may live in flash).
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    bytes: &'a [u8],
    header: Header,
}

/// Conv parameters and shape of a Conv op (or a Linear op as a 1x1 convolution).
fn conv_shape(op: &OpRecord, x: &ValueRecord, y: &ValueRecord) -> Conv2dShape {
    let u = |v: u32| v as usize;
    let p = Conv2dParams {
        in_channels: u(x.shape[0]),
        out_channels: u(y.shape[0]),
        kernel: (u(op.kernel[0]), u(op.kernel[1])),
        stride: (u(op.stride[0]), u(op.stride[1])),
        padding: (u(op.padding[0]), u(op.padding[1])),
        dilation: (u(op.dilation[0]), u(op.dilation[1])),
        groups: u(op.groups),
    };
    Conv2dShape::new(p, 1, u(x.shape[1]), u(x.shape[2]))
}

/// A Linear op as a 1x1 convolution over a 1x1 image (the f32 kernels' direct loop).
fn linear_as_conv(x: &ValueRecord, y: &ValueRecord) -> Conv2dShape {
    Conv2dShape::new(
        Conv2dParams::new(x.elements(), y.shape[0] as usize, (1, 1)),
        1,
        1,
        1,
    )
}

fn pool_shape(op: &OpRecord, x: &ValueRecord) -> Pool2dShape {
    let u = |v: u32| v as usize;
    let p = Pool2dParams {
        kernel: (u(op.kernel[0]), u(op.kernel[1])),
        stride: (u(op.stride[0]), u(op.stride[1])),
        padding: (u(op.padding[0]), u(op.padding[1])),
        count_include_pad: op.flags & 1 != 0,
    };
    Pool2dShape::new(p, 1, u(x.shape[0]), u(x.shape[1]), u(x.shape[2]))
}

/// Bytes of one requantization entry (multiplier, shift).
const REQUANT_LEN: usize = 8;

impl<'a> Plan<'a> {
    /// Checks `bytes` (4-byte aligned) as a whole plan: header, every value and op record,
    /// every op's shapes against its values and data, the arena (inside its stated size, no
    /// value overwritten while it is still to be read) and the workspace and MAC counts.
    pub fn parse(bytes: &'a [u8]) -> Result<Plan<'a>, DeployError> {
        let plan = Plan::parse_prechecked(bytes)?;
        let (header, no) = (plan.header, plan.ops());
        plan.check_values()?;
        let (mut workspace, mut macs) = (0usize, 0u64);
        for k in 0..no {
            let (ws, m) = plan.check_op(k)?;
            workspace = workspace.max(ws);
            macs = macs.saturating_add(m);
        }
        if workspace > header.workspace_words as usize {
            return Err(DeployError::format(
                "workspace size below what the ops need",
                28,
            ));
        }
        if macs != header.macs {
            return Err(DeployError::format("MAC count does not match the ops", 40));
        }
        plan.check_lifetimes()?;
        Ok(plan)
    }

    /// Reads a plan that [`Plan::parse`] has accepted before, checking only what reading
    /// it needs: the header, and that the record tables and the data lie inside `bytes`.
    ///
    /// For a firmware whose build script parsed the very bytes it embeds: the per-op checks
    /// of `parse` would cost it several KiB of code to repeat at start-up. A plan that
    /// `parse` refuses may make [`run`] return an error or a wrong result, or panic (the
    /// executor and the kernels check the buffers they index), never undefined behaviour.
    pub fn parse_prechecked(bytes: &'a [u8]) -> Result<Plan<'a>, DeployError> {
        let header = Header::from_bytes(bytes)?;
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(DeployError::format("plan bytes are not 4-byte aligned", 0));
        }
        let (nv, no) = (header.values as usize, header.ops as usize);
        if !(2..=MAX_VALUES).contains(&nv) || no + 1 != nv {
            return Err(DeployError::format(
                "value count must be op count + 1, at least 2 and at most MAX_VALUES",
                16,
            ));
        }
        let tables = HEADER_LEN + nv * VALUE_LEN + no * OP_LEN;
        let (doff, dlen) = (header.data_offset as usize, header.data_len as usize);
        if doff % 4 != 0 || doff < tables {
            return Err(DeployError::format(
                "data offset before the end of the tables or not a multiple of 4",
                32,
            ));
        }
        if doff.checked_add(dlen) != Some(bytes.len()) {
            return Err(DeployError::format(
                "data offset + length is not the plan's length",
                36,
            ));
        }
        if header.arena_bytes % 4 != 0 {
            return Err(DeployError::format("arena size is not a multiple of 4", 24));
        }
        Ok(Plan { bytes, header })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Number format.
    pub fn precision(&self) -> Precision {
        self.header.precision
    }
    /// Number of ops.
    pub fn ops(&self) -> usize {
        self.header.ops as usize
    }
    /// Number of values (ops + 1).
    pub fn values(&self) -> usize {
        self.header.values as usize
    }
    /// 32-bit words of arena [`run`] needs.
    pub fn arena_words(&self) -> usize {
        self.header.arena_bytes as usize / 4
    }
    /// 32-bit words of workspace [`run`] needs.
    pub fn workspace_words(&self) -> usize {
        self.header.workspace_words as usize
    }
    /// Multiply-accumulates of one inference.
    pub fn macs(&self) -> u64 {
        self.header.macs
    }
    /// Bytes of weights and other constant data.
    pub fn data_bytes(&self) -> usize {
        self.header.data_len as usize
    }
    /// The input value (value 0).
    pub fn input(&self) -> ValueRecord {
        self.value(0)
    }
    /// The network's output (the last value).
    pub fn output_value(&self) -> ValueRecord {
        self.value(self.values() - 1)
    }

    /// Value `v` (`v < values()`; a larger index gives the last value).
    pub fn value(&self, v: usize) -> ValueRecord {
        let v = v.min(self.values() - 1);
        let at = HEADER_LEN + v * VALUE_LEN;
        // Checked once by `parse`; after `parse_prechecked`, a record that cannot be read
        // gives this stand-in (never a panic).
        let record = self
            .bytes
            .get(at..at + VALUE_LEN)
            .and_then(|b| b.try_into().ok());
        record.and_then(ValueRecord::read).unwrap_or(ValueRecord {
            dtype: DType::F32,
            shape: [1, 1, 1],
            offset: 0,
            scale: 0.0,
        })
    }

    /// Op `k` (`k < ops()`; a larger index gives the last op).
    pub fn op(&self, k: usize) -> OpRecord {
        let k = k.min(self.ops() - 1);
        let at = HEADER_LEN + self.values() * VALUE_LEN + k * OP_LEN;
        let record = self
            .bytes
            .get(at..at + OP_LEN)
            .and_then(|b| b.try_into().ok());
        record
            .and_then(OpRecord::read)
            .unwrap_or(OpRecord::new(OpKind::Act, 0, k as u32 + 1))
    }

    /// The data bytes of `span` (checked by `parse`).
    pub(crate) fn data(&self, span: Span) -> &'a [u8] {
        let start = self.header.data_offset as usize + span.offset as usize;
        self.bytes
            .get(start..start + span.len as usize)
            .unwrap_or(&[])
    }

    fn check_values(&self) -> Result<(), DeployError> {
        for v in 0..self.values() {
            let at = HEADER_LEN + v * VALUE_LEN;
            let r = ValueRecord::from_bytes(&self.bytes[at..], at)?;
            let ok_dtype = match (self.precision(), r.dtype) {
                (Precision::F32, DType::F32) | (Precision::Int8, DType::I8) => true,
                // Raw accumulators only as the network's output.
                (Precision::Int8, DType::I32) => v == self.values() - 1,
                _ => false,
            };
            if !ok_dtype {
                return Err(DeployError::format(
                    "value dtype does not fit the plan's precision",
                    at,
                ));
            }
            if r.shape.contains(&0) {
                return Err(DeployError::format("value has an empty shape", at + 4));
            }
            let bytes = (r.shape[0] as u64)
                .checked_mul(r.shape[1] as u64)
                .and_then(|e| e.checked_mul(r.shape[2] as u64))
                .and_then(|e| e.checked_mul(r.dtype.size() as u64));
            let end = bytes.and_then(|b| b.checked_add(r.offset as u64));
            if r.offset % 4 != 0 || end.is_none_or(|e| e > self.header.arena_bytes as u64) {
                return Err(DeployError::format(
                    "value outside the arena or not 4-byte aligned",
                    at + 16,
                ));
            }
            if r.dtype == DType::I8 && !(r.scale.is_finite() && r.scale > 0.0) {
                return Err(DeployError::format(
                    "int8 value scale is not finite and positive",
                    at + 20,
                ));
            }
        }
        Ok(())
    }

    /// Checks a data span: inside the blob, aligned to `align`, `len` bytes (when `Some`).
    fn check_span(
        &self,
        k: usize,
        span: Span,
        len: Option<usize>,
        align: usize,
        what: &'static str,
    ) -> Result<(), DeployError> {
        let end = span.offset as u64 + span.len as u64;
        if end > self.header.data_len as u64 || !(span.offset as usize).is_multiple_of(align) {
            return Err(DeployError::op(k, what));
        }
        if len.is_some_and(|l| l != span.len as usize) {
            return Err(DeployError::op(k, what));
        }
        Ok(())
    }

    fn check_requants(&self, k: usize, span: Span) -> Result<(), DeployError> {
        for e in self.data(span).chunks_exact(REQUANT_LEN) {
            let r = read_requant(e);
            if r.multiplier <= 0 || !(1..=62).contains(&r.shift) {
                return Err(DeployError::op(
                    k,
                    "requantization shift outside 1..=62 or multiplier not positive",
                ));
            }
        }
        Ok(())
    }

    /// Checks op `k` against its values and data; returns its workspace words and MACs.
    fn check_op(&self, k: usize) -> Result<(usize, u64), DeployError> {
        let at = HEADER_LEN + self.values() * VALUE_LEN + k * OP_LEN;
        let op = OpRecord::from_bytes(&self.bytes[at..], at)?;
        let bad = |what| Err(DeployError::op(k, what));
        if op.output as usize != k + 1 {
            return bad("output must be value op + 1");
        }
        let binary = op.kind == OpKind::Add;
        if op.inputs[0] as usize > k || (binary && op.inputs[1] as usize > k) {
            return bad("reads a value not computed before it");
        }
        if !binary && op.inputs[1] != NO_INPUT {
            return bad("a one-input op names a second input");
        }
        let x = self.value(op.inputs[0] as usize);
        let y = self.value(k + 1);
        let int8 = self.precision() == Precision::Int8;
        let is_i32 = y.dtype == DType::I32;
        if is_i32 && op.kind != OpKind::Linear {
            return bad("only a linear layer can output raw accumulators");
        }
        let fused_ok = match op.kind {
            OpKind::Conv | OpKind::Linear | OpKind::Add => {
                !int8 || matches!(op.act, Act::None | Act::Relu | Act::Relu6)
            }
            OpKind::Act => {
                op.act != Act::None && (!int8 || matches!(op.act, Act::Relu | Act::Relu6))
            }
            OpKind::Lut => int8 && matches!(op.act, Act::Sigmoid | Act::Tanh),
            OpKind::MaxPool => op.act == Act::None,
            // int8: a table op fused in before the pooling (its table in `aux`).
            OpKind::AvgPool => {
                op.act == Act::None || (int8 && matches!(op.act, Act::Sigmoid | Act::Tanh))
            }
        };
        if !fused_ok || (is_i32 && op.act != Act::None) {
            return bad("activation not allowed on this op in this precision");
        }
        let unused = |s: Span| s == Span::default();
        let wsize = if int8 { 1 } else { 4 };
        match op.kind {
            OpKind::Conv | OpKind::Linear => {
                let s = if op.kind == OpKind::Conv {
                    conv_shape(&op, &x, &y)
                } else {
                    if y.shape[1] != 1 || y.shape[2] != 1 {
                        return bad("a linear layer's output must be [features, 1, 1]");
                    }
                    linear_as_conv(&x, &y)
                };
                s.validate()?;
                let (oh, ow) = s.out_hw()?;
                if (oh, ow) != (y.shape[1] as usize, y.shape[2] as usize) {
                    return bad("output shape does not match the convolution");
                }
                let out = s.params.out_channels;
                let wlen = s.weight_len().checked_mul(wsize);
                self.check_span(k, op.weight, wlen, wsize, "weight span does not fit")?;
                if !unused(op.bias) {
                    self.check_span(k, op.bias, Some(out * 4), 4, "bias span does not fit")?;
                }
                if int8 {
                    // i32 accumulators must not overflow on any input: at most 65535 taps of
                    // |x * w| <= 128 * 128, plus a bias of at most 2^30, stay below 2^31.
                    let taps = s.params.in_per_group() * s.params.kernel.0 * s.params.kernel.1;
                    if taps > MAX_INT8_TAPS {
                        return bad("int8 reduction longer than 65535 taps could overflow its i32 accumulator");
                    }
                    if !unused(op.bias) {
                        for b in self.data(op.bias).chunks_exact(4) {
                            if i32::from_le_bytes([b[0], b[1], b[2], b[3]]).unsigned_abs() > 1 << 30
                            {
                                return bad(
                                    "int8 bias above 2^30 could overflow its i32 accumulator",
                                );
                            }
                        }
                    }
                    let aux_len = if is_i32 { out * 4 } else { out * REQUANT_LEN };
                    self.check_span(k, op.aux, Some(aux_len), 4, "requant span does not fit")?;
                    if is_i32 {
                        for s in self.data(op.aux).chunks_exact(4) {
                            let v = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                            if !v.is_finite() {
                                return bad("dequantization scale is not finite");
                            }
                        }
                    } else {
                        self.check_requants(k, op.aux)?;
                    }
                } else if !unused(op.aux) {
                    return bad("f32 conv/linear has aux data");
                }
                op_cost(self.precision(), &op, &x, &y)
            }
            OpKind::MaxPool | OpKind::AvgPool => {
                let s = pool_shape(&op, &x);
                s.validate()?;
                let (oh, ow) = s.out_hw()?;
                if [x.shape[0], oh as u32, ow as u32] != y.shape || oh > u32::MAX as usize {
                    return bad("output shape does not match the pooling");
                }
                let table = op.act != Act::None;
                if int8 && !table && x.scale.to_bits() != y.scale.to_bits() {
                    return bad("int8 pooling must keep its input's scale");
                }
                if !(unused(op.weight) && unused(op.bias)) || op.flags > 1 {
                    return bad("pooling has weights or unknown flags");
                }
                match table {
                    true => self.check_span(k, op.aux, Some(256), 4, "aux span does not fit")?,
                    false if !unused(op.aux) => return bad("pooling has aux data"),
                    false => {}
                }
                op_cost(self.precision(), &op, &x, &y)
            }
            OpKind::Add | OpKind::Act | OpKind::Lut => {
                if x.shape != y.shape {
                    return bad("elementwise op changes the shape");
                }
                if binary && self.value(op.inputs[1] as usize).shape != y.shape {
                    return bad("the two inputs of an add differ in shape");
                }
                if !(unused(op.weight) && unused(op.bias)) {
                    return bad("elementwise op has weights");
                }
                let aux = match (op.kind, int8) {
                    (OpKind::Add, true) => Some(2 * REQUANT_LEN),
                    (OpKind::Lut, _) => Some(256),
                    _ => Some(0),
                };
                self.check_span(k, op.aux, aux, 4, "aux span does not fit")?;
                if op.kind == OpKind::Add && int8 {
                    self.check_requants(k, op.aux)?;
                }
                if op.kind == OpKind::Act && int8 && x.scale.to_bits() != y.scale.to_bits() {
                    return bad("int8 clamp must keep its input's scale");
                }
                Ok((0, 0))
            }
        }
    }

    /// The step after which value `v` is never read again (the end for the output).
    fn last_use(&self, v: usize) -> usize {
        if v == self.values() - 1 {
            return self.ops() + 1;
        }
        let mut last = v;
        for k in v..self.ops() {
            let op = self.op(k);
            if op.inputs[0] as usize == v || op.inputs[1] as usize == v {
                last = k + 1;
            }
        }
        last
    }

    /// Lifetime of value `v` ([`Lifetime`]'s step numbering).
    pub fn lifetime(&self, v: usize) -> Lifetime {
        Lifetime {
            def: v,
            last: self.last_use(v),
        }
    }

    /// No two values live at a common step share arena bytes.
    fn check_lifetimes(&self) -> Result<(), DeployError> {
        for v in 0..self.values() {
            let (lv, rv) = (self.lifetime(v), self.value(v));
            let (a0, a1) = (rv.offset as usize, rv.offset as usize + rv.bytes());
            for u in v + 1..self.values() {
                let ru = self.value(u);
                let (b0, b1) = (ru.offset as usize, ru.offset as usize + ru.bytes());
                // `u` is written at step u; a clash needs v still live then.
                if a0 < b1 && b0 < a1 && lv.last >= u {
                    return Err(DeployError::op(
                        u - 1,
                        "its output overwrites a value that is still to be read",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What op `op` (reading `x`, writing `y`) needs from the executor: workspace words, and
/// its multiply-accumulates. [`Plan::parse`] checks the header against these; the writer
/// computes the header from them.
pub fn op_cost(
    precision: Precision,
    op: &OpRecord,
    x: &ValueRecord,
    y: &ValueRecord,
) -> Result<(usize, u64), DeployError> {
    let int8 = precision == Precision::Int8;
    Ok(match op.kind {
        OpKind::Conv | OpKind::Linear => {
            let s = if op.kind == OpKind::Conv {
                conv_shape(op, x, y)
            } else {
                linear_as_conv(x, y)
            };
            s.validate()?;
            let p = &s.params;
            let macs = (s.output_len()? as u64)
                .saturating_mul((p.in_per_group() * p.kernel.0 * p.kernel.1) as u64);
            let ws = match (op.kind, int8) {
                (OpKind::Linear, true) => 0,
                (_, true) => int8::dsp::qconv2d_workspace_len(&s)?,
                (_, false) => crate::conv2d_workspace_len_for(crate::ConvAlgo::Direct, &s),
            };
            (ws, macs)
        }
        // f32 max pooling keeps its argmax indices in the workspace.
        OpKind::MaxPool if !int8 => (y.elements(), 0),
        _ => (0, 0),
    })
}

pub(crate) fn read_requant(e: &[u8]) -> Requant {
    Requant {
        multiplier: i32::from_le_bytes([e[0], e[1], e[2], e[3]]),
        shift: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
    }
}

/// The bytes of a requantization entry in a plan's data.
pub fn requant_bytes(r: Requant) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&r.multiplier.to_le_bytes());
    b[4..].copy_from_slice(&r.shift.to_le_bytes());
    b
}

// Plans are little-endian and read in place.
#[cfg(target_endian = "big")]
compile_error!("deployment plans are read in place and need a little-endian target");

#[cfg(test)]
mod tests;

/// Longest int8 reduction (input channels per group x kernel taps) a plan may ask for: with
/// a bias of at most 2^30 the i32 accumulator cannot overflow on any input.
pub const MAX_INT8_TAPS: usize = 65535;
