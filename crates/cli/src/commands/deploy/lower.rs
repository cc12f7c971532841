//! Lowering: an architecture and its weights to the executor's ops (`Ir`), and the
//! activations' lifetimes.

use super::*;

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
        /// int8: a sigmoid or tanh applied to each input before the pooling, as a table
        /// ([`fuse_tables`]); `Act::None` otherwise.
        input_act: Act,
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
                    input_act: Act::None,
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
                    input_act: Act::None,
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
