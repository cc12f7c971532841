//! A lean forward-only path for trained networks: no autograd graph, no tensor per layer,
//! buffers reused from call to call, the activation applied right after the convolution,
//! linear layer or pooling that feeds it (while its output is still in cache), and no
//! thread dispatch for batches too small to split.
//!
//! [`Inference`] compiles a [`Sequential`] of the standard layers (nested `Sequential`s
//! included) into a list of kernel calls. It is the evaluation-mode forward: a `BatchNorm2d`
//! uses its running statistics (folded into the convolution before it, as
//! `torch.ao.quantization.fuse_modules` does) and `Dropout` is the identity. Each worker runs the whole network on a few images
//! at a time (a sub-batch sized so activations stay in L2) with its own ping-pong buffers.
//! The parameters are read (as snapshots) at every call, so an `Inference` built before or
//! during training always uses the current weights.
//!
//! ```
//! use tinycnn::nn::{Conv2d, Flatten, Linear, Module, ReLU, Sequential};
//! use tinycnn::{no_grad, Inference, Tensor};
//! let net = Sequential::new()
//!     .append(Conv2d::new(1, 4, 3).unwrap())
//!     .append(ReLU)
//!     .append(Flatten::new())
//!     .append(Linear::new(4 * 6 * 6, 10));
//! let mut fast = Inference::new(&net, &[1, 8, 8]).unwrap();
//! let x = Tensor::rand(&[5, 1, 8, 8]);
//! let y = fast.run(&x).unwrap();
//! let want = no_grad(|| net.forward(&x)).unwrap();
//! assert!(y.allclose(&want, 1e-5, 1e-6));
//! ```

use crate::error::{Error, Result};
use crate::nn::{AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity};
use crate::nn::{Linear, MaxPool2d, Module, ReLU, ReLU6, Sequential, Sigmoid, Tanh};
use crate::tensor::Snapshot;
use crate::{parallel, Tensor};
use rayon::prelude::*;
use tinycnn_kernels as k;
use tinycnn_kernels::{Conv2dParams, Conv2dShape, GemmShape, Pool2dParams, Pool2dShape, Transpose};

/// Elementwise activations that can follow a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    None,
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
}

impl Act {
    fn of(m: &dyn Module) -> Option<Act> {
        if m.downcast_ref::<ReLU>().is_some() {
            Some(Act::Relu)
        } else if m.downcast_ref::<ReLU6>().is_some() {
            Some(Act::Relu6)
        } else if m.downcast_ref::<Sigmoid>().is_some() {
            Some(Act::Sigmoid)
        } else if m.downcast_ref::<Tanh>().is_some() {
            Some(Act::Tanh)
        } else {
            None
        }
    }
    /// In place, through the kernel crate's (vectorised, NaN-propagating) activations.
    fn apply(self, y: &mut [f32], tmp: &mut Vec<f32>) -> k::Result<()> {
        if self == Act::None || y.is_empty() {
            return Ok(());
        }
        // The kernels read x and write y; a copy of one sub-batch's output is cheap next to
        // the layer that produced it, and keeps the kernels' no-aliasing signatures.
        tmp.clear();
        tmp.extend_from_slice(y);
        match self {
            Act::Relu => k::relu_forward(tmp, y),
            Act::Relu6 => k::relu6_forward(tmp, y),
            Act::Sigmoid => k::sigmoid_forward(tmp, y),
            Act::Tanh => k::tanh_forward(tmp, y),
            Act::None => Ok(()),
        }
    }
}

/// A `BatchNorm2d` in evaluation mode: `y = x * alpha + beta` per channel, with
/// `alpha = weight / sqrt(running_var + eps)` and `beta = bias - running_mean * alpha`.
struct Norm {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    mean: Tensor,
    var: Tensor,
    eps: f32,
}

impl Norm {
    fn of(bn: &BatchNorm2d) -> std::result::Result<Norm, String> {
        if bn.is_training() {
            return Err(
                "BatchNorm2d is in training mode (batch statistics); call eval() first".into(),
            );
        }
        let (Some(mean), Some(var)) = (&bn.running_mean, &bn.running_var) else {
            return Err("BatchNorm2d without running statistics uses batch statistics".into());
        };
        Ok(Norm {
            weight: bn.weight.clone(),
            bias: bn.bias.clone(),
            mean: mean.clone(),
            var: var.clone(),
            eps: bn.eps,
        })
    }

    /// `(alpha, beta)` per channel, from the tensors' current values (the kernel's own
    /// [`k::BatchNormStats::alpha_beta`], so the lean path normalizes as the forward does).
    fn alpha_beta(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mean, var) = (host(&self.mean)?, host(&self.var)?);
        let weight = self.weight.as_ref().map(host).transpose()?;
        let bias = self.bias.as_ref().map(host).transpose()?;
        let stats = k::BatchNormStats {
            mean: &mean,
            var: &var,
            eps: self.eps,
        };
        Ok((0..mean.len())
            .map(|c| stats.alpha_beta(c, weight.as_deref(), bias.as_deref()))
            .unzip())
    }
}

/// One kernel call of the plan; shapes are per image.
enum Step {
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        params: Conv2dParams,
        in_hw: (usize, usize),
        /// A batch norm right after the convolution, folded into its weight and bias.
        norm: Option<Norm>,
        act: Act,
    },
    /// A batch norm with no convolution before it to fold into (in place).
    Norm { norm: Norm, spatial: usize },
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
        /// Rows per image (1 after Flatten; more when applied to the last dim of a 3-D input).
        rows: usize,
        in_f: usize,
        out_f: usize,
        act: Act,
    },
    Pool {
        max: bool,
        params: Pool2dParams,
        channels: usize,
        in_hw: (usize, usize),
        act: Act,
    },
    /// An activation with no layer before it to fuse into.
    Act(Act),
}

/// A step's weight and bias, read once per call: the tensors' own values, or values computed
/// from them (a convolution with its batch norm folded in, a batch norm's alpha and beta).
type Weights = (Option<Param>, Option<Param>);

enum Param {
    Shared(Snapshot),
    Owned(Vec<f32>),
}

impl std::ops::Deref for Param {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Param::Shared(s) => s,
            Param::Owned(v) => v,
        }
    }
}

/// The values of a parameter that lives on the host.
fn host(t: &Tensor) -> Result<Snapshot> {
    match t.device() {
        crate::Device::Cpu => Ok(t.data()),
        device => Err(Error::Unsupported {
            op: "Inference::run (parameters)",
            device,
        }),
    }
}

/// Per-worker buffers, grown on demand and kept between calls.
#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    workspace: Vec<f32>,
    argmax: Vec<u32>,
    tmp: Vec<f32>,
}

/// A compiled forward pass of a [`Sequential`] for inputs of one per-image shape.
pub struct Inference {
    steps: Vec<Step>,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    /// Largest activation of one image (elements), input included.
    max_act: usize,
    /// Multiply-adds for one image: decides whether a batch is worth splitting.
    macs_per_image: usize,
    scratch: Vec<Scratch>,
}

/// Floats of activation per sub-batch buffer: two of them plus the conv workspace stay
/// within a 1-2 MiB L2.
const SUB_BATCH_FLOATS: usize = 96 * 1024;
/// Below this many multiply-adds per worker a thread hand-off costs more than it saves.
const MIN_MACS_PER_THREAD: usize = 2_000_000;

impl Inference {
    /// Compiles `net` for images of shape `input` (without the batch dimension, e.g.
    /// `[1, 28, 28]`). Supported layers: `Conv2d`, `Linear`, `MaxPool2d`, `AvgPool2d`,
    /// `AdaptiveAvgPool2d` (when the output size divides the input's), `BatchNorm2d` and
    /// `Dropout` in evaluation mode, `ReLU`, `ReLU6`, `Sigmoid`, `Tanh`, `Flatten` (not of
    /// the batch dimension), `Identity` and nested `Sequential`s; anything else, or a
    /// `BatchNorm2d`/`Dropout` in training mode, is an error naming the layer, and the caller
    /// can fall back to `no_grad(|| net.forward(x))`. Build it after `net.eval()`: it always
    /// computes the evaluation-mode forward.
    pub fn new(net: &Sequential, input: &[usize]) -> Result<Inference> {
        let mut layers = Vec::new();
        collect(net, "", &mut layers);
        let mut shape = input.to_vec();
        let mut steps: Vec<Step> = Vec::new();
        let mut max_act = numel(input)?;
        let mut macs = 0usize;
        for (name, m) in layers {
            let bad =
                |msg: String| Error::invalid("Inference::new", format!("layer {name}: {msg}"));
            if let Some(act) = Act::of(m) {
                match steps.last_mut() {
                    Some(
                        Step::Conv { act: a, .. }
                        | Step::Linear { act: a, .. }
                        | Step::Pool { act: a, .. },
                    ) if *a == Act::None => *a = act,
                    _ => steps.push(Step::Act(act)),
                }
            } else if let Some(c) = m.downcast_ref::<Conv2d>() {
                let [ch, h, w] = shape[..] else {
                    return Err(bad(format!("Conv2d needs [C, H, W] images, got {shape:?}")));
                };
                if ch != c.params.in_channels {
                    return Err(bad(format!(
                        "Conv2d expects {} input channels, images have {ch}",
                        c.params.in_channels
                    )));
                }
                let s = Conv2dShape::new(c.params, 1, h, w);
                s.validate().map_err(|e| bad(e.to_string()))?;
                let (oh, ow) = s.out_hw().map_err(|e| bad(e.to_string()))?;
                shape = vec![c.params.out_channels, oh, ow];
                let per_out = c.params.in_channels / c.params.groups.max(1)
                    * c.params.kernel.0
                    * c.params.kernel.1;
                macs = macs.saturating_add(numel(&shape)?.saturating_mul(per_out));
                steps.push(Step::Conv {
                    weight: c.weight.clone(),
                    bias: c.bias.clone(),
                    params: c.params,
                    in_hw: (h, w),
                    norm: None,
                    act: Act::None,
                });
            } else if let Some(l) = m.downcast_ref::<Linear>() {
                let Some((&last, lead)) = shape.split_last() else {
                    return Err(bad("Linear needs at least 1-D inputs".into()));
                };
                if last != l.in_features {
                    return Err(bad(format!(
                        "Linear expects {} features, input has shape {shape:?}",
                        l.in_features
                    )));
                }
                let rows = numel(lead)?;
                macs = macs.saturating_add(rows * l.in_features * l.out_features);
                steps.push(Step::Linear {
                    weight: l.weight.clone(),
                    bias: l.bias.clone(),
                    rows,
                    in_f: l.in_features,
                    out_f: l.out_features,
                    act: Act::None,
                });
                *shape.last_mut().expect("checked non-empty") = l.out_features;
            } else if let Some((max, params)) = pool_of(m) {
                let [ch, h, w] = shape[..] else {
                    return Err(bad(format!(
                        "pooling needs [C, H, W] images, got {shape:?}"
                    )));
                };
                let s = Pool2dShape::new(params, 1, ch, h, w);
                let (oh, ow) = s.out_hw().map_err(|e| bad(e.to_string()))?;
                // ReLU then max-pool equals max-pool then ReLU (both monotone, NaN kept):
                // moving the ReLU after the pool applies it to a quarter of the elements.
                let mut act = Act::None;
                if max {
                    if let Some(Step::Conv { act: a, .. }) = steps.last_mut() {
                        if *a == Act::Relu {
                            *a = Act::None;
                            act = Act::Relu;
                        }
                    }
                }
                steps.push(Step::Pool {
                    max,
                    params,
                    channels: ch,
                    in_hw: (h, w),
                    act,
                });
                shape = vec![ch, oh, ow];
            } else if let Some(bn) = m.downcast_ref::<BatchNorm2d>() {
                let norm = Norm::of(bn).map_err(bad)?;
                let [ch, h, w] = shape[..] else {
                    return Err(bad(format!(
                        "BatchNorm2d needs [C, H, W] images, got {shape:?}"
                    )));
                };
                if ch != bn.num_features {
                    return Err(bad(format!(
                        "BatchNorm2d expects {} channels, images have {ch}",
                        bn.num_features
                    )));
                }
                match steps.last_mut() {
                    Some(Step::Conv {
                        norm: slot @ None,
                        act: Act::None,
                        ..
                    }) => *slot = Some(norm),
                    _ => steps.push(Step::Norm {
                        norm,
                        spatial: h * w,
                    }),
                }
            } else if let Some(d) = m.downcast_ref::<Dropout>() {
                if d.is_training() {
                    return Err(bad("Dropout is in training mode; call eval() first".into()));
                }
            } else if let Some(a) = m.downcast_ref::<AdaptiveAvgPool2d>() {
                let [ch, h, w] = shape[..] else {
                    return Err(bad(format!(
                        "pooling needs [C, H, W] images, got {shape:?}"
                    )));
                };
                let (oh, ow) = a.output_size;
                if oh == 0 || ow == 0 || h % oh != 0 || w % ow != 0 {
                    return Err(bad(format!(
                        "AdaptiveAvgPool2d to {oh}x{ow} of {h}x{w} has unequal windows"
                    )));
                }
                // Equal windows: an average pooling with kernel = stride = input / output.
                let window = (h / oh, w / ow);
                steps.push(Step::Pool {
                    max: false,
                    params: Pool2dParams::with_kernel(window),
                    channels: ch,
                    in_hw: (h, w),
                    act: Act::None,
                });
                shape = vec![ch, oh, ow];
            } else if let Some(f) = m.downcast_ref::<Flatten>() {
                shape = flattened(&shape, f.start_dim, f.end_dim).map_err(bad)?;
            } else if m.downcast_ref::<Identity>().is_some() {
            } else {
                return Err(bad(format!(
                    "{} is not supported by the inference path",
                    m.type_name()
                )));
            }
            max_act = max_act.max(numel(&shape)?);
        }
        Ok(Inference {
            steps,
            in_shape: input.to_vec(),
            out_shape: shape,
            max_act,
            macs_per_image: macs,
            scratch: Vec::new(),
        })
    }

    /// The output shape of one image (`[10]` for LeNet).
    pub fn output_shape(&self) -> &[usize] {
        &self.out_shape
    }

    /// The forward pass of `x` (`[batch, ..input]`): the same values as
    /// `no_grad(|| net.forward(x))`, without recording a graph.
    pub fn run(&mut self, x: &Tensor) -> Result<Tensor> {
        let xs = x.shape();
        if xs.len() != self.in_shape.len() + 1 || xs[1..] != self.in_shape[..] {
            return Err(Error::bad_shape(
                "Inference::run",
                xs,
                format!("expected [batch, {:?}]", self.in_shape),
            ));
        }
        let batch = xs[0];
        if x.device() != crate::Device::Cpu {
            // A CPU path: a device tensor would be read back and the result land on the host.
            return Err(Error::Unsupported {
                op: "Inference::run",
                device: x.device(),
            });
        }
        let x = x.data();
        let mut out = vec![0.0; numel(&[batch, numel(&self.out_shape)?])?];
        self.run_slice(batch, &x, &mut out)?;
        let mut shape = vec![batch];
        shape.extend_from_slice(&self.out_shape);
        Tensor::from_vec(out, &shape)
    }

    /// [`Inference::run`] on raw row-major slices: `x` holds `batch` images, `out` receives
    /// `batch` outputs.
    pub fn run_slice(&mut self, batch: usize, x: &[f32], out: &mut [f32]) -> Result<()> {
        let (in_len, out_len) = (numel(&self.in_shape)?, numel(&self.out_shape)?);
        let fits = |len: usize, per: usize| batch.checked_mul(per) == Some(len);
        if !fits(x.len(), in_len) || !fits(out.len(), out_len) {
            return Err(Error::invalid(
                "Inference::run",
                format!(
                    "{batch} images of {in_len} values (output {out_len} each) do not match \
                     {} input and {} output elements",
                    x.len(),
                    out.len()
                ),
            ));
        }
        if batch == 0 {
            return Ok(());
        }
        let weights: Vec<Weights> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Conv {
                    weight,
                    bias,
                    norm: Some(norm),
                    ..
                } => {
                    let (alpha, beta) = norm.alpha_beta()?;
                    let (w, b) = (host(weight)?, bias.as_ref().map(host).transpose()?);
                    let per_out = w.len() / alpha.len().max(1);
                    let folded_w = w
                        .chunks(per_out.max(1))
                        .zip(&alpha)
                        .flat_map(|(row, &a)| row.iter().map(move |v| v * a))
                        .collect();
                    let folded_b = (0..alpha.len())
                        .map(|c| b.as_ref().map_or(0.0, |b| b[c]) * alpha[c] + beta[c])
                        .collect();
                    Ok((Some(Param::Owned(folded_w)), Some(Param::Owned(folded_b))))
                }
                Step::Conv { weight, bias, .. } | Step::Linear { weight, bias, .. } => Ok((
                    Some(Param::Shared(host(weight)?)),
                    bias.as_ref().map(host).transpose()?.map(Param::Shared),
                )),
                Step::Norm { norm, .. } => {
                    let (alpha, beta) = norm.alpha_beta()?;
                    Ok((Some(Param::Owned(alpha)), Some(Param::Owned(beta))))
                }
                _ => Ok((None, None)),
            })
            .collect::<Result<_>>()?;
        let sub = (SUB_BATCH_FLOATS / self.max_act.max(1)).clamp(1, 64);
        let by_work = (batch.saturating_mul(self.macs_per_image) / MIN_MACS_PER_THREAD).max(1);
        let workers = parallel::num_threads().min(by_work).min(batch).max(1);
        self.scratch.resize_with(workers, Scratch::default);
        let per = batch.div_ceil(workers);
        let steps = &self.steps;
        let run_one = |(scratch, (xc, yc)): (&mut Scratch, (&[f32], &mut [f32]))| {
            let n = xc.len() / in_len;
            for i in (0..n).step_by(sub) {
                let m = sub.min(n - i);
                forward(
                    steps,
                    &weights,
                    scratch,
                    m,
                    &xc[i * in_len..(i + m) * in_len],
                    &mut yc[i * out_len..(i + m) * out_len],
                )?;
            }
            Ok::<(), Error>(())
        };
        let chunks = self
            .scratch
            .iter_mut()
            .zip(x.chunks(per * in_len).zip(out.chunks_mut(per * out_len)));
        if workers == 1 {
            chunks.into_iter().try_for_each(run_one)
        } else {
            let jobs: Vec<_> = chunks.collect();
            parallel::install(|| jobs.into_par_iter().map(run_one).collect())
        }
    }
}

/// Runs every step on `n` images, ping-ponging between the scratch buffers.
fn forward(
    steps: &[Step],
    weights: &[Weights],
    s: &mut Scratch,
    n: usize,
    x: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let Scratch {
        a,
        b,
        workspace,
        argmax,
        tmp,
    } = s;
    grow(a, x.len()).copy_from_slice(x);
    let (mut cur, mut next) = (a, b);
    let mut cur_len = x.len();
    for (step, (w, bias)) in steps.iter().zip(weights) {
        let w = w.as_deref().unwrap_or_default();
        let input = &cur[..cur_len];
        let len = match step {
            Step::Conv {
                params, in_hw, act, ..
            } => {
                let shape = Conv2dShape::new(*params, n, in_hw.0, in_hw.1);
                let len = shape
                    .output_len()
                    .map_err(Error::kernel("Inference (conv2d)"))?;
                let y = grow(next, len);
                let ws = grow(workspace, k::conv2d_workspace_len(&shape));
                k::conv2d_forward(&shape, input, w, bias.as_deref(), y, ws)
                    .map_err(Error::kernel("Inference (conv2d)"))?;
                act.apply(y, tmp)
                    .map_err(Error::kernel("Inference (activation)"))?;
                len
            }
            Step::Linear {
                rows,
                in_f,
                out_f,
                act,
                ..
            } => {
                let m = n * rows;
                let y = grow(next, m * out_f);
                let g =
                    GemmShape::new(m, *out_f, *in_f).with_transpose(Transpose::No, Transpose::Yes);
                let beta = match bias.as_deref() {
                    Some(bv) => {
                        for row in y.chunks_exact_mut(*out_f) {
                            row.copy_from_slice(bv);
                        }
                        1.0
                    }
                    None => 0.0,
                };
                let ws = grow(workspace, k::sgemm_workspace_len(m, *out_f, *in_f));
                k::sgemm(&g, 1.0, input, w, beta, y, ws)
                    .map_err(Error::kernel("Inference (linear)"))?;
                act.apply(y, tmp)
                    .map_err(Error::kernel("Inference (activation)"))?;
                m * out_f
            }
            Step::Pool {
                max,
                params,
                channels,
                in_hw,
                act,
            } => {
                let shape = Pool2dShape::new(*params, n, *channels, in_hw.0, in_hw.1);
                let (oh, ow) = shape.out_hw().map_err(Error::kernel("Inference (pool)"))?;
                let len = n * channels * oh * ow;
                let y = grow(next, len);
                if *max {
                    if argmax.len() < len {
                        argmax.resize(len, 0);
                    }
                    k::max_pool2d_forward(&shape, input, y, &mut argmax[..len])
                } else {
                    k::avg_pool2d_forward(&shape, input, y)
                }
                .map_err(Error::kernel("Inference (pool)"))?;
                act.apply(y, tmp)
                    .map_err(Error::kernel("Inference (activation)"))?;
                len
            }
            Step::Norm { spatial, .. } => {
                // `w` is alpha, `bias` beta, one per channel.
                let beta = bias.as_deref().unwrap_or_default();
                for image in cur[..cur_len].chunks_exact_mut((w.len() * spatial).max(1)) {
                    for ((plane, &a), &b) in image.chunks_exact_mut(*spatial).zip(w).zip(beta) {
                        plane.iter_mut().for_each(|v| *v = *v * a + b);
                    }
                }
                continue;
            }
            Step::Act(act) => {
                act.apply(&mut cur[..cur_len], tmp)
                    .map_err(Error::kernel("Inference (activation)"))?;
                continue;
            }
        };
        std::mem::swap(&mut cur, &mut next);
        cur_len = len;
    }
    out.copy_from_slice(&cur[..out.len()]);
    Ok(())
}

/// The first `len` elements of `v`, grown (never shrunk) as needed: buffers keep their
/// size between calls, so steady-state calls neither allocate nor zero anything.
fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .ok_or_else(|| Error::bad_shape("Inference", shape, "element count overflows"))
}

/// The layers in call order, nested `Sequential`s opened, with dotted names for messages.
fn collect<'a>(net: &'a Sequential, prefix: &str, out: &mut Vec<(String, &'a dyn Module)>) {
    for (name, m) in net.iter() {
        let full = format!("{prefix}{name}");
        match m.downcast_ref::<Sequential>() {
            Some(inner) => collect(inner, &format!("{full}."), out),
            None => out.push((format!("{full} ({})", m.type_name()), m)),
        }
    }
}

fn pool_of(m: &dyn Module) -> Option<(bool, Pool2dParams)> {
    if let Some(p) = m.downcast_ref::<MaxPool2d>() {
        Some((true, p.params))
    } else {
        m.downcast_ref::<AvgPool2d>().map(|p| (false, p.params))
    }
}

/// The per-image shape after `Flatten(start, end)` of a batched tensor (dims count the
/// batch as 0, as in PyTorch).
fn flattened(shape: &[usize], start: isize, end: isize) -> std::result::Result<Vec<usize>, String> {
    let rank = shape.len() as isize + 1;
    let fix = |d: isize| if d < 0 { d + rank } else { d };
    let (s, e) = (fix(start), fix(end));
    if s < 1 || e < s || e >= rank {
        return Err(format!(
            "Flatten({start}, {end}) of [batch, {shape:?}] must keep the batch dimension"
        ));
    }
    let (s, e) = (s as usize - 1, e as usize - 1);
    let mut out = shape[..s].to_vec();
    out.push(shape[s..=e].iter().product());
    out.extend_from_slice(&shape[e + 1..]);
    Ok(out)
}
