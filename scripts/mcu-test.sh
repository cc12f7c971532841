#!/usr/bin/env bash
# Tests of the firmware (crates/mcu): installs what they need, then runs the host tests
# (safetensors parser, LeNet f32/int8 library vs reference loops, the committed deployments'
# int8 vs f32 accuracy on all 10,000 Fashion-MNIST test images) and the QEMU test (the one
# firmware built for thumbv7em-none-eabihf once per committed deployment, run on an emulated
# STM32F405, compared with the host executor). Last, the
# Cortex-M4 cycle estimate (scripts/mcu-cycles.py) of the int8 firmware the QEMU test built
# last, which fails if the estimator does not reproduce the TRM's count of its validation
# loop (about 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "mcu-test: $*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq || die "apt-get update failed"; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" || die "apt-get install $* failed"
}

if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
    command -v rustup >/dev/null || die "rustup not found: the thumbv7em-none-eabihf target is needed"
    rustup target add thumbv7em-none-eabihf || die "rustup target add thumbv7em-none-eabihf failed"
fi
command -v qemu-system-arm >/dev/null || apt_install qemu-system-arm
command -v qemu-system-arm >/dev/null || die "qemu-system-arm still missing after install"
# The cycle estimate disassembles the firmware (Debian's `llvm` package).
{ command -v llvm-objdump && command -v llvm-nm; } >/dev/null || apt_install llvm
{ command -v llvm-objdump && command -v llvm-nm; } >/dev/null || die "llvm-objdump/llvm-nm still missing after install"
data=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
[ -e "$data/t10k-images-idx3-ubyte.gz" ] || [ -e "$data/t10k-images-idx3-ubyte" ] || apt_install dataset-fashion-mnist
[ -e "$data/t10k-images-idx3-ubyte.gz" ] || [ -e "$data/t10k-images-idx3-ubyte" ] || die "Fashion-MNIST not found in $data"

export CARGO_TARGET_DIR=${MCU_HOST_TARGET_DIR:-$PWD/crates/mcu/target/host}
cargo test --manifest-path crates/mcu/Cargo.toml -- --nocapture || die "crates/mcu tests failed"
fw_dir=${MCU_FIRMWARE_TARGET_DIR:-$PWD/crates/mcu/target/firmware}
elf=$fw_dir/thumbv7em-none-eabihf/release/tinycnn-firmware
[ -e "$elf" ] || die "no firmware at $elf after the QEMU test"
python3 scripts/mcu-cycles.py "$elf" --macs 416520 || die "cycle estimate failed"
