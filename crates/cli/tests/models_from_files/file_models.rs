//! A weight file with an architecture outside the zoo: `eval`, `predict`, `summary` and
//! `export` read it, `train` fine-tunes it and resumes from its checkpoint alone.

use super::*;

#[test]
fn eval_predict_and_summary_from_a_file_with_its_own_architecture() {
    let dir = temp_dir("custom");
    let file = custom_file(&dir);
    let data = data_dir();

    let o = run(&["eval", "--weights", s(&file), "--data", s(data)]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!(
            "custom.safetensors on {TEST_LEN} test images of {}: test acc 1.000 ({TEST_LEN} of {TEST_LEN})",
            data.display()
        )),
        "{text}"
    );

    // The same on a GPU (the forward without gradients, through the Graph's nodes there).
    let o = run(&[
        "eval",
        "--weights",
        s(&file),
        "--data",
        s(data),
        "--device",
        "cuda",
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("test acc 1.000"), "{}", stdout(&o));

    // Test image 0: the printed probabilities are the reference's, to their 4 decimals.
    let (images, labels) = synthetic_split(TEST_LEN, TEST_SEED);
    let want = reference_probs(&residual_mlp_weights(), &images[..784]);
    let o = run(&[
        "predict",
        "--weights",
        s(&file),
        "--index",
        "0",
        "--data",
        s(data),
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("model custom.safetensors"), "{text}");
    // Rows `[*] <class> <name> <probability>` (names may hold a space: "Ankle boot").
    let rows: Vec<(usize, f64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l
                .trim_start_matches(['*', ' '])
                .split_whitespace()
                .collect();
            let class = f.first()?.parse().ok()?;
            let p = f.last()?.parse().ok()?;
            (f.len() >= 3).then_some((class, p))
        })
        .collect();
    assert_eq!(rows.len(), 10, "{text}");
    for (class, p) in rows {
        assert!(
            (p - want[class]).abs() <= 0.6e-4,
            "class {class}: {p} vs {}\n{text}",
            want[class]
        );
    }
    let starred = text.lines().find(|l| l.starts_with('*')).unwrap();
    assert!(
        starred.starts_with(&format!("* {} ", labels[0])),
        "{starred}"
    );

    let o = run(&["summary", "--model", s(&file)]);
    assert_ok(&o);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "custom.safetensors for input [1, 1, 28, 28]",
        "{text}"
    );
    let expect = [
        ("body.0", "Flatten output shape: [1, 784]", None),
        (
            "body.1",
            "Linear output shape: [1, 16]",
            Some(784 * 16 + 16),
        ),
        ("body.2", "ReLU output shape: [1, 16]", None),
        ("res.fc", "Linear output shape: [1, 16]", Some(16 * 16 + 16)),
        ("res.act", "ReLU output shape: [1, 16]", None),
        (
            "res.sum",
            "Add output shape: [1, 16] (from body.2, res.act)",
            None,
        ),
        ("head", "Linear output shape: [1, 10]", Some(16 * 10 + 10)),
    ];
    for (line, (name, rest, params)) in lines[1..].iter().zip(expect) {
        let (n, r) = line.split_once(' ').unwrap();
        assert_eq!(n, name, "{line:?}");
        assert!(r.trim_start().starts_with(rest), "{line:?} vs {rest:?}");
        match params {
            Some(p) => assert!(line.ends_with(&format!("  {p} params")), "{line:?}"),
            None => assert!(!line.contains("params"), "{line:?}"),
        }
    }
    assert_eq!(lines[8], "total params: 13002");

    // --model that contradicts the file.
    let o = run(&[
        "eval",
        "--weights",
        s(&file),
        "--model",
        "lenet",
        "--data",
        s(data),
    ]);
    assert_fails_with(&o, &["holds a custom.safetensors model", "--model lenet"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn export_records_the_architecture_and_old_files_are_lenet() {
    let dir = temp_dir("export");
    let file = custom_file(&dir);
    let copy = dir.join("copy.safetensors");
    let o = run(&["export", "--weights", s(&file), "--out", s(&copy)]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("(custom.safetensors, 6 tensors, 13002 values)"),
        "{}",
        stdout(&o)
    );
    let (tensors, meta) = read_safetensors(&copy);
    let mut want = residual_mlp_weights();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(tensors, want);
    assert_eq!(
        Architecture::from_json(&meta[METADATA_KEY]).unwrap(),
        residual_mlp()
    );
    assert!(!meta.contains_key("model"), "{meta:?}");
    assert_eq!(meta["format"], "pt");

    // A file of an older tinycnn, or PyTorch's, with no metadata: LeNet, as before, and the
    // export records LeNet's name and layers.
    let old = dir.join("old.safetensors");
    let lenet: Tensors = [
        ("0.weight", vec![6, 1, 5, 5]),
        ("0.bias", vec![6]),
        ("3.weight", vec![16, 6, 5, 5]),
        ("3.bias", vec![16]),
        ("7.weight", vec![120, 400]),
        ("7.bias", vec![120]),
        ("9.weight", vec![84, 120]),
        ("9.bias", vec![84]),
        ("11.weight", vec![10, 84]),
        ("11.bias", vec![10]),
    ]
    .into_iter()
    .map(|(n, s)| {
        let len = s.iter().product();
        (n.to_string(), s, vec![0.25; len])
    })
    .collect();
    write_safetensors(&old, &lenet, &[]);
    let new = dir.join("new.safetensors");
    assert_ok(&run(&["export", "--weights", s(&old), "--out", s(&new)]));
    let (_, meta) = read_safetensors(&new);
    assert_eq!(meta["model"], "lenet");
    let arch = Architecture::from_json(&meta[METADATA_KEY]).unwrap();
    assert_eq!(arch.input, [1, 28, 28]);
    assert_eq!(arch.nodes.len(), 12);
    assert_eq!(arch.nodes[1].layer, LayerSpec::Sigmoid);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_fine_tunes_a_file_model_and_resumes_from_the_checkpoint_alone() {
    let dir = temp_dir("train");
    let file = custom_file(&dir);
    let data = data_dir();
    let tuned = dir.join("tuned.safetensors");
    let common = ["--data", s(data), "--batch-size", "64", "--threads", "2"];
    let mut args = vec!["train", "--model", s(&file), "--epochs", "1", "--lr", "0.1"];
    args.extend(["--out", s(&tuned)]);
    args.extend(common);
    let o = run(&args);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.starts_with("custom.safetensors, sgd lr 0.1"), "{text}");
    assert!(
        text.contains(&format!(
            "fine-tuning from the weights of {}",
            file.display()
        )),
        "{text}"
    );
    // Fine-tuning starts from weights that classify everything: the first epoch's test
    // accuracy stays high (from a fresh init, one epoch at lr 0.1 does not get there).
    let epoch = text.lines().find(|l| l.starts_with("epoch 1:")).unwrap();
    let acc: f64 = epoch.split("test acc ").nth(1).unwrap()[..5]
        .parse()
        .unwrap();
    assert!(acc >= 0.9, "{epoch}");
    let (tensors, meta) = read_safetensors(&tuned);
    assert_eq!(
        Architecture::from_json(&meta[METADATA_KEY]).unwrap(),
        residual_mlp()
    );
    assert!(!meta.contains_key("model"));
    let start = residual_mlp_weights();
    let moved = tensors
        .iter()
        .filter(|t| start.iter().find(|s| s.0 == t.0).unwrap().2 != t.2)
        .count();
    assert!(moved > 0, "training changed no tensor");

    // The checkpoint alone resumes the run.
    let ck = dir.join("tuned.ckpt.safetensors");
    let mut args = vec![
        "train",
        "--resume",
        s(&ck),
        "--epochs",
        "2",
        "--out",
        s(&tuned),
    ];
    args.extend(common);
    let o = run(&args);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("resuming after epoch 1"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("epoch 2:"), "{}", stdout(&o));
    // And the result evaluates from the file alone.
    assert_ok(&run(&["eval", "--weights", s(&tuned), "--data", s(data)]));

    // --init: the same architecture from PyTorch's default init, not the file's weights.
    let fresh = dir.join("fresh.safetensors");
    let mut args = vec!["train", "--model", s(&file), "--init", "--epochs", "1"];
    args.extend(["--lr", "0.1", "--out", s(&fresh)]);
    args.extend(common);
    let o = run(&args);
    assert_ok(&o);
    assert!(!stdout(&o).contains("fine-tuning"), "{}", stdout(&o));
    let (_, meta) = read_safetensors(&fresh);
    assert_eq!(
        Architecture::from_json(&meta[METADATA_KEY]).unwrap(),
        residual_mlp()
    );

    // On a GPU: the Graph's parameters and batch statistics move there and back.
    let on_gpu = dir.join("gpu.safetensors");
    let mut args = vec!["train", "--model", s(&file), "--epochs", "1", "--lr", "0.1"];
    args.extend(["--device", "cuda", "--out", s(&on_gpu)]);
    args.extend(common);
    let o = run(&args);
    assert_ok(&o);
    assert!(stdout(&o).contains("training on cuda"), "{}", stdout(&o));
    let (_, meta) = read_safetensors(&on_gpu);
    assert_eq!(
        Architecture::from_json(&meta[METADATA_KEY]).unwrap(),
        residual_mlp()
    );

    // Without --out: `<stem>-finetuned.safetensors` in the working directory, never the
    // model file itself.
    let mut args = vec!["train", "--model", "custom.safetensors", "--epochs", "1"];
    args.extend(common);
    assert_ok(&run_in(&dir, &args));
    let (_, meta) = read_safetensors(&dir.join("custom-finetuned.safetensors"));
    assert_eq!(
        Architecture::from_json(&meta[METADATA_KEY]).unwrap(),
        residual_mlp()
    );
    assert!(dir.join("custom-finetuned.ckpt.safetensors").exists());
    assert_eq!(read_safetensors(&file).0, {
        let mut w = residual_mlp_weights();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    });

    // A model file that names its data set: the run follows it, as eval and predict do (the
    // synthetic files stand in for MNIST's, which have the same names).
    let digits = dir.join("digits.safetensors");
    write_safetensors(
        &digits,
        &residual_mlp_weights(),
        &[
            ("dataset", "mnist".into()),
            (METADATA_KEY, residual_mlp().to_json().unwrap()),
        ],
    );
    let digits_out = dir.join("digits-out.safetensors");
    let mut args = vec!["train", "--model", s(&digits), "--epochs", "1"];
    args.extend(["--out", s(&digits_out)]);
    args.extend(common);
    assert_ok(&run(&args));
    assert_eq!(read_safetensors(&digits_out).1["dataset"], "mnist");

    assert_fails_with(
        &run(&["train", "--init", "--data", s(data)]),
        &["--init goes with --model FILE"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
