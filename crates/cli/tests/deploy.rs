//! `tinycnn deploy` end to end: LeNet-ReLU weights (the firmware crate's) deployed as int8 and
//! f32 plans on a small synthetic data set; the written plan reads back with the kernels
//! crate's reader and runs like the host accuracy the command reports; bad arguments fail
//! before any work with a message.

mod common;

use common::{run, stderr, stdout, temp_dir, write_idx_split};
use std::path::{Path, PathBuf};
use std::process::Output;
use tinycnn_kernels::deploy::format::{DType, Precision};
use tinycnn_kernels::deploy::{self, Plan};

/// 64 training and 32 test images of pseudo-random pixels, labels 0..10 in turn.
fn data_dir() -> PathBuf {
    let d = temp_dir("data");
    let mut s = 7u32;
    for (prefix, n) in [("train", 64usize), ("t10k", 32)] {
        let images: Vec<u8> = (0..n * 784)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as u8
            })
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        write_idx_split(&d, prefix, &images, &labels);
    }
    d
}

fn weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mcu/weights/lenet-relu-f32.safetensors")
}

fn read_plan(path: &Path) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    deploy::words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    words.push(bytes.len() as u32);
    words
}

fn plan_of(words: &[u32]) -> Plan<'_> {
    let (len, body) = words.split_last().unwrap();
    Plan::parse(&deploy::words_as_bytes(body)[..*len as usize]).unwrap()
}

#[test]
fn deploys_lenet_relu_as_int8_and_f32() {
    let data = data_dir();
    let out = temp_dir("out");
    let w = weights();
    for (flag, precision, flash) in [
        ("--int8", Precision::Int8, 70_000),
        ("--f32", Precision::F32, 260_000),
    ] {
        let dir = out.join(&flag[2..]);
        let o = run(&[
            "deploy",
            "--weights",
            w.to_str().unwrap(),
            "--model",
            "lenet-relu",
            flag,
            "--calibration",
            "16",
            "--data",
            data.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        let stdout = stdout(&o);
        assert!(o.status.success(), "{stdout}\n{}", stderr(&o));
        let words = read_plan(&dir.join("plan.bin"));
        let plan = plan_of(&words);
        assert_eq!(plan.precision(), precision);
        assert_eq!(
            plan.ops(),
            7,
            "conv, pool, conv, pool, 3 linear (ReLUs fused)"
        );
        assert_eq!(plan.macs(), 416_520);
        assert_eq!(plan.input().shape, [1, 28, 28]);
        let (elem, out_dtype) = match precision {
            Precision::Int8 => (1, DType::I32),
            Precision::F32 => (4, DType::F32),
        };
        assert_eq!(plan.output_value().dtype, out_dtype);
        // Ping-pong: the arena is conv1's output plus pool1's, not the sum of all values.
        assert_eq!(plan.arena_words() * 4, (4704 + 1176) * elem);
        assert!(plan.data_bytes() < flash, "{}", plan.data_bytes());
        let summary = std::fs::read_to_string(dir.join("summary.txt")).unwrap();
        assert!(
            summary.contains("multiply-accumulates per inference: 416520"),
            "{summary}"
        );
        assert!(summary.contains(&format!(
            "arena (activations): {} bytes",
            (4704 + 1176) * elem
        )));
        assert!(
            stdout.contains(&format!("deployed {} on the host: test acc", &flag[2..])),
            "{stdout}"
        );
        assert!(stdout.contains("of 32)"), "{stdout}");
        if precision == Precision::Int8 {
            assert!(stdout.contains("deployed f32 on the host"), "{stdout}");
        }
    }
}

fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

#[test]
fn bad_arguments_fail_before_any_work() {
    let out = temp_dir("bad");
    let w = weights();
    let w = w.to_str().unwrap();
    let file = out.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    // Neither precision.
    let o = run(&["deploy", "--weights", w, "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    // Both.
    let o = run(&[
        "deploy",
        "--weights",
        w,
        "--int8",
        "--f32",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    // --out names a file; checked before the (absent) data set is looked for.
    let o = run(&[
        "deploy",
        "--weights",
        w,
        "--int8",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["--out", "not a directory"]);
    let o = run(&[
        "deploy",
        "--weights",
        w,
        "--int8",
        "--calibration",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["--calibration"]);
    let missing = out.join("missing.safetensors");
    let o = run(&[
        "deploy",
        "--weights",
        missing.to_str().unwrap(),
        "--f32",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_fails_with(&o, &["missing.safetensors"]);
    assert!(!out.join("plan.bin").exists());
}
