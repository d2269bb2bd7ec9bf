#!/usr/bin/python3
"""PyTorch side of the mmaint benchmarks (run with Debian's /usr/bin/python3,
which has python3-torch 1.13 and numpy).

One benchmark per process run, one JSON object per line on stdout, the same
keys as bench_mmaint:  {"impl": "torch", "bench": ..., "samples_per_s": ...}.

    bench_torch.py train_step|train_epoch|online|infer1|infer256 [--seconds S]
    bench_torch.py accuracy [--optim adamw --lr 1e-3 --wd 0.05 --batch 128
                             --epochs 15 --schedule cosine --warmup-epochs 1 ...]

Model 784-256-128-10 relu, Fashion-MNIST from $MM_FASHION_DIR
(default /usr/share/datasets/fashion-mnist), pixels scaled to [0, 1] as
mm_dataset_load_idx does. One thread: torch.set_num_threads(1).
"""
import argparse
import gzip
import json
import math
import os
import resource
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

DATA = os.environ.get("MM_FASHION_DIR", "/usr/share/datasets/fashion-mnist")
BATCH = 64


def emit(**kw):
    kw.setdefault("impl", "torch")
    print(json.dumps(kw), flush=True)


def maxrss_kb():
    """Peak RSS of this process so far, kB (getrusage ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_now_kb():
    """Current RSS, kB (VmRSS), or -1."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load(split):
    prefix = "train" if split == "train" else "t10k"
    x = load_idx(prefix + "-images-idx3-ubyte.gz")
    y = load_idx(prefix + "-labels-idx1-ubyte.gz")
    x = x.reshape(x.shape[0], -1).astype(np.float32)
    x /= np.float32(255.0)  # in place: no second 188 MB temporary
    x = torch.from_numpy(x)
    y = torch.from_numpy(y.astype(np.int64))
    return x, y


def make_model(seed=42):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(784, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10))


def timed_chunks(fn, seconds, min_chunks=3):
    """Call fn() (one chunk of work, returns the samples it did) repeatedly
    for about `seconds`; return (samples/s of the median chunk, samples,
    elapsed)."""
    rates, total, t_all = [], 0, time.perf_counter()
    while True:
        t0 = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t0
        rates.append(n / dt)
        total += n
        if len(rates) >= min_chunks and time.perf_counter() - t_all >= seconds:
            break
    rates.sort()
    return rates[len(rates) // 2], total, time.perf_counter() - t_all


def bench_train_step(args):
    """Adam lr 1e-3 on prepared (pre-sliced) batches of 64."""
    x, y = load("train")
    rss_data = rss_now_kb()
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    nb = x.shape[0] // BATCH
    batches = [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(nb)]
    pos = [0]
    chunk = 100  # batches per timed chunk

    def run():
        for _ in range(chunk):
            xb, yb = batches[pos[0]]
            pos[0] = (pos[0] + 1) % nb
            opt.zero_grad()
            loss = crit(model(xb), yb)
            loss.backward()
            opt.step()
        return chunk * BATCH

    run()  # warm-up
    rate, n, el = timed_chunks(run, args.seconds)
    emit(bench="train_step", samples_per_s=rate, samples=n, seconds=el,
         rss_kb=maxrss_kb(), rss_after_load_kb=rss_data,
         rss_end_kb=rss_now_kb())


def bench_train_epoch(args):
    """One shuffled epoch, Adam lr 1e-3 batch 64: the standard loop
    (randperm + index_select per batch, zero_grad/forward/loss/backward/step).
    Also reports the peak RSS of this training process."""
    x, y = load("train")
    rss_data = rss_now_kb()
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    n = x.shape[0]
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=g)
    total_loss = 0.0
    for i in range(0, n, BATCH):
        idx = perm[i:i + BATCH]
        xb, yb = x[idx], y[idx]
        opt.zero_grad()
        loss = crit(model(xb), yb)
        loss.backward()
        opt.step()
        total_loss += loss.item()
    dt = time.perf_counter() - t0
    rss_peak, rss_end = maxrss_kb(), rss_now_kb()  # before the test set
    model.eval()
    with torch.no_grad():
        xt, yt = load("test")
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    emit(bench="train_epoch", samples_per_s=n / dt, samples=n, seconds=dt,
         test_accuracy=acc, rss_kb=rss_peak, rss_after_load_kb=rss_data,
         rss_end_kb=rss_end)


def bench_online(args):
    """SGD lr 0.01, one sample per step, over the training set in order."""
    x, y = load("train")
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    crit = torch.nn.CrossEntropyLoss()
    n = 20000
    xs = [x[i:i + 1] for i in range(n)]
    ys = [y[i:i + 1] for i in range(n)]
    pos = [0]
    chunk = 500

    def run():
        for _ in range(chunk):
            i = pos[0]
            pos[0] = (i + 1) % n
            opt.zero_grad()
            loss = crit(model(xs[i]), ys[i])
            loss.backward()
            opt.step()
        return chunk

    run()
    rate, cnt, el = timed_chunks(run, args.seconds)
    emit(bench="online", samples_per_s=rate, samples=cnt, seconds=el)


def bench_infer(args, batch):
    x, _ = load("test")
    model = make_model()
    model.eval()
    n = x.shape[0] // batch * batch
    xs = [x[i:i + batch] for i in range(0, n, batch)]
    pos = [0]
    chunk = 1000 if batch == 1 else 8

    def run():
        with torch.no_grad():
            for _ in range(chunk):
                model(xs[pos[0]])
                pos[0] = (pos[0] + 1) % len(xs)
        return chunk * batch

    run()
    rate, cnt, el = timed_chunks(run, args.seconds)
    emit(bench="infer%d" % batch, samples_per_s=rate, samples=cnt, seconds=el)


def lr_lambda_factory(args, steps_per_epoch):
    """Multiplier of the base lr after `step` updates, the same formula as
    mmaint's schedules (linear warmup to lr over warmup steps, then cosine
    from lr to min_lr at total steps)."""
    total = args.epochs * steps_per_epoch
    warm = int(round(args.warmup_epochs * steps_per_epoch))

    def f(step):
        if args.schedule == "constant":
            return 1.0
        # LambdaLR calls f(k) for the lr of update k+1 (k updates done).
        if warm > 0 and step < warm:
            return (step + 1) / warm
        if total <= warm:
            return args.min_lr / args.lr
        p = min(1.0, (step - warm) / (total - warm))
        lo = args.min_lr / args.lr
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * p))
    return f


def bench_accuracy(args):
    """Train with the given recipe, evaluate test accuracy after each epoch,
    report the wall time (training + evaluations) until the first epoch
    reaching args.target."""
    x, y = load("train")
    xt, yt = load("test")
    model = make_model(args.seed)
    if args.optim == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    elif args.optim == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                              weight_decay=args.wd, nesterov=args.momentum > 0)
    n = x.shape[0]
    spe = (n + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda_factory(args, spe))
    crit = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    hit = None
    accs = []
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            opt.zero_grad()
            loss = crit(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        el = time.perf_counter() - t0
        accs.append(round(acc, 4))
        if hit is None and acc >= args.target:
            hit = (ep + 1, el)
        emit(bench="accuracy_epoch", epoch=ep + 1, test_accuracy=acc, seconds=el)
    emit(bench="accuracy", recipe=recipe_str(args), accuracies=accs,
         final_accuracy=accs[-1], best_accuracy=max(accs),
         epochs_to_target=hit[0] if hit else None,
         seconds_to_target=hit[1] if hit else None,
         seconds_total=time.perf_counter() - t0, target=args.target)


def recipe_str(a):
    s = "%s lr=%g wd=%g batch=%d epochs=%d schedule=%s" % (
        a.optim, a.lr, a.wd, a.batch, a.epochs, a.schedule)
    if a.schedule == "cosine":
        s += " warmup_epochs=%g min_lr=%g" % (a.warmup_epochs, a.min_lr)
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", choices=["train_step", "train_epoch", "online", "infer1",
                                     "infer256", "accuracy"])
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--optim", default="adamw", choices=["adam", "adamw", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--target", type=float, default=0.89)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    if args.bench == "train_step":
        bench_train_step(args)
    elif args.bench == "train_epoch":
        bench_train_epoch(args)
    elif args.bench == "online":
        bench_online(args)
    elif args.bench == "infer1":
        bench_infer(args, 1)
    elif args.bench == "infer256":
        bench_infer(args, 256)
    else:
        bench_accuracy(args)


if __name__ == "__main__":
    sys.exit(main())
