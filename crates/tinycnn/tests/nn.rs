//! The chapter-5 notebook's modules written against the API: Sequential, MLP,
//! FixedHiddenMLP, NestMLP, chimera, parameter access, init, state dicts, reprs.

use tinycnn::nn::{
    init, AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential, Sigmoid,
    StateDict,
};
use tinycnn::{no_grad, Conv2dParams, Error, Result, Tensor};

/// d2l's MLP: `self.out(F.relu(self.hidden(X)))`.
struct Mlp {
    hidden: Linear,
    output: Linear,
}

impl Mlp {
    fn new() -> Mlp {
        Mlp {
            hidden: Linear::new(20, 256),
            output: Linear::new(256, 10),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.output.forward(&self.hidden.forward(x)?.relu()?)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![
            ("hidden".into(), &self.hidden),
            ("output".into(), &self.output),
        ]
    }
}

/// A constant random weight (not a parameter), a reused layer and a data-dependent loop.
struct FixedHiddenMlp {
    rand_weight: Tensor,
    linear: Linear,
}

impl FixedHiddenMlp {
    fn new() -> FixedHiddenMlp {
        FixedHiddenMlp {
            rand_weight: Tensor::rand(&[20, 20]),
            linear: Linear::new(20, 20),
        }
    }
}

impl Module for FixedHiddenMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.linear.forward(x)?;
        let x = (x.mm(&self.rand_weight)? + 1.0).relu()?;
        let mut x = self.linear.forward(&x)?;
        while x.abs().sum_all().item()? > 1.0 {
            x = &x / 2.0;
        }
        Ok(x.sum_all())
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("linear".into(), &self.linear)]
    }
}

struct NestMlp {
    net: Sequential,
    linear: Linear,
}

impl NestMlp {
    fn new() -> NestMlp {
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

impl Module for NestMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(&self.net.forward(x)?)
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        vec![("net".into(), &self.net), ("linear".into(), &self.linear)]
    }
}

fn names(m: &dyn Module) -> Vec<String> {
    m.named_parameters().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn sequential_and_custom_mlp() {
    let x = Tensor::rand(&[2, 20]);
    let net = Sequential::new()
        .append(Linear::new(20, 256))
        .append(ReLU)
        .append(Linear::new(256, 10));
    let y = net.forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 10]);
    assert_eq!(y.grad_fn(), Some("AddmmBackward0"));
    let mlp = Mlp::new();
    assert_eq!(mlp.forward(&x).unwrap().shape(), &[2, 10]);
    assert_eq!(
        names(&mlp),
        [
            "hidden.weight",
            "hidden.bias",
            "output.weight",
            "output.bias"
        ]
    );
    assert_eq!(
        mlp.repr(),
        "Mlp(\n  (hidden): Linear(in_features=20, out_features=256, bias=True)\n  (output): Linear(in_features=256, out_features=10, bias=True)\n)"
    );
}

#[test]
fn fixed_hidden_mlp_and_chimera() {
    let x = Tensor::rand(&[2, 20]);
    let net = FixedHiddenMlp::new();
    let y = net.forward(&x).unwrap();
    assert_eq!(y.shape(), &[] as &[usize]);
    assert_eq!(y.grad_fn(), Some("SumBackward0"));
    assert!(y.item().unwrap().abs() <= 1.0);
    // Only the linear layer's parameters; the constant weight is not one.
    assert_eq!(names(&net), ["linear.weight", "linear.bias"]);
    y.backward().unwrap();
    assert!(net.linear.weight.grad().is_some() && net.rand_weight.grad().is_none());

    let chimera = Sequential::new()
        .append(NestMlp::new())
        .append(Linear::new(16, 20))
        .append(FixedHiddenMlp::new());
    let y = chimera.forward(&x).unwrap();
    assert_eq!(y.numel(), 1);
    assert_eq!(
        names(&chimera),
        [
            "0.net.0.weight",
            "0.net.0.bias",
            "0.net.2.weight",
            "0.net.2.bias",
            "0.linear.weight",
            "0.linear.bias",
            "1.weight",
            "1.bias",
            "2.linear.weight",
            "2.linear.bias"
        ]
    );
}

#[test]
fn parameter_access() {
    let net = Sequential::new()
        .append(Linear::new(4, 8))
        .append(ReLU)
        .append(Linear::new(8, 1));
    let x = Tensor::rand(&[2, 4]);
    assert_eq!(net.forward(&x).unwrap().shape(), &[2, 1]);
    let sd = net[2].state_dict();
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["weight", "bias"]);
    assert!(sd
        .to_string()
        .starts_with("OrderedDict([('weight', tensor([["));
    let out = net.get::<Linear>(2).unwrap();
    assert_eq!(out.bias.as_ref().unwrap().shape(), &[1]);
    assert!(out
        .bias
        .as_ref()
        .unwrap()
        .to_string()
        .ends_with(", requires_grad=True)"));
    assert!(out.weight.grad().is_none());
    let shapes: Vec<(String, Vec<usize>)> = net[0]
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.shape().to_vec()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("weight".to_string(), vec![8, 4]),
            ("bias".to_string(), vec![8])
        ]
    );
    assert_eq!(names(&net), ["0.weight", "0.bias", "2.weight", "2.bias"]);
    let full = net.state_dict();
    assert!(full
        .get("2.bias")
        .unwrap()
        .equal(out.bias.as_ref().unwrap()));
    assert!(full.sub("2").get("bias").is_some());
    assert_eq!(net.num_parameters(), 8 * 4 + 8 + 8 + 1);
}

fn block1() -> Sequential {
    Sequential::new()
        .append(Linear::new(4, 8))
        .append(ReLU)
        .append(Linear::new(8, 4))
        .append(ReLU)
}

fn block2() -> Sequential {
    let mut net = Sequential::new();
    for i in 0..4 {
        net.add_module(format!("block{i}"), block1()).unwrap();
    }
    net
}

#[test]
fn nested_blocks_print_like_pytorch() {
    let rgnet = Sequential::new().append(block2()).append(Linear::new(4, 1));
    assert_eq!(
        rgnet.forward(&Tensor::rand(&[2, 4])).unwrap().shape(),
        &[2, 1]
    );
    let block = |i: usize| {
        format!(
            "    (block{i}): Sequential(\n      (0): Linear(in_features=4, out_features=8, bias=True)\n      (1): ReLU()\n      (2): Linear(in_features=8, out_features=4, bias=True)\n      (3): ReLU()\n    )\n"
        )
    };
    let expected = format!(
        "Sequential(\n  (0): Sequential(\n{}{}{}{}  )\n  (1): Linear(in_features=4, out_features=1, bias=True)\n)",
        block(0),
        block(1),
        block(2),
        block(3)
    );
    assert_eq!(rgnet.to_string(), expected);
    // rgnet[0][1][0].bias
    let inner = rgnet[0].downcast_ref::<Sequential>().unwrap()[1]
        .downcast_ref::<Sequential>()
        .unwrap();
    assert_eq!(
        inner
            .get::<Linear>(0)
            .unwrap()
            .bias
            .as_ref()
            .unwrap()
            .shape(),
        &[8]
    );
    assert_eq!(names(&rgnet)[..2], ["0.block0.0.weight", "0.block0.0.bias"]);
    let mut s = Sequential::new();
    s.add_module("a", ReLU).unwrap();
    assert!(s.add_module("a", ReLU).is_err());
}

#[test]
fn init_by_apply() {
    let net = Sequential::new()
        .append(Linear::new(4, 8))
        .append(ReLU)
        .append(Linear::new(8, 1));
    net.apply(&mut |m| {
        if let Some(l) = m.downcast_ref::<Linear>() {
            init::normal_(&l.weight, 0.0, 0.01)?;
            init::zeros_(l.bias.as_ref().unwrap())?;
        }
        Ok(())
    })
    .unwrap();
    let l0 = net.get::<Linear>(0).unwrap();
    assert!(l0.weight.to_vec().iter().all(|v| v.abs() < 0.06));
    assert_eq!(
        l0.bias
            .as_ref()
            .unwrap()
            .detach()
            .select(0, 0)
            .unwrap()
            .to_string(),
        "tensor(0.)"
    );
    net[0]
        .apply(&mut |m| {
            if let Some(l) = m.downcast_ref::<Linear>() {
                init::xavier_uniform_(&l.weight, 1.0)?;
            }
            Ok(())
        })
        .unwrap();
    let bound = (6.0f32 / 12.0).sqrt();
    assert!(l0.weight.to_vec().iter().all(|v| v.abs() <= bound));
    net[2]
        .apply(&mut |m| {
            if let Some(l) = m.downcast_ref::<Linear>() {
                init::constant_(&l.weight, 42.0)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        net.get::<Linear>(2).unwrap().weight.to_string(),
        "tensor([[42., 42., 42., 42., 42., 42., 42., 42.]], requires_grad=True)"
    );
    // apply visits children before the parent, every module once.
    let mut seen = Vec::new();
    net.apply(&mut |m| {
        seen.push(m.type_name());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, ["Linear", "ReLU", "Linear", "Sequential"]);
    assert!(init::xavier_uniform_(&Tensor::zeros(&[3]), 1.0).is_err());
}

#[test]
fn default_init_bounds_and_seeding() {
    tinycnn::manual_seed(5);
    let a = Linear::new(20, 256);
    tinycnn::manual_seed(5);
    let b = Linear::new(20, 256);
    assert!(a.weight.equal(&b.weight));
    let bound = 1.0 / 20f32.sqrt();
    assert!(a.weight.to_vec().iter().all(|v| v.abs() <= bound));
    assert!(a
        .bias
        .as_ref()
        .unwrap()
        .to_vec()
        .iter()
        .all(|v| v.abs() <= bound));
    // Spread close to the bound: U(-b, b) has max |v| near b over 5120 draws.
    let max = a.weight.abs().max_all().unwrap().item().unwrap();
    assert!(max > 0.95 * bound);
    let c = Conv2d::new(6, 16, 5).unwrap();
    let cb = 1.0 / (6.0f32 * 25.0).sqrt();
    assert!(c.weight.to_vec().iter().all(|v| v.abs() <= cb));
    let (fi, fo) = init::fan_in_out(&c.weight).unwrap();
    assert_eq!((fi, fo), (150, 400));
}

#[test]
fn state_dict_round_trip_and_errors() {
    let net = Mlp::new();
    let x = Tensor::randn(&[2, 20]);
    let y = net.forward(&x).unwrap();
    let clone = Mlp::new();
    clone.load_state_dict(&net.state_dict()).unwrap();
    clone.eval();
    let y2 = clone.forward(&x).unwrap();
    assert_eq!(y2.eq_elem(&y).unwrap().to_vec(), vec![1.0; 20]);

    let mut sd = net.state_dict();
    sd.remove("output.bias");
    let e = clone.load_state_dict(&sd).unwrap_err();
    assert!(
        matches!(&e, Error::StateDict { key, .. } if key == "output.bias"),
        "{e}"
    );
    let mut sd = net.state_dict();
    sd.insert("extra.weight", Tensor::zeros(&[1]));
    let e = clone.load_state_dict(&sd).unwrap_err();
    assert!(
        matches!(&e, Error::StateDict { key, .. } if key == "extra.weight"),
        "{e}"
    );
    let mut sd = net.state_dict();
    sd.insert("hidden.weight", Tensor::zeros(&[256, 21]));
    let e = clone.load_state_dict(&sd).unwrap_err();
    assert!(
        e.to_string().contains("hidden.weight") && e.to_string().contains("[256, 21]"),
        "{e}"
    );
    // Nothing was changed by the failed loads.
    assert!(clone.forward(&x).unwrap().equal(&y));
    let empty = StateDict::new();
    assert!(Sequential::new()
        .append(ReLU)
        .load_state_dict(&empty)
        .is_ok());
}

#[test]
fn conv_layer_output_shapes() {
    let comp = |conv: &Conv2d, x: &Tensor| -> Vec<usize> {
        let y = conv.forward(&x.reshape([1, 1, 8, 8]).unwrap()).unwrap();
        y.shape()[2..].to_vec()
    };
    let x = Tensor::rand(&[8, 8]);
    let c = Conv2d::new(1, 1, 3).unwrap().padding(1).unwrap();
    assert_eq!(comp(&c, &x), [8, 8]);
    let c = Conv2d::new(1, 1, (5, 3)).unwrap().padding((2, 1)).unwrap();
    assert_eq!(comp(&c, &x), [8, 8]);
    let c = Conv2d::new(1, 1, 3)
        .unwrap()
        .padding(1)
        .unwrap()
        .stride(2)
        .unwrap();
    assert_eq!(comp(&c, &x), [4, 4]);
    let c = Conv2d::new(1, 1, (3, 5))
        .unwrap()
        .padding((0, 1))
        .unwrap()
        .stride((3, 4))
        .unwrap();
    assert_eq!(comp(&c, &x), [2, 2]);
    assert!(Conv2d::with(Conv2dParams::new(3, 4, (3, 3)).with_groups(2), true).is_err());
    let c = Conv2d::new(3, 2, 3).unwrap();
    let e = c.forward(&Tensor::zeros(&[1, 4, 8, 8])).unwrap_err();
    assert!(e.to_string().contains("conv2d"), "{e}");
}

#[test]
fn layer_reprs() {
    let net = Sequential::new()
        .append(Conv2d::with(Conv2dParams::new(1, 6, (5, 5)).with_padding((2, 2)), true).unwrap())
        .append(Sigmoid)
        .append(AvgPool2d::new(2).stride(2))
        .append(MaxPool2d::new(3).padding(1).stride(2))
        .append(Flatten::new())
        .append(Conv2d::with(Conv2dParams::new(4, 4, (1, 1)).with_groups(2), false).unwrap());
    assert_eq!(
        net.to_string(),
        "Sequential(\n  (0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))\n  (1): Sigmoid()\n  (2): AvgPool2d(kernel_size=2, stride=2, padding=0)\n  (3): MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)\n  (4): Flatten(start_dim=1, end_dim=-1)\n  (5): Conv2d(4, 4, kernel_size=(1, 1), stride=(1, 1), groups=2, bias=False)\n)"
    );
    net.train();
    net.eval();
}

#[test]
fn manual_training_step_through_modules() {
    // One SGD step by hand reduces the loss of a small regression.
    let net = Sequential::new()
        .append(Linear::new(3, 4))
        .append(ReLU)
        .append(Linear::new(4, 1));
    let x = Tensor::randn(&[16, 3]);
    let y = x.sum(&[1], true).unwrap();
    let loss = |net: &Sequential| net.forward(&x).unwrap().mse_loss(&y).unwrap();
    let before = loss(&net).item().unwrap();
    for _ in 0..20 {
        net.zero_grad();
        loss(&net).backward().unwrap();
        no_grad(|| {
            for p in net.parameters() {
                let g = p.grad().unwrap();
                p.sub_(&(&g * 0.05)).unwrap();
            }
        });
    }
    assert!(loss(&net).item().unwrap() < before);
}
