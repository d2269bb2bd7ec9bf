#!/usr/bin/python3
"""Tests of `mmaint convert` and of safetensors interchange with other tools.

usage: test_convert.py PATH_TO_MMAINT [unittest args]
env:   MMAINT (the tool), MMAINT_LIB (libmmaint.so, for predictions through
       ctypes), MM_GOLDEN (tests/data), MM_FASHION_DIR

- conversions mmf <-> safetensors (<-> ONNX when the library has it),
  --json output, tensor names, error messages and exit codes;
- an exported file read by an independent minimal numpy reader (values
  equal to the .mmf's, read with doc/FORMAT.md's reference reader);
- a PyTorch nn.Sequential's weights (tests/data/torch_fashion_mlp.safetensors,
  made by tests/golden/make_safetensors_golden.py) imported with the same
  predictions as PyTorch on real Fashion-MNIST test images (max |diff| <=
  1e-5); and, when torch is importable, the same live on a fresh model.

numpy parts are skipped (with the reason) when numpy is missing, as under
a python3 without it; nothing needs PyTorch except the live check.
"""
import ctypes
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

MMAINT = os.environ.get("MMAINT")
LIB = os.environ.get("MMAINT_LIB")
GOLDEN = os.environ.get("MM_GOLDEN", os.path.join(os.path.dirname(__file__), "..", "data"))
FASHION = os.environ.get("MM_FASHION_DIR", "/usr/share/datasets/fashion-mnist")

try:
    import numpy as np
except ImportError:  # the python3 first on PATH may lack numpy
    np = None
NO_NUMPY = "numpy is not installed for %s (Debian: python3-numpy; run with /usr/bin/python3)" % sys.executable


def run(*args, timeout=120):
    p = subprocess.run([MMAINT] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def read_header(path):
    """(header dict, data bytes) of a safetensors file; standard library only."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def np_read_safetensors(path):
    """Independent minimal reader: name -> numpy array, and the metadata."""
    header, data = read_header(path)
    meta = header.pop("__metadata__", {})
    kinds = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I32": "<i4", "U32": "<u4",
             "U16": "<u2", "I8": "i1", "U8": "u1", "BF16": "<u2"}
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1]) for v in header.values())
    pos = 0
    for b, e in spans:  # the tensors tile the data block
        assert b == pos, "gap or overlap at %d" % b
        pos = e
    assert pos == len(data), "trailing bytes"
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    return out, meta


def write_csv(path, n, features=8, classes=3, seed=5):
    import random
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write(",".join("f%d" % j for j in range(features)) + ",label\n")
        for _ in range(n):
            k = rng.randrange(classes)
            x = [(2.0 if (j % classes) == k else -1.0) + rng.gauss(0, 0.5) for j in range(features)]
            f.write(",".join("%.4f" % v for v in x) + ",%d\n" % k)


def fashion_test_images(count):
    """First `count` t10k images / 255 as a list of float rows (stdlib)."""
    path = os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        pix = f.read(count * rows * cols)
    d = rows * cols
    return [[b / 255.0 for b in pix[i * d:(i + 1) * d]] for i in range(count)], d


class Lib:
    """The few library calls the prediction checks need, through ctypes."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        L = self.lib
        L.mm_last_error_message.restype = ctypes.c_char_p
        L.mm_safetensors_import.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        L.mm_model_load.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p]
        L.mm_model_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                       ctypes.c_size_t, ctypes.POINTER(ctypes.c_float)]
        L.mm_model_output_dim.argtypes = [ctypes.c_void_p]
        L.mm_model_output_dim.restype = ctypes.c_size_t
        L.mm_model_free.argtypes = [ctypes.c_void_p]

    def _check(self, st):
        if st != 0:
            raise RuntimeError(self.lib.mm_last_error_message().decode())

    def load(self, path):
        h = ctypes.c_void_p()
        self._check(self.lib.mm_model_load(ctypes.byref(h), path.encode()))
        return h

    def import_st(self, path, arch=None, names=None):
        h = ctypes.c_void_p()
        self._check(self.lib.mm_safetensors_import(ctypes.byref(h), path.encode(),
                                                   arch and arch.encode(), names and names.encode(), 0))
        return h

    def forward(self, h, rows):
        n, d = len(rows), len(rows[0])
        x = (ctypes.c_float * (n * d))(*[v for r in rows for v in r])
        k = self.lib.mm_model_output_dim(h)
        y = (ctypes.c_float * (n * k))()
        self._check(self.lib.mm_model_forward(h, x, n, y))
        return [list(y[i * k:(i + 1) * k]) for i in range(n)]

    def free(self, h):
        self.lib.mm_model_free(h)


class ConvertTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="mmaint-convert-")
        cls.dir = cls.tmp.name
        write_csv(cls.p("train.csv"), 300)
        cls.model = cls.p("m.mmf")
        rc, out, err = run("train", "--train-csv", cls.p("train.csv"), "--arch", "8-12-6-3:tanh",
                           "--epochs", 2, "--batch-size", 16, "--out", cls.model, "--quiet")
        if rc != 0:
            raise RuntimeError("setup training failed (%d): %s" % (rc, err))
        cls.lib = Lib(LIB) if LIB else None

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def p(cls, name):
        return os.path.join(cls.dir, name)

    def ok(self, *args):
        rc, out, err = run(*args)
        self.assertEqual(rc, 0, "mmaint %s failed (%d):\n%s\n%s" % (" ".join(map(str, args)), rc, out, err))
        return out, err

    def ok_json(self, *args):
        out, _ = self.ok(*args, "--json")
        return json.loads(out)

    def fails(self, code, fragment, *args):
        rc, out, err = run(*args)
        self.assertEqual(rc, code, "mmaint %s: expected exit %d, got %d\n%s\n%s"
                         % (" ".join(map(str, args)), code, rc, out, err))
        self.assertIn(fragment, err)
        self.assertNotIn("AddressSanitizer", err)
        return err

    # -- conversions ------------------------------------------------------
    def test_help(self):
        out, _ = self.ok("help", "convert")
        self.assertIn("Usage: mmaint convert", out)
        out2, _ = self.ok("convert", "--help")
        self.assertEqual(out, out2)
        out, _ = self.ok("help")
        self.assertIn("convert", out)

    def test_mmf_safetensors_round_trip(self):
        j = self.ok_json("convert", self.model, self.p("rt.safetensors"))
        self.assertEqual(j["command"], "convert")
        self.assertEqual((j["input_format"], j["output_format"]), ("mmf", "safetensors"))
        self.assertEqual(j["arch"], "8-12-6-3:tanh")
        self.assertEqual(j["max_abs_diff"], 0.0)
        self.assertEqual(j["output_size"], os.path.getsize(self.p("rt.safetensors")))
        header, _ = read_header(self.p("rt.safetensors"))
        meta = header["__metadata__"]
        self.assertNotIn("checksum", meta)
        self.assertEqual(meta["layer_names"], "layers.0,layers.1,layers.2")
        self.assertEqual(header["layers.1.weight"]["shape"], [6, 12])
        # back, from the file alone
        j = self.ok_json("convert", self.p("rt.safetensors"), self.p("rt.mmf"))
        self.assertEqual(j["max_abs_diff"], 0.0)
        a = self.ok_json("info", self.model)
        b = self.ok_json("info", self.p("rt.mmf"))
        self.assertEqual((a["arch"], a["params"], a["loss"]), (b["arch"], b["params"], b["loss"]))
        self.assertEqual(b["lineage"][-1]["op"], "import")
        # same predictions: eval gives the same loss to the last digit
        ea = self.ok_json("eval", self.model, "--csv", self.p("train.csv"))
        eb = self.ok_json("eval", self.p("rt.mmf"), "--csv", self.p("train.csv"))
        self.assertEqual(ea["loss"], eb["loss"])
        self.assertEqual(ea["accuracy"], eb["accuracy"])
        out, _ = self.ok("convert", self.model, self.p("rt2.safetensors"))
        self.assertIn("max |output difference| 0", out)

    def test_names(self):
        self.ok("convert", self.model, self.p("seq.safetensors"), "--names", "{seq}")
        header, _ = read_header(self.p("seq.safetensors"))
        names = sorted(k for k in header if k != "__metadata__")
        self.assertEqual(names, ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"])
        # safetensors -> safetensors renames
        self.ok("convert", self.p("seq.safetensors"), self.p("fc.safetensors"),
                "--out-names", "fc1,fc2,head")
        header, _ = read_header(self.p("fc.safetensors"))
        self.assertIn("fc2.weight", header)
        # without the recorded names and architecture (as another tool would
        # write it): nn.Sequential names are recognised, the spec is needed
        header, data = read_header(self.p("seq.safetensors"))
        del header["__metadata__"]
        text = json.dumps(header).encode()
        with open(self.p("bare.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + data)
        self.fails(1, "architecture", "convert", self.p("bare.safetensors"), self.p("x.mmf"))
        j = self.ok_json("convert", self.p("bare.safetensors"), self.p("bare.mmf"),
                         "--arch", "8-12-6-3:tanh")
        self.assertEqual(j["max_abs_diff"], 0.0)
        ea = self.ok_json("eval", self.model, "--csv", self.p("train.csv"))
        eb = self.ok_json("eval", self.p("bare.mmf"), "--csv", self.p("train.csv"))
        self.assertEqual(ea["loss"], eb["loss"])
        # explicit names that do not match
        self.fails(1, "a.weight is missing", "convert", self.p("bare.safetensors"), self.p("x.mmf"),
                   "--arch", "8-12-6-3:tanh", "--names", "a,b,c")
        self.fails(2, "--out-names", "convert", self.model, self.p("x.safetensors"), "--out-names", "a")

    def test_extra_tensors_and_dtypes(self):
        header, data = read_header(self._seq())
        header.pop("__metadata__")
        # an extra tensor (e.g. an optimizer step counter)
        header["step"] = {"dtype": "I32", "shape": [], "data_offsets": [len(data), len(data) + 4]}
        text = json.dumps(header).encode()
        with open(self.p("extra.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + data + b"\0\0\0\0")
        self.fails(1, "belongs to no layer", "convert", self.p("extra.safetensors"), self.p("x.mmf"),
                   "--arch", "8-12-6-3:tanh")
        self.ok("convert", self.p("extra.safetensors"), self.p("x.mmf"), "--arch", "8-12-6-3:tanh",
                "--allow-extra")

    def _seq(self):
        self.ok("convert", self.model, self.p("seq.safetensors"), "--names", "{seq}")
        return self.p("seq.safetensors")

    def test_format_override(self):
        j = self.ok_json("convert", self.model, self.p("weights.bin"), "--to", "safetensors")
        self.assertEqual(j["output_format"], "safetensors")
        j = self.ok_json("convert", self.p("weights.bin"), self.p("w.mmf"), "--from", "safetensors")
        self.assertEqual(j["max_abs_diff"], 0.0)

    def test_errors(self):
        self.fails(2, "need INPUT and OUTPUT", "convert", self.model)
        self.fails(2, "unexpected argument", "convert", self.model, "a.mmf", "b.mmf")
        self.fails(2, "--to", "convert", self.model, self.p("out.bin"))
        self.fails(2, "--from", "convert", self.p("in.bin"), self.p("out.mmf"))
        self.fails(2, "unknown format", "convert", self.model, self.p("x"), "--to", "pickle")
        self.fails(2, "safetensors input only", "convert", self.model, self.p("x.safetensors"),
                   "--arch", "8-3")
        self.fails(1, "cannot open", "convert", self.p("missing.safetensors"), self.p("x.mmf"))
        # a truncated file: a runtime error naming it, no output written
        with open(self.model, "rb") as f:
            raw = f.read()
        with open(self.p("cut.safetensors"), "wb") as f:
            f.write(raw[:len(raw) // 2])
        self.fails(1, "cut.safetensors", "convert", self.p("cut.safetensors"), self.p("cut.mmf"))
        self.assertFalse(os.path.exists(self.p("cut.mmf")))
        self.fails(1, "model spec", "convert", self._seq(), self.p("x.mmf"), "--arch", "8-12-x")
        # an unwritable output
        self.fails(1, "writing", "convert", self.model, os.path.join(self.dir, "no", "dir.safetensors"))

    def test_onnx(self):
        rc, out, err = run("convert", self.model, self.p("m.onnx"), "--json")
        if rc != 0:
            self.assertEqual(rc, 1)
            self.assertIn("without ONNX support", err)
            self.skipTest("this build has no ONNX support")
        j = json.loads(out)
        self.assertEqual(j["output_format"], "onnx")
        self.assertLess(j["max_abs_diff"], 1e-5)
        j = self.ok_json("convert", self.p("m.onnx"), self.p("from-onnx.mmf"))
        self.assertLess(j["max_abs_diff"], 1e-5)
        j = self.ok_json("convert", self.p("m.onnx"), self.p("from-onnx.safetensors"))
        self.assertLess(j["max_abs_diff"], 1e-5)

    # -- other tools' readers and writers ----------------------------------
    @unittest.skipIf(np is None, NO_NUMPY)
    def test_numpy_reader(self):
        """Our export read independently equals the .mmf's tensors."""
        self.ok("convert", self.model, self.p("np.safetensors"))
        t, meta = np_read_safetensors(self.p("np.safetensors"))
        m, _ = np_read_safetensors(self.model)  # the .mmf is safetensors too
        arch = json.loads(meta["architecture"])
        self.assertEqual([l["out"] for l in arch["layers"]], [12, 6, 3])
        self.assertEqual(sorted(t), sorted(k for k in m if k.startswith("layers.")))
        for name in t:
            self.assertEqual(t[name].dtype, np.dtype("<f4"))
            self.assertTrue(np.array_equal(t[name].view(np.uint32), m[name].view(np.uint32)), name)
        # forward pass in numpy (tanh hidden, identity out) from the file alone
        x = np.linspace(-1, 1, 5 * 8, dtype=np.float32).reshape(5, 8)
        h = x
        for i, layer in enumerate(arch["layers"]):
            h = h @ t["layers.%d.weight" % i].T + t["layers.%d.bias" % i]
            if layer["activation"] == "tanh":
                h = np.tanh(h)
        if self.lib:
            mm = self.lib.load(self.model)
            y = np.array(self.lib.forward(mm, x.tolist()), dtype=np.float32)
            self.lib.free(mm)
            self.assertLess(float(np.max(np.abs(y - h))), 1e-5)

    def _fashion_or_skip(self, n):
        if not os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")):
            self.skipTest("Fashion-MNIST is not installed in %s (Debian: dataset-fashion-mnist)" % FASHION)
        return fashion_test_images(n)

    def test_torch_fixture(self):
        """PyTorch's weights (committed fixture) give PyTorch's predictions."""
        if not self.lib:
            self.skipTest("MMAINT_LIB not set")
        rows, d = self._fashion_or_skip(200)
        src = os.path.join(GOLDEN, "torch_fashion_mlp.safetensors")
        ref_header, ref_data = read_header(os.path.join(GOLDEN, "torch_fashion_mlp_ref.safetensors"))
        arch = ref_header["__metadata__"]["arch"]
        shape = ref_header["logits"]["shape"]
        ref = struct.unpack("<%df" % (shape[0] * shape[1]), ref_data)
        # through the CLI to a .mmf, then predictions through the library
        self.ok("convert", src, self.p("torch.mmf"), "--arch", arch)
        h = self.lib.load(self.p("torch.mmf"))
        y = self.lib.forward(h, rows[:shape[0]])
        self.lib.free(h)
        diff = max(abs(y[i][k] - ref[i * shape[1] + k]) for i in range(shape[0]) for k in range(shape[1]))
        self.assertLessEqual(diff, 1e-5, "max |logit difference| vs PyTorch %g" % diff)
        agree = sum(max(range(10), key=lambda k: y[i][k]) == max(range(10), key=lambda k: ref[i * 10 + k])
                    for i in range(shape[0]))
        self.assertEqual(agree, shape[0])
        # directly, with the names recognised
        h = self.lib.import_st(src, arch)
        y2 = self.lib.forward(h, rows[:shape[0]])  # same batch: same kernels, same bits
        self.lib.free(h)
        self.assertEqual(y2, y)

    def test_torch_live(self):
        """A fresh nn.Sequential written by hand as safetensors, and back."""
        if np is None:
            self.skipTest(NO_NUMPY)
        try:
            import torch
        except ImportError:
            self.skipTest("PyTorch is not installed for %s (Debian: python3-torch)" % sys.executable)
        if not self.lib:
            self.skipTest("MMAINT_LIB not set")
        rows, d = self._fashion_or_skip(64)
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
        from make_safetensors_golden import write_safetensors
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(784, 48), torch.nn.Tanh(), torch.nn.Linear(48, 24),
                                  torch.nn.Tanh(), torch.nn.Linear(24, 10))
        sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
        # one bias in float64 with exact values, as a model.double() export holds it
        sd["2.bias"] = sd["2.bias"].astype(np.float64)
        write_safetensors(self.p("live.safetensors"), sd)
        x = np.array(rows, dtype=np.float32)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        self.ok("convert", self.p("live.safetensors"), self.p("live.mmf"), "--arch", "784-48-24-10:tanh")
        h = self.lib.load(self.p("live.mmf"))
        y = np.array(self.lib.forward(h, x.tolist()), dtype=np.float32)
        self.lib.free(h)
        self.assertLessEqual(float(np.max(np.abs(y - ref))), 1e-5)
        # a float64 bias that is not exactly float: refused, or rounded on request
        sd["2.bias"] = sd["2.bias"] + 1e-12
        write_safetensors(self.p("live64.safetensors"), sd)
        self.fails(1, "not exactly a float", "convert", self.p("live64.safetensors"), self.p("x.mmf"),
                   "--arch", "784-48-24-10:tanh")
        self.ok("convert", self.p("live64.safetensors"), self.p("x.mmf"), "--arch", "784-48-24-10:tanh",
                "--round-f64")
        # and back: our export read by torch's load_state_dict
        self.ok("convert", self.p("live.mmf"), self.p("back.safetensors"), "--names", "{seq}")
        t, _ = np_read_safetensors(self.p("back.safetensors"))
        net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in t.items()})
        with torch.no_grad():
            y3 = net(torch.from_numpy(x)).numpy()
        self.assertLessEqual(float(np.max(np.abs(y3 - y))), 1e-5)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        MMAINT = sys.argv.pop(1)
    if not MMAINT:
        sys.exit("usage: test_convert.py PATH_TO_MMAINT (or env MMAINT)")
    unittest.main(verbosity=2)
