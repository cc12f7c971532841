#!/usr/bin/env bash
# LeNet inference, tinycnn's lean path (`Inference`) against PyTorch eager under
# torch.inference_mode() on this CPU: batch-1 latency and batch-256 throughput, both LeNet
# variants, 1 and 2 threads. Each configuration runs ROUNDS times (default 3), alternating
# tinycnn and PyTorch so both see the same machine state; prints every run, then the
# medians and their ratio (tinycnn speed / PyTorch speed: above 1 means tinycnn is faster).
#
#   cargo build --release -p tinycnn-benches --bin infer-bench
#   pip install torch numpy
#   bash benches/infer-vs-torch.sh            # SECONDS=2 per run; PATH_KIND=autograd for the
#                                             # runtime's ordinary forward under no_grad
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_RUN:-2}
kind=${PATH_KIND:-lean}
bin=${TINYCNN_INFER_BIN:-target/release/infer-bench}
[ -x "$bin" ] || { echo "build first: cargo build --release -p tinycnn-benches --bin infer-bench" >&2; exit 2; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
us() { sed -n 's/.*: \([0-9.]*\) us\/call.*/\1/p'; }
grep -m1 'model name' /proc/cpuinfo || true
printf '%-11s %5s %7s %12s %12s %8s\n' model batch threads tinycnn_us pytorch_us speedup
for model in lenet lenet-relu; do
  for batch in 1 256; do
    for threads in 1 2; do
      ours=() theirs=()
      for _ in $(seq "$rounds"); do
        o=$("$bin" --model "$model" --batch "$batch" --threads "$threads" --path "$kind" --seconds "$secs")
        t=$(python3 -W ignore benches/torch_infer_cpu.py --model "$model" --batch "$batch" --threads "$threads" --seconds "$secs")
        echo "  $o" >&2
        echo "  $t" >&2
        ours+=("$(echo "$o" | us)") theirs+=("$(echo "$t" | us)")
      done
      mo=$(median "${ours[@]}") mt=$(median "${theirs[@]}")
      printf '%-11s %5s %7s %12s %12s %8s\n' "$model" "$batch" "$threads" "$mo" "$mt" \
        "$(awk -v a="$mo" -v b="$mt" 'BEGIN {printf "%.2fx", b / a}')"
    done
  done
done
