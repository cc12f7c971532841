//! The executor: runs a parsed [`Plan`] in a caller-provided arena and workspace.

use super::format::{Act, DType, OpKind, OpRecord, Precision, ValueRecord};
use super::input::write_input;
use super::{
    conv_shape, linear_as_conv, pool_shape, read_requant, words_as_bytes, words_as_bytes_mut,
};
use super::{link, DeployError, Input, Plan};
use crate::int8::{self, ActRange, QLinearShape, Requant};
use crate::{avg_pool2d_forward, conv2d_forward_with, max_pool2d_forward, ConvAlgo};

/// Which int8 kernels run the convolutions, linear layers and pooling. All three give the
/// same result, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernels {
    /// [`crate::int8`]'s plain kernels (the fast choice without `SMLAD`).
    Plain,
    /// [`crate::int8::dsp`]: `SMLAD`/`SXTB16` on a Cortex-M4 (emulated elsewhere).
    Dsp,
    /// [`crate::int8::reference`]'s naive loops (tests).
    Reference,
}

impl Int8Kernels {
    /// `Dsp` where the instructions are native (thumbv7em), else `Plain`.
    pub const NATIVE_BEST: Int8Kernels = if int8::dsp::NATIVE {
        Int8Kernels::Dsp
    } else {
        Int8Kernels::Plain
    };
}

/// The network's output after [`run`].
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    F32(&'a [f32]),
    /// int8 values at one scale.
    I8 {
        values: &'a [i8],
        scale: f32,
    },
    /// Raw accumulators of the last linear layer; `acc[o] * scales[o]` is the real logit.
    I32 {
        acc: &'a [i32],
        scales: &'a [f32],
    },
}

/// `b` as a slice of `T` (f32, i32, i8 or `Requant`), or an error if `b` is not aligned for `T` or
/// not a whole number of them.
fn cast<T>(b: &[u8]) -> Result<&[T], DeployError> {
    let size = core::mem::size_of::<T>();
    if !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>())
        || !b.len().is_multiple_of(size)
    {
        return Err(DeployError::format("misaligned buffer", 0));
    }
    // SAFETY: only instantiated with f32, i32, u32, i8 and `Requant` (`repr(C)` i32, u32),
    // for which every bit pattern is valid; `b` is aligned for `T` and holds exactly `b.len() / size` of them; the borrow carries
    // over.
    Ok(unsafe { core::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / size) })
}

/// [`cast`] for a mutable slice (f32, i32, u32 or i8).
pub(super) fn cast_mut<T>(b: &mut [u8]) -> Result<&mut [T], DeployError> {
    let size = core::mem::size_of::<T>();
    if !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>())
        || !b.len().is_multiple_of(size)
    {
        return Err(DeployError::format("misaligned buffer", 0));
    }
    // SAFETY: as in `cast`; the exclusive borrow carries over.
    Ok(unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut T, b.len() / size) })
}

pub(super) fn range_of(v: &ValueRecord) -> (usize, usize) {
    (v.offset as usize, v.offset as usize + v.bytes())
}

/// The arena bytes an op's inputs may lie in (everything but its output and a scratch
/// range): up to three pieces, each with its arena offset; the plan guarantees that inputs
/// and output do not overlap.
struct Inputs<'b> {
    pieces: [(usize, &'b [u8]); 3],
}

/// Splits the arena into the output's bytes (mutable) and the rest (shared).
fn split(arena: &mut [u8], out: (usize, usize)) -> Result<(&mut [u8], Inputs<'_>), DeployError> {
    let (o, _, views) = carve(arena, out, (0, 0))?;
    Ok((o, views))
}

/// Splits the arena into the output's bytes, the bytes of `scratch` (both mutable; they
/// must not overlap) and the rest (shared).
fn carve(
    arena: &mut [u8],
    out: (usize, usize),
    scratch: (usize, usize),
) -> Result<(&mut [u8], &mut [u8], Inputs<'_>), DeployError> {
    // An empty scratch range may lie anywhere: right after the output.
    let scratch = match scratch.0 < scratch.1 {
        true => scratch,
        false => (out.1, out.1),
    };
    let out_first = out.0 <= scratch.0;
    let (first, second) = match out_first {
        true => (out, scratch),
        false => (scratch, out),
    };
    if first.0 > first.1 || first.1 > second.0 || second.0 > second.1 || second.1 > arena.len() {
        return Err(DeployError::plan("value outside the arena"));
    }
    let (p0, rest) = arena.split_at_mut(first.0);
    let (f, rest) = rest.split_at_mut(first.1 - first.0);
    let (p1, rest) = rest.split_at_mut(second.0 - first.1);
    let (sd, p2) = rest.split_at_mut(second.1 - second.0);
    let views = Inputs {
        pieces: [(0, p0), (first.1, p1), (second.1, p2)],
    };
    Ok(match out_first {
        true => (f, sd, views),
        false => (sd, f, views),
    })
}

impl<'b> Inputs<'b> {
    fn get(&self, r: (usize, usize)) -> Result<&'b [u8], DeployError> {
        self.pieces
            .iter()
            .find_map(|&(at, p)| p.get(r.0.checked_sub(at)?..r.1.checked_sub(at)?))
            .ok_or(DeployError::plan("an input overlaps its op's output"))
    }
}

/// Most values [`free_arena_range`] considers live at once (more: no free range).
const MAX_LIVE: usize = 8;

/// The largest word-aligned byte range of an arena of `arena_len` bytes that holds no
/// value live while op `k` runs (its inputs, its output, values read by later ops and the
/// network's output): scratch space for op `k`, free because whatever lies there is either
/// dead or not written yet. Empty for plans of more than 64 values or with more than
/// [`MAX_LIVE`] values live at op `k`.
pub(super) fn free_arena_range(plan: &Plan<'_>, k: usize, arena_len: usize) -> (usize, usize) {
    let values = plan.values();
    if values > 64 {
        return (0, 0);
    }
    // Value v is written at step v (op v - 1; the input at step 0) and op k runs at step
    // k + 1: it is live then if written by then and read by op k or a later op, or if it
    // is op k's output or the network's output.
    let written = |v: usize| v <= k + 1;
    let mut live: u64 = 1 << (k + 1).min(values - 1);
    if written(values - 1) {
        live |= 1 << (values - 1);
    }
    for j in k..plan.ops() {
        let op = plan.op(j);
        for v in op.inputs.map(|v| v as usize) {
            if v < values && written(v) {
                live |= 1 << v;
            }
        }
    }
    if live.count_ones() as usize > MAX_LIVE {
        return (0, 0);
    }
    let mut ranges = [(0u32, 0u32); MAX_LIVE];
    let mut n = 0;
    for v in (0..values).filter(|&v| live >> v & 1 == 1) {
        let r = range_of(&plan.value(v));
        if r.0 < r.1 {
            ranges[n] = (r.0 as u32, r.1 as u32);
            n += 1;
        }
    }
    let ranges = &ranges[..n];
    let mut best = (0, 0);
    let starts = core::iter::once(0).chain(ranges.iter().map(|r| r.1 as usize));
    for start in starts.map(|s| s.next_multiple_of(4)) {
        let inside = |r: &&(u32, u32)| r.0 as usize <= start && start < r.1 as usize;
        if start >= arena_len || ranges.iter().any(|r| inside(&r)) {
            continue;
        }
        let end = ranges
            .iter()
            .filter(|r| r.0 as usize > start)
            .map(|r| r.0 as usize)
            .fold(arena_len, usize::min)
            & !3;
        if end > start && end - start > best.1 - best.0 {
            best = (start, end);
        }
    }
    best
}

/// Where the DSP window path of conv op `k` runs when the workspace (`workspace_words`) is
/// below its fastest: the largest free arena range if that is larger, else nowhere (an
/// empty range). Not inlined: its locals stay off the stack of the kernels.
#[inline(never)]
fn conv_scratch(
    plan: &Plan<'_>,
    k: usize,
    op: &OpRecord,
    arena_len: usize,
    workspace_words: usize,
) -> (usize, usize) {
    let (xv, yv) = (
        plan.value(op.inputs[0] as usize),
        plan.value(op.output as usize),
    );
    let s = conv_shape(op, &xv, &yv);
    // The whole image in one band (for a window shape, `qconv2d_workspace_len_fast`
    // without the general path's size, which the workspace holds anyway).
    let whole = yv.shape[1] as usize;
    if int8::dsp::qconv2d_window_workspace_len_rows(&s, whole).is_some_and(|n| n > workspace_words)
    {
        let free = free_arena_range(plan, k, arena_len);
        if (free.1 - free.0) / 4 > workspace_words {
            return free;
        }
    }
    (0, 0)
}

/// [`int8::quantize_one`], one copy for the executor's few calls (input pixels, ReLU6
/// bounds; flash on a microcontroller).
#[inline(never)]
pub(super) fn quantize_one(r: f32, scale: f32) -> i8 {
    int8::quantize_one(r, scale)
}

/// The int8 clamp of a fused activation at output scale `scale`.
fn int8_range(act: Act, scale: f32) -> ActRange {
    match act {
        Act::Relu => ActRange::RELU,
        Act::Relu6 => ActRange {
            min: 0,
            max: quantize_one(6.0, scale).max(0),
        },
        _ => ActRange::FULL,
    }
}

fn act_f32(act: Act, y: &mut [f32]) {
    match act {
        Act::None => {}
        // `v < 0` is false for NaN: NaN propagates, as in PyTorch.
        Act::Relu => y.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v = 0.0
            }
        }),
        // `clamp` returns NaN for NaN.
        Act::Relu6 => y.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        Act::Sigmoid => y
            .iter_mut()
            .for_each(|v| *v = 1.0 / (1.0 + libm::expf(-*v))),
        Act::Tanh => y.iter_mut().for_each(|v| *v = libm::tanhf(*v)),
    }
}

/// Runs one inference: writes `input` into the arena (quantized at the input's scale in an
/// int8 plan), then every op in order. `arena` holds at least [`Plan::arena_words`] words,
/// `workspace` at least [`Plan::workspace_words`]; read the result with [`output`] or
/// [`logits`]. `kernels` picks the int8 kernels (ignored by f32 plans).
pub fn run(
    plan: &Plan<'_>,
    input: Input<'_>,
    arena: &mut [u32],
    workspace: &mut [u32],
    kernels: Int8Kernels,
) -> Result<(), DeployError> {
    run_linked::<{ link::ALL }>(plan, input, arena, workspace, kernels)
}

/// [`run`] compiled with only the parts of the executor in `LINK` (a [`link`] set, such as
/// [`link::needed_by`] of the plan a firmware embeds): a plan that needs another part is
/// refused with an error. `kernels` should be a constant at the call site, so that only
/// that family of int8 kernels is linked.
pub fn run_linked<const LINK: u32>(
    plan: &Plan<'_>,
    input: Input<'_>,
    arena: &mut [u32],
    workspace: &mut [u32],
    kernels: Int8Kernels,
) -> Result<(), DeployError> {
    run_scratch::<LINK>(plan, input, arena, workspace, kernels, None)
}

/// [`run_linked`] with the arena ranges its DSP convolutions take as workspace given, not
/// found at each op: `scratch[k]` is [`dsp_conv_scratch`]`(plan, k, workspace.len())`
/// (empty for the other ops, and where the table ends), computed where the plan is built
/// (a firmware's build script), so the code that finds them is not linked (its
/// liveness analysis of the arena, 0.7 KB of flash on a Cortex-M4). The executor checks
/// that a range lies in the arena, is word-aligned and overlaps neither the op's output nor
/// its inputs (an error otherwise); that it holds no value a later op reads is what
/// [`dsp_conv_scratch`] guarantees, for the plan, arena size and workspace size it was given.
pub fn run_linked_scratch<const LINK: u32>(
    plan: &Plan<'_>,
    input: Input<'_>,
    arena: &mut [u32],
    workspace: &mut [u32],
    kernels: Int8Kernels,
    scratch: &[(u32, u32)],
) -> Result<(), DeployError> {
    run_scratch::<LINK>(plan, input, arena, workspace, kernels, Some(scratch))
}

/// The arena byte range conv op `k` of an int8 plan runs the DSP window path in, in an arena
/// of [`Plan::arena_words`] with `workspace_words` of workspace: the largest range that
/// holds no value live at op `k`, where that is larger than the workspace and the workspace
/// is below the path's fastest; else empty (the workspace). Empty for other ops and plans.
/// The table of [`run_linked_scratch`].
pub fn dsp_conv_scratch(plan: &Plan<'_>, k: usize, workspace_words: usize) -> (usize, usize) {
    let op = plan.op(k);
    match plan.precision() == Precision::Int8 && op.kind == OpKind::Conv && k < plan.ops() {
        true => conv_scratch(plan, k, &op, 4 * plan.arena_words(), workspace_words),
        false => (0, 0),
    }
}

/// [`run_linked`], with the DSP convolutions' arena ranges given or (`None`) found per op.
fn run_scratch<const LINK: u32>(
    plan: &Plan<'_>,
    input: Input<'_>,
    arena: &mut [u32],
    workspace: &mut [u32],
    kernels: Int8Kernels,
    scratch: Option<&[(u32, u32)]>,
) -> Result<(), DeployError> {
    if !link::has(LINK, link::precision(plan.precision())) {
        return Err(DeployError::plan(
            "the executor was built without the plan's precision",
        ));
    }
    if arena.len() < plan.arena_words() {
        return Err(DeployError::Buffer {
            what: "arena",
            need: plan.arena_words(),
            have: arena.len(),
        });
    }
    if workspace.len() < plan.workspace_words() {
        return Err(DeployError::Buffer {
            what: "workspace",
            need: plan.workspace_words(),
            have: workspace.len(),
        });
    }
    let bytes = words_as_bytes_mut(arena);
    write_input::<LINK>(plan, input, bytes)?;
    for k in 0..plan.ops() {
        let op = plan.op(k);
        if !link::has(LINK, link::of_op(&op)) {
            return Err(DeployError::op(
                k,
                "the executor was built without this op kind",
            ));
        }
        match plan.precision() {
            Precision::F32 if link::has(LINK, link::F32) => {
                run_f32::<LINK>(plan, &op, bytes, workspace)?
            }
            Precision::Int8 if link::has(LINK, link::INT8) => {
                run_int8::<LINK>(plan, k, &op, bytes, workspace, kernels, scratch)?
            }
            _ => return Err(unlinked()),
        }
    }
    Ok(())
}

/// Words of workspace with which [`run`] takes the fastest kernels, or nearly:
/// [`Plan::workspace_words`] (the least any kernel choice needs), or more where a
/// convolution of an int8 plan has the DSP window path and the arena has no free stretch at
/// that op for it. The DSP executor runs such a convolution in the larger of the workspace
/// and the largest arena range that holds no value live at that op, in bands of as many
/// output rows as that holds (up to the whole image,
/// [`int8::dsp::qconv2d_workspace_len_fast`]); bands of half the output's rows (the input
/// rows and weights widened at most twice,
/// [`int8::dsp::qconv2d_window_workspace_len_rows`]) count as enough, and are what this
/// asks for where the arena has less. A firmware sizes its workspace with this; [`run`] works with any workspace of at
/// least [`Plan::workspace_words`].
pub fn fast_workspace_words(plan: &Plan<'_>) -> usize {
    let mut words = plan.workspace_words();
    if plan.precision() == Precision::Int8 {
        for k in 0..plan.ops() {
            let op = plan.op(k);
            if op.kind != OpKind::Conv {
                continue;
            }
            let (xv, yv) = (
                plan.value(op.inputs[0] as usize),
                plan.value(op.output as usize),
            );
            let s = conv_shape(&op, &xv, &yv);
            // The depthwise path's padded plane and the pointwise path's bands are small:
            // always in the workspace.
            let small = int8::dsp::qconv2d_depthwise_workspace_len(&s)
                .or_else(|| int8::dsp::qconv2d_pointwise_workspace_len_fast(&s));
            if let Some(need) = small {
                words = words.max(need);
                continue;
            }
            let half = yv.shape[1].div_ceil(2) as usize;
            let Some(enough) = int8::dsp::qconv2d_window_workspace_len_rows(&s, half) else {
                continue;
            };
            let free = free_arena_range(plan, k, 4 * plan.arena_words());
            if (free.1 - free.0) / 4 < enough {
                words = words.max(enough);
            }
        }
    }
    words
}

/// The link bit of the path the DSP executor runs conv op `k` (of an int8 plan) on with
/// `workspace_words` of workspace in an arena of the plan's size
/// ([`int8::dsp::qconv2d_path`] with the workspace, or the arena's free range at op `k`
/// where that is larger: only window shapes get one).
pub(super) fn dsp_conv_path(plan: &Plan<'_>, k: usize, workspace_words: usize) -> u32 {
    let op = plan.op(k);
    let (xv, yv) = (
        plan.value(op.inputs[0] as usize),
        plan.value(op.output as usize),
    );
    let scratch = conv_scratch(plan, k, &op, 4 * plan.arena_words(), workspace_words);
    let words = workspace_words.max((scratch.1 - scratch.0) / 4);
    let rq: &[Requant] = cast(plan.data(op.aux)).unwrap_or(&[]);
    match int8::dsp::qconv2d_path(&conv_shape(&op, &xv, &yv), rq, words) {
        int8::dsp::ConvPath::Window => link::CONV_WINDOW,
        int8::dsp::ConvPath::Depthwise => link::CONV_DEPTHWISE,
        int8::dsp::ConvPath::Pointwise => link::CONV_POINTWISE,
        int8::dsp::ConvPath::General => link::CONV_GENERAL,
    }
}

/// A part of the executor that `run_linked`'s set leaves out (checked before each op).
pub(super) fn unlinked() -> DeployError {
    DeployError::plan("the executor was built without a part the plan needs")
}

/// Whether op kind `kind` is in the set `LINK` (constant: the arms it guards compile out).
const fn linked<const LINK: u32>(kind: OpKind) -> bool {
    link::has(LINK, link::op(kind))
}

/// `kind == b` for an op of kind `a` or `b` that passed its arm's [`linked`] guard: a
/// constant where `LINK` holds only one of the two, so the other's branch compiles out.
fn is_second<const LINK: u32>(kind: OpKind, a: OpKind, b: OpKind) -> bool {
    if !linked::<LINK>(a) {
        true
    } else if !linked::<LINK>(b) {
        false
    } else {
        kind == b
    }
}

fn run_f32<const LINK: u32>(
    plan: &Plan<'_>,
    op: &OpRecord,
    arena: &mut [u8],
    workspace: &mut [u32],
) -> Result<(), DeployError> {
    let xv = plan.value(op.inputs[0] as usize);
    let yv = plan.value(op.output as usize);
    let (out, views) = split(arena, range_of(&yv))?;
    let x: &[f32] = cast(views.get(range_of(&xv))?)?;
    let y: &mut [f32] = cast_mut(out)?;
    let ws: &mut [f32] = cast_mut(words_as_bytes_mut(workspace))?;
    match op.kind {
        OpKind::Conv | OpKind::Linear if linked::<LINK>(op.kind) => {
            let s = if !is_second::<LINK>(op.kind, OpKind::Conv, OpKind::Linear) {
                conv_shape(op, &xv, &yv)
            } else {
                linear_as_conv(&xv, &yv)
            };
            let w: &[f32] = cast(plan.data(op.weight))?;
            let bias: Option<&[f32]> = match op.bias.len {
                0 => None,
                _ => Some(cast(plan.data(op.bias))?),
            };
            let need = crate::conv2d_workspace_len_for(ConvAlgo::Direct, &s);
            let ws = ws
                .get_mut(..need)
                .ok_or(DeployError::plan("workspace too small"))?;
            conv2d_forward_with(ConvAlgo::Direct, &s, x, w, bias, y, ws)?;
            act_f32(op.act, y);
        }
        OpKind::MaxPool if linked::<LINK>(OpKind::MaxPool) => {
            let s = pool_shape(op, &xv);
            let idx: &mut [u32] = cast_mut(words_as_bytes_mut(workspace))?;
            let idx = idx
                .get_mut(..y.len())
                .ok_or(DeployError::plan("workspace too small"))?;
            max_pool2d_forward(&s, x, y, idx)?;
        }
        OpKind::AvgPool if linked::<LINK>(OpKind::AvgPool) => {
            avg_pool2d_forward(&pool_shape(op, &xv), x, y)?
        }
        OpKind::Add if linked::<LINK>(OpKind::Add) => {
            let x1: &[f32] = cast(views.get(range_of(&plan.value(op.inputs[1] as usize)))?)?;
            for ((o, &a), &b) in y.iter_mut().zip(x).zip(x1) {
                *o = a + b;
            }
            act_f32(op.act, y);
        }
        OpKind::Act if linked::<LINK>(OpKind::Act) => {
            y.copy_from_slice(x);
            act_f32(op.act, y);
        }
        OpKind::Lut => return Err(DeployError::plan("a table op in an f32 plan")),
        _ => return Err(unlinked()),
    }
    Ok(())
}

fn requants(b: &[u8]) -> impl Iterator<Item = Requant> + '_ {
    b.chunks_exact(8).map(read_requant)
}

fn run_int8<const LINK: u32>(
    plan: &Plan<'_>,
    k: usize,
    op: &OpRecord,
    arena: &mut [u8],
    workspace: &mut [u32],
    kernels: Int8Kernels,
    given: Option<&[(u32, u32)]>,
) -> Result<(), DeployError> {
    let xv = plan.value(op.inputs[0] as usize);
    let yv = plan.value(op.output as usize);
    // The DSP convolution's window path runs faster the more workspace it has, up to the
    // whole widened image: where the static workspace is smaller, it may take the largest
    // free stretch of the arena at this op instead (see `fast_workspace_words`).
    let scratch = match op.kind == OpKind::Conv
        && kernels == Int8Kernels::Dsp
        && linked::<LINK>(OpKind::Conv)
    {
        true => match given {
            Some(t) => t.get(k).map_or((0, 0), |&(a, b)| (a as usize, b as usize)),
            None => conv_scratch(plan, k, op, arena.len(), workspace.len()),
        },
        false => (0, 0),
    };
    let (out, arena_scratch, views) = carve(arena, range_of(&yv), scratch)?;
    let workspace = match arena_scratch.is_empty() {
        true => workspace,
        false => cast_mut::<u32>(arena_scratch)?,
    };
    let x: &[i8] = cast(views.get(range_of(&xv))?)?;
    let range = int8_range(op.act, yv.scale);
    match op.kind {
        OpKind::Conv | OpKind::Linear if linked::<LINK>(op.kind) => {
            let w: &[i8] = cast(plan.data(op.weight))?;
            let bias: Option<&[i32]> = match op.bias.len {
                0 => None,
                _ => Some(cast(plan.data(op.bias))?),
            };
            if yv.dtype == DType::I32 {
                let s = QLinearShape::new(1, xv.elements(), yv.shape[0] as usize);
                let y: &mut [i32] = cast_mut(out)?;
                let f = match kernels {
                    Int8Kernels::Plain => int8::qlinear_forward_i32,
                    Int8Kernels::Dsp => int8::dsp::qlinear_forward_i32,
                    Int8Kernels::Reference => int8::reference::qlinear_i32,
                };
                f(&s, x, w, bias, y)?;
                return Ok(());
            }
            let y: &mut [i8] = cast_mut(out)?;
            // `Requant` is `repr(C)` (i32, u32): the plan's entries are read in place.
            let rq: &[Requant] = cast(plan.data(op.aux))?;
            if is_second::<LINK>(op.kind, OpKind::Conv, OpKind::Linear) {
                let s = QLinearShape::new(1, xv.elements(), yv.shape[0] as usize);
                let f = match kernels {
                    Int8Kernels::Plain => int8::qlinear_forward,
                    Int8Kernels::Dsp => int8::dsp::qlinear_forward,
                    Int8Kernels::Reference => int8::reference::qlinear,
                };
                f(&s, x, w, bias, rq, range, y)?;
            } else {
                let s = conv_shape(op, &xv, &yv);
                match kernels {
                    Int8Kernels::Plain => int8::qconv2d_forward(&s, x, w, bias, rq, range, y)?,
                    Int8Kernels::Dsp => {
                        let paths = int8::dsp::ConvPaths {
                            window: link::has(LINK, link::CONV_WINDOW),
                            depthwise: link::has(LINK, link::CONV_DEPTHWISE),
                            pointwise: link::has(LINK, link::CONV_POINTWISE),
                            general: link::has(LINK, link::CONV_GENERAL),
                        };
                        int8::dsp::qconv2d_forward_paths(
                            paths, &s, x, w, bias, rq, range, y, workspace,
                        )?
                    }
                    Int8Kernels::Reference => {
                        int8::reference::qconv2d(&s, x, w, bias, rq, range, y)?
                    }
                }
            }
        }
        // A table op fused in before the pooling (`Plan::parse` allows it on int8 average
        // pooling only).
        OpKind::AvgPool if op.act != Act::None && link::has(LINK, link::AVG_POOL_TABLE) => {
            let (s, table) = (pool_shape(op, &xv), lut_table(plan, op)?);
            let y: &mut [i8] = cast_mut(out)?;
            match kernels {
                Int8Kernels::Dsp => int8::dsp::qlut_avg_pool2d_forward(table, &s, x, y)?,
                Int8Kernels::Plain => int8::qlut_avg_pool2d_forward(table, &s, x, y)?,
                Int8Kernels::Reference => int8::reference::qlut_avg_pool2d(table, &s, x, y)?,
            }
        }
        OpKind::MaxPool | OpKind::AvgPool if linked::<LINK>(op.kind) && op.act == Act::None => {
            let s = pool_shape(op, &xv);
            let y: &mut [i8] = cast_mut(out)?;
            let avg = is_second::<LINK>(op.kind, OpKind::MaxPool, OpKind::AvgPool);
            match (kernels, avg) {
                (Int8Kernels::Reference, _) => int8::reference::qpool2d(&s, avg, x, y)?,
                (Int8Kernels::Dsp, false) => int8::dsp::qmax_pool2d_forward(&s, x, y)?,
                (_, false) => int8::qmax_pool2d_forward(&s, x, y)?,
                (Int8Kernels::Dsp, true) => int8::dsp::qavg_pool2d_forward(&s, x, y)?,
                (_, true) => int8::qavg_pool2d_forward(&s, x, y)?,
            }
        }
        OpKind::Add if linked::<LINK>(OpKind::Add) => {
            let x1: &[i8] = cast(views.get(range_of(&plan.value(op.inputs[1] as usize)))?)?;
            let y: &mut [i8] = cast_mut(out)?;
            let mut r = requants(plan.data(op.aux));
            let (ra, rb) = match (r.next(), r.next()) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(DeployError::plan("add without requantization")),
            };
            qadd(x, x1, ra, rb, range, y);
        }
        OpKind::Act if linked::<LINK>(OpKind::Act) => {
            let y: &mut [i8] = cast_mut(out)?;
            for (o, &v) in y.iter_mut().zip(x) {
                *o = v.clamp(range.min, range.max);
            }
        }
        OpKind::Lut if linked::<LINK>(OpKind::Lut) => {
            let table = lut_table(plan, op)?;
            let y: &mut [i8] = cast_mut(out)?;
            match kernels {
                Int8Kernels::Dsp => int8::dsp::qlut_forward(table, x, y)?,
                _ => int8::qlut_forward(table, x, y)?,
            }
        }
        _ => return Err(unlinked()),
    }
    Ok(())
}

/// The 256-entry table of a table op (or of a pooling with one fused in), read in place.
fn lut_table<'a>(plan: &Plan<'a>, op: &OpRecord) -> Result<&'a [i8; 256], DeployError> {
    cast::<i8>(plan.data(op.aux))?
        .try_into()
        .map_err(|_| DeployError::plan("a table op whose table is not 256 bytes"))
}

/// The int8 residual sum: `y = clamp(ra(a) + rb(b))`, each input requantized to the output
/// scale first (round half up, as [`Requant::apply`]).
pub fn qadd(a: &[i8], b: &[i8], ra: Requant, rb: Requant, range: ActRange, y: &mut [i8]) {
    for ((o, &p), &q) in y.iter_mut().zip(a).zip(b) {
        let v = ra.apply(p as i32) + rb.apply(q as i32);
        *o = v.clamp(range.min as i64, range.max as i64) as i8;
    }
}

/// The network's output after [`run`] (a view into `arena`).
pub fn output<'a>(plan: &Plan<'a>, arena: &'a [u32]) -> Result<Output<'a>, DeployError> {
    let v = plan.output_value();
    let (a, b) = range_of(&v);
    let bytes = words_as_bytes(arena).get(a..b).ok_or(DeployError::Buffer {
        what: "arena",
        need: plan.arena_words(),
        have: arena.len(),
    })?;
    Ok(match v.dtype {
        DType::F32 => Output::F32(cast(bytes)?),
        DType::I8 => Output::I8 {
            values: cast(bytes)?,
            scale: v.scale,
        },
        DType::I32 => Output::I32 {
            acc: cast(bytes)?,
            scales: cast(plan.data(plan.op(plan.ops() - 1).aux))?,
        },
    })
}

/// The network's output as real numbers (dequantized in an int8 plan); `out` holds exactly
/// the output's elements.
pub fn logits(plan: &Plan<'_>, arena: &[u32], out: &mut [f32]) -> Result<(), DeployError> {
    let n = plan.output_value().elements();
    if out.len() != n {
        return Err(DeployError::Buffer {
            what: "logits",
            need: n,
            have: out.len(),
        });
    }
    match output(plan, arena)? {
        Output::F32(v) => out.copy_from_slice(v),
        Output::I8 { values, scale } => {
            for (o, &q) in out.iter_mut().zip(values) {
                *o = q as f32 * scale;
            }
        }
        Output::I32 { acc, scales } => {
            for ((o, &a), &s) in out.iter_mut().zip(acc).zip(scales) {
                *o = a as f32 * s;
            }
        }
    }
    Ok(())
}
