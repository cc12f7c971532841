//! Batch normalization, dropout, ReLU6, adaptive average pooling, residual blocks and the
//! depthwise-separable block of MobileNet-style networks.

use super::layers::Conv2d;
use super::{Module, ReLU, Sequential};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicBool, Ordering};
use tinycnn_kernels::Conv2dParams;

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// A float as Python's `repr` prints it in layer reprs (`1e-05`, `0.001`, `0.1`, `0.0`):
/// the shortest digits that read back as the same `f32`, scientific below 1e-4 with a
/// two-digit exponent.
fn py_float(v: f32) -> String {
    if v != 0.0 && v.is_finite() && (v.abs() < 1e-4 || v.abs() >= 1e16) {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("+", exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    } else if v.is_finite() && v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

// ----- BatchNorm2d --------------------------------------------------------------------------

/// Batch normalization over the channels of `[N, C, H, W]` (`nn.BatchNorm2d`).
///
/// In training mode (the default; see [`Module::train`] / [`Module::eval`]) each channel is
/// normalized with the batch's mean and biased variance, and the running statistics are
/// updated with the batch mean and the *unbiased* variance:
/// `running = (1 - momentum) * running + momentum * batch` (with `momentum: None`, the
/// cumulative average `momentum = 1 / num_batches_tracked`). In evaluation mode the running
/// statistics normalize. Then `weight` and `bias` scale and shift each channel.
///
/// State-dict entries, in PyTorch's order: `weight`, `bias` (parameters, when affine), then
/// the buffers `running_mean`, `running_var`, `num_batches_tracked` (when tracking).
/// PyTorch stores `num_batches_tracked` as an int64 scalar; here it is an `f32` tensor of
/// shape `[]`, exact up to 2^24 batches.
///
/// ```
/// use tinycnn::nn::{BatchNorm2d, Module};
/// use tinycnn::Tensor;
/// let bn = BatchNorm2d::new(2);
/// // The repr of torch 2.15 (which also prints the `bias` flag).
/// assert_eq!(bn.repr(), "BatchNorm2d(2, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)");
/// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 5.0], &[2, 2, 1, 1]).unwrap();
/// let y = bn.forward(&x).unwrap();
/// // Channel 0 holds 1 and 3 (mean 2, biased variance 1): normalized to -1 and 1.
/// assert!((y.get(&[0, 0, 0, 0]).unwrap() + 1.0).abs() < 1e-4);
/// // running_mean = 0.9 * 0 + 0.1 * 2
/// assert!((bn.running_mean.as_ref().unwrap().get(&[0]).unwrap() - 0.2).abs() < 1e-6);
/// ```
pub struct BatchNorm2d {
    /// The per-channel scale `[C]` (ones at first); `None` without `affine`.
    pub weight: Option<Tensor>,
    /// The per-channel shift `[C]` (zeros at first); `None` without `affine`.
    pub bias: Option<Tensor>,
    /// Buffer `[C]` (zeros at first); `None` without `track_running_stats`.
    pub running_mean: Option<Tensor>,
    /// Buffer `[C]` (ones at first); `None` without `track_running_stats`.
    pub running_var: Option<Tensor>,
    /// Buffer, shape `[]`: training steps seen (an `f32`; int64 in PyTorch).
    pub num_batches_tracked: Option<Tensor>,
    /// `C`.
    pub num_features: usize,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Weight of the newest batch in the running statistics; `None` = cumulative average.
    pub momentum: Option<f32>,
    training: AtomicBool,
}

impl BatchNorm2d {
    /// PyTorch's defaults: `eps = 1e-5`, `momentum = Some(0.1)`, affine, tracking running
    /// statistics, training mode.
    pub fn new(num_features: usize) -> BatchNorm2d {
        let param = |v: f32| {
            Tensor::full(&[num_features], v)
                .requires_grad_(true)
                .expect("a fresh tensor is a leaf")
        };
        BatchNorm2d {
            weight: Some(param(1.0)),
            bias: Some(param(0.0)),
            running_mean: Some(Tensor::zeros(&[num_features])),
            running_var: Some(Tensor::ones(&[num_features])),
            num_batches_tracked: Some(Tensor::scalar(0.0)),
            num_features,
            eps: 1e-5,
            momentum: Some(0.1),
            training: AtomicBool::new(true),
        }
    }
    /// Builder: `eps`.
    pub fn eps(mut self, eps: f32) -> BatchNorm2d {
        self.eps = eps;
        self
    }
    /// Builder: `momentum` (`None`: cumulative moving average).
    pub fn momentum(mut self, momentum: Option<f32>) -> BatchNorm2d {
        self.momentum = momentum;
        self
    }
    /// Builder: `affine = false` drops `weight` and `bias`; `true` restores fresh ones.
    pub fn affine(mut self, affine: bool) -> BatchNorm2d {
        let fresh = BatchNorm2d::new(self.num_features);
        if affine != self.weight.is_some() {
            (self.weight, self.bias) = if affine {
                (fresh.weight, fresh.bias)
            } else {
                (None, None)
            };
        }
        self
    }
    /// Builder: `bias = false` drops `bias` (keeping `weight` when affine), as PyTorch's
    /// `BatchNorm2d(..., bias=False)`; `true` restores a fresh one when affine.
    pub fn bias(mut self, bias: bool) -> BatchNorm2d {
        if !bias {
            self.bias = None;
        } else if self.bias.is_none() && self.weight.is_some() {
            self.bias = BatchNorm2d::new(self.num_features).bias;
        }
        self
    }
    /// Builder: `track_running_stats = false` drops the buffers (batch statistics are then
    /// used in evaluation mode too); `true` restores fresh ones.
    pub fn track_running_stats(mut self, track: bool) -> BatchNorm2d {
        let fresh = BatchNorm2d::new(self.num_features);
        if track != self.running_mean.is_some() {
            (
                self.running_mean,
                self.running_var,
                self.num_batches_tracked,
            ) = if track {
                (
                    fresh.running_mean,
                    fresh.running_var,
                    fresh.num_batches_tracked,
                )
            } else {
                (None, None, None)
            };
        }
        self
    }
    /// Whether the module is in training mode.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 {
            return Err(Error::invalid(
                "BatchNorm2d",
                format!("expected 4D input [N, C, H, W], got shape {:?}", x.shape()),
            ));
        }
        if x.shape()[1] != self.num_features {
            return Err(Error::invalid(
                "BatchNorm2d",
                format!(
                    "input has {} channels, the layer {}",
                    x.shape()[1],
                    self.num_features
                ),
            ));
        }
        let training = self.is_training();
        let mut factor = self.momentum.unwrap_or(0.0);
        if training && self.momentum.is_none() {
            if let Some(n) = &self.num_batches_tracked {
                // The cumulative average weighs this batch by 1 / (batches so far + 1).
                factor = 1.0 / (n.item()? + 1.0);
            }
        }
        let y = x.batch_norm(
            self.running_mean.as_ref(),
            self.running_var.as_ref(),
            self.weight.as_ref(),
            self.bias.as_ref(),
            training,
            factor,
            self.eps,
        )?;
        if training {
            if let Some(n) = &self.num_batches_tracked {
                // Counted after the op, so a rejected input leaves the module unchanged.
                crate::no_grad(|| n.copy_(&n.add_scalar(1.0)))?;
            }
        }
        Ok(y)
    }
    fn own_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if let Some(w) = &self.weight {
            v.push(("weight".to_string(), w.clone()));
        }
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn own_buffers(&self) -> Vec<(String, Tensor)> {
        [
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
            ("num_batches_tracked", &self.num_batches_tracked),
        ]
        .into_iter()
        .filter_map(|(k, t)| t.as_ref().map(|t| (k.to_string(), t.clone())))
        .collect()
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
    fn type_name(&self) -> String {
        "BatchNorm2d".into()
    }
    fn extra_repr(&self) -> String {
        let momentum = self.momentum.map_or("None".to_string(), py_float);
        format!(
            "{}, eps={}, momentum={momentum}, affine={}, bias={}, track_running_stats={}",
            self.num_features,
            py_float(self.eps),
            py_bool(self.weight.is_some()),
            py_bool(self.bias.is_some()),
            py_bool(self.running_mean.is_some())
        )
    }
}

// ----- Dropout ------------------------------------------------------------------------------

/// Zeroes elements with probability `p` in training mode, scaling the rest by
/// `1 / (1 - p)`; the identity in evaluation mode (`nn.Dropout(p)`). The mask comes from
/// the calling thread's default generator ([`crate::manual_seed`]).
///
/// ```
/// use tinycnn::nn::{Dropout, Module};
/// use tinycnn::Tensor;
/// let d = Dropout::new(0.5).unwrap();
/// let y = d.forward(&Tensor::ones(&[1000])).unwrap().to_vec();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// d.eval();
/// assert_eq!(d.forward(&Tensor::ones(&[3])).unwrap().to_vec(), vec![1.0; 3]);
/// assert!(Dropout::new(1.5).is_err());
/// ```
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f32,
    training: AtomicBool,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1]`, in training mode.
    pub fn new(p: f32) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "Dropout",
                format!("dropout probability has to be between 0 and 1, but got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            training: AtomicBool::new(true),
        })
    }
    /// Whether the module is in training mode.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.dropout(self.p, self.is_training())
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
    fn type_name(&self) -> String {
        "Dropout".into()
    }
    fn extra_repr(&self) -> String {
        format!("p={}, inplace=False", py_float(self.p))
    }
}

// ----- ReLU6 --------------------------------------------------------------------------------

/// `min(max(x, 0), 6)` (`nn.ReLU6`); NaN propagates.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReLU6;

impl Module for ReLU6 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu6()
    }
    fn type_name(&self) -> String {
        "ReLU6".into()
    }
}

// ----- AdaptiveAvgPool2d --------------------------------------------------------------------

/// Average pooling to a fixed output size (`nn.AdaptiveAvgPool2d((oh, ow))`); see
/// [`Tensor::adaptive_avg_pool2d`] for the windows. `(1, 1)` is global average pooling.
///
/// ```
/// use tinycnn::nn::{AdaptiveAvgPool2d, Module};
/// use tinycnn::Tensor;
/// let gap = AdaptiveAvgPool2d::new((1, 1));
/// let y = gap.forward(&Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], &[1, 1, 2, 2]).unwrap()).unwrap();
/// assert_eq!(y.shape(), &[1, 1, 1, 1]);
/// assert_eq!(y.to_vec(), vec![3.0]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveAvgPool2d {
    /// `(oh, ow)`.
    pub output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    /// Pooling to `output_size = (oh, ow)`.
    pub fn new(output_size: impl super::Pair) -> AdaptiveAvgPool2d {
        AdaptiveAvgPool2d {
            output_size: output_size.pair(),
        }
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.output_size)
    }
    fn type_name(&self) -> String {
        "AdaptiveAvgPool2d".into()
    }
    fn extra_repr(&self) -> String {
        let (h, w) = self.output_size;
        format!("output_size=({h}, {w})")
    }
}

// ----- Residual -----------------------------------------------------------------------------

/// `body(x) + shortcut(x)`, the shortcut being the identity when `None` (a ResNet block).
/// State-dict names: `body.*`, then `shortcut.*`.
///
/// ```
/// use tinycnn::nn::{Linear, Module, Residual};
/// use tinycnn::Tensor;
/// let block = Residual::new(Linear::new(3, 3));
/// let x = Tensor::ones(&[2, 3]);
/// let body = block.body.forward(&x).unwrap();
/// assert_eq!(block.forward(&x).unwrap().to_vec(), body.add_scalar(1.0).to_vec());
/// ```
pub struct Residual {
    /// The main path.
    pub body: Box<dyn Module>,
    /// The projection on the skip path (`None`: identity).
    pub shortcut: Option<Box<dyn Module>>,
}

impl Residual {
    /// `body(x) + x`.
    pub fn new(body: impl Module) -> Residual {
        Residual {
            body: Box::new(body),
            shortcut: None,
        }
    }
    /// Builder: `body(x) + shortcut(x)`.
    pub fn with_shortcut(mut self, shortcut: impl Module) -> Residual {
        self.shortcut = Some(Box::new(shortcut));
        self
    }
}

impl Module for Residual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let main = self.body.forward(x)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        if main.shape() != skip.shape() {
            return Err(Error::invalid(
                "Residual",
                format!(
                    "body gives shape {:?} but the shortcut {:?}; they must match",
                    main.shape(),
                    skip.shape()
                ),
            ));
        }
        main.add(&skip)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut v: Vec<(String, &dyn Module)> = vec![("body".into(), self.body.as_ref())];
        if let Some(s) = &self.shortcut {
            v.push(("shortcut".into(), s.as_ref()));
        }
        v
    }
    fn type_name(&self) -> String {
        "Residual".into()
    }
}

// ----- depthwise-separable block ------------------------------------------------------------

/// The depthwise-separable block of MobileNet and of the DS-CNN keyword-spotting network:
/// `[Conv2d 3x3 groups=in_ch padding 1 stride (no bias), BatchNorm2d(in_ch), ReLU,
/// Conv2d 1x1 (no bias), BatchNorm2d(out_ch), ReLU]`.
///
/// ReLU, not ReLU6, after both batch norms: the DS-CNN of "Hello Edge" (Zhang et al., 2017)
/// uses ReLU, and after deployment each conv + batch norm + ReLU folds into one int8 conv
/// whose clamp at zero is free; the convolutions have no bias because the batch norm's
/// shift replaces it.
///
/// ```
/// use tinycnn::nn::{depthwise_separable, Module};
/// use tinycnn::Tensor;
/// let block = depthwise_separable(8, 16, 2).unwrap();
/// assert_eq!(block.forward(&Tensor::rand(&[1, 8, 10, 10])).unwrap().shape(), &[1, 16, 5, 5]);
/// assert_eq!(block.num_parameters(), 8 * 9 + 2 * 8 + 8 * 16 + 2 * 16);
/// ```
pub fn depthwise_separable(in_ch: usize, out_ch: usize, stride: usize) -> Result<Sequential> {
    let depthwise = Conv2d::with(
        Conv2dParams::new(in_ch, in_ch, (3, 3))
            .with_groups(in_ch)
            .with_padding((1, 1))
            .with_stride((stride, stride)),
        false,
    )?;
    let pointwise = Conv2d::with(Conv2dParams::new(in_ch, out_ch, (1, 1)), false)?;
    Ok(Sequential::new()
        .append(depthwise)
        .append(BatchNorm2d::new(in_ch))
        .append(ReLU)
        .append(pointwise)
        .append(BatchNorm2d::new(out_ch))
        .append(ReLU))
}
