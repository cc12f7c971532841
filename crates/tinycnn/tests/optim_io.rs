//! Optimizers (values computed by hand from PyTorch's update rules), checkpoint/resume, and
//! safetensors I/O including malformed files.

use std::path::PathBuf;
use tinycnn::nn::{Linear, Module, ReLU, Sequential, StateDict};
use tinycnn::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use tinycnn::{io, Error, Tensor};

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinycnn-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `steps` updates of a parameter starting at 1.0 whose loss is `2 p` (gradient 2).
fn run_sgd(cfg: SgdConfig, steps: usize) -> Vec<f32> {
    let p = Tensor::new([1.0]).requires_grad_(true).unwrap();
    let mut opt = Sgd::with_config(vec![p.clone()], cfg).unwrap();
    let mut out = Vec::new();
    for _ in 0..steps {
        opt.zero_grad();
        (&p * 2.0).sum_all().backward().unwrap();
        opt.step().unwrap();
        out.push(p.item().unwrap());
    }
    out
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn sgd_rules() {
    let plain = SgdConfig::new(0.1);
    assert!(close(&run_sgd(plain, 2), &[0.8, 0.6]));
    // momentum 0.9: buf 2, then 0.9 * 2 + 2 = 3.8.
    let m = SgdConfig {
        momentum: 0.9,
        ..plain
    };
    assert!(close(&run_sgd(m, 2), &[0.8, 0.42]));
    // dampening 0.5: second buf 0.9 * 2 + 0.5 * 2 = 2.8.
    let d = SgdConfig {
        dampening: 0.5,
        ..m
    };
    assert!(close(&run_sgd(d, 2), &[0.8, 0.52]));
    // Nesterov: step d = g + 0.9 buf = 3.8.
    let n = SgdConfig {
        nesterov: true,
        ..m
    };
    assert!(close(&run_sgd(n, 1), &[0.62]));
    // weight decay 0.5: d = 2 + 0.5 * 1 = 2.5.
    let w = SgdConfig {
        weight_decay: 0.5,
        ..plain
    };
    assert!(close(&run_sgd(w, 1), &[0.75]));
    assert!(Sgd::with_config(vec![], SgdConfig { lr: -1.0, ..plain }).is_err());
    assert!(Sgd::with_config(
        vec![],
        SgdConfig {
            nesterov: true,
            ..plain
        }
    )
    .is_err());
    assert!(
        Sgd::new(vec![Tensor::zeros(&[1])], 0.1).is_err(),
        "a tensor without requires_grad is not a parameter"
    );
}

#[test]
fn adam_first_steps() {
    let p = Tensor::new([1.0, -2.0]).requires_grad_(true).unwrap();
    let mut opt = Adam::new(vec![p.clone()], 0.1).unwrap();
    // Any gradient: the first bias-corrected step is lr * sign(g).
    (&p * 3.0).sum_all().backward().unwrap();
    opt.step().unwrap();
    assert!(close(&p.to_vec(), &[0.9, -2.1]));
    assert!(Adam::with_config(
        vec![],
        AdamConfig {
            beta1: 1.0,
            ..AdamConfig::new(0.1)
        }
    )
    .is_err());
    let sd = opt.state_dict();
    assert_eq!(
        sd.keys().collect::<Vec<_>>(),
        ["state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq"]
    );
    assert_eq!(sd.get("state.0.step").unwrap().item().unwrap(), 1.0);
    assert!(close(
        &sd.get("state.0.exp_avg").unwrap().to_vec(),
        &[0.3, 0.3]
    ));
}

#[test]
fn parameters_without_gradients_are_skipped() {
    let a = Tensor::new([1.0]).requires_grad_(true).unwrap();
    let b = Tensor::new([1.0]).requires_grad_(true).unwrap();
    let mut opt = Sgd::with_config(
        vec![a.clone(), b.clone()],
        SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.5)
        },
    )
    .unwrap();
    (&a * 1.0).sum_all().backward().unwrap();
    opt.step().unwrap();
    assert_eq!((a.item().unwrap(), b.item().unwrap()), (0.5, 1.0));
    assert_eq!(
        opt.state_dict().keys().collect::<Vec<_>>(),
        ["state.0.momentum_buffer"]
    );
}

fn small_net() -> Sequential {
    Sequential::new()
        .append(Linear::new(3, 5))
        .append(ReLU)
        .append(Linear::new(5, 2))
}

fn train_steps(
    net: &Sequential,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    labels: &[u32],
    steps: usize,
) {
    for _ in 0..steps {
        opt.zero_grad();
        net.forward(x)
            .unwrap()
            .cross_entropy(labels)
            .unwrap()
            .backward()
            .unwrap();
        opt.step().unwrap();
    }
}

#[test]
fn checkpoint_and_resume_exactly() {
    let dir = scratch_dir("resume");
    let x = Tensor::randn(&[8, 3]);
    let labels = [0, 1, 1, 0, 1, 0, 0, 1];
    for use_adam in [false, true] {
        let net = small_net();
        let make = |net: &Sequential| -> Box<dyn Optimizer> {
            if use_adam {
                Box::new(Adam::new(net.parameters(), 0.01).unwrap())
            } else {
                Box::new(
                    Sgd::with_config(
                        net.parameters(),
                        SgdConfig {
                            momentum: 0.9,
                            ..SgdConfig::new(0.1)
                        },
                    )
                    .unwrap(),
                )
            }
        };
        let mut opt = make(&net);
        train_steps(&net, opt.as_mut(), &x, &labels, 3);
        io::save(dir.join("net.safetensors"), &net.state_dict()).unwrap();
        io::save(dir.join("opt.safetensors"), &opt.state_dict()).unwrap();
        train_steps(&net, opt.as_mut(), &x, &labels, 2);

        let resumed = small_net();
        resumed
            .load_state_dict(&io::load(dir.join("net.safetensors")).unwrap())
            .unwrap();
        let mut opt2 = make(&resumed);
        opt2.load_state_dict(&io::load(dir.join("opt.safetensors")).unwrap())
            .unwrap();
        train_steps(&resumed, opt2.as_mut(), &x, &labels, 2);
        for ((k, a), (_, b)) in net.state_dict().iter().zip(resumed.state_dict().iter()) {
            assert!(a.equal(b), "adam={use_adam}: {k} differs after resuming");
        }
    }
    // Wrong state for the parameter list.
    let net = small_net();
    let mut opt = Sgd::new(net.parameters(), 0.1).unwrap();
    let mut bad = StateDict::new();
    bad.insert("state.0.momentum_buffer", Tensor::zeros(&[2, 2]));
    assert!(matches!(
        opt.load_state_dict(&bad),
        Err(Error::StateDict { .. })
    ));
    let mut bad = StateDict::new();
    bad.insert("state.9.momentum_buffer", Tensor::zeros(&[2]));
    assert!(opt.load_state_dict(&bad).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn safetensors_round_trips() {
    let dir = scratch_dir("io");
    // torch.save(x, 'x-file') / torch.load
    let x = Tensor::arange(4);
    io::save_tensor(dir.join("x-file"), &x).unwrap();
    let x2 = io::load_tensor(dir.join("x-file")).unwrap();
    assert!(x2.equal(&x));
    // A list of tensors.
    let y = Tensor::zeros(&[4]);
    io::save_tensors(dir.join("x-files"), &[x.clone(), y.clone()]).unwrap();
    let xs = io::load_tensors(dir.join("x-files")).unwrap();
    assert!(xs[0].equal(&x) && xs[1].equal(&y));
    // A dict, with layouts kept.
    let mut d = StateDict::new();
    d.insert("x", x.clone());
    d.insert("conv.weight", Tensor::randn(&[6, 1, 5, 5]));
    d.insert("s", Tensor::scalar(3.5));
    io::save(dir.join("mydict"), &d).unwrap();
    let d2 = io::load(dir.join("mydict")).unwrap();
    assert_eq!(d2.len(), 3);
    for (k, v) in d.iter() {
        assert!(d2.get(k).unwrap().equal(v), "{k}");
    }
    assert_eq!(d2.get("conv.weight").unwrap().shape(), &[6, 1, 5, 5]);
    // Overwriting is atomic and leaves no temporary files.
    io::save(dir.join("mydict"), &d).unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    assert!(matches!(
        io::save(dir.join("no/such/dir/f"), &d),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        io::load(dir.join("missing")),
        Err(Error::Io { .. })
    ));
    assert!(
        io::load_tensor(dir.join("mydict")).is_err(),
        "three tensors are not one"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn file_with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn malformed_files_are_errors() {
    let good = file_with_header(
        r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    assert_eq!(
        io::from_bytes(&good).unwrap().get("x").unwrap().to_vec(),
        [0.0, 0.0]
    );
    // PyTorch's batch-norm counter `num_batches_tracked` is an I64 scalar: read as f32.
    let counter = file_with_header(
        r#"{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#,
        &7i64.to_le_bytes(),
    );
    let n = io::from_bytes(&counter).unwrap();
    let n = n.get("n").unwrap();
    assert_eq!((n.shape(), n.item().unwrap()), (&[] as &[usize], 7.0));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short header", vec![1, 2, 3]),
        ("garbage", vec![0xff; 64]),
        (
            "header length past the end",
            file_with_header("{}", &[]).into_iter().take(9).collect(),
        ),
        ("bad json", file_with_header("{not json}", &[])),
        (
            "wrong dtype",
            file_with_header(
                r#"{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
        ),
        (
            "int dtype other than I64",
            file_with_header(
                r#"{"x":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
        ),
        (
            "I64 shape vs length",
            file_with_header(
                r#"{"x":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
        ),
        (
            "shape vs length",
            file_with_header(
                r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
        ),
        (
            "truncated data",
            file_with_header(
                r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                &[0; 4],
            ),
        ),
        (
            "offsets past the end",
            file_with_header(
                r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                &[0; 8],
            ),
        ),
    ];
    for (what, bytes) in cases {
        assert!(io::from_bytes(&bytes).is_err(), "{what} was accepted");
    }
    let dir = scratch_dir("bad");
    std::fs::write(dir.join("bad"), [0xffu8; 16]).unwrap();
    let e = io::load(dir.join("bad")).unwrap_err();
    assert!(
        matches!(&e, Error::Format { path, .. } if path.ends_with("bad")),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
