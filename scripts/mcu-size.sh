#!/usr/bin/env bash
# Builds the firmware once per committed deployment (crates/mcu/deployments/*, written by
# `tinycnn deploy`; TINYCNN_DEPLOY selects it), and the int8 ones once more with the plain
# kernels (feature `plain`), and prints, for each, the ELF section sizes (llvm-size)
# and the instructions per inference measured in QEMU with `-icount shift=0` (see
# crates/mcu/README.md for how ticks become instructions). Then one line per firmware:
#   firmware MODEL PRECISION flash_bytes=N ram_bytes=N cycles_est=N macs=N
# with RAM = .data + .bss + the measured stack high-water mark, cycles_est the Cortex-M4
# estimate of scripts/mcu-cycles.py (P = 2; a QEMU trace per firmware, about a minute for
# an f32 one) and PRECISION `int8-plain` for the plain-kernel builds. MCU_SIZE_NO_CYCLES=1
# skips the estimate (cycles_est=n/a). A plan whose arena and workspace leave less than 4 KiB
# of the chip's 128 KiB of RAM (summary.txt's "peak RAM for buffers"; the firmware's build.rs
# refuses it) is built with feature `qemu-sram` (QEMU's 192 KiB map) and its line ends with
# `over_chip_ram`: it runs in QEMU only.
set -euo pipefail
cd "$(dirname "$0")/../crates/mcu"
target=thumbv7em-none-eabihf
dir=${MCU_FIRMWARE_TARGET_DIR:-$PWD/target/firmware}
size_tool=$(command -v llvm-size || command -v arm-none-eabi-size || true)
[ -n "$size_tool" ] || { echo "mcu-size: need llvm-size or arm-none-eabi-size" >&2; exit 1; }
printf '%-36s %8s %8s %8s %8s %8s %10s %10s %12s\n' deployment,features vectors .text .rodata .data .bss flash_KiB stack_B insns/image
lines=()
builds=()
for d in deployments/*/; do
    d=$(basename "$d")
    buffers=$(awk '/^peak RAM for buffers:/ { print $5 }' "deployments/$d/summary.txt")
    base=firmware
    (( buffers + 4096 > 128 * 1024 )) && base=firmware,qemu-sram
    builds+=("$d:$base")
    [[ $d == *int8* ]] && builds+=("$d:$base,plain")
done
for build in "${builds[@]}"; do
    deployment=${build%%:*}; features=${build#*:}
    TINYCNN_DEPLOY=deployments/$deployment env -u CARGO_TARGET_DIR cargo build -q --release --target $target --features $features --target-dir "$dir"
    elf=$dir/$target/release/tinycnn-firmware
    sec() { "$size_tool" -A "$elf" | awk -v s="$1" '$1 == s { print $2 }'; }
    vt=$(sec .vector_table); text=$(sec .text); ro=$(sec .rodata); data=$(sec .data); bss=$(sec .bss)
    out=$(timeout 120 qemu-system-arm -machine netduinoplus2 -nographic -monitor none \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf")
    # instructions = ticks * (calibration instructions / calibration ticks)
    insns=$(awk '/^calibration/ { ci = $3; ct = $5 } /^image/ { for (i = 1; i <= NF; i++) if ($i == "ticks") t = $(i + 1) }
                 END { printf "%.0f", t * ci / ct }' <<<"$out")
    stack=$(awk '/^stack_bytes/ { print $2 }' <<<"$out")
    flash=$(( vt + text + ro + data ))
    printf '%-36s %8s %8s %8s %8s %8s %10.1f %10s %12s\n' "$deployment,$features" "$vt" "$text" "$ro" "$data" "$bss" \
        "$(awk -v f="$flash" 'BEGIN { print f / 1024 }')" "$stack" "$insns"
    model=${deployment%-*}
    precision=$(awk '/^model/ { print $3 }' <<<"$out")
    [[ $features == *plain* ]] && precision=$precision-plain
    macs=$(awk '/^model/ { for (i = 1; i <= NF; i++) if ($i == "macs") print $(i + 1) }' <<<"$out")
    cycles=n/a
    if [ -z "${MCU_SIZE_NO_CYCLES:-}" ]; then
        cycles=$(python3 ../../scripts/mcu-cycles.py "$elf" --value)
    fi
    note=
    [[ $features == *qemu-sram* ]] && note=" over_chip_ram"
    lines+=("firmware $model $precision flash_bytes=$flash ram_bytes=$(( data + bss + stack )) cycles_est=$cycles macs=$macs$note")
done
printf '%s\n' "${lines[@]}"
