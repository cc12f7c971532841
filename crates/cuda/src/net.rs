//! A GPU executor for sequential CNNs: forward, backward, SGD/Adam, and whole-epoch
//! training with the data set resident on the GPU.
//!
//! The network is a list of [`Layer`]s, as PyTorch's `nn.Sequential`; its parameters are
//! named and ordered as that `nn.Sequential`'s `state_dict()` (`"0.weight"`, `"0.bias"`,
//! `"3.weight"`, ...), and travel as `(name, shape, values)` triples so other crates can
//! convert from their own tensor types without depending on this one.
//!
//! Loss is PyTorch's `F.cross_entropy` (mean over the batch) on the last layer's output.

use std::sync::Arc;

use crate::buffer::DeviceBuffer as CudaSlice;
use tinycnn_kernels::{
    AdamConfig, Conv2dParams, Conv2dShape, GemmShape, Pool2dParams, Pool2dShape, SgdConfig,
    Transpose,
};

use crate::device::CudaDevice;
use crate::error::{CudaError, Result};
use crate::launch;

/// Parameters as PyTorch's `state_dict()`: `(name, shape, values)` in module order.
pub type StateDict = Vec<(String, Vec<usize>, Vec<f32>)>;

/// One layer of a sequential CNN (the PyTorch module of the same name).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    /// `nn.Conv2d`; parameters `weight [out, in/groups, kh, kw]` and, with `bias`, `bias [out]`.
    Conv2d {
        params: Conv2dParams,
        bias: bool,
    },
    /// `nn.Linear`; parameters `weight [out, in]` and, with `bias`, `bias [out]`. Takes a
    /// flat input (put a [`Layer::Flatten`] before it).
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    MaxPool2d(Pool2dParams),
    AvgPool2d(Pool2dParams),
    ReLU,
    Sigmoid,
    Tanh,
    /// `nn.Flatten`: `[C, H, W]` per sample to `[C * H * W]`.
    Flatten,
}

/// d2l's LeNet (section 6.6) for 1 x 28 x 28 inputs and 10 classes: sigmoid activations,
/// average pooling.
pub fn lenet() -> Vec<Layer> {
    vec![
        Layer::Conv2d {
            params: Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)),
            bias: true,
        },
        Layer::Sigmoid,
        Layer::AvgPool2d(Pool2dParams::new(2)),
        Layer::Conv2d {
            params: Conv2dParams::new(6, 16, (5, 5)),
            bias: true,
        },
        Layer::Sigmoid,
        Layer::AvgPool2d(Pool2dParams::new(2)),
        Layer::Flatten,
        Layer::Linear {
            in_features: 16 * 5 * 5,
            out_features: 120,
            bias: true,
        },
        Layer::Sigmoid,
        Layer::Linear {
            in_features: 120,
            out_features: 84,
            bias: true,
        },
        Layer::Sigmoid,
        Layer::Linear {
            in_features: 84,
            out_features: 10,
            bias: true,
        },
    ]
}

/// The optimizer of [`CudaSequential::step`], with PyTorch's update rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    Sgd(SgdConfig),
    Adam(AdamConfig),
}

/// Mean loss and accuracy over the examples of an epoch (d2l's `train_ch6` metrics:
/// the loss is averaged over examples as the parameters change during the epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    pub loss: f32,
    pub accuracy: f32,
    pub examples: usize,
}

/// Figures of one mini-batch of [`CudaSequential::train_batches`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchStats {
    /// Mean cross-entropy of the batch, from the network before the batch's update.
    pub loss: f32,
    /// Rows whose arg-max was the label, from the same forward pass.
    pub correct: usize,
    /// Rows in the batch.
    pub examples: usize,
}

/// Optimizer buffers for checkpoints; see [`CudaSequential::export_optimizer_state`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    /// Adam steps taken (0 for SGD).
    pub adam_steps: u32,
    /// `(name, shape, values)` per buffer.
    pub buffers: StateDict,
}

/// A labelled image data set copied to the GPU once: images `[N, C, H, W]` f32, labels u32.
pub struct GpuDataset {
    images: CudaSlice<f32>,
    labels: CudaSlice<u32>,
    len: usize,
    sample_shape: [usize; 3],
}

impl GpuDataset {
    /// Uploads `images` (`len * C * H * W` values) and `labels` (each `< classes`).
    pub fn upload(
        dev: &CudaDevice,
        images: &[f32],
        labels: &[u32],
        sample_shape: [usize; 3],
        classes: usize,
    ) -> Result<Self> {
        let sample: usize = sample_shape.iter().product();
        let len = labels.len();
        if len == 0 || sample == 0 {
            return Err(CudaError::Invalid(format!(
                "data set: {len} labels, sample shape {sample_shape:?}: empty"
            )));
        }
        if images.len() != len * sample {
            return Err(CudaError::Invalid(format!(
                "data set: {} image values for {len} labels of shape {sample_shape:?} (expected {})",
                images.len(),
                len * sample
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(CudaError::Invalid(format!(
                "data set: label {l} of example {i} is not below {classes} classes"
            )));
        }
        launch::elementwise("gather_batch", images.len())?;
        let images = dev.upload(images)?;
        let labels = dev.upload_u32(labels)?;
        Ok(GpuDataset {
            images,
            labels,
            len,
            sample_shape,
        })
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn sample_shape(&self) -> [usize; 3] {
        self.sample_shape
    }
}

/// What each layer runs, with its per-sample problem shape (batch 1) and parameter slots.
enum Op {
    Conv {
        shape: Conv2dShape,
        weight: usize,
        bias: Option<usize>,
    },
    Linear {
        in_features: usize,
        out_features: usize,
        weight: usize,
        bias: Option<usize>,
    },
    MaxPool {
        shape: Pool2dShape,
        argmax: CudaSlice<u32>,
    },
    AvgPool {
        shape: Pool2dShape,
    },
    ReLU,
    Sigmoid,
    Tanh,
    Flatten,
}

struct Param {
    name: String,
    shape: Vec<usize>,
    fan_in: usize,
    fan_out: usize,
    is_bias: bool,
    value: CudaSlice<f32>,
    grad: CudaSlice<f32>,
    /// SGD momentum buffer, or Adam's first moment; allocated on first use.
    state_a: Option<CudaSlice<f32>>,
    /// Adam's second moment.
    state_b: Option<CudaSlice<f32>>,
}

/// A sequential CNN on the GPU, with buffers for batches of up to `max_batch` samples.
pub struct CudaSequential {
    dev: Arc<CudaDevice>,
    layers: Vec<Layer>,
    ops: Vec<Op>,
    /// Per-sample shape of `acts[i]` (`acts[0]` is the input).
    shapes: Vec<Vec<usize>>,
    max_batch: usize,
    acts: Vec<CudaSlice<f32>>,
    grads: Vec<CudaSlice<f32>>,
    params: Vec<Param>,
    labels: CudaSlice<u32>,
    conv_workspace: CudaSlice<f32>,
    partials: CudaSlice<f32>,
    scalars: CudaSlice<f32>,
    adam_steps: u32,
}

fn per_sample(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl CudaSequential {
    /// Plans `layers` for per-sample input `[C, H, W]` and batches of up to `max_batch`,
    /// and allocates every buffer (parameters start at zero: call [`Self::init_xavier`] or
    /// [`Self::import_state_dict`]).
    pub fn new(
        dev: &Arc<CudaDevice>,
        layers: Vec<Layer>,
        input: [usize; 3],
        max_batch: usize,
    ) -> Result<Self> {
        if max_batch == 0 || input.contains(&0) {
            return Err(CudaError::Invalid(format!(
                "network: input {input:?}, max batch {max_batch}: sizes must be at least 1"
            )));
        }
        if layers.is_empty() {
            return Err(CudaError::Invalid("network: no layers".into()));
        }
        let mut shapes = vec![input.to_vec()];
        let mut ops = Vec::with_capacity(layers.len());
        let mut params = Vec::new();
        let mut workspace = 0usize;
        let bad = |i: usize, what: String| {
            CudaError::Invalid(format!("layer {i} ({:?}): {what}", layers[i]))
        };
        for (i, layer) in layers.iter().enumerate() {
            let cur = shapes.last().expect("starts with the input").clone();
            let chw = |cur: &[usize]| -> Result<(usize, usize, usize)> {
                match *cur {
                    [c, h, w] => Ok((c, h, w)),
                    _ => Err(bad(i, format!("needs a [C, H, W] input, got {cur:?}"))),
                }
            };
            let mut add_param = |suffix: &str,
                                 shape: Vec<usize>,
                                 fan_in: usize,
                                 fan_out: usize,
                                 is_bias: bool|
             -> Result<usize> {
                let n = per_sample(&shape);
                params.push(Param {
                    name: format!("{i}.{suffix}"),
                    shape,
                    fan_in,
                    fan_out,
                    is_bias,
                    value: dev.alloc_zeros::<f32>(n)?,
                    grad: dev.alloc_zeros::<f32>(n)?,
                    state_a: None,
                    state_b: None,
                });
                Ok(params.len() - 1)
            };
            let (op, out) = match *layer {
                Layer::Conv2d { params: p, bias } => {
                    let (c, h, w) = chw(&cur)?;
                    if c != p.in_channels {
                        return Err(bad(
                            i,
                            format!("expects {} input channels, got {c}", p.in_channels),
                        ));
                    }
                    let shape = Conv2dShape::new(p, 1, h, w);
                    let full = shape.with_batch(max_batch);
                    launch::conv2d_forward(&full)?;
                    launch::conv2d_backward_input(&full)?;
                    workspace = workspace.max(launch::conv2d_backward_weight_workspace_len(&full)?);
                    let (oh, ow) = shape.out_hw().map_err(|e| bad(i, e.to_string()))?;
                    let receptive = p.kernel.0 * p.kernel.1;
                    let (fan_in, fan_out) =
                        (p.in_per_group() * receptive, p.out_channels * receptive);
                    let weight = add_param(
                        "weight",
                        vec![p.out_channels, p.in_per_group(), p.kernel.0, p.kernel.1],
                        fan_in,
                        fan_out,
                        false,
                    )?;
                    let bias = if bias {
                        Some(add_param(
                            "bias",
                            vec![p.out_channels],
                            fan_in,
                            fan_out,
                            true,
                        )?)
                    } else {
                        None
                    };
                    (
                        Op::Conv {
                            shape,
                            weight,
                            bias,
                        },
                        vec![p.out_channels, oh, ow],
                    )
                }
                Layer::Linear {
                    in_features,
                    out_features,
                    bias,
                } => {
                    if cur != [in_features] {
                        return Err(bad(
                            i,
                            format!(
                                "expects a flat input of {in_features}, got {cur:?} (add Flatten?)"
                            ),
                        ));
                    }
                    if in_features == 0 || out_features == 0 {
                        return Err(bad(i, "features must be at least 1".into()));
                    }
                    let weight = add_param(
                        "weight",
                        vec![out_features, in_features],
                        in_features,
                        out_features,
                        false,
                    )?;
                    let bias = if bias {
                        Some(add_param(
                            "bias",
                            vec![out_features],
                            in_features,
                            out_features,
                            true,
                        )?)
                    } else {
                        None
                    };
                    (
                        Op::Linear {
                            in_features,
                            out_features,
                            weight,
                            bias,
                        },
                        vec![out_features],
                    )
                }
                Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                    let (c, h, w) = chw(&cur)?;
                    let shape = Pool2dShape::new(p, 1, c, h, w);
                    let full = shape.with_batch(max_batch);
                    launch::pool_geom("pool2d", &full)?;
                    let (oh, ow) = shape.out_hw().map_err(|e| bad(i, e.to_string()))?;
                    let op = if matches!(layer, Layer::MaxPool2d(_)) {
                        Op::MaxPool {
                            shape,
                            argmax: dev.alloc_zeros::<u32>(max_batch * c * oh * ow)?,
                        }
                    } else {
                        Op::AvgPool { shape }
                    };
                    (op, vec![c, oh, ow])
                }
                Layer::ReLU => (Op::ReLU, cur.clone()),
                Layer::Sigmoid => (Op::Sigmoid, cur.clone()),
                Layer::Tanh => (Op::Tanh, cur.clone()),
                Layer::Flatten => (Op::Flatten, vec![per_sample(&cur)]),
            };
            ops.push(op);
            shapes.push(out);
        }
        let last = shapes.last().expect("at least one layer");
        if last.len() != 1 {
            return Err(CudaError::Invalid(format!(
                "network: the last layer must output class scores [classes], got {last:?}"
            )));
        }
        let mut acts = Vec::with_capacity(shapes.len());
        let mut grads = Vec::with_capacity(shapes.len());
        for s in &shapes {
            let n = max_batch
                .checked_mul(per_sample(s))
                .filter(|&n| n <= launch::MAX_ELEMENTS)
                .ok_or_else(|| {
                    CudaError::Invalid(format!(
                        "network: activation {s:?} x batch {max_batch} is too large"
                    ))
                })?;
            acts.push(dev.alloc_zeros::<f32>(n)?);
            grads.push(dev.alloc_zeros::<f32>(n)?);
        }
        Ok(CudaSequential {
            dev: Arc::clone(dev),
            layers,
            ops,
            shapes,
            max_batch,
            acts,
            grads,
            params,
            labels: dev.alloc_zeros::<u32>(max_batch)?,
            conv_workspace: dev.alloc_zeros::<f32>(workspace)?,
            partials: dev.alloc_zeros::<f32>(launch::BLOCK as usize)?,
            scalars: dev.alloc_zeros::<f32>(2)?,
            adam_steps: 0,
        })
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
    /// Number of classes (the last layer's width).
    pub fn classes(&self) -> usize {
        self.shapes.last().expect("at least one layer")[0]
    }
    fn input_len(&self) -> usize {
        per_sample(&self.shapes[0])
    }

    /// Parameter names and shapes, in state-dict order.
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect()
    }

    /// Sets weights with PyTorch's `xavier_uniform_` (d2l's `init_weights`) and biases with
    /// PyTorch's default `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, from a seeded generator.
    pub fn init_xavier(&mut self, seed: u64) -> Result<()> {
        let mut rng = SplitMix64(seed);
        for p in &mut self.params {
            let bound = if p.is_bias {
                1.0 / (p.fan_in as f64).sqrt()
            } else {
                (6.0 / (p.fan_in + p.fan_out) as f64).sqrt()
            };
            let values: Vec<f32> = (0..per_sample(&p.shape))
                .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
                .collect();
            self.dev.copy_to_device(&values, &mut p.value.view_mut())?;
        }
        self.reset_optimizer();
        Ok(())
    }

    /// Loads parameters by name (as `load_state_dict(strict=True)`): every parameter must
    /// be given once with its exact shape, and nothing else.
    pub fn import_state_dict(&mut self, state: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
        for (name, shape, values) in state {
            let p = self
                .params
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| {
                    CudaError::Invalid(format!("state dict: unexpected parameter `{name}`"))
                })?;
            if &p.shape != shape || values.len() != per_sample(shape) {
                return Err(CudaError::Invalid(format!(
                    "state dict: `{name}` has shape {shape:?} with {} values, the network needs {:?}",
                    values.len(),
                    p.shape
                )));
            }
        }
        for p in &mut self.params {
            let mut found = state.iter().filter(|(n, _, _)| n == &p.name);
            let (_, _, values) = found.next().ok_or_else(|| {
                CudaError::Invalid(format!("state dict: missing parameter `{}`", p.name))
            })?;
            if found.next().is_some() {
                return Err(CudaError::Invalid(format!(
                    "state dict: parameter `{}` given twice",
                    p.name
                )));
            }
            self.dev.copy_to_device(values, &mut p.value.view_mut())?;
        }
        self.reset_optimizer();
        Ok(())
    }

    /// All parameters as `(name, shape, values)`, in state-dict order.
    pub fn export_state_dict(&self) -> Result<StateDict> {
        self.params
            .iter()
            .map(|p| {
                Ok((
                    p.name.clone(),
                    p.shape.clone(),
                    self.dev.download_view(&p.value.view())?,
                ))
            })
            .collect()
    }

    /// Gradients of the last backward pass, `(name, shape, values)` in state-dict order.
    pub fn export_grads(&self) -> Result<StateDict> {
        self.params
            .iter()
            .map(|p| {
                Ok((
                    p.name.clone(),
                    p.shape.clone(),
                    self.dev.download_view(&p.grad.view())?,
                ))
            })
            .collect()
    }

    /// Forgets momentum / Adam state (done on init and import).
    pub fn reset_optimizer(&mut self) {
        for p in &mut self.params {
            p.state_a = None;
            p.state_b = None;
        }
        self.adam_steps = 0;
    }

    fn check_batch(&self, batch: usize) -> Result<()> {
        if batch == 0 || batch > self.max_batch {
            return Err(CudaError::Invalid(format!(
                "batch of {batch}: must be 1..={}",
                self.max_batch
            )));
        }
        Ok(())
    }

    /// Runs the layers on `acts[0][..batch]`; the class scores land in the last activation.
    fn forward_batch(&mut self, batch: usize) -> Result<()> {
        let Self {
            dev,
            ops,
            shapes,
            acts,
            params,
            ..
        } = self;
        for (i, op) in ops.iter_mut().enumerate() {
            let (before, after) = acts.split_at_mut(i + 1);
            let x = before[i].slice(..batch * per_sample(&shapes[i]));
            let mut y = after[0].slice_mut(..batch * per_sample(&shapes[i + 1]));
            match op {
                Op::Conv {
                    shape,
                    weight,
                    bias,
                } => {
                    let s = shape.with_batch(batch);
                    let w = params[*weight].value.view();
                    let b = bias.map(|b| &params[b].value);
                    dev.conv2d_forward(&s, &x, &w, b, &mut y)?;
                }
                Op::Linear {
                    in_features,
                    out_features,
                    weight,
                    bias,
                } => {
                    let g = GemmShape::new(batch, *out_features, *in_features)
                        .with_transpose(Transpose::No, Transpose::Yes);
                    dev.sgemm(&g, 1.0, &x, &params[*weight].value.view(), 0.0, &mut y)?;
                    if let Some(b) = bias {
                        dev.bias_add(batch, *out_features, 1, &params[*b].value.view(), &mut y)?;
                    }
                }
                Op::MaxPool { shape, argmax } => {
                    let s = shape.with_batch(batch);
                    let mut am = argmax.slice_mut(..y.len());
                    dev.max_pool2d_forward(&s, &x, &mut y, &mut am)?;
                }
                Op::AvgPool { shape } => {
                    dev.avg_pool2d_forward(&shape.with_batch(batch), &x, &mut y)?
                }
                Op::ReLU => dev.relu_forward(&x, &mut y)?,
                Op::Sigmoid => dev.sigmoid_forward(&x, &mut y)?,
                Op::Tanh => dev.tanh_forward(&x, &mut y)?,
                Op::Flatten => dev.copy_device(&x, &mut y)?,
            }
        }
        Ok(())
    }

    /// Back-propagates from `grads[last][..batch]` (already holding dLoss/dScores),
    /// filling every parameter's gradient.
    fn backward_batch(&mut self, batch: usize) -> Result<()> {
        let Self {
            dev,
            ops,
            shapes,
            acts,
            grads,
            params,
            conv_workspace,
            ..
        } = self;
        for i in (0..ops.len()).rev() {
            let x = acts[i].slice(..batch * per_sample(&shapes[i]));
            let y = acts[i + 1].slice(..batch * per_sample(&shapes[i + 1]));
            let (gbefore, gafter) = grads.split_at_mut(i + 1);
            let gy = gafter[0].slice(..y.len());
            let mut gx = gbefore[i].slice_mut(..x.len());
            let need_gx = i > 0;
            match &ops[i] {
                Op::Conv {
                    shape,
                    weight,
                    bias,
                } => {
                    let s = shape.with_batch(batch);
                    if need_gx {
                        dev.conv2d_backward_input(&s, &gy, &params[*weight].value.view(), &mut gx)?;
                    }
                    let mut ws = conv_workspace.view_mut();
                    dev.conv2d_backward_weight(
                        &s,
                        &x,
                        &gy,
                        &mut params[*weight].grad.view_mut(),
                        Some(&mut ws),
                    )?;
                    if let Some(b) = bias {
                        dev.conv2d_backward_bias(&s, &gy, &mut params[*b].grad.view_mut())?;
                    }
                }
                Op::Linear {
                    in_features,
                    out_features,
                    weight,
                    bias,
                } => {
                    if need_gx {
                        let g = GemmShape::new(batch, *in_features, *out_features);
                        dev.sgemm(&g, 1.0, &gy, &params[*weight].value.view(), 0.0, &mut gx)?;
                    }
                    let g = GemmShape::new(*out_features, *in_features, batch)
                        .with_transpose(Transpose::Yes, Transpose::No);
                    dev.sgemm(&g, 1.0, &gy, &x, 0.0, &mut params[*weight].grad.view_mut())?;
                    if let Some(b) = bias {
                        dev.bias_backward(
                            batch,
                            *out_features,
                            1,
                            &gy,
                            &mut params[*b].grad.view_mut(),
                        )?;
                    }
                }
                Op::MaxPool { shape, argmax } if need_gx => dev.max_pool2d_backward(
                    &shape.with_batch(batch),
                    &gy,
                    &argmax.slice(..y.len()),
                    &mut gx,
                )?,
                Op::AvgPool { shape } if need_gx => {
                    dev.avg_pool2d_backward(&shape.with_batch(batch), &gy, &mut gx)?
                }
                Op::ReLU if need_gx => dev.relu_backward(&x, &gy, &mut gx)?,
                Op::Sigmoid if need_gx => dev.sigmoid_backward(&y, &gy, &mut gx)?,
                Op::Tanh if need_gx => dev.tanh_backward(&y, &gy, &mut gx)?,
                Op::Flatten if need_gx => dev.copy_device(&gy, &mut gx)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Loss gradient into `grads[last]`, per-row losses and hits into the given views.
    fn loss_batch(
        &mut self,
        batch: usize,
        loss_rows: Option<&mut crate::CudaBufferViewMut<'_, f32>>,
        correct: Option<&mut crate::CudaBufferViewMut<'_, f32>>,
        with_grad: bool,
    ) -> Result<()> {
        let classes = self.classes();
        let last = self.acts.len() - 1;
        let logits = self.acts[last].slice(..batch * classes);
        let labels = self.labels.slice(..batch);
        if let Some(l) = loss_rows {
            self.dev
                .softmax_xent_forward(batch, classes, &logits, &labels, l)?;
        }
        if let Some(c) = correct {
            self.dev.correct_rows(batch, classes, &logits, &labels, c)?;
        }
        if with_grad {
            let mut g = self.grads[last].slice_mut(..batch * classes);
            self.dev
                .softmax_xent_backward(batch, classes, &logits, &labels, 1.0, &mut g)?;
        }
        Ok(())
    }

    /// One optimizer step on every parameter, from the gradients of the last backward pass.
    pub fn step(&mut self, opt: &Optimizer) -> Result<()> {
        if let Optimizer::Adam(_) = opt {
            self.adam_steps += 1;
        }
        let Self {
            dev,
            params,
            adam_steps,
            ..
        } = self;
        for p in params.iter_mut() {
            let n = p.value.len();
            match opt {
                Optimizer::Sgd(cfg) => {
                    if cfg.momentum != 0.0 {
                        let first = p.state_a.is_none();
                        if first {
                            p.state_a = Some(dev.alloc_zeros::<f32>(n)?);
                        }
                        let buf = p.state_a.as_mut().expect("allocated above");
                        dev.sgd_step(
                            cfg,
                            &mut p.value.view_mut(),
                            &p.grad.view(),
                            Some(buf),
                            first,
                        )?;
                    } else {
                        dev.sgd_step(cfg, &mut p.value.view_mut(), &p.grad.view(), None, true)?;
                    }
                }
                Optimizer::Adam(cfg) => {
                    if p.state_a.is_none() || p.state_b.is_none() {
                        p.state_a = Some(dev.alloc_zeros::<f32>(n)?);
                        p.state_b = Some(dev.alloc_zeros::<f32>(n)?);
                    }
                    let m = p.state_a.as_mut().expect("allocated above");
                    let v = p.state_b.as_mut().expect("allocated above");
                    dev.adam_step(
                        cfg,
                        *adam_steps,
                        &mut p.value.view_mut(),
                        &p.grad.view(),
                        &mut m.view_mut(),
                        &mut v.view_mut(),
                    )?;
                }
            }
        }
        Ok(())
    }

    fn load_host_batch(&mut self, x: &[f32], labels: Option<&[u32]>) -> Result<usize> {
        let per = self.input_len();
        if x.is_empty() || x.len() % per != 0 {
            return Err(CudaError::Invalid(format!(
                "input of {} values is not a whole number of {:?} samples",
                x.len(),
                self.shapes[0]
            )));
        }
        let batch = x.len() / per;
        self.check_batch(batch)?;
        self.dev
            .copy_to_device(x, &mut self.acts[0].slice_mut(..x.len()))?;
        if let Some(l) = labels {
            if l.len() != batch {
                return Err(CudaError::Invalid(format!(
                    "{} labels for a batch of {batch}",
                    l.len()
                )));
            }
            let classes = self.classes();
            if let Some((i, &bad)) = l.iter().enumerate().find(|(_, &v)| v as usize >= classes) {
                return Err(CudaError::Invalid(format!(
                    "label {bad} of example {i} is not below {classes} classes"
                )));
            }
            self.dev
                .copy_to_device(l, &mut self.labels.slice_mut(..batch))?;
        }
        Ok(batch)
    }

    /// Class scores `[batch, classes]` of host images `[batch, C, H, W]`.
    pub fn forward(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let batch = self.load_host_batch(x, None)?;
        self.forward_batch(batch)?;
        let last = self.acts.len() - 1;
        self.dev
            .download_view(&self.acts[last].slice(..batch * self.classes()))
    }

    /// Forward and backward on a host batch: returns the mean cross-entropy and leaves the
    /// gradients in place (read them with [`Self::export_grads`]).
    pub fn forward_backward(&mut self, x: &[f32], labels: &[u32]) -> Result<f32> {
        Ok(self.forward_backward_counted(x, labels)?.0)
    }

    /// [`Self::forward_backward`] that also counts the rows whose arg-max is their label
    /// (from the same forward pass): `(mean loss, correct rows)`.
    pub fn forward_backward_counted(&mut self, x: &[f32], labels: &[u32]) -> Result<(f32, usize)> {
        let batch = self.load_host_batch(x, Some(labels))?;
        self.forward_batch(batch)?;
        let mut loss = self.dev.alloc_zeros::<f32>(batch)?;
        let mut correct = self.dev.alloc_zeros::<f32>(batch)?;
        self.loss_batch(
            batch,
            Some(&mut loss.view_mut()),
            Some(&mut correct.view_mut()),
            true,
        )?;
        self.backward_batch(batch)?;
        let mean = self.dev.sum(&loss.view(), 1.0 / batch as f32)?;
        let hits = self.dev.sum(&correct.view(), 1.0)?;
        Ok((mean, hits.round() as usize))
    }

    /// One training step on a host batch: forward, backward, optimizer step; returns the
    /// batch's mean loss (before the step).
    pub fn train_step(&mut self, x: &[f32], labels: &[u32], opt: &Optimizer) -> Result<f32> {
        Ok(self.train_step_counted(x, labels, opt)?.0)
    }

    /// [`Self::train_step`] that also returns how many rows the pre-step network
    /// classified correctly: `(mean loss, correct rows)`.
    pub fn train_step_counted(
        &mut self,
        x: &[f32],
        labels: &[u32],
        opt: &Optimizer,
    ) -> Result<(f32, usize)> {
        let out = self.forward_backward_counted(x, labels)?;
        self.step(opt)?;
        Ok(out)
    }

    /// The optimizer's buffers, named as in PyTorch's optimizer state:
    /// `"<param>.momentum_buffer"` (SGD with momentum) or `"<param>.exp_avg"` and
    /// `"<param>.exp_avg_sq"` (Adam), plus Adam's step count. Empty before the first step.
    pub fn export_optimizer_state(&self) -> Result<OptimizerState> {
        let mut buffers = Vec::new();
        for p in &self.params {
            match (&p.state_a, &p.state_b) {
                (Some(m), Some(v)) => {
                    buffers.push((
                        format!("{}.exp_avg", p.name),
                        p.shape.clone(),
                        self.dev.download_view(&m.view())?,
                    ));
                    buffers.push((
                        format!("{}.exp_avg_sq", p.name),
                        p.shape.clone(),
                        self.dev.download_view(&v.view())?,
                    ));
                }
                (Some(b), None) => buffers.push((
                    format!("{}.momentum_buffer", p.name),
                    p.shape.clone(),
                    self.dev.download_view(&b.view())?,
                )),
                _ => {}
            }
        }
        Ok(OptimizerState {
            adam_steps: self.adam_steps,
            buffers,
        })
    }

    /// Restores what [`Self::export_optimizer_state`] returned (to resume training).
    /// Parameters without buffers start fresh, as in PyTorch.
    pub fn import_optimizer_state(&mut self, state: &OptimizerState) -> Result<()> {
        for (name, shape, values) in &state.buffers {
            let known = self.params.iter().any(|p| {
                [".momentum_buffer", ".exp_avg", ".exp_avg_sq"]
                    .iter()
                    .any(|suffix| {
                        *name == format!("{}{suffix}", p.name)
                            && *shape == p.shape
                            && values.len() == p.value.len()
                    })
            });
            if !known {
                return Err(CudaError::Invalid(format!(
                    "optimizer state: `{name}` {shape:?} matches no parameter buffer of this network"
                )));
            }
        }
        let find = |name: String| {
            state
                .buffers
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, _, v)| v)
        };
        let dev = Arc::clone(&self.dev);
        for p in &mut self.params {
            let upload = |v: &Vec<f32>| -> Result<CudaSlice<f32>> { dev.upload(v) };
            let (momentum, m, v) = (
                find(format!("{}.momentum_buffer", p.name)),
                find(format!("{}.exp_avg", p.name)),
                find(format!("{}.exp_avg_sq", p.name)),
            );
            (p.state_a, p.state_b) = match (momentum, m, v) {
                (None, Some(m), Some(v)) => (Some(upload(m)?), Some(upload(v)?)),
                (Some(b), None, None) => (Some(upload(b)?), None),
                (None, None, None) => (None, None),
                _ => {
                    return Err(CudaError::Invalid(format!(
                        "optimizer state of `{}`: needs either momentum_buffer or both exp_avg and exp_avg_sq",
                        p.name
                    )))
                }
            };
        }
        self.adam_steps = state.adam_steps;
        Ok(())
    }

    fn check_data(&self, data: &GpuDataset) -> Result<()> {
        if data.sample_shape[..] != self.shapes[0][..] {
            return Err(CudaError::Invalid(format!(
                "data set samples are {:?}, the network takes {:?}",
                data.sample_shape, self.shapes[0]
            )));
        }
        Ok(())
    }

    /// Runs mini-batches `order[i * batch_size ..]` over `data` (sample indices, each below
    /// `data.len()`, any count from 1), streaming per-row loss and hits into the returned
    /// device buffers (`order.len()` entries each) without reading anything back.
    fn run_batches(
        &mut self,
        data: &GpuDataset,
        order: &[u32],
        batch_size: usize,
        opt: Option<&Optimizer>,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>)> {
        self.check_data(data)?;
        self.check_batch(batch_size)?;
        let n = data.len;
        let rows = order.len();
        if rows == 0 {
            return Err(CudaError::Invalid("sample order is empty".into()));
        }
        if let Some((i, &bad)) = order.iter().enumerate().find(|(_, &p)| p as usize >= n) {
            return Err(CudaError::Invalid(format!(
                "permutation entry {i} is {bad}, not below {n} examples"
            )));
        }
        let dev = Arc::clone(&self.dev);
        let perm_dev = dev.upload_u32(order)?;
        let mut loss_rows = dev.alloc_zeros::<f32>(rows)?;
        let mut correct = dev.alloc_zeros::<f32>(rows)?;
        let sample = self.input_len();
        let mut offset = 0;
        while offset < rows {
            let batch = batch_size.min(rows - offset);
            {
                let mut xb = self.acts[0].slice_mut(..batch * sample);
                let mut yb = self.labels.slice_mut(..batch);
                dev.gather_batch(
                    batch,
                    sample,
                    &perm_dev.view(),
                    offset,
                    &data.images.view(),
                    &data.labels.view(),
                    &mut xb,
                    &mut yb,
                )?;
            }
            self.forward_batch(batch)?;
            let mut l = loss_rows.slice_mut(offset..offset + batch);
            let mut c = correct.slice_mut(offset..offset + batch);
            self.loss_batch(batch, Some(&mut l), Some(&mut c), opt.is_some())?;
            if let Some(opt) = opt {
                self.backward_batch(batch)?;
                self.step(opt)?;
            }
            offset += batch;
        }
        Ok((loss_rows, correct))
    }

    /// [`Self::run_batches`] over a whole permutation, reading back only the two epoch sums.
    fn run_epoch(
        &mut self,
        data: &GpuDataset,
        perm: &[u32],
        batch_size: usize,
        opt: Option<&Optimizer>,
    ) -> Result<EpochStats> {
        let n = data.len;
        if perm.len() != n {
            return Err(CudaError::Invalid(format!(
                "permutation has {} entries for {n} examples",
                perm.len()
            )));
        }
        let (loss_rows, correct) = self.run_batches(data, perm, batch_size, opt)?;
        let dev = Arc::clone(&self.dev);
        let inv = 1.0 / n as f32;
        {
            dev.reduce_sum_into(
                &loss_rows.view(),
                inv,
                &mut self.partials.view_mut(),
                &mut self.scalars.slice_mut(0..1),
            )?;
            dev.reduce_sum_into(
                &correct.view(),
                inv,
                &mut self.partials.view_mut(),
                &mut self.scalars.slice_mut(1..2),
            )?;
        }
        let sums = dev.download_view(&self.scalars.view())?;
        Ok(EpochStats {
            loss: sums[0],
            accuracy: sums[1],
            examples: n,
        })
    }

    /// Trains on part of an epoch: mini-batches `order[i * batch_size ..]` of `data` (the
    /// last one may be smaller), one optimizer step per batch, and returns each batch's
    /// figures. `order` holds sample indices below `data.len()` and need not cover the data
    /// set, so a caller can run an epoch's permutation in slices (cut at multiples of
    /// `batch_size` to get the same batches as one [`Self::train_epoch`]) and report
    /// progress between them. Reads back two floats per sample, once at the end.
    pub fn train_batches(
        &mut self,
        data: &GpuDataset,
        order: &[u32],
        batch_size: usize,
        opt: &Optimizer,
    ) -> Result<Vec<BatchStats>> {
        let (loss_rows, correct) = self.run_batches(data, order, batch_size, Some(opt))?;
        let losses = self.dev.download_view(&loss_rows.view())?;
        let hits = self.dev.download_view(&correct.view())?;
        Ok(losses
            .chunks(batch_size)
            .zip(hits.chunks(batch_size))
            .map(|(l, c)| BatchStats {
                loss: (l.iter().map(|&v| v as f64).sum::<f64>() / l.len() as f64) as f32,
                correct: c.iter().filter(|&&v| v > 0.5).count(),
                examples: l.len(),
            })
            .collect())
    }

    /// One training epoch over `data` in the order `perm` (a permutation of `0..data.len()`;
    /// entries are bounds-checked), mini-batches of `batch_size` (the last one may be
    /// smaller), one optimizer step per batch.
    pub fn train_epoch(
        &mut self,
        data: &GpuDataset,
        perm: &[u32],
        batch_size: usize,
        opt: &Optimizer,
    ) -> Result<EpochStats> {
        self.run_epoch(data, perm, batch_size, Some(opt))
    }

    /// Mean loss and accuracy over `data`, in order, without training.
    pub fn evaluate(&mut self, data: &GpuDataset, batch_size: usize) -> Result<EpochStats> {
        let identity: Vec<u32> = (0..data.len as u32).collect();
        self.run_epoch(data, &identity, batch_size, None)
    }
}

/// Small seeded generator for initialization (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
