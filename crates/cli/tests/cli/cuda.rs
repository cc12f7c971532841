//! `--device cuda` (the emulated device under `cargo test`): training, checkpoints that resume
//! across devices, evaluation and prediction agree with the CPU's, or fail clearly.

use super::*;

/// The model tensors of a safetensors file as f32 values, by name.
fn tensor_values(path: &Path) -> Vec<(String, Vec<f32>)> {
    model_tensor_bytes(path)
        .into_iter()
        .map(|(k, b)| {
            let v = b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, v)
        })
        .collect()
}

/// Asserts that two weight files hold the same tensors, equal to within `tol` of each
/// tensor's largest magnitude (GPU and CPU kernels round differently).
fn assert_weights_close(a: &Path, b: &Path, tol: f32, what: &str) {
    let (a, b) = (tensor_values(a), tensor_values(b));
    assert_eq!(a.len(), b.len(), "{what}: tensor count");
    for ((name, x), (name_b, y)) in a.iter().zip(&b) {
        assert_eq!(name, name_b, "{what}");
        let scale = y.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let diff = x
            .iter()
            .zip(y)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= tol * scale,
            "{what}: {name} differs by {diff} (largest value {scale})"
        );
    }
}

/// `--device cuda` trains on the GPU with the data set resident there (under `cargo test`, on
/// the emulated device). A binary that can open no GPU stops with a clear error (and the rest
/// is skipped); otherwise a cuda run matches a cpu run of the same seed (same batches, same
/// order), and Adam checkpoints resume across devices in both directions.
#[test]
fn cuda_training_matches_cpu_and_checkpoints_resume_across_devices() {
    let probe = temp_dir("cuda-probe");
    let o = train(&probe, &["--epochs", "1", "--device", "cuda"]);
    if !o.status.success() {
        assert_fails_with(
            &o,
            &["--device cuda", "no usable NVIDIA GPU", "--device cpu"],
        );
        eprintln!(
            "skipping: no CUDA GPU for the cuda CLI test ({})",
            stderr(&o).trim()
        );
        return;
    }
    let text = stdout(&o);
    assert!(text.contains("training on cuda"), "{text}");
    assert!(text.contains("examples/sec on cuda"), "{text}");

    // Same seed on both devices: the same batches in the same order, so the figures and
    // weights agree up to rounding.
    let flags = |optimizer: &'static str, lr: &'static str, epochs: &'static str| {
        vec![
            "--epochs",
            epochs,
            "--seed",
            "5",
            "--optimizer",
            optimizer,
            "--lr",
            lr,
            "--model",
            "lenet-relu",
        ]
    };
    let epoch_lines = |o: &Output| -> Vec<(usize, f64, f64, f64, f64)> {
        stdout(o)
            .lines()
            .filter(|l| l.starts_with("epoch ") && l.contains(": loss "))
            .map(parse_epoch_line)
            .collect()
    };
    for (optimizer, lr) in [("sgd", "0.9"), ("adam", "0.001")] {
        let cpu = temp_dir(&format!("xdev-cpu-{optimizer}"));
        let o_cpu = train(&cpu, &flags(optimizer, lr, "2"));
        assert_ok(&o_cpu);
        let gpu = temp_dir(&format!("xdev-cuda-{optimizer}"));
        let mut args = flags(optimizer, lr, "2");
        args.extend(["--device", "cuda"]);
        let o_gpu = train(&gpu, &args);
        assert_ok(&o_gpu);
        let (lc, lg) = (epoch_lines(&o_cpu), epoch_lines(&o_gpu));
        assert_eq!(lc.len(), 2);
        assert_eq!(lg.len(), 2);
        for (c, g) in lc.iter().zip(&lg) {
            assert!(
                (c.1 - g.1).abs() <= 0.01,
                "{optimizer}: loss {c:?} vs {g:?}"
            );
            assert!(
                (c.2 - g.2).abs() <= 0.01,
                "{optimizer}: train acc {c:?} vs {g:?}"
            );
            assert!(
                (c.3 - g.3).abs() <= 0.01,
                "{optimizer}: test acc {c:?} vs {g:?}"
            );
        }
        assert_weights_close(
            &gpu.join("w.safetensors"),
            &cpu.join("w.safetensors"),
            1e-3,
            &format!("{optimizer}: cuda vs cpu after 2 epochs"),
        );
    }

    // Adam: a cuda checkpoint holds the moments under the CPU optimizer's names...
    // The 2-epoch cpu Adam run of the loop above (temp_dir would empty it).
    let full = temp_path("xdev-cpu-adam");
    let cuda1 = temp_dir("xdev-cuda1");
    let mut args = flags("adam", "0.001", "1");
    args.extend(["--device", "cuda"]);
    assert_ok(&train(&cuda1, &args));
    let ck = cuda1.join("w.ckpt.safetensors");
    let (names, meta) = header(&ck);
    for key in [
        "optimizer.state.0.step",
        "optimizer.state.0.exp_avg",
        "optimizer.state.0.exp_avg_sq",
        "optimizer.state.9.exp_avg_sq",
    ] {
        assert!(names.iter().any(|(n, _)| n == key), "{key} in {names:?}");
    }
    assert!(
        !meta["optimizer_scalars"].contains("cuda_adam_state_missing"),
        "{meta:?}"
    );
    // ...and resumes on the cpu and on cuda; a cpu checkpoint resumes on cuda.
    let cpu1 = temp_dir("xdev-cpu1");
    assert_ok(&train(&cpu1, &flags("adam", "0.001", "1")));
    let cases = [
        ("cuda -> cpu", ck.clone(), "cpu"),
        ("cuda -> cuda", ck.clone(), "cuda"),
        ("cpu -> cuda", cpu1.join("w.ckpt.safetensors"), "cuda"),
    ];
    for (what, from, device) in cases {
        let dir = temp_dir(&format!("xdev-resume-{}", what.replace(" -> ", "-")));
        let o = train(
            &dir,
            &[
                "--epochs",
                "2",
                "--resume",
                from.to_str().unwrap(),
                "--device",
                device,
            ],
        );
        assert_ok(&o);
        assert!(stdout(&o).contains("resuming after epoch 1"), "{what}");
        assert_weights_close(
            &dir.join("w.safetensors"),
            &full.join("w.safetensors"),
            1e-3,
            &format!("adam {what} vs 2 epochs on the cpu"),
        );
    }
}

/// `eval` and `predict` take `--device` too (emulated under `cargo test`). Where no GPU can be
/// opened, `--device cuda` is a clear error;
/// with one, the GPU's accuracy line and predicted class are the CPU's.
#[test]
fn eval_and_predict_on_cuda_agree_with_cpu_or_fail_clearly() {
    let dir = temp_dir("cuda-inference");
    assert_ok(&train(&dir, &["--epochs", "1"]));
    let w = dir.join("w.safetensors");
    let data = data_dir();
    let eval = |device: &str| {
        run(&[
            "eval",
            "--weights",
            w.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--device",
            device,
        ])
    };
    let predict = |device: &str| {
        run(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--index",
            "3",
            "--device",
            device,
        ])
    };
    let (cpu_eval, cpu_predict) = (eval("cpu"), predict("cpu"));
    assert_ok(&cpu_eval);
    assert_ok(&cpu_predict);
    let (gpu_eval, gpu_predict) = (eval("cuda"), predict("cuda"));
    if !gpu_eval.status.success() {
        let needles = ["--device cuda", "no usable NVIDIA GPU", "--device cpu"];
        assert_fails_with(&gpu_eval, &needles);
        assert_fails_with(&gpu_predict, &needles);
        eprintln!("skipping the GPU half: {}", stderr(&gpu_eval).trim());
        return;
    }
    assert_ok(&gpu_predict);
    // Rounding may flip a prediction whose two top scores tie to ~1e-6; allow one in 100.
    let acc = |o: &Output| -> f64 {
        let text = stdout(o);
        let at = text.find("test acc ").expect("eval prints test acc") + "test acc ".len();
        text[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!((acc(&gpu_eval) - acc(&cpu_eval)).abs() <= 0.01);
    let predicted = |o: &Output| {
        stdout(o)
            .lines()
            .find(|l| l.starts_with("predicted:"))
            .and_then(|l| l.split(" (").next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(predicted(&gpu_predict), predicted(&cpu_predict));
}
