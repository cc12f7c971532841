//! `nn::Graph` (a network built from an `Architecture`) and `Architecture::from_module`.

use tinycnn::nn::arch::{Architecture, LayerSpec, Node};
use tinycnn::nn::{
    depthwise_separable, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Graph, Linear,
    MaxPool2d, Module, ReLU, ReLU6, Reshape, Residual, Sequential, StateDict,
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

/// A small CNN with every layer an architecture describes: batch norm, ReLU6, residual
/// blocks with and without a projection, a depthwise-separable block, both poolings,
/// dropout.
fn every_layer_net() -> Sequential {
    let conv = |i, o, k, pad, bias| {
        Conv2d::with(
            tinycnn::Conv2dParams::new(i, o, (k, k)).with_padding((pad, pad)),
            bias,
        )
        .unwrap()
    };
    let mut net = Sequential::new();
    net.push(conv(1, 4, 3, 1, false));
    net.push(BatchNorm2d::new(4));
    net.push(ReLU6);
    net.push(Residual::new(
        Sequential::new()
            .append(conv(4, 4, 3, 1, true))
            .append(BatchNorm2d::new(4).momentum(None))
            .append(ReLU),
    ));
    net.push(Residual::new(conv(4, 6, 3, 1, false)).with_shortcut(conv(4, 6, 1, 0, false)));
    net.push(depthwise_separable(6, 8, 2).unwrap());
    net.push(MaxPool2d::new(2));
    net.push(AdaptiveAvgPool2d::new((1, 1)));
    net.push(Flatten::new());
    net.push(Dropout::new(0.25).unwrap());
    net.push(Linear::new(8, 3));
    net
}

#[test]
fn batch_norm_residual_blocks_and_the_other_layers_round_trip() {
    manual_seed(11);
    let net = every_layer_net();
    let arch = Architecture::from_module(&net, &[1, 8, 8]).unwrap();
    let summary: Vec<(&str, &str, Vec<usize>)> = arch
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.layer.type_name(), n.inputs.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("0", "Conv2d", vec![0]),
            ("1", "BatchNorm2d", vec![1]),
            ("2", "ReLU6", vec![2]),
            ("3.body.0", "Conv2d", vec![3]),
            ("3.body.1", "BatchNorm2d", vec![4]),
            ("3.body.2", "ReLU", vec![5]),
            ("3", "Add", vec![6, 3]),
            ("4.body", "Conv2d", vec![7]),
            ("4.shortcut", "Conv2d", vec![7]),
            ("4", "Add", vec![8, 9]),
            ("5.0", "Conv2d", vec![10]),
            ("5.1", "BatchNorm2d", vec![11]),
            ("5.2", "ReLU", vec![12]),
            ("5.3", "Conv2d", vec![13]),
            ("5.4", "BatchNorm2d", vec![14]),
            ("5.5", "ReLU", vec![15]),
            ("6", "MaxPool2d", vec![16]),
            ("7", "AdaptiveAvgPool2d", vec![17]),
            ("8", "Flatten", vec![18]),
            ("9", "Dropout", vec![19]),
            ("10", "Linear", vec![20]),
        ]
    );
    assert_eq!(
        arch.nodes[4].layer,
        LayerSpec::BatchNorm2d {
            num_features: 4,
            eps: 1e-5,
            momentum: None,
            affine: true,
            track_running_stats: true
        }
    );
    assert_eq!(arch.nodes[19].layer, LayerSpec::Dropout { p: 0.25 });
    let shapes = arch.node_shapes(2).unwrap();
    assert_eq!(shapes[9], [2, 6, 8, 8]);
    assert_eq!(shapes[15], [2, 8, 4, 4]);
    assert_eq!(shapes[17], [2, 8, 1, 1]);
    assert_eq!(shapes[20], [2, 3]);

    let arch = Architecture::from_json(&arch.to_json().unwrap()).unwrap();
    let graph = Graph::new(&arch).unwrap();
    // Buffers included, in PyTorch's order.
    assert_eq!(keys_and_shapes(&graph), keys_and_shapes(&net));
    let keys: Vec<String> = graph.state_dict().keys().map(String::from).collect();
    assert!(
        keys.contains(&"3.body.1.num_batches_tracked".to_string()),
        "{keys:?}"
    );

    // A training-mode forward moves the running statistics (so they are non-trivial), then
    // the graph takes every tensor and, in evaluation mode, gives the same outputs.
    let x = Tensor::randn(&[5, 1, 8, 8]);
    net.eval();
    for (_, m) in net.named_modules() {
        if m.is::<BatchNorm2d>() {
            m.set_training(true);
        }
    }
    net.forward(&x).unwrap();
    net.eval();
    graph.load_state_dict(&net.state_dict()).unwrap();
    graph.eval();
    let want = no_grad(|| net.forward(&x)).unwrap();
    let got = no_grad(|| graph.forward(&x)).unwrap();
    assert!(got.equal(&want));
    assert_eq!(
        graph
            .state_dict()
            .get("1.num_batches_tracked")
            .unwrap()
            .to_vec(),
        [1.0]
    );
    // Training mode reaches the graph's batch norms: a training forward counts a batch.
    graph.train();
    graph.forward(&x).unwrap();
    assert_eq!(
        graph
            .state_dict()
            .get("1.num_batches_tracked")
            .unwrap()
            .to_vec(),
        [2.0]
    );
    assert_eq!(Architecture::from_module(&graph, &[1, 8, 8]).unwrap(), arch);
}

#[test]
fn a_residual_block_on_its_own_keeps_its_keys() {
    let block = Residual::new(Linear::new(3, 3));
    let arch = Architecture::from_module(&block, &[3]).unwrap();
    assert_eq!(
        arch.nodes,
        [
            Node::new("body", linear(3, 3), vec![0]),
            Node::new("add", LayerSpec::Add, vec![1, 0]),
        ]
    );
    let graph = Graph::new(&arch).unwrap();
    assert_eq!(keys_and_shapes(&graph), keys_and_shapes(&block));
    graph.load_state_dict(&block.state_dict()).unwrap();
    let x = Tensor::randn(&[4, 3]);
    assert!(graph
        .forward(&x)
        .unwrap()
        .equal(&block.forward(&x).unwrap()));
}

#[test]
fn layer_options_an_architecture_cannot_hold_are_errors() {
    let net = Sequential::new().append(BatchNorm2d::new(2).bias(false));
    let e = Architecture::from_module(&net, &[2, 4, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("module `0`") && e.contains("no bias"), "{e}");
    let bn = |eps: f32, momentum: Option<f32>| Architecture {
        input: vec![2, 4, 4],
        nodes: vec![Node::new(
            "bn",
            LayerSpec::BatchNorm2d {
                num_features: 2,
                eps,
                momentum,
                affine: true,
                track_running_stats: true,
            },
            vec![0],
        )],
    };
    assert!(Graph::new(&bn(1e-5, Some(0.1))).is_ok());
    for (eps, m) in [(f32::NAN, None), (-1.0, None), (1e-5, Some(1.5))] {
        let e = Graph::new(&bn(eps, m)).err().unwrap().to_string();
        assert!(e.contains("layer `bn` (BatchNorm2d)"), "{e}");
    }
    let e = Graph::new(&Architecture {
        input: vec![3],
        nodes: vec![Node::new("d", LayerSpec::Dropout { p: 2.0 }, vec![0])],
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("layer `d` (Dropout)"), "{e}");
    // A batch norm on a flat input.
    let e = Graph::new(&Architecture {
        input: vec![2],
        nodes: vec![Node::new(
            "bn",
            LayerSpec::BatchNorm2d {
                num_features: 2,
                eps: 1e-5,
                momentum: Some(0.1),
                affine: true,
                track_running_stats: true,
            },
            vec![0],
        )],
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("[N, C, H, W]"), "{e}");
}

/// Little-endian f32 values of a fixture file.
fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Every ONNX fixture (exported by PyTorch, or made with onnx.helper; see
/// scripts/onnx-fixtures.py) read by `tinycnn::onnx`, built as a Graph and run in evaluation
/// mode on the fixture's input: PyTorch's outputs (and onnxruntime's) within 1e-4.
#[test]
fn onnx_fixtures_run_as_graphs_with_pytorchs_outputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (name, entry) in manifest.as_object().unwrap() {
        let model = tinycnn::onnx::load(dir.join(entry["onnx"].as_str().unwrap())).unwrap();
        let graph = Graph::new(&model.architecture).unwrap_or_else(|e| panic!("{name}: {e}"));
        let state = StateDict::from_entries(
            model
                .tensors
                .iter()
                .map(|(k, shape, data)| (k.clone(), Tensor::from_vec(data.clone(), shape).unwrap()))
                .collect(),
        );
        graph
            .load_state_dict(&state)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        graph.eval();
        let dims = |key: &str| -> Vec<usize> {
            entry[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect()
        };
        let x = Tensor::from_vec(
            read_f32(&dir.join(entry["input"].as_str().unwrap())),
            &dims("input_shape"),
        )
        .unwrap();
        let y = no_grad(|| graph.forward(&x)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(y.shape(), dims("output_shape"), "{name}");
        for reference in ["torch", "ort"] {
            let Some(file) = entry.get(reference).and_then(|v| v.as_str()) else {
                continue;
            };
            let want = read_f32(&dir.join(file));
            let worst = y
                .to_vec()
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-4, "{name} vs {reference}: max error {worst}");
            checked += 1;
        }
    }
    // Every reference output the manifest lists was compared (PyTorch's for the models it
    // exported, onnxruntime's for all), and there are at least the original ten.
    let listed: usize = manifest
        .as_object()
        .unwrap()
        .values()
        .map(|e| {
            ["torch", "ort"]
                .iter()
                .filter(|r| e.get(**r).is_some())
                .count()
        })
        .sum();
    assert_eq!(checked, listed);
    assert!(
        checked >= 10,
        "only {checked} reference outputs in the manifest"
    );
}
