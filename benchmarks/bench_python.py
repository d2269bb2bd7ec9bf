#!/usr/bin/python3
"""Overhead of the Python bindings per online-learning step, against C.

The C side is `bench_mmaint online` (mm_optimizer_step with n = 1, SGD lr
0.01, model 784-256-128-10 relu seed 42, Fashion-MNIST, chunks of 500 steps
over the first 20000 training samples, median chunk rate). The Python side
does exactly the same through `mmaint.Optimizer.step`, in two forms:

  numpy  Debian's /usr/bin/python3 with numpy: `opt.step(X[i], int(y[i]))`,
         X the zero-copy float32 view of the dataset's features;
  array  the python3 on PATH (may have no numpy): `opt.step(xs[i], ys[i])`,
         xs a list of per-sample array('f') and ys Python ints.

Every measurement is its own process; each repetition runs the three once,
rotating the order, so machine noise hits all alike. Reported: median
samples/s and µs/step over the repetitions, and the median (min..max) of the
per-repetition ratios Python time / C time (the target is <= 1.5), both for
each process's median chunk and for its fastest chunk (the least disturbed
by other load on a shared machine).

    bench_python.py [--build DIR] [--reps N] [--seconds S] [--raw FILE]
    bench_python.py worker numpy|array [--seconds S]     (one measurement)
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
SPEC = "784-256-128-10:relu"
N_SAMPLES, CHUNK = 20000, 500


def data_dir():
    return os.environ.get("MM_FASHION_DIR") or "/usr/share/datasets/fashion-mnist"


def worker(mode, seconds):
    sys.path.insert(0, os.path.join(SRC, "bindings", "python"))
    import mmaint
    mmaint.set_num_threads(1)
    d = data_dir()
    ds = mmaint.Dataset.load_idx(os.path.join(d, "train-images-idx3-ubyte.gz"),
                                 os.path.join(d, "train-labels-idx1-ubyte.gz"))
    m = mmaint.Model(SPEC, seed=42)
    opt = mmaint.Optimizer(m, "sgd", lr=0.01)
    if mode == "numpy":
        import numpy  # noqa: F401  (fail loudly if missing)
        xs = ds.features[:N_SAMPLES]  # zero-copy view, rows are views too
        ys = [int(v) for v in ds.labels[:N_SAMPLES]]
        rows = xs  # indexing gives a row view per step
    else:
        from array import array
        flat = memoryview(ds.features).cast("B")
        row = 4 * ds.dim
        rows = []
        for i in range(N_SAMPLES):
            a = array("f")
            a.frombytes(flat[i * row:(i + 1) * row])
            rows.append(a)
        ys = list(ds.labels[:N_SAMPLES])
    step = opt.step
    pos = 0

    def chunk():
        nonlocal pos
        for _ in range(CHUNK):
            i = pos
            pos = (pos + 1) % N_SAMPLES
            step(rows[i], ys[i])
        return CHUNK

    chunk()  # warm-up, as bench_mmaint
    rates, total, t_all = [], 0, time.perf_counter()
    while True:
        t0 = time.perf_counter()
        s = chunk()
        rates.append(s / (time.perf_counter() - t0))
        total += s
        if len(rates) >= 3 and time.perf_counter() - t_all >= seconds:
            break
    rates.sort()
    print(json.dumps({"impl": "python-" + mode, "bench": "online",
                      "samples_per_s": round(rates[len(rates) // 2], 1),
                      "best_samples_per_s": round(rates[-1], 1), "samples": total,
                      "python": sys.version.split()[0], "mmaint": mmaint.version(),
                      "backend": mmaint.backend()}))


def child_env(build):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "BLIS_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = "1"
    env.pop("MM_BACKEND", None)
    env["MMAINT_LIBRARY"] = os.path.join(build, "lib", "libmmaint.so.0")
    return env


def run(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="*", help="worker numpy|array (internal)")
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--numpy-python", default="/usr/bin/python3")
    ap.add_argument("--array-python", default=shutil.which("python3") or sys.executable)
    ap.add_argument("--raw", help="append every JSON line to this file")
    a = ap.parse_args()
    if a.mode:
        if a.mode[0] != "worker" or len(a.mode) != 2 or a.mode[1] not in ("numpy", "array"):
            ap.error("usage: worker numpy|array")
        worker(a.mode[1], a.seconds)
        return
    build = os.path.abspath(a.build)
    env = child_env(build)
    bench_c = os.path.join(build, "benchmarks", "bench_mmaint")
    me = os.path.abspath(__file__)
    contenders = {
        "c": [bench_c, "online", "--seconds", str(a.seconds)],
        "numpy": [a.numpy_python, me, "worker", "numpy", "--seconds", str(a.seconds)],
        "array": [a.array_python, me, "worker", "array", "--seconds", str(a.seconds)],
    }
    order = list(contenders)
    rates = {k: [] for k in order}
    best = {k: [] for k in order}
    raw = open(a.raw, "a") if a.raw else None
    for r in range(a.reps):
        for k in order[r % len(order):] + order[:r % len(order)]:
            res = run(contenders[k], env)
            rates[k].append(res["samples_per_s"])
            best[k].append(res["best_samples_per_s"])
            if raw:
                raw.write(json.dumps(res) + "\n")
            print("rep %d %s: %.0f samples/s" % (r + 1, k, res["samples_per_s"]),
                  file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}
    top = {k: max(v) for k, v in best.items()}
    print("| online step, 784-256-128-10 relu, SGD lr 0.01, 1 sample/step | median samples/s "
          "(us/step) | Python time / C time: median chunks | fastest chunks | fastest chunk "
          "of the run (us/step) |")
    print("|---|---|---|---|---|")
    print("| C (`bench_mmaint online`) | %.0f (%.1f) | 1 | 1 | %.1f |"
          % (med["c"], 1e6 / med["c"], 1e6 / top["c"]))
    for k, label in (("numpy", "Python + numpy (`%s`)" % a.numpy_python),
                     ("array", "Python, array('f') (`%s`)" % a.array_python)):
        cells = []
        for series in (rates, best):
            ratios = sorted(c / p for c, p in zip(series["c"], series[k]))
            m = statistics.median(ratios)
            cells.append("**%.2fx** (%.2f..%.2f)%s" % (m, ratios[0], ratios[-1],
                                                      "" if m <= 1.5 else " NOT met"))
        print("| %s | %.0f (%.1f) | %s | %s | %.1f |" % (label, med[k], 1e6 / med[k], cells[0],
                                                       cells[1], 1e6 / top[k]))
    print("\nRatios: median (min..max) over %d repetitions of the per-repetition ratio "
          "C samples/s / Python samples/s (= Python time / C time); target <= 1.5x." % a.reps)


if __name__ == "__main__":
    main()
