#!/usr/bin/env bash
# Builds the four firmwares (f32/int8 x lenet-relu/lenet) and prints, for each, the ELF
# section sizes (llvm-size) and the instructions per inference measured in QEMU with
# `-icount shift=0` (see crates/mcu/README.md for how ticks become instructions).
set -euo pipefail
cd "$(dirname "$0")/../crates/mcu"
target=thumbv7em-none-eabihf
dir=${MCU_FIRMWARE_TARGET_DIR:-$PWD/target/firmware}
size_tool=$(command -v llvm-size || command -v arm-none-eabi-size || true)
[ -n "$size_tool" ] || { echo "mcu-size: need llvm-size or arm-none-eabi-size" >&2; exit 1; }
printf '%-22s %8s %8s %8s %8s %8s %10s %10s %12s\n' features vectors .text .rodata .data .bss flash_KiB stack_B insns/image
for features in firmware firmware,int8 firmware,sigmoid firmware,int8,sigmoid; do
    env -u CARGO_TARGET_DIR cargo build -q --release --target $target --features $features --target-dir "$dir"
    elf=$dir/$target/release/lenet-firmware
    sec() { "$size_tool" -A "$elf" | awk -v s="$1" '$1 == s { print $2 }'; }
    vt=$(sec .vector_table); text=$(sec .text); ro=$(sec .rodata); data=$(sec .data); bss=$(sec .bss)
    out=$(timeout 120 qemu-system-arm -machine netduinoplus2 -nographic -monitor none \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf")
    # instructions = ticks * (calibration instructions / calibration ticks)
    insns=$(awk '/^calibration/ { ci = $3; ct = $5 } /^image/ { for (i = 1; i <= NF; i++) if ($i == "ticks") t = $(i + 1) }
                 END { printf "%.0f", t * ci / ct }' <<<"$out")
    stack=$(awk '/^stack_bytes/ { print $2 }' <<<"$out")
    flash=$(( vt + text + ro + data ))
    printf '%-22s %8s %8s %8s %8s %8s %10.1f %10s %12s\n' "$features" "$vt" "$text" "$ro" "$data" "$bss" \
        "$(awk -v f="$flash" 'BEGIN { print f / 1024 }')" "$stack" "$insns"
done
