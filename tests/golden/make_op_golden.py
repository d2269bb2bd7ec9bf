#!/usr/bin/python3
"""PyTorch golden values for the operators of issue 13 (forward and backward).

Regenerate (Debian's /usr/bin/python3 with python3-torch 1.13 and
python3-numpy; run from the top of the source tree):

    /usr/bin/python3 tests/golden/make_op_golden.py tests/data/op_golden.safetensors

This writes the file and then re-reads it with an independent parser and
checks every case against a float64 numpy re-implementation (the forward
values, and every gradient element by central differences). To check a
committed file without PyTorch:

    /usr/bin/python3 tests/golden/make_op_golden.py --check tests/data/op_golden.safetensors

Everything is deterministic: each case draws its inputs, parameters and
upstream gradient from its own torch.Generator seeded with crc32(case name)
(so adding a case changes no other), on one thread. Re-running on the same
torch build gives a byte-identical file; another build or CPU may change the
last bits of conv/matmul results, which the C tests absorb with tolerances
anyway. The test suite reads the committed file only; it never needs PyTorch.

File: one safetensors file (8-byte little-endian header length, JSON
header, raw little-endian data), readable with lib/model/mmfile.h
(mm_file_open, mm_file_meta, mm_file_tensor_info, mm_file_read_tensor).
Every tensor is F32 except the labels of the graph case (I32).

Metadata besides the cases: "golden" = "mmaint-op-golden 1" (this layout),
"generator" (this script) and "torch_version".

Cases. __metadata__["cases"] is a JSON array of the case names, in order. A
case name is "<op>.<variant>" with exactly one '.'; <op> is the operator.
__metadata__[<case>] is a JSON object of the case's attributes, always with
"op" (= <op>) and "training". Its tensors are "<case>.<field>":

  x, x2, x3        inputs (x2/x3 for add, mul, concat)
  weight, bias     parameters (PyTorch layouts: dense [out, in]; conv2d
                   [C_out, C_in/groups, kH, kW]; batchnorm [C]; layernorm
                   the normalized shape); absent when the op has none
  running_mean, running_var          batchnorm, before the forward
  running_mean_out, running_var_out  batchnorm, after it (training mode:
                   momentum 0.1, PyTorch convention, the unbiased batch
                   variance; eval mode: unchanged, equal to the inputs)
  y                forward output
  dy               the upstream gradient (random, shape of y); the loss is
                   L = sum(y * dy)
  dx, dx2, dx3     dL/dx etc. (same shape as the input; broadcast axes summed)
  dweight, dbias   dL/dweight, dL/dbias

Layouts: images NCHW, sequences [N, T, D], dense inputs [N, D]; the batch
axis is included in every shape and every axis number (ONNX style; negative
axes count from the end). Attributes: conv2d and pools "kernel" [kH, kW],
"stride" [sH, sW], "pads" in ONNX order [top, left, bottom, right] (=
[H_begin, W_begin, H_end, W_end]; asymmetric pads were applied with F.pad,
zeros for conv), "dilation" [dH, dW], "groups", "bias", "in_channels",
"out_channels"; pools "ceil_mode" false, avgpool "count_include_pad"; maxpool
pads never win (-inf). batchnorm "epsilon" 1e-5, "momentum" 0.1 (running =
(1 - momentum) * running + momentum * batch statistic; ONNX's momentum is
1 - this); "training" true = batch statistics (biased variance to
normalize), false = running statistics. layernorm "axis" (first normalized
axis), "normalized_shape", "epsilon". softmax/log_softmax "axis". add/mul
use numpy (ONNX multidirectional) broadcasting; a 0-d x2 is a scalar.
Inputs of activations with kinks are kept at least 0.1 away from them.

The graph case "resnet.block": one forward and backward of a residual CNN:
x -> stem conv -> relu -> [conv1 -> bn1 -> relu -> conv2 -> bn2] + skip ->
relu -> global average pool -> flatten -> dense -> logits, loss =
cross-entropy (mean over the batch) with the I32 labels. Its metadata holds
the graph (nodes in topological order; each node's output is named after
the node). Tensors: x, labels, "<node>.<param>" for every parameter and
batchnorm running statistic (before), "<node>.running_mean_out"/
"running_var_out" (after the training forward), y (training-mode logits),
loss (0-d), y_eval (eval-mode logits, with the running statistics before
the step), dx, and "<node>.d<param>" for every parameter. No optimizer
step is taken.
"""
import json
import math
import os
import struct
import sys
import zlib

import numpy as np

FORMAT = "mmaint-op-golden 1"


# --------------------------------------------------------------------------
# safetensors writer and (independent) reader
# --------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata):
    dtypes = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32"}
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, a in tensors.items():
        a = np.array(a, order="C")  # keeps 0-d (ascontiguousarray would not)
        le = a.astype(a.dtype.newbyteorder("<"), copy=False)
        raw = le.tobytes()
        header[name] = {"dtype": dtypes[le.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(tmp, path)


def read_safetensors(path):
    """Returns (tensors name -> numpy array, metadata dict); checks the layout."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data) and data[8:9] == b"{"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    meta = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in meta.values())
    types = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4")}
    spans, out = [], {}
    for name, t in header.items():
        assert set(t) == {"dtype", "shape", "data_offsets"}, name
        b, e = t["data_offsets"]
        dt = types[t["dtype"]]
        count = int(np.prod(t["shape"], dtype=np.int64))
        assert e - b == count * dt.itemsize, name
        out[name] = np.frombuffer(body[b:e], dtype=dt).reshape(t["shape"])
        spans.append((b, e))
    pos = 0
    for b, e in sorted(spans):  # contiguous, no gaps, no overlaps (mmfile's rule)
        assert b == pos
        pos = e
    assert pos == len(body)
    return out, meta


# --------------------------------------------------------------------------
# generation with PyTorch
# --------------------------------------------------------------------------

def generate(path):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tensors, meta, cases = {}, {}, []

    def gen(case):
        return torch.Generator().manual_seed(zlib.crc32(case.encode()))

    def randn(g, shape, scale=1.0):
        return torch.randn(tuple(shape), generator=g, dtype=torch.float32) * scale

    def away(x, kinks, gap=0.1):
        for k in kinks:
            sign = (x >= k).float() * 2 - 1
            x = torch.where((x - k).abs() < gap, k + gap * sign, x)
        return x

    def store(case, attrs, fields):
        assert case.count(".") == 1 and case.split(".")[0] == attrs["op"], case
        assert case not in meta
        attrs = dict(attrs)
        attrs.setdefault("training", True)
        cases.append(case)
        meta[case] = json.dumps(attrs, separators=(",", ":"))
        for k, v in fields.items():
            a = v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            if a.dtype == np.float64:
                raise AssertionError("float64 tensor %s.%s" % (case, k))
            tensors["%s.%s" % (case, k)] = np.array(a, order="C")

    def run(case, attrs, g, inputs, params, fn):
        """inputs/params: ordered name -> float32 tensor; fn(*inputs, *params) -> y."""
        leaves = {k: v.clone().requires_grad_(True) for k, v in {**inputs, **params}.items()}
        y = fn(*leaves.values())
        dy = randn(g, y.shape)
        y.backward(dy)
        fields = dict(inputs)
        fields.update(params)
        fields["y"] = y
        fields["dy"] = dy
        for k, v in leaves.items():
            fields["d" + k] = v.grad
        store(case, attrs, fields)

    # ---- dense ----------------------------------------------------------
    for case, xs, n_out, bias in [("dense.bias", (3, 5), 4, True),
                                  ("dense.nobias", (3, 5), 4, False),
                                  ("dense.seq", (2, 3, 5), 4, True)]:
        g = gen(case)
        n_in = xs[-1]
        x = randn(g, xs)
        params = {"weight": randn(g, (n_out, n_in), 1 / math.sqrt(n_in))}
        if bias:
            params["bias"] = randn(g, (n_out,), 0.5)
        run(case, {"op": "dense", "in": n_in, "out": n_out, "bias": bias,
                   "activation": "identity"}, g, {"x": x}, params,
            lambda x, w, b=None: F.linear(x, w, b))

    # ---- activations ----------------------------------------------------
    ashape = (2, 3, 4, 5)
    acts = [
        ("relu.default", {"op": "relu"}, 2.0, [0.0], F.relu),
        ("leaky_relu.alpha_0p1", {"op": "leaky_relu", "alpha": 0.1}, 2.0, [0.0],
         lambda x: F.leaky_relu(x, 0.1)),
        ("tanh.default", {"op": "tanh"}, 1.5, [], torch.tanh),
        ("sigmoid.default", {"op": "sigmoid"}, 2.5, [], torch.sigmoid),
        ("gelu.erf", {"op": "gelu", "approximate": "none"}, 2.0, [],
         lambda x: F.gelu(x, approximate="none")),
        ("gelu.tanh", {"op": "gelu", "approximate": "tanh"}, 2.0, [],
         lambda x: F.gelu(x, approximate="tanh")),
        ("silu.default", {"op": "silu"}, 2.5, [], F.silu),
        ("hardsigmoid.default", {"op": "hardsigmoid", "alpha": 1.0 / 6.0, "beta": 0.5,
                                 "formula": "relu6(x + 3) / 6"}, 3.0, [-3.0, 3.0],
         F.hardsigmoid),
        ("hardswish.default", {"op": "hardswish", "formula": "x * relu6(x + 3) / 6"}, 3.0,
         [-3.0, 3.0], F.hardswish),
        ("clip.relu6", {"op": "clip", "min": 0.0, "max": 6.0}, 4.0, [0.0, 6.0],
         lambda x: torch.clamp(x, 0.0, 6.0)),
        ("clip.min_m0p5_max_0p7", {"op": "clip", "min": -0.5, "max": 0.7}, 1.0, [-0.5, 0.7],
         lambda x: torch.clamp(x, -0.5, 0.7)),
    ]
    for case, attrs, scale, kinks, fn in acts:
        g = gen(case)
        x = away(randn(g, ashape, scale), kinks)
        run(case, attrs, g, {"x": x}, {}, fn)

    for op, fn in [("softmax", F.softmax), ("log_softmax", F.log_softmax)]:
        for variant, shape, axis, scale, shift in [("axis_last", (3, 2, 7), -1, 2.0, 0.0),
                                                   ("axis_channel", (2, 4, 3, 5), 1, 2.0, 0.0),
                                                   ("axis_last_large", (3, 6), -1, 3.0, 200.0)]:
            case = "%s.%s" % (op, variant)
            g = gen(case)
            x = randn(g, shape, scale) + shift
            run(case, {"op": op, "axis": axis}, g, {"x": x}, {},
                lambda x, fn=fn, axis=axis: fn(x, dim=axis))

    # ---- add / mul --------------------------------------------------------
    bshapes = [("same", (2, 3, 4, 5), (2, 3, 4, 5)),
               ("bcast_c11", (2, 3, 4, 5), (3, 1, 1)),
               ("bcast_scalar0d", (2, 3, 4, 5), ()),
               ("bcast_scalar1", (2, 3, 4, 5), (1,)),
               ("bcast_w", (2, 3, 4, 5), (5,)),
               ("bcast_n1hw", (2, 3, 4, 5), (2, 1, 4, 5)),
               ("bcast_lhs_c11", (3, 1, 1), (2, 3, 4, 5)),
               ("bcast_both", (2, 3, 1, 5), (3, 4, 1)),
               ("bcast_seq_d", (2, 3, 6), (6,))]
    for op, fn in [("add", torch.add), ("mul", torch.mul)]:
        for variant, s1, s2 in bshapes:
            case = "%s.%s" % (op, variant)
            g = gen(case)
            x, x2 = randn(g, s1), randn(g, s2)
            run(case, {"op": op, "broadcast": "numpy"}, g, {"x": x, "x2": x2}, {}, fn)

    # ---- concat / flatten / reshape ---------------------------------------
    for case, shapes, axis in [("concat.axis1_2in", [(2, 3, 4, 5), (2, 2, 4, 5)], 1),
                               ("concat.axis1_3in", [(2, 1, 3, 3), (2, 3, 3, 3), (2, 2, 3, 3)], 1),
                               ("concat.axis_last_2in", [(2, 3, 4), (2, 3, 2)], -1)]:
        g = gen(case)
        ins = {}
        for i, s in enumerate(shapes):
            ins["x" if i == 0 else "x%d" % (i + 1)] = randn(g, s)
        run(case, {"op": "concat", "axis": axis, "inputs": len(shapes)}, g, ins, {},
            lambda *xs, axis=axis: torch.cat(xs, dim=axis))

    case = "flatten.axis1"
    g = gen(case)
    run(case, {"op": "flatten", "axis": 1}, g, {"x": randn(g, (2, 3, 4, 5))}, {},
        lambda x: torch.flatten(x, 1))
    for case, s_in, s_out in [("reshape.nchw_to_3d", (2, 3, 4, 5), (2, 4, 15)),
                              ("reshape.2d_to_nchw", (2, 12), (2, 3, 2, 2))]:
        g = gen(case)
        run(case, {"op": "reshape", "shape": list(s_out)}, g, {"x": randn(g, s_in)}, {},
            lambda x, s=s_out: x.reshape(s))

    # ---- conv2d -----------------------------------------------------------
    def pair_name(p):
        return str(p[0]) if p[0] == p[1] else "%dx%d" % tuple(p)

    def pads_name(p):
        t, l, b, r = p
        if t == l == b == r:
            return str(t)
        if t == b and l == r:
            return "%dx%d" % (t, l)
        return "%d-%d-%d-%d" % (t, l, b, r)

    # (N, C_in, H, W, C_out, kernel, stride, pads [t,l,b,r], dilation, groups, bias, tag)
    convs = [
        (2, 3, 6, 5, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True, ""),
        (2, 3, 7, 7, 4, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, True, ""),
        (2, 3, 5, 5, 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, True, ""),
        (2, 2, 7, 6, 3, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1, True, ""),
        (2, 3, 5, 7, 2, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, True, ""),
        (2, 2, 5, 5, 3, (3, 3), (1, 1), (2, 2, 2, 2), (1, 1), 1, True, ""),
        (2, 2, 7, 7, 3, (3, 3), (1, 1), (0, 0, 0, 0), (2, 2), 1, True, ""),
        (2, 2, 7, 6, 3, (3, 3), (2, 2), (2, 2, 2, 2), (2, 2), 1, True, ""),
        (2, 4, 5, 6, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2, True, ""),
        (2, 4, 6, 5, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4, True, "_dw_m1"),
        (2, 4, 7, 7, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 4, True, "_dw_m2"),
        (2, 3, 5, 6, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, False, "_nobias"),
        (2, 3, 6, 5, 4, (3, 1), (1, 1), (1, 0, 1, 0), (1, 1), 1, True, ""),
        (2, 2, 7, 7, 3, (2, 2), (3, 3), (1, 1, 1, 1), (1, 1), 1, True, ""),
        (2, 2, 6, 6, 3, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1, True, ""),
        (2, 2, 5, 6, 3, (3, 3), (1, 1), (0, 1, 1, 2), (1, 1), 1, True, ""),
        (2, 2, 6, 6, 3, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), 1, True, ""),
        (2, 2, 6, 7, 3, (3, 3), (2, 1), (1, 1, 1, 1), (1, 2), 1, True, ""),
        (3, 1, 6, 6, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True, "_cin1"),
    ]
    for n, cin, h, w, cout, k, s, p, d, groups, bias, tag in convs:
        case = "conv2d.k%s_s%s_p%s_d%s_g%d%s" % (pair_name(k), pair_name(s), pads_name(p),
                                               pair_name(d), groups, tag)
        g = gen(case)
        x = randn(g, (n, cin, h, w))
        fan_in = cin // groups * k[0] * k[1]
        params = {"weight": randn(g, (cout, cin // groups, k[0], k[1]), 1 / math.sqrt(fan_in))}
        if bias:
            params["bias"] = randn(g, (cout,), 0.5)
        t, l, b, r = p

        def conv(x, wt, bs=None, s=s, p=p, d=d, groups=groups):
            t, l, b, r = p
            if t == b and l == r:
                return F.conv2d(x, wt, bs, stride=s, padding=(t, l), dilation=d, groups=groups)
            return F.conv2d(F.pad(x, (l, r, t, b)), wt, bs, stride=s, dilation=d, groups=groups)

        run(case, {"op": "conv2d", "in_channels": cin, "out_channels": cout, "kernel": list(k),
                   "stride": list(s), "pads": list(p), "dilation": list(d), "groups": groups,
                   "bias": bias}, g, {"x": x}, params, conv)

    # ---- pooling ----------------------------------------------------------
    # (op, N, C, H, W, kernel, stride, pads (symmetric [pH, pW]), count_include_pad, tag)
    pools = [
        ("maxpool", 2, 3, 6, 6, (2, 2), (2, 2), (0, 0), None, ""),
        ("maxpool", 2, 3, 5, 7, (2, 2), (2, 2), (0, 0), None, "_odd"),
        ("maxpool", 2, 3, 7, 7, (3, 3), (2, 2), (1, 1), None, ""),
        ("maxpool", 2, 3, 6, 5, (3, 3), (2, 2), (1, 1), None, "_6x5"),
        ("maxpool", 2, 2, 6, 5, (3, 2), (2, 1), (1, 0), None, ""),
        ("maxpool", 2, 2, 7, 7, (2, 2), (3, 3), (0, 0), None, ""),
        ("avgpool", 2, 3, 6, 6, (2, 2), (2, 2), (0, 0), True, ""),
        ("avgpool", 2, 3, 5, 7, (2, 2), (2, 2), (0, 0), True, "_odd"),
        ("avgpool", 2, 3, 5, 5, (3, 3), (1, 1), (1, 1), True, "_incl"),
        ("avgpool", 2, 3, 5, 5, (3, 3), (1, 1), (1, 1), False, "_excl"),
        ("avgpool", 2, 2, 6, 7, (3, 3), (2, 2), (1, 1), True, "_incl"),
        ("avgpool", 2, 2, 6, 7, (3, 3), (2, 2), (1, 1), False, "_excl"),
    ]
    for op, n, c, h, w, k, s, p, incl, tag in pools:
        case = "%s.k%s_s%s_p%s%s" % (op, pair_name(k), pair_name(s), pair_name(p), tag)
        g = gen(case)
        x = randn(g, (n, c, h, w))
        attrs = {"op": op, "kernel": list(k), "stride": list(s), "pads": [p[0], p[1], p[0], p[1]],
                 "ceil_mode": False}
        if op == "maxpool":
            fn = lambda x, k=k, s=s, p=p: F.max_pool2d(x, k, s, p, ceil_mode=False)
        else:
            attrs["count_include_pad"] = incl
            fn = lambda x, k=k, s=s, p=p, incl=incl: F.avg_pool2d(
                x, k, s, p, ceil_mode=False, count_include_pad=incl)
        run(case, attrs, g, {"x": x}, {}, fn)

    for case, shape in [("globalavgpool.default", (2, 3, 5, 7)),
                        ("globalavgpool.c4_6x6", (3, 4, 6, 6))]:
        g = gen(case)
        run(case, {"op": "globalavgpool", "keepdims": True}, g, {"x": randn(g, shape)}, {},
            lambda x: x.mean(dim=(2, 3), keepdim=True))

    # ---- batch normalization ----------------------------------------------
    for case, shape, training in [("batchnorm.train", (3, 4, 5, 6), True),
                                  ("batchnorm.eval", (3, 4, 5, 6), False),
                                  ("batchnorm.train_2d", (6, 4), True),
                                  ("batchnorm.eval_2d", (6, 4), False)]:
        g = gen(case)
        c = shape[1]
        x = randn(g, shape, 1.5) + 0.3
        weight = 1.0 + randn(g, (c,), 0.3)
        bias = randn(g, (c,), 0.3)
        rm = randn(g, (c,), 0.2)
        rv = 0.5 + torch.rand(c, generator=g)
        rm_out, rv_out = rm.clone(), rv.clone()
        xl, wl, bl = (v.clone().requires_grad_(True) for v in (x, weight, bias))
        y = F.batch_norm(xl, rm_out, rv_out, wl, bl, training=training, momentum=0.1, eps=1e-5)
        dy = randn(g, y.shape)
        y.backward(dy)
        store(case, {"op": "batchnorm", "channels": c, "epsilon": 1e-5, "momentum": 0.1,
                     "momentum_convention": "running = (1 - momentum) * running + momentum * batch",
                     "running_var_update": "unbiased", "training": training},
              {"x": x, "weight": weight, "bias": bias, "running_mean": rm, "running_var": rv,
               "y": y, "dy": dy, "dx": xl.grad, "dweight": wl.grad, "dbias": bl.grad,
               "running_mean_out": rm_out, "running_var_out": rv_out})

    # ---- layer normalization ----------------------------------------------
    for case, shape, axis in [("layernorm.last", (2, 3, 8), -1),
                              ("layernorm.chw", (2, 3, 4, 5), 1)]:
        g = gen(case)
        ns = shape[axis:]
        x = randn(g, shape, 1.5) + 0.5
        params = {"weight": 1.0 + randn(g, ns, 0.3), "bias": randn(g, ns, 0.3)}
        run(case, {"op": "layernorm", "axis": axis, "normalized_shape": list(ns),
                   "epsilon": 1e-5, "elementwise_affine": True}, g, {"x": x}, params,
            lambda x, w, b, ns=ns: F.layer_norm(x, ns, w, b, 1e-5))

    # ---- end to end: a residual CNN block ----------------------------------
    case = "resnet.block"
    g = gen(case)
    n, cin, c, hw, classes = 3, 2, 4, 6, 3
    conv_attrs = {"kernel": [3, 3], "stride": [1, 1], "pads": [1, 1, 1, 1],
                  "dilation": [1, 1], "groups": 1}
    bn_attrs = {"epsilon": 1e-5, "momentum": 0.1, "training": True}
    nodes = [
        dict(name="stem", op="conv2d", inputs=["x"], in_channels=cin, out_channels=c,
             bias=True, **conv_attrs),
        dict(name="stem_relu", op="relu", inputs=["stem"]),
        dict(name="conv1", op="conv2d", inputs=["stem_relu"], in_channels=c, out_channels=c,
             bias=False, **conv_attrs),
        dict(name="bn1", op="batchnorm", inputs=["conv1"], channels=c, **bn_attrs),
        dict(name="relu1", op="relu", inputs=["bn1"]),
        dict(name="conv2", op="conv2d", inputs=["relu1"], in_channels=c, out_channels=c,
             bias=False, **conv_attrs),
        dict(name="bn2", op="batchnorm", inputs=["conv2"], channels=c, **bn_attrs),
        dict(name="add", op="add", inputs=["bn2", "stem_relu"]),
        dict(name="relu2", op="relu", inputs=["add"]),
        dict(name="gap", op="globalavgpool", inputs=["relu2"], keepdims=True),
        dict(name="flatten", op="flatten", inputs=["gap"], axis=1),
        dict(name="fc", op="dense", inputs=["flatten"], **{"in": c, "out": classes},
             bias=True, activation="identity"),
    ]
    graph = {"op": "resnet", "training": True, "inputs": [{"name": "x", "shape": [n, cin, hw, hw]}],
             "labels": "labels", "outputs": ["fc"], "nodes": nodes,
             "loss": {"op": "cross_entropy", "reduction": "mean", "logits": "fc",
                      "labels": "labels"},
             "y": "fc (training mode)", "y_eval": "fc (eval mode, running statistics before)"}
    x = randn(g, (n, cin, hw, hw))
    labels = torch.tensor([2, 0, 1], dtype=torch.int32)
    params = {
        "stem.weight": randn(g, (c, cin, 3, 3), 1 / math.sqrt(cin * 9)),
        "stem.bias": randn(g, (c,), 0.2),
        "conv1.weight": randn(g, (c, c, 3, 3), 1 / math.sqrt(c * 9)),
        "bn1.weight": 1.0 + randn(g, (c,), 0.2),
        "bn1.bias": randn(g, (c,), 0.2),
        "conv2.weight": randn(g, (c, c, 3, 3), 1 / math.sqrt(c * 9)),
        "bn2.weight": 1.0 + randn(g, (c,), 0.2),
        "bn2.bias": randn(g, (c,), 0.2),
        "fc.weight": randn(g, (classes, c), 1 / math.sqrt(c)),
        "fc.bias": randn(g, (classes,), 0.2),
    }
    running = {
        "bn1.running_mean": randn(g, (c,), 0.2),
        "bn1.running_var": 0.5 + torch.rand(c, generator=g),
        "bn2.running_mean": randn(g, (c,), 0.2),
        "bn2.running_var": 0.5 + torch.rand(c, generator=g),
    }

    def model(x, P, R, training):
        t = F.relu(F.conv2d(x, P["stem.weight"], P["stem.bias"], padding=1))
        u = F.conv2d(t, P["conv1.weight"], None, padding=1)
        u = F.batch_norm(u, R["bn1.running_mean"], R["bn1.running_var"], P["bn1.weight"],
                         P["bn1.bias"], training=training, momentum=0.1, eps=1e-5)
        u = F.relu(u)
        u = F.conv2d(u, P["conv2.weight"], None, padding=1)
        u = F.batch_norm(u, R["bn2.running_mean"], R["bn2.running_var"], P["bn2.weight"],
                         P["bn2.bias"], training=training, momentum=0.1, eps=1e-5)
        v = F.relu(u + t)
        v = torch.flatten(v.mean(dim=(2, 3), keepdim=True), 1)
        return F.linear(v, P["fc.weight"], P["fc.bias"])

    with torch.no_grad():
        y_eval = model(x, params, {k: v.clone() for k, v in running.items()}, False)
    R = {k: v.clone() for k, v in running.items()}
    P = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    xl = x.clone().requires_grad_(True)
    y = model(xl, P, R, True)
    loss = F.cross_entropy(y, labels.long())
    loss.backward()
    fields = {"x": x, "labels": labels}
    fields.update(params)
    fields.update(running)
    for k in running:
        fields[k + "_out"] = R[k]
    fields.update({"y": y, "loss": loss, "y_eval": y_eval, "dx": xl.grad})
    for k, v in P.items():
        node, name = k.split(".")
        fields["%s.d%s" % (node, name)] = v.grad
    cases.append(case)
    meta[case] = json.dumps(graph, separators=(",", ":"))
    for k, v in fields.items():
        tensors["%s.%s" % (case, k)] = np.array(v.detach().numpy(), order="C")

    metadata = {"golden": FORMAT, "generator": "tests/golden/make_op_golden.py",
                "torch_version": torch.__version__,
                "cases": json.dumps(cases, separators=(",", ":"))}
    metadata.update(meta)
    for k, a in tensors.items():
        assert a.dtype in (np.float32, np.int32), k
        assert np.all(np.isfinite(a)), k
    write_safetensors(path, tensors, metadata)
    print("wrote %s: %d cases, %d tensors, %d bytes" % (path, len(cases), len(tensors),
                                                       os.path.getsize(path)))


# --------------------------------------------------------------------------
# independent check: float64 numpy forward of every op, gradients by central
# differences along a random direction
# --------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def np_conv2d(x, w, b, a):
    t, l, bo, r = a["pads"]
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    groups = a["groups"]
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)))
    n, cin, hp, wp = xp.shape
    cout, cig, kh, kw = w.shape
    ho = (hp - (dh * (kh - 1) + 1)) // sh + 1
    wo = (wp - (dw * (kw - 1) + 1)) // sw + 1
    cog = cout // groups
    y = np.zeros((n, cout, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh,
                       j * dw: j * dw + sw * (wo - 1) + 1: sw]
            for gi in range(groups):
                y[:, gi * cog:(gi + 1) * cog] += np.einsum(
                    "nchw,oc->nohw", patch[:, gi * cig:(gi + 1) * cig],
                    w[gi * cog:(gi + 1) * cog, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def np_pool(x, a, op):
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    t, l, bo, r = a["pads"]
    fill = -np.inf if op == "maxpool" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)), constant_values=fill)
    ones = np.pad(np.ones(x.shape[2:]), ((t, bo), (l, r)))
    ho = (xp.shape[2] - kh) // sh + 1
    wo = (xp.shape[3] - kw) // sw + 1
    y = np.zeros(x.shape[:2] + (ho, wo))
    for oi in range(ho):
        for oj in range(wo):
            win = xp[:, :, oi * sh: oi * sh + kh, oj * sw: oj * sw + kw]
            if op == "maxpool":
                y[:, :, oi, oj] = win.max(axis=(2, 3))
            else:
                cnt = kh * kw if a["count_include_pad"] else \
                    ones[oi * sh: oi * sh + kh, oj * sw: oj * sw + kw].sum()
                y[:, :, oi, oj] = win.sum(axis=(2, 3)) / cnt
    return y


def np_batchnorm(x, w, b, rm, rv, a):
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    if a["training"]:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        cnt = x.size // x.shape[1]
        rm_out = (1 - a["momentum"]) * rm + a["momentum"] * mean
        rv_out = (1 - a["momentum"]) * rv + a["momentum"] * var * cnt / (cnt - 1)
    else:
        mean, var, rm_out, rv_out = rm, rv, rm, rv
    y = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + a["epsilon"])
    return y * w.reshape(bshape) + b.reshape(bshape), rm_out, rv_out


def np_softmax(x, axis, log=False):
    z = x - x.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def np_forward(a, f):
    """f: field -> float64 array. Returns y (and running stats for batchnorm)."""
    op, x = a["op"], f.get("x")
    if op == "dense":
        return x @ f["weight"].T + (f["bias"] if a["bias"] else 0.0)
    if op == "relu":
        return np.maximum(x, 0)
    if op == "leaky_relu":
        return np.where(x > 0, x, a["alpha"] * x)
    if op == "tanh":
        return np.tanh(x)
    if op == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if op == "gelu":
        if a["approximate"] == "none":
            return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if op == "silu":
        return x / (1 + np.exp(-x))
    if op == "hardsigmoid":
        return np.clip(a["alpha"] * x + a["beta"], 0, 1)
    if op == "hardswish":
        return x * np.clip(x + 3, 0, 6) / 6
    if op == "clip":
        return np.clip(x, a["min"], a["max"])
    if op in ("softmax", "log_softmax"):
        return np_softmax(x, a["axis"], op == "log_softmax")
    if op == "add":
        return x + f["x2"]
    if op == "mul":
        return x * f["x2"]
    if op == "concat":
        return np.concatenate([f[k] for k in ["x", "x2", "x3"][:a["inputs"]]], axis=a["axis"])
    if op == "flatten":
        return x.reshape(x.shape[0], -1)
    if op == "reshape":
        return x.reshape(a["shape"])
    if op == "conv2d":
        return np_conv2d(x, f["weight"], f.get("bias"), a)
    if op in ("maxpool", "avgpool"):
        return np_pool(x, a, op)
    if op == "globalavgpool":
        return x.mean(axis=(2, 3), keepdims=True)
    if op == "batchnorm":
        return np_batchnorm(x, f["weight"], f["bias"], f["running_mean"], f["running_var"], a)
    if op == "layernorm":
        axes = tuple(range(a["axis"] % x.ndim, x.ndim))
        m = x.mean(axis=axes, keepdims=True)
        v = x.var(axis=axes, keepdims=True)
        return (x - m) / np.sqrt(v + a["epsilon"]) * f["weight"] + f["bias"]
    raise AssertionError("no numpy reference for op " + op)


def np_graph(a, f, training):
    """The resnet.block graph; returns (logits, loss, running stats out)."""
    vals, running = {"x": f["x"]}, {}
    for nd in a["nodes"]:
        ins = [vals[i] for i in nd["inputs"]]
        nf = {"x": ins[0]}
        if len(ins) > 1:
            nf["x2"] = ins[1]
        for k in ("weight", "bias", "running_mean", "running_var"):
            if nd["name"] + "." + k in f:
                nf[k] = f[nd["name"] + "." + k]
        attrs = dict(nd, training=training)
        out = np_forward(attrs, nf)
        if nd["op"] == "batchnorm":
            out, running[nd["name"] + ".running_mean_out"], \
                running[nd["name"] + ".running_var_out"] = out
        vals[nd["name"]] = out
    logits = vals[a["loss"]["logits"]]
    lab = f["labels"].astype(np.int64)
    loss = -np_softmax(logits, -1, log=True)[np.arange(len(lab)), lab].mean()
    return logits, loss, running


def assert_close(got, want, what):
    """float32 results against the float64 reference, relative to the tensor's largest value."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, "%s: shape %s, reference %s" % (what, got.shape, want.shape)
    err = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-3)) if got.size else 0.0
    assert err < 2e-6, "%s: error %.3g" % (what, err)
    return err


def check(path):
    t, meta = read_safetensors(path)
    size = os.path.getsize(path)
    assert meta["golden"] == FORMAT
    cases = json.loads(meta["cases"])
    assert len(set(cases)) == len(cases)
    used, worst, fwd = set(), 0.0, 0.0
    h = 1e-5
    for case in cases:
        a = json.loads(meta[case])
        prefix = case + "."
        fields = {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}
        used.update(prefix + k for k in fields)
        assert all(v.dtype == np.float32 for k, v in fields.items() if k != "labels"), case
        f64 = {k: v.astype(np.float64) for k, v in fields.items()}
        if case == "resnet.block":
            y, loss, running = np_graph(a, f64, True)
            fwd = max(fwd, assert_close(fields["y"], y, case + " y"))
            fwd = max(fwd, assert_close(fields["loss"], loss, case + " loss"))
            for k, v in running.items():
                fwd = max(fwd, assert_close(fields[k], v, case + " " + k))
            y_eval, _, _ = np_graph(a, f64, False)
            fwd = max(fwd, assert_close(fields["y_eval"], y_eval, case + " y_eval"))
            grads = {k: "d" + k if "." not in k else k.replace(".", ".d")
                     for k in f64 if k == "x" or k.endswith((".weight", ".bias"))}

            def loss_of(f):
                return np_graph(a, f, True)[1]
        else:
            out = np_forward(a, f64)
            if a["op"] == "batchnorm":
                out, rm, rv = out
                fwd = max(fwd, assert_close(fields["running_mean_out"], rm, case))
                fwd = max(fwd, assert_close(fields["running_var_out"], rv, case))
            fwd = max(fwd, assert_close(fields["y"], out, case + " y"))
            assert fields["dy"].shape == fields["y"].shape, case
            grads = {k: "d" + k for k in ("x", "x2", "x3", "weight", "bias") if k in fields}
            dy = f64["dy"]

            def loss_of(f):
                o = np_forward(a, f)
                return float(((o[0] if a["op"] == "batchnorm" else o) * dy).sum())
        for k, gk in grads.items():
            assert fields[gk].shape == fields[k].shape, (case, gk)
            # every element by central differences (the tensors are small)
            num = np.zeros(f64[k].size)
            for i in range(f64[k].size):
                fp, fm = dict(f64), dict(f64)
                fp[k] = f64[k].copy().reshape(-1)
                fm[k] = f64[k].copy().reshape(-1)
                fp[k][i] += h
                fm[k][i] -= h
                fp[k] = fp[k].reshape(f64[k].shape)
                fm[k] = fm[k].reshape(f64[k].shape)
                num[i] = (loss_of(fp) - loss_of(fm)) / (2 * h)
            ana = f64[gk].reshape(-1)
            scale = np.abs(ana).max() + 1e-3
            err = float(np.abs(num - ana).max() / scale)
            worst = max(worst, err)
            i = int(np.abs(num - ana).argmax())
            assert err < 1e-5, "%s %s[%d]: numeric %.9g analytic %.9g" % (case, gk, i, num[i],
                                                                           ana[i])
    assert used == set(t), "tensors outside the listed cases: %s" % sorted(set(t) - used)
    # a few values by hand
    x, y = t["relu.default.x"], t["relu.default.y"]
    assert y[0, 0, 0, 0] == max(x[0, 0, 0, 0], 0)
    a = json.loads(meta["conv2d.k3_s2_p1_d1_g1"])
    assert a["stride"] == [2, 2] and a["pads"] == [1, 1, 1, 1] and a["groups"] == 1
    assert t["conv2d.k3_s2_p1_d1_g1.y"].shape == (2, 4, 4, 4)
    assert t["conv2d.k3_s1_p0-1-1-2_d1_g1.y"].shape == (2, 3, 4, 7)
    assert t["add.bcast_both.y"].shape == (2, 3, 4, 5)
    assert np.allclose(t["add.bcast_c11.dx2"].ravel(), t["add.bcast_c11.dy"].sum(axis=(0, 2, 3)),
                       atol=1e-5)
    print("checked %s: %d cases, %d tensors, %d bytes; worst error relative to the tensor's "
          "largest value: forward %.2g, gradients %.2g"
          % (path, len(cases), len(t), size, fwd, worst))
    assert size < 1 << 20


def main():
    args = sys.argv[1:]
    if args and args[0] == "--check":
        check(args[1] if len(args) > 1 else "tests/data/op_golden.safetensors")
        return
    path = args[0] if args else "tests/data/op_golden.safetensors"
    generate(path)
    check(path)


if __name__ == "__main__":
    main()
