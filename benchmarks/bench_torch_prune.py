#!/usr/bin/python3
"""PyTorch reference point for the pruning benchmarks (issue 3).

Trains 784-256-128-10 relu the foundation issue's way (Adam lr 1e-3, batch
64, 3 shuffled epochs, seed fixed), then prunes copies of it with
torch.nn.utils.prune.global_unstructured (L1Unstructured over the three
weight matrices, biases untouched, no fine-tuning) and reports the test
accuracy of each, one JSON object per line on stdout:

    {"impl": "torch", "bench": "prune_ref", "sparsity": 0.9, "test_accuracy": ...}

    bench_torch_prune.py [--sparsities 0.5,0.8,0.9,0.95] [--seed 42]

Run with Debian's /usr/bin/python3 (python3-torch 1.13, numpy); data and
model as in bench_torch.py (imported from this directory). One thread.
"""
import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import BATCH, emit, load, make_model  # noqa: E402

import torch  # noqa: E402
from torch.nn.utils import prune  # noqa: E402


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sparsities", default="0.5,0.8,0.9,0.95")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    x, y = load("train")
    xt, yt = load("test")
    model = make_model(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            crit(model(x[idx]), y[idx]).backward()
            opt.step()
    dense = accuracy(model, xt, yt)
    emit(bench="prune_ref", sparsity=0.0, test_accuracy=dense,
         recipe="adam lr=1e-3 batch=64 epochs=%d seed=%d" % (args.epochs, args.seed),
         seconds=time.perf_counter() - t0)
    for s in [float(v) for v in args.sparsities.split(",") if v]:
        m = copy.deepcopy(model)
        params = [(mod, "weight") for mod in m if isinstance(mod, torch.nn.Linear)]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=s)
        w = sum(mod.weight.numel() for mod, _ in params)
        z = sum(int((mod.weight == 0).sum()) for mod, _ in params)
        emit(bench="prune_ref", sparsity=s, method="global_unstructured L1Unstructured",
             fine_tune_epochs=0, test_accuracy=accuracy(m, xt, yt),
             test_accuracy_before=dense, weight_sparsity=z / w,
             layer_sparsity=[round(float((mod.weight == 0).float().mean()), 4)
                             for mod, _ in params])


if __name__ == "__main__":
    sys.exit(main())
