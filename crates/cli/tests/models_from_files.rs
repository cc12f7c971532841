//! "A file knows its model": `eval`, `predict`, `summary`, `export` and `train` on a weight
//! file that records an architecture outside the zoo (built here from an `Architecture`, as
//! another program would write it), and the errors for models that cannot take Fashion-MNIST.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tinycnn::nn::arch::{Architecture, LayerSpec, Node, METADATA_KEY};

fn run(args: &[&str]) -> Output {
    run_in(&std::env::temp_dir(), args)
}

/// Runs the binary in the working directory `dir`.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinycnn"))
        .args(args)
        .current_dir(dir)
        // `--device cuda` runs on the emulated device (the tests build tinycnn with cuda-emu).
        .env("TINYCNN_CUDA_EMULATE", "1")
        .env_remove("TINYCNN_DATA")
        .env("TINYCNN_DATA_URL", "http://127.0.0.1:9/")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
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
    let d = std::env::temp_dir().join(format!("tinycnn-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Class `c` is a bright bar on rows `2c+4 ..= 2c+5` over speckle noise (as in tests/cli.rs).
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

const TEST_SEED: u64 = 2;
const TEST_LEN: usize = 256;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = temp_dir("data");
        for (prefix, n, seed) in [("train", 512, 1), ("t10k", TEST_LEN, TEST_SEED)] {
            let (images, labels) = synthetic_split(n, seed);
            let n = n as u32;
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

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Writes a safetensors file as any producer would: f32 tensors and a metadata map.
fn write_safetensors(path: &Path, tensors: &Tensors, metadata: &[(&str, String)]) {
    struct View<'a>(&'a [usize], Vec<u8>);
    impl safetensors::View for View<'_> {
        fn dtype(&self) -> safetensors::Dtype {
            safetensors::Dtype::F32
        }
        fn shape(&self) -> &[usize] {
            self.0
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            std::borrow::Cow::Borrowed(&self.1)
        }
        fn data_len(&self) -> usize {
            self.1.len()
        }
    }
    let views: Vec<(String, View)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                View(s, d.iter().flat_map(|v| v.to_le_bytes()).collect()),
            )
        })
        .collect();
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let meta = (!meta.is_empty()).then_some(meta);
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

/// The tensors and metadata of a safetensors file.
fn read_safetensors(path: &Path) -> (Tensors, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, v.shape().to_vec(), data)
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors, meta)
}

fn linear(i: usize, o: usize) -> LayerSpec {
    LayerSpec::Linear {
        in_features: i,
        out_features: o,
        bias: true,
    }
}

/// A network outside the zoo, with a residual connection:
/// `h = relu(W1 flatten(x) + b1)`, `s = h + relu(W2 h + b2)`, `logits = W3 s + b3`.
fn residual_mlp() -> Architecture {
    Architecture {
        input: vec![1, 28, 28],
        nodes: vec![
            Node::new(
                "body.0",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![0],
            ),
            Node::new("body.1", linear(784, 16), vec![1]),
            Node::new("body.2", LayerSpec::ReLU, vec![2]),
            Node::new("res.fc", linear(16, 16), vec![3]),
            Node::new("res.act", LayerSpec::ReLU, vec![4]),
            Node::new("res.sum", LayerSpec::Add, vec![3, 5]),
            Node::new("head", linear(16, 10), vec![6]),
        ],
    }
}

/// Hand-made weights: hidden unit `c < 10` is the mean of class `c`'s bar rows (plus a bias
/// of `0.01 c`); the residual branch adds half of unit `c` to unit `c + 1 (mod 10)`; the head
/// reads units 0..10. The true class's score is about 0.88 + 0.06, the next class's about
/// 0.12 + 0.44, so every test image is classified correctly, and only thanks to the skip
/// connection (without it the next class would win).
fn residual_mlp_weights() -> Tensors {
    let mut w1 = vec![0.0f32; 16 * 784];
    for c in 0..10 {
        for r in [2 * c + 4, 2 * c + 5] {
            for col in 0..28 {
                w1[c * 784 + r * 28 + col] = 1.0 / 56.0;
            }
        }
    }
    let b1: Vec<f32> = (0..16).map(|j| 0.01 * j as f32).collect();
    let mut w2 = vec![0.0f32; 16 * 16];
    for c in 0..10 {
        w2[((c + 1) % 10) * 16 + c] = 0.5;
    }
    let mut w3 = vec![0.0f32; 10 * 16];
    for c in 0..10 {
        w3[c * 16 + c] = 1.0;
    }
    vec![
        ("body.1.weight".into(), vec![16, 784], w1),
        ("body.1.bias".into(), vec![16], b1),
        ("res.fc.weight".into(), vec![16, 16], w2),
        ("res.fc.bias".into(), vec![16], vec![0.0; 16]),
        ("head.weight".into(), vec![10, 16], w3),
        ("head.bias".into(), vec![10], vec![0.0; 10]),
    ]
}

/// The network of [`residual_mlp`] in f64, written out loop by loop: the reference.
fn reference_probs(weights: &Tensors, pixels: &[u8]) -> Vec<f64> {
    let get = |name: &str| -> Vec<f64> {
        let t = weights.iter().find(|t| t.0 == name).unwrap();
        t.2.iter().map(|&v| v as f64).collect()
    };
    let dense = |w: &[f64], b: &[f64], x: &[f64]| -> Vec<f64> {
        (0..b.len())
            .map(|o| b[o] + (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum::<f64>())
            .collect()
    };
    let relu = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| x.max(0.0)).collect() };
    let x: Vec<f64> = pixels.iter().map(|&p| p as f64 / 255.0).collect();
    let h = relu(dense(&get("body.1.weight"), &get("body.1.bias"), &x));
    let r = relu(dense(&get("res.fc.weight"), &get("res.fc.bias"), &h));
    let s: Vec<f64> = h.iter().zip(&r).map(|(a, b)| a + b).collect();
    let logits = dense(&get("head.weight"), &get("head.bias"), &s);
    let max = logits.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// `dir/custom.safetensors`: the residual network's weights and architecture, no zoo name.
fn custom_file(dir: &Path) -> PathBuf {
    let path = dir.join("custom.safetensors");
    write_safetensors(
        &path,
        &residual_mlp_weights(),
        &[
            ("format", "pt".into()),
            (METADATA_KEY, residual_mlp().to_json().unwrap()),
        ],
    );
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

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

#[test]
fn models_that_do_not_take_fashion_mnist_are_refused_with_the_reason() {
    let dir = temp_dir("shapes");
    let data = data_dir();
    // 3-channel 32x32 images.
    let rgb = Architecture {
        input: vec![3, 32, 32],
        nodes: vec![
            Node::new(
                "0",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![0],
            ),
            Node::new("1", linear(3 * 32 * 32, 10), vec![1]),
        ],
    };
    let rgb_file = dir.join("rgb.safetensors");
    write_safetensors(
        &rgb_file,
        &vec![
            ("1.weight".into(), vec![10, 3072], vec![0.0; 30720]),
            ("1.bias".into(), vec![10], vec![0.0; 10]),
        ],
        &[(METADATA_KEY, rgb.to_json().unwrap())],
    );
    let why = [
        "rgb.safetensors takes inputs of shape [3, 32, 32]",
        "[1, 28, 28]",
    ];
    assert_fails_with(
        &run(&["eval", "--weights", s(&rgb_file), "--data", s(data)]),
        &why,
    );
    assert_fails_with(
        &run(&[
            "predict",
            "--weights",
            s(&rgb_file),
            "--index",
            "0",
            "--data",
            s(data),
        ]),
        &why,
    );
    assert_fails_with(
        &run(&[
            "train",
            "--model",
            s(&rgb_file),
            "--data",
            s(data),
            "--out",
            s(&dir.join("o.safetensors")),
        ]),
        &why,
    );
    // The summary still describes it.
    let o = run(&["summary", "--model", s(&rgb_file)]);
    assert_ok(&o);
    assert!(stdout(&o).contains("rgb.safetensors for input [1, 3, 32, 32]"));

    // Five classes.
    let five = Architecture {
        input: vec![1, 28, 28],
        nodes: vec![
            Node::new(
                "0",
                LayerSpec::Flatten {
                    start_dim: 1,
                    end_dim: -1,
                },
                vec![0],
            ),
            Node::new("1", linear(784, 5), vec![1]),
        ],
    };
    let five_file = dir.join("five.safetensors");
    write_safetensors(
        &five_file,
        &vec![
            ("1.weight".into(), vec![5, 784], vec![0.0; 3920]),
            ("1.bias".into(), vec![5], vec![0.0; 5]),
        ],
        &[(METADATA_KEY, five.to_json().unwrap())],
    );
    assert_fails_with(
        &run(&["eval", "--weights", s(&five_file), "--data", s(data)]),
        &["five.safetensors outputs shape [1, 5]", "[1, 10]"],
    );

    // An architecture whose layers do not fit: the layer is named.
    let mut broken = residual_mlp();
    broken.nodes[6].layer = linear(15, 10);
    let broken_file = dir.join("broken.safetensors");
    write_safetensors(
        &broken_file,
        &residual_mlp_weights(),
        &[(METADATA_KEY, broken.to_json().unwrap())],
    );
    assert_fails_with(
        &run(&["summary", "--model", s(&broken_file)]),
        &["layer `head` (Linear)", "in_features is 15"],
    );
    // Weights that do not fit the recorded architecture.
    let wrong = dir.join("wrong.safetensors");
    let mut weights = residual_mlp_weights();
    weights.pop();
    write_safetensors(
        &wrong,
        &weights,
        &[(METADATA_KEY, residual_mlp().to_json().unwrap())],
    );
    assert_fails_with(
        &run(&["eval", "--weights", s(&wrong), "--data", s(data)]),
        &["does not fit wrong.safetensors", "head.bias"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

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
