#!/usr/bin/env bash
# Builds CMSIS-NN's int8 kernels with LeNet's layer shapes (crates/mcu/cmsis-nn/harness.c)
# for the Cortex-M4F and estimates their cycles with scripts/mcu-cycles.py, beside tinycnn's
# int8 lenet-relu firmware measured the same way.
#
#   scripts/cmsis-nn-compare.sh CMSIS_NN_DIR [BUILD_DIR]
#
# CMSIS_NN_DIR is a checkout of https://github.com/ARM-software/CMSIS-NN (this script fetches
# nothing; never commit the checkout). Needs Debian's gcc-arm-none-eabi and
# libnewlib-arm-none-eabi, qemu-system-arm and llvm (as scripts/mcu-test.sh installs).
# CMSIS_NN_OPT overrides the optimization flag (default -Ofast, CMSIS-NN's recommendation;
# -O2 for the other common choice). BUILD_DIR defaults to a fresh temporary folder.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
nn="${1:?usage: scripts/cmsis-nn-compare.sh CMSIS_NN_DIR [BUILD_DIR]}"
nn="$(cd "$nn" && pwd)"
out="${2:-$(mktemp -d /tmp/cmsis-nn-build.XXXXXX)}"
mkdir -p "$out"
opt="${CMSIS_NN_OPT:--Ofast}"
[ -f "$nn/Include/arm_nnfunctions.h" ] || { echo "error: $nn is not a CMSIS-NN checkout" >&2; exit 1; }
command -v arm-none-eabi-gcc >/dev/null || { echo "error: arm-none-eabi-gcc missing (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)" >&2; exit 1; }
flags=(-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard "$opt" -ffunction-sections -fdata-sections
       -I"$nn/Include" -I"$nn/Include/Internal")
srcs=()
for d in ConvolutionFunctions FullyConnectedFunctions NNSupportFunctions PoolingFunctions; do
    for f in "$nn/Source/$d"/*_s8*.c "$nn/Source/$d"/arm_nn_*.c "$nn/Source/$d"/arm_q7_to_q15*.c; do
        case "$f" in *_f16*|*_f32*|*'*'*) continue ;; esac
        [ -f "$f" ] && srcs+=("$f")
    done
done
mapfile -t srcs < <(printf '%s\n' "${srcs[@]}" | sort -u)
objs=()
for f in "${srcs[@]}"; do
    o="$out/$(basename "${f%.c}").o"
    arm-none-eabi-gcc "${flags[@]}" -c "$f" -o "$o"
    objs+=("$o")
done
h="$here/crates/mcu/cmsis-nn"
arm-none-eabi-gcc "${flags[@]}" -c "$h/harness.c" -o "$out/harness.o"
arm-none-eabi-gcc "${flags[@]}" -c "$h/startup.c" -o "$out/startup.o"
arm-none-eabi-gcc "${flags[@]}" -nostartfiles -T "$h/link.ld" -Wl,--gc-sections \
    "$out/startup.o" "$out/harness.o" "${objs[@]}" -lc -lgcc -o "$out/cmsis-nn-lenet.elf"
arm-none-eabi-size -A "$out/cmsis-nn-lenet.elf" | awk '$1 ~ /^\.(vectors|text|data|bss)$/'
echo "CMSIS-NN $(git -C "$nn" log -1 --format='%h %cs' 2>/dev/null || echo '(not a git checkout)'), $(arm-none-eabi-gcc --version | head -1), $opt"
macs=117600,0,240000,0,48000,10080,840
"$here/scripts/mcu-cycles.py" "$out/cmsis-nn-lenet.elf" --macs 416520 \
    --split '^(arm_convolve_s8|arm_max_pool_s8|arm_fully_connected_s8)$' --layer-macs "$macs"
