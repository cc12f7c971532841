//! # tinycnn-models
//!
//! LeNet-5 as "Dive into Deep Learning" builds it (sigmoid activations, average pooling),
//! and a modern variant with ReLU and max pooling. Both are [`Sequential`]s with the same
//! layer indices, so their state-dict keys (`0.weight` .. `11.bias`) match PyTorch's:
//!
//! ```
//! use tinycnn::nn::Module;
//! let net = tinycnn_models::lenet();
//! let keys: Vec<String> = net.state_dict().keys().map(String::from).collect();
//! assert_eq!(keys[0], "0.weight");
//! assert_eq!(keys.last().unwrap(), "11.bias");
//! let y = net.forward(&tinycnn::Tensor::rand(&[2, 1, 28, 28])).unwrap();
//! assert_eq!(y.shape(), &[2, 10]);
//! ```

use tinycnn::nn::{
    init, AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential, Sigmoid,
};
use tinycnn::{Conv2dParams, Error, Result};

/// d2l's LeNet: `Conv2d(1, 6, 5, padding=2), Sigmoid, AvgPool2d(2, 2), Conv2d(6, 16, 5),
/// Sigmoid, AvgPool2d(2, 2), Flatten, Linear(400, 120), Sigmoid, Linear(120, 84), Sigmoid,
/// Linear(84, 10)`, for `[N, 1, 28, 28]` inputs. Weights get PyTorch's default init.
pub fn lenet() -> Sequential {
    build(false)
}

/// LeNet with ReLU activations and max pooling (same layers, same keys).
pub fn lenet_relu() -> Sequential {
    build(true)
}

fn build(relu: bool) -> Sequential {
    let conv = |p: Conv2dParams| Conv2d::with(p, true).expect("LeNet's conv options are valid");
    let act = |s: &mut Sequential| {
        if relu {
            s.push(ReLU)
        } else {
            s.push(Sigmoid)
        }
    };
    let pool = |s: &mut Sequential| {
        if relu {
            s.push(MaxPool2d::new(2).stride(2))
        } else {
            s.push(AvgPool2d::new(2).stride(2))
        }
    };
    let mut s = Sequential::new();
    s.push(conv(Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2))));
    act(&mut s);
    pool(&mut s);
    s.push(conv(Conv2dParams::new(6, 16, (5, 5))));
    act(&mut s);
    pool(&mut s);
    s.push(Flatten::new());
    s.push(Linear::new(16 * 5 * 5, 120));
    act(&mut s);
    s.push(Linear::new(120, 84));
    act(&mut s);
    s.push(Linear::new(84, 10));
    s
}

/// d2l's `init_weights` (applied by `train_ch6`): Xavier-uniform weights for every `Linear`
/// and `Conv2d` in `net`, from the default generator; biases keep their default init.
///
/// ```
/// use tinycnn::nn::Module;
/// tinycnn::manual_seed(0);
/// let net = tinycnn_models::lenet();
/// tinycnn_models::init_weights(&net).unwrap();
/// // xavier_uniform bound of conv1's [6, 1, 5, 5] weight: sqrt(6 / (25 + 150)).
/// let w = net.state_dict().get("0.weight").unwrap().to_vec();
/// assert!(w.iter().all(|v| v.abs() <= (6.0f32 / 175.0).sqrt()));
/// ```
pub fn init_weights(net: &Sequential) -> Result<()> {
    net.apply(&mut |m| {
        if let Some(l) = m.downcast_ref::<Linear>() {
            init::xavier_uniform_(&l.weight, 1.0)?;
        } else if let Some(c) = m.downcast_ref::<Conv2d>() {
            init::xavier_uniform_(&c.weight, 1.0)?;
        }
        Ok(())
    })
}

/// The models this crate builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// [`lenet`]
    LeNet,
    /// [`lenet_relu`]
    LeNetRelu,
}

impl Model {
    /// Every model, for listings.
    pub const ALL: [Model; 2] = [Model::LeNet, Model::LeNetRelu];

    /// The name `by_name` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Model::LeNet => "lenet",
            Model::LeNetRelu => "lenet-relu",
        }
    }

    /// A freshly initialised network.
    pub fn build(self) -> Sequential {
        match self {
            Model::LeNet => lenet(),
            Model::LeNetRelu => lenet_relu(),
        }
    }

    /// Input shape of one example, `[channels, height, width]`.
    pub fn input_shape(self) -> [usize; 3] {
        [1, 28, 28]
    }

    /// Number of output classes.
    pub fn classes(self) -> usize {
        10
    }
}

impl std::str::FromStr for Model {
    type Err = Error;
    fn from_str(s: &str) -> Result<Model> {
        by_name(s)
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `"lenet"` or `"lenet-relu"` (`"lenet_relu"` also accepted).
pub fn by_name(name: &str) -> Result<Model> {
    match name {
        "lenet" => Ok(Model::LeNet),
        "lenet-relu" | "lenet_relu" => Ok(Model::LeNetRelu),
        _ => Err(Error::invalid_argument(
            "by_name",
            format!("unknown model `{name}` (known: lenet, lenet-relu)"),
        )),
    }
}

/// Builds the network named `name`.
pub fn build_by_name(name: &str) -> Result<Sequential> {
    Ok(by_name(name)?.build())
}
