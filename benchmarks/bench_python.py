#!/usr/bin/python3
"""Overhead of the Python bindings per online-learning step, against C.

The online step of `bench_mmaint online`: mm_optimizer_step with n = 1, SGD
lr 0.01, model 784-256-128-10 relu seed 42, Fashion-MNIST (the first 20000
training images), one thread. Python does the same through
`mmaint.Optimizer.step`, in two forms:

  numpy  Debian's /usr/bin/python3 with numpy: `opt.step(X[i], y[i])`, X the
         zero-copy float32 view of the dataset's features, y Python ints;
  array  the python3 on PATH (may have no numpy): `opt.step(xs[i], y[i])`,
         xs a list of per-sample array('f').

Two measurements per repetition:

- paired, in one process (the main figure): chunks of 500 steps alternate
  between the C loop (bench_online_loop.so, the same loop as bench_mmaint
  compiled as a module and called once per chunk through ctypes) and the
  Python loop, on the same optimizer. Each Python chunk is paired with the
  C chunk next to it (a few ms apart), so the load of a shared machine hits
  both alike; the ratio is the median over the pairs, of the thread's CPU
  time (what the step costs; immune to waiting for a core) and of the wall
  time;
- separate processes, as benchmarks/compare.py does: `bench_mmaint online`
  vs the Python loop alone (median chunk of each process); noisier.

Reported: the median (min..max) over the repetitions of each ratio Python
time / C time (target <= 1.5x), and median µs per step.

    bench_python.py [--build DIR] [--reps N] [--seconds S] [--raw FILE]
    bench_python.py worker numpy|array [--build DIR] [--seconds S]
"""
import argparse
import ctypes
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


def worker(mode, seconds, build):
    sys.path.insert(0, os.path.join(SRC, "bindings", "python"))
    import mmaint
    from mmaint._lib import lib
    mmaint.set_num_threads(1)
    d = data_dir()
    ds = mmaint.Dataset.load_idx(os.path.join(d, "train-images-idx3-ubyte.gz"),
                                 os.path.join(d, "train-labels-idx1-ubyte.gz"))
    m = mmaint.Model(SPEC, seed=42)
    opt = mmaint.Optimizer(m, "sgd", lr=0.01)
    ys = [int(v) for v in ds.labels[:N_SAMPLES]]
    if mode == "numpy":
        import numpy  # noqa: F401  (fail loudly if missing)
        rows = ds.features[:N_SAMPLES]  # zero-copy; rows[i] is a zero-copy row view
    else:
        from array import array
        flat = memoryview(ds.features).cast("B")
        size = 4 * ds.dim
        rows = []
        for i in range(N_SAMPLES):
            a = array("f")
            a.frombytes(flat[i * size:(i + 1) * size])
            rows.append(a)

    loop = ctypes.CDLL(os.path.join(build, "benchmarks", "bench_online_loop.so"))
    c_chunk_fn = loop.bench_online_chunk
    c_chunk_fn.restype = ctypes.c_int
    c_chunk_fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_size_t] * 4
    xa, ya = lib.mm_dataset_features(ds._p()), lib.mm_dataset_labels(ds._p())
    step = opt.step
    pos = {"c": 0, "py": 0}

    # Each chunk returns (wall seconds, CPU seconds of this thread): on a
    # shared machine the wall time includes time the thread waited for a
    # core, the CPU time only what it computed.
    def c_chunk():
        t0, c0 = time.perf_counter(), time.thread_time()
        st = c_chunk_fn(opt._ptr, xa, ya, ds.dim, N_SAMPLES, pos["c"], CHUNK)
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        if st:
            raise RuntimeError("bench_online_chunk: status %d" % st)
        pos["c"] = (pos["c"] + CHUNK) % N_SAMPLES
        return dt, dc

    def py_chunk():
        i = pos["py"]
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(CHUNK):
            step(rows[i], ys[i])
            i += 1
            if i == N_SAMPLES:
                i = 0
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        pos["py"] = i
        return dt, dc

    c_chunk()  # warm-up, as bench_mmaint
    py_chunk()
    ratios, cpu_ratios, c_times, py_times, c_cpu, py_cpu = [], [], [], [], [], []
    t_all = time.perf_counter()
    while len(ratios) < 4 or time.perf_counter() - t_all < seconds:
        if len(ratios) % 2:  # alternate which goes first
            tp, cp = py_chunk()
            tc, cc = c_chunk()
        else:
            tc, cc = c_chunk()
            tp, cp = py_chunk()
        ratios.append(tp / tc)
        cpu_ratios.append(cp / cc)
        c_times.append(tc / CHUNK)
        py_times.append(tp / CHUNK)
        c_cpu.append(cc / CHUNK)
        py_cpu.append(cp / CHUNK)
    # Then the Python loop alone, as a separate-process comparison uses it.
    alone = []
    t_all = time.perf_counter()
    while len(alone) < 3 or time.perf_counter() - t_all < seconds:
        alone.append(py_chunk()[0] / CHUNK)
    print(json.dumps({
        "impl": "python-" + mode, "bench": "online_paired", "pairs": len(ratios),
        "ratio_median": round(statistics.median(ratios), 4),
        "cpu_ratio_median": round(statistics.median(cpu_ratios), 4),
        "c_us_median": round(1e6 * statistics.median(c_times), 2),
        "py_us_median": round(1e6 * statistics.median(py_times), 2),
        "c_cpu_us_median": round(1e6 * statistics.median(c_cpu), 2),
        "py_cpu_us_median": round(1e6 * statistics.median(py_cpu), 2),
        "py_alone_samples_per_s": round(1.0 / statistics.median(alone), 1),
        "python": sys.version.split()[0], "numpy": mode == "numpy",
        "mmaint": mmaint.version(), "backend": mmaint.backend()}))


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


def spread(values):
    v = sorted(values)
    return "**%.2fx** (%.2f..%.2f)" % (statistics.median(v), v[0], v[-1])


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
    build = os.path.abspath(a.build)
    if a.mode:
        if a.mode[0] != "worker" or len(a.mode) != 2 or a.mode[1] not in ("numpy", "array"):
            ap.error("usage: worker numpy|array")
        worker(a.mode[1], a.seconds, build)
        return
    env = child_env(build)
    me = os.path.abspath(__file__)
    contenders = {
        "c": [os.path.join(build, "benchmarks", "bench_mmaint"), "online",
              "--seconds", str(a.seconds)],
        "numpy": [a.numpy_python, me, "worker", "numpy", "--build", build,
                  "--seconds", str(a.seconds)],
        "array": [a.array_python, me, "worker", "array", "--build", build,
                  "--seconds", str(a.seconds)],
    }
    order = list(contenders)
    res = {k: [] for k in order}
    raw = open(a.raw, "a") if a.raw else None
    for r in range(a.reps):
        for k in order[r % len(order):] + order[:r % len(order)]:
            d = run(contenders[k], env)
            res[k].append(d)
            if raw:
                raw.write(json.dumps(d) + "\n")
                raw.flush()
            if k == "c":
                print("rep %d c (separate process): %.1f us/step"
                      % (r + 1, 1e6 / d["samples_per_s"]), file=sys.stderr)
            else:
                print("rep %d %s: paired ratio wall %.3f (C %.1f us, Python %.1f us), CPU %.3f "
                      "(C %.1f us, Python %.1f us); alone %.1f us"
                      % (r + 1, k, d["ratio_median"], d["c_us_median"], d["py_us_median"],
                         d["cpu_ratio_median"], d["c_cpu_us_median"], d["py_cpu_us_median"],
                         1e6 / d["py_alone_samples_per_s"]), file=sys.stderr)
    c_sep = [1e6 / d["samples_per_s"] for d in res["c"]]
    print("Online learning step (SGD lr 0.01, 1 sample/step), model 784-256-128-10 relu, "
          "Fashion-MNIST, 1 thread; %d repetitions x %g s.\n" % (a.reps, a.seconds))
    print("| Python | Python / C, paired, CPU time | CPU us/step C / Python | Python / C, "
          "paired, wall time | wall us/step C / Python | Python / C, separate processes "
          "(wall) |")
    print("|---|---|---|---|---|---|")
    for k, label in (("numpy", "numpy rows (`%s`)" % a.numpy_python),
                     ("array", "array('f') (`%s`)" % a.array_python)):
        ds = res[k]
        sep = [(1e6 / d["py_alone_samples_per_s"]) / c for d, c in zip(ds, c_sep)]
        med = lambda key: statistics.median(d[key] for d in ds)  # noqa: E731
        print("| %s | %s | %.1f / %.1f | %s | %.1f / %.1f | %s |"
              % (label, spread([d["cpu_ratio_median"] for d in ds]), med("c_cpu_us_median"),
                 med("py_cpu_us_median"), spread([d["ratio_median"] for d in ds]),
                 med("c_us_median"), med("py_us_median"), spread(sep)))
    print("\nC alone (`bench_mmaint online`, separate process): %.1f us/step (median). "
          "Ratios: median (min..max) over the repetitions; target <= 1.5x."
          % statistics.median(c_sep))


if __name__ == "__main__":
    main()
