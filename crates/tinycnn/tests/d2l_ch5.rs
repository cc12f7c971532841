//! The values printed by the seed notebook's deep-learning-computation chapter (d2l ch. 5:
//! layers and blocks, parameter management, file I/O), checked on the code of the examples
//! `blocks`, `parameters` and `file_io`. Random values are not compared; their shapes and
//! properties are.

#[allow(dead_code)]
#[path = "../examples/blocks.rs"]
mod blocks;

#[allow(dead_code)]
#[path = "../examples/parameters.rs"]
mod parameters;

#[allow(dead_code)]
#[path = "../examples/file_io.rs"]
mod file_io;

use tinycnn::nn::{Module, Sequential, StateDict};
use tinycnn::{Rng, Tensor};

fn input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_with(shape, &mut Rng::seed_from(seed))
}

// ----- blocks ------------------------------------------------------------------------------

#[test]
fn sequential_and_mlp_give_2x10_outputs_with_addmm_grad_fn() {
    let x = input(&[2, 20], 0);
    for y in [
        blocks::sequential_mlp().forward(&x).unwrap(),
        blocks::Mlp::new().forward(&x).unwrap(),
    ] {
        assert_eq!(y.shape(), &[2, 10]);
        assert_eq!(y.grad_fn(), Some("AddmmBackward0"));
        assert!(y.to_string().ends_with("grad_fn=<AddmmBackward0>)"), "{y}");
    }
}

#[test]
fn fixed_hidden_mlp_returns_a_scalar_of_magnitude_at_most_1() {
    let net = blocks::FixedHiddenMlp::new();
    // rand_weight is a constant, not a parameter; only the (shared) linear layer is.
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["linear.weight", "linear.bias"]);
    assert!(!net.rand_weight.requires_grad());
    let y = net.forward(&input(&[2, 20], 1)).unwrap();
    assert_eq!(y.shape(), &[] as &[usize]);
    assert!(y.item().unwrap().abs() <= 1.0);
    assert_eq!(y.grad_fn(), Some("SumBackward0"));
    let s = y.to_string();
    assert!(
        s.starts_with("tensor(") && s.ends_with(", grad_fn=<SumBackward0>)"),
        "{s}"
    );
    // Gradients reach the shared layer through both uses.
    y.backward().unwrap();
    assert!(net.linear.weight.grad().is_some());
    assert!(net.rand_weight.grad().is_none());
}

#[test]
fn chimera_mixes_blocks_and_prints_nested() {
    let chimera = blocks::chimera();
    let y = chimera.forward(&input(&[2, 20], 2)).unwrap();
    assert_eq!(y.shape(), &[] as &[usize]);
    assert!(y.item().unwrap().abs() <= 1.0);
    assert_eq!(
        chimera.repr(),
        "Sequential(\n  (0): NestMLP(\n    (net): Sequential(\n      (0): Linear(in_features=20, out_features=64, bias=True)\n      (1): ReLU()\n      (2): Linear(in_features=64, out_features=32, bias=True)\n      (3): ReLU()\n    )\n    (linear): Linear(in_features=32, out_features=16, bias=True)\n  )\n  (1): Linear(in_features=16, out_features=20, bias=True)\n  (2): FixedHiddenMLP(\n    (linear): Linear(in_features=20, out_features=20, bias=True)\n  )\n)"
    );
}

// ----- parameters --------------------------------------------------------------------------

#[test]
fn parameter_names_and_shapes() {
    let net = parameters::net();
    assert_eq!(net.forward(&input(&[2, 4], 3)).unwrap().shape(), &[2, 1]);
    assert_eq!(
        parameters::names_and_shapes(&net[0]),
        "('weight', torch.Size([8, 4])) ('bias', torch.Size([8]))"
    );
    assert_eq!(
        parameters::names_and_shapes(&net),
        "('0.weight', torch.Size([8, 4])) ('0.bias', torch.Size([8])) ('2.weight', torch.Size([1, 8])) ('2.bias', torch.Size([1]))"
    );
}

#[test]
fn one_layer_state_dict_and_parameter_printout() {
    let net = parameters::net();
    let out = parameters::linear(&net, 2);
    // Known values so the printout can be compared with the notebook's text.
    let w = [
        -0.2116, 0.3448, 0.0726, -0.0626, -0.2922, 0.3172, 0.3025, -0.3025,
    ];
    tinycnn::no_grad(|| {
        out.weight.copy_(&Tensor::new([w])).unwrap();
        out.bias
            .as_ref()
            .unwrap()
            .copy_(&Tensor::new([-0.3315]))
            .unwrap();
    });
    assert_eq!(
        net[2].state_dict().to_string(),
        "OrderedDict([('weight', tensor([[-0.2116,  0.3448,  0.0726, -0.0626, -0.2922,  0.3172,  0.3025, -0.3025]])), ('bias', tensor([-0.3315]))])"
    );
    let bias = out.bias.as_ref().unwrap();
    assert_eq!(bias.to_string(), "tensor([-0.3315], requires_grad=True)");
    // print(type(net[2].bias)): std's type names are not guaranteed, so only the end.
    let kind = parameters::parameter_type(bias);
    assert!(kind.ends_with("Tensor, requires_grad=True"), "{kind}");
    assert_eq!(bias.detach().to_string(), "tensor([-0.3315])");
    assert!(out.weight.grad().is_none()); // net[2].weight.grad == None
    let sd = net.state_dict();
    assert_eq!(sd.get("2.bias").unwrap().to_string(), "tensor([-0.3315])");
    let keys: Vec<&str> = sd.keys().collect();
    assert_eq!(keys, ["0.weight", "0.bias", "2.weight", "2.bias"]);
}

const RGNET_REPR: &str = "Sequential(
  (0): Sequential(
    (block0): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
    (block1): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
    (block2): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
    (block3): Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=4, bias=True)
      (3): ReLU()
    )
  )
  (1): Linear(in_features=4, out_features=1, bias=True)
)";

#[test]
fn nested_rgnet_prints_like_pytorch() {
    let rgnet = parameters::rgnet().unwrap();
    assert_eq!(rgnet.repr(), RGNET_REPR);
    assert_eq!(rgnet.to_string(), RGNET_REPR);
    assert_eq!(rgnet.forward(&input(&[2, 4], 4)).unwrap().shape(), &[2, 1]);
    // rgnet[0][1][0].bias.data: the first layer of block1.
    let block = rgnet[0].downcast_ref::<Sequential>().unwrap();
    let block1 = block[1].downcast_ref::<Sequential>().unwrap();
    let bias = parameters::linear(block1, 0).bias.as_ref().unwrap();
    assert_eq!(bias.shape(), &[8]);
    let sd = rgnet.state_dict();
    assert!(sd.get("0.block1.0.bias").unwrap().equal(&bias.detach()));
    assert_eq!(sd.len(), 4 * 4 + 2);
}

#[test]
fn init_normal_then_constant_42_and_xavier() {
    let net = parameters::net();
    net.apply(&mut parameters::init_normal).unwrap();
    let l0 = parameters::linear(&net, 0);
    let w = l0.weight.to_vec();
    assert!(w.iter().all(|v| v.abs() < 0.06), "N(0, 0.01) draws: {w:?}");
    assert!(w.iter().any(|&v| v != 0.0));
    assert_eq!(l0.bias.as_ref().unwrap().to_vec(), [0.0; 8]);
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

    net.apply(&mut parameters::init_constant(1.0)).unwrap();
    assert_eq!(l0.weight.to_vec(), [1.0; 32]);

    net[0].apply(&mut parameters::init_xavier).unwrap();
    net[2].apply(&mut parameters::init_constant(42.0)).unwrap();
    // Xavier bound for [8, 4]: sqrt(6 / (4 + 8)).
    let bound = (6.0f32 / 12.0).sqrt();
    let w = l0.weight.to_vec();
    assert!(w.iter().all(|v| v.abs() <= bound), "{w:?}");
    assert!(w.windows(2).any(|p| p[0] != p[1]));
    let w2 = &parameters::linear(&net, 2).weight;
    assert_eq!(
        w2.detach().to_string(),
        "tensor([[42., 42., 42., 42., 42., 42., 42., 42.]])"
    );
}

#[test]
fn custom_init_keeps_only_large_weights() {
    let net = parameters::net();
    net.apply(&mut parameters::my_init).unwrap();
    for i in [0, 2] {
        let w = parameters::linear(&net, i).weight.to_vec();
        assert!(
            w.iter()
                .all(|&v| v == 0.0 || (5.0..=10.0).contains(&v.abs())),
            "{w:?}"
        );
    }
}

#[test]
fn shared_parameters_are_one_tensor() {
    let net = parameters::shared_net();
    net.forward(&input(&[2, 4], 5)).unwrap();
    let (a, b) = (
        &parameters::linear(&net, 2).weight,
        &parameters::linear(&net, 4).weight,
    );
    assert!(a.same(b));
    let row = "tensor([True, True, True, True, True, True, True, True])";
    let (a0, b0) = (a.select(0, 0).unwrap(), b.select(0, 0).unwrap());
    assert_eq!(parameters::eq_row_string(&a0, &b0).unwrap(), row);
    tinycnn::no_grad(|| a.update_(|w| w[0] = 100.0)).unwrap();
    assert_eq!(b.get(&[0, 0]).unwrap(), 100.0);
    let (a0, b0) = (a.select(0, 0).unwrap(), b.select(0, 0).unwrap());
    assert_eq!(parameters::eq_row_string(&a0, &b0).unwrap(), row);
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["0.weight", "0.bias", "2.weight", "2.bias", "6.weight", "6.bias"]
    );
    // Both uses add to the one gradient.
    net.forward(&input(&[2, 4], 6))
        .unwrap()
        .sum_all()
        .backward()
        .unwrap();
    assert!(a.grad().is_some());
}

// ----- file_io -----------------------------------------------------------------------------

#[test]
fn tensor_list_and_dict_round_trips() {
    let dir = file_io::scratch_dir("test-tensors").unwrap();
    let x = Tensor::arange(4);
    let x2 = file_io::tensor_round_trip(&dir, &x).unwrap();
    assert!(x2.equal(&x));
    // PyTorch prints tensor([0, 1, 2, 3]) for its int64 arange; the runtime is f32-only.
    assert_eq!(x2.to_string(), "tensor([0., 1., 2., 3.])");
    let y = Tensor::zeros(&[4]);
    let xs = file_io::list_round_trip(&dir, &[x.clone(), y.clone()]).unwrap();
    assert_eq!(xs.len(), 2);
    assert!(xs[0].equal(&x) && xs[1].equal(&y));
    let dict = StateDict::from_entries(vec![("x".into(), x.clone()), ("y".into(), y.clone())]);
    let dict2 = file_io::dict_round_trip(&dir, &dict).unwrap();
    let keys: Vec<&str> = dict2.keys().collect();
    assert_eq!(keys, ["x", "y"]);
    assert!(dict2.get("x").unwrap().equal(&x) && dict2.get("y").unwrap().equal(&y));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn state_dict_round_trip_gives_equal_outputs() {
    let dir = file_io::scratch_dir("test-mlp").unwrap();
    let net = file_io::Mlp::new();
    let x = Tensor::randn_with(&[2, 20], &mut Rng::seed_from(7));
    let y = net.forward(&x).unwrap();
    let clone = file_io::model_round_trip(&dir, &net).unwrap();
    assert_eq!(
        clone.repr(),
        "MLP(\n  (hidden): Linear(in_features=20, out_features=256, bias=True)\n  (output): Linear(in_features=256, out_features=10, bias=True)\n)"
    );
    let y_clone = clone.forward(&x).unwrap();
    assert!(y_clone.equal(&y));
    let row = "[True, True, True, True, True, True, True, True, True, True]";
    assert_eq!(
        file_io::bool_string(&y_clone.eq_elem(&y).unwrap()),
        format!("tensor([{row},\n        {row}])")
    );
    for ((k1, a), (k2, b)) in net.state_dict().iter().zip(clone.state_dict().iter()) {
        assert_eq!(k1, k2);
        assert!(a.equal(b), "{k1}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loading_a_mismatched_state_dict_is_an_error() {
    let mut sd = file_io::Mlp::new().state_dict();
    sd.insert("hidden.weight", Tensor::zeros(&[3, 3]));
    let err = file_io::Mlp::new()
        .load_state_dict(&sd)
        .unwrap_err()
        .to_string();
    assert!(err.contains("hidden.weight"), "{err}");
}
