#!/usr/bin/env bash
# Regenerate or check the committed PTX of kernels-cuda/*.cu.
#
#   scripts/gen-ptx.sh           regenerate kernels-cuda/ptx/*.ptx
#   scripts/gen-ptx.sh --check   regenerate into a temp dir, fail on any difference to the
#                                committed PTX, then assemble every PTX with ptxas for sm_80
#                                and sm_90 (-v), print registers/spills per kernel, and fail
#                                if a hot kernel (sgemm*, conv2d*, *pool2d*) spills.
#   scripts/gen-ptx.sh --emulate   compile kernels-cuda/*.cu for the host with
#                                kernels-cuda/emu/cuda_emu.h (g++ >= 10, C++20) and check every
#                                kernel against naive loops (kernels-cuda/emu/check.cpp); about
#                                few seconds, no GPU or CUDA wheels needed.
#
# No GPU needed. NVRTC and ptxas come from NVIDIA's PyPI wheels, pinned below and installed
# quietly into a private venv (TINYCNN_PTX_VENV, default ~/.cache/tinycnn/ptx-venv-<version>).
# A different NVRTC version produces different PTX text: bump the pin and regenerate together.
# 12.2 emits PTX ISA 8.2, which drivers >= 535 load; newer NVRTCs emit newer ISA versions
# that older drivers refuse (CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
set -euo pipefail

CUDA_WHEEL_VERSION=12.2.140
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TINYCNN_PTX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tinycnn/ptx-venv-$CUDA_WHEEL_VERSION}"
PTX_DIR="$ROOT/kernels-cuda/ptx"

mode=generate
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --emulate)
        exe="$(mktemp)"
        trap 'rm -f "$exe"' EXIT
        g++ -std=c++20 -O1 -pthread -w "$ROOT/kernels-cuda/emu/check.cpp" -o "$exe"
        "$exe"
        exit $?
        ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--check | --emulate]" >&2; exit 2 ;;
esac

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import nvidia.cuda_nvrtc, nvidia.cuda_nvcc' 2>/dev/null; then
    echo "installing NVRTC/ptxas $CUDA_WHEEL_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "nvidia-cuda-nvrtc-cu12==$CUDA_WHEEL_VERSION" "nvidia-cuda-nvcc-cu12==$CUDA_WHEEL_VERSION"
fi
PY="$VENV/bin/python"
PTXAS="$("$PY" -c 'import nvidia.cuda_nvcc, os; print(os.path.join(list(nvidia.cuda_nvcc.__path__)[0], "bin", "ptxas"))')"

if [ "$mode" = generate ]; then
    "$PY" "$ROOT/scripts/gen-ptx.py" --out "$PTX_DIR"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" "$ROOT/scripts/gen-ptx.py" --out "$tmp" >/dev/null

status=0
for f in "$tmp"/*.ptx; do
    name="$(basename "$f")"
    if [ ! -f "$PTX_DIR/$name" ]; then
        echo "MISSING: kernels-cuda/ptx/$name is not committed (run scripts/gen-ptx.sh)" >&2
        status=1
    elif ! cmp -s "$f" "$PTX_DIR/$name"; then
        echo "STALE: kernels-cuda/ptx/$name differs from what kernels-cuda/*.cu compiles to (run scripts/gen-ptx.sh):" >&2
        diff -u "$PTX_DIR/$name" "$f" | head -20 >&2 || true
        status=1
    fi
done
for f in "$PTX_DIR"/*.ptx; do
    [ -f "$tmp/$(basename "$f")" ] || { echo "EXTRA: $f has no kernels-cuda/*.cu source" >&2; status=1; }
done

printf '%-6s %-32s %5s %7s %7s %7s\n' arch kernel regs stack spill_st spill_ld
for arch in sm_80 sm_90; do
    for f in "$PTX_DIR"/*.ptx; do
        if ! out="$("$PTXAS" -v -arch="$arch" "$f" -o /dev/null 2>&1)"; then
            echo "ptxas failed on $(basename "$f") for $arch:" >&2
            echo "$out" >&2
            status=1
            continue
        fi
        # ptxas -v prints, per entry: "Compiling entry function 'X'", then
        # "N bytes stack frame, N bytes spill stores, N bytes spill loads", then "Used N registers".
        report="$(awk -v arch="$arch" '
            /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); k = substr($0, RSTART + 1, RLENGTH - 2) }
            /bytes stack frame/ { split($0, a, /[ ,:]+/); for (i = 1; i <= length(a); i++) {
                if (a[i] == "bytes" && a[i+1] == "stack") st = a[i-1];
                if (a[i] == "bytes" && a[i+1] == "spill" && a[i+2] == "stores") ss = a[i-1];
                if (a[i] == "bytes" && a[i+1] == "spill" && a[i+2] == "loads") sl = a[i-1] } }
            /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); r = substr($0, RSTART + 5, RLENGTH - 15)
                printf "%-6s %-32s %5s %7s %7s %7s\n", arch, k, r, st, ss, sl }
        ' <<<"$out")"
        echo "$report"
        while read -r a kernel regs stack ss sl; do
            case "$kernel" in
                sgemm* | conv2d* | *pool2d*)
                    if [ "$ss" != 0 ] || [ "$sl" != 0 ]; then
                        echo "SPILL: hot kernel $kernel spills on $a ($ss bytes stored, $sl loaded)" >&2
                        status=1
                    fi ;;
            esac
        done <<<"$report"
    done
done
if [ "$status" = 0 ]; then
    echo "PTX up to date; no hot kernel spills."
fi
exit "$status"
