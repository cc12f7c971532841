//! The operators that become layers with weights: Conv, Gemm, MatMul (with a following Add as
//! its bias) and BatchNormalization.

use super::*;

impl<'a> Importer<'a> {
    pub(super) fn conv(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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

    pub(super) fn linear(
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

    pub(super) fn gemm(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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

    pub(super) fn close_bias(&mut self) {
        if let Some(p) = self.pending.last_mut() {
            p.open_bias = false;
        }
    }

    pub(super) fn matmul(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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

    pub(super) fn add(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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
    pub(super) fn fold_bias(
        &mut self,
        ctx: &Ctx<'a>,
        v: usize,
        c: &Const,
        which: usize,
    ) -> Result<Val> {
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

    pub(super) fn batch_norm(&mut self, ctx: &Ctx<'a>) -> Result<Val> {
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
