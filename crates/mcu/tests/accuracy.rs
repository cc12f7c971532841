//! Post-training quantization end to end: the committed int8 files are exactly what the
//! quantizer makes from the committed f32 files (calibrated on the first 2000 training
//! images), and on all 10,000 Fashion-MNIST test images the int8 model's accuracy is within
//! 1 percentage point of the f32 model's, both run by the same no_std code.
//!
//! Needs the dataset (`apt-get install -y dataset-fashion-mnist`, which
//! scripts/mcu-test.sh does); set `FASHION_MNIST_DIR` to read it elsewhere.

use std::path::{Path, PathBuf};
use tinycnn_mcu::host::{self, aligned_copy};
use tinycnn_mcu::{LenetF32, LenetI8, Safetensors, Variant};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn data_dir() -> PathBuf {
    std::env::var_os("FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"))
}

fn check(variant: Variant, f32_file: &str, int8_file: &str) {
    let weights = Path::new(MANIFEST_DIR).join("weights");
    let fb = std::fs::read(weights.join(f32_file)).unwrap();
    let fal = aligned_copy(&fb);
    let f = LenetF32::from_safetensors(&Safetensors::parse(fal.bytes()).unwrap(), variant).unwrap();
    let train = host::load_split(&data_dir(), "train").unwrap_or_else(|e| panic!("{e}"));
    let cal = host::calibrate(&f, &train.images[..2000]).unwrap();
    let fresh = host::quantize(&f, &cal).unwrap();
    let committed = std::fs::read(weights.join(int8_file)).unwrap();
    assert!(
        fresh == committed,
        "weights/{int8_file} is not the quantization of weights/{f32_file}: \
         regenerate it with `mcu-host quantize` (see README)"
    );
    let qal = aligned_copy(&committed);
    let q = LenetI8::from_safetensors(&Safetensors::parse(qal.bytes()).unwrap(), variant).unwrap();
    let test = host::load_split(&data_dir(), "t10k").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(test.images.len(), 10_000);
    let r = host::accuracy(&f, &q, &test).unwrap();
    eprintln!(
        "{}: f32 {:.2}%, int8 {:.2}%, {} of 10000 predictions differ",
        variant.name(),
        r.f32_percent(),
        r.int8_percent(),
        r.disagreements
    );
    assert!(
        (r.int8_percent() - r.f32_percent()).abs() <= 1.0,
        "{}: int8 {:.2}% vs f32 {:.2}%",
        variant.name(),
        r.int8_percent(),
        r.f32_percent()
    );
}

#[test]
fn lenet_relu_int8_within_one_point_of_f32() {
    check(
        Variant::Relu,
        "lenet-relu-f32.safetensors",
        "lenet-relu-int8.safetensors",
    );
}

#[test]
fn lenet_sigmoid_int8_within_one_point_of_f32() {
    check(
        Variant::Sigmoid,
        "lenet-f32.safetensors",
        "lenet-int8.safetensors",
    );
}
