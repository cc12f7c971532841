//! ONNX graph -> [`Architecture`] and tensors (see the module docs of [`super`] for the
//! mapping of each operator).

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    type_proto, AttributeProto, ModelProto, NodeProto, TensorProto,
};
use super::shape::{normalize_dim, output_shape};
use super::{OnnxModel, Tensors, MAX_OPSET, MIN_OPSET};
use crate::error::{Error, Result};
use crate::nn::arch::{Architecture, LayerSpec, Node, MAX_NODES};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

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

impl Const {
    fn floats(&self) -> Option<&[f32]> {
        match &self.data {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }
    fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            ConstData::I64(v) => Some(v),
            ConstData::F32(_) => None,
        }
    }
    fn scalar_f32(&self) -> Option<f32> {
        match self.floats()? {
            [v] => Some(*v),
            _ => None,
        }
    }
    fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }
}

fn data_type_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("data type {t}"))
}

/// Decodes a tensor's values, checking its size against the bytes present before any
/// allocation (the element count comes from `dims`, which a file can inflate at will).
fn decode_tensor(t: &TensorProto, what: &str) -> Result<Const> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return fail(format!(
            "{what}: external data (a separate weights file) is not supported; save the model \
             with its weights inside (onnx.save(model, path, save_as_external_data=False))"
        ));
    }
    if t.segment.is_some() {
        return fail(format!("{what}: segmented tensors are not supported"));
    }
    let mut dims = Vec::with_capacity(t.dims.len().min(16));
    for &d in &t.dims {
        match usize::try_from(d) {
            Ok(d) => dims.push(d),
            Err(_) => return fail(format!("{what}: negative dimension in {:?}", t.dims)),
        }
    }
    let Some(numel) = dims.iter().try_fold(1usize, |p, &d| p.checked_mul(d)) else {
        return fail(format!("{what}: shape {dims:?} overflows"));
    };
    let dtype = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let size_err = |have: usize, unit: &str| {
        fail(format!(
            "{what}: shape {dims:?} needs {numel} values, the file holds {have} {unit}"
        ))
    };
    let data = match DataType::try_from(dtype) {
        Ok(DataType::Float) => ConstData::F32(match raw {
            Some(b) => {
                if numel.checked_mul(4) != Some(b.len()) {
                    return size_err(b.len(), "bytes");
                }
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            None if t.float_data.len() == numel => t.float_data.clone(),
            None => return size_err(t.float_data.len(), "floats"),
        }),
        Ok(DataType::Int64) => ConstData::I64(match raw {
            Some(b) => {
                if numel.checked_mul(8) != Some(b.len()) {
                    return size_err(b.len(), "bytes");
                }
                b.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect()
            }
            None if t.int64_data.len() == numel => t.int64_data.clone(),
            None => return size_err(t.int64_data.len(), "integers"),
        }),
        Ok(DataType::Int32) | Ok(DataType::Bool) => {
            let width = if dtype == DataType::Bool as i32 { 1 } else { 4 };
            ConstData::I64(match raw {
                Some(b) => {
                    if numel.checked_mul(width) != Some(b.len()) {
                        return size_err(b.len(), "bytes");
                    }
                    if width == 1 {
                        b.iter().map(|&v| i64::from(v)).collect()
                    } else {
                        b.chunks_exact(4)
                            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                            .collect()
                    }
                }
                None if t.int32_data.len() == numel => {
                    t.int32_data.iter().map(|&v| i64::from(v)).collect()
                }
                None => return size_err(t.int32_data.len(), "integers"),
            })
        }
        _ => {
            return fail(format!(
                "{what}: element type {} is not supported (FLOAT weights, INT64/INT32/BOOL \
                 shapes and flags)",
                data_type_name(dtype)
            ))
        }
    };
    Ok(Const {
        dims,
        data,
        initializer: None,
    })
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

impl<'a> Ctx<'a> {
    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        fail(format!("{}: {msg}", self.desc))
    }

    fn check_attrs(&self, known: &[&str]) -> Result<()> {
        for a in &self.node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if !known.contains(&name) {
                return self.err(format!(
                    "unsupported attribute `{name}` (this op supports {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            if a.ref_attr_name.is_some() {
                return self.err(format!(
                    "attribute `{name}` refers to a function's attribute, not supported"
                ));
            }
        }
        Ok(())
    }

    fn attr(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>> {
        let Some(a) = self
            .node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
        else {
            return Ok(None);
        };
        // Old files may leave `type` unset; then the field present decides.
        match a.r#type {
            None | Some(0) => Ok(Some(a)),
            Some(t) if t == want as i32 => Ok(Some(a)),
            Some(t) => self.err(format!(
                "attribute `{name}` has type {}, expected {}",
                AttributeType::try_from(t)
                    .map(|t| t.as_str_name())
                    .unwrap_or("unknown"),
                want.as_str_name()
            )),
        }
    }

    fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self
            .attr(name, AttributeType::Int)?
            .map(|a| a.i.unwrap_or(0))
            .unwrap_or(default))
    }

    fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self
            .attr(name, AttributeType::Float)?
            .map(|a| a.f.unwrap_or(0.0))
            .unwrap_or(default))
    }

    fn ints(&self, name: &str) -> Result<Option<&'a [i64]>> {
        Ok(self
            .attr(name, AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    fn string(&self, name: &str) -> Result<Option<&'a [u8]>> {
        Ok(self
            .attr(name, AttributeType::String)?
            .map(|a| a.s.as_deref().unwrap_or(b"")))
    }

    /// A 2-D window attribute (`kernel_shape`, `strides`, `dilations`), all entries >= 1.
    fn pair(&self, name: &str, default: Option<(usize, usize)>) -> Result<(usize, usize)> {
        match (self.ints(name)?, default) {
            (Some([a, b]), _) if *a >= 1 && *b >= 1 => Ok((*a as usize, *b as usize)),
            (Some(v), _) => self.err(format!(
                "attribute `{name}` = {v:?}: only 2-D windows with entries >= 1 are supported"
            )),
            (None, Some(d)) => Ok(d),
            (None, None) => self.err(format!("missing attribute `{name}`")),
        }
    }

    /// `pads` as (height, width): symmetric only (PyTorch's padding).
    fn pads(&self) -> Result<(usize, usize)> {
        match self.ints("pads")? {
            None => Ok((0, 0)),
            Some(&[t, l, b, r]) if t == b && l == r && t >= 0 && l >= 0 => {
                Ok((t as usize, l as usize))
            }
            Some(p) => self.err(format!(
                "pads {p:?} are not supported: only symmetric 2-D padding \
                 [top, left, bottom, right] with top == bottom and left == right"
            )),
        }
    }

    /// `auto_pad`: NOTSET (explicit pads) or VALID (no padding); SAME_* is refused.
    fn check_auto_pad(&self) -> Result<bool> {
        match self.string("auto_pad")? {
            None | Some(b"NOTSET") => Ok(false),
            Some(b"VALID") => Ok(true),
            Some(v) => self.err(format!(
                "auto_pad `{}` is not supported (only NOTSET with explicit pads, or VALID)",
                String::from_utf8_lossy(v)
            )),
        }
    }

    /// The node's input `i`; `None` when absent or empty (an omitted optional input).
    fn input_name(&self, i: usize) -> Option<&'a str> {
        self.node
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
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

impl<'a> Importer<'a> {
    fn lookup(&mut self, ctx: &Ctx<'a>, name: &'a str) -> Result<Val> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        if let Some(t) = self.initializers.get(name) {
            let mut c = decode_tensor(t, &format!("initializer `{name}`"))?;
            c.initializer = Some(name.to_string());
            let v = Val::Const(Rc::new(c));
            self.values.insert(name, v.clone());
            return Ok(v);
        }
        ctx.err(format!(
            "input `{name}` is neither a graph input, an initializer nor an earlier node's output"
        ))
    }

    fn input(&mut self, ctx: &Ctx<'a>, i: usize) -> Result<Option<Val>> {
        match ctx.input_name(i) {
            Some(n) => self.lookup(ctx, n).map(Some),
            None => Ok(None),
        }
    }

    /// Input `i`, which must be computed at run time (not a constant).
    fn computed(&mut self, ctx: &Ctx<'a>, i: usize) -> Result<usize> {
        match self.input(ctx, i)? {
            Some(Val::Computed(v)) => Ok(v),
            Some(Val::Const(_)) => ctx.err(format!(
                "input {i} (`{}`) is a constant; this op is supported on computed values only",
                ctx.input_name(i).unwrap_or("")
            )),
            None => ctx.err(format!("missing input {i}")),
        }
    }

    /// Input `i`, which must be a constant (an initializer or a Constant node's output).
    fn constant(&mut self, ctx: &Ctx<'a>, i: usize, what: &str) -> Result<Option<Rc<Const>>> {
        match self.input(ctx, i)? {
            Some(Val::Const(c)) => Ok(Some(c)),
            Some(Val::Computed(_)) => ctx.err(format!(
                "{what} (input {i}, `{}`) is computed at run time; only constant {what}s \
                 (initializers or Constant nodes) are supported",
                ctx.input_name(i).unwrap_or("")
            )),
            None => Ok(None),
        }
    }

    fn required_const(&mut self, ctx: &Ctx<'a>, i: usize, what: &str) -> Result<Rc<Const>> {
        match self.constant(ctx, i, what)? {
            Some(c) => Ok(c),
            None => ctx.err(format!("missing {what} (input {i})")),
        }
    }

    fn float_const(&mut self, ctx: &Ctx<'a>, i: usize, what: &str) -> Result<Rc<Const>> {
        let c = self.required_const(ctx, i, what)?;
        if c.floats().is_none() {
            return ctx.err(format!("{what} is not a FLOAT tensor"));
        }
        Ok(c)
    }

    /// Adds a layer reading `inputs`; returns its value index.
    fn push(
        &mut self,
        ctx: &Ctx<'a>,
        layer: LayerSpec,
        inputs: Vec<usize>,
        tensors: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
        prefix_from: Option<&Const>,
    ) -> Result<usize> {
        if self.pending.len() >= MAX_NODES {
            return ctx.err(format!("more than {MAX_NODES} layers"));
        }
        let ins: Vec<&[usize]> = inputs.iter().map(|&v| self.shapes[v].as_slice()).collect();
        let shape = match output_shape(&layer, &ins) {
            Ok(s) => s,
            Err(m) => return ctx.err(format!("as {}: {m}", layer.type_name())),
        };
        let strong_name = prefix_from
            .and_then(|c| c.initializer.as_deref())
            .and_then(|n| n.strip_suffix(".weight"))
            .filter(|p| !p.is_empty());
        let (name_hint, strong) = match strong_name {
            Some(p) => (p.to_string(), true),
            None => (
                name_from_onnx(
                    ctx.node.name.as_deref().unwrap_or(""),
                    ctx.node.op_type.as_deref().unwrap_or("node"),
                ),
                false,
            ),
        };
        let open_bias = matches!(layer, LayerSpec::Linear { bias: false, .. });
        self.pending.push(Pending {
            name_hint,
            strong,
            layer,
            inputs,
            tensors,
            open_bias,
        });
        self.shapes.push(shape);
        Ok(self.pending.len())
    }

    /// Binds the node's first output to `val`; any further output must be unused.
    fn bind(&mut self, ctx: &Ctx<'a>, val: Val) -> Result<()> {
        for (i, out) in ctx.node.output.iter().enumerate().skip(1) {
            if !out.is_empty() && self.uses.get(out.as_str()).copied().unwrap_or(0) > 0 {
                return ctx.err(format!(
                    "output {i} (`{out}`) is used; only the first output is supported"
                ));
            }
        }
        match ctx.node.output.first().filter(|s| !s.is_empty()) {
            Some(out) => {
                if self.values.contains_key(out.as_str())
                    || self.initializers.contains_key(out.as_str())
                {
                    return ctx.err(format!("output `{out}` is defined twice"));
                }
                self.values.insert(out.as_str(), val);
                Ok(())
            }
            None => ctx.err("has no output"),
        }
    }

    fn node(&mut self, ctx: &Ctx<'a>) -> Result<()> {
        let op = ctx.node.op_type.as_deref().unwrap_or("");
        let val = match op {
            "Conv" => self.conv(ctx)?,
            "Gemm" => self.gemm(ctx)?,
            "MatMul" => self.matmul(ctx)?,
            "Add" => self.add(ctx)?,
            // PyTorch's exporter writes Identity nodes that copy an initializer (a shared
            // parameter): they stay constants.
            "Identity" if matches!(self.input(ctx, 0)?, Some(Val::Const(_))) => {
                ctx.check_attrs(&[])?;
                match self.input(ctx, 0)? {
                    Some(c) => c,
                    None => return ctx.err("missing input 0"),
                }
            }
            "Relu" | "Sigmoid" | "Tanh" | "Identity" => {
                ctx.check_attrs(&[])?;
                let x = self.computed(ctx, 0)?;
                let layer = match op {
                    "Relu" => LayerSpec::ReLU,
                    "Sigmoid" => LayerSpec::Sigmoid,
                    "Tanh" => LayerSpec::Tanh,
                    _ => LayerSpec::Identity,
                };
                Val::Computed(self.push(ctx, layer, vec![x], vec![], None)?)
            }
            "Clip" => self.clip(ctx)?,
            "MaxPool" | "AveragePool" => self.pool(ctx, op == "MaxPool")?,
            "GlobalAveragePool" => {
                ctx.check_attrs(&[])?;
                let x = self.computed(ctx, 0)?;
                let layer = LayerSpec::AdaptiveAvgPool2d { output: (1, 1) };
                Val::Computed(self.push(ctx, layer, vec![x], vec![], None)?)
            }
            "BatchNormalization" => self.batch_norm(ctx)?,
            "Flatten" => {
                ctx.check_attrs(&["axis"])?;
                let x = self.computed(ctx, 0)?;
                let rank = self.shapes[x].len() + 1;
                let axis = ctx.int("axis", 1)?;
                let a = isize::try_from(axis).ok();
                if a.and_then(|a| normalize_dim(a, rank + 1)) != Some(1) {
                    return ctx.err(format!(
                        "axis {axis} on a rank-{rank} input is not supported: only axis 1 \
                         (keeping the batch dimension, as nn.Flatten)"
                    ));
                }
                let layer = LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                };
                Val::Computed(self.push(ctx, layer, vec![x], vec![], None)?)
            }
            "Reshape" => self.reshape(ctx)?,
            "Dropout" => self.dropout(ctx)?,
            "Softmax" => {
                ctx.check_attrs(&["axis"])?;
                let x = self.computed(ctx, 0)?;
                let rank = self.shapes[x].len() + 1;
                let axis = ctx.int("axis", if self.opset >= 13 { -1 } else { 1 })?;
                let dim = isize::try_from(axis)
                    .ok()
                    .and_then(|a| normalize_dim(a, rank));
                let Some(dim) = dim else {
                    return ctx.err(format!("axis {axis} out of range for rank {rank}"));
                };
                // Before opset 13 Softmax flattens to 2-D at `axis`: the same as a softmax
                // along one dimension only when it is the last one.
                if self.opset < 13 && dim != rank - 1 {
                    return ctx.err(format!(
                        "axis {axis} on a rank-{rank} input under opset {} coerces the input to \
                         2-D (softmax over dimensions {axis}..), which is not supported; only the \
                         last axis",
                        self.opset
                    ));
                }
                let layer = LayerSpec::Softmax { dim: dim as isize };
                Val::Computed(self.push(ctx, layer, vec![x], vec![], None)?)
            }
            "Constant" => Val::Const(Rc::new(self.constant_node(ctx)?)),
            _ => {
                return ctx.err(format!(
                    "unsupported operator `{op}` (supported: Conv, Gemm, MatMul, Add, Relu, \
                     Clip, Sigmoid, Tanh, MaxPool, AveragePool, GlobalAveragePool, \
                     BatchNormalization, Flatten, Reshape, Dropout, Softmax, Identity, Constant)"
                ))
            }
        };
        self.bind(ctx, val)
    }

    fn conv(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        ctx.check_attrs(&[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ])?;
        let x = self.computed(ctx, 0)?;
        let w = self.float_const(ctx, 1, "weight")?;
        let b = self.constant(ctx, 2, "bias")?;
        let valid = ctx.check_auto_pad()?;
        let group = ctx.int("group", 1)?;
        let &[out_c, in_per_group, kh, kw] = w.dims.as_slice() else {
            return ctx.err(format!(
                "weight of shape {:?}: only 2-D convolutions (a 4-D weight) are supported",
                w.dims
            ));
        };
        if let Some(k) = ctx.ints("kernel_shape")? {
            if k.len() != 2 || k[0] as u64 != kh as u64 || k[1] as u64 != kw as u64 {
                return ctx.err(format!(
                    "kernel_shape {k:?} does not match the weight {:?}",
                    w.dims
                ));
            }
        }
        let groups = match usize::try_from(group) {
            Ok(g) if g >= 1 => g,
            _ => return ctx.err(format!("group {group} must be >= 1")),
        };
        let Some(in_c) = in_per_group.checked_mul(groups) else {
            return ctx.err("channel count overflows");
        };
        let padding = if valid { (0, 0) } else { ctx.pads()? };
        if valid && ctx.ints("pads")?.is_some() {
            return ctx.err("both auto_pad VALID and pads are set");
        }
        let mut tensors = vec![("weight", w.dims.clone(), w.floats().unwrap_or(&[]).to_vec())];
        if let Some(b) = &b {
            match b.floats() {
                Some(v) if v.len() == out_c && b.dims.len() == 1 => {
                    tensors.push(("bias", vec![out_c], v.to_vec()))
                }
                _ => return ctx.err(format!("bias of shape {:?}, expected [{out_c}]", b.dims)),
            }
        }
        let layer = LayerSpec::Conv2d {
            in_channels: in_c,
            out_channels: out_c,
            kernel: (kh, kw),
            stride: ctx.pair("strides", Some((1, 1)))?,
            padding,
            dilation: ctx.pair("dilations", Some((1, 1)))?,
            groups,
            bias: b.is_some(),
        };
        Ok(Val::Computed(self.push(
            ctx,
            layer,
            vec![x],
            tensors,
            Some(&w),
        )?))
    }

    fn linear(
        &mut self,
        ctx: &Ctx<'a>,
        x: usize,
        weight: Vec<f32>,
        (out_f, in_f): (usize, usize),
        bias: Option<Vec<f32>>,
        source: &Const,
    ) -> Result<Val> {
        let mut tensors = vec![("weight", vec![out_f, in_f], weight)];
        let has_bias = bias.is_some();
        if let Some(b) = bias {
            tensors.push(("bias", vec![out_f], b));
        }
        let layer = LayerSpec::Linear {
            in_features: in_f,
            out_features: out_f,
            bias: has_bias,
        };
        let v = self.push(ctx, layer, vec![x], tensors, Some(source))?;
        Ok(Val::Computed(v))
    }

    fn gemm(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        ctx.check_attrs(&["alpha", "beta", "transA", "transB"])?;
        let x = self.computed(ctx, 0)?;
        if self.shapes[x].len() != 1 {
            return ctx.err(format!(
                "input of rank {} (Gemm takes a 2-D input)",
                self.shapes[x].len() + 1
            ));
        }
        let w = self.float_const(ctx, 1, "weight")?;
        let c = self.constant(ctx, 2, "bias")?;
        let (alpha, beta) = (ctx.float("alpha", 1.0)?, ctx.float("beta", 1.0)?);
        let (trans_a, trans_b) = (ctx.int("transA", 0)?, ctx.int("transB", 0)?);
        if alpha != 1.0 || (beta != 1.0 && c.is_some()) || trans_a != 0 {
            return ctx.err(format!(
                "alpha {alpha}, beta {beta}, transA {trans_a}: only alpha = beta = 1 and \
                 transA = 0 (a Linear layer) are supported"
            ));
        }
        let &[r, k] = w.dims.as_slice() else {
            return ctx.err(format!("weight of shape {:?} is not 2-D", w.dims));
        };
        let data = w.floats().unwrap_or(&[]);
        let (weight, out_f, in_f) = match trans_b {
            1 => (data.to_vec(), r, k),
            0 => (transpose(data, r, k), k, r),
            t => return ctx.err(format!("transB {t} must be 0 or 1")),
        };
        let bias = match &c {
            None => None,
            Some(c) => Some(bias_vector(ctx, c, out_f)?),
        };
        let v = self.linear(ctx, x, weight, (out_f, in_f), bias, &w)?;
        if c.is_some() {
            self.close_bias();
        }
        Ok(v)
    }

    fn close_bias(&mut self) {
        if let Some(p) = self.pending.last_mut() {
            p.open_bias = false;
        }
    }

    fn matmul(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        ctx.check_attrs(&[])?;
        let x = self.computed(ctx, 0)?;
        let w = self.float_const(ctx, 1, "weight")?;
        let &[in_f, out_f] = w.dims.as_slice() else {
            return ctx.err(format!(
                "weight of shape {:?}: only a 2-D constant right operand (a Linear layer) is \
                 supported",
                w.dims
            ));
        };
        let weight = transpose(w.floats().unwrap_or(&[]), in_f, out_f);
        self.linear(ctx, x, weight, (out_f, in_f), None, &w)
    }

    fn add(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        ctx.check_attrs(&[])?;
        let (a, b) = (self.input(ctx, 0)?, self.input(ctx, 1)?);
        match (a, b) {
            (Some(Val::Computed(a)), Some(Val::Computed(b))) => {
                let v = self.push(ctx, LayerSpec::Add, vec![a, b], vec![], None)?;
                Ok(Val::Computed(v))
            }
            (Some(Val::Computed(v)), Some(Val::Const(c))) => self.fold_bias(ctx, v, &c, 0),
            (Some(Val::Const(c)), Some(Val::Computed(v))) => self.fold_bias(ctx, v, &c, 1),
            (Some(Val::Const(_)), Some(Val::Const(_))) => {
                ctx.err("adding two constants is not supported")
            }
            _ => ctx.err("needs two inputs"),
        }
    }

    /// `value + c` where `value` (the Add's input `which`) is a Linear from MatMul (or Gemm
    /// without C) that nothing else reads: `c` is that Linear's bias.
    fn fold_bias(&mut self, ctx: &Ctx<'a>, v: usize, c: &Const, which: usize) -> Result<Val> {
        let single_use = ctx
            .input_name(which)
            .is_some_and(|n| self.uses.get(n).copied().unwrap_or(0) == 1);
        let out_f =
            match v.checked_sub(1).and_then(|i| self.pending.get(i)) {
                Some(Pending {
                    layer: LayerSpec::Linear { out_features, .. },
                    open_bias: true,
                    ..
                }) if single_use => *out_features,
                _ => return ctx.err(
                    "adding a constant is only supported as the bias of a MatMul or Gemm with a \
                     constant weight and no bias of its own (a Linear layer)",
                ),
            };
        let bias = bias_vector(ctx, c, out_f)?;
        let p = &mut self.pending[v - 1];
        p.tensors.push(("bias", vec![out_f], bias));
        if let LayerSpec::Linear { bias, .. } = &mut p.layer {
            *bias = true;
        }
        p.open_bias = false;
        Ok(Val::Computed(v))
    }

    fn clip(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        let (lo, hi) = if self.opset < 11 {
            ctx.check_attrs(&["min", "max"])?;
            (
                Some(ctx.float("min", f32::MIN)?),
                Some(ctx.float("max", f32::MAX)?),
            )
        } else {
            ctx.check_attrs(&[])?;
            let mut bound = |i: usize, what: &str| -> Result<Option<f32>> {
                match self.constant(ctx, i, what)? {
                    None => Ok(None),
                    Some(c) => match c.scalar_f32() {
                        Some(v) => Ok(Some(v)),
                        None => ctx.err(format!("{what} is not a FLOAT scalar")),
                    },
                }
            };
            (bound(1, "min")?, bound(2, "max")?)
        };
        if lo != Some(0.0) || hi != Some(6.0) {
            let show = |v: Option<f32>| v.map_or("none".to_string(), |v| v.to_string());
            return ctx.err(format!(
                "clip range [{}, {}] is not supported: only [0, 6] (ReLU6)",
                show(lo),
                show(hi)
            ));
        }
        let x = self.computed(ctx, 0)?;
        Ok(Val::Computed(self.push(
            ctx,
            LayerSpec::ReLU6,
            vec![x],
            vec![],
            None,
        )?))
    }

    fn pool(&mut self, ctx: &Ctx<'a>, max: bool) -> Result<Val> {
        if max {
            ctx.check_attrs(&[
                "auto_pad",
                "ceil_mode",
                "dilations",
                "kernel_shape",
                "pads",
                "storage_order",
                "strides",
            ])?;
        } else {
            ctx.check_attrs(&[
                "auto_pad",
                "ceil_mode",
                "count_include_pad",
                "dilations",
                "kernel_shape",
                "pads",
                "strides",
            ])?;
        }
        let x = self.computed(ctx, 0)?;
        let valid = ctx.check_auto_pad()?;
        for (attr, want) in [("ceil_mode", 0), ("storage_order", 0)] {
            let v = ctx.int(attr, 0)?;
            if v != want {
                return ctx.err(format!("{attr} {v} is not supported (only {want})"));
            }
        }
        if ctx.pair("dilations", Some((1, 1)))? != (1, 1) {
            return ctx.err("dilations other than 1 are not supported for pooling");
        }
        let kernel = ctx.pair("kernel_shape", None)?;
        let stride = ctx.pair("strides", Some((1, 1)))?;
        let padding = if valid { (0, 0) } else { ctx.pads()? };
        let layer = if max {
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            }
        } else {
            let cip = ctx.int("count_include_pad", 0)?;
            if cip != 0 && cip != 1 {
                return ctx.err(format!("count_include_pad {cip} must be 0 or 1"));
            }
            LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
                count_include_pad: cip == 1,
            }
        };
        Ok(Val::Computed(self.push(
            ctx,
            layer,
            vec![x],
            vec![],
            None,
        )?))
    }

    fn batch_norm(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        ctx.check_attrs(&["epsilon", "momentum", "spatial", "training_mode"])?;
        let x = self.computed(ctx, 0)?;
        if ctx.int("training_mode", 0)? != 0 {
            return ctx.err(
                "training_mode 1 is not supported (export the model in eval mode: the \
                 inference form uses the running statistics)",
            );
        }
        if ctx.int("spatial", 1)? != 1 {
            return ctx.err("spatial 0 (per-activation statistics) is not supported");
        }
        let eps = ctx.float("epsilon", 1e-5)?;
        let onnx_momentum = ctx.float("momentum", 0.9)?;
        let c = match self.shapes[x].as_slice() {
            [c, _, _] => *c,
            s => {
                return ctx.err(format!(
                    "input of rank {}: only [N, C, H, W] (BatchNorm2d) is supported",
                    s.len() + 1
                ))
            }
        };
        let mut tensors = Vec::with_capacity(5);
        let mut weight = None;
        for (i, local) in [
            (1, "weight"),
            (2, "bias"),
            (3, "running_mean"),
            (4, "running_var"),
        ] {
            let t = self.float_const(ctx, i, local)?;
            match t.floats() {
                Some(v) if v.len() == c && t.dims.len() == 1 => {
                    tensors.push((local, vec![c], v.to_vec()))
                }
                _ => {
                    return ctx.err(format!(
                        "{local} (input {i}) of shape {:?}, expected [{c}]",
                        t.dims
                    ))
                }
            }
            if i == 1 {
                weight = Some(t);
            }
        }
        tensors.push(("num_batches_tracked", vec![], vec![0.0]));
        let momentum = torch_momentum(onnx_momentum);
        let layer = LayerSpec::BatchNorm2d {
            num_features: c,
            eps,
            momentum: Some(momentum),
            affine: true,
            track_running_stats: true,
        };
        Ok(Val::Computed(self.push(
            ctx,
            layer,
            vec![x],
            tensors,
            weight.as_deref(),
        )?))
    }

    fn reshape(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        ctx.check_attrs(&["allowzero"])?;
        let x = self.computed(ctx, 0)?;
        let s = self.required_const(ctx, 1, "shape")?;
        if ctx.int("allowzero", 0)? != 0 {
            return ctx.err("allowzero 1 is not supported");
        }
        let Some(shape) = s.ints().filter(|_| s.dims.len() == 1) else {
            return ctx.err("shape is not a 1-D integer tensor");
        };
        let per_example: usize = self.shapes[x].iter().product();
        // [N, everything] is nn.Flatten.
        let flatten = shape.len() == 2
            && (shape[0] == 0 || shape[0] == -1)
            && (shape[1] == -1 || usize::try_from(shape[1]).ok() == Some(per_example))
            && !(shape[0] == -1 && shape[1] == -1);
        let layer = if flatten && !self.shapes[x].is_empty() {
            LayerSpec::Flatten {
                start_dim: 1,
                end_dim: -1,
            }
        } else {
            LayerSpec::Reshape {
                shape: shape.to_vec(),
            }
        };
        Ok(Val::Computed(self.push(
            ctx,
            layer,
            vec![x],
            vec![],
            None,
        )?))
    }

    fn dropout(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
        let p = if self.opset < 12 {
            ctx.check_attrs(&["ratio", "seed"])?;
            ctx.float("ratio", 0.5)?
        } else {
            ctx.check_attrs(&["seed"])?;
            let ratio = match self.constant(ctx, 1, "ratio")? {
                None => 0.5,
                Some(c) => match c.scalar_f32() {
                    Some(v) => v,
                    None => return ctx.err("ratio is not a FLOAT scalar"),
                },
            };
            if let Some(t) = self.constant(ctx, 2, "training_mode")? {
                if t.len() != 1 || t.ints().map(|v| v[0]) != Some(0) {
                    return ctx.err(
                        "training_mode is not a constant false (export the model in eval mode)",
                    );
                }
            }
            ratio
        };
        if !(0.0..1.0).contains(&p) {
            return ctx.err(format!("ratio {p} is outside [0, 1)"));
        }
        let x = self.computed(ctx, 0)?;
        Ok(Val::Computed(self.push(
            ctx,
            LayerSpec::Dropout { p },
            vec![x],
            vec![],
            None,
        )?))
    }

    fn constant_node(&mut self, ctx: &Ctx<'a>) -> Result<Const> {
        ctx.check_attrs(&[
            "value",
            "value_float",
            "value_floats",
            "value_int",
            "value_ints",
        ])?;
        let [a] = ctx.node.attribute.as_slice() else {
            return ctx.err("needs exactly one of value, value_float(s), value_int(s)");
        };
        let name = a.name.as_deref().unwrap_or("");
        let c = match name {
            "value" => match ctx
                .attr("value", AttributeType::Tensor)?
                .and_then(|a| a.t.as_ref())
            {
                Some(t) => decode_tensor(t, &format!("{} value", ctx.desc))?,
                None => return ctx.err("attribute `value` holds no tensor"),
            },
            "value_float" => Const {
                dims: vec![],
                data: ConstData::F32(vec![ctx.float(name, 0.0)?]),
                initializer: None,
            },
            "value_int" => Const {
                dims: vec![],
                data: ConstData::I64(vec![ctx.int(name, 0)?]),
                initializer: None,
            },
            "value_floats" => {
                let v = ctx
                    .attr(name, AttributeType::Floats)?
                    .map(|a| a.floats.clone())
                    .unwrap_or_default();
                Const {
                    dims: vec![v.len()],
                    data: ConstData::F32(v),
                    initializer: None,
                }
            }
            _ => {
                let v = ctx.ints(name)?.unwrap_or(&[]).to_vec();
                Const {
                    dims: vec![v.len()],
                    data: ConstData::I64(v),
                    initializer: None,
                }
            }
        };
        Ok(c)
    }
}

/// PyTorch's momentum for ONNX's: ONNX's running mean is `mean * m + batch_mean * (1 - m)`,
/// PyTorch's `mean * (1 - p) + batch_mean * p`. PyTorch exports `1 - p` rounded to f32
/// (0.1 becomes 0.899999976), so `p` is the shortest decimal whose `1 - p` rounds to the same
/// f32: 0.1, not 0.100000024.
fn torch_momentum(onnx: f32) -> f32 {
    let exact = 1.0 - f64::from(onnx);
    for digits in 1..=9 {
        let scale = 10f64.powi(digits);
        let p = (exact * scale).round() / scale;
        if (1.0 - p) as f32 == onnx {
            return p as f32;
        }
    }
    exact as f32
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// A bias of `n` values from a constant of shape `[n]`, `[1, n]` or a broadcast scalar.
fn bias_vector(ctx: &Ctx<'_>, c: &Const, n: usize) -> Result<Vec<f32>> {
    let Some(v) = c.floats() else {
        return ctx.err("bias is not a FLOAT tensor");
    };
    let leading_ones = c.dims.len() <= 1 || c.dims[..c.dims.len() - 1].iter().all(|&d| d == 1);
    match v.len() {
        len if len == n && leading_ones => Ok(v.to_vec()),
        1 if leading_ones => Ok(vec![v[0]; n]),
        _ => ctx.err(format!(
            "bias of shape {:?} does not broadcast as a [{n}] bias",
            c.dims
        )),
    }
}

/// A layer name from an ONNX node name. PyTorch's exporter names nodes by module scope,
/// `/features/features.0/Conv`: the segment before the op is the module's state-dict
/// prefix. Other names keep letters, digits, `_` and `.`.
fn name_from_onnx(onnx_name: &str, op_type: &str) -> String {
    let base = if onnx_name.starts_with('/') {
        let segs: Vec<&str> = onnx_name.split('/').filter(|s| !s.is_empty()).collect();
        match segs.len() {
            0 => "",
            1 => segs[0],
            n => segs[n - 2],
        }
    } else {
        onnx_name
    };
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_matches('.').to_string();
    if clean.is_empty() {
        op_type
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase()
            .chars()
            .take(32)
            .collect::<String>()
    } else {
        clean.chars().take(200).collect()
    }
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
