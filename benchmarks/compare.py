#!/usr/bin/python3
"""Run the mmaint, PyTorch and FANN benchmarks interleaved and compare them.

Every measurement is its own process (so no contender inherits another's
caches or allocator state). Each repetition runs every benchmark once per
contender, rotating the order from one repetition to the next, so machine
noise (this is a shared 2-core box) hits all contenders alike. Reported:
the median samples/s over the repetitions and, for the ratios, the median of
the per-repetition ratios (mmaint / other measured back to back), with their
min..max.

    compare.py [--build DIR] [--reps N] [--seconds S] [--no-gemm]
               [--no-accuracy] [--accuracy-reps N] [--raw FILE]

Needs the C programs built (benchmarks/run.sh does that) and is meant to be
run with Debian's /usr/bin/python3 (numpy + python3-torch 1.13).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# benchmark -> contenders, and the targets (mmaint / other >= x)
BENCHES = [
    ("train_step", ["mmaint", "torch"], {"torch": 1.5}),
    ("train_epoch", ["mmaint", "torch"], {"torch": 1.5}),
    ("online", ["mmaint", "torch", "fann"], {"torch": 10.0, "fann": 5.0}),
    ("infer1", ["mmaint", "torch", "fann"], {"torch": 3.0}),
    ("infer256", ["mmaint", "torch"], {"torch": 1.0}),
]
DESCR = {
    "train_step": "mini-batch training, Adam lr 1e-3, batch 64, prepared batches "
                  "(mmaint: mm_optimizer_step)",
    "train_epoch": "mini-batch training, one shuffled epoch, Adam batch 64 "
                   "(mmaint: mm_optimizer_fit; torch: randperm loop)",
    "online": "online learning, SGD lr 0.01, 1 sample/step",
    "infer1": "inference, batch 1",
    "infer256": "inference, batch 256",
}
NAMES = {"mmaint": "mmaint", "torch": "PyTorch", "fann": "FANN"}

# The accuracy recipe (see README.md / RESULTS.md for how it was chosen).
RECIPE = ["--optim", "adamw", "--lr", "2e-3", "--wd", "0.05", "--batch", "128",
          "--epochs", "12", "--schedule", "cosine", "--warmup-epochs", "1",
          "--min-lr", "0", "--target", "0.89"]
SEEDS = [42, 7, 1, 2, 3]  # accuracy repetition i uses SEEDS[i] (init + shuffling)


def child_env():
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "BLIS_NUM_THREADS", "BLIS_JC_NT", "BLIS_IC_NT", "BLIS_JR_NT", "BLIS_IR_NT"):
        env[k] = "1"
    env.pop("MM_BACKEND", None)  # the library default (BLIS)
    return env


def command(impl, bench, args, extra=()):
    b = args.build
    if impl == "mmaint":
        return [os.path.join(b, "benchmarks", "bench_mmaint"), bench, *extra]
    if impl == "fann":
        return [os.path.join(b, "benchmarks", "bench_fann"), bench, *extra]
    if impl == "torch":
        return [args.python, os.path.join(HERE, "bench_torch.py"), bench, *extra]
    if impl == "gemm":
        return [os.path.join(b, "benchmarks", "bench_gemm"), *extra]
    raise ValueError(impl)


def run(cmd, raw, label, impl=None):
    t0 = time.time()
    p = subprocess.run(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        sys.exit("compare.py: %s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode,
                                                           p.stderr))
    out = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if impl:
            d.setdefault("impl", impl)
        out.append(d)
        if raw:
            raw.write(json.dumps(d) + "\n")
    print("  %-28s %5.1fs" % (label, time.time() - t0), file=sys.stderr, flush=True)
    return out


def source_rev():
    src = os.path.dirname(HERE)
    try:
        rev = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "--", "lib",
                                "include"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True).stdout.strip()
        return "git %s%s" % (rev or "?", " + uncommitted lib/include changes" if dirty else "")
    except OSError:
        return "git ?"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPUs" % (cpu, os.cpu_count() or 0)


def fmt_rate(x):
    return "%.0f" % x if x is not None else "n/a"


def fmt_kb(kb):
    return "%.0f MB" % (kb / 1024.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("MM_BENCH_BUILD", "/tmp/build-bench"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0,
                    help="timed seconds per measurement (train_epoch is one epoch)")
    ap.add_argument("--only", default="", help="comma-separated subset of benchmarks")
    ap.add_argument("--no-gemm", action="store_true")
    ap.add_argument("--gemm-reps", type=int, default=3)
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--accuracy-reps", type=int, default=2)
    ap.add_argument("--raw", default="", help="also write every JSON result line here")
    args = ap.parse_args()
    raw = open(args.raw, "w") if args.raw else None
    only = set(filter(None, args.only.split(",")))
    benches = [b for b in BENCHES if not only or b[0] in only]

    # ---- throughput, interleaved -------------------------------------------
    res = {}  # (bench, impl) -> [samples/s per rep]
    rss = {}  # (bench, impl) -> [json]
    for rep in range(args.reps):
        print("repetition %d/%d" % (rep + 1, args.reps), file=sys.stderr, flush=True)
        for bench, impls, _ in benches:
            k = rep % len(impls)
            order = impls[k:] + impls[:k]
            for impl in order:
                extra = [] if bench == "train_epoch" else ["--seconds", str(args.seconds)]
                for d in run(command(impl, bench, args, extra), raw, "%s %s" % (impl, bench),
                             impl):
                    if d.get("bench") == bench:
                        res.setdefault((bench, impl), []).append(d["samples_per_s"])
                        if "rss_kb" in d:
                            rss.setdefault((bench, impl), []).append(d)

    lines = []
    P = lines.append
    P("Run: %s; source %s; %s; %d repetitions x %g s per measurement; 1 thread." % (
        time.strftime("%Y-%m-%d %H:%M"), source_rev(), machine(), args.reps, args.seconds))
    P("")
    P("## Throughput (samples/s, 1 thread, median of %d interleaved repetitions)" % args.reps)
    P("")
    P("| benchmark | mmaint | PyTorch | FANN | mmaint / PyTorch (target) | "
      "mmaint / FANN (target) | targets |")
    P("|---|---:|---:|---:|---|---|---|")
    for bench, impls, targets in benches:
        med = {i: statistics.median(res[(bench, i)]) for i in impls if (bench, i) in res}
        cells, verdicts = {}, []
        for other in ("torch", "fann"):
            if other not in impls:
                cells[other] = "—"
                continue
            ratios = [a / b for a, b in zip(res[(bench, "mmaint")], res[(bench, other)])]
            r = statistics.median(ratios)
            t = targets.get(other)
            s = "**%.2fx** (%.2f..%.2f)" % (r, min(ratios), max(ratios))
            if t is not None:
                ok = r >= t
                s += " (>= %gx: %s)" % (t, "met" if ok else "NOT met")
                verdicts.append("%s %s" % (NAMES[other], "met" if ok else "missed"))
            cells[other] = s
        P("| %s | %s | %s | %s | %s | %s | %s |" % (
            DESCR[bench], fmt_rate(med.get("mmaint")), fmt_rate(med.get("torch")),
            fmt_rate(med.get("fann")), cells["torch"], cells["fann"],
            ", ".join(verdicts) or "—"))
    P("")
    P("Ratios: median of the per-repetition ratios (min..max); the contenders of one "
      "repetition ran back to back.")

    if rss:
        P("")
        P("## Peak memory of a training process (getrusage ru_maxrss; median)")
        P("")
        P("| run | impl | peak RSS | RSS after loading the data | RSS at the end of training |")
        P("|---|---|---:|---:|---:|")
        for (bench, impl), ds in sorted(rss.items()):
            P("| %s | %s | %s | %s | %s |" % (
                bench, NAMES[impl],
                fmt_kb(statistics.median(d["rss_kb"] for d in ds)),
                fmt_kb(statistics.median(d["rss_after_load_kb"] for d in ds)),
                fmt_kb(statistics.median(d["rss_end_kb"] for d in ds))))

    # ---- per-layer GEMMs ---------------------------------------------------
    if not args.no_gemm:
        print("per-layer GEMMs", file=sys.stderr, flush=True)
        g, m = {}, {}
        for rep in range(args.gemm_reps):
            for d in run(command("gemm", None, args), raw, "bench_gemm %d" % (rep + 1)):
                if d.get("bench") == "gemm":
                    g.setdefault((d["batch"], d["layer"], d["op"]), []).append(d)
                elif d.get("bench") == "model":
                    m.setdefault((d["batch"], d["optim"]), []).append(d)
        P("")
        P("## Per-layer GEMMs: mmaint's kernel table vs bli_sgemm called directly "
          "(GFLOP/s, median of %d runs)" % args.gemm_reps)
        P("")
        P("fwd: Y = X W^T; dW = dY^T X; dX = dY W (row-major, the calls of "
          "lib/model/dense.c). Batch 1 uses gemv/ger on both sides.")
        P("")
        P("| batch | layer | op | m x n x k | mmaint GFLOP/s | bli_sgemm GFLOP/s | mmaint/BLIS |")
        P("|---:|---|---|---|---:|---:|---:|")
        layers = ["784-256", "256-128", "128-10"]
        for key in sorted(g, key=lambda k: ({64: 0, 256: 1, 1: 2}.get(k[0], 3),
                                            layers.index(k[1]) if k[1] in layers else 9,
                                            ["fwd", "dW", "dX"].index(k[2]))):
            ds = g[key]
            a = statistics.median(d["mm_gflops"] for d in ds)
            b = statistics.median(d["blis_gflops"] for d in ds)
            d0 = ds[0]
            P("| %d | %s | %s | %dx%dx%d | %.1f | %.1f | %.2f |" % (
                key[0], key[1], key[2], d0["m"], d0["n"], d0["k"], a, b, a / b))
        if m:
            P("")
            P("Whole model through the public API (median, the three timed in interleaved "
              "blocks): forward, mm_model_backward (forward + backward with all gradients), "
              "mm_optimizer_step (backward + update; plain SGD takes the fused path that "
              "updates W from the deltas without materialising dW, so it can be cheaper "
              "than mm_model_backward).")
            P("")
            P("| batch | optimizer | forward us | backward us | step us | forward GFLOP/s | "
              "backward GFLOP/s | step / backward |")
            P("|---:|---|---:|---:|---:|---:|---:|---:|")
            for (batch, optim), ds in sorted(m.items(), key=lambda kv: {64: 0, 256: 1}.get(
                    kv[0][0], 2)):
                f = statistics.median(d["forward_us"] for d in ds)
                bw = statistics.median(d["backward_us"] for d in ds)
                st = statistics.median(d["step_us"] for d in ds)
                P("| %d | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |" % (
                    batch, optim, f, bw, st,
                    statistics.median(d["forward_gflops"] for d in ds),
                    statistics.median(d["backward_gflops"] for d in ds),
                    st / bw))

    # ---- accuracy recipe: seconds to 0.89 ----------------------------------
    if not args.no_accuracy:
        print("accuracy recipe", file=sys.stderr, flush=True)
        acc = {}
        for rep in range(args.accuracy_reps):
            order = ["mmaint", "torch"] if rep % 2 == 0 else ["torch", "mmaint"]
            for impl in order:
                seed = ["--seed", str(SEEDS[rep % len(SEEDS)])]
                for d in run(command(impl, "accuracy", args, RECIPE + seed), raw,
                             "%s accuracy" % impl, impl):
                    if d.get("bench") == "accuracy":
                        acc.setdefault(impl, []).append(d)
        P("")
        P("## Accuracy recipe: time to 0.89 Fashion-MNIST test accuracy")
        P("")
        P("Recipe: `%s` (784-256-128-10 relu, pixels in [0, 1], test accuracy evaluated "
          "after every epoch; time = training + evaluations until the first epoch >= 0.89)."
          % " ".join(RECIPE))
        P("")
        P("| impl | seed | epochs to 0.89 | seconds to 0.89 | final acc | best acc | "
          "total s | accuracy per epoch |")
        P("|---|---:|---:|---:|---:|---:|---:|---|")
        for impl in ("mmaint", "torch"):
            for i, d in enumerate(acc.get(impl, [])):
                P("| %s | %d | %s | %s | %.4f | %.4f | %.1f | %s |" % (
                    NAMES[impl], SEEDS[i % len(SEEDS)], d["epochs_to_target"] or "not reached",
                    "%.1f" % d["seconds_to_target"] if d["seconds_to_target"] else "—",
                    d["final_accuracy"], d["best_accuracy"], d["seconds_total"],
                    " ".join("%.4f" % a for a in d["accuracies"])))
        st = {i: [d["seconds_to_target"] for d in acc.get(i, []) if d["seconds_to_target"]]
              for i in ("mmaint", "torch")}
        if st["mmaint"] and st["torch"]:
            P("")
            P("Seconds-to-0.89 ratio PyTorch / mmaint (medians): %.2fx" % (
                statistics.median(st["torch"]) / statistics.median(st["mmaint"])))

    print("\n".join(lines))
    if raw:
        raw.close()


if __name__ == "__main__":
    main()
