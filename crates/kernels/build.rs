//! Sets `cfg(tinycnn_arm_dsp)` when compiling for a Cortex-M with the DSP extension
//! (ARMv7E-M: Cortex-M4/M7, the `thumbv7em-*` targets).
//!
//! Stable Rust does not expose ARM target features to `cfg(target_feature = ...)` (they are
//! unstable), so `cfg(target_feature = "dsp")` is never set even though every thumbv7em
//! target has the instructions. The target name is the reliable signal.
use std::env;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(tinycnn_arm_dsp)");
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "arm" && target.starts_with("thumbv7em") {
        println!("cargo:rustc-cfg=tinycnn_arm_dsp");
    }
}
