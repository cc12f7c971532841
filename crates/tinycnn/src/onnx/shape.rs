//! Per-example shape inference over [`LayerSpec`]s (shapes without the batch dimension), as
//! PyTorch computes them. The reader uses it to check what it builds (channel counts, the
//! rank a Flatten or Softmax axis refers to); the writer to size the graph's output and to
//! turn an adaptive pooling into a fixed one.

use crate::error::{Error, Result};
use crate::nn::arch::LayerSpec;
use crate::nn::reshape_dims;
use crate::tensor::normalize_dim;
use tinycnn_kernels::out_size;

/// Most elements one example's value may have (a bound that keeps every size product in
/// range, whatever padding or reshape a file asks for).
pub(crate) const MAX_VALUE_ELEMENTS: usize = 1 << 40;

/// The per-example output shape of `layer` applied to values of per-example shapes `inputs`
/// (one entry per input, each within [`MAX_VALUE_ELEMENTS`]); an error message (without
/// the layer's name) when they do not fit.
pub(crate) fn output_shape(
    layer: &LayerSpec,
    inputs: &[&[usize]],
) -> std::result::Result<Vec<usize>, String> {
    let out = output_shape_unchecked(layer, inputs)?;
    match out.iter().try_fold(1usize, |p, &d| p.checked_mul(d)) {
        Some(n) if n <= MAX_VALUE_ELEMENTS && !out.contains(&0) => Ok(out),
        _ => Err(format!(
            "output [N, {}] is empty or has more than 2^40 elements per example",
            dims(&out)
        )),
    }
}

fn output_shape_unchecked(
    layer: &LayerSpec,
    inputs: &[&[usize]],
) -> std::result::Result<Vec<usize>, String> {
    let x = inputs.first().copied().unwrap_or(&[]);
    let chw = |what: &str| -> std::result::Result<(usize, usize, usize), String> {
        match x {
            [c, h, w] => Ok((*c, *h, *w)),
            _ => Err(format!(
                "{what} takes [N, C, H, W] input, got [N, {}]",
                dims(x)
            )),
        }
    };
    let pool = |kernel: (usize, usize),
                stride: (usize, usize),
                padding: (usize, usize),
                dilation: (usize, usize)|
     -> std::result::Result<(usize, usize), String> {
        let (_, h, w) = chw("pooling / convolution")?;
        match (
            out_size("height", h, kernel.0, stride.0, padding.0, dilation.0),
            out_size("width", w, kernel.1, stride.1, padding.1, dilation.1),
        ) {
            (Ok(oh), Ok(ow)) => Ok((oh, ow)),
            _ => Err(format!(
                "window {kernel:?} (stride {stride:?}, padding {padding:?}, dilation \
                 {dilation:?}) does not fit input {h}x{w}"
            )),
        }
    };
    match layer {
        LayerSpec::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            ..
        } => {
            let (c, _, _) = chw("Conv2d")?;
            if c != *in_channels {
                return Err(format!(
                    "input has {c} channels, the layer takes {in_channels}"
                ));
            }
            if *groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                return Err(format!(
                    "{groups} groups do not divide {in_channels} input and {out_channels} \
                     output channels"
                ));
            }
            let (oh, ow) = pool(*kernel, *stride, *padding, *dilation)?;
            Ok(vec![*out_channels, oh, ow])
        }
        LayerSpec::Linear {
            in_features,
            out_features,
            ..
        } => match x.split_last() {
            Some((&last, rest)) if last == *in_features => {
                let mut s = rest.to_vec();
                s.push(*out_features);
                Ok(s)
            }
            _ => Err(format!(
                "input [N, {}] does not end in {in_features} features",
                dims(x)
            )),
        },
        LayerSpec::BatchNorm2d { num_features, .. } => {
            let (c, _, _) = chw("BatchNorm2d")?;
            if c != *num_features {
                return Err(format!(
                    "input has {c} channels, the layer has {num_features}"
                ));
            }
            Ok(x.to_vec())
        }
        LayerSpec::MaxPool2d {
            kernel,
            stride,
            padding,
        }
        | LayerSpec::AvgPool2d {
            kernel,
            stride,
            padding,
            ..
        } => {
            if padding.0.saturating_mul(2) > kernel.0 || padding.1.saturating_mul(2) > kernel.1 {
                return Err(format!(
                    "padding {padding:?} is more than half the kernel {kernel:?}"
                ));
            }
            let (c, _, _) = chw("pooling")?;
            let (oh, ow) = pool(*kernel, *stride, *padding, (1, 1))?;
            Ok(vec![c, oh, ow])
        }
        LayerSpec::AdaptiveAvgPool2d { output } => {
            let (c, _, _) = chw("AdaptiveAvgPool2d")?;
            if output.0 == 0 || output.1 == 0 {
                return Err(format!("output size {output:?} is empty"));
            }
            Ok(vec![c, output.0, output.1])
        }
        LayerSpec::Flatten { start_dim, end_dim } => {
            let rank = x.len() + 1;
            let (Some(s), Some(e)) = (
                normalize_dim(*start_dim, rank),
                normalize_dim(*end_dim, rank),
            ) else {
                return Err(format!(
                    "dimensions {start_dim}..{end_dim} out of range for [N, {}]",
                    dims(x)
                ));
            };
            if s == 0 || s > e {
                return Err(format!(
                    "flattening dimensions {start_dim}..{end_dim} of [N, {}] would merge the \
                     batch dimension or is empty",
                    dims(x)
                ));
            }
            let mut out = x[..s - 1].to_vec();
            out.push(x[s - 1..e].iter().product());
            out.extend_from_slice(&x[e..]);
            Ok(out)
        }
        LayerSpec::Reshape { shape } => reshape(x, shape),
        LayerSpec::Softmax { dim } => match normalize_dim(*dim, x.len() + 1) {
            Some(_) => Ok(x.to_vec()),
            None => Err(format!("dimension {dim} out of range for [N, {}]", dims(x))),
        },
        LayerSpec::Add => {
            let y = inputs.get(1).copied().unwrap_or(&[]);
            if x != y {
                return Err(format!(
                    "operands [N, {}] and [N, {}] differ in shape",
                    dims(x),
                    dims(y)
                ));
            }
            Ok(x.to_vec())
        }
        LayerSpec::ReLU
        | LayerSpec::ReLU6
        | LayerSpec::Sigmoid
        | LayerSpec::Tanh
        | LayerSpec::Dropout { .. }
        | LayerSpec::Identity => Ok(x.to_vec()),
    }
}

/// `torch.reshape` (ONNX `Reshape` with `allowzero=0`) of per-example shape `x` to `shape`,
/// which includes the batch dimension: its first entry must keep the batch (`0`, or `-1`
/// with every other entry fixed and the per-example size unchanged).
fn reshape(x: &[usize], shape: &[i64]) -> std::result::Result<Vec<usize>, String> {
    // After the batch entry the target is the per-example shape: `0` copies the same
    // dimension of `x`, and a `-1` there is inferred only when the batch entry is `0`.
    let per_example = match shape.split_first() {
        Some((0, rest)) => reshape_dims(rest, x).ok(),
        Some((-1, rest)) if !rest.contains(&-1) => reshape_dims(rest, x).ok(),
        _ => None,
    };
    per_example.ok_or_else(|| {
        format!(
            "cannot reshape [N, {}] to {shape:?} keeping the batch dimension",
            dims(x)
        )
    })
}

fn dims(x: &[usize]) -> String {
    x.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per-example shapes of every value of `arch` (index 0: the input), checking that each
/// layer fits its inputs; the error names the layer.
pub(crate) fn infer_shapes(
    arch: &crate::nn::arch::Architecture,
    op: &'static str,
) -> Result<Vec<Vec<usize>>> {
    let numel = arch.input.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
    if numel.is_none_or(|n| n > MAX_VALUE_ELEMENTS) {
        return Err(Error::invalid(
            op,
            format!("input shape {:?} has more than 2^40 elements", arch.input),
        ));
    }
    let mut shapes = vec![arch.input.clone()];
    for n in &arch.nodes {
        let ins: Vec<&[usize]> = n.inputs.iter().map(|&v| shapes[v].as_slice()).collect();
        let s = output_shape(&n.layer, &ins).map_err(|m| {
            Error::invalid(
                op,
                format!("layer `{}` ({}): {m}", n.name, n.layer.type_name()),
            )
        })?;
        shapes.push(s);
    }
    Ok(shapes)
}
