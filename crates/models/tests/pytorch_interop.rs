//! Round trip with PyTorch: our LeNet state dict loads into d2l's PyTorch LeNet and gives
//! the same outputs, loss and gradients; PyTorch's `safetensors.torch.save_file` files load
//! here and give the same outputs; tensors print exactly as `str(tensor)` does.
//!
//! Needs `python3` with `torch` and `safetensors`; run with
//! `cargo test -p tinycnn-models --test pytorch_interop -- --ignored`.

use std::process::Command;
use tinycnn::nn::{Module, StateDict};
use tinycnn::{io, Tensor};
use tinycnn_models::lenet;

#[test]
#[ignore = "needs python3 with torch and safetensors"]
fn pytorch_round_trip() {
    let dir = std::env::temp_dir().join(format!("tinycnn-pytorch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    tinycnn::manual_seed(7);
    let net = lenet();
    let x = Tensor::rand(&[4, 1, 28, 28]);
    let labels = [3u32, 0, 9, 5];
    let y = net.forward(&x).unwrap();
    let loss = y.cross_entropy(&labels).unwrap();
    loss.backward().unwrap();
    io::save(dir.join("net_rs.safetensors"), &net.state_dict()).unwrap();
    let mut sd = StateDict::new();
    sd.insert("x", x);
    sd.insert("labels", Tensor::new(labels.map(|l| l as f32)));
    sd.insert("y", y.detach());
    sd.insert("loss", loss.detach());
    for (name, p) in net.named_parameters() {
        sd.insert(format!("grad.{name}"), p.grad().unwrap());
    }
    io::save(dir.join("io_rs.safetensors"), &sd).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pytorch_interop.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&dir)
        .output()
        .expect("python3 runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "python side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let theirs = lenet();
    theirs
        .load_state_dict(&io::load(dir.join("net_torch.safetensors")).unwrap())
        .unwrap();
    let pair = io::load(dir.join("io_torch.safetensors")).unwrap();
    let y = theirs.forward(pair.get("x").unwrap()).unwrap();
    assert!(
        y.allclose(pair.get("y").unwrap(), 1e-4, 1e-5),
        "{y}\n{}",
        pair.get("y").unwrap()
    );

    let samples = io::load(dir.join("formats.safetensors")).unwrap();
    let json = std::fs::read_to_string(dir.join("formats.json")).unwrap();
    let strs: serde_json_lite::Map = serde_json_lite::parse(&json);
    for (k, t) in samples.iter() {
        assert_eq!(t.to_string(), strs.get(k), "{k}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny reader for the flat `{"key": "string"}` JSON the script writes (keeps serde out of
/// this crate's dev-dependencies).
mod serde_json_lite {
    pub struct Map(Vec<(String, String)>);
    impl Map {
        pub fn get(&self, k: &str) -> &str {
            &self.0.iter().find(|(a, _)| a == k).expect("key in json").1
        }
    }
    fn string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
        while chars.next() != Some('"') {}
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => s.push('\n'),
                    Some(c) => s.push(c),
                    None => break,
                },
                c => s.push(c),
            }
        }
        s
    }
    pub fn parse(json: &str) -> Map {
        let mut chars = json.chars().peekable();
        let mut out = Vec::new();
        loop {
            while matches!(chars.peek(), Some(c) if *c != '"' && *c != '}') {
                chars.next();
            }
            if chars.peek() != Some(&'"') {
                break;
            }
            let k = string(&mut chars);
            let v = string(&mut chars);
            out.push((k, v));
        }
        Map(out)
    }
}
