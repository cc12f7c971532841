//! End-to-end tests of the `tinycnn` binary on a small synthetic Fashion-MNIST-shaped data set.

#[path = "../common/mod.rs"]
mod common;

mod bad_inputs;
mod cuda;
mod edited_files;
mod process;
mod summary;
mod training;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Trains `epochs` epochs into `dir/w.safetensors` (checkpoint `dir/w.ckpt.safetensors`).
fn train(dir: &Path, extra: &[&str]) -> Output {
    let out = dir.join("w.safetensors");
    let mut args = vec![
        "train",
        "--data",
        data_dir().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "64",
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Tensor names with their shapes, and the metadata, of a safetensors file.
type Header = (Vec<(String, Vec<usize>)>, HashMap<String, String>);

/// The names and shapes of a safetensors file's tensors (sorted), and its metadata.
fn header(path: &Path) -> Header {
    let (tensors, meta) = read_safetensors(path);
    let names = tensors
        .into_iter()
        .map(|(n, shape, _)| (n, shape))
        .collect();
    (names, meta)
}

fn lenet_state_dict() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        ("0.weight".to_string(), vec![6, 1, 5, 5]),
        ("0.bias".to_string(), vec![6]),
        ("3.weight".to_string(), vec![16, 6, 5, 5]),
        ("3.bias".to_string(), vec![16]),
        ("7.weight".to_string(), vec![120, 400]),
        ("7.bias".to_string(), vec![120]),
        ("9.weight".to_string(), vec![84, 120]),
        ("9.bias".to_string(), vec![84]),
        ("11.weight".to_string(), vec![10, 84]),
        ("11.bias".to_string(), vec![10]),
    ];
    v.sort();
    v
}

/// Parses `epoch N: loss L, train acc A, test acc T, E examples/sec`.
fn parse_epoch_line(line: &str) -> (usize, f64, f64, f64, f64) {
    let rest = line
        .strip_prefix("epoch ")
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    let (n, rest) = rest.split_once(": loss ").unwrap();
    let (l, rest) = rest.split_once(", train acc ").unwrap();
    let (a, rest) = rest.split_once(", test acc ").unwrap();
    let (t, rest) = rest.split_once(", ").unwrap();
    let e = rest.strip_suffix(" examples/sec").unwrap();
    for (s, decimals) in [(l, 3), (a, 3), (t, 3), (e, 1)] {
        let (_, frac) = s
            .split_once('.')
            .unwrap_or_else(|| panic!("{s:?} in {line:?}"));
        assert_eq!(frac.len(), decimals, "{s:?} in {line:?}");
    }
    (
        n.parse().unwrap(),
        l.parse().unwrap(),
        a.parse().unwrap(),
        t.parse().unwrap(),
        e.parse().unwrap(),
    )
}

/// Fashion-MNIST's class names, as d2l prints them.
const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// The ten `N name p` lines of `predict` sum to 1 and the first line names the argmax.
fn check_probabilities(text: &str) {
    let mut probs = Vec::new();
    for line in text.lines() {
        let t = line.trim_start_matches(['*', ' ']);
        let mut parts = t.split_whitespace();
        if let (Some(i), Some(p)) = (
            parts.next().and_then(|s| s.parse::<usize>().ok()),
            t.split_whitespace().last(),
        ) {
            if let Ok(p) = p.parse::<f64>() {
                probs.push((i, p));
            }
        }
    }
    assert_eq!(probs.len(), 10, "{text}");
    let sum: f64 = probs.iter().map(|p| p.1).sum();
    assert!((sum - 1.0).abs() < 2e-3, "{sum}\n{text}");
    let best = probs
        .iter()
        .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap())
        .unwrap()
        .0;
    assert!(
        text.contains(&format!("predicted: {}", FASHION_MNIST_CLASSES[best])),
        "{text}"
    );
}

/// A weight file trained for one epoch (shared by the tests that only read one).
fn trained_weights() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = temp_dir("trained-once");
        assert_ok(&train(&d, &["--epochs", "1"]));
        d
    })
}

fn read_to_string(r: impl std::io::Read) -> String {
    let mut s = String::new();
    let mut r = r;
    r.read_to_string(&mut s).unwrap();
    s
}
