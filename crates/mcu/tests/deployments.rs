//! The committed deployments (`deployments/*/plan.bin`, written by `tinycnn deploy`) on all
//! 10,000 Fashion-MNIST test images, run by the executor the firmware runs
//! (`tinycnn_kernels::deploy`, images as `u8 / 255` like the firmware): each int8 plan is
//! within 1 percentage point of its f32 twin, and the int8 DS-CNN within 1 point of the
//! accuracy PyTorch measured for the f32 model it was deployed from (0.8177, the ONNX
//! fixture's manifest).
//!
//! Needs the dataset (`apt-get install -y dataset-fashion-mnist`, which
//! scripts/mcu-test.sh does); set `FASHION_MNIST_DIR` to read it elsewhere.

use std::path::{Path, PathBuf};
use tinycnn_kernels::deploy::{self, Input, Int8Kernels, Plan};
use tinycnn_mcu::host;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn data_dir() -> PathBuf {
    std::env::var_os("FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
}

/// Percent of the test images the plan in `deployments/name` classifies correctly.
fn accuracy(name: &str, test: &host::Split) -> f64 {
    let path = Path::new(MANIFEST_DIR)
        .join("deployments")
        .join(name)
        .join("plan.bin");
    let bytes = std::fs::read(&path).unwrap();
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    deploy::words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let plan = Plan::parse(&deploy::words_as_bytes(&words)[..bytes.len()]).unwrap();
    let mut arena = vec![0u32; plan.arena_words()];
    let mut ws = vec![0u32; plan.workspace_words()];
    let mut logits = vec![0.0f32; plan.output_value().elements()];
    let mut correct = 0;
    for (img, &label) in test.images.iter().zip(&test.labels) {
        let input = Input::U8 {
            pixels: img,
            divisor: 255.0,
        };
        deploy::run(&plan, input, &mut arena, &mut ws, Int8Kernels::Plain).unwrap();
        deploy::logits(&plan, &arena, &mut logits).unwrap();
        let mut best = 0;
        for (j, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = j;
            }
        }
        correct += (best == label as usize) as usize;
    }
    100.0 * correct as f64 / test.labels.len() as f64
}

#[test]
fn int8_deployments_stay_within_one_point_of_f32() {
    let test = host::load_split(&data_dir(), "t10k").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(test.labels.len(), 10_000);
    for model in ["lenet-relu", "lenet"] {
        let f = accuracy(&format!("{model}-f32"), &test);
        let q = accuracy(&format!("{model}-int8"), &test);
        eprintln!("{model}: f32 {f:.2}%, int8 {q:.2}% on 10,000 test images");
        assert!((q - f).abs() <= 1.0, "{model}: int8 {q:.2}% vs f32 {f:.2}%");
    }
    let q = accuracy("dscnn-int8", &test);
    eprintln!("dscnn: int8 {q:.2}% (PyTorch f32: 81.77%)");
    assert!((q - 81.77).abs() <= 1.0, "dscnn int8 {q:.2}%");
}
