//! The operators without weights: Clip, MaxPool and AveragePool, Reshape, Dropout, and
//! Constant nodes.

use super::*;

impl<'a> Importer<'a> {
    pub(super) fn clip(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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

    pub(super) fn pool(&mut self, ctx: &Ctx<'a>, max: bool) -> Result<Val> {
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

    pub(super) fn reshape(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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

    pub(super) fn dropout(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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

    pub(super) fn constant_node(&mut self, ctx: &Ctx<'a>) -> Result<Const> {
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
