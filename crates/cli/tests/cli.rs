//! End-to-end tests of the `tinycnn` binary on a small synthetic Fashion-MNIST-shaped data set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The binary under test; `TINYCNN_BIN` overrides it where the tests run away from the
/// build (scripts/gpu-check.sh stages this test binary and the CLI on a GPU machine).
fn bin() -> Command {
    let exe = std::env::var_os("TINYCNN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tinycnn")));
    let mut c = Command::new(exe);
    // Keep the data search away from the real data set and from the network. `--device cuda`
    // runs on the emulated device where the binary was built with tinycnn's `cuda-emu` (as
    // `cargo test` builds it); a release binary ignores the variable and uses a real GPU.
    c.env_remove("TINYCNN_DATA")
        .env("TINYCNN_DATA_URL", "http://127.0.0.1:9/")
        .env("TINYCNN_CUDA_EMULATE", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Asserts exit code 1, a message containing every `needle` on stderr, and no panic.
fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinycnn-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// Class `c` is a bright horizontal bar on rows `2c+4 ..= 2c+5` with speckle noise, so a
/// small net can learn it in an epoch or two.
fn synthetic_split(n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = (next() % 10) as usize;
        labels.push(c as u8);
        for r in 0..28 {
            for _ in 0..28 {
                let bar = r == 2 * c + 4 || r == 2 * c + 5;
                let noise = (next() % 60) as u8;
                images.push(if bar { 195 + noise } else { noise });
            }
        }
    }
    (images, labels)
}

/// A directory with 512 training and 256 test images in the four IDX files (raw, not gzip).
fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = temp_dir("data");
        for (prefix, n, seed) in [("train", 512u32, 1u64), ("t10k", 256, 2)] {
            let (images, labels) = synthetic_split(n as usize, seed);
            std::fs::write(
                d.join(format!("{prefix}-images-idx3-ubyte")),
                idx_bytes(&[n, 28, 28], &images),
            )
            .unwrap();
            std::fs::write(
                d.join(format!("{prefix}-labels-idx1-ubyte")),
                idx_bytes(&[n], &labels),
            )
            .unwrap();
        }
        d
    })
}

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

/// Tensor names with their shapes, and the metadata, of a safetensors header.
type Header = (
    Vec<(String, Vec<usize>)>,
    serde_json::Map<String, serde_json::Value>,
);

/// The names and shapes in a safetensors header, and its metadata.
fn header(path: &Path) -> Header {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut names = Vec::new();
    let mut meta = serde_json::Map::new();
    for (k, v) in json.as_object().unwrap() {
        if k == "__metadata__" {
            meta = v.as_object().unwrap().clone();
        } else {
            assert_eq!(v["dtype"], "F32");
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            names.push((k.clone(), shape));
        }
    }
    names.sort();
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

#[test]
fn summary_walks_lenet_shapes_like_d2l() {
    let o = run(&["summary"]);
    assert_ok(&o);
    let text = stdout(&o);
    let expected = [
        "Conv2d output shape: [1, 6, 28, 28]",
        "Sigmoid output shape: [1, 6, 28, 28]",
        "AvgPool2d output shape: [1, 6, 14, 14]",
        "Conv2d output shape: [1, 16, 10, 10]",
        "Sigmoid output shape: [1, 16, 10, 10]",
        "AvgPool2d output shape: [1, 16, 5, 5]",
        "Flatten output shape: [1, 400]",
        "Linear output shape: [1, 120]",
        "Sigmoid output shape: [1, 120]",
        "Linear output shape: [1, 84]",
        "Sigmoid output shape: [1, 84]",
        "Linear output shape: [1, 10]",
    ];
    let shape_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("output shape:"))
        .collect();
    assert_eq!(shape_lines.len(), expected.len(), "{text}");
    // Each line is the layer's name (its index in the Sequential), then d2l's line.
    for (i, (line, want)) in shape_lines.iter().zip(expected).enumerate() {
        let (name, rest) = line.split_once(' ').unwrap();
        assert_eq!(name, i.to_string(), "{line:?}");
        assert!(
            rest.trim_start().starts_with(want),
            "{line:?} should continue with {want:?}"
        );
    }
    // 6*1*25+6, 16*6*25+16, 400*120+120, 120*84+84, 84*10+10.
    for (layer, count) in [(0, 156), (3, 2416), (7, 48120), (9, 10164), (11, 850)] {
        assert!(
            shape_lines[layer]
                .trim_end()
                .ends_with(&format!("{count} params")),
            "{:?} should end with {count} params",
            shape_lines[layer]
        );
    }
    assert!(text.contains("total params: 61706"), "{text}");

    let o = run(&["summary", "--model", "lenet-relu"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("ReLU output shape: [1, 6, 28, 28]"), "{text}");
    assert!(
        text.contains("MaxPool2d output shape: [1, 16, 5, 5]"),
        "{text}"
    );
    assert!(text.contains("total params: 61706"), "{text}");
}

#[test]
fn summary_lists_the_leaves_of_nested_dscnn_with_dotted_paths() {
    let o = run(&["summary", "--model", "dscnn"]);
    assert_ok(&o);
    let text = stdout(&o);
    let shape_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("output shape:"))
        .collect();
    // Stem (3 layers), four blocks of six, pooling, flatten, linear.
    assert_eq!(shape_lines.len(), 3 + 4 * 6 + 3, "{text}");
    let starts = |i: usize, want: &str| {
        let words: Vec<&str> = shape_lines[i].split_whitespace().collect();
        assert_eq!(words[..2].join(" "), want, "{}", shape_lines[i]);
    };
    starts(0, "0 Conv2d");
    starts(1, "1 BatchNorm2d");
    starts(3, "3.0 Conv2d");
    starts(26, "6.5 ReLU");
    starts(29, "9 Linear");
    assert!(
        shape_lines[3].contains("output shape: [1, 32, 14, 14]")
            && shape_lines[3].ends_with("288 params"),
        "{}",
        shape_lines[3]
    );
    assert!(shape_lines[27].contains("AdaptiveAvgPool2d output shape: [1, 128, 1, 1]"));
    assert!(text.contains("total params: 49418"), "{text}");
}

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
    for class in [
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
    ] {
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
    assert_eq!(tensor_bytes(&g), tensor_bytes(&w));
}

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
    let names = [
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
    assert!(
        text.contains(&format!("predicted: {}", names[best])),
        "{text}"
    );
}

/// The raw tensor bytes of a safetensors file, by name.
fn tensor_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let body = &bytes[8 + n..];
    let mut out: Vec<(String, Vec<u8>)> = json
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__" && !k.starts_with("optimizer."))
        .map(|(k, v)| {
            let o = v["data_offsets"].as_array().unwrap();
            let (a, b) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            (k.clone(), body[a..b].to_vec())
        })
        .collect();
    out.sort();
    out
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
            tensor_bytes(&split.join("w.safetensors")),
            tensor_bytes(&full.join("w.safetensors")),
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

#[test]
fn bad_inputs_exit_1_with_a_message() {
    let dir = temp_dir("bad");
    let missing = dir.join("missing.safetensors");
    assert_fails_with(
        &run(&["eval", "--weights", missing.to_str().unwrap()]),
        &["missing.safetensors"],
    );

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    assert_fails_with(
        &run(&["eval", "--weights", garbage.to_str().unwrap()]),
        &["garbage.safetensors", "safetensors"],
    );
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            garbage.to_str().unwrap(),
            "--index",
            "0",
        ]),
        &["safetensors"],
    );

    // A weight file for another network: the key and both shapes are named.
    let wrong = dir.join("wrong.safetensors");
    write_safetensors(&wrong, &[("0.weight", &[6, 1, 3, 3]), ("0.bias", &[6])]);
    assert_fails_with(
        &run(&[
            "eval",
            "--weights",
            wrong.to_str().unwrap(),
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["0.weight", "[6, 1, 3, 3]", "[6, 1, 5, 5]"],
    );
    assert_fails_with(
        &run(&[
            "export",
            "--weights",
            wrong.to_str().unwrap(),
            "--out",
            dir.join("x.safetensors").to_str().unwrap(),
        ]),
        &["0.weight"],
    );

    // Bad arguments.
    assert_fails_with(&run(&["train", "--epochs", "abc"]), &["--epochs"]);
    assert_fails_with(&run(&["train", "--model", "resnet"]), &["resnet"]);
    assert_fails_with(&run(&["summary", "--model", "alexnet"]), &["alexnet"]);
    assert_fails_with(&run(&["frobnicate"]), &["frobnicate"]);
    assert_fails_with(
        &run(&["predict", "--weights", "w.safetensors"]),
        &["--index"],
    );
    assert_fails_with(
        &run(&[
            "train",
            "--epochs",
            "0",
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["--epochs"],
    );
    assert_fails_with(
        &run(&[
            "train",
            "--batch-size",
            "0",
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["batch"],
    );
    assert_fails_with(
        &run(&["train", "--resume", missing.to_str().unwrap()]),
        &["missing.safetensors"],
    );

    // A checkpoint is required for --resume, not a plain weight file.
    let plain = dir.join("plain.safetensors");
    write_safetensors(&plain, &[("0.bias", &[6])]);
    assert_fails_with(
        &run(&["train", "--resume", plain.to_str().unwrap()]),
        &["checkpoint"],
    );

    // Not a PNG.
    let trained = temp_dir("bad-trained");
    assert_ok(&train(&trained, &["--epochs", "1"]));
    let w = trained.join("w.safetensors");
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            garbage.to_str().unwrap(),
        ]),
        &["PNG"],
    );
    // Index past the test set.
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            "--index",
            "256",
            "--data",
            data_dir().to_str().unwrap(),
        ]),
        &["256"],
    );
}

/// The model tensors of a safetensors file as f32 values, by name.
fn tensor_values(path: &Path) -> Vec<(String, Vec<f32>)> {
    tensor_bytes(path)
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
    let full =
        std::env::temp_dir().join(format!("tinycnn-cli-{}-xdev-cpu-adam", std::process::id()));
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
        !meta["optimizer_scalars"]
            .as_str()
            .unwrap()
            .contains("cuda_adam_state_missing"),
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

/// Writes a safetensors file of zero-filled F32 tensors without metadata.
fn write_safetensors(path: &Path, tensors: &[(&str, &[usize])]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let n: usize = shape.iter().product::<usize>() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.resize(bytes.len() + offset, 0);
    std::fs::write(path, bytes).unwrap();
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

/// The tensors (name, shape, values) and metadata of a safetensors file written by tinycnn.
type Contents = (
    Vec<(String, Vec<usize>, Vec<f32>)>,
    serde_json::Map<String, serde_json::Value>,
);

fn read_contents(path: &Path) -> Contents {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let body = &bytes[8 + n..];
    let mut tensors = Vec::new();
    let mut meta = serde_json::Map::new();
    for (k, v) in json.as_object().unwrap() {
        if k == "__metadata__" {
            meta = v.as_object().unwrap().clone();
            continue;
        }
        let o = v["data_offsets"].as_array().unwrap();
        let (a, b) = (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        );
        let shape = v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let values = body[a..b]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        tensors.push((k.clone(), shape, values));
    }
    (tensors, meta)
}

fn write_contents(path: &Path, (tensors, meta): &Contents) {
    let mut header = serde_json::Map::new();
    let mut body = Vec::new();
    for (name, shape, values) in tensors {
        let start = body.len();
        body.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, body.len()]}),
        );
    }
    if !meta.is_empty() {
        header.insert(
            "__metadata__".into(),
            serde_json::Value::Object(meta.clone()),
        );
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&body);
    std::fs::write(path, bytes).unwrap();
}

/// Copies a safetensors file through `edit`.
fn edit_file(src: &Path, dst: &Path, edit: impl FnOnce(&mut Contents)) {
    let mut c = read_contents(src);
    edit(&mut c);
    write_contents(dst, &c);
}

fn set_value(c: &mut Contents, name: &str, index: usize, v: f32) {
    let t = c.0.iter_mut().find(|t| t.0 == name).unwrap();
    t.2[index] = v;
}

fn set_meta(c: &mut Contents, key: &str, v: &str) {
    c.1.insert(key.into(), serde_json::Value::String(v.into()));
}

/// The CRC-32 of PNG chunks (ISO 3309), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    c.extend_from_slice(&body);
    c.extend_from_slice(&crc32(&body).to_be_bytes());
    c
}

/// A small PNG file whose header declares `w`x`h` 8-bit gray pixels (the pixel data is a
/// stub: a decoder that trusts the header allocates before it finds out).
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]));
    png.extend(png_chunk(b"IEND", &[]));
    png
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

#[test]
fn predict_checks_the_declared_picture_size_before_decoding() {
    let dir = temp_dir("huge-png");
    let w = trained_weights().join("w.safetensors");
    for (width, height) in [(20_000u32, 20_000u32), (16_385, 1), (6_000, 6_000)] {
        let png = dir.join(format!("claims-{width}x{height}.png"));
        std::fs::write(&png, png_declaring(width, height)).unwrap();
        let o = run(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            png.to_str().unwrap(),
        ]);
        assert_fails_with(
            &o,
            &[&format!("{width}x{height}"), "16384", "25 megapixels"],
        );
    }
    // A large picture within the limits is read (row by row) and classified.
    let png = dir.join("wide.png");
    image::GrayImage::from_fn(4_000, 1_000, |x, _| image::Luma([(x % 256) as u8]))
        .save(&png)
        .unwrap();
    let o = run(&[
        "predict",
        "--weights",
        w.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    assert_ok(&o);
    assert!(stdout(&o).contains("4000x1000 -> 28x28"), "{}", stdout(&o));
    check_probabilities(&stdout(&o));
}

#[test]
fn thread_counts_are_bounded() {
    for n in ["100000000", "1025", "0"] {
        let o = run(&["eval", "--weights", "w.safetensors", "--threads", n]);
        assert_fails_with(&o, &["--threads", "between 1 and 1024", n]);
    }
}

/// Outputs that cannot be written, or that are one file under two names, are refused before
/// any training, and nothing is overwritten.
#[cfg(unix)]
#[test]
fn output_paths_are_checked_before_training() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = temp_dir("outputs");
    let out = dir.join("w.safetensors");
    std::fs::write(&out, b"keep me").unwrap();
    let dotted = dir.join(".").join("w.safetensors");
    let ckpt = dir.join("w.ckpt.safetensors");
    let link_to_ckpt = dir.join("curves.svg");
    symlink("w.ckpt.safetensors", &link_to_ckpt).unwrap();
    let nowhere = dir.join("no-such-dir/c.svg");
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let cases: [(Vec<&str>, &[&str]); 5] = [
        // --plot naming --out as ./w.safetensors.
        (
            vec!["--plot", dotted.to_str().unwrap()],
            &["--out", "--plot", "same file"],
        ),
        // --plot a symbolic link to the (not yet written) checkpoint.
        (
            vec!["--plot", link_to_ckpt.to_str().unwrap()],
            &["--checkpoint", "--plot", "same file"],
        ),
        (
            vec!["--checkpoint", out.to_str().unwrap()],
            &["--checkpoint", "same file"],
        ),
        (vec!["--plot", fifo.to_str().unwrap()], &["--plot", "FIFO"]),
        (
            vec!["--plot", nowhere.to_str().unwrap()],
            &["--plot", "no-such-dir", "does not exist"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["--epochs", "1"];
        args.extend(extra);
        let o = train(&dir, &args);
        assert_fails_with(&o, needles);
        assert!(!stdout(&o).contains("epoch 1"), "{}", stdout(&o));
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
        assert!(!ckpt.exists());
    }
    // A --checkpoint in a read-only place fails before training too.
    let o = train(&dir, &["--checkpoint", "/proc/w.ckpt.safetensors"]);
    assert_fails_with(&o, &["--checkpoint", "/proc"]);

    // --out a symbolic link to a file of mode 0600: written through, the link and the mode
    // stay. The file name of the link's target is 255 bytes, the longest legal one.
    let long = "w".repeat(255);
    let target = dir.join(&long);
    std::fs::write(&target, b"stale weights").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("latest.safetensors");
    symlink(&long, &link).unwrap();
    let o = run(&[
        "train",
        "--data",
        data_dir().to_str().unwrap(),
        "--out",
        link.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--batch-size",
        "64",
        "--threads",
        "2",
        "--epochs",
        "1",
    ]);
    assert_ok(&o);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(header(&target).0, lenet_state_dict());
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No temporary file is left beside the outputs.
    let stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let dir = temp_dir("nan-weights");
    let w = trained_weights().join("w.safetensors");
    let ck = trained_weights().join("w.ckpt.safetensors");
    let nan = dir.join("nan.safetensors");
    edit_file(&w, &nan, |c| set_value(c, "0.weight", 17, f32::NAN));
    let o = run(&[
        "eval",
        "--weights",
        nan.to_str().unwrap(),
        "--data",
        data_dir().to_str().unwrap(),
    ]);
    assert_fails_with(
        &o,
        &["nan.safetensors", "weight 0.weight holds NaN at index 17"],
    );
    let o = run(&[
        "predict",
        "--weights",
        nan.to_str().unwrap(),
        "--index",
        "0",
    ]);
    assert_fails_with(&o, &["weight 0.weight holds NaN at index 17"]);

    let inf = dir.join("inf.ckpt.safetensors");
    edit_file(&ck, &inf, |c| set_value(c, "3.bias", 2, f32::INFINITY));
    let o = train(&dir, &["--epochs", "2", "--resume", inf.to_str().unwrap()]);
    assert_fails_with(&o, &["inf.ckpt.safetensors", "3.bias holds inf at index 2"]);
    assert!(!stdout(&o).contains("epoch 2"), "{}", stdout(&o));
}

/// A resumed run that diverges names the checkpoint it read (the one that still holds good
/// weights), not the --checkpoint it has not written yet.
#[test]
fn a_diverging_resume_names_the_file_it_read() {
    let dir = temp_dir("resume-diverge");
    assert_ok(&train(&dir, &["--epochs", "1", "--model", "lenet-relu"]));
    let read = dir.join("hot.ckpt.safetensors");
    edit_file(&dir.join("w.ckpt.safetensors"), &read, |c| {
        set_meta(c, "lr", "1e30")
    });
    let other = dir.join("other.ckpt.safetensors");
    let o = train(
        &dir,
        &[
            "--epochs",
            "3",
            "--resume",
            read.to_str().unwrap(),
            "--checkpoint",
            other.to_str().unwrap(),
        ],
    );
    assert_fails_with(
        &o,
        &[
            "epoch 2",
            "diverged",
            &format!("{} holds epoch 1", read.display()),
        ],
    );
    assert!(!other.exists());
}

#[test]
fn checkpoint_values_are_reported_as_the_files_not_as_flags() {
    let dir = temp_dir("ck-values");
    let ck = trained_weights().join("w.ckpt.safetensors");
    for (key, value, needle) in [
        ("batch_size", "0", "batch_size is 0"),
        ("lr", "-0.5", "lr = -0.5"),
        ("lr", "NaN", "lr = NaN is not a positive number"),
    ] {
        let bad = dir.join(format!("bad-{key}.ckpt.safetensors"));
        edit_file(&ck, &bad, |c| set_meta(c, key, value));
        let o = train(&dir, &["--epochs", "2", "--resume", bad.to_str().unwrap()]);
        assert_fails_with(&o, &[bad.to_str().unwrap(), needle]);
        let err = stderr(&o);
        assert!(
            !err.contains("--batch-size") && !err.contains("--lr"),
            "{err}"
        );
    }
}

#[test]
fn optimizer_state_must_match_the_optimizer_named() {
    let dir = temp_dir("ck-optim");
    assert_ok(&train(
        &dir,
        &["--epochs", "1", "--optimizer", "adam", "--lr", "0.001"],
    ));
    let adam = dir.join("w.ckpt.safetensors");
    // Adam without its moments.
    let bare = dir.join("bare.ckpt.safetensors");
    edit_file(&adam, &bare, |c| {
        c.0.retain(|t| !t.0.starts_with("optimizer."))
    });
    let o = train(&dir, &["--epochs", "2", "--resume", bare.to_str().unwrap()]);
    assert_fails_with(
        &o,
        &[
            "bare.ckpt.safetensors",
            "adam",
            "optimizer.state.0.step",
            "missing",
        ],
    );
    // Only some parameters' moments.
    let partial = dir.join("partial.ckpt.safetensors");
    edit_file(&adam, &partial, |c| {
        c.0.retain(|t| !t.0.starts_with("optimizer.state.4."))
    });
    let o = train(
        &dir,
        &["--epochs", "2", "--resume", partial.to_str().unwrap()],
    );
    assert_fails_with(&o, &["optimizer.state.4.exp_avg", "missing"]);
    // Adam's state relabelled sgd.
    let as_sgd = dir.join("as-sgd.ckpt.safetensors");
    edit_file(&adam, &as_sgd, |c| set_meta(c, "optimizer", "sgd"));
    let o = train(
        &dir,
        &["--epochs", "2", "--resume", as_sgd.to_str().unwrap()],
    );
    assert_fails_with(&o, &["as-sgd.ckpt.safetensors", "sgd", "Adam state"]);

    // An SGD checkpoint relabelled adam.
    let sgd_dir = temp_dir("ck-optim-sgd");
    assert_ok(&train(&sgd_dir, &["--epochs", "1"]));
    let as_adam = sgd_dir.join("as-adam.ckpt.safetensors");
    edit_file(&sgd_dir.join("w.ckpt.safetensors"), &as_adam, |c| {
        set_meta(c, "optimizer", "adam");
        set_meta(c, "lr", "0.001");
    });
    let o = train(
        &sgd_dir,
        &["--epochs", "2", "--resume", as_adam.to_str().unwrap()],
    );
    assert_fails_with(&o, &["as-adam.ckpt.safetensors", "adam", "missing"]);
    assert!(!stdout(&o).contains("epoch 2"), "{}", stdout(&o));
}

#[test]
fn an_error_about_a_file_with_100000_keys_stays_one_short_line() {
    let dir = temp_dir("many-keys");
    let many = dir.join("many.safetensors");
    let mut c = read_contents(&trained_weights().join("w.safetensors"));
    c.1.clear();
    c.0.extend((0..100_000).map(|i| (format!("extra.{i}"), vec![1], vec![0.0])));
    write_contents(&many, &c);
    let o = run(&[
        "eval",
        "--weights",
        many.to_str().unwrap(),
        "--data",
        data_dir().to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["is not a parameter of the model", "and 99,997 more"]);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.len() < 400, "{} bytes: {err}", err.len());
    // The same file without a parameter: the missing key, and a short list of what is there.
    c.0.retain(|t| t.0 != "0.weight");
    write_contents(&many, &c);
    let o = run(&[
        "export",
        "--weights",
        many.to_str().unwrap(),
        "--out",
        dir.join("x").to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["0.weight", "is missing", "100,009 keys"]);
    assert!(stderr(&o).len() < 400, "{}", stderr(&o));
}

/// An explicit --data that is missing or incomplete is an error naming what is missing; no
/// other copy is used and nothing is created or downloaded.
#[test]
fn an_explicit_data_directory_is_used_or_named_in_the_error() {
    let dir = temp_dir("data-explicit");
    let typo = dir.join("fashon-mnist");
    let o = run(&[
        "eval",
        "--weights",
        trained_weights().join("w.safetensors").to_str().unwrap(),
        "--data",
        typo.to_str().unwrap(),
    ]);
    assert_fails_with(&o, &[&format!("{} does not exist", typo.display())]);
    assert!(!typo.exists());
    // Three of the four files.
    let partial = dir.join("partial");
    std::fs::create_dir(&partial).unwrap();
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
    ] {
        std::fs::copy(data_dir().join(f), partial.join(f)).unwrap();
    }
    let o = run(&[
        "train",
        "--data",
        partial.to_str().unwrap(),
        "--out",
        dir.join("w.safetensors").to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["lacks 1 of the 4 files", "t10k-labels-idx1-ubyte.gz"]);
    // $TINYCNN_DATA set: likewise used as given.
    let o = bin()
        .env("TINYCNN_DATA", &typo)
        .args([
            "predict",
            "--weights",
            trained_weights().join("w.safetensors").to_str().unwrap(),
            "--index",
            "0",
        ])
        .output()
        .unwrap();
    assert_fails_with(&o, &["does not exist", "$TINYCNN_DATA"]);
    assert!(!typo.exists());
}

/// Waits for a child up to a minute (a hung child fails the test instead of hanging it).
fn wait_for(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the child did not exit within a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn read_to_string(r: impl std::io::Read) -> String {
    let mut s = String::new();
    let mut r = r;
    r.read_to_string(&mut s).unwrap();
    s
}

/// `tinycnn train | head -2`: the reader goes away after the two header lines, so the
/// first epoch's line meets a closed pipe. The run ends quietly with 141, and that epoch's
/// checkpoint was written before its line.
#[test]
fn a_closed_stdout_ends_training_quietly_with_the_epoch_saved() {
    use std::io::BufRead;
    let dir = temp_dir("epipe");
    let out = dir.join("w.safetensors");
    let mut child = bin()
        .args([
            "train",
            "--data",
            data_dir().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch-size",
            "1",
            "--threads",
            "1",
            "--epochs",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let l = lines.next().unwrap().unwrap();
        assert!(!l.starts_with("epoch"), "{l}");
    }
    drop(lines);
    let status = wait_for(&mut child);
    let err = read_to_string(child.stderr.take().unwrap());
    assert_eq!(status.code(), Some(141), "stderr: {err}");
    assert_eq!(err, "");
    let (_, meta) = header(&dir.join("w.ckpt.safetensors"));
    assert_eq!(meta["epochs_done"], "1");
    assert_eq!(header(&out).0, lenet_state_dict());
}

/// Ctrl-C (SIGINT) during training stops at a safe point: exit 130, a stderr line naming the
/// checkpoint and the epoch it holds (which the file confirms), no temporary files left.
#[cfg(unix)]
#[test]
fn sigint_stops_training_and_says_which_epoch_is_saved() {
    use std::io::BufRead;
    let dir = temp_dir("sigint");
    let out = dir.join("w.safetensors");
    let ckpt = dir.join("w.ckpt.safetensors");
    let mut child = bin()
        .args([
            "train",
            "--data",
            data_dir().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch-size",
            "64",
            "--threads",
            "1",
            "--epochs",
            "100000",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("output until epoch 2").unwrap();
        if l.starts_with("epoch 2:") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    // Keep draining stdout so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.count());
    let status = wait_for(&mut child);
    drain.join().unwrap();
    let err = read_to_string(child.stderr.take().unwrap());
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    let (_, meta) = header(&ckpt);
    let done: usize = meta["epochs_done"].as_str().unwrap().parse().unwrap();
    assert!(done >= 2, "{done}");
    assert_eq!(
        err.trim_end(),
        format!("interrupted: {} holds epoch {done}", ckpt.display())
    );
    let stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // The saved run resumes.
    let o = train(
        &dir,
        &[
            "--epochs",
            &(done + 1).to_string(),
            "--resume",
            ckpt.to_str().unwrap(),
        ],
    );
    assert_ok(&o);
    assert!(
        stdout(&o).contains(&format!("epoch {}:", done + 1)),
        "{}",
        stdout(&o)
    );
}

/// Under mpirun a binary built without MPI must not train N times alone (each rank writing
/// the same files): it stops and says how to build it or to opt out.
#[cfg(not(feature = "mpi"))]
#[test]
fn train_under_mpirun_without_mpi_support_is_an_error() {
    let dir = temp_dir("no-mpi");
    let out = dir.join("w.safetensors");
    let o = bin()
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .args(["train", "--data", data_dir().to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--epochs", "1"])
        .output()
        .unwrap();
    assert_fails_with(
        &o,
        &[
            "started by mpirun with 2 processes",
            "--features mpi",
            "--distributed none",
        ],
    );
    assert!(!out.exists());
    let o = run(&["train", "--distributed", "mpi", "--epochs", "1"]);
    assert_fails_with(&o, &["built without MPI"]);
}

/// `--distributed none` trains alone whatever the environment says.
#[test]
fn distributed_none_ignores_the_mpi_environment() {
    let dir = temp_dir("dist-none");
    let out = dir.join("w.safetensors");
    let o = bin()
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .args(["train", "--data", data_dir().to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--epochs", "1"])
        .args([
            "--batch-size",
            "64",
            "--threads",
            "2",
            "--distributed",
            "none",
        ])
        .output()
        .unwrap();
    assert_ok(&o);
    assert!(stdout(&o).contains("training on cpu\n"), "{}", stdout(&o));
    assert!(out.exists());
}
