#!/bin/sh
# Transfer learning vs training from scratch (issue 5), through the CLI:
#   task A "tops-bottoms-shoes": a body trained on all 10 Fashion-MNIST
#     classes, new 3-way head (tops / bottoms+dresses / shoes+bags);
#   task B "held-out shoes" (the honest test): a body trained on the 7
#     classes that are not shoes, new head for sandal / sneaker / ankle boot,
#     classes the body never saw;
# each with N labelled samples per class (N = 100, 500, 1000) chosen by a
# seed (seeds 1..S), head-only (frozen body) and fine-tuned (nothing frozen,
# body at 0.1x lr) transfer against the same architecture from scratch on the
# same samples and settings; test accuracy on every test image of the task;
# median over seeds, with training time. Usage:
#   benchmarks/run_transfer.sh [SEEDS]      (default 3)
# Environment: MM_BENCH_BUILD (build dir, default /tmp/build-bench).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${MM_BENCH_BUILD:-/tmp/build-bench}
seeds=${1:-3}
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

"$mmaint" train --epochs 3 --seed 1 --quiet --out "$work/base10.mmf" 1>&2
"$mmaint" transfer --arch 784-256-128-7:relu --map without-shoes --epochs 3 --seed 1 --quiet \
    --out "$work/base7.mmf" 1>&2

common="--optimizer adam --lr 3e-3 --epochs 15 --batch-size 32"
{
echo "task,per_class,seed,mode,transfer_acc,transfer_s,scratch_acc,scratch_s"
for task in tops-bottoms-shoes:base10 shoes:base7; do
    map=${task%%:*}; base=${task##*:}
    for n in 100 500 1000; do
        s=1
        while [ "$s" -le "$seeds" ]; do
            for mode in head finetune; do
                if [ "$mode" = head ]; then extra="--freeze body"; else extra="--freeze none --head-lr-scale 10 --lr 3e-4"; fi
                # shellcheck disable=SC2086
                "$mmaint" transfer --from "$work/$base.mmf" --map "$map" --per-class "$n" \
                    --seed "$s" $common $extra --compare-scratch --json --quiet \
                    --out "$work/t.mmf" > "$work/r.json"
                /usr/bin/python3 - "$work/r.json" "$map" "$n" "$s" "$mode" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("%s,%s,%s,%s,%.4f,%.2f,%.4f,%.2f" % (sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
      r["test_accuracy"], r["seconds"], r["scratch_accuracy"], r["scratch_seconds"]))
PY
            done
            s=$((s + 1))
        done
    done
done
} > "$work/all.csv"
cat "$work/all.csv"
echo
/usr/bin/python3 - "$work/all.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| task | per class | transfer (frozen body) | fine-tune (all layers) | from scratch | time frozen / fine-tune / scratch |")
print("|---|---|---|---|---|---|")
keys = []
for r in rows:
    k = (r["task"], int(r["per_class"]))
    if k not in keys: keys.append(k)
for task, n in keys:
    sel = lambda mode: [r for r in rows if r["task"] == task and int(r["per_class"]) == n and r["mode"] == mode]
    med = lambda rs, f: statistics.median(float(r[f]) for r in rs)
    h, f = sel("head"), sel("finetune")
    print("| %s | %d | %.4f | %.4f | %.4f | %.2f / %.2f / %.2f s |" % (
        task, n, med(h, "transfer_acc"), med(f, "transfer_acc"), med(h, "scratch_acc"),
        med(h, "transfer_s"), med(f, "transfer_s"), med(h, "scratch_s")))
PY
