//! The built-in layers.

use super::init::default_layer_init;
use super::Module;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use tinycnn_kernels::{Conv2dParams, Pool2dParams};

/// A size given as one number for both axes or as `(height, width)`.
pub trait Pair {
    /// `(height, width)`.
    fn pair(self) -> (usize, usize);
}
impl Pair for usize {
    fn pair(self) -> (usize, usize) {
        (self, self)
    }
}
impl Pair for (usize, usize) {
    fn pair(self) -> (usize, usize) {
        self
    }
}

/// PyTorch prints `3` for `(3, 3)` when the layer was given one number.
fn pair_repr(p: (usize, usize)) -> String {
    if p.0 == p.1 {
        p.0.to_string()
    } else {
        format!("({}, {})", p.0, p.1)
    }
}

fn tuple_repr(p: (usize, usize)) -> String {
    format!("({}, {})", p.0, p.1)
}

fn new_param(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape)
        .requires_grad_(true)
        .expect("a fresh tensor is a leaf")
}

// ----- Linear -------------------------------------------------------------------------------

/// `y = x W^T + b` (`nn.Linear`); `weight` is `[out_features, in_features]`.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    /// With a bias, PyTorch's default initialisation (global generator).
    pub fn new(in_features: usize, out_features: usize) -> Linear {
        Linear::with_bias(in_features, out_features, true)
    }
    /// With or without a bias.
    pub fn with_bias(in_features: usize, out_features: usize, bias: bool) -> Linear {
        let weight = new_param(&[out_features, in_features]);
        let bias = bias.then(|| new_param(&[out_features]));
        // Cannot fail: the weight is 2-D.
        let _ = default_layer_init(&weight, bias.as_ref());
        Linear {
            weight,
            bias,
            in_features,
            out_features,
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
    fn own_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn type_name(&self) -> String {
        "Linear".into()
    }
    fn extra_repr(&self) -> String {
        let bias = if self.bias.is_some() { "True" } else { "False" };
        format!(
            "in_features={}, out_features={}, bias={bias}",
            self.in_features, self.out_features
        )
    }
}

// ----- Conv2d -------------------------------------------------------------------------------

/// 2-D convolution layer (`nn.Conv2d`); `weight` is `[out, in / groups, kh, kw]`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
}

impl Conv2d {
    /// Stride 1, no padding, with bias (`nn.Conv2d(in, out, kernel_size)`).
    pub fn new(in_channels: usize, out_channels: usize, kernel: impl Pair) -> Result<Conv2d> {
        Conv2d::with(
            Conv2dParams::new(in_channels, out_channels, kernel.pair()),
            true,
        )
    }
    /// Any options; PyTorch's default initialisation.
    ///
    /// ```
    /// use tinycnn::{nn::{Conv2d, Module}, Conv2dParams};
    /// let c = Conv2d::with(Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)), true).unwrap();
    /// assert_eq!(c.repr(), "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))");
    /// ```
    pub fn with(params: Conv2dParams, bias: bool) -> Result<Conv2d> {
        params.validate().map_err(Error::kernel("Conv2d"))?;
        let p = params;
        let weight = new_param(&[
            p.out_channels,
            p.in_channels / p.groups,
            p.kernel.0,
            p.kernel.1,
        ]);
        let bias = bias.then(|| new_param(&[p.out_channels]));
        default_layer_init(&weight, bias.as_ref())?;
        Ok(Conv2d {
            weight,
            bias,
            params,
        })
    }
    /// Builder: stride.
    pub fn stride(self, s: impl Pair) -> Result<Conv2d> {
        let p = self.params.with_stride(s.pair());
        p.validate().map_err(Error::kernel("Conv2d"))?;
        Ok(Conv2d { params: p, ..self })
    }
    /// Builder: zero padding on each side.
    pub fn padding(self, pad: impl Pair) -> Result<Conv2d> {
        Ok(Conv2d {
            params: self.params.with_padding(pad.pair()),
            ..self
        })
    }
    /// Builder: dilation.
    pub fn dilation(self, d: impl Pair) -> Result<Conv2d> {
        let p = self.params.with_dilation(d.pair());
        p.validate().map_err(Error::kernel("Conv2d"))?;
        Ok(Conv2d { params: p, ..self })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let p = &self.params;
        if x.rank() == 3 {
            // An unbatched [C, H, W] input, as PyTorch accepts.
            return self.forward(&x.unsqueeze(0)?)?.squeeze(0);
        }
        x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            p.stride,
            p.padding,
            p.dilation,
            p.groups,
        )
    }
    fn own_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn type_name(&self) -> String {
        "Conv2d".into()
    }
    fn extra_repr(&self) -> String {
        let p = &self.params;
        let mut s = format!(
            "{}, {}, kernel_size={}, stride={}",
            p.in_channels,
            p.out_channels,
            tuple_repr(p.kernel),
            tuple_repr(p.stride)
        );
        if p.padding != (0, 0) {
            s += &format!(", padding={}", tuple_repr(p.padding));
        }
        if p.dilation != (1, 1) {
            s += &format!(", dilation={}", tuple_repr(p.dilation));
        }
        if p.groups != 1 {
            s += &format!(", groups={}", p.groups);
        }
        if self.bias.is_none() {
            s += ", bias=False";
        }
        s
    }
}

// ----- pooling ------------------------------------------------------------------------------

/// Max pooling (`nn.MaxPool2d`): stride defaults to the kernel, padding to 0.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    pub params: Pool2dParams,
}

impl MaxPool2d {
    /// Kernel `k`, stride `k`, no padding (`nn.MaxPool2d(k)`).
    pub fn new(kernel: impl Pair) -> MaxPool2d {
        MaxPool2d {
            params: Pool2dParams::with_kernel(kernel.pair()),
        }
    }
    /// Builder: stride.
    pub fn stride(mut self, s: impl Pair) -> MaxPool2d {
        self.params.stride = s.pair();
        self
    }
    /// Builder: padding (counts as -inf).
    pub fn padding(mut self, p: impl Pair) -> MaxPool2d {
        self.params.padding = p.pair();
        self
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.params)
    }
    fn type_name(&self) -> String {
        "MaxPool2d".into()
    }
    fn extra_repr(&self) -> String {
        let p = &self.params;
        format!(
            "kernel_size={}, stride={}, padding={}, dilation=1, ceil_mode=False",
            pair_repr(p.kernel),
            pair_repr(p.stride),
            pair_repr(p.padding)
        )
    }
}

/// Average pooling (`nn.AvgPool2d`): stride defaults to the kernel, zero padding counted.
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    pub params: Pool2dParams,
}

impl AvgPool2d {
    /// Kernel `k`, stride `k`, no padding (`nn.AvgPool2d(k)`).
    pub fn new(kernel: impl Pair) -> AvgPool2d {
        AvgPool2d {
            params: Pool2dParams::with_kernel(kernel.pair()),
        }
    }
    /// Builder: stride.
    pub fn stride(mut self, s: impl Pair) -> AvgPool2d {
        self.params.stride = s.pair();
        self
    }
    /// Builder: zero padding.
    pub fn padding(mut self, p: impl Pair) -> AvgPool2d {
        self.params.padding = p.pair();
        self
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d(self.params)
    }
    fn type_name(&self) -> String {
        "AvgPool2d".into()
    }
    fn extra_repr(&self) -> String {
        let p = &self.params;
        format!(
            "kernel_size={}, stride={}, padding={}",
            pair_repr(p.kernel),
            pair_repr(p.stride),
            pair_repr(p.padding)
        )
    }
}

// ----- activations and reshaping ------------------------------------------------------------

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $method:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;
        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                x.$method()
            }
            fn type_name(&self) -> String {
                stringify!($name).into()
            }
        }
    };
}
activation!(
    /// `max(x, 0)` (`nn.ReLU`).
    ReLU,
    relu
);
activation!(
    /// `1 / (1 + e^-x)` (`nn.Sigmoid`).
    Sigmoid,
    sigmoid
);
activation!(
    /// `tanh(x)` (`nn.Tanh`).
    Tanh,
    tanh
);

/// Softmax along a dimension (`nn.Softmax(dim)`).
#[derive(Debug, Clone, Copy)]
pub struct Softmax {
    pub dim: isize,
}

impl Module for Softmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.softmax(self.dim)
    }
    fn type_name(&self) -> String {
        "Softmax".into()
    }
    fn extra_repr(&self) -> String {
        format!("dim={}", self.dim)
    }
}

/// The input unchanged (`nn.Identity`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Module for Identity {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn type_name(&self) -> String {
        "Identity".into()
    }
}

/// Merges dims `start_dim..=end_dim` (`nn.Flatten()`: 1 to -1, keeping the batch).
#[derive(Debug, Clone, Copy)]
pub struct Flatten {
    pub start_dim: isize,
    pub end_dim: isize,
}

impl Flatten {
    /// `nn.Flatten()`: start 1, end -1.
    pub fn new() -> Flatten {
        Flatten {
            start_dim: 1,
            end_dim: -1,
        }
    }
}

impl Default for Flatten {
    fn default() -> Flatten {
        Flatten::new()
    }
}

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.flatten(self.start_dim, self.end_dim)
    }
    fn type_name(&self) -> String {
        "Flatten".into()
    }
    fn extra_repr(&self) -> String {
        format!("start_dim={}, end_dim={}", self.start_dim, self.end_dim)
    }
}
