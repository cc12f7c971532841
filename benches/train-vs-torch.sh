#!/usr/bin/env bash
# One epoch of d2l's LeNet recipe, `tinycnn train` against PyTorch on this CPU, run
# alternately ROUNDS times (default 3) so that both see the same machine state; prints every
# run and the median examples/sec of each, and their ratio. Extra arguments go to both
# (for example `--model lenet-relu --optimizer adam --lr 0.001`).
#
#   cargo build --release -p tinycnn-cli
#   pip install torch numpy
#   bash benches/train-vs-torch.sh [--threads 2] [more train flags]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
bin=${TINYCNN_BIN:-target/release/tinycnn}
args=("$@")
[[ " ${args[*]-} " == *" --threads "* ]] || args+=(--threads 2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ours=() theirs=()
rate() { awk '/examples\/sec on/ {print $1}'; }
for i in $(seq "$rounds"); do
  o=$("$bin" train --epochs 1 --out "$tmp/w.safetensors" "${args[@]}" | rate)
  t=$(python3 benches/torch_lenet_cpu.py --epochs 1 "${args[@]}" | rate)
  echo "round $i: tinycnn $o, pytorch $t examples/sec (load $(cut -d' ' -f1 /proc/loadavg))"
  ours+=("$o") theirs+=("$t")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}") mt=$(median "${theirs[@]}")
echo "median: tinycnn $mo, pytorch $mt examples/sec; tinycnn/pytorch = $(awk -v a="$mo" -v b="$mt" 'BEGIN {printf "%.2f", a / b}')"
