//! The importer's bookkeeping: name lookup, inputs, adding layers, binding outputs, and the
//! dispatch of each node to its operator.

use super::*;

impl<'a> Importer<'a> {
    pub(super) fn lookup(&mut self, ctx: &Ctx<'a>, name: &'a str) -> Result<Val> {
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

    pub(super) fn input(&mut self, ctx: &Ctx<'a>, i: usize) -> Result<Option<Val>> {
        match ctx.input_name(i) {
            Some(n) => self.lookup(ctx, n).map(Some),
            None => Ok(None),
        }
    }

    /// Input `i`, which must be computed at run time (not a constant).
    pub(super) fn computed(&mut self, ctx: &Ctx<'a>, i: usize) -> Result<usize> {
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
    pub(super) fn constant(
        &mut self,
        ctx: &Ctx<'a>,
        i: usize,
        what: &str,
    ) -> Result<Option<Rc<Const>>> {
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

    pub(super) fn required_const(
        &mut self,
        ctx: &Ctx<'a>,
        i: usize,
        what: &str,
    ) -> Result<Rc<Const>> {
        match self.constant(ctx, i, what)? {
            Some(c) => Ok(c),
            None => ctx.err(format!("missing {what} (input {i})")),
        }
    }

    pub(super) fn float_const(&mut self, ctx: &Ctx<'a>, i: usize, what: &str) -> Result<Rc<Const>> {
        let c = self.required_const(ctx, i, what)?;
        if c.floats().is_none() {
            return ctx.err(format!("{what} is not a FLOAT tensor"));
        }
        Ok(c)
    }

    /// Adds a layer reading `inputs`; returns its value index.
    pub(super) fn push(
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
    pub(super) fn bind(&mut self, ctx: &Ctx<'a>, val: Val) -> Result<()> {
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

    pub(super) fn node(&mut self, ctx: &Ctx<'a>) -> Result<()> {
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
