//! In-place weight initialisation, as `torch.nn.init` (all draw from the global generator,
//! see [`crate::manual_seed`]).

use crate::error::{Error, Result};
use crate::rng::with_global_rng;
use crate::tensor::Tensor;

/// Which fan the Kaiming initialisers scale by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanMode {
    FanIn,
    FanOut,
}

/// The non-linearity a gain is computed for (`nn.init.calculate_gain`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Nonlinearity {
    Linear,
    Conv,
    Sigmoid,
    Tanh,
    Relu,
    /// Leaky ReLU with this negative slope.
    LeakyRelu(f32),
}

/// PyTorch's recommended gain for `nl`.
pub fn calculate_gain(nl: Nonlinearity) -> f32 {
    match nl {
        Nonlinearity::Linear | Nonlinearity::Conv | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f32.sqrt(),
        Nonlinearity::LeakyRelu(a) => (2.0 / (1.0 + a * a)).sqrt(),
    }
}

/// `(fan_in, fan_out)` of a weight: `[out, in, k...]` gives `in * prod(k)`, `out * prod(k)`.
pub fn fan_in_out(t: &Tensor) -> Result<(usize, usize)> {
    let s = t.shape();
    if s.len() < 2 {
        return Err(Error::bad_shape(
            "fan_in_out",
            s,
            "fan in and fan out need at least 2 dimensions",
        ));
    }
    let receptive: usize = s[2..].iter().product();
    Ok((s[1] * receptive, s[0] * receptive))
}

fn fill_with(t: &Tensor, mut f: impl FnMut(&mut crate::Rng) -> f32) -> Result<()> {
    with_global_rng(|r| t.write_unchecked(|d| d.iter_mut().for_each(|x| *x = f(r))))
}

/// Uniform in `[a, b)`.
pub fn uniform_(t: &Tensor, a: f32, b: f32) -> Result<()> {
    if !a.is_finite() || !b.is_finite() || a > b {
        return Err(Error::invalid(
            "uniform_",
            format!("need finite a <= b, got {a}, {b}"),
        ));
    }
    fill_with(t, |r| a + (b - a) * r.uniform())
}

/// Normal with `mean` and `std >= 0`.
pub fn normal_(t: &Tensor, mean: f32, std: f32) -> Result<()> {
    if !std.is_finite() || !mean.is_finite() || std < 0.0 {
        return Err(Error::invalid(
            "normal_",
            format!("std must be finite and >= 0, got {std}"),
        ));
    }
    fill_with(t, |r| mean + std * r.normal())
}

/// Every element `v`.
pub fn constant_(t: &Tensor, v: f32) -> Result<()> {
    t.write_unchecked(|d| d.fill(v))
}

/// Zeros.
pub fn zeros_(t: &Tensor) -> Result<()> {
    constant_(t, 0.0)
}

/// Ones.
pub fn ones_(t: &Tensor) -> Result<()> {
    constant_(t, 1.0)
}

/// Glorot uniform: `U(-g sqrt(6 / (fan_in + fan_out)), +...)`.
pub fn xavier_uniform_(t: &Tensor, gain: f32) -> Result<()> {
    let (fi, fo) = fan_in_out(t)?;
    let bound = gain * (6.0 / (fi + fo) as f32).sqrt();
    uniform_(t, -bound, bound)
}

/// Glorot normal: `N(0, g sqrt(2 / (fan_in + fan_out)))`.
pub fn xavier_normal_(t: &Tensor, gain: f32) -> Result<()> {
    let (fi, fo) = fan_in_out(t)?;
    normal_(t, 0.0, gain * (2.0 / (fi + fo) as f32).sqrt())
}

fn kaiming_std(t: &Tensor, mode: FanMode, nl: Nonlinearity) -> Result<f32> {
    let (fi, fo) = fan_in_out(t)?;
    let fan = match mode {
        FanMode::FanIn => fi,
        FanMode::FanOut => fo,
    };
    if fan == 0 {
        return Err(Error::bad_shape("kaiming init", t.shape(), "fan is zero"));
    }
    Ok(calculate_gain(nl) / (fan as f32).sqrt())
}

/// He uniform: `U(-b, b)` with `b = gain * sqrt(3 / fan)`.
pub fn kaiming_uniform_(t: &Tensor, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    let bound = 3f32.sqrt() * kaiming_std(t, mode, nl)?;
    uniform_(t, -bound, bound)
}

/// He normal: `N(0, gain / sqrt(fan))`.
pub fn kaiming_normal_(t: &Tensor, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    let std = kaiming_std(t, mode, nl)?;
    normal_(t, 0.0, std)
}

/// PyTorch's default init of `nn.Linear` / `nn.Conv2d`: weight
/// `kaiming_uniform_(a = sqrt(5))`, i.e. `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and bias
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
pub fn default_layer_init(weight: &Tensor, bias: Option<&Tensor>) -> Result<()> {
    kaiming_uniform_(weight, FanMode::FanIn, Nonlinearity::LeakyRelu(5f32.sqrt()))?;
    if let Some(b) = bias {
        let (fi, _) = fan_in_out(weight)?;
        let bound = if fi > 0 {
            1.0 / (fi as f32).sqrt()
        } else {
            0.0
        };
        uniform_(b, -bound, bound)?;
    }
    Ok(())
}
