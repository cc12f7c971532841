#!/usr/bin/env bash
# Data-parallel training under MPI on one machine (`mpirun --oversubscribe -np 2`):
#   1. two ranks end one epoch with the weights of one process on the same global batches
#      (up to float rounding), with SGD and with Adam, an uneven last batch included;
#   2. a 2-rank run resumed from its checkpoint matches a 2-epoch single run (parameters and
#      optimizer state broadcast from rank 0), only rank 0 printed, and ranks started with
#      different settings stop with an error naming them;
#   3. a killed rank ends the job with an error, and the last checkpoint stays readable;
#   4. a hanging rank (SIGSTOP) ends the job through the collective watchdog;
#   5. a rank that cannot start, or never reaches MPI_Init, ends the job with an error;
#   6. the NCCL layer (GPU path) builds, and says what is missing without NCCL or a GPU.
# Needs OpenMPI (Debian: openmpi-bin libopenmpi-dev), libclang-dev (bindgen of mpi-sys),
# python3 (standard library only) and Fashion-MNIST. Prints PASS/FAIL per check; exits 1 if
# any failed.
set -Euo pipefail
cd "$(dirname "$0")/.."
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
# CI runs as root; OpenMPI refuses that without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One core per rank on a 2-core machine; no progress bars in the logs.
MPIRUN=(mpirun --oversubscribe --bind-to none -np 2)

cargo build --release -q -p tinycnn-cli --features mpi || { echo "FAIL: build with --features mpi" >&2; exit 1; }
bin=${CARGO_TARGET_DIR:-target}/release/tinycnn
work=$(mktemp -d)
pids_to_clean=()
cleanup() {
  for p in "${pids_to_clean[@]}"; do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

failed=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=1; }

# A subset of Fashion-MNIST (uncompressed IDX files, which the loader accepts): 999
# training images, so batches of 64 end with one of 39 (20 + 19 over two ranks).
src=${TINYCNN_DATA:-/usr/share/datasets/fashion-mnist}
subset() { # dir ntrain ntest
  python3 - "$src" "$1" "$2" "$3" <<'EOF'
import gzip, os, struct, sys
src, dst, ntrain, ntest = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(dst, exist_ok=True)
def cut(name, n):
    path = os.path.join(src, name)
    raw = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
    nd = raw[3]
    dims = list(struct.unpack(">%dI" % nd, raw[4:4 + 4 * nd]))
    per = 1
    for d in dims[1:]:
        per *= d
    head = 4 + 4 * nd
    dims[0] = n
    with open(os.path.join(dst, name), "wb") as f:
        f.write(raw[:4] + struct.pack(">%dI" % nd, *dims) + raw[head:head + n * per])
cut("train-images-idx3-ubyte", ntrain); cut("train-labels-idx1-ubyte", ntrain)
cut("t10k-images-idx3-ubyte", ntest); cut("t10k-labels-idx1-ubyte", ntest)
EOF
}
subset "$work/small" 999 500 || { echo "FAIL: cannot cut a subset of $src" >&2; exit 1; }

# max |a - b| / (1e-3 + |b|) over every tensor of two safetensors files, and a verdict.
compare() { # a b tolerance
  python3 - "$1" "$2" "$3" <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
    return out
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if a.keys() != b.keys():
    print("different tensors:", sorted(a), sorted(b)); sys.exit(1)
worst = max(abs(x - y) / (1e-3 + abs(y)) for k in a for x, y in zip(a[k], b[k]))
print("max relative difference %.2e over %d tensors (tolerance %g)" % (worst, len(a), tol))
sys.exit(0 if worst <= tol else 1)
EOF
}

train=("$bin" train --data "$work/small" --batch-size 64 --seed 3)

echo "== 1. two ranks vs one process, one epoch"
for opt in "--model lenet --optimizer sgd" "--model lenet-relu --optimizer adam"; do
  tag=${opt// /}; tag=${tag//-/}
  # shellcheck disable=SC2086
  "${train[@]}" $opt --epochs 1 --threads 1 --distributed none --out "$work/one-$tag.safetensors" >"$work/one-$tag.log" 2>&1 \
    || { fail "single-process run ($opt): $(tail -n 3 "$work/one-$tag.log")"; continue; }
  # shellcheck disable=SC2086
  "${MPIRUN[@]}" "${train[@]}" $opt --epochs 1 --out "$work/two-$tag.safetensors" >"$work/two-$tag.log" 2>&1 \
    || { fail "2-rank run ($opt): $(tail -n 5 "$work/two-$tag.log")"; continue; }
  if cmp=$(compare "$work/two-$tag.safetensors" "$work/one-$tag.safetensors" 1e-3); then
    pass "$opt: 2 ranks = 1 process: $cmp"
  else
    fail "$opt: 2 ranks differ from 1 process: $cmp"
  fi
  l1=$(grep -oE 'loss [0-9.]+, train acc [0-9.]+, test acc [0-9.]+' "$work/one-$tag.log" | tail -n 1)
  l2=$(grep -oE 'loss [0-9.]+, train acc [0-9.]+, test acc [0-9.]+' "$work/two-$tag.log" | tail -n 1)
  [ -n "$l1" ] && [ "$l1" = "$l2" ] && pass "$opt: same epoch figures ($l2)" \
    || fail "$opt: epoch figures differ: one process '$l1', two ranks '$l2'"
done

echo "== 2. resume under MPI (Adam: its moments come from the checkpoint), rank-0 output"
adam=(--model lenet-relu --optimizer adam --lr 0.002)
"${train[@]}" "${adam[@]}" --epochs 2 --threads 1 --distributed none --out "$work/one-2ep.safetensors" >"$work/one-2ep.log" 2>&1 \
  || fail "single 2-epoch run: $(tail -n 3 "$work/one-2ep.log")"
"${MPIRUN[@]}" "${train[@]}" "${adam[@]}" --epochs 1 --out "$work/res.safetensors" >"$work/res1.log" 2>&1 \
  || fail "2-rank first epoch: $(tail -n 5 "$work/res1.log")"
"${MPIRUN[@]}" "${train[@]}" "${adam[@]}" --epochs 2 --resume "$work/res.ckpt.safetensors" --out "$work/res.safetensors" >"$work/res2.log" 2>&1 \
  || fail "2-rank resumed run: $(tail -n 5 "$work/res2.log")"
if cmp=$(compare "$work/res.safetensors" "$work/one-2ep.safetensors" 1e-3); then
  pass "resumed 2-rank run = 2 epochs of one process: $cmp"
else
  fail "resumed 2-rank run differs: $cmp"
fi
n=$(grep -c '^epoch 2:' "$work/res2.log" || true)
[ "$n" = 1 ] && pass "one rank printed (1 'epoch 2:' line)" || fail "'epoch 2:' printed $n times:
$(cat "$work/res2.log")"

# Ranks started with different settings (MPMD: one --seed each) stop before training.
if timeout 60 mpirun --oversubscribe --bind-to none -np 1 "${train[@]}" --epochs 1 --out "$work/mix.safetensors" \
     : -np 1 "$bin" train --data "$work/small" --batch-size 64 --seed 4 --epochs 1 --out "$work/mix.safetensors" >"$work/mix.log" 2>&1; then
  fail "ranks with different seeds trained"
elif grep -q "disagree with rank 0" "$work/mix.log"; then
  pass "ranks with different seeds: $(grep -m1 -o 'the run.s settings.*' "$work/mix.log")"
else
  fail "ranks with different seeds: $(tail -n 5 "$work/mix.log")"
fi

# The pid of rank $2 among the processes mpirun $1 started.
rank_pid() {
  local p
  for p in $(ps -o pid= --ppid "$1"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"; return 0
    fi
  done
  return 1
}
# Starts a long 2-rank run in the background; waits for its first checkpoint.
start_long() { # name [env...]
  local name=$1; shift
  subset "$work/long" 6000 500 >/dev/null
  env "$@" "${MPIRUN[@]}" "$bin" train --data "$work/long" --batch-size 64 --epochs 500 \
    --out "$work/$name.safetensors" >"$work/$name.log" 2>&1 &
  job=$!
  for _ in $(seq 1 600); do
    [ -f "$work/$name.ckpt.safetensors" ] && return 0
    kill -0 "$job" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# Waits up to $2 seconds for job $1 to end; sets `status` (its exit status, or "timeout").
wait_bounded() {
  local t=0
  while kill -0 "$1" 2>/dev/null; do
    sleep 0.2; t=$((t + 1))
    if [ $t -gt $(($2 * 5)) ]; then kill -KILL "$1" 2>/dev/null; status=timeout; return; fi
  done
  status=0
  wait "$1" || status=$?
}

echo "== 3. a killed rank"
if start_long killed; then
  victim=$(rank_pid "$job" 1) || victim=
  if [ -z "$victim" ]; then
    fail "cannot find rank 1 of mpirun $job"
  else
    pids_to_clean+=("$victim")
    kill -KILL "$victim"
    t0=$(date +%s)
    wait_bounded "$job" 60
    dt=$(( $(date +%s) - t0 ))
    if [ "$status" != timeout ] && [ "$status" != 0 ]; then
      pass "killed rank 1: the job ended with status $status after ${dt}s"
    else
      fail "killed rank 1: the job did not end with an error (status $status): $(tail -n 5 "$work/killed.log")"
    fi
    if "$bin" eval --data "$work/small" --weights "$work/killed.ckpt.safetensors" >"$work/eval.log" 2>&1; then
      pass "the last checkpoint is valid ($(grep -oE 'test acc[^,]*' "$work/eval.log" | head -n 1))"
    else
      fail "the checkpoint after the kill does not load: $(cat "$work/eval.log")"
    fi
  fi
else
  fail "the long run did not write its first checkpoint: $(tail -n 5 "$work/killed.log")"
fi

echo "== 4. a hanging rank (SIGSTOP), TINYCNN_COLLECTIVE_TIMEOUT=5"
if start_long hung TINYCNN_COLLECTIVE_TIMEOUT=5; then
  victim=$(rank_pid "$job" 1) || victim=
  if [ -z "$victim" ]; then
    fail "cannot find rank 1 of mpirun $job"
  else
    pids_to_clean+=("$victim")
    kill -STOP "$victim"
    t0=$(date +%s)
    wait_bounded "$job" 60
    dt=$(( $(date +%s) - t0 ))
    if [ "$status" != timeout ] && [ "$status" != 0 ] && grep -q "waited more than" "$work/hung.log"; then
      pass "hanging rank 1: the watchdog ended the job with status $status after ${dt}s: $(grep -m1 'waited more than' "$work/hung.log")"
    else
      fail "hanging rank 1: status $status after ${dt}s: $(tail -n 5 "$work/hung.log")"
    fi
  fi
else
  fail "the long run did not write its first checkpoint: $(tail -n 5 "$work/hung.log")"
fi

echo "== 5. a rank that never starts, or never reaches MPI_Init (TINYCNN_COLLECTIVE_TIMEOUT=3)"
one_rank=(-np 1 "$bin" train --data "$work/small" --epochs 1 --out "$work/never.safetensors")
t0=$(date +%s)
if timeout 60 mpirun --oversubscribe --bind-to none "${one_rank[@]}" : -np 1 "$work/no-such-program" >"$work/never.log" 2>&1; then
  fail "a rank that cannot start: mpirun exited 0"
else
  pass "a rank that cannot start: mpirun failed after $(( $(date +%s) - t0 ))s ($(grep -m1 -o 'unable to launch[^:]*' "$work/never.log"))"
fi
t0=$(date +%s)
if TINYCNN_COLLECTIVE_TIMEOUT=3 timeout 60 mpirun --oversubscribe --bind-to none "${one_rank[@]}" : -np 1 sleep 120 >"$work/late.log" 2>&1; then
  fail "a rank that never calls MPI_Init: mpirun exited 0"
elif grep -q "MPI init waited more than" "$work/late.log"; then
  pass "a rank that never calls MPI_Init: the job ended after $(( $(date +%s) - t0 ))s: $(grep -m1 'waited more than' "$work/late.log")"
else
  fail "a rank that never calls MPI_Init: no watchdog message: $(tail -n 5 "$work/late.log")"
fi

echo "== 6. NCCL (the GPU path of --device cuda ranks): errors without libnccl or a GPU, a real run with both"
if out=$(cargo test --release -q -p tinycnn-cuda --features nccl --test nccl -- --nocapture 2>&1); then
  pass "NCCL tests of tinycnn-cuda$(echo "$out" | grep -m1 -o 'skipped: .*' | sed 's/^/ (one /; s/$/)/')"
else
  fail "NCCL tests of tinycnn-cuda: $(echo "$out" | tail -n 15)"
fi

if [ $failed = 0 ]; then
  echo "mpi-test: all checks passed"
else
  echo "mpi-test: FAILED" >&2
  exit 1
fi
