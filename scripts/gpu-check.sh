#!/usr/bin/env bash
# Build everything the GPU checks need on this (GPU-less) machine and stage it in .carry/gpu/
# (git-ignored), so a GPU machine can run it without a Rust toolchain.
#
#   scripts/gpu-check.sh            build + stage: tinycnn-cuda test binaries, the gpu_bench
#                                   and train_bench examples, the `tinycnn` CLI and its unit and end-to-end test
#                                   binaries (release; their cuda tests need a GPU), plus run.sh
#   scripts/gpu-check.sh --no-cli   same without the CLI
#
# Then run on the GPU machine with the session's `run` (device) tool, from the repository root:
#
#   run(command="bash .carry/gpu/run.sh", carry=[".carry"], timeout_s=600)
#
# (add "data" to carry to train the CLI on Fashion-MNIST there; the machine has no network,
# and carry holds 64 MiB in all). run.sh runs every test binary (the GPU tests really run
# there instead of skipping), the kernel benchmark, scripts/torch_lenet_bench.py when
# PyTorch is importable, and `tinycnn train --device cuda` when data/ is present; logs and
# bench.jsonl land in $OUT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
with_cli=1
case "${1:-}" in
    "") ;;
    --no-cli) with_cli=0 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--no-cli]" >&2; exit 2 ;;
esac

STAGE="$ROOT/.carry/gpu"
rm -rf "$STAGE"
mkdir -p "$STAGE/bin"

executables() {
    # Cargo's JSON messages name each built test/example executable.
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        kind = msg["target"]["kind"][0]
        # Unit tests of a lib or bin: "lib-test", "bin-test" (integration tests stay "test").
        if msg.get("profile", {}).get("test") and kind != "test":
            kind += "-test"
        print(kind, msg["target"]["name"], msg["executable"])
'
}

echo "building tinycnn-cuda test binaries..." >&2
cargo test -p tinycnn-cuda --no-run --message-format=json 2>/dev/null | executables | while read -r kind name exe; do
    [ "$kind" = test ] || [ "$kind" = lib-test ] || continue
    cp "$exe" "$STAGE/bin/test-$name"
done
echo "building the gpu_bench example (release)..." >&2
cargo build --release -p tinycnn-cuda --example gpu_bench --message-format=json 2>/dev/null | executables | while read -r kind name exe; do
    [ "$name" = gpu_bench ] && cp "$exe" "$STAGE/bin/gpu_bench"
done
echo "building the runtime's train_bench example (release)..." >&2
cargo build --release -p tinycnn --features cuda --example train_bench --message-format=json 2>/dev/null | executables | while read -r kind name exe; do
    [ "$name" = train_bench ] && cp "$exe" "$STAGE/bin/train_bench"
done
if [ "$with_cli" = 1 ]; then
    echo "building the tinycnn CLI (release)..." >&2
    cargo build --release -p tinycnn-cli --bin tinycnn --message-format=json 2>/dev/null | executables | while read -r kind name exe; do
        [ "$name" = tinycnn ] && cp "$exe" "$STAGE/bin/tinycnn"
    done
    [ -x "$STAGE/bin/tinycnn" ] || { echo "the CLI did not build: cargo build --release -p tinycnn-cli" >&2; exit 1; }
    echo "building the CLI's end-to-end tests (release)..." >&2
    cargo test --release -p tinycnn-cli --no-run --message-format=json 2>/dev/null | executables | while read -r kind name exe; do
        case "$kind $name" in
            "test cli") cp "$exe" "$STAGE/bin/test-cli" ;;
            "bin-test tinycnn") cp "$exe" "$STAGE/bin/test-cli-unit" ;;
        esac
    done
    [ -x "$STAGE/bin/test-cli" ] && [ -x "$STAGE/bin/test-cli-unit" ] || { echo "the CLI tests did not build: cargo test --release -p tinycnn-cli --no-run" >&2; exit 1; }
fi
ls "$STAGE/bin"/test-* >/dev/null 2>&1 || { echo "no test binaries were built: cargo test -p tinycnn-cuda --no-run" >&2; exit 1; }
[ -x "$STAGE/bin/gpu_bench" ] || { echo "gpu_bench did not build" >&2; exit 1; }
[ -x "$STAGE/bin/train_bench" ] || { echo "train_bench did not build" >&2; exit 1; }
# Debug info is not needed on the GPU machine and carry is limited to 64 MiB.
if command -v strip >/dev/null; then strip "$STAGE/bin"/* 2>/dev/null || true; fi

cat >"$STAGE/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine from the repository root (see scripts/gpu-check.sh).
set -uo pipefail
OUT="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUT"
BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bin"
# test-cli runs this CLI, not the path it was built against.
export TINYCNN_BIN="$BIN/tinycnn"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
for t in "$BIN"/test-*; do
    echo "=== $(basename "$t")"
    if ! "$t" --test-threads=1 --nocapture 2>&1 | tee "$OUT/$(basename "$t").log"; then status=1; fi
    if grep -q "skipping: no CUDA" "$OUT/$(basename "$t").log"; then echo "WARNING: $(basename "$t") skipped GPU tests"; status=1; fi
done
echo "=== gpu_bench"
"$BIN/gpu_bench" 2>&1 | tee "$OUT/bench.jsonl" || status=1
echo "=== train_bench (LeNet through tinycnn::train on cuda:0)"
"$BIN/train_bench" cuda:0 2>&1 | tee -a "$OUT/bench.jsonl" || status=1
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    echo "=== torch_lenet_bench.py"
    python3 scripts/torch_lenet_bench.py --tinycnn-json "$OUT/bench.jsonl" --data data 2>&1 | tee "$OUT/torch_bench.txt" || status=1
else
    echo "=== PyTorch with CUDA not importable here: skipping scripts/torch_lenet_bench.py"
fi
if [ -x "$BIN/tinycnn" ] && [ -d data ]; then
    echo "=== tinycnn train --device cuda"
    "$BIN/tinycnn" train --device cuda --out "$OUT/lenet-cuda.safetensors" --plot "$OUT/lenet-cuda.svg" 2>&1 | tee "$OUT/cli_train.log" || status=1
fi
echo "gpu-check status: $status"
exit "$status"
RUN
chmod +x "$STAGE/run.sh"
du -sh "$STAGE" >&2
ls -l "$STAGE/bin" >&2
echo "staged in .carry/gpu; run on the GPU machine: run(command=\"bash .carry/gpu/run.sh\", carry=[\".carry\"])" >&2
