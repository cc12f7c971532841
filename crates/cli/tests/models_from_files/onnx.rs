//! ONNX files go wherever weight files go, and PyTorch's exported CNN keeps its accuracy.

use super::*;

/// The fixtures of `tinycnn::onnx` (exported by PyTorch; scripts/onnx-fixtures.py).
fn onnx_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tinycnn/tests/fixtures/onnx")
        .join(name)
}

#[test]
fn onnx_files_go_wherever_weight_files_go() {
    let dir = temp_dir("onnx");
    let file = custom_file(&dir);
    let data = data_dir();
    let onnx = dir.join("custom.onnx");
    let o = run(&["export", "--weights", s(&file), "--out", s(&onnx)]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("(ONNX, custom.safetensors, 6 tensors, 13002 values)"),
        "{}",
        stdout(&o)
    );
    // What the ONNX reader makes of it: the same tensors under the same names.
    let back = tinycnn::onnx::load(&onnx).unwrap();
    let mut tensors = back.tensors.clone();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = residual_mlp_weights();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(tensors, want);
    assert_eq!(back.architecture.input, [1, 28, 28]);

    let o = run(&["eval", "--weights", s(&onnx), "--data", s(data)]);
    assert_ok(&o);
    assert!(
        stdout(&o).starts_with(&format!(
            "custom.onnx on {TEST_LEN} test images of {}: test acc 1.000",
            data.display()
        )),
        "{}",
        stdout(&o)
    );
    let (images, _) = synthetic_split(TEST_LEN, TEST_SEED);
    let want = reference_probs(&residual_mlp_weights(), &images[..784]);
    let o = run(&[
        "predict",
        "--weights",
        s(&onnx),
        "--index",
        "0",
        "--data",
        s(data),
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    for (class, p) in want.iter().enumerate() {
        let line = text
            .lines()
            .find(|l| {
                l.trim_start_matches(['*', ' '])
                    .starts_with(&format!("{class} "))
            })
            .unwrap();
        let printed: f64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!((printed - p).abs() <= 0.6e-4, "{line} vs {p}");
    }
    let o = run(&["summary", "--model", s(&onnx)]);
    assert_ok(&o);
    assert!(stdout(&o).contains("total params: 13002"), "{}", stdout(&o));

    // Fine-tuned from its weights; the result records the architecture.
    let tuned = dir.join("tuned.safetensors");
    let o = run(&[
        "train",
        "--model",
        s(&onnx),
        "--epochs",
        "1",
        "--lr",
        "0.1",
        "--data",
        s(data),
        "--batch-size",
        "64",
        "--threads",
        "2",
        "--out",
        s(&tuned),
    ]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("fine-tuning from the weights of"),
        "{}",
        stdout(&o)
    );
    let (_, meta) = read_safetensors(&tuned);
    let arch = Architecture::from_json(&meta[METADATA_KEY]).unwrap();
    assert_eq!(arch, back.architecture);
    // And back to ONNX from the checkpoint.
    let again = dir.join("again.onnx");
    let ck = dir.join("tuned.ckpt.safetensors");
    assert_ok(&run(&["export", "--weights", s(&ck), "--out", s(&again)]));
    assert_eq!(tinycnn::onnx::load(&again).unwrap().architecture, arch);

    // A model PyTorch exported for 16x16 images: refused with the reason.
    let small = onnx_fixture("small_folded.onnx");
    assert_fails_with(
        &run(&["eval", "--weights", s(&small), "--data", s(data)]),
        &[
            "small_folded.onnx takes inputs of shape [1, 16, 16]",
            "[1, 28, 28]",
        ],
    );
    // Not an ONNX file.
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"not a protobuf").unwrap();
    assert_fails_with(
        &run(&["eval", "--weights", s(&junk), "--data", s(data)]),
        &["junk.onnx"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue #15's bar: a CNN trained and exported by PyTorch (BatchNorm, ReLU6, depthwise-
/// separable convolutions, max and global average pooling), never seen by tinycnn, is
/// evaluated from the `.onnx` file alone with PyTorch's accuracy on the 10k test images.
#[test]
fn pytorch_onnx_model_gets_pytorchs_test_accuracy() {
    let real = Path::new("/usr/share/datasets/fashion-mnist");
    if !real.join("t10k-images-idx3-ubyte.gz").exists()
        && !real.join("t10k-images-idx3-ubyte").exists()
    {
        eprintln!(
            "skipped: Fashion-MNIST is not installed in {} (apt-get install dataset-fashion-mnist)",
            real.display()
        );
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tinycnn/tests/fixtures/onnx");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("manifest.json")).unwrap())
            .unwrap();
    let torch_acc = manifest["fmnist_dscnn"]["test_accuracy"].as_f64().unwrap();
    let model = fixtures.join("fmnist_dscnn.onnx");
    let o = run(&[
        "eval",
        "--weights",
        model.to_str().unwrap(),
        "--data",
        real.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let out = stdout(&o);
    let acc: f64 = out
        .split("test acc ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {out}"));
    assert!(out.contains("of 10000)"), "{out}");
    assert!(
        (acc - torch_acc).abs() <= 0.002,
        "tinycnn {acc} vs PyTorch {torch_acc}\n{out}"
    );
}
