//! ONNX graph -> [`Architecture`] and tensors (see the module docs of [`super`] for the
//! mapping of each operator).

mod constant;
mod context;
mod importer;
mod layers;
mod weightless;

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    type_proto, AttributeProto, ModelProto, NodeProto, TensorProto,
};
use super::shape::output_shape;
use super::{OnnxModel, Tensors, MAX_OPSET, MIN_OPSET};
use crate::error::{Error, Result};
use crate::nn::arch::{Architecture, LayerSpec, Node, MAX_NODES};
use crate::tensor::normalize_dim;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use constant::{data_type_name, decode_tensor};

fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Format {
        path: Path::new("<onnx>").to_path_buf(),
        msg: msg.into(),
    })
}

/// A constant's values: floats for weights and clip bounds, integers for shapes and flags.
#[derive(Debug)]
enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Debug)]
struct Const {
    dims: Vec<usize>,
    data: ConstData,
    /// The initializer's name (a Constant node's output has none): the source of the
    /// PyTorch state-dict prefix.
    initializer: Option<String>,
}

/// What a name in the graph stands for.
#[derive(Debug, Clone)]
enum Val {
    /// A value computed at run time: index in the architecture's numbering, per-example shape.
    Computed(usize),
    /// An initializer or a Constant node's output.
    Const(Rc<Const>),
}

/// One layer being built, named at the end (initializer prefixes first, then node names).
struct Pending {
    name_hint: String,
    /// The name comes from an initializer's state-dict prefix.
    strong: bool,
    layer: LayerSpec,
    inputs: Vec<usize>,
    tensors: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    /// A Linear from MatMul or from Gemm without C: a following constant Add is its bias.
    open_bias: bool,
}

/// A node being converted: its description for errors and its attributes.
struct Ctx<'a> {
    node: &'a NodeProto,
    desc: String,
}

struct Importer<'a> {
    opset: i64,
    initializers: HashMap<&'a str, &'a TensorProto>,
    values: HashMap<&'a str, Val>,
    /// How many nodes (and graph outputs) read each name.
    uses: HashMap<&'a str, usize>,
    pending: Vec<Pending>,
    shapes: Vec<Vec<usize>>,
}

/// Parses an ONNX model (see the module docs of [`super`]).
pub(super) fn read(bytes: &[u8]) -> Result<OnnxModel> {
    let model = match ModelProto::decode(bytes) {
        Ok(m) => m,
        Err(e) => return fail(format!("not a valid ONNX model (protobuf): {e}")),
    };
    let opset = default_opset(&model)?;
    let Some(graph) = model.graph.as_ref() else {
        return fail("the model has no graph");
    };
    if !graph.sparse_initializer.is_empty() {
        return fail("sparse initializers are not supported");
    }
    let mut initializers = HashMap::new();
    for t in &graph.initializer {
        let name = t.name.as_deref().unwrap_or("");
        if name.is_empty() || initializers.insert(name, t).is_some() {
            return fail(format!("initializer `{name}`: empty or repeated name"));
        }
    }
    // Graph inputs that are also initializers (IR < 4 lists both) are weights, not inputs.
    let real_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = real_inputs.as_slice() else {
        return fail(format!(
            "the graph has {} inputs (besides initializers); exactly one, [N, C, H, W], is \
             supported",
            real_inputs.len()
        ));
    };
    let input_name = input.name.as_deref().unwrap_or("");
    let input_shape = input_shape(input)?;
    let [output] = graph.output.as_slice() else {
        return fail(format!(
            "the graph has {} outputs; exactly one is supported",
            graph.output.len()
        ));
    };
    let output_name = output.name.as_deref().unwrap_or("");

    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &graph.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    *uses.entry(output_name).or_default() += 1;

    let mut imp = Importer {
        opset,
        initializers,
        values: HashMap::from([(input_name, Val::Computed(0))]),
        uses,
        pending: Vec::new(),
        shapes: vec![input_shape.clone()],
    };
    for (i, node) in graph.node.iter().enumerate() {
        let op = node.op_type.as_deref().unwrap_or("");
        let desc = match node.name.as_deref().filter(|s| !s.is_empty()) {
            Some(n) => format!("node `{n}` ({op})"),
            None => format!("node #{i} ({op})"),
        };
        let ctx = Ctx { node, desc };
        let domain = node.domain.as_deref().unwrap_or("");
        if !domain.is_empty() && domain != "ai.onnx" {
            return ctx.err(format!(
                "operator domain `{domain}` is not supported (only the default ONNX domain)"
            ));
        }
        imp.node(&ctx)?;
    }
    let out = match imp.values.get(output_name) {
        Some(Val::Computed(v)) if *v > 0 => *v,
        Some(Val::Computed(_)) => return fail("the graph output is its input: nothing to compute"),
        Some(Val::Const(_)) => return fail("the graph output is a constant"),
        None => {
            return fail(format!(
                "the graph output `{output_name}` is not computed by any node"
            ))
        }
    };
    assemble(imp.pending, input_shape, out)
}

/// The default-domain opset, checked: 7..=21, no other domain.
fn default_opset(model: &ModelProto) -> Result<i64> {
    let mut opset = None;
    for o in &model.opset_import {
        let domain = o.domain.as_deref().unwrap_or("");
        let v = o.version.unwrap_or(0);
        if domain.is_empty() || domain == "ai.onnx" {
            if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
                return fail(format!(
                    "opset {v} of the default domain is not supported (supported: \
                     {MIN_OPSET}..={MAX_OPSET})"
                ));
            }
            opset = Some(v);
        } else {
            return fail(format!(
                "operator set domain `{domain}` (version {v}) is not supported (only the \
                 default ONNX domain)"
            ));
        }
    }
    match opset {
        Some(v) => Ok(v),
        None => fail("the model imports no opset of the default ONNX domain"),
    }
}

fn input_shape(input: &super::proto::ValueInfoProto) -> Result<Vec<usize>> {
    let name = input.name.as_deref().unwrap_or("");
    let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => return fail(format!("graph input `{name}` is not a tensor")),
    };
    if tensor.elem_type != Some(DataType::Float as i32) {
        return fail(format!(
            "graph input `{name}` has element type {}, only FLOAT is supported",
            data_type_name(tensor.elem_type.unwrap_or(0))
        ));
    }
    let Some(shape) = tensor.shape.as_ref() else {
        return fail(format!("graph input `{name}` has no shape"));
    };
    if shape.dim.len() < 2 || shape.dim.len() > 8 {
        return fail(format!(
            "graph input `{name}` has rank {}; [N, C, H, W] (or [N, features]) is supported",
            shape.dim.len()
        ));
    }
    let mut dims = Vec::new();
    for d in &shape.dim[1..] {
        match d.value {
            Some(dimension::Value::DimValue(v)) if v > 0 => match usize::try_from(v) {
                Ok(v) => dims.push(v),
                Err(_) => return fail(format!("graph input `{name}`: dimension {v} too large")),
            },
            _ => {
                return fail(format!(
                    "graph input `{name}`: every dimension but the batch must be a fixed size"
                ))
            }
        }
    }
    if dims
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .is_none_or(|n| n > super::shape::MAX_VALUE_ELEMENTS)
    {
        return fail(format!("graph input `{name}`: shape {dims:?} too large"));
    }
    Ok(dims)
}

/// Keeps the layers the output depends on, names them and collects their tensors.
fn assemble(pending: Vec<Pending>, input: Vec<usize>, out: usize) -> Result<OnnxModel> {
    let mut live = vec![false; pending.len() + 1];
    live[out] = true;
    for v in (1..=out).rev() {
        if live[v] {
            for &i in &pending[v - 1].inputs {
                live[i] = true;
            }
        }
    }
    let mut index = vec![0usize; pending.len() + 1];
    let kept: Vec<(usize, Pending)> = pending
        .into_iter()
        .enumerate()
        .filter(|(i, _)| live[i + 1])
        .collect();
    for (new, (old, _)) in kept.iter().enumerate() {
        index[old + 1] = new + 1;
    }
    // Names from initializers first, so a parameter-free node cannot take a prefix the
    // state dict needs.
    let mut names: Vec<Option<String>> = vec![None; kept.len()];
    let mut taken = HashSet::new();
    for strong_pass in [true, false] {
        for (i, (_, p)) in kept.iter().enumerate() {
            if p.strong != strong_pass {
                continue;
            }
            let mut name = p.name_hint.clone();
            let mut k = 1;
            while taken.contains(&name) {
                name = format!("{}_{k}", p.name_hint.trim_end_matches('_'));
                k += 1;
            }
            taken.insert(name.clone());
            names[i] = Some(name);
        }
    }
    let mut nodes = Vec::with_capacity(kept.len());
    let mut tensors: Tensors = Vec::new();
    for ((_, p), name) in kept.into_iter().zip(names) {
        let name = name.unwrap_or_default();
        for (local, shape, data) in p.tensors {
            tensors.push((format!("{name}.{local}"), shape, data));
        }
        let inputs = p.inputs.iter().map(|&v| index[v]).collect();
        nodes.push(Node::new(name, p.layer, inputs));
    }
    let architecture = Architecture { input, nodes };
    // What nn::Graph checks before building: an imported model is one it can run.
    architecture.node_shapes(1)?;
    Ok(OnnxModel {
        architecture,
        tensors,
    })
}
