//! Builds the firmware for thumbv7em-none-eabihf once per committed deployment
//! (`deployments/*`, written by `tinycnn deploy`; `TINYCNN_DEPLOY` selects it), runs it in
//! QEMU (`netduinoplus2`, an STM32F405 Cortex-M4F) and compares its output with the host's
//! run of the same executor (`tinycnn_kernels::deploy`) on the same plan and images: int8
//! logits must be identical (integer arithmetic), f32 logits within 1e-4, and every
//! predicted class the same. The firmware reads the test images of `data/` from the host
//! over semihosting (QEMU's `-semihosting-config enable=on,target=native`). The int8
//! firmwares run the SMLAD kernels (the host the plain
//! ones) and their `selftest` feature, which checks the SMLAD kernels against the naive
//! twins with the real instructions and the whole plan with all three kernel sets.
//!
//! A plan too big for the chip's 128 KiB of RAM (the f32 DS-CNN) is built with feature
//! `qemu-sram` (QEMU's 192 KiB map), after checking that the chip's build refuses it.
//!
//! Needs `qemu-system-arm` and the `thumbv7em-none-eabihf` Rust target; `scripts/mcu-test.sh`
//! installs both. Set `MCU_FIRMWARE_TARGET_DIR` to choose where the firmware is built
//! (default `crates/mcu/target/firmware`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tinycnn_kernels::deploy::{self, Input, Int8Kernels, Output, Plan};
use tinycnn_mcu::idx;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const TARGET: &str = "thumbv7em-none-eabihf";

fn target_dir() -> PathBuf {
    std::env::var_os("MCU_FIRMWARE_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("target/firmware"))
}

/// `cargo build` of the firmware for `deployment`; `data`: the directory of its test images
/// (`TINYCNN_TEST_DATA`; `None`: the default, `data/`).
fn cargo_build_with(features: &str, deployment: &str, data: Option<&Path>) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(MANIFEST_DIR)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--features",
            features,
        ])
        .arg("--target-dir")
        .arg(target_dir())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env("TINYCNN_DEPLOY", format!("deployments/{deployment}"));
    match data {
        Some(d) => cmd.env("TINYCNN_TEST_DATA", d),
        None => cmd.env_remove("TINYCNN_TEST_DATA"),
    };
    cmd
}

fn cargo_build(features: &str, deployment: &str) -> Command {
    cargo_build_with(features, deployment, None)
}

/// A build that is expected to fail: its output.
fn build_output(features: &str, deployment: &str) -> std::process::Output {
    cargo_build(features, deployment)
        .output()
        .expect("running cargo to build the firmware")
}

fn build(features: &str, deployment: &str) -> PathBuf {
    let status = cargo_build(features, deployment)
        .status()
        .expect("running cargo to build the firmware");
    assert!(
        status.success(),
        "building the firmware ({features}) failed; is the target installed? \
         (`rustup target add {TARGET}`, or run scripts/mcu-test.sh)"
    );
    target_dir().join(TARGET).join("release/tinycnn-firmware")
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

/// What the host computes for the test images the firmware reads (`data/`), in the
/// firmware's format.
fn host_lines(deployment: &str) -> (Vec<String>, bool) {
    let path = Path::new(MANIFEST_DIR)
        .join("deployments")
        .join(deployment)
        .join("plan.bin");
    let bytes = std::fs::read(path).unwrap();
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    deploy::words_as_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let plan = Plan::parse(&deploy::words_as_bytes(&words)[..bytes.len()]).unwrap();
    let ib = std::fs::read(Path::new(MANIFEST_DIR).join("data/test-images.idx3")).unwrap();
    let lb = std::fs::read(Path::new(MANIFEST_DIR).join("data/test-labels.idx1")).unwrap();
    let (images, labels) = (idx::images(&ib).unwrap(), idx::labels(&lb).unwrap());
    let mut arena = vec![0u32; plan.arena_words()];
    let mut ws = vec![0u32; plan.workspace_words()];
    let classes = plan.output_value().elements();
    let mut lines = Vec::new();
    let mut int8 = false;
    for (i, (img, &l)) in images.iter().zip(labels).enumerate() {
        let input = Input::U8 {
            pixels: img,
            divisor: 255.0,
        };
        deploy::run(&plan, input, &mut arena, &mut ws, Int8Kernels::Plain).unwrap();
        let mut logits = vec![0.0f32; classes];
        deploy::logits(&plan, &arena, &mut logits).unwrap();
        let mut best = 0;
        for (j, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = j;
            }
        }
        let words: Vec<String> = match deploy::output(&plan, &arena).unwrap() {
            Output::F32(v) => v.iter().map(|x| format!("{:08x}", x.to_bits())).collect(),
            Output::I8 { values, .. } => {
                int8 = true;
                values.iter().map(|x| x.to_string()).collect()
            }
            Output::I32 { acc, .. } => {
                int8 = true;
                acc.iter().map(|x| x.to_string()).collect()
            }
        };
        lines.push(format!(
            "image {i} label {l} predicted {best} logits {}",
            words.join(",")
        ));
    }
    (lines, int8)
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

fn check(features: &str, deployment: &str) {
    let elf = build(features, deployment);
    let (ok, out) = run_qemu(&elf);
    eprintln!("--- firmware ({features}, {deployment}) ---\n{out}");
    assert!(
        ok,
        "firmware ({features}, {deployment}) exited with failure:\n{out}"
    );
    let (host, int8) = host_lines(deployment);
    let kind = if int8 { "int8 dsp" } else { "f32" };
    assert!(out.contains(&format!("model {deployment} {kind}")), "{out}");
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
    check("firmware", "lenet-relu-f32");
    check("firmware,selftest", "lenet-relu-int8");
    check("firmware", "lenet-f32");
    // The zoo's DS-CNN (crates/models, weights/dscnn-f32.safetensors): BatchNorm folded,
    // stride-2 depthwise convolutions, global pooling.
    check("firmware,selftest", "dscnn-int8");
    // Its f32 plan needs 129,040 bytes of arena and workspace: too much for the chip's
    // 128 KiB with a stack, which build.rs refuses; QEMU's larger SRAM still runs it.
    let refused = build_output("firmware", "dscnn-f32");
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("over the STM32F405's"),
        "the f32 DS-CNN built for the chip's 128 KiB of RAM"
    );
    check("firmware,qemu-sram", "dscnn-f32");
    // The test images come from the host (semihosting): without them the firmware stops
    // with an error, not a guess.
    let missing = Path::new(MANIFEST_DIR).join("target/no-such-test-data");
    let status = cargo_build_with("firmware", "lenet-int8", Some(&missing))
        .status()
        .expect("running cargo to build the firmware");
    assert!(status.success(), "building the firmware without test data");
    let (ok, out) = run_qemu(&target_dir().join(TARGET).join("release/tinycnn-firmware"));
    assert!(
        !ok && out.contains("error: data: cannot read the test images"),
        "the firmware without its test images:\n{out}"
    );
    // Last: scripts/mcu-test.sh estimates the cycles of the firmware built last (LeNet's
    // 416,520 MACs).
    check("firmware,selftest", "lenet-int8");
}
