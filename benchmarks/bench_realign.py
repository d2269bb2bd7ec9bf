#!/usr/bin/env python3
"""Input re-alignment alone (the maintainer's re-aligned challenger, without
its fine-tuning): how much of the brightness drift of the demo stream
(x' = 0.25 + 0.75 x) a first-layer fold of the per-pixel affine map undoes,
by the number of post-drift samples its statistics come from; then the same
fold fine-tuned like a challenger (Adam, batch 64, 2 epochs on 800 new +
4200 older samples mapped back) at three learning rates.

    python3 benchmarks/bench_realign.py MODEL.mmf [REF_OFFSET]

MODEL: a 784-input Fashion-MNIST classifier (benchmarks/run_maintain.sh
trains one on the first 30000 training images). Reference statistics come
from 12000 training images from REF_OFFSET (default 30000, images that model
did not see), post-drift ones from the images after them. The map is the one
lib/maintain/maintainer.c computes (realign_map): s = sqrt(var_ref/var_new)
clamped to [0.25, 4] (1 where a variance is ~0), c = mean_ref - s mean_new.
Needs numpy and the mmaint Python package (MMAINT_LIBRARY may name the
library)."""
import gzip
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import mmaint  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist/"


def idx(name):
    d = gzip.open(DATA + name).read()
    nd = d[3]
    dims = [int.from_bytes(d[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(d, np.uint8, offset=4 + 4 * nd).reshape(dims)


def bright(x):
    return (0.25 + 0.75 * x).astype(np.float32)


def realign_map(ref, new):
    mr, mn = ref.mean(0).astype(np.float64), new.mean(0).astype(np.float64)
    vr, vn = ref.var(0).astype(np.float64), new.var(0).astype(np.float64)
    ok = (vr > 1e-8) & (vn > 1e-8)
    s = np.where(ok, np.clip(np.sqrt(vr / np.where(ok, vn, 1.0)), 0.25, 4.0), 1.0)
    return s, mr - s * mn


def folded(path, s, c):
    m = mmaint.Model.load(path)
    w, b = m.get_weights(0)
    w = np.asarray(w, np.float64).reshape(-1, s.size)
    b = np.asarray(b, np.float64)
    m.set_weights(0, (w * s).astype(np.float32), (b + w @ c).astype(np.float32))
    return m


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    off = int(sys.argv[2]) if len(sys.argv) > 2 else 30000
    x = idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
    y = idx("train-labels-idx1-ubyte.gz").astype(np.int32)
    xt = idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255
    yt = idx("t10k-labels-idx1-ubyte.gz").astype(np.int32)
    ref = x[off:off + 12000]
    new_all = bright(x[off + 12000:off + 18000])
    m = mmaint.Model.load(path)
    print("| model | test accuracy, normal | brightened |")
    print("|---|---|---|")
    print("| as given | %.4f | %.4f |" % (m.evaluate(xt, yt)[1], m.evaluate(bright(xt), yt)[1]))
    for n in (100, 300, 1000, 5000):
        s, c = realign_map(ref, new_all[:n])
        print("| folded, statistics of %d post-drift samples | - | %.4f |"
              % (n, folded(path, s, c).evaluate(bright(xt), yt)[1]))
    s, c = realign_map(ref, new_all[:1000])
    train_x = np.concatenate([new_all[:800], ((ref[:4200] - c) / s).astype(np.float32)])
    train_y = np.concatenate([y[off + 12000:off + 12800], y[off:off + 4200]])
    for lr in (1e-3, 3e-4, 1e-4):
        f = folded(path, s, c)
        mmaint.Optimizer(f, "adam", learning_rate=lr, batch_size=64, epochs=2, seed=1).fit(
            train_x, train_y)
        print("| folded (1000), then Adam lr %g, 2 epochs | - | %.4f |"
              % (lr, f.evaluate(bright(xt), yt)[1]))


if __name__ == "__main__":
    main()
