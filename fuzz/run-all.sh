#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20) and exits non-zero if any target
# crashes (a panic, a fast/reference mismatch, an out-of-bounds access, a timeout, an OOM).
#
#   fuzz/run-all.sh 60            # from anywhere; needs cargo-fuzz and a nightly toolchain
#   FUZZ_TOOLCHAIN=nightly-2026-01-01 fuzz/run-all.sh 20
#
# The committed seeds in corpus/<target>/ are read but never written: new inputs go to
# corpus-work/<target>/ (git-ignored). Crash reproducers land in artifacts/<target>/.
# Targets are whatever `cargo fuzz list` reports, so a new [[bin]] in Cargo.toml is picked up.
set -uo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 SECONDS   (a positive whole number of seconds per target)" >&2
    exit 2
fi
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
caller="$PWD"
cd "$(dirname "$0")"

if ! cargo +"$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "error: needs cargo-fuzz on the $toolchain toolchain (cargo install cargo-fuzz)" >&2
    exit 2
fi

# One build for all targets; debug assertions make integer overflow a crash, not a wrap.
if ! cargo +"$toolchain" fuzz build --debug-assertions; then
    echo "error: building the fuzz targets failed" >&2
    exit 1
fi

# Run the built binaries directly: `cargo fuzz run` would rebuild with other flags first.
triple="$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')"
target_dir="${CARGO_TARGET_DIR:-target}"
if [ -n "${CARGO_TARGET_DIR:-}" ] && [[ "$target_dir" != /* ]]; then
    target_dir="$caller/$target_dir"
fi
bin_dir="$target_dir/$triple/release"

mapfile -t targets < <(cargo +"$toolchain" fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "error: cargo fuzz list found no targets" >&2
    exit 1
fi

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus-work/$t" "corpus/$t" "artifacts/$t"
    echo "=== $t (${seconds}s)"
    if [ ! -x "$bin_dir/$t" ]; then
        echo "!!! $t: no binary at $bin_dir/$t" >&2
        failed+=("$t")
        continue
    fi
    # -timeout: one input may take at most 10 s; -rss_limit_mb: kernels never allocate,
    # so anything near this is a bug in a target.
    if ! "$bin_dir/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "corpus-work/$t" "corpus/$t"; then
        echo "!!! $t FAILED; reproducer(s) in fuzz/artifacts/$t/:" >&2
        ls -1 "artifacts/$t" >&2 2>/dev/null || true
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${seconds}s each without a crash"
