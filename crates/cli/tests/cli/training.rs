//! `tinycnn train`: its output lines, the files it writes, resuming, and divergence.

use super::*;

#[test]
fn dscnn_trains_with_its_own_recipe_and_its_weights_evaluate_the_same() {
    let dir = temp_dir("train-dscnn");
    let o = train(&dir, &["--model", "dscnn", "--epochs", "1", "--seed", "5"]);
    assert_ok(&o);
    let text = stdout(&o);
    // No --optimizer / --lr: the zoo's recipe for dscnn.
    assert!(
        text.starts_with("dscnn, adam lr 0.005, batch size 64"),
        "{text}"
    );
    let epoch = text
        .lines()
        .find(|l| l.starts_with("epoch 1"))
        .map(parse_epoch_line)
        .unwrap_or_else(|| panic!("{text}"));
    // The weight file holds the batch norms' buffers under PyTorch's names.
    let (names, meta) = header(&dir.join("w.safetensors"));
    assert_eq!(meta["model"], "dscnn");
    let keys: Vec<&str> = names.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "1.running_mean",
        "1.running_var",
        "3.4.running_var",
        "6.4.weight",
        "9.bias",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    let tracked = names
        .iter()
        .find(|(k, _)| k == "1.num_batches_tracked")
        .unwrap();
    assert!(tracked.1.is_empty(), "a scalar: {tracked:?}");
    // eval runs the batch norms in evaluation mode, as training's test pass did.
    let w = dir.join("w.safetensors");
    let o = run(&[
        "eval",
        "--weights",
        w.to_str().unwrap(),
        "--data",
        data_dir().to_str().unwrap(),
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.contains(&format!("test acc {:.3}", epoch.3)),
        "eval should agree with training's test acc {:.3}:\n{text}",
        epoch.3
    );
    // --optimizer sgd without --lr takes dscnn's SGD rate, not LeNet's 0.9.
    let dir = temp_dir("train-dscnn-sgd");
    let o = train(
        &dir,
        &["--model", "dscnn", "--epochs", "1", "--optimizer", "sgd"],
    );
    assert_ok(&o);
    assert!(
        stdout(&o).starts_with("dscnn, sgd lr 0.1,"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn train_prints_d2l_lines_and_writes_weights_checkpoint_and_plot() {
    let dir = temp_dir("train");
    let plot = dir.join("curves.svg");
    let o = train(
        &dir,
        &[
            "--epochs",
            "2",
            "--seed",
            "3",
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    assert_ok(&o);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"training on cpu"), "{text}");
    let epochs: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("epoch "))
        .map(|l| parse_epoch_line(l))
        .collect();
    assert_eq!(epochs.len(), 2, "{text}");
    assert_eq!((epochs[0].0, epochs[1].0), (1, 2));
    for &(_, loss, acc, test, eps) in &epochs {
        assert!(
            loss > 0.0
                && loss < 5.0
                && (0.0..=1.0).contains(&acc)
                && (0.0..=1.0).contains(&test)
                && eps > 0.0
        );
    }
    // d2l's closing lines, with the last epoch's figures.
    let (_, loss, acc, test, _) = epochs[1];
    let closing = format!("loss {loss:.3}, train acc {acc:.3}, test acc {test:.3}");
    let at = lines
        .iter()
        .position(|l| *l == closing)
        .unwrap_or_else(|| panic!("no {closing:?} in\n{text}"));
    let speed = lines[at + 1]
        .strip_suffix(" examples/sec on cpu")
        .unwrap_or_else(|| panic!("{}", lines[at + 1]));
    assert_eq!(speed.split_once('.').unwrap().1.len(), 1, "{speed}");
    assert!(speed.parse::<f64>().unwrap() > 0.0);

    let (names, meta) = header(&dir.join("w.safetensors"));
    assert_eq!(names, lenet_state_dict());
    assert_eq!(meta["model"], "lenet");
    let (ck_names, ck_meta) = header(&dir.join("w.ckpt.safetensors"));
    assert_eq!(ck_meta["epochs_done"], "2");
    assert_eq!(ck_meta["optimizer"], "sgd");
    assert_eq!(ck_meta["seed"], "3");
    assert!(ck_names.len() >= names.len());
    for n in &names {
        assert!(ck_names.contains(n), "checkpoint lacks {n:?}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("train loss") && svg.contains("test acc"));

    // The trained file evaluates and predicts.
    let w = dir.join("w.safetensors");
    let o = run(&[
        "eval",
        "--weights",
        w.to_str().unwrap(),
        "--data",
        data_dir().to_str().unwrap(),
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(
        text.contains(&format!("test acc {test:.3}")),
        "eval should agree with training's last test acc {test:.3}:\n{text}"
    );
    for class in FASHION_MNIST_CLASSES {
        assert!(
            text.contains(class),
            "confusion matrix lacks {class}:\n{text}"
        );
    }
    let o = run(&[
        "predict",
        "--weights",
        w.to_str().unwrap(),
        "--index",
        "0",
        "--data",
        data_dir().to_str().unwrap(),
    ]);
    assert_ok(&o);
    check_probabilities(&stdout(&o));

    // A PNG of another size and colour: a dark bar on a white RGB page, inverted by `auto`.
    let png = dir.join("bar.png");
    let img = image::RgbImage::from_fn(56, 56, |_, y| {
        if (8..12).contains(&y) {
            image::Rgb([20, 20, 40])
        } else {
            image::Rgb([250, 250, 250])
        }
    });
    img.save(&png).unwrap();
    let o = run(&[
        "predict",
        "--weights",
        w.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("inverted"), "{text}");
    check_probabilities(&text);

    // Export re-saves the same tensors.
    let g = dir.join("exported.safetensors");
    let o = run(&[
        "export",
        "--weights",
        dir.join("w.ckpt.safetensors").to_str().unwrap(),
        "--out",
        g.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert_eq!(header(&g).0, lenet_state_dict());
    assert_eq!(model_tensor_bytes(&g), model_tensor_bytes(&w));
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    for (optimizer, lr) in [("sgd", "0.9"), ("adam", "0.001")] {
        let full = temp_dir(&format!("full-{optimizer}"));
        let o = train(
            &full,
            &[
                "--epochs",
                "2",
                "--seed",
                "5",
                "--optimizer",
                optimizer,
                "--lr",
                lr,
                "--model",
                "lenet-relu",
            ],
        );
        assert_ok(&o);

        let split = temp_dir(&format!("split-{optimizer}"));
        let o = train(
            &split,
            &[
                "--epochs",
                "1",
                "--seed",
                "5",
                "--optimizer",
                optimizer,
                "--lr",
                lr,
                "--model",
                "lenet-relu",
            ],
        );
        assert_ok(&o);
        let ck = split.join("w.ckpt.safetensors");
        let o = train(&split, &["--epochs", "2", "--resume", ck.to_str().unwrap()]);
        assert_ok(&o);
        assert!(
            stdout(&o).contains("resuming after epoch 1"),
            "{}",
            stdout(&o)
        );
        assert_eq!(
            model_tensor_bytes(&split.join("w.safetensors")),
            model_tensor_bytes(&full.join("w.safetensors")),
            "{optimizer}: resumed weights differ"
        );
        // The printed summary covers both epochs, as in the uninterrupted run.
        let last = |o: &Output| {
            stdout(o)
                .lines()
                .find(|l| l.starts_with("loss "))
                .map(str::to_string)
        };
        let o_full = train(
            &full,
            &[
                "--epochs",
                "2",
                "--resume",
                full.join("w.ckpt.safetensors").to_str().unwrap(),
            ],
        );
        assert_ok(&o_full);
        assert_eq!(last(&o_full), last(&o));

        // A flag that contradicts the checkpoint is refused.
        let o = train(
            &split,
            &[
                "--epochs",
                "3",
                "--resume",
                ck.to_str().unwrap(),
                "--lr",
                "0.5",
            ],
        );
        assert_fails_with(&o, &["--lr 0.5", "checkpoint"]);
    }
}

#[test]
fn diverging_training_stops_with_a_clear_error() {
    let dir = temp_dir("nan");
    let o = train(
        &dir,
        &["--epochs", "2", "--lr", "1e30", "--model", "lenet-relu"],
    );
    assert_fails_with(&o, &["epoch 1", "batch", "lower learning rate"]);
}
