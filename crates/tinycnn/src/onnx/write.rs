//! [`Architecture`] and tensors -> ONNX (see the module docs of [`super`] for the mapping).

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::shape::infer_shapes;
use super::{EXPORT_IR_VERSION, EXPORT_OPSET};
use crate::error::{Error, Result};
use crate::nn::arch::{Architecture, LayerSpec};
use crate::tensor::normalize_dim;
use prost::Message;
use std::collections::{HashMap, HashSet};

const OP: &str = "onnx export";

fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::invalid(OP, msg))
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn int_tensor(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![data.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A FLOAT tensor value of shape `[N, dims...]` with a symbolic batch dimension `N`.
fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let mut dim = vec![Dimension {
        value: Some(Value::DimParam("N".into())),
        ..Default::default()
    }];
    dim.extend(dims.iter().map(|&d| Dimension {
        value: Some(Value::DimValue(d as i64)),
        ..Default::default()
    }));
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        attribute: attrs,
        ..Default::default()
    }
}

/// Hands out the tensors of one node by local name, checking their shapes.
struct TensorBank<'a> {
    by_name: HashMap<&'a str, (&'a [usize], &'a [f32])>,
    used: HashSet<&'a str>,
}

impl<'a> TensorBank<'a> {
    fn take(&mut self, node: &str, kind: &str, local: &str, shape: &[usize]) -> Result<String> {
        let key = format!("{node}.{local}");
        let Some((&k, &(s, data))) = self.by_name.get_key_value(key.as_str()) else {
            return fail(format!("layer `{node}` ({kind}): missing tensor `{key}`"));
        };
        if s != shape || data.len() != shape.iter().product::<usize>() {
            return fail(format!(
                "layer `{node}` ({kind}): tensor `{key}` has shape {s:?} and {} values, expected \
                 shape {shape:?}",
                data.len()
            ));
        }
        self.used.insert(k);
        Ok(key)
    }
}

/// Serializes `arch` with `tensors` as an ONNX model (see the module docs of [`super`]).
pub(super) fn write(
    arch: &Architecture,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<Vec<u8>> {
    arch.validate()?;
    let shapes = infer_shapes(arch, OP)?;
    let mut bank = TensorBank {
        by_name: HashMap::new(),
        used: HashSet::new(),
    };
    for (name, shape, data) in tensors {
        if bank
            .by_name
            .insert(name.as_str(), (shape.as_slice(), data.as_slice()))
            .is_some()
        {
            return fail(format!("tensor `{name}` is given twice"));
        }
    }
    let mut graph = GraphProto {
        name: Some("tinycnn".into()),
        ..Default::default()
    };
    let mut initializers: Vec<TensorProto> = Vec::new();
    let mut not_in_graph: HashSet<&str> = HashSet::new();
    // Value names: the input, then `{layer}.output`; the network's output is `logits`.
    let last = arch.nodes.len();
    let value_name = |v: usize| -> String {
        match v {
            0 => "input".to_string(),
            v if v == last => "logits".to_string(),
            v => format!("{}.output", arch.nodes[v - 1].name),
        }
    };
    let add_init = |t: TensorProto, inits: &mut Vec<TensorProto>| -> String {
        let name = t.name.clone().unwrap_or_default();
        inits.push(t);
        name
    };
    for (i, n) in arch.nodes.iter().enumerate() {
        let name = n.name.as_str();
        let kind = n.layer.type_name();
        let x = value_name(n.inputs[0]);
        let out = value_name(i + 1);
        let in_shape = &shapes[n.inputs[0]];
        let simple = |op: &str| node(op, name, &[&x], &out, vec![]);
        match &n.layer {
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
                let w = bank.take(
                    name,
                    kind,
                    "weight",
                    &[*out_channels, in_channels / groups, kernel.0, kernel.1],
                )?;
                let mut ins = vec![x.as_str(), w.as_str()];
                let b = if *bias {
                    Some(bank.take(name, kind, "bias", &[*out_channels])?)
                } else {
                    None
                };
                if let Some(b) = &b {
                    ins.push(b);
                }
                let attrs = vec![
                    attr_ints("kernel_shape", &[kernel.0, kernel.1]),
                    attr_ints("strides", &[stride.0, stride.1]),
                    attr_ints("pads", &[padding.0, padding.1, padding.0, padding.1]),
                    attr_ints("dilations", &[dilation.0, dilation.1]),
                    attr_int("group", *groups as i64),
                ];
                graph.node.push(node("Conv", name, &ins, &out, attrs));
            }
            LayerSpec::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let w = bank.take(name, kind, "weight", &[*out_features, *in_features])?;
                let b = if *bias {
                    Some(bank.take(name, kind, "bias", &[*out_features])?)
                } else {
                    None
                };
                if in_shape.len() == 1 {
                    // [N, in] input: Gemm with the [out, in] weight as it is.
                    let mut ins = vec![x.as_str(), w.as_str()];
                    if let Some(b) = &b {
                        ins.push(b);
                    }
                    graph
                        .node
                        .push(node("Gemm", name, &ins, &out, vec![attr_int("transB", 1)]));
                } else {
                    // Higher rank: MatMul with the transposed weight, then the bias.
                    let (_, data) = bank.by_name[w.as_str()];
                    let mut t = vec![0.0; data.len()];
                    for o in 0..*out_features {
                        for k in 0..*in_features {
                            t[k * out_features + o] = data[o * in_features + k];
                        }
                    }
                    let wt = add_init(
                        float_tensor(
                            &format!("{name}.weight_t"),
                            &[*in_features, *out_features],
                            &t,
                        ),
                        &mut initializers,
                    );
                    match &b {
                        None => graph
                            .node
                            .push(node("MatMul", name, &[&x, &wt], &out, vec![])),
                        Some(b) => {
                            let mid = format!("{name}.matmul");
                            graph
                                .node
                                .push(node("MatMul", name, &[&x, &wt], &mid, vec![]));
                            graph.node.push(node(
                                "Add",
                                &format!("{name}.bias_add"),
                                &[&mid, b],
                                &out,
                                vec![],
                            ));
                        }
                    }
                }
            }
            LayerSpec::BatchNorm2d {
                num_features,
                eps,
                momentum,
                affine,
                track_running_stats,
            } => {
                let c = *num_features;
                if !track_running_stats {
                    return fail(format!(
                        "layer `{name}` (BatchNorm2d): without running statistics it \
                         normalizes by each batch's, which ONNX's inference BatchNormalization \
                         cannot express"
                    ));
                }
                let (scale, shift) = if *affine {
                    (
                        bank.take(name, kind, "weight", &[c])?,
                        bank.take(name, kind, "bias", &[c])?,
                    )
                } else {
                    (
                        add_init(
                            float_tensor(&format!("{name}.weight"), &[c], &vec![1.0; c]),
                            &mut initializers,
                        ),
                        add_init(
                            float_tensor(&format!("{name}.bias"), &[c], &vec![0.0; c]),
                            &mut initializers,
                        ),
                    )
                };
                let mean = bank.take(name, kind, "running_mean", &[c])?;
                let var = bank.take(name, kind, "running_var", &[c])?;
                // Not part of the inference graph; accepted so a state dict exports as is.
                let nbt = format!("{name}.num_batches_tracked");
                if let Some((&k, _)) = bank.by_name.get_key_value(nbt.as_str()) {
                    bank.used.insert(k);
                    not_in_graph.insert(k);
                }
                let mut attrs = vec![attr_float("epsilon", *eps)];
                if let Some(m) = momentum {
                    attrs.push(attr_float("momentum", (1.0 - f64::from(*m)) as f32));
                }
                graph.node.push(node(
                    "BatchNormalization",
                    name,
                    &[&x, &scale, &shift, &mean, &var],
                    &out,
                    attrs,
                ));
            }
            LayerSpec::ReLU => graph.node.push(simple("Relu")),
            LayerSpec::Sigmoid => graph.node.push(simple("Sigmoid")),
            LayerSpec::Tanh => graph.node.push(simple("Tanh")),
            LayerSpec::Identity | LayerSpec::Dropout { .. } => graph.node.push(simple("Identity")),
            LayerSpec::ReLU6 => {
                let lo = add_init(
                    float_tensor(&format!("{name}.clip_min"), &[], &[0.0]),
                    &mut initializers,
                );
                let hi = add_init(
                    float_tensor(&format!("{name}.clip_max"), &[], &[6.0]),
                    &mut initializers,
                );
                graph
                    .node
                    .push(node("Clip", name, &[&x, &lo, &hi], &out, vec![]));
            }
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            } => graph.node.push(node(
                "MaxPool",
                name,
                &[&x],
                &out,
                vec![
                    attr_ints("kernel_shape", &[kernel.0, kernel.1]),
                    attr_ints("strides", &[stride.0, stride.1]),
                    attr_ints("pads", &[padding.0, padding.1, padding.0, padding.1]),
                ],
            )),
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => graph.node.push(node(
                "AveragePool",
                name,
                &[&x],
                &out,
                vec![
                    attr_ints("kernel_shape", &[kernel.0, kernel.1]),
                    attr_ints("strides", &[stride.0, stride.1]),
                    attr_ints("pads", &[padding.0, padding.1, padding.0, padding.1]),
                    attr_int("count_include_pad", i64::from(*count_include_pad)),
                ],
            )),
            LayerSpec::AdaptiveAvgPool2d { output } => {
                if *output == (1, 1) {
                    graph.node.push(simple("GlobalAveragePool"));
                } else {
                    let (h, w) = (in_shape[1], in_shape[2]);
                    if h % output.0 != 0 || w % output.1 != 0 {
                        return fail(format!(
                            "layer `{name}` (AdaptiveAvgPool2d): output {output:?} does not \
                             divide the input {h}x{w}, so its windows differ in size; ONNX has \
                             no such pooling"
                        ));
                    }
                    let k = [h / output.0, w / output.1];
                    graph.node.push(node(
                        "AveragePool",
                        name,
                        &[&x],
                        &out,
                        vec![attr_ints("kernel_shape", &k), attr_ints("strides", &k)],
                    ));
                }
            }
            LayerSpec::Flatten { start_dim, end_dim } => {
                let rank = in_shape.len() + 1;
                let (s, e) = (
                    normalize_dim(*start_dim, rank),
                    normalize_dim(*end_dim, rank),
                );
                if s == Some(1) && e == Some(rank - 1) {
                    graph.node.push(node(
                        "Flatten",
                        name,
                        &[&x],
                        &out,
                        vec![attr_int("axis", 1)],
                    ));
                } else {
                    let mut shape = vec![0i64];
                    shape.extend(shapes[i + 1].iter().map(|&d| d as i64));
                    let s = add_init(
                        int_tensor(&format!("{name}.shape"), &shape),
                        &mut initializers,
                    );
                    graph
                        .node
                        .push(node("Reshape", name, &[&x, &s], &out, vec![]));
                }
            }
            LayerSpec::Reshape { shape } => {
                let s = add_init(
                    int_tensor(&format!("{name}.shape"), shape),
                    &mut initializers,
                );
                graph
                    .node
                    .push(node("Reshape", name, &[&x, &s], &out, vec![]));
            }
            LayerSpec::Softmax { dim } => {
                let rank = in_shape.len() + 1;
                let axis = normalize_dim(*dim, rank).unwrap_or(rank - 1);
                graph.node.push(node(
                    "Softmax",
                    name,
                    &[&x],
                    &out,
                    vec![attr_int("axis", axis as i64)],
                ));
            }
            LayerSpec::Add => {
                let y = value_name(n.inputs[1]);
                graph.node.push(node("Add", name, &[&x, &y], &out, vec![]));
            }
        }
    }
    if let Some((name, _, _)) = tensors
        .iter()
        .find(|(n, _, _)| !bank.used.contains(n.as_str()))
    {
        return fail(format!(
            "tensor `{name}` belongs to no layer of the architecture"
        ));
    }
    // Every initializer name and value name must be unique in the graph.
    let mut seen = HashSet::from(["input".to_string(), "logits".to_string()]);
    let mut params: Vec<TensorProto> = Vec::new();
    for (name, shape, data) in tensors {
        if !not_in_graph.contains(name.as_str()) {
            params.push(float_tensor(name, shape, data));
        }
    }
    params.extend(initializers);
    for t in &params {
        let n = t.name.clone().unwrap_or_default();
        if !seen.insert(n.clone()) {
            return fail(format!("name `{n}` is used twice in the graph"));
        }
    }
    for n in &graph.node {
        for o in n.output.iter().filter(|o| o.as_str() != "logits") {
            if !seen.insert(o.clone()) {
                return fail(format!("name `{o}` is used twice in the graph"));
            }
        }
    }
    graph.initializer = params;
    graph.input = vec![value_info("input", &arch.input)];
    graph.output = vec![value_info("logits", &shapes[last])];
    let model = ModelProto {
        ir_version: Some(EXPORT_IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(EXPORT_OPSET),
        }],
        producer_name: Some("tinycnn".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
