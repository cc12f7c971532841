#!/usr/bin/env bash
# SGEMM and LeNet convolutions with AVX2+FMA and AVX-512 (alternating rounds), then
# torch.mm at the same sizes, twice over so drift on a shared machine shows; see
# benches/README.md, "AVX-512". Usage: benches/isa-vs-torch.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-7}"
cargo build --release -q -p tinycnn-benches --example isa_compare
grep -m1 'model name' /proc/cpuinfo || true
for pass in 1 2; do
  echo "== pass $pass"
  target/release/examples/isa_compare "$rounds"
  if python3 -c "import torch" 2>/dev/null; then
    python3 benches/torch_mm.py "$rounds"
  else
    echo "skipping torch.mm: python3 cannot import torch"
  fi
done
