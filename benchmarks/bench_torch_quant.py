#!/usr/bin/python3
"""PyTorch reference for the quantization benchmarks (issue 4).

The float model is *ours*: the weights of the mmaint model file (a
safetensors file: 8-byte header length, JSON header, little-endian F32
tensors "layers.<i>.weight" [out, in] and "layers.<i>.bias") are read with
numpy into torch.nn.Linear layers (relu between them), so both libraries
quantize the same trained weights. PyTorch's quantization is
torch.quantization.quantize_dynamic({nn.Linear}, dtype=torch.qint8): int8
weights (per-tensor, symmetric), activations quantized per batch at run time.
Engine: onednn if this torch build has it, else fbgemm.

One JSON object per line on stdout:

    bench_torch_quant.py accuracy --model FP32.mmf
        {"impl": "torch", "bench": "quant_ref", "test_accuracy_float": ...,
         "test_accuracy_int8_dynamic": ..., "engine": ..., "state_dict_bytes": ...}
    bench_torch_quant.py infer --model FP32.mmf --impl fp32|int8 --batch 1|256 [--seconds S]
        {"impl": "torch", "bench": "quant_infer1", "variant": "int8", "samples_per_s": ...}

Run with Debian's /usr/bin/python3 (python3-torch 1.13, numpy); data as in
bench_torch.py (imported from this directory). One thread.
"""
import argparse
import io
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import emit, load, timed_chunks  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def engine():
    engines = torch.backends.quantized.supported_engines
    for e in ("onednn", "fbgemm"):
        if e in engines:
            torch.backends.quantized.engine = e
            return e
    return torch.backends.quantized.engine


def read_mmf(path):
    """{name: np.ndarray} of the F32 tensors of a safetensors (mmaint) file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise SystemExit("bench_torch_quant.py: %s: tensor %s is %s, not F32 (give the float "
                             "model)" % (path, name, t["dtype"]))
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[base + a:base + b], dtype="<f4").reshape(t["shape"]).copy()
    return out


def model_from_mmf(path):
    w = read_mmf(path)
    n = len([k for k in w if k.endswith(".weight")])
    mods = []
    for i in range(n):
        W, b = w["layers.%d.weight" % i], w["layers.%d.bias" % i]
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i + 1 < n:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods).eval()


def quantized(model):
    return torch.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def state_bytes(model):
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return len(buf.getvalue())


def cmd_accuracy(args):
    eng = engine()
    xt, yt = load("test")
    f = model_from_mmf(args.model)
    q = quantized(f)
    emit(bench="quant_ref", engine=eng, method="quantize_dynamic qint8 (nn.Linear)",
         weights="mmaint float model " + args.model,
         test_accuracy_float=accuracy(f, xt, yt), test_accuracy_int8_dynamic=accuracy(q, xt, yt),
         state_dict_bytes_float=state_bytes(f), state_dict_bytes_int8=state_bytes(q))


def cmd_infer(args):
    eng = engine()
    x, _ = load("test")
    model = model_from_mmf(args.model)
    if args.impl == "int8":
        model = quantized(model)
    batch = args.batch
    n = x.shape[0] // batch * batch
    xs = [x[i:i + batch].contiguous() for i in range(0, n, batch)]
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
    emit(bench="quant_infer%d" % batch, variant=args.impl, engine=eng, samples_per_s=rate,
         samples=cnt, seconds=el)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["accuracy", "infer"])
    p.add_argument("--model", required=True, help="the float mmaint model file")
    p.add_argument("--impl", choices=["fp32", "int8"], default="int8")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.0)
    args = p.parse_args()
    if args.step == "accuracy":
        cmd_accuracy(args)
    else:
        cmd_infer(args)


if __name__ == "__main__":
    sys.exit(main())
