//! d2l "Layers and Blocks" (层和块) with tinycnn: `nn.Sequential`, a hand-written `MLP`,
//! `FixedHiddenMLP` (a constant weight, a reused layer and Python control flow in forward),
//! `NestMLP`, and the "chimera" that mixes them.
//!
//! Run: `cargo run --release -p tinycnn --example blocks`

use tinycnn::nn::{Linear, Module, ReLU, Sequential};
use tinycnn::{Result, Tensor};

/// `nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))`.
pub fn sequential_mlp() -> Sequential {
    Sequential::new()
        .append(Linear::new(20, 256))
        .append(ReLU)
        .append(Linear::new(256, 10))
}

/// `class MLP(nn.Module)`: a hidden layer of 256 units and an output layer of 10.
pub struct Mlp {
    pub hidden: Linear,
    pub out: Linear,
}

impl Mlp {
    pub fn new() -> Mlp {
        Mlp {
            hidden: Linear::new(20, 256),
            out: Linear::new(256, 10),
        }
    }
}

impl Default for Mlp {
    fn default() -> Mlp {
        Mlp::new()
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.hidden.forward(x)?.relu()?)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("hidden".into(), &self.hidden), ("out".into(), &self.out)]
    }
    fn type_name(&self) -> String {
        "MLP".into()
    }
}

/// `class FixedHiddenMLP(nn.Module)`: `rand_weight` is a constant (no gradient, not a
/// parameter); `linear` is applied twice, so its parameters are shared by both uses.
pub struct FixedHiddenMlp {
    pub rand_weight: Tensor,
    pub linear: Linear,
}

impl FixedHiddenMlp {
    pub fn new() -> FixedHiddenMlp {
        FixedHiddenMlp {
            rand_weight: Tensor::rand(&[20, 20]),
            linear: Linear::new(20, 20),
        }
    }
}

impl Default for FixedHiddenMlp {
    fn default() -> FixedHiddenMlp {
        FixedHiddenMlp::new()
    }
}

impl Module for FixedHiddenMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.linear.forward(x)?;
        // relu(mm(X, rand_weight) + 1) with the constant weight
        let x = (x.mm(&self.rand_weight)? + 1.0).relu()?;
        // The same layer again: two fully connected layers sharing parameters.
        let mut x = self.linear.forward(&x)?;
        // Control flow: while X.abs().sum() > 1: X /= 2
        while x.abs().sum_all().item()? > 1.0 {
            x = x / 2.0;
        }
        Ok(x.sum_all())
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("linear".into(), &self.linear)]
    }
    fn type_name(&self) -> String {
        "FixedHiddenMLP".into()
    }
}

/// `class NestMLP(nn.Module)`: a `Sequential` inside a module.
pub struct NestMlp {
    pub net: Sequential,
    pub linear: Linear,
}

impl NestMlp {
    pub fn new() -> NestMlp {
        NestMlp {
            net: Sequential::new()
                .append(Linear::new(20, 64))
                .append(ReLU)
                .append(Linear::new(64, 32))
                .append(ReLU),
            linear: Linear::new(32, 16),
        }
    }
}

impl Default for NestMlp {
    fn default() -> NestMlp {
        NestMlp::new()
    }
}

impl Module for NestMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(&self.net.forward(x)?)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("net".into(), &self.net), ("linear".into(), &self.linear)]
    }
    fn type_name(&self) -> String {
        "NestMLP".into()
    }
}

/// `nn.Sequential(NestMLP(), nn.Linear(16, 20), FixedHiddenMLP())`.
pub fn chimera() -> Sequential {
    Sequential::new()
        .append(NestMlp::new())
        .append(Linear::new(16, 20))
        .append(FixedHiddenMlp::new())
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);
    let x = Tensor::rand(&[2, 20]);

    println!("## Sequential");
    let net = sequential_mlp();
    println!("{}", net.forward(&x)?);

    println!("\n## A custom block (自定义块): MLP");
    let net = Mlp::new();
    println!("{}", net.forward(&x)?);
    println!("{}", net.repr());

    println!("\n## Code in forward (在前向传播函数中执行代码): FixedHiddenMLP");
    let net = FixedHiddenMlp::new();
    println!("{}", net.forward(&x)?);

    println!("\n## Nested blocks (混合搭配各种组合块的方法): chimera");
    let chimera = chimera();
    println!("{}", chimera.forward(&x)?);
    println!("{}", chimera.repr());
    Ok(())
}
