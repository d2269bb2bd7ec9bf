#!/bin/sh
# Guarded maintenance on the demo stream (issue 7), through the CLI:
# a 784-256-128-10 model trained (Adam, 3 epochs) on the first 50000
# Fashion-MNIST training images meets the drift scenario built from the 10000
# held-back images (`mmaint maintain --scenario drift`: 30000 samples, normal
# until 6000, a shifted class mix until 12000, brightened images from 12000,
# labels scrambled in [18000, 21000)) three ways:
#   (a) never updated, (b) naive online SGD (lr 1e-3, every sample learned at
#   once), (c) guarded maintenance (SGD lr 1e-3, defaults of mmaint maintain).
# Prints accuracy over time (progressive accuracy of the served model per
# 2000 samples) and the two targets:
#   1. (c) recovers to within 2 points of its pre-drift accuracy (the 2000
#      samples before the drift) within 5000 samples of the drift (the 1000
#      samples ending at +5000);
#   2. the poisoned segment costs (c) <= 1 point (2000 samples after vs 2000
#      before it) while (b) loses much more.
# Usage: benchmarks/run_maintain.sh [SCENARIO_SEED]   (default 1)
# Environment: MM_BENCH_BUILD (build dir, default /tmp/build-bench).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${MM_BENCH_BUILD:-/tmp/build-bench}
seed=${1:-1}
{
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" --buildtype=release
    fi
    ninja -C "$build" tools/mmaint
} 1>&2
mmaint=$build/tools/mmaint
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BLIS_NUM_THREADS=1

"$mmaint" train --arch 784-256-128-10:relu --optimizer adam --lr 1e-3 --epochs 3 --limit 50000 \
    --seed 1 --quiet --out "$work/base.mmf" 1>&2
for mode in never naive guarded; do
    "$mmaint" maintain "$work/base.mmf" --offset 50000 --scenario drift --scenario-seed "$seed" \
        --mode "$mode" --lr 1e-3 --plot-every 500 --json --quiet > "$work/$mode.json"
done
"$mmaint" maintain "$work/base.mmf" --offset 50000 --scenario drift --scenario-seed "$seed" \
    --quiet --plot "$work/maintain.svg" > /dev/null 2>&1 || true

/usr/bin/python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
runs = {m: json.load(open(os.path.join(w, m + ".json"))) for m in ("never", "naive", "guarded")}
plan = runs["guarded"]["scenario"]

def acc(r, a, b):
    pts, prev = [], 0
    for end, v in r["series"]:
        if prev >= a and end <= b and v is not None:
            pts.append((end - prev, v))
        prev = end
    n = sum(p for p, _ in pts)
    return sum(p * v for p, v in pts) / n if n else float("nan")

L = plan["length"]
print("accuracy over the stream (progressive, served model), per 2000 samples:")
print("| samples | segment | (a) never | (b) naive SGD | (c) guarded |")
print("|---|---|---|---|---|")
for a in range(0, L, 2000):
    b = a + 2000
    seg = ("poisoned" if plan["poison_at"] <= a < plan["poison_end"] else
           "brightened" if a >= plan["drift_at"] else
           "class mix" if a >= plan["shift_at"] else "normal")
    print("| %d-%d | %s | %.3f | %.3f | %.3f |" % (a, b, seg, acc(runs["never"], a, b),
                                                 acc(runs["naive"], a, b), acc(runs["guarded"], a, b)))
print()
m = {k: r["scenario"]["metrics"] for k, r in runs.items()}
g, n = m["guarded"], m["naive"]
print("| measure | (a) never | (b) naive SGD | (c) guarded |")
print("|---|---|---|---|")
for key, label in [("accuracy_before_drift", "accuracy, 2000 samples before the drift"),
                   ("accuracy_5k_after_drift", "accuracy, samples 4000-5000 after the drift"),
                   ("recovered_within_2_points_after", "back within 2 points after (samples)"),
                   ("poison_cost_points", "points lost across the poisoned segment")]:
    f = lambda v: "never" if v is None else ("%d" % v if isinstance(v, int) else "%.3f" % v)
    print("| %s | %s | %s | %s |" % (label, f(m["never"][key]), f(n[key]), f(g[key])))
print("| rollbacks / drifts / challengers promoted | - | - | %d / %d / %d |"
      % (runs["guarded"]["rollbacks"], runs["guarded"]["drifts"], runs["guarded"]["promotions"]))
print("| samples/s | %.0f | %.0f | %.0f |" % tuple(runs[k]["samples_per_second"] for k in ("never", "naive", "guarded")))
print()
t1 = g["recovered_within_2_points_after"] is not None and g["recovered_within_2_points_after"] <= 5000
t2 = g["poison_cost_points"] <= 1.0 and n["poison_cost_points"] > g["poison_cost_points"] + 2
print("target 1 (recovers within 2 points within 5000 samples of the drift): %s" % ("met" if t1 else "NOT met"))
print("target 2 (poison costs (c) <= 1 point, (b) much more): %s (%.2f vs %.2f points)"
      % ("met" if t2 else "NOT met", g["poison_cost_points"], n["poison_cost_points"]))
PY
