#!/usr/bin/env bash
# Trains lenet-relu for one epoch on the full Fashion-MNIST and checks that it learned:
# test accuracy above 0.75 (d2l's recipe with Adam, lr 1e-3). Then evaluates and predicts with
# the weights it wrote, so the whole CLI runs once on real data.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build --release -p tinycnn-cli
bin=${CARGO_TARGET_DIR:-target}/release/tinycnn
"$bin" summary --model lenet
"$bin" train --model lenet-relu --optimizer adam --lr 0.001 --epochs 1 --seed 0 \
  --out "$out/lenet-relu.safetensors" --plot "$out/curves.svg" | tee "$out/train.log"
acc=$(grep -oE 'test acc [0-9.]+' "$out/train.log" | tail -n 1 | awk '{print $3}')
[ -n "$acc" ] || { echo "train printed no 'test acc' line" >&2; exit 1; }
awk -v a="$acc" 'BEGIN { if (a + 0 <= 0.75) { print "test accuracy " a " is not above 0.75" > "/dev/stderr"; exit 1 } }'
echo "1 epoch of lenet-relu: test acc $acc > 0.75"
[ -s "$out/curves.svg" ] || { echo "no training curves written" >&2; exit 1; }
"$bin" eval --model lenet-relu --weights "$out/lenet-relu.safetensors"
"$bin" predict --model lenet-relu --weights "$out/lenet-relu.safetensors" --index 0
