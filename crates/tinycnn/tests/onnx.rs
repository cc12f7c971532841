//! The ONNX reader and writer on models exported by PyTorch and made with onnx.helper
//! (tests/fixtures/onnx/, made by scripts/onnx-fixtures.py; see its docstring).

use std::path::{Path, PathBuf};
use tinycnn::nn::arch::{Architecture, LayerSpec, Node};
use tinycnn::onnx::{self, OnnxModel};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn load(name: &str) -> OnnxModel {
    onnx::load(fixtures().join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `(name, type, inputs)` of every layer.
fn layers(arch: &Architecture) -> Vec<(String, &'static str, Vec<usize>)> {
    arch.nodes
        .iter()
        .map(|n| (n.name.clone(), n.layer.type_name(), n.inputs.clone()))
        .collect()
}

fn chain(spec: &[(&str, &'static str)]) -> Vec<(String, &'static str, Vec<usize>)> {
    spec.iter()
        .enumerate()
        .map(|(i, (n, t))| (n.to_string(), *t, vec![i]))
        .collect()
}

fn conv(cin: usize, cout: usize, k: usize, pad: usize, groups: usize, bias: bool) -> LayerSpec {
    LayerSpec::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: (k, k),
        stride: (1, 1),
        padding: (pad, pad),
        dilation: (1, 1),
        groups,
        bias,
    }
}

fn bn(c: usize) -> LayerSpec {
    LayerSpec::BatchNorm2d {
        num_features: c,
        eps: 1e-5,
        momentum: Some(0.1),
        affine: true,
        track_running_stats: true,
    }
}

/// The small_* model of the fixture script with BatchNorm kept separate.
fn small_bn_expected() -> Vec<Node> {
    let mut nodes = vec![
        Node::new("stem.0", conv(1, 8, 3, 1, 1, false), vec![0]),
        Node::new("stem.1", bn(8), vec![1]),
        Node::new("stem.2", LayerSpec::ReLU6, vec![2]),
        Node::new("block.0", conv(8, 8, 3, 1, 8, false), vec![3]),
        Node::new("block.1", bn(8), vec![4]),
        Node::new("block.2", LayerSpec::ReLU6, vec![5]),
        Node::new("block.3", conv(8, 12, 1, 0, 1, false), vec![6]),
        Node::new("block.4", bn(12), vec![7]),
        Node::new("block.5", LayerSpec::ReLU6, vec![8]),
    ];
    let pool = LayerSpec::MaxPool2d {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    nodes.push(Node::new("pool1", pool, vec![9]));
    nodes.push(Node::new("res.0", conv(12, 12, 3, 1, 1, true), vec![10]));
    nodes.push(Node::new("res.1", bn(12), vec![11]));
    nodes.push(Node::new("res.2", LayerSpec::ReLU, vec![12]));
    nodes.push(Node::new("Add", LayerSpec::Add, vec![10, 13]));
    let avg = LayerSpec::AvgPool2d {
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
        count_include_pad: false,
    };
    nodes.push(Node::new("pool2", avg, vec![14]));
    let gap = LayerSpec::AdaptiveAvgPool2d { output: (1, 1) };
    nodes.push(Node::new("gap", gap, vec![15]));
    let flat = LayerSpec::Flatten {
        start_dim: 1,
        end_dim: -1,
    };
    nodes.push(Node::new("flatten", flat, vec![16]));
    let fc = LayerSpec::Linear {
        in_features: 12,
        out_features: 10,
        bias: true,
    };
    nodes.push(Node::new("fc", fc, vec![17]));
    nodes
}

#[test]
fn batchnorm_kept_separate_reads_as_pytorch_modules_with_their_state_dict() {
    let state = tinycnn::io::load(fixtures().join("small.state.safetensors")).unwrap();
    for name in ["small_bn", "small_bn_opset9"] {
        let m = load(name);
        assert_eq!(m.architecture.input, [1, 16, 16], "{name}");
        assert_eq!(m.architecture.nodes, small_bn_expected(), "{name}");
        // Every tensor is PyTorch's, under its state-dict name and in module order; the
        // one ONNX lacks, num_batches_tracked, reads as 0 (PyTorch's was 7).
        let keys: Vec<&str> = m.tensors.iter().map(|(k, _, _)| k.as_str()).collect();
        let torch_keys: Vec<&str> = state.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, torch_keys, "{name}");
        for (key, shape, data) in &m.tensors {
            let t = state.get(key).unwrap();
            if key.ends_with("num_batches_tracked") {
                assert_eq!((shape.as_slice(), data.as_slice()), (&[][..], &[0.0][..]));
                assert_eq!(t.to_vec(), [7.0]);
            } else {
                assert_eq!(shape.as_slice(), t.shape(), "{name}: {key}");
                assert_eq!(data, &t.to_vec(), "{name}: {key}");
            }
        }
    }
}

#[test]
fn batchnorm_folded_reads_as_biased_convolutions_named_by_scope() {
    let m = load("small_folded");
    let expected = chain(&[
        ("stem.0", "Conv2d"),
        ("stem.2", "ReLU6"),
        ("block.0", "Conv2d"),
        ("block.2", "ReLU6"),
        ("block.3", "Conv2d"),
        ("block.5", "ReLU6"),
        ("pool1", "MaxPool2d"),
        ("res.0", "Conv2d"),
        ("res.2", "ReLU"),
        ("Add", "Add"),
        ("pool2", "AvgPool2d"),
        ("gap", "AdaptiveAvgPool2d"),
        ("flatten", "Flatten"),
        ("fc", "Linear"),
    ]);
    let mut expected = expected;
    expected[9].2 = vec![7, 9]; // the residual sum reads the pooling and the block's ReLU
    assert_eq!(layers(&m.architecture), expected);
    assert_eq!(m.architecture.nodes[2].layer, conv(8, 8, 3, 1, 8, true));
    // BN folded into the convolution: w' = w * gamma / sqrt(var + eps),
    // b' = beta - mean * gamma / sqrt(var + eps) (from PyTorch's state dict).
    let state = tinycnn::io::load(fixtures().join("small.state.safetensors")).unwrap();
    let get = |k: &str| state.get(k).unwrap().to_vec();
    let (w, gamma, beta, mean, var) = (
        get("block.3.weight"),
        get("block.4.weight"),
        get("block.4.bias"),
        get("block.4.running_mean"),
        get("block.4.running_var"),
    );
    let tensor = |k: &str| m.tensors.iter().find(|(n, _, _)| n == k).unwrap();
    let (_, shape, folded_w) = tensor("block.3.weight");
    assert_eq!(shape, &[12, 8, 1, 1]);
    let (_, _, folded_b) = tensor("block.3.bias");
    for o in 0..12 {
        let s = gamma[o] / (var[o] + 1e-5).sqrt();
        for i in 0..8 {
            let want = w[o * 8 + i] * s;
            assert!((folded_w[o * 8 + i] - want).abs() <= 1e-5 * want.abs().max(1.0));
        }
        let want = beta[o] - mean[o] * s;
        assert!((folded_b[o] - want).abs() <= 1e-5 * want.abs().max(1.0));
    }
}

#[test]
fn matmul_add_reshape_and_activations_from_pytorch() {
    let m = load("seq_matmul");
    assert_eq!(m.architecture.input, [4, 6]);
    assert_eq!(
        layers(&m.architecture),
        chain(&[
            ("proj", "Linear"),
            ("act", "Tanh"),
            ("Reshape", "Flatten"),
            ("head", "Linear"),
            ("gate", "Sigmoid"),
            ("softmax", "Softmax"),
        ])
    );
    let lin = |i: usize, o: usize| LayerSpec::Linear {
        in_features: i,
        out_features: o,
        bias: true,
    };
    assert_eq!(m.architecture.nodes[0].layer, lin(6, 5));
    assert_eq!(m.architecture.nodes[3].layer, lin(20, 3));
    assert_eq!(m.architecture.nodes[5].layer, LayerSpec::Softmax { dim: 1 });
    let names: Vec<&str> = m.tensors.iter().map(|(k, _, _)| k.as_str()).collect();
    // MatMul's initializer is PyTorch's weight transposed; the layer is named by its scope.
    assert_eq!(
        names,
        ["proj.weight", "proj.bias", "head.weight", "head.bias"]
    );
    assert_eq!(m.tensors[0].1, [5, 6]);
}

#[test]
fn crafted_graphs_with_old_opsets_dropout_constants_and_gemm_trans_b_0() {
    let m = load("crafted/dropout_opset12");
    assert_eq!(
        layers(&m.architecture),
        chain(&[
            ("conv", "Conv2d"),
            ("drop", "Dropout"),
            ("same", "Identity"),
            ("flat", "Flatten"),
            ("fc_MatMul", "Linear"),
            ("prob", "Softmax"),
        ])
    );
    assert_eq!(m.architecture.nodes[1].layer, LayerSpec::Dropout { p: 0.3 });
    assert_eq!(m.architecture.nodes[0].layer, conv(2, 3, 3, 0, 1, true));
    let names: Vec<&str> = m.tensors.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "conv.bias",
            "fc_MatMul.weight",
            "fc_MatMul.bias"
        ]
    );

    let m = load("crafted/clip_attrs_opset10");
    assert_eq!(
        layers(&m.architecture),
        chain(&[
            ("relu6", "ReLU6"),
            ("drop", "Dropout"),
            ("flat", "Flatten"),
            ("head", "Linear"),
            ("prob", "Softmax"),
        ])
    );
    assert_eq!(m.architecture.nodes[1].layer, LayerSpec::Dropout { p: 0.1 });
    // Gemm with transB = 0 holds the weight as [in, out]: the layer's is its transpose.
    let bytes = std::fs::read(fixtures().join("crafted/clip_attrs_opset10.onnx")).unwrap();
    let (_, shape, w) = &m.tensors[0];
    assert_eq!(shape, &[4, 32]);
    let raw = initializer_floats(&bytes, "head.weight", 32 * 4);
    for o in 0..4 {
        for i in 0..32 {
            assert_eq!(w[o * 32 + i], raw[i * 4 + o]);
        }
    }
}

#[test]
fn a_shared_parameter_copied_by_identity_and_a_middle_axis_softmax() {
    let m = load("crafted/shared_weight_opset13");
    assert_eq!(
        layers(&m.architecture),
        chain(&[
            ("shared", "Conv2d"),
            ("shared_1", "Conv2d"),
            ("pool", "AvgPool2d"),
            ("Reshape", "Reshape"),
            ("softmax", "Softmax"),
            ("gate", "Sigmoid"),
        ])
    );
    assert_eq!(
        m.architecture.nodes[2].layer,
        LayerSpec::AvgPool2d {
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
            count_include_pad: true
        }
    );
    assert_eq!(
        m.architecture.nodes[3].layer,
        LayerSpec::Reshape {
            shape: vec![0, 2, -1]
        }
    );
    assert_eq!(m.architecture.nodes[4].layer, LayerSpec::Softmax { dim: 1 });
    // Both convolutions hold the one initializer's values.
    assert_eq!(m.tensors[0].0, "shared.weight");
    assert_eq!(m.tensors[1].0, "shared_1.weight");
    assert_eq!(m.tensors[0].2, m.tensors[1].2);
}

/// The raw little-endian floats that follow an initializer's name in a protobuf file (the
/// fixture script writes raw_data right after the name).
fn initializer_floats(bytes: &[u8], name: &str, n: usize) -> Vec<f32> {
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap();
    // name, then raw_data: tag 0x4a, a varint length, the bytes.
    let rest = &bytes[at + name.len()..];
    let start = rest.windows(2).position(|w| w[0] == 0x4a).unwrap() + 1;
    let (mut len, mut shift, mut p) = (0usize, 0, start);
    loop {
        let b = rest[p];
        len |= usize::from(b & 0x7f) << shift;
        p += 1;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    assert_eq!(len, n * 4);
    rest[p..p + len]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn unsupported_ops_attributes_and_opsets_are_errors_naming_the_node() {
    let text = std::fs::read_to_string(fixtures().join("crafted/errors.json")).unwrap();
    let errors: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(errors.len() >= 15);
    for (name, want) in &errors {
        let path = fixtures().join(format!("crafted/{name}.onnx"));
        let err = onnx::load(&path).expect_err(name).to_string();
        let want = want.as_str().unwrap();
        assert!(err.contains(want), "{name}: `{err}` lacks `{want}`");
        assert!(err.contains(&*path.to_string_lossy()), "{name}: {err}");
    }
}

#[test]
fn every_fixture_round_trips_through_the_writer() {
    for (name, _) in manifest().as_object().unwrap() {
        let m = load(name);
        let bytes = onnx::write(&m.architecture, &m.tensors).unwrap();
        let again = onnx::read(&bytes).unwrap();
        // Dropout is exported as Identity (an inference graph); nothing else changes.
        let mut want = m.clone();
        for n in &mut want.architecture.nodes {
            if let LayerSpec::Dropout { .. } = n.layer {
                n.layer = LayerSpec::Identity;
            }
        }
        assert_eq!(again, want, "{name}");
        // And the writer is deterministic.
        assert_eq!(
            onnx::write(&again.architecture, &again.tensors).unwrap(),
            bytes
        );
    }
}

fn tiny_arch(nodes: Vec<Node>) -> Architecture {
    Architecture {
        input: vec![2, 4, 4],
        nodes,
    }
}

#[test]
fn export_of_every_layer_kind_reads_back() {
    let arch = tiny_arch(vec![
        Node::new("c", conv(2, 4, 3, 1, 2, true), vec![0]),
        Node::new(
            "bn",
            LayerSpec::BatchNorm2d {
                num_features: 4,
                eps: 1e-3,
                momentum: Some(0.01),
                affine: true,
                track_running_stats: true,
            },
            vec![1],
        ),
        Node::new("r6", LayerSpec::ReLU6, vec![2]),
        Node::new("t", LayerSpec::Tanh, vec![3]),
        Node::new("add", LayerSpec::Add, vec![3, 4]),
        Node::new("s", LayerSpec::Sigmoid, vec![5]),
        Node::new(
            "ap",
            LayerSpec::AdaptiveAvgPool2d { output: (2, 2) },
            vec![6],
        ),
        Node::new(
            "mp",
            LayerSpec::MaxPool2d {
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
            },
            vec![7],
        ),
        Node::new(
            "f",
            LayerSpec::Flatten {
                start_dim: 2,
                end_dim: -1,
            },
            vec![8],
        ),
        Node::new(
            "lin",
            LayerSpec::Linear {
                in_features: 4,
                out_features: 3,
                bias: true,
            },
            vec![9],
        ),
        Node::new("sm", LayerSpec::Softmax { dim: -1 }, vec![10]),
    ]);
    let fill = |name: &str, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
        (name.to_string(), shape, data)
    };
    let tensors = vec![
        fill("c.weight", vec![4, 1, 3, 3]),
        fill("c.bias", vec![4]),
        fill("bn.weight", vec![4]),
        fill("bn.bias", vec![4]),
        fill("bn.running_mean", vec![4]),
        ("bn.running_var".into(), vec![4], vec![1.0, 2.0, 3.0, 4.0]),
        ("bn.num_batches_tracked".into(), vec![], vec![5.0]),
        fill("lin.weight", vec![3, 4]),
        fill("lin.bias", vec![3]),
    ];
    let bytes = onnx::write(&arch, &tensors).unwrap();
    let m = onnx::read(&bytes).unwrap();
    let kinds: Vec<&str> = m
        .architecture
        .nodes
        .iter()
        .map(|n| n.layer.type_name())
        .collect();
    assert_eq!(
        kinds,
        [
            "Conv2d",
            "BatchNorm2d",
            "ReLU6",
            "Tanh",
            "Add",
            "Sigmoid",
            // AdaptiveAvgPool2d((2, 2)) of 4x4 is a 2x2 average pooling, stride 2.
            "AvgPool2d",
            "MaxPool2d",
            // Flatten(2, -1) is a Reshape to [0, 4, 4].
            "Reshape",
            "Linear",
            "Softmax"
        ]
    );
    assert_eq!(m.architecture.nodes[..6], arch.nodes[..6]);
    assert_eq!(
        m.architecture.nodes[6].layer,
        LayerSpec::AvgPool2d {
            kernel: (2, 2),
            stride: (2, 2),
            padding: (0, 0),
            count_include_pad: false
        }
    );
    assert_eq!(
        m.architecture.nodes[8].layer,
        LayerSpec::Reshape {
            shape: vec![0, 4, 4]
        }
    );
    assert_eq!(
        m.architecture.nodes[10].layer,
        LayerSpec::Softmax { dim: 2 }
    );
    // num_batches_tracked is not in the graph: read back as 0.
    let mut want = tensors.clone();
    want[6].2 = vec![0.0];
    assert_eq!(m.tensors, want);
}

#[test]
fn export_errors_name_the_layer() {
    let arch = tiny_arch(vec![Node::new(
        "pool",
        LayerSpec::AdaptiveAvgPool2d { output: (3, 3) },
        vec![0],
    )]);
    let err = onnx::write(&arch, &[]).unwrap_err().to_string();
    assert!(err.contains("layer `pool` (AdaptiveAvgPool2d)"), "{err}");

    let arch = tiny_arch(vec![Node::new("c", conv(2, 4, 3, 1, 1, false), vec![0])]);
    let err = onnx::write(&arch, &[]).unwrap_err().to_string();
    assert!(err.contains("missing tensor `c.weight`"), "{err}");
    let bad = vec![("c.weight".to_string(), vec![4, 2, 3], vec![0.0; 24])];
    let err = onnx::write(&arch, &bad).unwrap_err().to_string();
    assert!(
        err.contains("tensor `c.weight` has shape [4, 2, 3]"),
        "{err}"
    );
    let extra = vec![
        ("c.weight".to_string(), vec![4, 2, 3, 3], vec![0.0; 72]),
        ("d.weight".to_string(), vec![1], vec![0.0]),
    ];
    let err = onnx::write(&arch, &extra).unwrap_err().to_string();
    assert!(
        err.contains("tensor `d.weight` belongs to no layer"),
        "{err}"
    );

    let arch = tiny_arch(vec![Node::new("c", conv(3, 4, 3, 1, 1, false), vec![0])]);
    let err = onnx::write(&arch, &[]).unwrap_err().to_string();
    assert!(
        err.contains("layer `c` (Conv2d): input has 2 channels"),
        "{err}"
    );
}

#[test]
fn save_and_load_through_a_file() {
    let m = load("small_bn");
    let dir = std::env::temp_dir().join(format!("tinycnn-onnx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.onnx");
    onnx::save(&path, &m.architecture, &m.tensors).unwrap();
    assert_eq!(onnx::load(&path).unwrap(), m);
    std::fs::remove_dir_all(&dir).unwrap();
    let err = onnx::load(dir.join("missing.onnx"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.onnx"), "{err}");
}

#[test]
fn truncated_and_corrupted_files_are_errors() {
    let bytes = std::fs::read(fixtures().join("small_bn.onnx")).unwrap();
    for len in (0..bytes.len()).step_by(7) {
        let _ = onnx::read(&bytes[..len]);
    }
    let mut rng = tinycnn::Rng::seed_from(0);
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..4 {
            let at = rng.below(b.len());
            b[at] = rng.next_u64() as u8;
        }
        let _ = onnx::read(&b);
    }
    assert!(onnx::read(b"not a model").is_err());
    assert!(onnx::read(&[]).is_err());
}

#[test]
fn trained_fashion_mnist_dscnn_reads_with_its_sequential_names() {
    let m = load("fmnist_dscnn");
    assert_eq!(m.architecture.input, [1, 28, 28]);
    let dw = |p: &str| -> Vec<(String, &'static str)> {
        [
            "Conv2d",
            "BatchNorm2d",
            "ReLU6",
            "Conv2d",
            "BatchNorm2d",
            "ReLU6",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{p}.{i}"), *t))
        .collect()
    };
    let mut want: Vec<(String, &'static str)> = vec![
        ("0".into(), "Conv2d"),
        ("1".into(), "BatchNorm2d"),
        ("2".into(), "ReLU6"),
        ("3".into(), "MaxPool2d"),
    ];
    want.extend(dw("4"));
    want.push(("5".into(), "AvgPool2d"));
    want.extend(dw("6"));
    // Dropout (9) is gone: PyTorch exports the eval-mode model without it.
    want.extend([
        ("7".into(), "AdaptiveAvgPool2d"),
        ("8".into(), "Flatten"),
        ("10".into(), "Linear"),
    ]);
    let want: Vec<(&str, &'static str)> = want.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    assert_eq!(layers(&m.architecture), chain(&want));
    assert_eq!(m.architecture.nodes[4].layer, conv(24, 24, 3, 1, 24, false));
    assert_eq!(m.architecture.nodes[7].layer, conv(24, 48, 1, 0, 1, false));
    let params: usize = m
        .tensors
        .iter()
        .filter(|(k, _, _)| !k.contains("running") && !k.ends_with("num_batches_tracked"))
        .map(|(_, _, d)| d.len())
        .sum();
    // 24*9 + 48 | 24*9 + 48 + 24*48 + 96 | 48*9 + 96 + 48*64 + 128 | 64*10 + 10
    assert_eq!(params, 264 + 1512 + 3728 + 650);
}

// ----- numbers: tinycnn's Graph on the imported models vs onnxruntime and PyTorch --------

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `m` as a tinycnn network in evaluation mode, its weights loaded.
fn graph_of(m: &OnnxModel) -> tinycnn::nn::Graph {
    use tinycnn::nn::{Module, StateDict};
    let net = tinycnn::nn::Graph::new(&m.architecture).unwrap();
    let state = StateDict::from_entries(
        m.tensors
            .iter()
            .map(|(k, s, d)| (k.clone(), tinycnn::Tensor::from_vec(d.clone(), s).unwrap()))
            .collect(),
    );
    net.load_state_dict(&state).unwrap();
    net.eval();
    net
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0.0,
            |m: f32, d| if d.is_nan() { f32::NAN } else { m.max(d) },
        )
}

#[test]
fn imported_models_compute_onnxruntimes_outputs_within_1e_4() {
    use tinycnn::nn::Module;
    for (name, e) in manifest().as_object().unwrap() {
        let m = load(name);
        let shape: Vec<usize> = serde_json::from_value(e["input_shape"].clone()).unwrap();
        let x = read_f32(&fixtures().join(e["input"].as_str().unwrap()));
        let want = read_f32(&fixtures().join(e["ort"].as_str().unwrap()));
        let net = graph_of(&m);
        let y = tinycnn::no_grad(|| net.forward(&tinycnn::Tensor::from_vec(x, &shape).unwrap()))
            .unwrap();
        let out_shape: Vec<usize> = serde_json::from_value(e["output_shape"].clone()).unwrap();
        assert_eq!(y.shape(), out_shape.as_slice(), "{name}");
        let diff = max_abs_diff(&y.to_vec(), &want);
        assert!(
            diff <= 1e-4,
            "{name}: tinycnn vs onnxruntime differ by {diff}"
        );
        // The export of the imported model computes the same in tinycnn.
        let again = onnx::read(&onnx::write(&m.architecture, &m.tensors).unwrap()).unwrap();
        let y2 = tinycnn::no_grad(|| {
            graph_of(&again).forward(&tinycnn::Tensor::from_vec(
                read_f32(&fixtures().join(e["input"].as_str().unwrap())),
                &shape,
            )?)
        })
        .unwrap();
        assert_eq!(
            y2.to_vec(),
            y.to_vec(),
            "{name}: export changed the numbers"
        );
    }
}

#[test]
fn trained_dscnn_gives_pytorchs_logits_on_the_first_test_images() {
    use tinycnn::nn::Module;
    let e = &manifest()["fmnist_dscnn"];
    let x = read_f32(&fixtures().join("fmnist_dscnn.input.bin"));
    let want = read_f32(&fixtures().join("fmnist_dscnn.torch.bin"));
    let net = graph_of(&load("fmnist_dscnn"));
    let y =
        tinycnn::no_grad(|| net.forward(&tinycnn::Tensor::from_vec(x, &[16, 1, 28, 28])?)).unwrap();
    assert_eq!(y.shape(), &[16, 10]);
    let diff = max_abs_diff(&y.to_vec(), &want);
    assert!(diff <= 1e-4, "tinycnn vs PyTorch logits differ by {diff}");
    assert_eq!(e["test_images"], 16);
}
