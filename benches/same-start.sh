#!/usr/bin/env bash
# tinycnn and PyTorch trained from the same initial weights on the same batches (file order):
# prints both runs' epoch lines and how far apart their per-batch losses are. Arguments:
# [lenet|lenet-relu] [sgd|adam] [lr] [epochs] [seed] (default: lenet-relu adam 0.001 1 0).
#
#   pip install torch numpy safetensors
#   bash benches/same-start.sh lenet-relu adam 0.001 10
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-lenet-relu} opt=${2:-adam} lr=${3:-0.001} epochs=${4:-1} seed=${5:-0}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo run -q --release -p tinycnn-models --example same_start -- "$dir" "$model" "$opt" "$lr" "$epochs" "$seed"
python3 benches/torch_lenet_cpu.py --model "$model" --optimizer "$opt" --lr "$lr" --epochs "$epochs" \
    --threads "${THREADS:-2}" --init "$dir/init.safetensors" --in-order --losses "$dir/losses_torch.txt" \
    | grep -E '^epoch'
python3 - "$dir/losses_tinycnn.txt" "$dir/losses_torch.txt" <<'PY'
import sys
a = [float(v) for v in open(sys.argv[1])]
b = [float(v) for v in open(sys.argv[2])]
assert len(a) == len(b), (len(a), len(b))
rel = [abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b)]
first = next((i for i, r in enumerate(rel) if r > 1e-3), None)
print(f"{len(a)} batches; loss relative difference: first batch {rel[0]:.1e}, "
      f"max over the first 10 {max(rel[:10]):.1e}, median {sorted(rel)[len(rel) // 2]:.1e}; "
      f"first batch differing by more than 1e-3: {first}")
print(f"mean loss of the last 100 batches: tinycnn {sum(a[-100:]) / len(a[-100:]):.4f}, "
      f"pytorch {sum(b[-100:]) / len(b[-100:]):.4f}")
PY
