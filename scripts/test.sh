#!/usr/bin/env bash
# Set up and run every test: a normal build (BLIS; its `meson test` also
# checks the ABI against the last release, tests/abi), an AddressSanitizer +
# UBSan build, a build without BLIS (reference kernels only), a
# ThreadSanitizer build of the threaded suites, the
# cross-platform check on s390x and i386 under qemu (scripts/cross-test.sh;
# it skips with a message only when the cross tools cannot be installed),
# and 30 s of libFuzzer per loader (scripts/fuzz.sh; skipped without clang).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
run() {  # run BUILD_DIR [meson options...]
  local dir=$1; shift
  echo "=== $dir: meson setup $*"
  rm -rf "$dir"
  meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }
  ninja -C "$dir"
  meson test -C "$dir" --print-errorlogs --num-processes 2
}
run build-test
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run build-asan -Db_sanitize=address,undefined -Db_lundef=false
run build-noblis -Dblis=disabled
# ThreadSanitizer: the suites with threads (the hot-swap server, and the
# drift detectors it is used with); only their targets are built.
echo "=== build-tsan: meson setup -Db_sanitize=thread (test_server, test_drift)"
rm -rf build-tsan
meson setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dcli=false -Dbenchmarks=false \
  -Dlua=disabled >build-tsan.setup.log 2>&1 || { cat build-tsan.setup.log; exit 1; }
ninja -C build-tsan tests/test_server tests/test_drift
# test_drift has no threads: its API case only (the statistics take minutes
# under TSan and are covered by the other builds).
TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/test_server
TSAN_OPTIONS=halt_on_error=1 CK_RUN_CASE=api build-tsan/tests/test_drift
scripts/cross-test.sh build-cross
# libFuzzer (tests/fuzz/README.md): each loader's harness fuzzed for 30 s
# from its committed corpus, in a clang build of its own (every build above
# already replayed the corpora); skipped with a message without clang.
rm -rf build-fuzz-test
rc=0
scripts/fuzz.sh 30 build-fuzz-test || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 77 ] || exit $rc
echo "all test configurations passed"
