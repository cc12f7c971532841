//! `tinycnn deploy`: a trained network as a static plan for a microcontroller.
//!
//! The architecture is lowered to the ops of `tinycnn_kernels::deploy` (BatchNorm folded into
//! the convolution before it, or made a per-channel 1x1 depthwise convolution; activations
//! fused into the op before them; Flatten, Dropout and Identity dropped), the activations are
//! placed in one arena by lifetime, and for int8 the weights are quantized per output channel
//! and the activations per tensor with scales calibrated on training images. The plan is then
//! parsed back and run by the same executor the firmware uses, on the whole test set.

use crate::error::Result;
use crate::output::{check_outputs, write_file};
use crate::report::argmax;
use crate::tensorfile::NamedTensor;
use crate::DeployArgs;
use std::collections::HashMap;
use std::path::Path;
use tinycnn::nn::arch::{Architecture, LayerSpec};
use tinycnn_kernels::deploy::format::*;
use tinycnn_kernels::deploy::{self, Input, Int8Kernels, Lifetime, Plan};
use tinycnn_kernels::int8::{self, Requant};

/// File name of the plan in the output directory.
pub const PLAN_FILE: &str = "plan.bin";
/// File name of the human-readable summary.
pub const SUMMARY_FILE: &str = "summary.txt";

/// One activation of the lowered network, `[c, h, w]` of one example.
#[derive(Debug, Clone, PartialEq)]
pub struct IrValue {
    pub shape: [usize; 3],
    /// After a Flatten/Reshape: only a linear layer may read it.
    pub flat: bool,
}

/// What a lowered op computes (f32 parameters, BatchNorm already folded).
#[derive(Debug, Clone, PartialEq)]
pub enum IrKind {
    Conv {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
    },
    Linear {
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
    },
    MaxPool {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    AvgPool {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        count_include_pad: bool,
    },
    Add,
    Act,
}

/// One lowered op: value `k + 1` is op `k`'s output, value 0 the input.
#[derive(Debug, Clone, PartialEq)]
pub struct IrOp {
    pub kind: IrKind,
    pub act: Act,
    pub inputs: Vec<usize>,
    /// The architecture node(s) it came from, for the summary.
    pub name: String,
}

/// A network lowered to deployable ops.
#[derive(Debug, Clone, PartialEq)]
pub struct Ir {
    pub values: Vec<IrValue>,
    pub ops: Vec<IrOp>,
}

fn param<'a>(
    params: &HashMap<&str, &'a NamedTensor>,
    node: &str,
    key: &str,
    len: usize,
) -> Result<&'a [f32]> {
    let name = format!("{node}.{key}");
    let t = params
        .get(name.as_str())
        .ok_or_else(|| crate::cli_err!("the weights have no tensor {name}"))?;
    if t.data.len() != len {
        return Err(crate::cli_err!(
            "tensor {name} has {} values, the layer needs {len}",
            t.data.len()
        ));
    }
    Ok(&t.data)
}

fn shape3(shape: &[usize], node: &str) -> Result<([usize; 3], bool)> {
    match shape {
        [1, c, h, w] => Ok(([*c, *h, *w], false)),
        [1, n] => Ok(([*n, 1, 1], true)),
        _ => Err(crate::cli_err!(
            "layer `{node}` outputs shape {shape:?}: only [N, C, H, W] and [N, F] can be deployed"
        )),
    }
}

/// Lowers `arch` with its weights `params`. With `split_smooth`, sigmoid and tanh stay ops
/// of their own (int8 needs the scale before them); else they are fused like ReLU.
pub fn lower(arch: &Architecture, params: &[NamedTensor], split_smooth: bool) -> Result<Ir> {
    let shapes = arch
        .node_shapes(1)
        .map_err(|e| crate::cli_err!("cannot deploy this architecture: {e}"))?;
    let params: HashMap<&str, &NamedTensor> = params.iter().map(|t| (t.name.as_str(), t)).collect();
    // How many nodes read each architecture value (the output counts as read).
    let mut readers = vec![0usize; arch.nodes.len() + 1];
    for n in &arch.nodes {
        for &v in &n.inputs {
            readers[v] += 1;
        }
    }
    readers[arch.nodes.len()] += 1;
    let (input, flat) = shape3(&[&[1][..], &arch.input[..]].concat(), "input")?;
    let mut ir = Ir {
        values: vec![IrValue { shape: input, flat }],
        ops: Vec::new(),
    };
    // Architecture value -> IR value.
    let mut map = vec![0usize];
    for (i, node) in arch.nodes.iter().enumerate() {
        let name = node.name.as_str();
        let (shape, flat) = shape3(&shapes[i], name)?;
        let x = map[node.inputs[0]];
        let xv = ir.values[x].clone();
        // The op that wrote `x`, if it can absorb this node (only this node reads it).
        let sole_reader = readers[node.inputs[0]] == 1 && x > 0;
        let unsupported = |what: &str| {
            crate::cli_err!(
                "cannot deploy layer `{name}` ({}): {what}",
                node.layer.type_name()
            )
        };
        if xv.flat
            && matches!(
                node.layer,
                LayerSpec::Conv2d { .. }
                    | LayerSpec::BatchNorm2d { .. }
                    | LayerSpec::MaxPool2d { .. }
                    | LayerSpec::AvgPool2d { .. }
                    | LayerSpec::AdaptiveAvgPool2d { .. }
            )
        {
            return Err(unsupported("it reads a flattened value"));
        }
        let push = |ir: &mut Ir, kind: IrKind, act: Act, inputs: Vec<usize>| {
            ir.ops.push(IrOp {
                kind,
                act,
                inputs,
                name: name.to_string(),
            });
            ir.values.push(IrValue { shape, flat });
            ir.values.len() - 1
        };
        let out = match &node.layer {
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                let wlen = out_channels * (in_channels / groups.max(&1)) * kernel.0 * kernel.1;
                let weight = param(&params, name, "weight", wlen)?.to_vec();
                let bias = match bias {
                    true => Some(param(&params, name, "bias", *out_channels)?.to_vec()),
                    false => None,
                };
                let kind = IrKind::Conv {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                    groups: *groups,
                    weight,
                    bias,
                };
                push(&mut ir, kind, Act::None, vec![x])
            }
            LayerSpec::Linear {
                in_features,
                out_features,
                bias,
            } => {
                if *in_features != xv.shape.iter().product::<usize>() {
                    return Err(unsupported("it does not read its whole input (only [N, F] inputs are supported)"));
                }
                let weight = param(&params, name, "weight", in_features * out_features)?.to_vec();
                let bias = match bias {
                    true => Some(param(&params, name, "bias", *out_features)?.to_vec()),
                    false => None,
                };
                push(&mut ir, IrKind::Linear { weight, bias }, Act::None, vec![x])
            }
            LayerSpec::BatchNorm2d {
                num_features,
                eps,
                affine,
                track_running_stats,
                ..
            } => {
                if !track_running_stats {
                    return Err(unsupported(
                        "without running statistics it normalizes by batch statistics",
                    ));
                }
                let c = *num_features;
                let mean = param(&params, name, "running_mean", c)?;
                let var = param(&params, name, "running_var", c)?;
                let (gamma, beta) = match affine {
                    true => (
                        param(&params, name, "weight", c)?.to_vec(),
                        param(&params, name, "bias", c)?.to_vec(),
                    ),
                    false => (vec![1.0; c], vec![0.0; c]),
                };
                // y = x * s + t with s = gamma / sqrt(var + eps), t = beta - mean * s.
                let s: Vec<f64> = (0..c)
                    .map(|i| gamma[i] as f64 / (var[i] as f64 + *eps as f64).sqrt())
                    .collect();
                let prev = (x > 0).then(|| &mut ir.ops[x - 1]);
                match prev {
                    Some(IrOp {
                        kind: IrKind::Conv { weight, bias, .. },
                        act: Act::None,
                        name: prev_name,
                        ..
                    }) if sole_reader => {
                        // Fold into the convolution: scale each output channel's weights.
                        let per = weight.len() / c;
                        for (o, row) in weight.chunks_exact_mut(per).enumerate() {
                            row.iter_mut().for_each(|w| *w = (*w as f64 * s[o]) as f32);
                        }
                        let b = bias.get_or_insert_with(|| vec![0.0; c]);
                        for o in 0..c {
                            b[o] = ((b[o] as f64 - mean[o] as f64) * s[o] + beta[o] as f64) as f32;
                        }
                        *prev_name = format!("{prev_name}+{name}");
                        x
                    }
                    _ => {
                        // A per-channel scale and shift: a 1x1 depthwise convolution.
                        let weight = s.iter().map(|&v| v as f32).collect();
                        let bias = (0..c)
                            .map(|o| (beta[o] as f64 - mean[o] as f64 * s[o]) as f32)
                            .collect();
                        let kind = IrKind::Conv {
                            kernel: (1, 1),
                            stride: (1, 1),
                            padding: (0, 0),
                            dilation: (1, 1),
                            groups: c,
                            weight,
                            bias: Some(bias),
                        };
                        push(&mut ir, kind, Act::None, vec![x])
                    }
                }
            }
            LayerSpec::ReLU | LayerSpec::ReLU6 | LayerSpec::Sigmoid | LayerSpec::Tanh => {
                let act = match node.layer {
                    LayerSpec::ReLU => Act::Relu,
                    LayerSpec::ReLU6 => Act::Relu6,
                    LayerSpec::Sigmoid => Act::Sigmoid,
                    _ => Act::Tanh,
                };
                let smooth = matches!(act, Act::Sigmoid | Act::Tanh);
                let fusable = sole_reader
                    && !(split_smooth && smooth)
                    && matches!(
                        ir.ops[x - 1].kind,
                        IrKind::Conv { .. } | IrKind::Linear { .. } | IrKind::Add
                    )
                    && ir.ops[x - 1].act == Act::None;
                if fusable {
                    let prev = &mut ir.ops[x - 1];
                    prev.act = act;
                    prev.name = format!("{}+{name}", prev.name);
                    x
                } else {
                    push(&mut ir, IrKind::Act, act, vec![x])
                }
            }
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            } => {
                let kind = IrKind::MaxPool {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                };
                push(&mut ir, kind, Act::None, vec![x])
            }
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => {
                let kind = IrKind::AvgPool {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                    count_include_pad: *count_include_pad,
                };
                push(&mut ir, kind, Act::None, vec![x])
            }
            LayerSpec::AdaptiveAvgPool2d { output } => {
                let (h, w) = (xv.shape[1], xv.shape[2]);
                if output.0 == 0 || output.1 == 0 || h % output.0 != 0 || w % output.1 != 0 {
                    return Err(unsupported(
                        "only output sizes that divide the input (equal windows) are supported",
                    ));
                }
                let k = (h / output.0, w / output.1);
                let kind = IrKind::AvgPool {
                    kernel: k,
                    stride: k,
                    padding: (0, 0),
                    count_include_pad: true,
                };
                push(&mut ir, kind, Act::None, vec![x])
            }
            LayerSpec::Flatten { .. } | LayerSpec::Reshape { .. } => {
                if !flat {
                    return Err(unsupported("only a reshape to [N, F] is supported"));
                }
                ir.values[x].flat = true;
                // The bytes are the same (NCHW order): an alias, no op.
                if ir.values[x].shape.iter().product::<usize>() != shape[0] {
                    return Err(unsupported("it changes the number of values"));
                }
                x
            }
            LayerSpec::Dropout { .. } | LayerSpec::Identity => x,
            LayerSpec::Add => {
                let x1 = map[node.inputs[1]];
                push(&mut ir, IrKind::Add, Act::None, vec![x, x1])
            }
            LayerSpec::Softmax { .. } => {
                return Err(unsupported(
                    "not supported (deploy the logits: remove the final Softmax, the prediction is the same)",
                ))
            }
        };
        map.push(out);
    }
    let out = *map.last().unwrap_or(&0);
    if ir.ops.is_empty() || out != ir.values.len() - 1 {
        return Err(crate::cli_err!(
            "cannot deploy: the network's output must be computed by its last layer"
        ));
    }
    Ok(ir)
}

/// Lifetimes of the IR's values (see `tinycnn_kernels::deploy::Lifetime`).
pub fn lifetimes(ir: &Ir) -> Vec<Lifetime> {
    let mut lives: Vec<Lifetime> = (0..ir.values.len())
        .map(|v| Lifetime { def: v, last: v })
        .collect();
    for (k, op) in ir.ops.iter().enumerate() {
        for &v in &op.inputs {
            lives[v].last = lives[v].last.max(k + 1);
        }
    }
    let n = ir.values.len();
    lives[n - 1].last = ir.ops.len() + 1;
    lives
}

/// Appends data to the blob at a 4-byte boundary.
struct Blob(Vec<u8>);

impl Blob {
    fn push(&mut self, bytes: &[u8]) -> Span {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        let span = Span {
            offset: self.0.len() as u32,
            len: bytes.len() as u32,
        };
        self.0.extend_from_slice(bytes);
        span
    }
    fn f32s(&mut self, v: &[f32]) -> Span {
        self.push(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
    }
    fn i32s(&mut self, v: &[i32]) -> Span {
        self.push(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())
    }
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| crate::cli_err!("{what} {v} does not fit the plan format"))
}

fn pair(v: (usize, usize), what: &str) -> Result<[u32; 2]> {
    Ok([u32_of(v.0, what)?, u32_of(v.1, what)?])
}

/// How the arena is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// By lifetime ([`deploy::plan_arena`]): what the firmware gets.
    Planned,
    /// Every value at its own offset, so all of them can be read after a run (calibration).
    Separate,
}

/// int8 choices: a scale per IR value (its calibrated maximum / 127).
pub struct Quantization {
    pub scales: Vec<f32>,
}

fn quant_err(what: &str, e: impl std::fmt::Display) -> crate::error::CliError {
    crate::cli_err!("cannot quantize {what}: {e}")
}

/// The plan bytes of `ir`: f32 when `quant` is `None`, else int8 with its scales.
pub fn build_plan(ir: &Ir, quant: Option<&Quantization>, layout: Layout) -> Result<Vec<u8>> {
    let precision = if quant.is_some() {
        Precision::Int8
    } else {
        Precision::F32
    };
    let n = ir.values.len();
    if n > MAX_VALUES {
        return Err(crate::cli_err!(
            "cannot deploy: {} ops (at most {})",
            n - 1,
            MAX_VALUES - 1
        ));
    }
    // The final linear layer of an int8 plan keeps its i32 accumulators as logits.
    // (A network of only dropped layers, e.g. Flatten alone, lowers to no op at all.)
    let last = ir.ops.last().ok_or_else(|| {
        crate::cli_err!("cannot deploy: the network has no layer that computes anything")
    })?;
    let i32_out =
        quant.is_some() && matches!(last.kind, IrKind::Linear { .. }) && last.act == Act::None;
    let dtype = |v: usize| match (quant, v == n - 1 && i32_out) {
        (None, _) => DType::F32,
        (Some(_), true) => DType::I32,
        (Some(_), false) => DType::I8,
    };
    let mut values: Vec<ValueRecord> = ir
        .values
        .iter()
        .enumerate()
        .map(|(v, iv)| {
            Ok(ValueRecord {
                dtype: dtype(v),
                shape: [
                    u32_of(iv.shape[0], "channel count")?,
                    u32_of(iv.shape[1], "height")?,
                    u32_of(iv.shape[2], "width")?,
                ],
                offset: 0,
                scale: match quant {
                    Some(q) if dtype(v) == DType::I8 => q.scales[v],
                    _ => 0.0,
                },
            })
        })
        .collect::<Result<_>>()?;
    let sizes: Vec<usize> = values.iter().map(ValueRecord::bytes).collect();
    let mut offsets = vec![0usize; n];
    let arena = match layout {
        Layout::Planned => deploy::plan_arena(&sizes, &lifetimes(ir), &mut offsets)
            .map_err(|e| crate::cli_err!("{e}"))?,
        Layout::Separate => {
            let mut end = 0;
            for (o, s) in offsets.iter_mut().zip(&sizes) {
                *o = end;
                end += s.div_ceil(4) * 4;
            }
            end
        }
    };
    for (v, o) in values.iter_mut().zip(&offsets) {
        v.offset = u32_of(*o, "arena offset")?;
    }
    let mut blob = Blob(Vec::new());
    let mut ops = Vec::with_capacity(ir.ops.len());
    let (mut workspace, mut macs) = (0usize, 0u64);
    for (k, op) in ir.ops.iter().enumerate() {
        let (x, y) = (op.inputs[0], k + 1);
        let mut rec = OpRecord::new(OpKind::Act, x as u32, y as u32);
        rec.act = op.act;
        let kind_and_data = |rec: &mut OpRecord, blob: &mut Blob| -> Result<()> {
            match &op.kind {
                IrKind::Conv { weight, bias, .. } | IrKind::Linear { weight, bias } => {
                    let out = ir.values[y].shape[0];
                    match quant {
                        None => {
                            rec.weight = blob.f32s(weight);
                            if let Some(b) = bias {
                                rec.bias = blob.f32s(b);
                            }
                        }
                        Some(q) => {
                            let mut ws = vec![0.0f32; out];
                            let mut wq = vec![0i8; weight.len()];
                            int8::quantize_per_channel(weight, out, &mut ws, &mut wq)
                                .map_err(|e| quant_err(&op.name, e))?;
                            rec.weight =
                                blob.push(&wq.iter().map(|&v| v as u8).collect::<Vec<_>>());
                            let in_s = q.scales[x];
                            if let Some(b) = bias {
                                let mut bq = vec![0i32; out];
                                int8::quantize_bias(b, &ws, in_s, &mut bq)
                                    .map_err(|e| quant_err(&op.name, e))?;
                                rec.bias = blob.i32s(&bq);
                            }
                            if dtype(y) == DType::I32 {
                                let deq: Vec<f32> = ws.iter().map(|w| w * in_s).collect();
                                rec.aux = blob.f32s(&deq);
                            } else {
                                let mut bytes = Vec::with_capacity(out * 8);
                                for w in &ws {
                                    let r = Requant::from_scale(w * in_s / q.scales[y])
                                        .map_err(|e| quant_err(&op.name, e))?;
                                    bytes.extend_from_slice(&deploy::requant_bytes(r));
                                }
                                rec.aux = blob.push(&bytes);
                            }
                        }
                    }
                    Ok(())
                }
                IrKind::Add => {
                    rec.inputs[1] = op.inputs[1] as u32;
                    if let Some(q) = quant {
                        let mut bytes = Vec::new();
                        for &v in &op.inputs {
                            let r = Requant::from_scale(q.scales[v] / q.scales[y])
                                .map_err(|e| quant_err(&op.name, e))?;
                            bytes.extend_from_slice(&deploy::requant_bytes(r));
                        }
                        rec.aux = blob.push(&bytes);
                    }
                    Ok(())
                }
                IrKind::Act => {
                    if let (Some(q), Act::Sigmoid | Act::Tanh) = (quant, op.act) {
                        rec.kind = OpKind::Lut;
                        let (in_s, out_s) = (q.scales[x], q.scales[y]);
                        let table = match op.act {
                            Act::Sigmoid => int8::sigmoid_lut(in_s, out_s)
                                .map_err(|e| quant_err(&op.name, e))?,
                            _ => {
                                let mut t = [0i8; 256];
                                for (i, o) in t.iter_mut().enumerate() {
                                    let r = (i as i32 - 128) as f32 * in_s;
                                    *o = int8::quantize_one(libm_tanh(r), out_s);
                                }
                                t
                            }
                        };
                        rec.aux = blob.push(&table.map(|v| v as u8));
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        rec.kind = match &op.kind {
            IrKind::Conv {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => {
                rec.kernel = pair(*kernel, "kernel")?;
                rec.stride = pair(*stride, "stride")?;
                rec.padding = pair(*padding, "padding")?;
                rec.dilation = pair(*dilation, "dilation")?;
                rec.groups = u32_of(*groups, "groups")?;
                OpKind::Conv
            }
            IrKind::Linear { .. } => OpKind::Linear,
            IrKind::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                rec.kernel = pair(*kernel, "kernel")?;
                rec.stride = pair(*stride, "stride")?;
                rec.padding = pair(*padding, "padding")?;
                OpKind::MaxPool
            }
            IrKind::AvgPool {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => {
                rec.kernel = pair(*kernel, "kernel")?;
                rec.stride = pair(*stride, "stride")?;
                rec.padding = pair(*padding, "padding")?;
                rec.flags = *count_include_pad as u32;
                OpKind::AvgPool
            }
            IrKind::Add => OpKind::Add,
            IrKind::Act => OpKind::Act,
        };
        kind_and_data(&mut rec, &mut blob)?;
        let (ws, m) = deploy::op_cost(precision, &rec, &values[x], &values[y])
            .map_err(|e| crate::cli_err!("cannot deploy layer `{}`: {e}", op.name))?;
        workspace = workspace.max(ws);
        macs += m;
        ops.push(rec);
    }
    // Pooling and clamps keep their input's scale (the reader checks it).
    let tables = HEADER_LEN + n * VALUE_LEN + ops.len() * OP_LEN;
    let header = Header {
        precision,
        values: n as u32,
        ops: ops.len() as u32,
        arena_bytes: u32_of(arena, "arena size")?,
        workspace_words: u32_of(workspace, "workspace size")?,
        data_offset: tables as u32,
        data_len: u32_of(blob.0.len(), "data size")?,
        macs,
    };
    let mut bytes = Vec::with_capacity(tables + blob.0.len());
    bytes.extend_from_slice(&header.to_bytes());
    for v in &values {
        bytes.extend_from_slice(&v.to_bytes());
    }
    for o in &ops {
        bytes.extend_from_slice(&o.to_bytes());
    }
    bytes.extend_from_slice(&blob.0);
    Ok(bytes)
}

fn libm_tanh(v: f32) -> f32 {
    v.tanh()
}

/// A plan's bytes in 4-byte aligned memory (what `Plan::parse` needs).
pub struct AlignedPlan(Vec<u32>, usize);

impl AlignedPlan {
    pub fn new(bytes: &[u8]) -> AlignedPlan {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        deploy::words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedPlan(words, bytes.len())
    }
    pub fn plan(&self) -> Result<Plan<'_>> {
        Plan::parse(&deploy::words_as_bytes(&self.0)[..self.1])
            .map_err(|e| crate::cli_err!("the plan does not read back: {e}"))
    }
}

/// Runs `plan` on each `[c, h, w]` image of `images` (threads over chunks), giving every
/// image's logits.
pub fn run_all(plan: &Plan<'_>, images: &[f32], kernels: Int8Kernels) -> Result<Vec<f32>> {
    let per = plan.input().elements();
    let classes = plan.output_value().elements();
    let count = images.len() / per;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16);
    let chunk = count.div_ceil(threads).max(1);
    let mut out = vec![0.0f32; count * classes];
    std::thread::scope(|s| {
        let jobs: Vec<_> = images
            .chunks(chunk * per)
            .zip(out.chunks_mut(chunk * classes))
            .map(|(imgs, outs)| {
                s.spawn(move || -> std::result::Result<(), deploy::DeployError> {
                    let mut arena = vec![0u32; plan.arena_words()];
                    let mut ws = vec![0u32; plan.workspace_words()];
                    for (img, o) in imgs.chunks_exact(per).zip(outs.chunks_exact_mut(classes)) {
                        deploy::run(plan, Input::F32(img), &mut arena, &mut ws, kernels)?;
                        deploy::logits(plan, &arena, o)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for j in jobs {
            j.join()
                .map_err(|_| crate::cli_err!("an inference thread panicked"))?
                .map_err(|e| crate::cli_err!("running the plan: {e}"))?;
        }
        Ok::<(), crate::error::CliError>(())
    })?;
    Ok(out)
}

/// Calibrates int8 scales: the largest magnitude of every value over `images`, / 127.
/// Pooling, flatten and clamps keep their input's scale.
pub fn calibrate(ir: &Ir, images: &[f32]) -> Result<Quantization> {
    let bytes = build_plan(ir, None, Layout::Separate)?;
    let aligned = AlignedPlan::new(&bytes);
    let plan = aligned.plan()?;
    let per = plan.input().elements();
    let mut arena = vec![0u32; plan.arena_words()];
    let mut ws = vec![0u32; plan.workspace_words()];
    let mut max = vec![0.0f32; ir.values.len()];
    for img in images.chunks_exact(per) {
        deploy::run(
            &plan,
            Input::F32(img),
            &mut arena,
            &mut ws,
            Int8Kernels::Plain,
        )
        .map_err(|e| crate::cli_err!("calibration run: {e}"))?;
        let all = deploy::words_as_bytes(&arena);
        for (v, m) in max.iter_mut().enumerate() {
            let r = plan.value(v);
            let b = &all[r.offset as usize..r.offset as usize + r.bytes()];
            for c in b.chunks_exact(4) {
                let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]).abs();
                if x > *m {
                    *m = x;
                }
            }
        }
    }
    let mut scales: Vec<f32> = max
        .iter()
        .map(|&m| {
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    for (k, op) in ir.ops.iter().enumerate() {
        let keeps = matches!(op.kind, IrKind::MaxPool { .. } | IrKind::AvgPool { .. })
            || (op.kind == IrKind::Act && matches!(op.act, Act::Relu | Act::Relu6));
        if keeps {
            scales[k + 1] = scales[op.inputs[0]];
        }
    }
    Ok(Quantization { scales })
}

/// The human-readable summary of a plan.
pub fn summary(ir: &Ir, plan: &Plan<'_>, plan_bytes: usize, label: &str) -> Result<String> {
    use std::fmt::Write;
    let mut s = String::new();
    let h = plan.header();
    let w = |s: &mut String, t: std::fmt::Arguments| {
        let _ = s.write_fmt(t);
        s.push('\n');
    };
    w(
        &mut s,
        format_args!("model {label}, precision {}", plan.precision().name()),
    );
    w(&mut s, format_args!("op  kind     act      layer                          input(s)        output      offset    bytes  weights"));
    for k in 0..plan.ops() {
        let op = plan.op(k);
        let y = plan.value(k + 1);
        let inputs = op
            .inputs
            .iter()
            .filter(|&&v| v != NO_INPUT)
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let shape = format!("{}x{}x{}", y.shape[0], y.shape[1], y.shape[2]);
        w(
            &mut s,
            format_args!(
                "{k:<3} {:<8} {:<8} {:<30} {:<15} {:<11} {:>6} {:>8} {:>8}",
                op.kind.name(),
                op.act.name(),
                ir.ops[k].name,
                inputs,
                shape,
                y.offset,
                y.bytes(),
                op.weight.len + op.bias.len + op.aux.len
            ),
        );
    }
    let x = plan.input();
    w(
        &mut s,
        format_args!(
            "input v0: {}x{}x{} at offset {}, {} bytes",
            x.shape[0],
            x.shape[1],
            x.shape[2],
            x.offset,
            x.bytes()
        ),
    );
    let sizes: Vec<usize> = (0..plan.values()).map(|v| plan.value(v).bytes()).collect();
    let lives: Vec<Lifetime> = (0..plan.values()).map(|v| plan.lifetime(v)).collect();
    let peak = deploy::peak_live_bytes(&sizes, &lives).map_err(|e| crate::cli_err!("{e}"))?;
    w(&mut s, format_args!("arena (activations): {} bytes (largest set of live values: {peak} bytes; all values: {} bytes)", h.arena_bytes, sizes.iter().sum::<usize>()));
    w(
        &mut s,
        format_args!("workspace: {} bytes", 4 * h.workspace_words),
    );
    w(
        &mut s,
        format_args!(
            "peak RAM for buffers: {} bytes",
            h.arena_bytes as usize + 4 * h.workspace_words as usize
        ),
    );
    w(
        &mut s,
        format_args!(
            "flash for the plan: {plan_bytes} bytes ({} of weights and tables)",
            h.data_len
        ),
    );
    w(
        &mut s,
        format_args!("multiply-accumulates per inference: {}", h.macs),
    );
    Ok(s)
}

/// Accuracy of `logits` (rows of `classes`) against `labels`, in percent.
fn accuracy(logits: &[f32], classes: usize, labels: &[u8]) -> (usize, f64) {
    let correct = logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == l as usize)
        .count();
    (correct, 100.0 * correct as f64 / labels.len().max(1) as f64)
}

fn prepare_out(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(crate::cli_err!(
                "--out {}: exists and is not a directory",
                dir.display()
            ))
        }
        Ok(_) => {}
        Err(_) => std::fs::create_dir_all(dir)
            .map_err(|e| crate::cli_err!("--out {}: cannot create it: {e}", dir.display()))?,
    }
    check_outputs(&[
        ("--out", &dir.join(PLAN_FILE)),
        ("--out", &dir.join(SUMMARY_FILE)),
    ])
}

/// `tinycnn deploy`.
pub fn run(args: DeployArgs) -> Result<()> {
    if args.calibration == 0 {
        return Err(crate::cli_err!("--calibration must be at least 1"));
    }
    prepare_out(&args.out)?;
    let (spec, label, net, trained_on) = super::load_model(
        &args.weights,
        args.model.as_ref(),
        crate::DeviceName::Cpu,
        true,
    )?;
    let params = super::model::params(net.net())?;
    let int8 = args.int8;
    let ir = lower(&spec.arch, &params, int8)?;
    let dataset = args.dataset.or(trained_on).unwrap_or_default();
    let data = super::load_data(dataset, args.data.as_deref())?;
    let per: usize = spec.arch.input.iter().product();
    let quant = if int8 {
        let n = args.calibration.min(data.train.len());
        Some(calibrate(&ir, &data.train.images[..n * per])?)
    } else {
        None
    };
    let bytes = build_plan(&ir, quant.as_ref(), Layout::Planned)?;
    let aligned = AlignedPlan::new(&bytes);
    let plan = aligned.plan()?;
    let text = summary(&ir, &plan, bytes.len(), &label)?;
    write_file(&args.out.join(PLAN_FILE), &bytes)?;
    write_file(&args.out.join(SUMMARY_FILE), text.as_bytes())?;
    crate::out!("{text}")?;
    crate::outln!(
        "wrote {} ({} bytes) and {}",
        args.out.join(PLAN_FILE).display(),
        bytes.len(),
        args.out.join(SUMMARY_FILE).display()
    )?;
    let test = &data.test;
    let classes = plan.output_value().elements();
    let logits = run_all(&plan, &test.images[..test.len() * per], Int8Kernels::Plain)?;
    let (correct, acc) = accuracy(&logits, classes, &test.labels);
    crate::outln!(
        "deployed {} on the host: test acc {:.2}% ({correct} of {})",
        plan.precision().name(),
        acc,
        test.len()
    )?;
    if int8 {
        // The same network in f32 through the same executor, for the quantization's cost.
        let f32_ir = lower(&spec.arch, &params, false)?;
        let fb = build_plan(&f32_ir, None, Layout::Planned)?;
        let fa = AlignedPlan::new(&fb);
        let fl = run_all(
            &fa.plan()?,
            &test.images[..test.len() * per],
            Int8Kernels::Plain,
        )?;
        let (fc, facc) = accuracy(&fl, classes, &test.labels);
        crate::outln!(
            "deployed f32 on the host: test acc {facc:.2}% ({fc} of {}); int8 - f32 = {:+.2} points",
            test.len(),
            acc - facc
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinycnn::nn::arch::Node;
    use tinycnn::nn::{Graph, Module};
    use tinycnn::Tensor;

    fn conv(i: usize, o: usize, k: usize, s: usize, p: usize, d: usize, g: usize) -> LayerSpec {
        LayerSpec::Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            dilation: (d, d),
            groups: g,
            bias: true,
        }
    }

    fn bn(c: usize) -> LayerSpec {
        LayerSpec::BatchNorm2d {
            num_features: c,
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
            track_running_stats: true,
        }
    }

    /// Every supported layer: BN folded and standalone, depthwise + dilation, a residual,
    /// ReLU6/ReLU/tanh/sigmoid, max/avg/global pooling, flatten, dropout, linear.
    fn zoo_of_layers() -> Architecture {
        let n = |name: &str, l: LayerSpec, i: Vec<usize>| Node::new(name, l, i);
        Architecture {
            input: vec![1, 12, 12],
            nodes: vec![
                n("c0", conv(1, 4, 3, 1, 1, 1, 1), vec![0]),
                n("b0", bn(4), vec![1]),
                n("r0", LayerSpec::ReLU6, vec![2]),
                n("dw", conv(4, 4, 3, 1, 2, 2, 4), vec![3]),
                n("r1", LayerSpec::ReLU, vec![4]),
                n("add", LayerSpec::Add, vec![5, 3]),
                n("b1", bn(4), vec![6]),
                n("t", LayerSpec::Tanh, vec![7]),
                n("c1", conv(4, 6, 3, 2, 0, 1, 1), vec![8]),
                n("s", LayerSpec::Sigmoid, vec![9]),
                n(
                    "mp",
                    LayerSpec::MaxPool2d {
                        kernel: (2, 2),
                        stride: (1, 1),
                        padding: (0, 0),
                    },
                    vec![10],
                ),
                n(
                    "ap",
                    LayerSpec::AvgPool2d {
                        kernel: (2, 2),
                        stride: (2, 2),
                        padding: (1, 1),
                        count_include_pad: false,
                    },
                    vec![11],
                ),
                n(
                    "gap",
                    LayerSpec::AdaptiveAvgPool2d { output: (1, 1) },
                    vec![12],
                ),
                n(
                    "fl",
                    LayerSpec::Flatten {
                        start_dim: 1,
                        end_dim: -1,
                    },
                    vec![13],
                ),
                n("dr", LayerSpec::Dropout { p: 0.5 }, vec![14]),
                n(
                    "fc",
                    LayerSpec::Linear {
                        in_features: 6,
                        out_features: 5,
                        bias: true,
                    },
                    vec![15],
                ),
            ],
        }
    }

    /// The architecture's graph with its initial weights and non-trivial BN statistics.
    fn network(arch: &Architecture) -> (Graph, Vec<NamedTensor>) {
        let g = Graph::new(arch).unwrap();
        let mut params = super::super::model::params(&g).unwrap();
        for t in &mut params {
            let n = t.data.len() as f32;
            if t.name.ends_with("running_mean") {
                t.data
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = 0.1 * i as f32 - 0.1);
            } else if t.name.ends_with("running_var") {
                t.data
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = 0.5 + i as f32 / n);
            } else if t.name.starts_with('b') && t.name.ends_with(".weight") {
                t.data
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = 1.5 - 0.2 * i as f32);
            }
        }
        super::super::model::load_params(&g, &params).unwrap();
        g.eval();
        (g, params)
    }

    fn images(count: usize, per: usize) -> Vec<f32> {
        let mut s = 12345u32;
        (0..count * per)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 256) as f32 / 255.0
            })
            .collect()
    }

    #[test]
    fn f32_plan_matches_the_runtime_forward() {
        let arch = zoo_of_layers();
        let (g, params) = network(&arch);
        let ir = lower(&arch, &params, false).unwrap();
        // BN b0 folded into c0, the activations fused, b1 a depthwise 1x1 conv after the
        // add (tanh fused into it), flatten and dropout dropped.
        let names: Vec<&str> = ir.ops.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            ["c0+b0+r0", "dw+r1", "add", "b1+t", "c1+s", "mp", "ap", "gap", "fc"]
        );
        let bytes = build_plan(&ir, None, Layout::Planned).unwrap();
        let al = AlignedPlan::new(&bytes);
        let plan = al.plan().unwrap();
        let x = images(16, 144);
        let got = run_all(&plan, &x, Int8Kernels::Plain).unwrap();
        let _guard = tinycnn::no_grad_guard();
        let want = g
            .forward(&Tensor::from_vec(x.clone(), &[16, 1, 12, 12]).unwrap())
            .unwrap()
            .to_vec();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn int8_plan_is_exact_on_every_kernel_set() {
        let arch = zoo_of_layers();
        let (_, params) = network(&arch);
        let ir = lower(&arch, &params, true).unwrap();
        // tanh and sigmoid stay ops of their own (tables) in int8.
        assert!(ir
            .ops
            .iter()
            .any(|o| o.kind == IrKind::Act && o.act == Act::Tanh));
        let x = images(24, 144);
        let q = calibrate(&ir, &x[..8 * 144]).unwrap();
        let bytes = build_plan(&ir, Some(&q), Layout::Planned).unwrap();
        let al = AlignedPlan::new(&bytes);
        let plan = al.plan().unwrap();
        assert_eq!(plan.output_value().dtype, DType::I32);
        let reference = run_all(&plan, &x, Int8Kernels::Reference).unwrap();
        for k in [Int8Kernels::Plain, Int8Kernels::Dsp] {
            assert_eq!(run_all(&plan, &x, k).unwrap(), reference, "{k:?}");
        }
        // And close to the f32 network (a loose sanity bound on the quantization).
        let f = lower(&arch, &params, false).unwrap();
        let fb = build_plan(&f, None, Layout::Planned).unwrap();
        let fa = AlignedPlan::new(&fb);
        let fl = run_all(&fa.plan().unwrap(), &x, Int8Kernels::Plain).unwrap();
        let max = fl.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in reference.iter().zip(&fl) {
            assert!((a - b).abs() <= 0.1 * max + 0.05, "{a} vs {b}");
        }
    }

    /// Writes the fuzz seeds of `fuzz/corpus/deploy_plan` (small f32 and int8 plans of
    /// every op kind) when `TINYCNN_WRITE_DEPLOY_SEEDS` names a directory.
    #[test]
    fn fuzz_seeds() {
        let Some(dir) = std::env::var_os("TINYCNN_WRITE_DEPLOY_SEEDS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let arch = zoo_of_layers();
        let (_, params) = network(&arch);
        let f = lower(&arch, &params, false).unwrap();
        let fb = build_plan(&f, None, Layout::Planned).unwrap();
        std::fs::write(dir.join("layers-f32.plan"), fb).unwrap();
        let ir = lower(&arch, &params, true).unwrap();
        let q = calibrate(&ir, &images(8, 144)).unwrap();
        let qb = build_plan(&ir, Some(&q), Layout::Planned).unwrap();
        std::fs::write(dir.join("layers-int8.plan"), qb).unwrap();
    }

    /// The zoo's DS-CNN (BatchNorm after every convolution, stride-2 depthwise convolutions,
    /// global pooling), with its initial weights: f32 like the runtime, int8 exact.
    #[test]
    fn zoo_dscnn_deploys() {
        let spec = super::super::model::ModelSpec::zoo(tinycnn_models::Model::Dscnn).unwrap();
        let net = spec.build().unwrap();
        net.eval();
        let params = super::super::model::params(net.as_ref()).unwrap();
        let ir = lower(&spec.arch, &params, false).unwrap();
        assert!(ir
            .ops
            .iter()
            .all(|o| !o.name.contains('.') || o.name.contains('+')));
        let bytes = build_plan(&ir, None, Layout::Planned).unwrap();
        let al = AlignedPlan::new(&bytes);
        let x = images(4, 784);
        let got = run_all(&al.plan().unwrap(), &x, Int8Kernels::Plain).unwrap();
        let _guard = tinycnn::no_grad_guard();
        let want = net
            .forward(&Tensor::from_vec(x.clone(), &[4, 1, 28, 28]).unwrap())
            .unwrap()
            .to_vec();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let qir = lower(&spec.arch, &params, true).unwrap();
        let q = calibrate(&qir, &x).unwrap();
        let qb = build_plan(&qir, Some(&q), Layout::Planned).unwrap();
        let qa = AlignedPlan::new(&qb);
        let plan = qa.plan().unwrap();
        let reference = run_all(&plan, &x, Int8Kernels::Reference).unwrap();
        assert_eq!(run_all(&plan, &x, Int8Kernels::Dsp).unwrap(), reference);
        assert_eq!(run_all(&plan, &x, Int8Kernels::Plain).unwrap(), reference);
    }

    #[test]
    fn unsupported_layers_are_named() {
        let arch = Architecture {
            input: vec![4],
            nodes: vec![
                Node::new(
                    "fc",
                    LayerSpec::Linear {
                        in_features: 4,
                        out_features: 3,
                        bias: false,
                    },
                    vec![0],
                ),
                Node::new("sm", LayerSpec::Softmax { dim: 1 }, vec![1]),
            ],
        };
        let g = Graph::new(&arch).unwrap();
        let params = super::super::model::params(&g).unwrap();
        let e = lower(&arch, &params, false).unwrap_err().to_string();
        assert!(e.contains("`sm` (Softmax)"), "{e}");
    }
}
