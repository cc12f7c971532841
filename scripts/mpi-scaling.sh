#!/usr/bin/env bash
# Training throughput of 1 process against 2 MPI ranks on this machine: one epoch of LeNet
# (d2l's recipe, batch 256) on the full Fashion-MNIST, the three set-ups run in turn
# ROUNDS times (default 5) so that drifting load hits all alike; prints each run and the
# medians of the CLI's "examples/sec" (training only, evaluation excluded).
#   bash scripts/mpi-scaling.sh [ROUNDS]
set -Eeuo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cargo build --release -q -p tinycnn-cli --features mpi
bin=${CARGO_TARGET_DIR:-target}/release/tinycnn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
args=(train --model lenet --epochs 1 --batch-size 256 --seed 0 --out "$work/w.safetensors")

rate() { grep -oE '^[0-9.]+ examples/sec' | awk '{print $1}'; }
declare -A runs
for r in $(seq 1 "$rounds"); do
  a=$("$bin" "${args[@]}" --threads 1 --distributed none | rate)
  b=$("$bin" "${args[@]}" --threads "$(nproc)" --distributed none | rate)
  # One thread per rank: the CLI's default under mpirun (cores / ranks on the host).
  c=$(mpirun --oversubscribe --bind-to none -np 2 "$bin" "${args[@]}" | rate)
  echo "round $r: 1 process x 1 thread $a, 1 process x $(nproc) threads $b, 2 ranks x 1 thread $c examples/sec"
  runs[a]+="$a "; runs[b]+="$b "; runs[c]+="$c "
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "median of $rounds: 1 process x 1 thread $(echo "${runs[a]}" | median), 1 process x $(nproc) threads $(echo "${runs[b]}" | median), 2 ranks x 1 thread $(echo "${runs[c]}" | median) examples/sec"
