#!/usr/bin/env bash
# Fuzz every loader (tests/fuzz/README.md): build the libFuzzer harnesses
# with clang, AddressSanitizer and UBSan in their own build directory, then
# run each for SECONDS (default 60), one after the other, starting from its
# committed corpus (tests/fuzz/corpus/<name>, never modified here; new
# inputs go to BUILD_DIR/fuzz-corpus/<name>). Prints executions and
# coverage per harness; exits 1 if any harness found a crash, leak, hang
# or oversized allocation (reproducers in BUILD_DIR/fuzz-artifacts/), 77
# if clang or its libFuzzer runtime is missing.
#
# Usage: scripts/fuzz.sh [SECONDS] [BUILD_DIR] [HARNESS...]
#
# Bounds: a hang is an input taking more than 1 s (-timeout=1). Inputs are
# at most 16-128 KiB (max_len below); the loaders allocate in proportion to
# the data actually present, and the largest legitimate allocation is the
# decompressed content of a 16 KiB gzip input (deflate expands at most
# ~1032:1: ~17 MB of bytes, ~68 MB as floats). One allocation above
# 256 MB (-malloc_limit_mb) therefore means a loader trusted a size field.
# -rss_limit_mb stays at libFuzzer's 2048: the process also holds the
# in-memory corpus and ASan's quarantine (~500 MB after 12 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
dir=${2:-build-fuzz}
shift $(( $# < 2 ? $# : 2 ))
wanted=("$@")

cc=${CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "SKIP fuzzing: $cc not found (Debian: apt-get install clang libclang-rt-14-dev)"
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >"$probe/log" 2>&1; then
  echo "SKIP fuzzing: $cc cannot link libFuzzer (Debian: apt-get install libclang-rt-14-dev):"
  sed 's/^/  /' "$probe/log" | head -5
  exit 77
fi

if [ ! -f "$dir/build.ninja" ]; then
  echo "=== $dir: meson setup (CC=$cc, -Dfuzz=true, address,undefined)"
  CC=$cc meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dtests=false -Dcli=false -Dbenchmarks=false -Dlua=disabled -Dpython=disabled \
    >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }
fi
ninja -C "$dir" >"$dir/fuzz-build.log" 2>&1 || { tail -40 "$dir/fuzz-build.log"; exit 1; }

max_len() {
  case $1 in
    safetensors) echo 131072 ;;  # the PyTorch Fashion-MNIST MLP of tests/data (101 KiB)
    mmfile|onnx) echo 65536 ;;
    *) echo 16384 ;;
  esac
}

# Dictionaries: JSON keys the loaders look up in a hash table, which the
# fuzzer's comparison tracing cannot see.
dict_args() {
  case $1 in
    mmfile|safetensors) echo "-dict=tests/fuzz/model.dict" ;;
  esac
}

harnesses=()
for exe in "$dir"/tests/fuzz/fuzz_*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  h=${exe##*/fuzz_}
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $h "* ]]; then continue; fi
  harnesses+=("$h")
done
[ ${#harnesses[@]} -gt 0 ] || { echo "no harnesses built in $dir/tests/fuzz"; exit 1; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
summary=()
for h in "${harnesses[@]}"; do
  work="$dir/fuzz-corpus/$h"
  art="$dir/fuzz-artifacts/$h"
  log="$dir/fuzz-$h.log"
  mkdir -p "$work" "$art"
  echo "=== fuzz_$h: ${secs}s (log $log)"
  rc=0
  "$dir/tests/fuzz/fuzz_$h" -max_total_time="$secs" -timeout=1 -rss_limit_mb=2048 \
    -malloc_limit_mb=256 -max_len="$(max_len "$h")" $(dict_args "$h") -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "tests/fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  line=$(printf '%-12s execs %-10s cov %-6s ft %-6s corpus %s' "$h" "${execs:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}")
  if [ $rc -ne 0 ]; then
    failed+=("$h")
    line+="  FAILED (exit $rc)"
    grep -E 'ERROR: |SUMMARY: |Test unit written|returned|failed' "$log" | head -10 || true
  fi
  summary+=("$line")
done
echo "=== fuzzing summary (${secs}s per harness)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]} (reproducers in $dir/fuzz-artifacts/)"
  exit 1
fi
