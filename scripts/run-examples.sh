#!/usr/bin/env bash
# Runs every example of the tinycnn package (crates/tinycnn/examples/*.rs) in release mode
# and fails on the first non-zero exit. The d2l walk-through examples are short, except that
# `lenet` by default trains the book's full recipe (10 epochs on all of Fashion-MNIST); this
# script sets TINYCNN_EXAMPLES_QUICK=1 (unless the caller sets it), which makes it train one
# epoch on 2048 images without downloading anything.
#
# Usage: scripts/run-examples.sh            (all examples)
#        scripts/run-examples.sh lenet pooling   (only these)
#        TINYCNN_EXAMPLES_QUICK=0 scripts/run-examples.sh lenet   (lenet's full training run)
set -euo pipefail

export TINYCNN_EXAMPLES_QUICK="${TINYCNN_EXAMPLES_QUICK-1}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "$#" -gt 0 ]; then
    examples=("$@")
else
    examples=()
    for f in crates/tinycnn/examples/*.rs; do
        examples+=("$(basename "$f" .rs)")
    done
fi
if [ "${#examples[@]}" -eq 0 ]; then
    echo "run-examples: no examples found under crates/tinycnn/examples" >&2
    exit 1
fi

cargo build --release -p tinycnn --examples

failed=()
for ex in "${examples[@]}"; do
    echo "=== example: $ex"
    start_ms=$(($(date +%s%N) / 1000000))
    if cargo run --quiet --release -p tinycnn --example "$ex"; then
        elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
        printf '=== %s: ok (%d ms)\n\n' "$ex" "$elapsed_ms"
    else
        status=$?
        echo "=== $ex: FAILED (exit $status)" >&2
        failed+=("$ex")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "run-examples: ${#failed[@]} example(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "run-examples: all ${#examples[@]} examples passed"
