#!/bin/sh
# Migration benchmark (issue 5): load time and peak memory of a ~10M-parameter
# MLP saved as .mmf, plain safetensors and ONNX, next to memcpy and read() of
# the same bytes in the same run (bench_migrate.c says what is measured).
# Arguments go to bench_migrate, e.g.
#   benchmarks/run_migrate.sh --reps 15
#   benchmarks/run_migrate.sh --spec 784-1024-10:relu --json
# Environment: MM_BENCH_BUILD (build dir, default /tmp/build-bench),
#              MM_BENCH_DIR (where the model files go, default /tmp).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${MM_BENCH_BUILD:-/tmp/build-bench}

# Build output goes to stderr: stdout is the report.
{
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" --buildtype=release -Dbenchmarks=true
    else
        meson configure "$build" -Dbuildtype=release -Dbenchmarks=true
    fi
    ninja -C "$build" benchmarks/bench_migrate
} 1>&2

exec "$build/benchmarks/bench_migrate" --dir "${MM_BENCH_DIR:-/tmp}" "$@"
