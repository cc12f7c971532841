//! Builds the firmware for thumbv7em-none-eabihf, runs it in QEMU (`netduinoplus2`, an
//! STM32F405 Cortex-M4F) and compares its output with the host's run of the same no_std
//! inference code on the same weights and images: int8 logits must be identical (integer
//! arithmetic), f32 logits equal to rounding, and every predicted class the same. The int8
//! firmwares run the SMLAD kernels (the host the plain ones) and their `selftest` feature,
//! which checks the SMLAD kernels against the naive twins with the real instructions.
//!
//! Needs `qemu-system-arm` and the `thumbv7em-none-eabihf` Rust target; `scripts/mcu-test.sh`
//! installs both. Set `MCU_FIRMWARE_TARGET_DIR` to choose where the firmware is built
//! (default `crates/mcu/target/firmware`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tinycnn_mcu::host::{aligned_copy, prediction_line, Logits};
use tinycnn_mcu::{idx, F32Scratch, I8Scratch, LenetF32, LenetI8, Safetensors, Variant};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const TARGET: &str = "thumbv7em-none-eabihf";

fn build(features: &str) -> PathBuf {
    let target_dir = std::env::var_os("MCU_FIRMWARE_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("target/firmware"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(MANIFEST_DIR)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--features",
            features,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running cargo to build the firmware");
    assert!(
        status.success(),
        "building the firmware ({features}) failed; is the target installed? \
         (`rustup target add {TARGET}`, or run scripts/mcu-test.sh)"
    );
    target_dir.join(TARGET).join("release/lenet-firmware")
}

/// Runs `elf` in QEMU; returns (exit success, stdout). Fails after 120 s.
fn run_qemu(elf: &Path) -> (bool, String) {
    let mut child = Command::new("qemu-system-arm")
        .args(["-machine", "netduinoplus2", "-nographic", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0"])
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-arm not found: `apt-get install -y qemu-system-arm` (scripts/mcu-test.sh does)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("QEMU did not finish within 120 s ({})", elf.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), reader.join().unwrap().unwrap())
}

/// What the host computes for the firmware's embedded images, in the firmware's format.
fn host_lines(weights: &str, variant: Variant, int8: bool) -> Vec<String> {
    let bytes = std::fs::read(Path::new(MANIFEST_DIR).join("weights").join(weights)).unwrap();
    let al = aligned_copy(&bytes);
    let st = Safetensors::parse(al.bytes()).unwrap();
    let ib = std::fs::read(Path::new(MANIFEST_DIR).join("data/test-images.idx3")).unwrap();
    let lb = std::fs::read(Path::new(MANIFEST_DIR).join("data/test-labels.idx1")).unwrap();
    let (images, labels) = (idx::images(&ib).unwrap(), idx::labels(&lb).unwrap());
    let mut lines = Vec::new();
    if int8 {
        let m = LenetI8::from_safetensors(&st, variant).unwrap();
        let mut s = Box::new(I8Scratch::new());
        for (i, (img, &l)) in images.iter().zip(labels).enumerate() {
            let acc = m.logits_i32(img, &mut s).unwrap();
            let f32 = m.logits(img, &mut s).unwrap();
            lines.push(prediction_line(i, l, &Logits::I8 { acc, f32 }));
        }
    } else {
        let m = LenetF32::from_safetensors(&st, variant).unwrap();
        let mut s = Box::new(F32Scratch::new());
        for (i, (img, &l)) in images.iter().zip(labels).enumerate() {
            lines.push(prediction_line(
                i,
                l,
                &Logits::F32(m.logits(img, &mut s).unwrap()),
            ));
        }
    }
    lines
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == key {
            return it.next().unwrap_or("");
        }
    }
    panic!("no `{key}` in `{line}`")
}

fn check(features: &str, weights: &str, variant: Variant, int8: bool) {
    let elf = build(features);
    let (ok, out) = run_qemu(&elf);
    eprintln!("--- firmware ({features}) ---\n{out}");
    assert!(ok, "firmware ({features}) exited with failure:\n{out}");
    let kind = if int8 { "int8 dsp" } else { "f32" };
    assert!(
        out.contains(&format!("model {} {kind}", variant.name())),
        "{out}"
    );
    if int8 {
        // The on-board agreement check of the SMLAD kernels (feature `selftest`).
        assert!(
            out.contains("selftest dsp conv 40 linear 40 network 1 ok"),
            "{out}"
        );
    }
    let loop_line = out
        .lines()
        .find(|l| l.starts_with("validation loop iterations"))
        .unwrap_or_else(|| panic!("no validation loop line:\n{out}"));
    // QEMU has no DWT cycle counter; the firmware must say so rather than print 0.
    assert!(loop_line.ends_with("cycles n/a in QEMU"), "{loop_line}");
    let device: Vec<&str> = out.lines().filter(|l| l.starts_with("image ")).collect();
    let host = host_lines(weights, variant, int8);
    assert_eq!(device.len(), host.len(), "image count differs:\n{out}");
    assert!(
        out.contains(&format!("done {} images", host.len())),
        "{out}"
    );
    for (d, h) in device.iter().zip(&host) {
        for key in ["image", "label", "predicted"] {
            assert_eq!(
                field(d, key),
                field(h, key),
                "{key}: device `{d}` vs host `{h}`"
            );
        }
        let (dl, hl) = (field(d, "logits"), field(h, "logits"));
        if int8 {
            assert_eq!(dl, hl, "int8 logits differ: device `{d}` vs host `{h}`");
        } else {
            // Same code, but the host may fuse multiply-adds and sum in another order.
            for (a, b) in dl.split(',').zip(hl.split(',')) {
                let a = f32::from_bits(u32::from_str_radix(a, 16).unwrap());
                let b = f32::from_bits(u32::from_str_radix(b, 16).unwrap());
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "f32 logits: device `{d}` vs host `{h}`"
                );
            }
        }
        let ticks: u32 = field(d, "ticks").parse().unwrap();
        assert!(ticks > 0, "no SysTick ticks measured: `{d}`");
    }
}

#[test]
fn firmware_in_qemu_matches_host() {
    check(
        "firmware",
        "lenet-relu-f32.safetensors",
        Variant::Relu,
        false,
    );
    check(
        "firmware,int8,selftest",
        "lenet-relu-int8.safetensors",
        Variant::Relu,
        true,
    );
    check(
        "firmware,sigmoid",
        "lenet-f32.safetensors",
        Variant::Sigmoid,
        false,
    );
    check(
        "firmware,int8,sigmoid,selftest",
        "lenet-int8.safetensors",
        Variant::Sigmoid,
        true,
    );
}
