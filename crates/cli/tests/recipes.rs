//! End-to-end tests of the training recipes of `tinycnn train` (momentum, weight decay,
//! schedules, clipping, augmentation), of their checkpoints, and of `--dataset mnist`, on
//! small generated IDX files (no network).

mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// `n` 28x28 images: class `c` is a bright bar on rows `2c+4 ..= 2c+5` over noise.
fn split(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 33) as u32
    };
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let c = (next() % 10) as usize;
        labels.push(c as u8);
        for r in 0..28 {
            for _ in 0..28 {
                let bar = r == 2 * c + 4 || r == 2 * c + 5;
                images.push(if bar { 200 } else { (next() % 50) as u8 });
            }
        }
    }
    (images, labels)
}

/// The four IDX files (192 training, 64 test images) in a directory of their own.
fn data_dir(name: &str) -> PathBuf {
    let d = temp_dir(name);
    for (prefix, n, seed) in [("train", 192, 1), ("t10k", 64, 2)] {
        let (images, labels) = split(n, seed);
        write_idx_split(&d, prefix, &images, &labels);
    }
    d
}

fn shared_data() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| data_dir("data"))
}

/// `train` into `dir/w.safetensors` on the shared data, batches of 64 (3 per epoch).
fn train(dir: &Path, extra: &[&str]) -> Output {
    train_model(dir, "lenet-relu", extra)
}

/// [`train`] of `model`.
fn train_model(dir: &Path, model: &str, extra: &[&str]) -> Output {
    let out = dir.join("w.safetensors");
    let mut args = vec![
        "train",
        "--data",
        shared_data().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--model",
        model,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Copies a safetensors file without some metadata keys (as an older tinycnn wrote it).
fn without_metadata(src: &Path, dst: &Path, keys: &[&str]) {
    let (tensors, mut meta) = read_safetensors(src);
    for k in keys {
        assert!(meta.remove(*k).is_some(), "{k} was not in the metadata");
    }
    write_safetensors_map(dst, &tensors, &meta);
}

/// 2 epochs straight and 1 epoch + a resumed 1 give the same weights, bit for bit; returns
/// the checkpoint of the straight run. Schedules with a span plan 2 epochs in both runs.
fn resume_is_exact(name: &str, recipe: &[&str]) -> PathBuf {
    let full = temp_dir(&format!("{name}-full"));
    let mut args = vec!["--epochs", "2", "--seed", "3"];
    if recipe.contains(&"cosine") || recipe.contains(&"onecycle") {
        args.extend(["--schedule-epochs", "2"]);
    }
    args.extend_from_slice(recipe);
    assert_ok(&train(&full, &args));
    let split = temp_dir(&format!("{name}-split"));
    args[1] = "1";
    assert_ok(&train(&split, &args));
    let ck = split.join("w.ckpt.safetensors");
    let o = train(&split, &["--epochs", "2", "--resume", ck.to_str().unwrap()]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("resuming after epoch 1"),
        "{}",
        stdout(&o)
    );
    let same = model_tensor_bytes(&split.join("w.safetensors"))
        == model_tensor_bytes(&full.join("w.safetensors"));
    assert!(same, "{name}: resumed weights differ");
    let a = metadata(&full.join("w.ckpt.safetensors"));
    let b = metadata(&split.join("w.ckpt.safetensors"));
    assert_eq!(a["lr_schedule_state"], b["lr_schedule_state"], "{name}");
    assert_eq!(a["recipe"], b["recipe"], "{name}");
    full.join("w.ckpt.safetensors")
}

fn json_of(meta: &HashMap<String, String>, key: &str) -> serde_json::Value {
    serde_json::from_str(&meta[key]).unwrap()
}

#[test]
fn sgd_with_momentum_cosine_clipping_and_augmentation_resumes_exactly() {
    let recipe = [
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
        "--nesterov",
        "--weight-decay",
        "5e-4",
        "--lr-schedule",
        "cosine",
        "--min-lr",
        "0.001",
        "--clip-grad-norm",
        "1",
        "--augment",
        "crop,flip",
        "--crop-padding",
        "2",
    ];
    let meta = metadata(&resume_is_exact("cosine", &recipe));
    let recipe = json_of(&meta, "recipe");
    assert_eq!(recipe["lr_schedule"]["name"], "cosine");
    assert_eq!(recipe["lr_schedule"]["t_max"], 2);
    assert_eq!(recipe["crop_padding"], 2);
    assert_eq!(recipe["flip"], true);
    assert_eq!(recipe["nesterov"], true);
    let state = json_of(&meta, "lr_schedule_state");
    // Cosine over 2 epochs ends at eta_min (PyTorch: 0.001 after T_max steps).
    assert_eq!(state["last_epoch"], 2.0);
    assert!(
        (state["last_lr"].as_f64().unwrap() - 0.001).abs() < 1e-12,
        "{state}"
    );
}

#[test]
fn adam_with_onecycle_and_sgd_with_step_lr_resume_exactly() {
    let recipe = [
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--weight-decay",
        "1e-4",
        "--lr-schedule",
        "onecycle",
    ];
    let state = json_of(
        &metadata(&resume_is_exact("onecycle", &recipe)),
        "lr_schedule_state",
    );
    // Stepped per batch, 2 epochs of 3 batches; the last step lies past the cycle's end, as
    // in PyTorch: phase 2 runs from step 0.3 * 6 - 1 = 0.8 to 5, so pct = 5.2 / 4.2.
    assert_eq!(state["last_epoch"], 6.0);
    let cos = (std::f64::consts::PI * (6.0 - 0.8) / (5.0 - 0.8)).cos() + 1.0;
    let beta1 = 0.95 + (0.85 - 0.95) / 2.0 * cos;
    let min_lr = 0.01f32 as f64 / 25.0 / 1e4;
    let lr = min_lr + (0.01f32 as f64 - min_lr) / 2.0 * cos;
    assert!(
        (state["last_momentum"].as_f64().unwrap() - beta1).abs() < 1e-12,
        "{state}"
    );
    assert!(
        (state["last_lr"].as_f64().unwrap() - lr).abs() < 1e-12,
        "{state}"
    );
    let recipe = [
        "--lr",
        "0.1",
        "--momentum",
        "0.5",
        "--lr-schedule",
        "step",
        "--step-size",
        "1",
        "--gamma",
        "0.5",
    ];
    let state = json_of(
        &metadata(&resume_is_exact("step", &recipe)),
        "lr_schedule_state",
    );
    assert_eq!(state["last_lr"].as_f64().unwrap(), 0.1f32 as f64 * 0.25);
}

#[test]
fn a_checkpoint_without_the_recipe_fields_still_resumes() {
    let full = temp_dir("old-full");
    assert_ok(&train(&full, &["--epochs", "2", "--lr", "0.5"]));
    let split = temp_dir("old-split");
    assert_ok(&train(&split, &["--epochs", "1", "--lr", "0.5"]));
    let old = split.join("old.ckpt.safetensors");
    without_metadata(
        &split.join("w.ckpt.safetensors"),
        &old,
        &["recipe", "dataset"],
    );
    let o = train(
        &split,
        &["--epochs", "2", "--resume", old.to_str().unwrap()],
    );
    assert_ok(&o);
    let same = model_tensor_bytes(&split.join("w.safetensors"))
        == model_tensor_bytes(&full.join("w.safetensors"));
    assert!(same, "resumed weights differ");
    // A weight file without a data set evaluates on Fashion-MNIST.
    let w = split.join("old-w.safetensors");
    without_metadata(&split.join("w.safetensors"), &w, &["dataset"]);
    let data = shared_data().to_str().unwrap();
    let o = run(&["eval", "--weights", w.to_str().unwrap(), "--data", data]);
    assert_ok(&o);
    assert!(stdout(&o).contains("ankle boot |"), "{}", stdout(&o));
}

#[test]
fn recipe_flags_are_checked() {
    let dir = temp_dir("flags");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--gamma", "0.5"], &["--gamma", "--lr-schedule step"]),
        (&["--lr-schedule", "step"], &["--step-size"]),
        (
            &["--lr-schedule", "step", "--step-size", "0"],
            &["--step-size", "at least 1"],
        ),
        (&["--min-lr", "0.1"], &["--min-lr", "cosine"]),
        (&["--lr-schedule", "cosine", "--min-lr=-1"], &["--min-lr"]),
        (
            &["--schedule-epochs", "3"],
            &["--schedule-epochs", "cosine or onecycle"],
        ),
        (
            &["--lr-schedule", "onecycle", "--schedule-epochs", "0"],
            &["--schedule-epochs"],
        ),
        (
            &["--optimizer", "adam", "--momentum", "0.9"],
            &["--momentum", "Adam"],
        ),
        (&["--momentum=-0.5"], &["--momentum"]),
        (&["--weight-decay", "nan"], &["--weight-decay"]),
        (&["--nesterov"], &["Nesterov"]),
        (&["--clip-grad-norm", "0"], &["--clip-grad-norm"]),
        (
            &["--crop-padding", "2"],
            &["--crop-padding", "--augment crop"],
        ),
        (
            &["--augment", "crop", "--crop-padding", "0"],
            &["--crop-padding"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["--epochs", "1"];
        args.extend_from_slice(flags);
        assert_fails_with(&train(&dir, &args), needles);
    }
    // One-cycle cannot run past its span.
    let args = [
        "--epochs",
        "2",
        "--lr-schedule",
        "onecycle",
        "--schedule-epochs",
        "1",
    ];
    assert_fails_with(&train(&dir, &args), &["one-cycle", "--epochs 2"]);
    let o = run(&["train", "--help"]);
    assert!(stdout(&o).contains("not AdamW"), "{}", stdout(&o));
}

/// The first two lines a run prints (its settings and its recipe, or the device line).
fn start_lines(o: &Output) -> (String, String) {
    assert_ok(o);
    let text = stdout(o);
    let mut lines = text.lines().map(String::from);
    (lines.next().unwrap(), lines.next().unwrap())
}

#[test]
fn dscnn_trains_with_its_own_recipe_unless_flags_override_it() {
    let dir = temp_dir("dscnn-recipe");
    let o = train_model(&dir, "dscnn", &["--epochs", "1"]);
    let (settings, recipe) = start_lines(&o);
    assert!(
        settings.starts_with("dscnn, adam lr 0.005, batch size 64, 1 epochs"),
        "{settings}"
    );
    // 0.005 / 25 and 0.005 / 25 / 1e4 (PyTorch's div_factor and final_div_factor).
    assert_eq!(
        recipe,
        "one-cycle lr 0.0002 -> 0.005 -> 0.00000002 over 3 batches, momentum 0.95 -> 0.85 -> 0.95, \
         augment flip"
    );
    let r = json_of(&metadata(&dir.join("w.ckpt.safetensors")), "recipe");
    assert_eq!(r["lr_schedule"]["name"], "onecycle");
    assert!(r["crop_padding"].is_null());
    assert_eq!(r["flip"], true);
    assert_eq!(r["weight_decay"], 0.0);

    // With SGD: its own rate, Nesterov momentum, weight decay and cosine schedule.
    let o = train_model(&dir, "dscnn", &["--epochs", "1", "--optimizer", "sgd"]);
    let (settings, recipe) = start_lines(&o);
    assert!(
        settings.starts_with("dscnn, sgd lr 0.1, batch size 64"),
        "{settings}"
    );
    assert_eq!(
        recipe,
        "momentum 0.9, nesterov, weight decay 0.0005, cosine lr to 0 over 1 epochs, augment flip"
    );

    // Explicit flags win, and `none` switches the defaults off.
    let flags = [
        "--epochs",
        "1",
        "--lr-schedule",
        "none",
        "--augment",
        "none",
    ];
    let (_, next) = start_lines(&train_model(&dir, "dscnn", &flags));
    assert_eq!(next, "training on cpu");
    let flags = [
        "--epochs",
        "1",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.5",
        "--weight-decay",
        "0",
        "--augment",
        "crop,flip",
        "--crop-padding",
        "3",
        "--lr-schedule",
        "step",
        "--step-size",
        "1",
    ];
    let (_, recipe) = start_lines(&train_model(&dir, "dscnn", &flags));
    assert_eq!(
        recipe,
        "momentum 0.5, step lr x0.1 every 1 epochs, augment crop (padding 3) + flip"
    );
    let flags = ["--epochs", "1", "--augment", "flip", "--min-lr", "0.001"];
    let o = train_model(&dir, "dscnn", &flags);
    assert_fails_with(&o, &["--min-lr", "cosine"]);
    let flags = ["--epochs", "1", "--augment", "none,flip"];
    let o = train_model(&dir, "dscnn", &flags);
    assert_fails_with(&o, &["--augment none"]);

    // The LeNets keep d2l's plain recipe: no recipe line.
    let (settings, next) = start_lines(&train(&dir, &["--epochs", "1"]));
    assert!(
        settings.starts_with("lenet-relu, sgd lr 0.9, batch size 64"),
        "{settings}"
    );
    assert_eq!(next, "training on cpu");
}

#[test]
fn dscnn_default_recipe_resumes_exactly() {
    let full = temp_dir("dscnn-resume-full");
    let args = ["--epochs", "2", "--seed", "3", "--schedule-epochs", "2"];
    assert_ok(&train_model(&full, "dscnn", &args));
    let split = temp_dir("dscnn-resume-split");
    let first = ["--epochs", "1", "--seed", "3", "--schedule-epochs", "2"];
    assert_ok(&train_model(&split, "dscnn", &first));
    let ck = split.join("w.ckpt.safetensors");
    let o = train_model(
        &split,
        "dscnn",
        &["--epochs", "2", "--resume", ck.to_str().unwrap()],
    );
    assert_ok(&o);
    let same = model_tensor_bytes(&split.join("w.safetensors"))
        == model_tensor_bytes(&full.join("w.safetensors"));
    assert!(same, "resumed dscnn weights differ");
    let a = metadata(&full.join("w.ckpt.safetensors"));
    let b = metadata(&split.join("w.ckpt.safetensors"));
    assert_eq!(a["recipe"], b["recipe"]);
    assert_eq!(a["lr_schedule_state"], b["lr_schedule_state"]);
}

#[test]
fn a_resume_keeps_the_recipe_and_refuses_other_flags() {
    let dir = temp_dir("resume-flags");
    let recipe = [
        "--epochs",
        "1",
        "--lr",
        "0.05",
        "--momentum",
        "0.9",
        "--lr-schedule",
        "onecycle",
        "--augment",
        "flip",
    ];
    assert_ok(&train(&dir, &recipe));
    let ck = dir.join("w.ckpt.safetensors");
    let ck = ck.to_str().unwrap();
    for (flags, needle) in [
        (&["--momentum", "0.5"][..], "--momentum 0.5"),
        (&["--lr-schedule", "cosine"][..], "--lr-schedule"),
        (&["--augment", "crop"][..], "--augment"),
        (&["--dataset", "mnist"][..], "--dataset mnist"),
        (&["--clip-grad-norm", "2"][..], "--clip-grad-norm 2"),
    ] {
        let mut args = vec!["--epochs", "1", "--resume", ck];
        args.extend_from_slice(flags);
        assert_fails_with(&train(&dir, &args), &[needle, "checkpoint"]);
    }
    // The same flags again are fine; one-cycle cannot be stretched past its planned end.
    let mut args = vec!["--resume", ck];
    args.extend_from_slice(&recipe);
    assert_ok(&train(&dir, &args));
    let o = train(&dir, &["--epochs", "2", "--resume", ck]);
    assert_fails_with(
        &o,
        &["one-cycle", "3 batches", "--epochs 2", "--schedule-epochs"],
    );
}

#[test]
fn mnist_trains_evaluates_and_predicts_digits() {
    let mnist = data_dir("mnist");
    let dir = temp_dir("mnist-run");
    let out = dir.join("digits.safetensors");
    let (out_s, data_s) = (out.to_str().unwrap(), mnist.to_str().unwrap());
    let o = run(&[
        "train",
        "--dataset",
        "mnist",
        "--data",
        data_s,
        "--out",
        out_s,
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--model",
        "lenet-relu",
        "--lr",
        "0.5",
    ]);
    assert_ok(&o);
    assert_eq!(metadata(&out)["dataset"], "mnist");
    assert_eq!(
        metadata(&dir.join("digits.ckpt.safetensors"))["dataset"],
        "mnist"
    );
    // eval and predict default to the data set the file names; MNIST is found through
    // $TINYCNN_MNIST_DATA (used as given) like Fashion-MNIST through $TINYCNN_DATA.
    let env = [("TINYCNN_MNIST_DATA", mnist.as_path())];
    let o = run_with(&["eval", "--weights", out_s], &env);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains(&format!("test images of {data_s}")), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("9 |")),
        "{text}"
    );
    assert!(!text.contains("ankle boot"), "{text}");
    let o = run_with(&["predict", "--weights", out_s, "--index", "0"], &env);
    assert_ok(&o);
    let label = split(64, 2).1[0];
    assert!(
        stdout(&o).contains(&format!("true class {label}")),
        "{}",
        stdout(&o)
    );
    // An explicit --dataset wins over the file's.
    let o = run(&[
        "eval",
        "--weights",
        out_s,
        "--dataset",
        "fashion-mnist",
        "--data",
        data_s,
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("ankle boot |"), "{}", stdout(&o));
    // Export keeps the data set.
    let exported = dir.join("exported.safetensors");
    assert_ok(&run(&[
        "export",
        "--weights",
        out_s,
        "--out",
        exported.to_str().unwrap(),
    ]));
    assert_eq!(metadata(&exported)["dataset"], "mnist");
    // Without the variable and without --data: MNIST's own places, then a download
    // (refused here), with MNIST's file names in the message.
    let o = run(&["eval", "--weights", out_s]);
    assert_fails_with(&o, &["MNIST", "train-images-idx3-ubyte.gz"]);
}
