#!/bin/sh
# Pruning benchmarks (issue 3): build bench_prune (release) and run
# compare_prune.py: accuracy vs sparsity (with the PyTorch reference point),
# inference speed and file size of pruned vs dense models. Arguments go to
# compare_prune.py, e.g.
#   benchmarks/run_prune.sh --reps 3 --no-torch
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
    ninja -C "$build" benchmarks/bench_prune
} 1>&2

"$python" -c 'import torch, numpy' 2>/dev/null || {
    echo "run_prune.sh: $python lacks torch/numpy (apt-get install python3-torch python3-numpy)" >&2
    exit 1
}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1
exec "$python" "$here/compare_prune.py" --build "$build" --python "$python" "$@"
