//! d2l "Parameter Management" (参数管理) with tinycnn: reading one layer's parameters and
//! state dict, all names and shapes at once, a nested network (`rgnet`) and its printout,
//! initialisation with `apply` (normal, constant 42, Xavier, a custom rule), and parameters
//! shared between layers.
//!
//! Run: `cargo run --release -p tinycnn --example parameters`

use tinycnn::nn::{init, Linear, Module, ReLU, Sequential};
use tinycnn::{no_grad, size_string, Result, Tensor};

/// `nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))`.
pub fn net() -> Sequential {
    Sequential::new()
        .append(Linear::new(4, 8))
        .append(ReLU)
        .append(Linear::new(8, 1))
}

/// Layer `i` of a `Sequential` known to be a `Linear` (`net[i]`).
pub fn linear(net: &Sequential, i: usize) -> &Linear {
    net.get::<Linear>(i).expect("this layer is a Linear")
}

/// `print(*[(name, param.shape) for name, param in m.named_parameters()])`.
pub fn names_and_shapes(m: &dyn Module) -> String {
    m.named_parameters()
        .iter()
        .map(|(n, p)| format!("('{n}', {})", size_string(p.shape())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `block1()`: `Linear(4, 8), ReLU, Linear(8, 4), ReLU`.
pub fn block1() -> Sequential {
    Sequential::new()
        .append(Linear::new(4, 8))
        .append(ReLU)
        .append(Linear::new(8, 4))
        .append(ReLU)
}

/// `block2()`: four `block1`s added as `block0` .. `block3`.
pub fn block2() -> Result<Sequential> {
    let mut net = Sequential::new();
    for i in 0..4 {
        net.add_module(format!("block{i}"), block1())?;
    }
    Ok(net)
}

/// `rgnet = nn.Sequential(block2(), nn.Linear(4, 1))`.
pub fn rgnet() -> Result<Sequential> {
    Ok(Sequential::new()
        .append(block2()?)
        .append(Linear::new(4, 1)))
}

/// `init_normal`: weights from N(0, 0.01^2), biases zero, on every `Linear`.
pub fn init_normal(m: &dyn Module) -> Result<()> {
    if let Some(l) = m.downcast_ref::<Linear>() {
        init::normal_(&l.weight, 0.0, 0.01)?;
        if let Some(b) = &l.bias {
            init::zeros_(b)?;
        }
    }
    Ok(())
}

/// `init_constant` / `init_42`: every `Linear` weight set to `value`.
pub fn init_constant(value: f32) -> impl FnMut(&dyn Module) -> Result<()> {
    move |m| {
        if let Some(l) = m.downcast_ref::<Linear>() {
            init::constant_(&l.weight, value)?;
        }
        Ok(())
    }
}

/// `init_xavier`: Xavier-uniform weights on every `Linear`.
pub fn init_xavier(m: &dyn Module) -> Result<()> {
    if let Some(l) = m.downcast_ref::<Linear>() {
        init::xavier_uniform_(&l.weight, 1.0)?;
    }
    Ok(())
}

/// d2l's `my_init`: `U(-10, 10)`, then every weight with `|w| < 5` set to zero.
pub fn my_init(m: &dyn Module) -> Result<()> {
    if let Some(l) = m.downcast_ref::<Linear>() {
        init::uniform_(&l.weight, -10.0, 10.0)?;
        no_grad(|| {
            l.weight.update_(|w| {
                w.iter_mut()
                    .for_each(|v| *v *= f32::from(u8::from(v.abs() >= 5.0)))
            })
        })?;
    }
    Ok(())
}

/// d2l's shared layer: `shared = nn.Linear(8, 8)` used at positions 2 and 4.
pub fn shared_net() -> Sequential {
    let shared = Linear::new(8, 8);
    // A second handle on the same parameter tensors (Tensor clones share storage and identity).
    let shared_again = Linear {
        weight: shared.weight.clone(),
        bias: shared.bias.clone(),
        in_features: 8,
        out_features: 8,
    };
    Sequential::new()
        .append(Linear::new(4, 8))
        .append(ReLU)
        .append(shared)
        .append(ReLU)
        .append(shared_again)
        .append(ReLU)
        .append(Linear::new(8, 1))
}

/// `net[2].weight.data[0] == net[4].weight.data[0]` printed as PyTorch prints the bool
/// result (the runtime's comparisons give 1.0 / 0.0 in an f32 tensor).
pub fn eq_row_string(a: &Tensor, b: &Tensor) -> Result<String> {
    let eq = a.eq_elem(b)?.to_vec();
    let width = if eq.iter().all(|&v| v != 0.0) { 4 } else { 5 };
    let words: Vec<String> = eq
        .iter()
        .map(|&v| format!("{:>width$}", if v != 0.0 { "True" } else { "False" }))
        .collect();
    Ok(format!("tensor([{}])", words.join(", ")))
}

/// What `print(type(net[2].bias))` shows in tinycnn: the Rust type and whether the tensor
/// requires grad (PyTorch prints `<class 'torch.nn.parameter.Parameter'>`).
pub fn parameter_type(t: &Tensor) -> String {
    format!(
        "{}, requires_grad={}",
        std::any::type_name_of_val(t),
        if t.requires_grad() { "True" } else { "False" }
    )
}

fn main() -> Result<()> {
    tinycnn::manual_seed(0);
    let net = net();
    let x = Tensor::rand(&[2, 4]);
    println!("{}", net.forward(&x)?);

    println!("\n## Parameter access (参数访问)");
    println!("{}", net[2].state_dict());
    let out = linear(&net, 2);
    let bias = out.bias.as_ref().expect("Linear(8, 1) has a bias");
    // print(type(net[2].bias)): PyTorch has a Parameter class; here a parameter is a plain
    // tensor that requires grad.
    println!("{}", parameter_type(bias));
    println!("Parameter containing:\n{bias}");
    println!("{}", bias.detach());
    println!(
        "{}",
        if out.weight.grad().is_none() {
            "True"
        } else {
            "False"
        }
    );

    println!("\n## All parameters at once (一次性访问所有参数)");
    println!("{}", names_and_shapes(&net[0]));
    println!("{}", names_and_shapes(&net));
    println!("{}", net.state_dict().get("2.bias").expect("2.bias exists"));

    println!("\n## Nested blocks (从嵌套块收集参数)");
    let rgnet = rgnet()?;
    println!("{}", rgnet.forward(&x)?);
    println!("{}", rgnet.repr());
    let block = rgnet[0]
        .downcast_ref::<Sequential>()
        .expect("rgnet[0] is block2()");
    let block1 = block[1]
        .downcast_ref::<Sequential>()
        .expect("rgnet[0][1] is a block1()");
    println!(
        "{}",
        linear(block1, 0).bias.as_ref().expect("bias").detach()
    );

    println!("\n## Initialisation (参数初始化)");
    net.apply(&mut init_normal)?;
    let (w0, b0) = (
        &linear(&net, 0).weight,
        linear(&net, 0).bias.as_ref().expect("bias"),
    );
    println!(
        "({}, {})",
        w0.detach().select(0, 0)?,
        b0.detach().select(0, 0)?
    );
    net.apply(&mut init_constant(1.0))?;
    println!(
        "({}, {})",
        w0.detach().select(0, 0)?,
        b0.detach().select(0, 0)?
    );
    net[0].apply(&mut init_xavier)?;
    net[2].apply(&mut init_constant(42.0))?;
    println!("{}", w0.detach().select(0, 0)?);
    println!("{}", linear(&net, 2).weight.detach());

    println!("\n## Custom initialisation (自定义初始化)");
    net.apply(&mut my_init)?;
    println!("{}", w0.detach().narrow(0, 0, 2)?);
    // net[0].weight.data[:] += 1; net[0].weight.data[0, 0] = 42
    no_grad(|| -> Result<()> {
        w0.update_(|w| w.iter_mut().for_each(|v| *v += 1.0))?;
        w0.update_(|w| w[0] = 42.0)
    })?;
    println!("{}", w0.detach().select(0, 0)?);

    println!("\n## Shared parameters (参数绑定)");
    let net = shared_net();
    net.forward(&x)?;
    let (a, b) = (&linear(&net, 2).weight, &linear(&net, 4).weight);
    println!("{}", eq_row_string(&a.select(0, 0)?, &b.select(0, 0)?)?);
    // net[2].weight.data[0, 0] = 100: still equal, one tensor in two layers.
    no_grad(|| a.update_(|w| w[0] = 100.0))?;
    println!("{}", eq_row_string(&a.select(0, 0)?, &b.select(0, 0)?)?);
    println!("{}", names_and_shapes(&net));
    Ok(())
}
