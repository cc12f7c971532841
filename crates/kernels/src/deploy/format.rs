//! The byte layout of a deployment plan: header, value table, op table, data blob.
//!
//! All integers are little-endian `u32` (the MAC count `u64`); every record has a fixed
//! length, so the reader needs no allocation and can index records in place (in flash).
//!
//! ```text
//! offset  length             what
//! 0       HEADER_LEN (64)    Header (magic "TCNNPLAN", version, precision, counts, sizes)
//! 64      VALUE_LEN * values Value records: value 0 is the input, value k + 1 is op k's output
//! ...     OP_LEN * ops       Op records in execution order
//! data    data_len           weights, biases, requantization tables, LUTs (4-byte aligned)
//! ```

use super::DeployError;

/// First eight bytes of every plan.
pub const MAGIC: [u8; 8] = *b"TCNNPLAN";
/// Format version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one value record.
pub const VALUE_LEN: usize = 32;
/// Bytes of one op record.
pub const OP_LEN: usize = 84;
/// Most values a plan may hold (bounds the reader's quadratic checks).
pub const MAX_VALUES: usize = 1025;
/// `inputs[1]` of a one-input op.
pub const NO_INPUT: u32 = u32::MAX;

/// Number format of a whole plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 weights and activations, the f32 kernels.
    F32,
    /// int8 weights (symmetric, per output channel) and activations (symmetric, per tensor),
    /// i32 accumulators, fixed-point requantization (see [`crate::int8`]).
    Int8,
}

impl Precision {
    fn code(self) -> u32 {
        match self {
            Precision::F32 => 0,
            Precision::Int8 => 1,
        }
    }
    fn from_code(c: u32) -> Option<Precision> {
        match c {
            0 => Some(Precision::F32),
            1 => Some(Precision::Int8),
            _ => None,
        }
    }
    /// `f32` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

/// Element type of a value in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I8,
    /// Raw accumulators (the logits of an int8 plan's last linear layer).
    I32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::F32 | DType::I32 => 4,
        }
    }
    fn code(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::I8 => 1,
            DType::I32 => 2,
        }
    }
    fn from_code(c: u32) -> Option<DType> {
        match c {
            0 => Some(DType::F32),
            1 => Some(DType::I8),
            2 => Some(DType::I32),
            _ => None,
        }
    }
}

/// An elementwise activation, fused into an op or an op of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Act {
    None,
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
}

impl Act {
    fn code(self) -> u32 {
        match self {
            Act::None => 0,
            Act::Relu => 1,
            Act::Relu6 => 2,
            Act::Sigmoid => 3,
            Act::Tanh => 4,
        }
    }
    fn from_code(c: u32) -> Option<Act> {
        Some(match c {
            0 => Act::None,
            1 => Act::Relu,
            2 => Act::Relu6,
            3 => Act::Sigmoid,
            4 => Act::Tanh,
            _ => return None,
        })
    }
    /// PyTorch's name (`ReLU`, ...), `none` for no activation.
    pub fn name(self) -> &'static str {
        match self {
            Act::None => "none",
            Act::Relu => "ReLU",
            Act::Relu6 => "ReLU6",
            Act::Sigmoid => "Sigmoid",
            Act::Tanh => "Tanh",
        }
    }
}

/// What an op computes (see [`OpRecord`] for the fields each kind uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// 2-D convolution (groups, stride, padding, dilation), BatchNorm folded in.
    Conv,
    /// Fully connected layer over the whole input value (flattened, NCHW order).
    Linear,
    MaxPool,
    /// Average pooling (global pooling is a window the size of the input).
    AvgPool,
    /// Elementwise sum of two values of one shape (int8: both requantized to the output).
    Add,
    /// An activation on its own (int8: ReLU and ReLU6 only, as a clamp).
    Act,
    /// int8 only: `y = table[x + 128]` (sigmoid and tanh).
    Lut,
}

impl OpKind {
    fn code(self) -> u32 {
        match self {
            OpKind::Conv => 1,
            OpKind::Linear => 2,
            OpKind::MaxPool => 3,
            OpKind::AvgPool => 4,
            OpKind::Add => 5,
            OpKind::Act => 6,
            OpKind::Lut => 7,
        }
    }
    fn from_code(c: u32) -> Option<OpKind> {
        Some(match c {
            1 => OpKind::Conv,
            2 => OpKind::Linear,
            3 => OpKind::MaxPool,
            4 => OpKind::AvgPool,
            5 => OpKind::Add,
            6 => OpKind::Act,
            7 => OpKind::Lut,
            _ => return None,
        })
    }
    /// Short name for summaries and errors.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Conv => "conv",
            OpKind::Linear => "linear",
            OpKind::MaxPool => "maxpool",
            OpKind::AvgPool => "avgpool",
            OpKind::Add => "add",
            OpKind::Act => "act",
            OpKind::Lut => "lut",
        }
    }
}

/// The plan's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub precision: Precision,
    /// Value records (ops + 1).
    pub values: u32,
    /// Op records.
    pub ops: u32,
    /// Bytes of the activation arena every value lives in.
    pub arena_bytes: u32,
    /// 32-bit words of scratch the largest op needs.
    pub workspace_words: u32,
    /// Offset of the data blob from the start of the plan (a multiple of 4).
    pub data_offset: u32,
    /// Bytes of the data blob; the plan ends with it.
    pub data_len: u32,
    /// Multiply-accumulates of one inference (checked against the ops).
    pub macs: u64,
}

fn put(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

impl Header {
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        put(&mut b, 8, VERSION);
        put(&mut b, 12, self.precision.code());
        put(&mut b, 16, self.values);
        put(&mut b, 20, self.ops);
        put(&mut b, 24, self.arena_bytes);
        put(&mut b, 28, self.workspace_words);
        put(&mut b, 32, self.data_offset);
        put(&mut b, 36, self.data_len);
        b[40..48].copy_from_slice(&self.macs.to_le_bytes());
        b
    }

    /// Reads a header (magic, version and precision checked; the rest by [`super::Plan::parse`]).
    pub fn from_bytes(b: &[u8]) -> Result<Header, DeployError> {
        if b.len() < HEADER_LEN {
            return Err(DeployError::format("shorter than the header", 0));
        }
        if b[..8] != MAGIC {
            return Err(DeployError::format("not a tinycnn plan (bad magic)", 0));
        }
        if get(b, 8) != VERSION {
            return Err(DeployError::format("unsupported plan version", 8));
        }
        let precision =
            Precision::from_code(get(b, 12)).ok_or(DeployError::format("unknown precision", 12))?;
        if b[48..HEADER_LEN].iter().any(|&v| v != 0) {
            return Err(DeployError::format(
                "reserved header bytes are not zero",
                48,
            ));
        }
        let mut macs = [0u8; 8];
        macs.copy_from_slice(&b[40..48]);
        Ok(Header {
            precision,
            values: get(b, 16),
            ops: get(b, 20),
            arena_bytes: get(b, 24),
            workspace_words: get(b, 28),
            data_offset: get(b, 32),
            data_len: get(b, 36),
            macs: u64::from_le_bytes(macs),
        })
    }
}

/// One activation tensor `[c, h, w]` (one example) at `offset` bytes into the arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueRecord {
    pub dtype: DType,
    /// `(channels, height, width)`; a linear layer's output is `(features, 1, 1)`.
    pub shape: [u32; 3],
    /// Byte offset in the arena (a multiple of 4).
    pub offset: u32,
    /// int8 values: the real value of one step (`r = q * scale`, zero point 0); 0 otherwise.
    pub scale: f32,
}

impl ValueRecord {
    /// Elements (saturating; the reader checks for overflow). Not inlined: the executor asks
    /// for it at several places per op, never in a loop (flash on a microcontroller).
    #[inline(never)]
    pub fn elements(&self) -> usize {
        (self.shape[0] as usize)
            .saturating_mul(self.shape[1] as usize)
            .saturating_mul(self.shape[2] as usize)
    }
    /// Bytes it occupies in the arena.
    pub fn bytes(&self) -> usize {
        self.elements().saturating_mul(self.dtype.size())
    }
    /// The record's bytes.
    pub fn to_bytes(&self) -> [u8; VALUE_LEN] {
        let mut b = [0u8; VALUE_LEN];
        put(&mut b, 0, self.dtype.code());
        put(&mut b, 4, self.shape[0]);
        put(&mut b, 8, self.shape[1]);
        put(&mut b, 12, self.shape[2]);
        put(&mut b, 16, self.offset);
        put(&mut b, 20, self.scale.to_bits());
        b
    }
    /// The record of `b` as [`Self::from_bytes`] reads it, without its reserved-bytes check
    /// and its error (`None` for an unknown dtype): for the plan's accessors, which read
    /// records [`super::Plan::parse`] has checked (a few hundred bytes less code on a
    /// microcontroller).
    pub(crate) fn read(b: &[u8; VALUE_LEN]) -> Option<ValueRecord> {
        let f = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Some(ValueRecord {
            dtype: DType::from_code(f(0))?,
            shape: [f(1), f(2), f(3)],
            offset: f(4),
            scale: f32::from_bits(f(5)),
        })
    }
    /// Reads one record (field ranges are checked by [`super::Plan::parse`]).
    pub fn from_bytes(b: &[u8], at: usize) -> Result<ValueRecord, DeployError> {
        let b = &b[..VALUE_LEN];
        if b[24..].iter().any(|&v| v != 0) {
            return Err(DeployError::format(
                "reserved value bytes are not zero",
                at + 24,
            ));
        }
        Ok(ValueRecord {
            dtype: DType::from_code(get(b, 0)).ok_or(DeployError::format("unknown dtype", at))?,
            shape: [get(b, 4), get(b, 8), get(b, 12)],
            offset: get(b, 16),
            scale: f32::from_bits(get(b, 20)),
        })
    }
}

/// A byte range of the data blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Bytes from the start of the data blob.
    pub offset: u32,
    /// Bytes (0: absent).
    pub len: u32,
}

/// One op: what it computes, which values it reads and writes, and its tensors.
///
/// | kind | params | weight | bias | aux |
/// |---|---|---|---|---|
/// | Conv | kernel, stride, padding, dilation, groups | `[out, in/groups, kh, kw]` f32 / i8 | `[out]` f32 / i32, or none | int8: requant `[out]` (multiplier i32, shift u32) |
/// | Linear | - | `[out, in]` | `[out]` or none | int8 to i8: requant `[out]`; int8 to i32: dequantization scales f32 `[out]` |
/// | MaxPool, AvgPool | kernel, stride, padding, `flags & 1` = count_include_pad | - | - | int8 AvgPool with `act` Sigmoid or Tanh: 256 int8 entries |
/// | Add | - | - | - | int8: requant of input 0 and input 1 to the output scale |
/// | Act | - | - | - | - |
/// | Lut | - | - | - | 256 int8 entries |
///
/// `act` is fused after the op (f32: any; int8: none, ReLU or ReLU6 as the output clamp, and
/// only on Conv, Linear, Add, Act). A Lut op's `act` names the function its table holds; so
/// does an int8 AvgPool's, whose table is applied to each input value *before* the pooling
/// (a table op the planner fused into the pooling after it: its output is never stored,
/// and the pooling's output has the table's output scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRecord {
    pub kind: OpKind,
    pub act: Act,
    /// Value indices; `inputs[1]` is [`NO_INPUT`] except for Add.
    pub inputs: [u32; 2],
    pub output: u32,
    pub kernel: [u32; 2],
    pub stride: [u32; 2],
    pub padding: [u32; 2],
    pub dilation: [u32; 2],
    pub groups: u32,
    pub flags: u32,
    pub weight: Span,
    pub bias: Span,
    pub aux: Span,
}

impl OpRecord {
    /// An op of `kind` reading `input`, writing `output`, every parameter 1 or empty.
    pub fn new(kind: OpKind, input: u32, output: u32) -> OpRecord {
        OpRecord {
            kind,
            act: Act::None,
            inputs: [input, NO_INPUT],
            output,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            flags: 0,
            weight: Span::default(),
            bias: Span::default(),
            aux: Span::default(),
        }
    }

    /// The record's bytes.
    pub fn to_bytes(&self) -> [u8; OP_LEN] {
        let mut b = [0u8; OP_LEN];
        let fields = [
            self.kind.code(),
            self.act.code(),
            self.inputs[0],
            self.inputs[1],
            self.output,
            self.kernel[0],
            self.kernel[1],
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1],
            self.dilation[0],
            self.dilation[1],
            self.groups,
            self.flags,
            self.weight.offset,
            self.weight.len,
            self.bias.offset,
            self.bias.len,
            self.aux.offset,
            self.aux.len,
        ];
        for (i, v) in fields.iter().enumerate() {
            put(&mut b, 4 * i, *v);
        }
        b
    }

    /// The record of `b` as [`Self::from_bytes`] reads it, without its error (`None` for an
    /// unknown kind or activation): for [`super::Plan::op`], which reads records
    /// [`super::Plan::parse`] has checked.
    pub(crate) fn read(b: &[u8; OP_LEN]) -> Option<OpRecord> {
        let f = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let span = |i: usize| Span {
            offset: f(i),
            len: f(i + 1),
        };
        Some(OpRecord {
            kind: OpKind::from_code(f(0))?,
            act: Act::from_code(f(1))?,
            inputs: [f(2), f(3)],
            output: f(4),
            kernel: [f(5), f(6)],
            stride: [f(7), f(8)],
            padding: [f(9), f(10)],
            dilation: [f(11), f(12)],
            groups: f(13),
            flags: f(14),
            weight: span(15),
            bias: span(17),
            aux: span(19),
        })
    }

    /// Reads one record (its consistency with the values is checked by [`super::Plan::parse`]).
    pub fn from_bytes(b: &[u8], at: usize) -> Result<OpRecord, DeployError> {
        let b = &b[..OP_LEN];
        let f = |i: usize| get(b, 4 * i);
        Ok(OpRecord {
            kind: OpKind::from_code(f(0)).ok_or(DeployError::format("unknown op kind", at))?,
            act: Act::from_code(f(1)).ok_or(DeployError::format("unknown activation", at + 4))?,
            inputs: [f(2), f(3)],
            output: f(4),
            kernel: [f(5), f(6)],
            stride: [f(7), f(8)],
            padding: [f(9), f(10)],
            dilation: [f(11), f(12)],
            groups: f(13),
            flags: f(14),
            weight: Span {
                offset: f(15),
                len: f(16),
            },
            bias: Span {
                offset: f(17),
                len: f(18),
            },
            aux: Span {
                offset: f(19),
                len: f(20),
            },
        })
    }
}
