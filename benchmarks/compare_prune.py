#!/usr/bin/python3
"""Pruning benchmarks of issue 3: accuracy vs sparsity, speed and size.

    compare_prune.py [--build DIR] [--python PY] [--reps N] [--seconds S]
                     [--workdir DIR] [--raw FILE] [--no-torch]

1. Train the dense 784-256-128-10 relu model once (bench_prune train: Adam lr
   1e-3, batch 64, 3 epochs, seed 42; the foundation issue's recipe) and
   reuse it for every pruning run.
2. Accuracy: unstructured global magnitude at 50/80/90/95 % x (one shot
   without fine-tuning, one shot + 2 epochs of fine-tuning, gradual
   polynomial pruning during 2 epochs); structured neurons (L1) 25/50/75 %,
   one shot + 2 epochs; a control (the dense model fine-tuned for the same 2
   epochs without pruning); and the PyTorch reference (global L1 at the same
   sparsities on a model trained the same way, no fine-tuning).
3. Speed, 1 thread: inference at batch 1 and 256 of the dense model and of
   the pruned models, each measurement its own process (bench_prune infer),
   `--reps` repetitions with the order of the models rotating; medians and
   the median of the per-repetition ratios pruned / dense.
4. Size: model file bytes, pruned vs dense.

Prints a markdown report on stdout (progress on stderr), with every target
marked met / not met.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

UNSTRUCTURED = [0.5, 0.8, 0.9, 0.95]
STRUCTURED = [0.25, 0.5, 0.75]
MODES = ["oneshot", "oneshot_ft", "gradual"]
MODE_NAMES = {"oneshot": "one shot, no fine-tuning", "oneshot_ft": "one shot + 2 epochs",
              "gradual": "gradual, 2 epochs"}


def child_env():
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "BLIS_NUM_THREADS", "BLIS_JC_NT", "BLIS_IC_NT", "BLIS_JR_NT", "BLIS_IR_NT"):
        env[k] = "1"
    env.pop("MM_BACKEND", None)
    return env


def run(cmd, raw, label):
    t0 = time.time()
    p = subprocess.run(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        sys.exit("compare_prune.py: %s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode,
                                                                 p.stderr))
    out = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line)
            out.append(d)
            if raw:
                raw.write(json.dumps(d) + "\n")
    print("  %-44s %5.1fs" % (label, time.time() - t0), file=sys.stderr, flush=True)
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


def verdict(ok):
    return "**met**" if ok else "**not met**"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("MM_BENCH_BUILD", "/tmp/build-bench"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="timed seconds per inference measurement")
    ap.add_argument("--workdir", default="/tmp/mmaint-prune-bench")
    ap.add_argument("--raw", default="", help="also write every JSON result line here")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    raw = open(args.raw, "w") if args.raw else None
    os.makedirs(args.workdir, exist_ok=True)
    bp = os.path.join(args.build, "benchmarks", "bench_prune")
    W = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    t_start = time.time()

    # ---- 1. the dense model, once --------------------------------------------
    print("dense model", file=sys.stderr, flush=True)
    dense = run([bp, "train", "--out", W("dense.mmf"), "--seed", "42"], raw, "train dense")[0]

    # ---- 2. accuracy ------------------------------------------------------------
    print("pruning runs", file=sys.stderr, flush=True)
    acc = {}

    def prune(key, crit, s, mode, fmt="auto"):
        name = "%s-%g-%s-%s.mmf" % (crit, s, mode, fmt)
        cmd = [bp, "prune", "--model", W("dense.mmf"), "--out", W(name), "--criterion", crit,
               "--sparsity", str(s), "--mode", mode, "--ft-epochs", "2", "--format", fmt,
               "--seed", "42"]
        acc[key] = run(cmd, raw, "%s %g %s %s" % (crit, s, mode, fmt))[0]

    prune(("control",), "magnitude_global", 0.0, "oneshot_ft")
    for s in UNSTRUCTURED:
        for mode in MODES:
            prune(("u", s, mode), "magnitude_global", s, mode)
    prune(("u", 0.9, "gradual", "sparse"), "magnitude_global", 0.9, "gradual", "sparse")
    for s in STRUCTURED:
        prune(("n", s), "neuron_l1", s, "oneshot_ft")
    torch_ref = {}
    if not args.no_torch:
        for d in run([args.python, os.path.join(HERE, "bench_torch_prune.py"), "--sparsities",
                      ",".join(str(s) for s in UNSTRUCTURED), "--seed", "42"], raw,
                     "PyTorch: train + global_unstructured"):
            torch_ref[d["sparsity"]] = d

    # ---- 3. speed ---------------------------------------------------------------
    models = [
        ("dense", "dense 784-256-128-10", W("dense.mmf")),
        ("u90", "90 % unstructured, gradual (format auto)", acc[("u", 0.9, "gradual")]["file"]),
        ("u90s", "90 % unstructured, gradual (format sparse)",
         acc[("u", 0.9, "gradual", "sparse")]["file"]),
        ("u95", "95 % unstructured, gradual (format auto)", acc[("u", 0.95, "gradual")]["file"]),
        ("n50", "50 % of hidden neurons removed (L1, one shot + FT)", acc[("n", 0.5)]["file"]),
    ]
    speed = {}  # (model, batch) -> [samples/s per rep]
    print("speed", file=sys.stderr, flush=True)
    for rep in range(args.reps):
        print("repetition %d/%d" % (rep + 1, args.reps), file=sys.stderr, flush=True)
        k = rep % len(models)
        for key, _, path in models[k:] + models[:k]:
            for batch in (1, 256):
                d = run([bp, "infer", "--model", path, "--batch", str(batch), "--seconds",
                         str(args.seconds)], raw, "infer%d %s" % (batch, key))[0]
                speed.setdefault((key, batch), []).append(d["samples_per_s"])
    sizes = {key: os.path.getsize(path) for key, _, path in models}

    def ratio(key, batch):
        rs = [a / b for a, b in zip(speed[(key, batch)], speed[("dense", batch)])]
        return statistics.median(rs), min(rs), max(rs)

    # ---- report -----------------------------------------------------------------
    L = []
    P = L.append
    P("Run: %s; source %s; %s; 1 thread; %d speed repetitions x %g s; total %.0f s." % (
        time.strftime("%Y-%m-%d %H:%M"), source_rev(), machine(), args.reps, args.seconds,
        time.time() - t_start))
    P("")
    base = dense["test_accuracy"]
    P("Dense model: %s, test accuracy **%.4f**, %d parameters, file %d bytes. Control: the "
      "same model fine-tuned for the same 2 epochs without pruning: %.4f." % (
          dense["recipe"], base, dense["params"], dense["file_size"],
          acc[("control",)]["test_accuracy"]))
    P("")
    P("### Accuracy vs sparsity: unstructured, global magnitude (test accuracy; change vs "
      "dense in points)")
    P("")
    P("| weights removed | %s | %s | %s | PyTorch global L1, no fine-tuning |" % tuple(
        MODE_NAMES[m] for m in MODES))
    P("|---:|---:|---:|---:|---:|")
    tb = torch_ref.get(0.0, {}).get("test_accuracy")
    P("| 0 %% (dense) | %.4f | | | %s |" % (base, "%.4f" % tb if tb is not None else "n/a"))
    for s in UNSTRUCTURED:
        cells = []
        for m in MODES:
            a = acc[("u", s, m)]["test_accuracy"]
            cells.append("%.4f (%+.1f)" % (a, 100 * (a - base)))
        t = torch_ref.get(s)
        tc = "%.4f (%+.1f)" % (t["test_accuracy"], 100 * (t["test_accuracy"] - tb)) if t else "n/a"
        P("| %d %% | %s | %s |" % (round(100 * s), " | ".join(cells), tc))
    P("")
    P("Per-layer sparsity after global ranking (mmaint, one shot, 90 %%): %s; PyTorch: %s." % (
        " / ".join("%.1f %%" % (100 * l["sparsity"]) for l in acc[("u", 0.9, "oneshot")]["layers"]),
        " / ".join("%.1f %%" % (100 * v) for v in torch_ref[0.9]["layer_sparsity"])
        if 0.9 in torch_ref else "n/a"))
    g = acc[("u", 0.9, "gradual")]
    P("Gradual: polynomial schedule (s_i 0, power 3) over steps 0..%d of %d, masks every %d "
      "steps, then recovery; Adam lr 1e-3, batch 64." % (g["end_step"], 2 * 938, g["frequency"]))
    P("")
    P("### Accuracy vs sparsity: structured, hidden neurons removed (L1 norm), one shot")
    P("")
    P("| hidden neurons removed | shape | no fine-tuning | + 2 epochs fine-tuning | parameters "
      "| file bytes (% of dense) |")
    P("|---:|---|---:|---:|---:|---:|")
    for s in STRUCTURED:
        d = acc[("n", s)]
        shape = "784-%s" % "-".join(str(l["outputs"]) for l in d["layers"])
        P("| %d %% | %s | %.4f (%+.1f) | %.4f (%+.1f) | %d | %d (%.1f %%) |" % (
            round(100 * s), shape, d["test_accuracy_pruned"],
            100 * (d["test_accuracy_pruned"] - base), d["test_accuracy"],
            100 * (d["test_accuracy"] - base), d["params"], d["file_size"],
            100.0 * d["file_size"] / dense["file_size"]))
    P("")
    P("### Speed (inference samples/s, 1 thread, median of %d interleaved repetitions) and "
      "size" % args.reps)
    P("")
    P("| model | layers (kind, sparsity) | file bytes | % of dense | batch 1 | vs dense | "
      "batch 256 | vs dense |")
    P("|---|---|---:|---:|---:|---:|---:|---:|")
    info = {"dense": dense, "u90": acc[("u", 0.9, "gradual")],
            "u90s": acc[("u", 0.9, "gradual", "sparse")], "u95": acc[("u", 0.95, "gradual")],
            "n50": acc[("n", 0.5)]}
    for key, label, _ in models:
        lay = ", ".join("%s %d %%" % (l["kind"], round(100 * l["sparsity"]))
                        for l in info[key]["layers"])
        if key == "n50":
            lay = ", ".join("%s %dx%d" % (l["kind"], l["inputs"], l["outputs"])
                            for l in info[key]["layers"])
        r1, r256 = ratio(key, 1), ratio(key, 256)
        P("| %s | %s | %d | %.1f %% | %.0f | %s | %.0f | %s |" % (
            label, lay, sizes[key], 100.0 * sizes[key] / sizes["dense"],
            statistics.median(speed[(key, 1)]),
            "—" if key == "dense" else "**%.2fx** (%.2f..%.2f)" % r1,
            statistics.median(speed[(key, 256)]),
            "—" if key == "dense" else "**%.2fx** (%.2f..%.2f)" % r256))
    P("")
    P("Ratios: median (min..max) of the per-repetition ratios pruned / dense; the models of "
      "one repetition ran back to back, each in its own process.")

    # ---- targets ----------------------------------------------------------------
    P("")
    P("### Targets of issue 3")
    P("")
    P("| target | result | verdict |")
    P("|---|---|---|")
    gacc = acc[("u", 0.9, "gradual")]["test_accuracy"]
    P("| 90 %% unstructured, gradual: loses <= 1 point | %.4f vs dense %.4f (%+.2f points) | %s |"
      % (gacc, base, 100 * (gacc - base), verdict(base - gacc <= 0.01)))
    nacc = acc[("n", 0.5)]["test_accuracy"]
    P("| 50 %% of hidden neurons removed, after fine-tuning: loses <= 1 point | %.4f (%+.2f "
      "points) | %s |" % (nacc, 100 * (nacc - base), verdict(base - nacc <= 0.01)))
    for key in ("u90", "u90s"):
        r = ratio(key, 1)
        P("| 90 %% unstructured (%s): batch 1 >= 3x dense | %.2fx (%.2f..%.2f) | %s |" % (
            "format auto" if key == "u90" else "format sparse", r[0], r[1], r[2],
            verdict(r[0] >= 3.0)))
    r = ratio("n50", 256)
    P("| structured 50 %%: batch 256 >= 1.8x dense | %.2fx (%.2f..%.2f) | %s |" % (
        r[0], r[1], r[2], verdict(r[0] >= 1.8)))
    for key in ("u90", "u90s"):
        f = sizes[key] / sizes["dense"]
        P("| 90 %% unstructured (%s): file <= 20 %% of dense | %.1f %% (%d of %d bytes) | %s |"
          % ("format auto" if key == "u90" else "format sparse", 100 * f, sizes[key],
             sizes["dense"], verdict(f <= 0.20)))
    if 0.9 in torch_ref:
        t = torch_ref[0.9]
        P("| reference: PyTorch global L1 90 %%, no fine-tuning (issue: 0.867 -> 0.48) | "
          "%.4f -> %.4f; mmaint one shot, no fine-tuning: %.4f -> %.4f | reproduced |" % (
              tb, t["test_accuracy"], base, acc[("u", 0.9, "oneshot")]["test_accuracy"]))
    print("\n".join(L))
    if raw:
        raw.close()


if __name__ == "__main__":
    main()
