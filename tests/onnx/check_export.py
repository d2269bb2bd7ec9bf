#!/usr/bin/python3
"""mmaint's ONNX export checked by the onnx package: onnx.checker (with shape
inference) accepts every exported file, and evaluating the graph with numpy
from its initializers reproduces mmaint's outputs.

    check_export.py EXPORT_CASES_PROGRAM

Run by meson test with Debian's /usr/bin/python3 (python3-onnx,
python3-numpy); exits 77 (skipped) with a message if onnx is missing.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {sys.executable} lacks onnx/numpy ({e}); install python3-onnx python3-numpy")
    sys.exit(77)

# How far the numpy evaluation may be from mmaint's own forward pass.
# Float layers and int8 weight-only: the same weights, only the summation
# order differs. int8 static: numpy rounds x / scale, mmaint may land one
# code away on ties; int8 dynamic: ONNX has no per-row dynamic activation
# quantization, the export is its weight-only QDQ and the difference is
# mmaint's activation quantization error.
TOL = {"int8_static": 1e-2, "int8_dynamic": 2e-2, "sparse_int8_static": 1e-2, "sparse_int8_dynamic": 2e-2}
DEFAULT_TOL = 2e-5


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def evaluate(model, x):
    """A numpy interpreter of the ops mmaint exports."""
    vals = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    vals[model.graph.input[0].name] = x
    for node in model.graph.node:
        a = attrs(node)
        ins = [vals[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Gemm":
            assert a.get("transA", 0) == 0
            b = ins[1].T if a.get("transB", 0) else ins[1]
            y = a.get("alpha", 1.0) * (ins[0].astype(np.float64) @ b.astype(np.float64))
            if len(ins) > 2:
                y = y + a.get("beta", 1.0) * ins[2]
            y = y.astype(np.float32)
        elif op == "Relu":
            y = np.maximum(ins[0], 0)
        elif op == "LeakyRelu":
            y = np.where(ins[0] >= 0, ins[0], np.float32(a.get("alpha", 0.01)) * ins[0])
        elif op == "Tanh":
            y = np.tanh(ins[0])
        elif op == "Sigmoid":
            y = (1 / (1 + np.exp(-ins[0].astype(np.float64)))).astype(np.float32)
        elif op == "Softmax":
            z = ins[0].astype(np.float64)
            z = np.exp(z - z.max(axis=a.get("axis", -1), keepdims=True))
            y = (z / z.sum(axis=a.get("axis", -1), keepdims=True)).astype(np.float32)
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            scale = ins[1]
            zp = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros_like(scale, np.int8)
            axis = a.get("axis", 1)
            if scale.ndim == 1:
                shape = [1] * ins[0].ndim
                shape[axis] = -1
                scale = scale.reshape(shape)
                zp = zp.reshape(shape)
            if op == "QuantizeLinear":
                info = np.iinfo(zp.dtype)
                q = np.rint(ins[0] / scale) + zp.astype(np.int32)
                y = np.clip(q, info.min, info.max).astype(zp.dtype)
            else:
                y = ((ins[0].astype(np.int32) - zp.astype(np.int32)).astype(np.float32)
                     * scale).astype(np.float32)
        else:
            raise AssertionError(f"unexpected op {op} in node {node.name}")
        vals[node.output[0]] = y
    return vals[model.graph.output[0].name]


def main():
    prog = sys.argv[1]
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([prog, d], check=True)
        with open(os.path.join(d, "cases.txt")) as f:
            cases = [line.split() for line in f if line.strip()]
        assert len(cases) >= 10, cases
        for name, n, din, dout in cases:
            n, din, dout = int(n), int(din), int(dout)
            path = os.path.join(d, name + ".onnx")
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            assert model.opset_import[0].version == 13
            for t in model.graph.initializer:  # raw little-endian data
                assert t.HasField("raw_data") and not t.float_data, t.name
            x = np.fromfile(os.path.join(d, name + ".x"), "<f4").reshape(n, din)
            want = np.fromfile(os.path.join(d, name + ".y"), "<f4").reshape(n, dout)
            got = evaluate(model, x)
            diff = float(np.abs(got - want).max())
            tol = TOL.get(name, DEFAULT_TOL)
            ops = sorted({nd.op_type for nd in model.graph.node})
            status = "ok" if diff <= tol else "FAIL"
            print(f"{status} {name}: max |numpy - mmaint| = {diff:.3g} (tolerance {tol}); ops {ops}")
            failures += diff > tol
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
