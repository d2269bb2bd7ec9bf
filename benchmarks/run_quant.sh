#!/bin/sh
# Quantization benchmarks (issue 4): build bench_quant (release) and run
# compare_quant.py: accuracy of every scheme and observer (with PyTorch's
# quantize_dynamic on the same weights), inference speed against our fp32
# and PyTorch dynamic int8, and file sizes. Arguments go to
# compare_quant.py, e.g.
#   benchmarks/run_quant.sh --reps 3 --no-torch
# Environment: MM_BENCH_BUILD (build dir, default /tmp/build-bench),
#              PYTHON (default /usr/bin/python3: Debian's, with numpy + torch).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${MM_BENCH_BUILD:-/tmp/build-bench}
python=${PYTHON:-/usr/bin/python3}

# Build output goes to stderr: stdout is the report.
{
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" --buildtype=release -Dbenchmarks=true
    else
        meson configure "$build" -Dbuildtype=release -Dbenchmarks=true
    fi
    ninja -C "$build" benchmarks/bench_quant
} 1>&2

"$python" -c 'import torch, numpy' 2>/dev/null || {
    echo "run_quant.sh: $python lacks torch/numpy (apt-get install python3-torch python3-numpy)" >&2
    exit 1
}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1
exec "$python" "$here/compare_quant.py" --build "$build" --python "$python" "$@"
