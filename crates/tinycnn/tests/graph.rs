//! `nn::Graph` (a network built from an `Architecture`) and `Architecture::from_module`.

use tinycnn::nn::arch::{Architecture, LayerSpec, Node};
use tinycnn::nn::{
    Conv2d, Flatten, Graph, Linear, MaxPool2d, Module, ReLU, Reshape, Sequential, StateDict,
};
use tinycnn::{manual_seed, no_grad, Result, Tensor};

fn keys_and_shapes(m: &dyn Module) -> Vec<(String, Vec<usize>)> {
    m.state_dict()
        .iter()
        .map(|(k, t)| (k.to_string(), t.shape().to_vec()))
        .collect()
}

fn linear(i: usize, o: usize) -> LayerSpec {
    LayerSpec::Linear {
        in_features: i,
        out_features: o,
        bias: true,
    }
}

#[test]
fn lenet_as_a_graph_has_its_keys_weights_and_outputs() {
    manual_seed(3);
    let net = tinycnn_models::lenet();
    let arch = Architecture::from_module(&net, &[1, 28, 28]).unwrap();
    let names: Vec<&str> = arch.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]
    );
    assert!(arch.is_chain());
    assert_eq!(
        arch.nodes[0].layer,
        LayerSpec::Conv2d {
            in_channels: 1,
            out_channels: 6,
            kernel: (5, 5),
            stride: (1, 1),
            padding: (2, 2),
            dilation: (1, 1),
            groups: 1,
            bias: true
        }
    );
    assert_eq!(
        arch.nodes[2].layer,
        LayerSpec::AvgPool2d {
            kernel: (2, 2),
            stride: (2, 2),
            padding: (0, 0),
            count_include_pad: true
        }
    );
    assert_eq!(arch.nodes[7].layer, linear(400, 120));
    // d2l's shape walk.
    let shapes = arch.node_shapes(1).unwrap();
    assert_eq!(shapes[0], [1, 6, 28, 28]);
    assert_eq!(shapes[2], [1, 6, 14, 14]);
    assert_eq!(shapes[5], [1, 16, 5, 5]);
    assert_eq!(shapes[6], [1, 400]);
    assert_eq!(shapes[11], [1, 10]);

    // Through the JSON a weight file stores.
    let arch = Architecture::from_json(&arch.to_json().unwrap()).unwrap();
    // Same seed, same draws in the same order: the same initial weights.
    manual_seed(3);
    let graph = Graph::new(&arch).unwrap();
    assert_eq!(keys_and_shapes(&graph), keys_and_shapes(&net));
    for ((k, a), (_, b)) in graph.state_dict().iter().zip(net.state_dict().iter()) {
        assert!(a.equal(b), "{k}");
    }
    // Other weights, then the Sequential's loaded: the Sequential's outputs.
    manual_seed(4);
    let graph = Graph::new(&arch).unwrap();
    let x = Tensor::rand(&[3, 1, 28, 28]);
    let want = no_grad(|| net.forward(&x)).unwrap();
    assert!(!no_grad(|| graph.forward(&x)).unwrap().equal(&want));
    graph.load_state_dict(&net.state_dict()).unwrap();
    assert!(no_grad(|| graph.forward(&x)).unwrap().equal(&want));
    assert_eq!(graph.architecture(), &arch);
    assert_eq!(
        Architecture::from_module(&graph, &[1, 28, 28]).unwrap(),
        arch
    );
    assert!(graph.layer("7").unwrap().is::<Linear>());
    assert_eq!(graph.num_parameters(), 61706);
}

#[test]
fn nested_sequentials_keep_their_dotted_keys() {
    let mut features = Sequential::new();
    features.push(Conv2d::new(1, 2, 3).unwrap());
    features.push(ReLU);
    features.push(MaxPool2d::new(2));
    let mut net = Sequential::new();
    net.add_module("features", features).unwrap();
    net.add_module("flat", Flatten::new()).unwrap();
    net.add_module("head", Sequential::new().append(Linear::new(2 * 3 * 3, 4)))
        .unwrap();
    let arch = Architecture::from_module(&net, &[1, 8, 8]).unwrap();
    let names: Vec<&str> = arch.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["features.0", "features.1", "features.2", "flat", "head.0"]
    );
    let graph = Graph::new(&arch).unwrap();
    assert_eq!(keys_and_shapes(&graph), keys_and_shapes(&net));
    graph.load_state_dict(&net.state_dict()).unwrap();
    let x = Tensor::randn(&[2, 1, 8, 8]);
    assert!(graph.forward(&x).unwrap().equal(&net.forward(&x).unwrap()));
    let names: Vec<String> = graph.named_modules().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "",
            "features.0",
            "features.1",
            "features.2",
            "flat",
            "head.0"
        ]
    );

    // A Graph inside a Sequential: its nodes under the Graph's path, inputs renumbered.
    let outer = Sequential::new()
        .append(Flatten::new())
        .append(Graph::new(&residual_arch()).unwrap());
    let arch = Architecture::from_module(&outer, &[2]).unwrap();
    assert_eq!(
        arch.nodes
            .iter()
            .map(|n| (n.name.as_str(), n.inputs.clone()))
            .collect::<Vec<_>>(),
        [
            ("0", vec![0]),
            ("1.fc", vec![1]),
            ("1.act", vec![2]),
            ("1.sum", vec![1, 3])
        ]
    );
}

/// `y = x + relu(W x + b)` for 2 features.
fn residual_arch() -> Architecture {
    Architecture {
        input: vec![2],
        nodes: vec![
            Node::new("fc", linear(2, 2), vec![0]),
            Node::new("act", LayerSpec::ReLU, vec![1]),
            Node::new("sum", LayerSpec::Add, vec![0, 2]),
        ],
    }
}

#[test]
fn residual_graph_adds_its_input_forward_and_backward() -> Result<()> {
    let graph = Graph::new(&residual_arch())?;
    let mut sd = StateDict::new();
    sd.insert("fc.weight", Tensor::new([[1.0, 2.0], [-3.0, 0.5]]));
    sd.insert("fc.bias", Tensor::new([0.5, -1.0]));
    graph.load_state_dict(&sd)?;
    let x = Tensor::new([[1.0, 1.0], [2.0, -2.0]]).requires_grad_(true)?;
    let y = graph.forward(&x)?;
    // Row 1: W x + b = [3.5, -3.5], relu [3.5, 0], plus x: [4.5, 1].
    // Row 2: W x + b = [-1.5, -8], relu [0, 0], plus x: [2, -2].
    assert_eq!(y.to_vec(), [4.5, 1.0, 2.0, -2.0]);
    y.sum_all().backward()?;
    // d sum / dx = 1 + W^T relu'(.): row 1 has only unit 0 active: 1 + [1, 2]; row 2 none.
    assert_eq!(x.grad().unwrap().to_vec(), [2.0, 3.0, 1.0, 1.0]);
    // The layer's gradients: only unit 0 of row 1 is active, with input [1, 1].
    let fc = graph.layer("fc").unwrap().downcast_ref::<Linear>().unwrap();
    assert_eq!(fc.weight.grad().unwrap().to_vec(), [1.0, 1.0, 0.0, 0.0]);
    assert_eq!(
        fc.bias.as_ref().unwrap().grad().unwrap().to_vec(),
        [1.0, 0.0]
    );
    Ok(())
}

#[test]
fn reshape_copies_zeros_and_infers_minus_one() -> Result<()> {
    let arch = Architecture {
        input: vec![2, 3, 4],
        nodes: vec![
            Node::new("r", LayerSpec::Reshape { shape: vec![0, -1] }, vec![0]),
            Node::new("fc", linear(24, 5), vec![1]),
        ],
    };
    assert_eq!(arch.node_shapes(7)?, [vec![7, 24], vec![7, 5]]);
    let graph = Graph::new(&arch)?;
    assert_eq!(
        graph.forward(&Tensor::zeros(&[7, 2, 3, 4]))?.shape(),
        &[7, 5]
    );
    let r = Reshape {
        shape: vec![0, 0, 2, -1],
    };
    assert_eq!(
        r.forward(&Tensor::zeros(&[2, 3, 4]))?.shape(),
        &[2, 3, 2, 2]
    );
    assert!(r.forward(&Tensor::zeros(&[2])).is_err());
    let bad = Architecture {
        input: vec![5],
        nodes: vec![Node::new(
            "r",
            LayerSpec::Reshape { shape: vec![-1, 2] },
            vec![0],
        )],
    };
    let e = Graph::new(&bad).err().unwrap().to_string();
    assert!(
        e.contains("layer `r` (Reshape)") && e.contains("[1, 5]"),
        "{e}"
    );
    Ok(())
}

#[test]
fn a_layer_that_does_not_fit_its_input_is_named() {
    let mut arch = Architecture::from_module(&tinycnn_models::lenet(), &[1, 28, 28]).unwrap();
    arch.nodes[7].layer = linear(300, 120);
    let e = Graph::new(&arch).err().unwrap().to_string();
    assert!(
        e.contains("layer `7` (Linear)") && e.contains("in_features is 300") && e.contains("400"),
        "{e}"
    );
    // Flatten left out: the Linear sees a 4-D input.
    let mut no_flatten = Architecture::from_module(&tinycnn_models::lenet(), &[1, 28, 28]).unwrap();
    no_flatten.nodes[6].layer = LayerSpec::Identity;
    let e = Graph::new(&no_flatten).err().unwrap().to_string();
    assert!(e.contains("layer `7`") && e.contains("Flatten"), "{e}");
    // 3-channel images into LeNet's first convolution.
    let e = Architecture::from_module(&tinycnn_models::lenet(), &[3, 28, 28])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layer `0` (Conv2d)")
            && e.contains("in_channels is 1")
            && e.contains("3 channels"),
        "{e}"
    );
    // Images too small for the second convolution (4x4 after the first pooling).
    let e = Architecture::from_module(&tinycnn_models::lenet(), &[1, 4, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer `3` (Conv2d)"), "{e}");
    // An Add of two shapes.
    let bad = Architecture {
        input: vec![4],
        nodes: vec![
            Node::new("fc", linear(4, 3), vec![0]),
            Node::new("sum", LayerSpec::Add, vec![0, 1]),
        ],
    };
    let e = Graph::new(&bad).err().unwrap().to_string();
    assert!(
        e.contains("layer `sum` (Add)") && e.contains("[1, 4]") && e.contains("[1, 3]"),
        "{e}"
    );
    // Structure errors come from Architecture::validate.
    let bad = Architecture {
        input: vec![4],
        nodes: vec![Node::new("fc", linear(4, 3), vec![1])],
    };
    assert!(Graph::new(&bad).is_err());
}

#[test]
fn forward_errors_name_the_layer() {
    let graph = Graph::new(&residual_arch()).unwrap();
    let e = graph
        .forward(&Tensor::zeros(&[1, 3]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer `fc` (Linear)"), "{e}");
}

/// A module type the architecture does not know.
struct Doubler;
impl Module for Doubler {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.mul_scalar(2.0))
    }
}

#[test]
fn an_unknown_module_type_is_an_error_naming_its_path() {
    let mut inner = Sequential::new();
    inner.push(Linear::new(4, 4));
    inner.push(Doubler);
    let mut net = Sequential::new();
    net.add_module("block", inner).unwrap();
    let e = Architecture::from_module(&net, &[4])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("module `block.1`") && e.contains("Doubler"),
        "{e}"
    );
    let e = Architecture::from_module(&Doubler, &[4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("top-level") && e.contains("Doubler"), "{e}");
    let e = Architecture::from_module(&Linear::new(4, 2), &[4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("wrap it in a Sequential"), "{e}");
    let e = Architecture::from_module(&Sequential::new(), &[4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no layers"), "{e}");
}
