#!/bin/sh
# Pruned and quantized models (issue 12): the demo's 90%-pruned model
# quantized to sparse_int8 (every int8 scheme) against the pruned float
# model and the dense int8 model, on accuracy, file size and inference
# speed at batch 1 and 256, all contenders in one process, interleaved
# (bench_quant race). Usage:
#   benchmarks/run_compress.sh [DEMO_OUT]
# DEMO_OUT: an existing `mmaint demo --out DIR` directory (default: run the
# demo into $MM_BENCH_BUILD/demo-out first, ~2 minutes).
# Environment: MM_BENCH_BUILD (build dir, default /tmp/build-bench), REPS
# (default 11).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${MM_BENCH_BUILD:-/tmp/build-bench}
reps=${REPS:-11}
{
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" --buildtype=release -Dbenchmarks=true
    else
        meson configure "$build" -Dbuildtype=release -Dbenchmarks=true
    fi
    ninja -C "$build" benchmarks/bench_quant tools/mmaint
} 1>&2
mmaint=$build/tools/mmaint
demo=${1:-}
if [ -z "$demo" ]; then
    demo=$build/demo-out
    echo "running the demo into $demo" >&2
    "$mmaint" demo --out "$demo" >"$build/demo.log"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The demo's pruned-int8 model is int8 static (accuracy-aware); the other
# schemes from the same pruned model, for the comparison.
for scheme in int8_dynamic int8_weight_only; do
    "$mmaint" quantize "$demo/model-pruned.mmf" --scheme "$scheme" --out "$work/pruned-$scheme.mmf" \
        --quiet >/dev/null
done
models="$demo/model-pruned-int8.mmf $work/pruned-int8_dynamic.mmf $work/pruned-int8_weight_only.mmf"
models="$models $demo/model-pruned.mmf $demo/model-int8.mmf"
last=$(ls "$demo"/model-v*.mmf | sort -V | tail -1)
args=""
for m in $models; do args="$args --model $m"; done
echo "fp32 model: $last ($(stat -c %s "$last") bytes)"
for batch in 1 256; do
    echo "== batch $batch, $reps repetitions"
    "$build/benchmarks/bench_quant" race $args --batch "$batch" --reps "$reps"
done
