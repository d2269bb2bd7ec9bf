#!/usr/bin/python3
"""Quantization benchmarks of issue 4: accuracy, speed and size of quantized
models against our fp32 model and PyTorch's dynamic int8.

    compare_quant.py [--build DIR] [--python PY] [--reps N] [--seconds S]
                     [--workdir DIR] [--raw FILE] [--no-torch]

1. Train the float 784-256-128-10 relu model once (bench_quant train: Adam
   lr 1e-3, batch 64, 3 epochs, seed 42; the foundation issue's recipe).
2. Accuracy (bench_quant sweep, one process): every scheme and observer on
   copies of that model, calibration on 512 training samples, each result
   saved, reloaded and evaluated on the 10k test images. PyTorch reference
   (bench_torch_quant.py accuracy): the *same* weights, read from our model
   file with numpy, through torch.quantization.quantize_dynamic (qint8).
3. Speed, 1 thread: inference at batch 1 and 256, each measurement its own
   process (bench_quant infer / bench_torch_quant.py infer), `--reps`
   repetitions with the order of the contenders rotating; medians and the
   median of per-repetition ratios.
4. Size: model file bytes against the fp32 file.

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

# Rows of the accuracy table: (config, scheme, weights, activations/observer).
ACC_ROWS = [
    ("static-pc-minmax", "int8 static", "per-channel", "minmax"),
    ("static-pc-moving", "int8 static", "per-channel", "moving-average minmax"),
    ("static-pc-percentile", "int8 static", "per-channel", "percentile 99.99"),
    ("static-pc-mse", "int8 static", "per-channel", "MSE"),
    ("static-pc-entropy", "int8 static", "per-channel", "entropy (KL)"),
    ("static-pt-minmax", "int8 static", "per-tensor", "minmax"),
    ("static-pt-moving", "int8 static", "per-tensor", "moving-average minmax"),
    ("static-pt-percentile", "int8 static", "per-tensor", "percentile 99.99"),
    ("static-pt-mse", "int8 static", "per-tensor", "MSE"),
    ("static-pt-entropy", "int8 static", "per-tensor", "entropy (KL)"),
    ("static-pc-minmax-tol", "int8 static, accuracy-aware (max drop 0.003)", "per-channel",
     "minmax"),
    ("dynamic-pc", "int8 dynamic", "per-channel", "per batch at run time"),
    ("dynamic-pt", "int8 dynamic", "per-tensor", "per batch at run time"),
    ("weight-only-pc", "int8 weight-only", "per-channel", "float"),
    ("fp16", "fp16 weights", "—", "float"),
    ("bf16", "bf16 weights", "—", "float"),
]

# Speed contenders: (key, label, kind, file config or torch variant).
SPEED = [
    ("fp32", "mmaint fp32 (dense, BLIS)", "mm", "fp32"),
    ("static-pc", "mmaint int8 static, per-channel", "mm", "static-pc-minmax"),
    ("static-pt", "mmaint int8 static, per-tensor", "mm", "static-pt-minmax"),
    ("dynamic-pc", "mmaint int8 dynamic, per-channel", "mm", "dynamic-pc"),
    ("weight-only", "mmaint int8 weight-only", "mm", "weight-only-pc"),
    ("fp16", "mmaint fp16", "mm", "fp16"),
    ("bf16", "mmaint bf16", "mm", "bf16"),
    ("torch-fp32", "PyTorch fp32", "torch", "fp32"),
    ("torch-int8", "PyTorch dynamic int8 (quantize_dynamic)", "torch", "int8"),
]


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
        sys.exit("compare_quant.py: %s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode,
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
    cpu, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "?":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return "%s, %d CPUs, %s" % (cpu, os.cpu_count() or 0, isa)


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
    ap.add_argument("--workdir", default="/tmp/mmaint-quant-bench")
    ap.add_argument("--raw", default="", help="also write every JSON result line here")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    raw = open(args.raw, "w") if args.raw else None
    os.makedirs(args.workdir, exist_ok=True)
    bq = os.path.join(args.build, "benchmarks", "bench_quant")
    tq = os.path.join(HERE, "bench_torch_quant.py")
    W = lambda name: os.path.join(args.workdir, name)  # noqa: E731
    t_start = time.time()

    # ---- 1. the float model, once ---------------------------------------------
    print("float model", file=sys.stderr, flush=True)
    fp32 = run([bq, "train", "--out", W("fp32.mmf"), "--seed", "42"], raw, "train fp32")[0]

    # ---- 2. accuracy ------------------------------------------------------------
    print("quantization sweep", file=sys.stderr, flush=True)
    sweep = run([bq, "sweep", "--model", W("fp32.mmf"), "--outdir", args.workdir, "--cal", "512"],
                raw, "every scheme and observer")
    acc = {d["config"]: d for d in sweep if d["bench"] == "quant"}
    tref = None
    speed_models = [s for s in SPEED if s[2] == "mm" or not args.no_torch]
    if not args.no_torch:
        tref = run([args.python, tq, "accuracy", "--model", W("fp32.mmf")], raw,
                   "PyTorch: quantize_dynamic on our weights")[0]

    # ---- 3. speed ---------------------------------------------------------------
    speed = {}  # (key, batch) -> [samples/s per rep]
    print("speed", file=sys.stderr, flush=True)
    for rep in range(args.reps):
        print("repetition %d/%d" % (rep + 1, args.reps), file=sys.stderr, flush=True)
        k = rep % len(speed_models)
        for key, _, kind, what in speed_models[k:] + speed_models[:k]:
            for batch in (1, 256):
                if kind == "mm":
                    cmd = [bq, "infer", "--model", W(what + ".mmf"), "--batch", str(batch),
                           "--seconds", str(args.seconds)]
                else:
                    cmd = [args.python, tq, "infer", "--model", W("fp32.mmf"), "--impl", what,
                           "--batch", str(batch), "--seconds", str(args.seconds)]
                d = run(cmd, raw, "infer%d %s" % (batch, key))[0]
                speed.setdefault((key, batch), []).append(d["samples_per_s"])

    def med(key, batch):
        return statistics.median(speed[(key, batch)])

    def ratio(a, b, batch):
        rs = [x / y for x, y in zip(speed[(a, batch)], speed[(b, batch)])]
        return statistics.median(rs), min(rs), max(rs)

    def fmt_ratio(r):
        return "**%.2fx** (%.2f..%.2f)" % r

    # ---- report -----------------------------------------------------------------
    L = []
    P = L.append
    P("Run: %s; source %s; %s; 1 thread; %d speed repetitions x %g s; total %.0f s." % (
        time.strftime("%Y-%m-%d %H:%M"), source_rev(), machine(), args.reps, args.seconds,
        time.time() - t_start))
    P("")
    base = fp32["test_accuracy"]
    P("Float model: %s, test accuracy **%.4f**, file %d bytes (%d bytes of parameters)." % (
        fp32["recipe"], base, fp32["file_size"], fp32["param_bytes"]))
    if tref:
        P("PyTorch reference: the same weights read from our file into torch.nn.Linear "
          "(float test accuracy %.4f), then `torch.quantization.quantize_dynamic(model, "
          "{nn.Linear}, dtype=torch.qint8)`, engine %s." % (tref["test_accuracy_float"],
                                                           tref["engine"]))
    P("")
    P("### Accuracy (Fashion-MNIST test, 10k images; change vs fp32 in points)")
    P("")
    P("| scheme | weights | activations / observer | test accuracy | change | layers | "
      "reloaded from file |")
    P("|---|---|---|---:|---:|---|---:|")
    P("| fp32 (mmaint) | float | float | %.4f | — | dense, dense, dense | — |" % base)
    for cfg, scheme, wts, obs in ACC_ROWS:
        d = acc[cfg]
        a = d["test_accuracy"]
        P("| %s | %s | %s | %.4f | %+.2f | %s | %s |" % (
            scheme, wts, obs, a, 100 * (a - base), ", ".join(d["layers"]),
            "same" if abs(d["test_accuracy_reloaded"] - a) < 1e-9 else
            "%.4f" % d["test_accuracy_reloaded"]))
    if tref:
        tb = tref["test_accuracy_float"]
        ti = tref["test_accuracy_int8_dynamic"]
        P("| PyTorch fp32 (our weights) | float | float | %.4f | %+.2f | Linear x3 | — |" % (
            tb, 100 * (tb - base)))
        P("| PyTorch quantize_dynamic qint8 | per-tensor | per batch at run time | %.4f | "
          "%+.2f (vs its fp32: %+.2f) | DynamicQuantizedLinear x3 | — |" % (
              ti, 100 * (ti - base), 100 * (ti - tb)))
    P("")
    P("Calibration: 512 training images spread evenly over the 60k (each configuration "
      "calibrates its own quantizer on them); %.1f ms per calibration, quantizing %.1f-%.1f ms "
      "(accuracy-aware: %.0f ms, every evaluation on the 10k test images)." % (
          1000 * acc["static-pc-minmax"]["calibration_seconds"],
          1000 * min(acc[c]["quantize_seconds"] for c, *_ in ACC_ROWS if "tol" not in c),
          1000 * max(acc[c]["quantize_seconds"] for c, *_ in ACC_ROWS if "tol" not in c),
          1000 * acc["static-pc-minmax-tol"]["quantize_seconds"]))
    tol = acc["static-pc-minmax-tol"]["report"]
    floats = [l["index"] for l in tol["layers"] if not l["quantized"]]
    P("Accuracy-aware run: float %.4f, every layer int8 %.4f, final %.4f; layers kept in "
      "float: %s." % (tol["float_accuracy"], tol["quantized_accuracy"], tol["final_accuracy"],
                      ", ".join(map(str, floats)) if floats else "none"))
    P("")
    P("### Speed (inference samples/s, 1 thread, median of %d interleaved repetitions)" %
      args.reps)
    P("")
    P("| model | batch 1 | vs our fp32 | vs PyTorch int8 | batch 256 | vs our fp32 | "
      "vs PyTorch int8 |")
    P("|---|---:|---:|---:|---:|---:|---:|")
    have_t = ("torch-int8", 1) in speed
    for key, label, kind, _ in speed_models:
        cells = []
        for batch in (1, 256):
            cells.append("%.0f" % med(key, batch))
            cells.append("—" if key == "fp32" else fmt_ratio(ratio(key, "fp32", batch)))
            cells.append("—" if key == "torch-int8" or not have_t else
                         fmt_ratio(ratio(key, "torch-int8", batch)))
        P("| %s | %s |" % (label, " | ".join(cells)))
    P("")
    P("Ratios: median (min..max) of the per-repetition ratios; the contenders of one "
      "repetition ran back to back, each in its own process.")
    P("")
    P("### Size (model file bytes)")
    P("")
    P("| model | file bytes | % of fp32 | parameter bytes in memory |")
    P("|---|---:|---:|---:|")
    P("| fp32 | %d | 100.0 %% | %d |" % (fp32["file_size"], fp32["param_bytes"]))
    for cfg, label in (("static-pc-minmax", "int8 static, per-channel"),
                       ("static-pt-minmax", "int8 static, per-tensor"),
                       ("dynamic-pc", "int8 dynamic, per-channel"),
                       ("weight-only-pc", "int8 weight-only, per-channel"),
                       ("fp16", "fp16"), ("bf16", "bf16"),
                       ("static-pc-minmax-master", "int8 static, per-channel, with float "
                                                   "master weights (--keep-master)")):
        d = acc[cfg]
        P("| %s | %d | %.1f %% | %d |" % (label, d["file_size"],
                                          100.0 * d["file_size"] / fp32["file_size"],
                                          d["param_bytes"]))
    if tref:
        P("| PyTorch state_dict (torch.save), fp32 / dynamic int8 | %d / %d | — / %.1f %% of "
          "its fp32 | — |" % (tref["state_dict_bytes_float"], tref["state_dict_bytes_int8"],
                               100.0 * tref["state_dict_bytes_int8"] /
                               tref["state_dict_bytes_float"]))

    # ---- targets ----------------------------------------------------------------
    P("")
    P("### Targets of issue 4")
    P("")
    P("| target | result | verdict |")
    P("|---|---|---|")
    a = acc["static-pc-minmax"]["test_accuracy"]
    worst = min(acc[c]["test_accuracy"] for c in acc if c.startswith("static-pc-")
                and "tol" not in c and "master" not in c)
    P("| int8 static per-channel loses <= 0.3 points | minmax (default): %.4f vs %.4f (%+.2f "
      "points); worst observer %+.2f points | %s |" % (
          a, base, 100 * (a - base), 100 * (worst - base), verdict(base - worst <= 0.003)))
    if tref:
        P("| reference: PyTorch dynamic int8 loses ~0.0-0.1 points | %.4f -> %.4f (%+.2f points) "
          "| reproduced |" % (tb, ti, 100 * (ti - tb)))
    r = ratio("static-pc", "fp32", 256)
    P("| int8 >= 2x our fp32 at batch 256 | static per-channel %.2fx (%.2f..%.2f); dynamic "
      "%.2fx | %s |" % (r + (ratio("dynamic-pc", "fp32", 256)[0], verdict(r[0] >= 2.0))))
    if have_t:
        r = ratio("static-pc", "torch-int8", 256)
        P("| int8 >= PyTorch dynamic int8 at batch 256 (issue: ≈ 410k/s) | %.0f vs %.0f "
          "samples/s: %.2fx (%.2f..%.2f); our dynamic vs theirs %.2fx | %s |" % (
              (med("static-pc", 256), med("torch-int8", 256)) + r +
              (ratio("dynamic-pc", "torch-int8", 256)[0], verdict(r[0] >= 1.0))))
        r = ratio("static-pc", "torch-int8", 1)
        P("| int8 at batch 1 >= 10x PyTorch dynamic int8 (issue: ≈ 6k/s) | %.0f vs %.0f "
          "samples/s: %.1fx (%.1f..%.1f); our dynamic vs theirs %.1fx | %s |" % (
              (med("static-pc", 1), med("torch-int8", 1)) + r +
              (ratio("dynamic-pc", "torch-int8", 1)[0], verdict(r[0] >= 10.0))))
    f = acc["static-pc-minmax"]["file_size"] / fp32["file_size"]
    fmax = max(acc[c]["file_size"] for c in acc if c.startswith(("static", "dynamic", "weight"))
               and "master" not in c) / fp32["file_size"]
    P("| int8 file <= 27 %% of fp32 (no master weights) | %.1f %% (%d of %d bytes); every int8 "
      "file <= %.1f %% | %s |" % (100 * f, acc["static-pc-minmax"]["file_size"],
                                  fp32["file_size"], 100 * fmax, verdict(fmax <= 0.27)))
    print("\n".join(L))
    if raw:
        raw.close()


if __name__ == "__main__":
    main()
