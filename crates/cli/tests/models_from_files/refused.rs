//! Models that cannot take Fashion-MNIST are refused with the reason.

use super::*;

#[test]
fn models_that_do_not_take_fashion_mnist_are_refused_with_the_reason() {
    let dir = temp_dir("shapes");
    let data = data_dir();
    // 3-channel 32x32 images.
    let rgb = Architecture {
        input: vec![3, 32, 32],
        nodes: vec![
            Node::new(
                "0",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![0],
            ),
            Node::new("1", linear(3 * 32 * 32, 10), vec![1]),
        ],
    };
    let rgb_file = dir.join("rgb.safetensors");
    write_safetensors(
        &rgb_file,
        &vec![
            ("1.weight".into(), vec![10, 3072], vec![0.0; 30720]),
            ("1.bias".into(), vec![10], vec![0.0; 10]),
        ],
        &[(METADATA_KEY, rgb.to_json().unwrap())],
    );
    let why = [
        "rgb.safetensors takes inputs of shape [3, 32, 32]",
        "[1, 28, 28]",
    ];
    assert_fails_with(
        &run(&["eval", "--weights", s(&rgb_file), "--data", s(data)]),
        &why,
    );
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            s(&rgb_file),
            "--index",
            "0",
            "--data",
            s(data),
        ]),
        &why,
    );
    assert_fails_with(
        &run(&[
            "train",
            "--model",
            s(&rgb_file),
            "--data",
            s(data),
            "--out",
            s(&dir.join("o.safetensors")),
        ]),
        &why,
    );
    // The summary still describes it.
    let o = run(&["summary", "--model", s(&rgb_file)]);
    assert_ok(&o);
    assert!(stdout(&o).contains("rgb.safetensors for input [1, 3, 32, 32]"));

    // Five classes.
    let five = Architecture {
        input: vec![1, 28, 28],
        nodes: vec![
            Node::new(
                "0",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![0],
            ),
            Node::new("1", linear(784, 5), vec![1]),
        ],
    };
    let five_file = dir.join("five.safetensors");
    write_safetensors(
        &five_file,
        &vec![
            ("1.weight".into(), vec![5, 784], vec![0.0; 3920]),
            ("1.bias".into(), vec![5], vec![0.0; 5]),
        ],
        &[(METADATA_KEY, five.to_json().unwrap())],
    );
    assert_fails_with(
        &run(&["eval", "--weights", s(&five_file), "--data", s(data)]),
        &["five.safetensors outputs shape [1, 5]", "[1, 10]"],
    );

    // An architecture whose layers do not fit: the layer is named.
    let mut broken = residual_mlp();
    broken.nodes[6].layer = linear(15, 10);
    let broken_file = dir.join("broken.safetensors");
    write_safetensors(
        &broken_file,
        &residual_mlp_weights(),
        &[(METADATA_KEY, broken.to_json().unwrap())],
    );
    assert_fails_with(
        &run(&["summary", "--model", s(&broken_file)]),
        &["layer `head` (Linear)", "in_features is 15"],
    );
    // Weights that do not fit the recorded architecture.
    let wrong = dir.join("wrong.safetensors");
    let mut weights = residual_mlp_weights();
    weights.pop();
    write_safetensors(
        &wrong,
        &weights,
        &[(METADATA_KEY, residual_mlp().to_json().unwrap())],
    );
    assert_fails_with(
        &run(&["eval", "--weights", s(&wrong), "--data", s(data)]),
        &["does not fit wrong.safetensors", "head.bias"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
