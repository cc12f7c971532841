//! "A file knows its model": `eval`, `predict`, `summary`, `export` and `train` on a weight
//! file that records an architecture outside the zoo (built here from an `Architecture`, as
//! another program would write it), and the errors for models that cannot take Fashion-MNIST.

#[path = "../common/mod.rs"]
mod common;

mod file_models;
mod onnx;
mod refused;

use common::*;
use std::path::{Path, PathBuf};
use tinycnn::nn::arch::{Architecture, LayerSpec, Node, METADATA_KEY};

fn linear(i: usize, o: usize) -> LayerSpec {
    LayerSpec::Linear {
        in_features: i,
        out_features: o,
        bias: true,
    }
}

/// A network outside the zoo, with a residual connection:
/// `h = relu(W1 flatten(x) + b1)`, `s = h + relu(W2 h + b2)`, `logits = W3 s + b3`.
fn residual_mlp() -> Architecture {
    Architecture {
        input: vec![1, 28, 28],
        nodes: vec![
            Node::new(
                "body.0",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![0],
            ),
            Node::new("body.1", linear(784, 16), vec![1]),
            Node::new("body.2", LayerSpec::ReLU, vec![2]),
            Node::new("res.fc", linear(16, 16), vec![3]),
            Node::new("res.act", LayerSpec::ReLU, vec![4]),
            Node::new("res.sum", LayerSpec::Add, vec![3, 5]),
            Node::new("head", linear(16, 10), vec![6]),
        ],
    }
}

/// Hand-made weights: hidden unit `c < 10` is the mean of class `c`'s bar rows (plus a bias
/// of `0.01 c`); the residual branch adds half of unit `c` to unit `c + 1 (mod 10)`; the head
/// reads units 0..10. The true class's score is about 0.88 + 0.06, the next class's about
/// 0.12 + 0.44, so every test image is classified correctly, and only thanks to the skip
/// connection (without it the next class would win).
fn residual_mlp_weights() -> Tensors {
    let mut w1 = vec![0.0f32; 16 * 784];
    for c in 0..10 {
        for r in [2 * c + 4, 2 * c + 5] {
            for col in 0..28 {
                w1[c * 784 + r * 28 + col] = 1.0 / 56.0;
            }
        }
    }
    let b1: Vec<f32> = (0..16).map(|j| 0.01 * j as f32).collect();
    let mut w2 = vec![0.0f32; 16 * 16];
    for c in 0..10 {
        w2[((c + 1) % 10) * 16 + c] = 0.5;
    }
    let mut w3 = vec![0.0f32; 10 * 16];
    for c in 0..10 {
        w3[c * 16 + c] = 1.0;
    }
    vec![
        ("body.1.weight".into(), vec![16, 784], w1),
        ("body.1.bias".into(), vec![16], b1),
        ("res.fc.weight".into(), vec![16, 16], w2),
        ("res.fc.bias".into(), vec![16], vec![0.0; 16]),
        ("head.weight".into(), vec![10, 16], w3),
        ("head.bias".into(), vec![10], vec![0.0; 10]),
    ]
}

/// The network of [`residual_mlp`] in f64, written out loop by loop: the reference.
fn reference_probs(weights: &Tensors, pixels: &[u8]) -> Vec<f64> {
    let get = |name: &str| -> Vec<f64> {
        let t = weights.iter().find(|t| t.0 == name).unwrap();
        t.2.iter().map(|&v| v as f64).collect()
    };
    let dense = |w: &[f64], b: &[f64], x: &[f64]| -> Vec<f64> {
        (0..b.len())
            .map(|o| b[o] + (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum::<f64>())
            .collect()
    };
    let relu = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| x.max(0.0)).collect() };
    let x: Vec<f64> = pixels.iter().map(|&p| p as f64 / 255.0).collect();
    let h = relu(dense(&get("body.1.weight"), &get("body.1.bias"), &x));
    let r = relu(dense(&get("res.fc.weight"), &get("res.fc.bias"), &h));
    let s: Vec<f64> = h.iter().zip(&r).map(|(a, b)| a + b).collect();
    let logits = dense(&get("head.weight"), &get("head.bias"), &s);
    let max = logits.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// `dir/custom.safetensors`: the residual network's weights and architecture, no zoo name.
fn custom_file(dir: &Path) -> PathBuf {
    let path = dir.join("custom.safetensors");
    write_safetensors(
        &path,
        &residual_mlp_weights(),
        &[
            ("format", "pt".into()),
            (METADATA_KEY, residual_mlp().to_json().unwrap()),
        ],
    );
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
