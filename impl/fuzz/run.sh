#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, on the stable toolchain,
# and fails if any of them finds a crash.
#
#   impl/fuzz/run.sh SECONDS [TARGET...]
#
# Each target starts from its committed seeds (impl/fuzz/corpus/<target>/, read only)
# and writes what it discovers to a scratch corpus that is deleted afterwards, so a run
# never changes the repository. Reproducers of crashes are left in
# impl/fuzz/artifacts/<target>/ (ignored by git); replay one with
#   cargo fuzz run -s none --fuzz-dir impl/fuzz <target> <file>
#
# Environment: FUZZ_SANITIZER (default none: stable has no sanitizers; `address` needs
# `cargo +nightly`), CARGO (default cargo), CARGO_FUZZ_VERSION (installed if cargo-fuzz
# is missing; default 0.13.2).
set -euo pipefail

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
}
[[ $# -ge 1 && $1 =~ ^[1-9][0-9]*$ ]] || usage
seconds=$1
shift

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$fuzz_dir/../.." && pwd)
cd "$repo_root"
fuzz_dir_rel=impl/fuzz
cargo=${CARGO:-cargo}
sanitizer=${FUZZ_SANITIZER:-none}

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(ls "$fuzz_dir/fuzz_targets" | sed -n 's/\.rs$//p')
fi

if ! $cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz ${CARGO_FUZZ_VERSION:-0.13.2}"
    $cargo install cargo-fuzz --locked --version "${CARGO_FUZZ_VERSION:-0.13.2}"
fi

# Scratch corpora, logs and the targets' temporary files (every open of a log fsyncs:
# use memory where there is some) all live here and go away at exit.
scratch_base=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && scratch_base=/dev/shm
work=$(mktemp -d "$scratch_base/ballot-fuzz-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tmp"

echo "== building ${targets[*]} (sanitizer: $sanitizer)"
build_started=$SECONDS
for target in "${targets[@]}"; do
    $cargo fuzz build -s "$sanitizer" --fuzz-dir "$fuzz_dir_rel" "$target"
done
echo "== built in $((SECONDS - build_started)) s"

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    log="$work/$target.log"
    artifacts="$fuzz_dir/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    before=$(ls "$artifacts" | wc -l)
    extra=()
    [[ -f "$fuzz_dir/$target.dict" ]] && extra+=("-dict=$fuzz_dir_rel/$target.dict")
    echo "== $target: ${seconds} s"
    status=0
    TMPDIR="$work/tmp" $cargo fuzz run -s "$sanitizer" --fuzz-dir "$fuzz_dir_rel" "$target" \
        "$corpus" "$fuzz_dir_rel/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048 \
        "${extra[@]}" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    found=$(($(ls "$artifacts" | wc -l) - before))
    if [[ $status -ne 0 || $found -gt 0 ]]; then
        failed+=("$target")
        summary+=("$(printf '%-11s %12s runs  CRASH (exit %s)' "$target" "${runs:-?}" "$status")")
        echo "-- $target FAILED (exit $status); the end of its log:"
        grep -v '^\s*\(at \|[0-9]*: \)' "$log" | grep -E -A4 \
            'panicked at|memory allocation|ERROR: libFuzzer|Test unit written|SUMMARY' | head -n 40
        echo "-- reproducers in $artifacts:"
        ls -t "$artifacts" | head -n 5 | sed "s|^|   $artifacts/|"
    else
        summary+=("$(printf '%-11s %12s runs  no crash' "$target" "${runs:-?}")")
    fi
done

echo "== summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "== crashes in: ${failed[*]}"
    exit 1
fi
