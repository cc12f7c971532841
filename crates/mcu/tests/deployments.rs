//! The committed deployments (`deployments/*/plan.bin`, written by `tinycnn deploy`) on all
//! 10,000 Fashion-MNIST test images, run by the executor the firmware runs
//! (`tinycnn_kernels::deploy`, images as `u8 / 255` like the firmware): each int8 plan
//! (both LeNets and the zoo's DS-CNN) is within 1 percentage point of its f32 twin, deployed
//! by `tinycnn deploy` from the same f32 weights (`weights/*-f32.safetensors`).
//!
//! Needs the dataset (`apt-get install -y dataset-fashion-mnist`, which
//! scripts/mcu-test.sh does); set `FASHION_MNIST_DIR` to read it elsewhere.

use std::path::{Path, PathBuf};
use tinycnn_kernels::deploy::{self, Input, Int8Kernels, Plan};
use tinycnn_mcu::{host, idx};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The f32 DS-CNN's accuracy (percent) when `tinycnn deploy` wrote `deployments/dscnn-f32`
/// from `weights/dscnn-f32.safetensors` (the zoo model trained with its default recipe).
const DSCNN_F32: f64 = 92.75;

fn data_dir() -> PathBuf {
    std::env::var_os("FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
}

/// Percent of the test images the plan in `deployments/name` classifies correctly (the
/// images split over the machine's cores: the DS-CNN is 28 G multiply-accumulates in f32).
fn accuracy(name: &str, test: &host::Split) -> f64 {
    let path = Path::new(MANIFEST_DIR)
        .join("deployments")
        .join(name)
        .join("plan.bin");
    let bytes = std::fs::read(&path).unwrap();
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    deploy::words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let plan = Plan::parse(&deploy::words_as_bytes(&words)[..bytes.len()]).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = test.labels.len().div_ceil(threads);
    let correct: usize = std::thread::scope(|s| {
        let jobs: Vec<_> = test
            .images
            .chunks(chunk)
            .zip(test.labels.chunks(chunk))
            .map(|(images, labels)| s.spawn(|| correct_count(&plan, images, labels)))
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).sum()
    });
    100.0 * correct as f64 / test.labels.len() as f64
}

fn correct_count(plan: &Plan<'_>, images: &[[u8; idx::IMAGE_PIXELS]], labels: &[u8]) -> usize {
    let mut arena = vec![0u32; plan.arena_words()];
    let mut ws = vec![0u32; plan.workspace_words()];
    let mut logits = vec![0.0f32; plan.output_value().elements()];
    let mut correct = 0;
    for (img, &label) in images.iter().zip(labels) {
        let input = Input::U8 {
            pixels: img,
            divisor: 255.0,
        };
        deploy::run(plan, input, &mut arena, &mut ws, Int8Kernels::Plain).unwrap();
        deploy::logits(plan, &arena, &mut logits).unwrap();
        let mut best = 0;
        for (j, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = j;
            }
        }
        correct += (best == label as usize) as usize;
    }
    correct
}

#[test]
fn int8_deployments_stay_within_one_point_of_f32() {
    let test = host::load_split(&data_dir(), "t10k").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(test.labels.len(), 10_000);
    // The f32 accuracies `tinycnn deploy` printed when it wrote the plans (README): the
    // plans still hold the trained weights (a tenth of a point for another CPU's SIMD sums).
    for (model, f32_acc) in [
        ("lenet-relu", 88.78),
        ("lenet", 80.11),
        ("dscnn", DSCNN_F32),
    ] {
        let f = accuracy(&format!("{model}-f32"), &test);
        let q = accuracy(&format!("{model}-int8"), &test);
        eprintln!("{model}: f32 {f:.2}%, int8 {q:.2}% on 10,000 test images");
        assert!(
            (f - f32_acc).abs() <= 0.1,
            "{model}: f32 {f:.2}%, not {f32_acc}%"
        );
        assert!((q - f).abs() <= 1.0, "{model}: int8 {q:.2}% vs f32 {f:.2}%");
    }
}
