"""Tests of the mmaint Python bindings (unittest; run by `meson test`).

They run under any Python 3.9+, with or without numpy: array-based tests
always run, numpy tests only when numpy is importable. The library comes from
$MMAINT_LIBRARY (meson passes the built libmmaint.so.0); the package from
$PYTHONPATH (the source tree).
"""

import array
import ctypes
import gc
import math
import os
import random
import re
import sys
import tempfile
import threading
import tracemalloc
import unittest

import mmaint
from mmaint import _lib
from mmaint._handle import Handle

try:
    import numpy as np
except ImportError:
    np = None

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("MM_SOURCE_ROOT",
                             os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
FASHION = os.environ.get("MM_FASHION_DIR", "/usr/share/datasets/fashion-mnist")

DIM, CLASSES = 8, 3


def blobs(n, seed):
    """n samples of DIM features in CLASSES well separated Gaussian blobs,
    as flat array('f') features and array('i') labels."""
    rng = random.Random(seed)
    x, y = array.array("f"), array.array("i")
    for i in range(n):
        c = rng.randrange(CLASSES)
        y.append(c)
        x.extend(rng.gauss(3.0 if j == c else 0.0, 0.7) for j in range(DIM))
    return x, y


def read(path):
    with open(path, "rb") as f:
        return f.read()


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class TempDir(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)


class TestLibrary(unittest.TestCase):
    def test_version_and_path(self):
        self.assertRegex(mmaint.version(), r"^\d+\.\d+\.\d+")
        major, minor, patch = (int(v) for v in mmaint.version().split(".")[:3])
        self.assertEqual(mmaint.version_number(), major * 10000 + minor * 100 + patch)
        self.assertTrue(os.path.basename(mmaint.library_path()).startswith("libmmaint.so"))
        if os.environ.get("MMAINT_LIBRARY"):
            self.assertEqual(mmaint.library_path(), os.environ["MMAINT_LIBRARY"])

    def _import_in_child(self, env_update):
        import subprocess
        env = dict(os.environ)
        env.pop("MMAINT_LIBRARY", None)
        env.update(env_update)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(mmaint.__file__))
        return subprocess.run([sys.executable, "-c", "import mmaint; print(mmaint.library_path())"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)

    def test_library_lookup(self):
        """An explicit path that does not exist is an ImportError naming it;
        without MMAINT_LIBRARY a source checkout uses build/lib."""
        r = self._import_in_child({"MMAINT_LIBRARY": "/nonexistent/libmmaint.so.0"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/libmmaint.so.0", r.stderr)
        self.assertIn("MMAINT_LIBRARY", r.stderr)
        r = self._import_in_child({"MMAINT_LIBRARY": os.path.dirname(mmaint.library_path())})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.path.basename(r.stdout.strip()), "libmmaint.so.0")
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(mmaint.__file__)))
        in_tree = os.path.join(os.path.dirname(pkg_root), "build", "lib", "libmmaint.so.0")
        if not os.path.exists(in_tree):
            self.skipTest("no build/ directory in this checkout")
        r = self._import_in_child({})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), in_tree)

    def test_backend(self):
        before = mmaint.backend()
        self.assertIn(before, ("blis", "reference"))
        mmaint.set_backend("reference")
        self.assertEqual(mmaint.backend(), "reference")
        try:
            mmaint.set_backend(before)
        except mmaint.UnsupportedError:
            pass
        self.assertRaises(ValueError, mmaint.set_backend, "gpu")
        mmaint.set_num_threads(1)

    def test_set_num_threads_bad(self):
        with self.assertRaises(mmaint.Error) as cm:
            mmaint.set_num_threads(0)
        self.assertIn(cm.exception.name, ("MM_E_INVALID_ARGUMENT", "MM_E_OUT_OF_RANGE"))

    def test_every_public_function_is_declared(self):
        """Each MM_API function of include/mm/*.h has a signature in
        mmaint._lib.SIGNATURES (and so argtypes/restype); none is stale."""
        inc = os.path.join(SOURCE_ROOT, "include", "mm")
        if not os.path.isdir(inc):
            self.skipTest("headers not found at %s (set MM_SOURCE_ROOT)" % inc)
        declared = set()
        for name in sorted(os.listdir(inc)):
            if name.endswith(".h"):
                with open(os.path.join(inc, name)) as f:
                    src = f.read()
                declared.update(re.findall(r"^MM_API\b[^;(]*?\b(mm_\w+)\s*\(", src, re.M))
        self.assertGreater(len(declared), 100)
        missing = sorted(declared - set(_lib.SIGNATURES))
        self.assertEqual(missing, [], "public functions without a Python signature: add them "
                         "to SIGNATURES in bindings/python/mmaint/_lib.py")
        stale = sorted(set(_lib.SIGNATURES) - declared)
        self.assertEqual(stale, [], "signatures of functions no header declares")
        for name in declared:
            f = getattr(_lib.lib, name)
            self.assertIsNotNone(f.argtypes, name)

    def test_error_classes_match_status_codes(self):
        for code in range(-14, 0):
            cls = mmaint.errors.error_class(code)
            self.assertIsNot(cls, mmaint.Error, code)
            self.assertEqual(cls.status, code)
            self.assertEqual(cls.name, _lib.lib.mm_status_name(code).decode())
            self.assertTrue(issubclass(cls, mmaint.Error))
        self.assertIs(mmaint.errors.error_class(-999), mmaint.Error)
        self.assertTrue(issubclass(mmaint.ShapeError, ValueError))
        self.assertTrue(issubclass(mmaint.InputOutputError, OSError))
        self.assertTrue(issubclass(mmaint.OutOfMemoryError, MemoryError))
        self.assertTrue(issubclass(mmaint.NumericError, ArithmeticError))


class TestModel(TempDir):
    def test_build_and_facts(self):
        m = mmaint.Model(DIM, seed=3).add_dense(16, "tanh").add_dense(CLASSES, "identity",
                                                                         init="xavier")
        self.assertEqual((m.input_dim, m.output_dim, m.num_layers), (DIM, 3, 2))
        self.assertEqual(m.layer(-1), m.layers[1])
        self.assertEqual(m.num_params, DIM * 16 + 16 + 16 * 3 + 3)
        self.assertEqual(m.param_bytes, 4 * m.num_params)
        self.assertEqual(m.layers[0], mmaint.Layer(0, "dense", DIM, 16, "tanh", True))
        self.assertEqual(m.layers[1].activation, "identity")
        self.assertEqual(m.loss, "softmax_xent")
        m.loss = "mse"
        self.assertEqual(m.loss, "mse")
        self.assertIn("2 layers", m.describe())
        self.assertIn("8-16-3", repr(m))
        spec = mmaint.Model("8-16-3:tanh", seed=3)
        self.assertEqual(spec.num_params, m.num_params)

    def test_same_seed_same_weights(self):
        a = mmaint.Model("8-16-3", seed=7)
        b = mmaint.Model("8-16-3", seed=7)
        self.assertEqual(list(a.get_weights(0)[0]) if np is None else a.get_weights(0)[0].tolist(),
                         list(b.get_weights(0)[0]) if np is None else b.get_weights(0)[0].tolist())

    def test_weights_round_trip(self):
        m = mmaint.Model("3-2", seed=1)
        m.set_weights(0, [[1, 2, 3], [4, 5, 6]], [0.5, -0.5])
        w, b = m.get_weights(0)
        self.assertEqual(list(array.array("f", bytes(memoryview(w).cast("B")))),
                         [1, 2, 3, 4, 5, 6])
        self.assertEqual(list(array.array("f", bytes(memoryview(b).cast("B")))), [0.5, -0.5])
        out = m.forward([1, 0, 0])
        self.assertEqual(list(array.array("f", bytes(memoryview(out).cast("B")))), [1.5, 3.5])
        m.set_weights(0, bias=[0, 0])  # weights alone or bias alone
        with self.assertRaises(mmaint.ShapeError):
            m.set_weights(0, [1, 2, 3])
        with self.assertRaises(mmaint.NumericError):
            m.set_weights(0, [1, 2, 3, 4, 5, float("nan")])
        with self.assertRaises(mmaint.OutOfRangeError):
            m.get_weights(5)
        with self.assertRaises(IndexError):
            m.get_weights(-2)
        self.assertEqual(len(bytes(memoryview(m.get_weights(-1)[1]).cast("B"))), 8)

    def test_backward_and_gradients(self):
        m = mmaint.Model("3-2", seed=1)
        loss = m.backward([1, 2, 3], labels=1)
        self.assertGreater(loss, 0)
        dw, db = m.get_gradients(0)
        self.assertEqual(len(bytes(memoryview(dw).cast("B"))), 4 * 6)

    def test_save_load_and_bytes(self):
        m = mmaint.Model("8-16-3", seed=5)
        x, _ = blobs(20, 1)
        p = self.path("m.mmf")
        m.save(p)
        for back in (mmaint.Model.load(p), mmaint.Model.load(p.encode()),
                     mmaint.Model.from_bytes(read(p)),
                     mmaint.Model.from_bytes(bytearray(read(p))),
                     mmaint.Model.from_bytes(memoryview(read(p)))):
            with back:
                self.assertEqual(bytes(memoryview(back.forward(x)).cast("B")),
                                 bytes(memoryview(m.forward(x)).cast("B")))
                self.assertEqual(back.lineage, m.lineage)
        import pathlib
        mmaint.Model.load(pathlib.Path(p)).close()

    def test_lineage(self):
        m = mmaint.Model("4-2")
        m.add_lineage("note", {"why": "test", "n": 3})
        ev = m.lineage[-1]
        self.assertEqual((ev["op"], ev["why"], ev["n"]), ("note", "test", 3))
        with self.assertRaises(mmaint.FormatError):
            m.add_lineage("bad", "[1, 2]")

    def test_online_steps_lineage(self):
        """Consecutive steps are one online_steps event; lineage=0 records none."""
        m = mmaint.Model("4-3-2", seed=1)
        opt = mmaint.Optimizer(m, "sgd", lr=0.05)
        for _ in range(5):
            opt.step([1, 0, 0, 1], 1)
        ev = [e for e in m.lineage if e["op"] == "online_steps"]
        self.assertEqual(len(ev), 1)
        self.assertEqual((ev[0]["steps"], ev[0]["samples"], ev[0]["first"], ev[0]["last"]),
                         (5, 5, 0, 4))
        self.assertEqual((ev[0]["optimizer"], ev[0]["lr"]), ("sgd", 0.05))
        opt.set(lineage=0)
        opt.step([1, 0, 0, 1], 1)
        self.assertEqual(m.lineage[-1]["steps"], 5)

    def test_clone_is_independent(self):
        import copy
        m = mmaint.Model("4-2", seed=1)
        c = copy.copy(m)
        c.set_weights(0, [0] * 8)
        self.assertNotEqual(bytes(memoryview(m.get_weights(0)[0]).cast("B")),
                            bytes(memoryview(c.get_weights(0)[0]).cast("B")))


def wbytes(model, i):
    return bytes(memoryview(model.get_weights(i)[0]).cast("B"))


class TestTransfer(TempDir):
    def test_freeze_replace_head_sync(self):
        x, y = blobs(256, 1)
        m = mmaint.Model("8-16-16-3:relu", seed=1)
        mmaint.Optimizer(m, "adam", lr=1e-2).fit(x, y, epochs=2, batch_size=32)
        m.freeze(0, 1)
        self.assertEqual([l.trainable for l in m.layers], [False, False, True])
        self.assertFalse(m.trainable(0))
        w0, w2 = wbytes(m, 0), wbytes(m, 2)
        opt = mmaint.Optimizer(m, "sgd", lr=0.1)
        opt.step(x[:DIM * 4], y[:4])
        self.assertEqual(wbytes(m, 0), w0)  # frozen: bit-identical
        self.assertNotEqual(wbytes(m, 2), w2)
        # a new task with 5 classes on the frozen body
        m.replace_head(5, seed=3)
        self.assertEqual(m.output_dim, 5)
        self.assertTrue(m.layers[-1].trainable)
        self.assertEqual(m.lineage[-1]["op"], "replace_head")
        with self.assertRaises(mmaint.StateError):
            opt.step(x[:DIM], 4)
        opt.sync().step(x[:DIM], 4)
        self.assertEqual(wbytes(m, 0), w0)
        # per-layer learning rates
        m.unfreeze()
        opt.sync()
        opt.set_layer_lr_scale(0, 0.0)
        self.assertEqual(opt.get_layer_lr_scale(0), 0.0)
        self.assertEqual(opt.get_layer_lr_scale(-1), 1.0)
        opt.step(x[:DIM * 4], [0, 1, 2, 4])
        self.assertEqual(wbytes(m, 0), w0)
        with self.assertRaises(mmaint.OutOfRangeError):
            opt.set_layer_lr_scale(1, -1.0)
        # the flags are saved
        m.freeze(1)
        p = self.path("t.mmf")
        m.save(p)
        self.assertEqual([l.trainable for l in mmaint.Model.load(p).layers],
                         [True, False, True])
        m.truncate(2)
        self.assertEqual((m.num_layers, m.output_dim), (2, 16))
        with self.assertRaises(mmaint.OutOfRangeError):
            m.truncate(3)
        with self.assertRaises(mmaint.OutOfRangeError):
            m.set_trainable(7)
        with self.assertRaises(mmaint.InvalidArgumentError):
            m.replace_head(0)

    def test_gradient_guard_settings(self):
        m = mmaint.Model("4-2")
        opt = mmaint.Optimizer(m, "adam", max_grad_norm=1e-9)
        with self.assertRaises(mmaint.NumericError):
            opt.step([0.5, -1.0, 0.25, 2.0], 0)
        self.assertEqual(opt.steps, 0)


class TestSafetensors(TempDir):
    def test_round_trip_and_names(self):
        m = mmaint.Model("8-16-3:relu", seed=4)
        x, _ = blobs(10, 1)
        want = bytes(memoryview(m.predict_proba(x)).cast("B"))
        p = self.path("w.safetensors")
        m.export_safetensors(p)
        for back in (mmaint.Model.from_safetensors(p),
                     mmaint.Model.from_safetensors(read(p)),
                     mmaint.Model.from_safetensors(p, "8-16-3:relu", "layers.{i}")):
            self.assertEqual(bytes(memoryview(back.predict_proba(x)).cast("B")), want)
        q = self.path("seq.safetensors")
        m.export_safetensors(q, names="net.{seq}")
        back = mmaint.Model.from_safetensors(q, "8-16-3:relu", "net.{seq}")
        self.assertEqual(bytes(memoryview(back.predict_proba(x)).cast("B")), want)
        with self.assertRaises(mmaint.FormatError):
            mmaint.Model.from_safetensors(q, "8-16-3:relu", "fc1,fc2")
        with self.assertRaises(mmaint.FormatError):
            mmaint.Model.from_safetensors(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
        with self.assertRaises(mmaint.InvalidArgumentError):
            m.export_safetensors(self.path("x.safetensors"), names="a,a")
        with self.assertRaises(mmaint.InputOutputError):
            mmaint.Model.from_safetensors(self.path("missing.safetensors"))


class TestMaintain(unittest.TestCase):
    def test_drift_detectors(self):
        ph = mmaint.Drift("page_hinkley", lambda_=5, min_samples=10)
        self.assertEqual(ph.kind, "page_hinkley")
        self.assertEqual(ph["lambda"], 5.0)
        states = [ph.update(0.1) for _ in range(200)]
        self.assertNotIn("drift", states)
        states = [ph.update(0.9) for _ in range(200)]
        self.assertIn("drift", states)
        self.assertGreaterEqual(ph.count, 1)
        ddm = mmaint.Drift("ddm")
        rng = random.Random(1)
        seen = [ddm.update(1 if rng.random() < 0.05 else 0) for _ in range(1000)]
        seen += [ddm.update(1 if rng.random() < 0.6 else 0) for _ in range(500)]
        self.assertIn("drift", seen)
        self.assertAlmostEqual(mmaint.Drift("adwin").estimate, 0.0)
        with self.assertRaises(mmaint.InvalidArgumentError):
            ddm.update(0.5)  # DDM takes 0/1 errors
        with self.assertRaises(mmaint.InvalidArgumentError):
            ph.update(float("nan"))
        with self.assertRaises(mmaint.InvalidArgumentError):
            mmaint.Drift("kswin")
        with self.assertRaises(mmaint.Error):
            mmaint.Drift("adwin", no_such_param=1)
        ph.reset()
        self.assertEqual(ph.samples, 0)

    def test_server_hot_swap(self):
        x, y = blobs(300, 1)
        m = mmaint.Model("8-16-3", seed=1)
        server = mmaint.Server(m)
        self.assertEqual(server.version, 1)
        same = lambda a, b: bytes(memoryview(a).cast("B")) == bytes(memoryview(b).cast("B"))  # noqa
        self.assertTrue(same(server.predict(x), m.predict(x)))
        mmaint.Optimizer(m, "adam", lr=1e-2).fit(x, y, epochs=3)  # the served clone is unchanged
        labels, version = server.predict(x, with_version=True)
        self.assertEqual(version, 1)
        with server.snapshot() as snap:
            self.assertEqual(snap.version, 1)
            old = snap.model
            self.assertEqual(server.publish(m), 2)  # readers keep their snapshot
            self.assertTrue(same(old.predict(x), labels))
            self.assertEqual(server.outstanding, 1)
        self.assertTrue(old.closed)
        self.assertEqual(server.outstanding, 0)
        self.assertTrue(same(server.forward(x), m.forward(x)))
        with self.assertRaises(mmaint.ShapeError):
            server.publish(mmaint.Model("8-4"))
        # readers in threads while the writer publishes
        errors, stop = [], threading.Event()

        def reader():
            try:
                while not stop.is_set():
                    labels, v = server.predict(x, with_version=True)
                    assert v >= 2
            except BaseException as e:  # reported below
                errors.append(e)
        ts = [threading.Thread(target=reader) for _ in range(3)]
        for t in ts:
            t.start()
        for _ in range(20):
            server.publish(m)
        stop.set()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(server.version, 22)
        # close while a snapshot is held: freed after it is given back
        snap = server.snapshot().__enter__()
        h = server._h
        server.close()
        self.assertIsNotNone(h.ptr)
        snap.__exit__(None, None, None)
        self.assertIsNone(h.ptr)


class TestMaintainer(TempDir):
    def test_guarded_stream(self):
        x, y = blobs(2000, 1)
        xh, yh = blobs(300, 2)
        m = mmaint.Model("8-16-3:relu", seed=1)
        mt = mmaint.Maintainer(m, "sgd", window=200, replay_size=100)
        self.assertEqual(mt["window"], 200.0)
        mt.set_optimizer(lr=0.05)
        mt.set_holdout(xh, yh)
        server = mmaint.Server(m)
        mt.attach_server(server)
        mt.set_checkpoint_dir(self.tmp)
        r = mt.feed(x, y)
        self.assertEqual(r.samples, 2000)
        self.assertIn("checkpoint", r.events)
        self.assertGreater(r.version, 1)
        self.assertGreater(server.version, 1)  # accepted versions are published
        deployed = mt.deployed_model()
        self.assertEqual(bytes(memoryview(server.predict(xh)).cast("B")),
                         bytes(memoryview(deployed.predict(xh)).cast("B")))
        self.assertGreater(mt.deployed_model().evaluate(xh, yh)[1], 0.9)
        self.assertGreaterEqual(mt.num_checkpoints, 1)
        self.assertEqual(mt.status.samples, 2000)
        self.assertIsInstance(mt.flush(), mmaint.MaintReport)
        with self.assertRaises(mmaint.InvalidArgumentError):
            mt.set(no_such_setting=1)
        with self.assertRaises(mmaint.ShapeError):
            mt.feed(x[:DIM], [1, 2])
        with self.assertRaises(mmaint.StateError):
            mt.set(holdout_size=10)  # only before the first holdout / feed

    def test_quarantined_ranges_and_checkpoints(self):
        """A poisoned stretch (labels shifted) is rolled back and reported as
        ranges; checkpoints are copies with their version numbers."""
        x, y = blobs(1200, 4)
        xh, yh = blobs(300, 5)
        m = mmaint.Model("8-16-3:relu", seed=1)
        base = mmaint.Maintainer(m, "sgd", window=200, holdout_every=0, detector=0)
        base.set_optimizer(lr=0.05)
        base.feed(x[:400 * DIM], y[:400])
        trained = base.deployed_model()  # a model that knows the blobs
        mt = mmaint.Maintainer(trained, "sgd", window=100, holdout_every=0, detector=0,
                               replay_size=0, guard_threshold=0)
        mt.set_optimizer(lr=0.05)
        mt.set_holdout(xh, yh)
        bad = [(int(v) + 1) % 3 for v in y[400:800]]
        r = mt.feed(x[400 * DIM:800 * DIM], bad)
        self.assertGreater(r.rollbacks, 0)
        q = mt.quarantined()
        self.assertEqual(len(q), mt.num_quarantined)
        self.assertGreater(len(q), 0)
        for rng in q:
            self.assertEqual(rng["reason"], "metric")
            self.assertTrue(0 <= rng["start"] < rng["end"] <= 400)
            self.assertLess(rng["accuracy"], rng["good_accuracy"])
        version, model = mt.checkpoint(mt.num_checkpoints - 1)
        self.assertEqual(version, mt.status.version)
        self.assertEqual(bytes(memoryview(model.predict(xh)).cast("B")),
                         bytes(memoryview(mt.deployed_model().predict(xh)).cast("B")))
        with self.assertRaises(mmaint.OutOfRangeError):
            mt.checkpoint(mt.num_checkpoints)

    def test_closing_an_attached_server_is_safe(self):
        """The maintainer borrows its server: closing the Server object only
        frees the C server once the maintainer no longer uses it."""
        x, y = blobs(400, 3)
        m = mmaint.Model("8-16-3:relu", seed=1)
        mt = mmaint.Maintainer(m, "sgd", window=100, holdout_every=0)
        server = mmaint.Server(m)
        mt.attach_server(server)
        h = server._h
        server.close()
        self.assertIsNotNone(h.ptr)  # still borrowed by the maintainer
        r = mt.feed(x, y)  # publishes accepted versions to the (closed) server
        self.assertGreater(r.version, 1)
        mt.close()
        del mt
        gc.collect()
        self.assertIsNone(h.ptr)


class TestReservoir(unittest.TestCase):
    def test_offer_get_draw(self):
        with mmaint.Reservoir(5, 3, seed=7) as r:
            self.assertEqual((len(r), r.seen, r.capacity, r.dim), (0, 0, 5, 3))
            rows = {}
            for i in range(5):  # the first `capacity` offers fill the slots in order
                slot = r.offer([float(i), i + 0.5, -i], i * 10)
                self.assertEqual(slot, i)
                rows[i] = ([float(i), i + 0.5, float(-i)], i * 10)
            for i in range(5):
                x, label = r.get(i)
                self.assertEqual(list(x), rows[i][0])
                self.assertEqual(label, rows[i][1])
            self.assertEqual(r.get(-1)[1], 40)
            kept = 0
            for i in range(5, 200):  # later offers replace a slot or are dropped
                x = array.array("f", [float(i), i + 0.5, -i])
                slot = r.offer(x, i * 10)
                self.assertTrue(slot is None or 0 <= slot < 5, slot)
                if slot is not None:
                    kept += 1
                    got, label = r.get(slot)
                    self.assertEqual(list(got), list(x))
                    self.assertEqual(label, i * 10)
                    rows[slot] = (list(x), i * 10)
            self.assertGreater(kept, 0)
            self.assertLess(kept, 195)
            self.assertEqual(len(r), 5)
            self.assertEqual(r.size, 5)
            self.assertEqual(r.seen, 200)
            # get returns a copy, not a view of the reservoir's memory
            x0, _ = r.get(0)
            x0[0] = 1e6
            self.assertEqual(list(r.get(0)[0]), rows[0][0])
            # draws come from the held samples, feature rows matching labels
            x, labels = r.draw(50)
            self.assertEqual(len(labels), 50)
            held = {label: row for row, label in rows.values()}
            flat = list(memoryview(x).cast("B").cast("f")) if np is None else x.ravel().tolist()
            self.assertEqual(len(flat), 50 * 3)
            for k, label in enumerate(labels):
                self.assertIn(label, held)
                self.assertEqual(flat[3 * k:3 * k + 3], held[label])
            if np is not None:
                self.assertEqual((x.shape, x.dtype), ((50, 3), np.float32))
                self.assertEqual((labels.shape, labels.dtype), ((50,), np.int32))
                self.assertEqual(r.get(1)[0].dtype, np.float32)
                r.offer(np.array([1, 2, 3], np.float32), 1)
            else:
                self.assertIsInstance(x, array.array)
                self.assertEqual(x.typecode, "f")
            self.assertEqual(len(r.draw(0)[1]), 0)
            self.assertIn("5/5 samples", repr(r))
        self.assertTrue(r.closed)
        self.assertIn("closed", repr(r))

    def test_deterministic_for_a_seed(self):
        def run(seed):
            r = mmaint.Reservoir(4, 2, seed=seed)
            slots = [r.offer([i, -i], i) for i in range(100)]
            return slots, [r.get(i)[1] for i in range(4)], list(r.draw(10)[1])
        self.assertEqual(run(3), run(3))
        self.assertNotEqual(run(3), run(4))

    def test_bad_arguments(self):
        with self.assertRaises(mmaint.InvalidArgumentError):
            mmaint.Reservoir(0, 3)
        with self.assertRaises(mmaint.InvalidArgumentError):
            mmaint.Reservoir(3, 0)
        with self.assertRaises(mmaint.OutOfRangeError):
            mmaint.Reservoir(1 << 62, 4)
        with self.assertRaises(ValueError):
            mmaint.Reservoir(-1, 3)
        with self.assertRaises(TypeError):
            mmaint.Reservoir(2.5, 3)
        r = mmaint.Reservoir(2, 3)
        with self.assertRaises(mmaint.StateError):
            r.draw(1)  # empty
        with self.assertRaises(mmaint.ShapeError):
            r.offer([1.0, 2.0], 0)  # 2 features, the reservoir holds 3
        with self.assertRaises(mmaint.ShapeError):
            r.offer([1.0] * 6, 0)  # two samples
        with self.assertRaises(TypeError):
            r.offer([1.0, 2.0, 3.0], 1.5)
        with self.assertRaises(TypeError):
            r.offer("abc", 0)
        self.assertEqual(r.seen, 0, "refused offers are not counted")
        r.offer([1.0, 2.0, 3.0], 0)
        with self.assertRaises(mmaint.OutOfRangeError):
            r.get(1)
        with self.assertRaises(IndexError):
            r.get(-2)
        with self.assertRaises(ValueError):
            r.draw(-1)
        r.close()
        r.close()  # idempotent
        for call in (lambda: len(r), lambda: r.seen, lambda: r.get(0), lambda: r.draw(1),
                     lambda: r.offer([1.0, 2.0, 3.0], 0)):
            with self.assertRaisesRegex(ValueError, "Reservoir is closed"):
                call()


class TestOnnx(TempDir):
    def test_export_import(self):
        m = mmaint.Model("8-16-3:tanh", seed=2)
        x, _ = blobs(10, 1)
        p = self.path("m.onnx")
        if not mmaint.onnx_available():
            with self.assertRaises(mmaint.UnsupportedError):
                m.export_onnx(p)
            with self.assertRaises(mmaint.UnsupportedError):
                mmaint.Model.from_onnx(b"\x08\x07")
            return
        m.export_onnx(p)
        for back in (mmaint.Model.from_onnx(p), mmaint.Model.from_onnx(read(p))):
            self.assertEqual(back.num_params, m.num_params)
            a = list(memoryview(m.predict_proba(x)).cast("B").cast("f"))
            b = list(memoryview(back.predict_proba(x)).cast("B").cast("f"))
            for u, v in zip(a, b):
                self.assertAlmostEqual(u, v, places=5)
        with self.assertRaises(mmaint.FormatError):
            mmaint.Model.from_onnx(b"\xff" * 64)
        with self.assertRaises(mmaint.InputOutputError):
            mmaint.Model.from_onnx(self.path("missing.onnx"))


class TestArrays(unittest.TestCase):
    def setUp(self):
        self.m = mmaint.Model("4-3", seed=2)
        self.ref = self.m.predict_proba([[1, 2, 3, 4], [0, 1, 0, 1]])

    def same(self, out):
        self.assertEqual(bytes(memoryview(out).cast("B")), bytes(memoryview(self.ref).cast("B")))

    def test_no_numpy_inputs(self):
        flat = [1, 2, 3, 4, 0, 1, 0, 1]
        a = array.array("f", flat)
        self.same(self.m.predict_proba(a))
        self.same(self.m.predict_proba(memoryview(a)))
        self.same(self.m.predict_proba(memoryview(a).toreadonly()))
        self.same(self.m.predict_proba(a.tobytes()))
        self.same(self.m.predict_proba(bytearray(a.tobytes())))
        self.same(self.m.predict_proba(tuple(flat)))
        self.same(self.m.predict_proba(memoryview(a.tobytes()).cast("f", (2, 4))))

    def test_bad_inputs(self):
        with self.assertRaises(TypeError):
            self.m.predict(array.array("d", [1, 2, 3, 4]))
        with self.assertRaises(TypeError):
            self.m.predict("abcd")
        with self.assertRaises(TypeError):
            self.m.predict(12)
        with self.assertRaises(mmaint.ShapeError):
            self.m.predict([1, 2, 3])
        with self.assertRaises(mmaint.ShapeError):
            self.m.predict(b"\0" * 15)
        with self.assertRaises(mmaint.ShapeError):
            self.m.predict([])
        with self.assertRaises(mmaint.ShapeError):
            self.m.predict(memoryview(array.array("f", [0] * 8).tobytes()).cast("f", (4, 2)))
        with self.assertRaises(TypeError):  # int64 labels
            self.m.evaluate([1, 2, 3, 4], array.array("q", [1]))
        with self.assertRaises(mmaint.ShapeError):
            self.m.evaluate([1, 2, 3, 4], [1, 2])

    def test_outputs(self):
        labels = self.m.predict([[1, 2, 3, 4]])
        if np is not None:
            self.assertEqual(labels.dtype, np.int32)
            self.assertEqual(self.ref.shape, (2, 3))
        else:
            self.assertEqual(labels.typecode, "i")
            self.assertEqual(len(self.ref), 6)
        probs = list(memoryview(self.ref).cast("B").cast("f"))
        self.assertAlmostEqual(sum(probs[:3]), 1.0, places=5)

    @unittest.skipIf(np is None, "numpy not available")
    def test_numpy_address(self):
        from mmaint import _buffers
        big = np.arange(5000, dtype=np.float32).reshape(50, 100)
        for a in (big, big[7], big[10:20], big[3:4].copy(), np.empty(0, np.float32)):
            self.assertEqual(_buffers._np_addr(a), a.ctypes.data)

    @unittest.skipIf(np is None, "numpy not available")
    def test_numpy(self):
        x = np.array([[1, 2, 3, 4], [0, 1, 0, 1]], np.float32)
        self.same(self.m.predict_proba(x))
        self.same(self.m.predict_proba(x.reshape(2, 2, 2)))
        with self.assertRaisesRegex(TypeError, "float32"):
            self.m.predict(x.astype(np.float64))
        with self.assertRaisesRegex(TypeError, "C-contiguous"):
            self.m.predict(np.asfortranarray(np.ones((4, 4), np.float32)))
        with self.assertRaisesRegex(TypeError, "C-contiguous"):
            self.m.predict(np.ones((2, 8), np.float32)[:, ::2])
        with self.assertRaises(mmaint.ShapeError):
            self.m.predict(np.ones((2, 5), np.float32))
        with self.assertRaisesRegex(TypeError, "int32"):
            self.m.evaluate(x, np.array([0, 1], np.int64))
        rows = [self.m.predict_proba(x[i]) for i in range(2)]  # the per-sample fast path
        self.assertEqual(np.concatenate(rows).tobytes(), self.ref.tobytes())
        with self.assertRaises(mmaint.ShapeError):
            self.m.predict(np.ones(5, np.float32))
        with self.assertRaises(mmaint.ShapeError):
            self.m.predict(np.ones(0, np.float32))
        loss, acc = self.m.evaluate(x, np.array([0, 1], np.int32))
        self.assertTrue(math.isfinite(loss))
        self.assertIn(acc, (0.0, 0.5, 1.0))


class TestTraining(TempDir):
    def test_fit_online_save_load(self):
        x, y = blobs(600, 1)
        xt, yt = blobs(300, 2)
        m = mmaint.Model("8-16-3:relu", seed=42)
        opt = mmaint.Optimizer(m, "adam", lr=1e-2)
        self.assertEqual(opt.kind, "adam")
        self.assertAlmostEqual(opt.get("lr"), 1e-2)
        self.assertEqual(opt.get("schedule"), "constant")
        seen = []
        res = opt.fit(x, y, epochs=4, batch_size=32, validation=(xt, yt),
                      callback=lambda p: seen.append((p.event, p.epoch)))
        self.assertFalse(res.stopped)
        self.assertEqual(res.epochs, 4)
        self.assertEqual(seen.count(("epoch_end", 3)), 1)
        self.assertEqual(len([s for s in seen if s[0] == "batch"]), 4 * math.ceil(600 / 32))
        loss, acc = m.evaluate(xt, yt)
        self.assertGreater(acc, 0.9)
        self.assertAlmostEqual(acc, res.val_accuracy, places=6)
        self.assertEqual(opt.steps, 4 * math.ceil(600 / 32))

        # online: one sample at a time, int labels
        online = mmaint.Optimizer(m, "sgd", lr=0.05, momentum=0.5)
        xn, yn = blobs(200, 3)
        before = m.get_weights(0)[0]
        losses = [online.step(xn[i * DIM:(i + 1) * DIM], yn[i]) for i in range(200)]
        self.assertTrue(all(math.isfinite(v) for v in losses))
        self.assertEqual(online.steps, 200)
        self.assertNotEqual(bytes(memoryview(before).cast("B")),
                            bytes(memoryview(m.get_weights(0)[0]).cast("B")))
        self.assertGreater(m.evaluate(xt, yt)[1], 0.9)

        p = self.path("v2.mmf")
        m.save(p)
        back = mmaint.Model.load(p)
        self.assertEqual(bytes(memoryview(back.predict(xt)).cast("B")),
                         bytes(memoryview(m.predict(xt)).cast("B")))
        self.assertEqual(back.lineage, m.lineage)

    def test_resume_is_bit_identical(self):
        x, y = blobs(256, 4)
        a = mmaint.Model("8-16-3", seed=9)
        oa = mmaint.Optimizer(a, "adamw", lr=1e-2, batch_size=16, seed=3)
        oa.fit(x, y, epochs=1)
        p = self.path("resume.mmf")
        oa.save(p)
        oa.fit(x, y, epochs=1)
        b = mmaint.Model.load(p)
        ob = mmaint.Optimizer.load(b, p)
        self.assertEqual(ob.kind, "adamw")
        ob.fit(x, y, epochs=1)
        for i in range(2):
            self.assertEqual(bytes(memoryview(a.get_weights(i)[0]).cast("B")),
                             bytes(memoryview(b.get_weights(i)[0]).cast("B")))

    def test_callback_stops_and_raises(self):
        x, y = blobs(256, 5)
        m = mmaint.Model("8-16-3", seed=1)
        opt = mmaint.Optimizer(m, "sgd", lr=0.1)
        res = opt.fit(x, y, epochs=3, batch_size=16, callback=lambda p: p.step >= 5)
        self.assertTrue(res.stopped)
        self.assertEqual(opt.steps, 5)  # the updates done so far are kept
        self.assertEqual(res.step, 5)

        class Boom(Exception):
            pass

        def cb(p):
            raise Boom("from the callback")
        with self.assertRaises(Boom):
            opt.fit(x, y, callback=cb)
        self.assertEqual(opt.steps, 6)
        with self.assertRaises(TypeError):
            opt.fit(mmaint.Dataset(x, y, dim=DIM), y)

    def test_ctrl_c_stops_fit(self):
        """KeyboardInterrupt during fit (no user callback) stops it between
        mini-batches and propagates; the model stays usable."""
        import _thread
        x, y = blobs(2000, 7)
        m = mmaint.Model("8-64-3", seed=1)
        opt = mmaint.Optimizer(m, "adam")
        timer = threading.Timer(0.2, _thread.interrupt_main)
        timer.start()
        try:
            with self.assertRaises(KeyboardInterrupt):
                opt.fit(x, y, epochs=100000, batch_size=8)
        finally:
            timer.cancel()
        self.assertGreater(opt.steps, 0)
        self.assertTrue(math.isfinite(m.evaluate(x, y)[0]))

    def test_fit_on_dataset_and_mse(self):
        x, y = blobs(128, 6)
        ds = mmaint.Dataset(x, y, dim=DIM)
        m = mmaint.Model("8-3", seed=1, loss="mse")
        opt = mmaint.Optimizer(m, "sgd", lr=0.05)
        opt.fit(ds, epochs=2, batch_size=8, validation=ds)
        targets = array.array("f", [0.0] * 3)
        targets[1] = 1.0
        loss = opt.step(x[:DIM], targets=targets)
        self.assertTrue(math.isfinite(loss))
        with self.assertRaises(mmaint.ShapeError):
            opt.step(x[:DIM], targets=[1.0, 0.0])

    def test_settings(self):
        m = mmaint.Model("4-2")
        opt = mmaint.Optimizer(m, "sgd", lr=0.1, momentum=0.9, nesterov=True,
                               schedule="cosine", warmup_steps=10)
        self.assertEqual(opt["nesterov"], 1.0)
        self.assertEqual(opt["schedule"], "cosine")
        opt["lr"] = 0.2
        self.assertAlmostEqual(opt.get("learning_rate"), 0.2)
        lo, hi = mmaint.Optimizer.bounds("momentum")
        self.assertTrue(lo == 0 and hi < 1)
        self.assertIn("learning_rate", mmaint.Optimizer.setting_names())
        self.assertEqual(opt.model, m)
        self.assertIn("sgd", repr(opt))
        with self.assertRaises(ValueError):
            opt.set(schedule="sometimes")
        with self.assertRaises(TypeError):
            opt.set(lr="fast")


class TestErrors(TempDir):
    """Every status code the bindings can meet raises its own exception."""

    def test_invalid_argument(self):
        m = mmaint.Model("4-2")
        with self.assertRaises(mmaint.InvalidArgumentError) as cm:
            mmaint.Optimizer(m, "rmsprop")
        self.assertIn("rmsprop", str(cm.exception))
        self.assertEqual(cm.exception.status, -1)
        with self.assertRaises(mmaint.InvalidArgumentError):
            mmaint.Optimizer(m, "sgd", warp_speed=9)
        with self.assertRaises(mmaint.InvalidArgumentError):
            m.add_dense(4, "swish")
        with self.assertRaises(mmaint.InvalidArgumentError):
            mmaint.Model("4-x-2")

    def test_out_of_memory(self):
        m = mmaint.Model(1 << 24)  # the largest input width
        with self.assertRaises(mmaint.OutOfMemoryError):
            m.add_dense(1 << 24)  # 2^48 weights
        self.assertEqual(m.num_layers, 0)
        with self.assertRaises(mmaint.InvalidArgumentError):
            mmaint.Model(1 << 40)

    def test_shape_and_range(self):
        m = mmaint.Model("4-2")
        with self.assertRaises(mmaint.ShapeError):
            m.set_weights(0, [1.0] * 7)
        opt = mmaint.Optimizer(m, "sgd")
        with self.assertRaises(mmaint.OutOfRangeError) as cm:
            opt.set(lr=-1)
        self.assertIn("learning_rate", str(cm.exception))
        with self.assertRaises(mmaint.OutOfRangeError):
            opt.step([1, 2, 3, 4], 7)  # label >= outputs
        with self.assertRaises(OverflowError):
            opt.step([1, 2, 3, 4], 1 << 40)

    def test_io_format_checksum_version_notfound(self):
        with self.assertRaises(mmaint.InputOutputError) as cm:
            mmaint.Model.load(self.path("missing.mmf"))
        self.assertIn("missing.mmf", str(cm.exception))
        with self.assertRaises(mmaint.FormatError):
            mmaint.Model.from_bytes(b"not a model file at all")
        m = mmaint.Model("4-3-2", seed=1)
        p = self.path("m.mmf")
        m.save(p)
        data = bytearray(read(p))
        flipped = bytearray(data)
        flipped[-1] ^= 0x55
        with self.assertRaises(mmaint.ChecksumError):
            mmaint.Model.from_bytes(flipped)
        v2 = bytes(data).replace(b'"format_version":"1"', b'"format_version":"2"')
        self.assertNotEqual(v2, bytes(data))
        with self.assertRaises(mmaint.VersionError):
            mmaint.Model.from_bytes(v2)
        with self.assertRaises(mmaint.NotFoundError):
            mmaint.Optimizer.load(m, p)  # saved without optimizer state
        with self.assertRaises(mmaint.InputOutputError):
            m.save(self.path("no/such/dir/m.mmf"))
        with self.assertRaises(mmaint.InputOutputError):
            mmaint.Dataset.load_csv(self.path("none.csv"))

    def test_unsupported_state_numeric(self):
        m = mmaint.Model("4-3-2", seed=1)
        opt = mmaint.Optimizer(m, "sgd")
        with self.assertRaises(mmaint.UnsupportedError):
            opt.set(beta1=0.5)
        with self.assertRaises(mmaint.NumericError):
            opt.step([1, float("nan"), 3, 4], 0)
        self.assertEqual(opt.steps, 0)
        q = mmaint.Quantizer("int8_static")
        with self.assertRaises(mmaint.StateError):
            q.apply(m)  # not calibrated
        m.add_dense(2)  # the optimizer's model changed shape
        with self.assertRaises(mmaint.StateError):
            opt.step([1, 2, 3, 4], 0)

    def test_nonfinite_inputs_at_inference(self):
        """forward/predict/evaluate (and the server's) raise NumericError
        naming the sample and feature instead of answering class 0."""
        m = mmaint.Model("4-5-3", seed=1)
        good = [0.5, -1, 2, 0.25]
        for bad, word in ((float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "-inf")):
            x = good + [1, 2, bad, 4]  # sample 1, feature 2
            want = "input sample 1, feature 2 is %s" % word
            for call in (lambda: m.forward(x), lambda: m.predict_proba(x), lambda: m.predict(x),
                         lambda: m.evaluate(x, [0, 1])):
                with self.assertRaises(mmaint.NumericError) as cm:
                    call()
                self.assertIn(want, str(cm.exception))
        self.assertEqual(len(m.predict(good)), 1)
        server = mmaint.Server(m)
        with self.assertRaises(mmaint.NumericError) as cm:
            server.predict([float("nan"), 0, 0, 0])
        self.assertIn("input sample 0, feature 0 is NaN", str(cm.exception))
        with self.assertRaises(mmaint.NumericError):
            server.forward([0, 0, 0, float("inf")])
        self.assertEqual(server.outstanding, 0)
        server.close()

    def test_cancelled_from_the_c_api(self):
        """A raw C callback that stops fit gives CancelledError through the
        status check (Optimizer.fit reports a stop requested by its own
        callback as result.stopped instead)."""
        x, y = blobs(64, 1)
        ds = mmaint.Dataset(x, y, dim=DIM)
        m = mmaint.Model("8-3")
        opt = mmaint.Optimizer(m, "sgd")
        cb = _lib.FIT_CALLBACK(lambda p, u: 1)
        with self.assertRaises(mmaint.CancelledError) as cm:
            _lib.lib.mm_optimizer_fit(opt._p(), ds._p(), None, cb, None, None)
        self.assertEqual(cm.exception.name, "MM_E_CANCELLED")

    def test_closed_objects(self):
        m = mmaint.Model("4-2")
        m.close()
        m.close()  # idempotent
        self.assertTrue(m.closed)
        with self.assertRaisesRegex(ValueError, "Model is closed"):
            m.predict([1, 2, 3, 4])
        with self.assertRaises(ValueError):
            mmaint.Optimizer(m)
        with self.assertRaises(TypeError):
            mmaint.Optimizer("not a model")
        self.assertIn("closed", repr(m))


class TestOwnership(unittest.TestCase):
    def test_handle_frees_once_after_borrowers(self):
        freed = []
        model = Handle(1, freed.append)
        opt = Handle(2, freed.append, deps=(model,))
        model.release()
        self.assertEqual(freed, [])  # borrowed: deferred
        model.release()
        opt.release()
        opt.release()
        self.assertEqual(freed, [2, 1])

    def test_close_model_before_optimizer(self):
        m = mmaint.Model("4-2")
        opt = mmaint.Optimizer(m, "sgd")
        h = m._h
        m.close()
        self.assertIsNotNone(h.ptr)  # still used by the optimizer
        opt.step([1, 2, 3, 4], 1)  # and still valid
        opt.close()
        self.assertIsNone(h.ptr)
        self.assertIsNone(opt._h.ptr)

    def test_garbage_collected_in_any_order(self):
        m = mmaint.Model("4-2")
        opt = mmaint.Optimizer(m, "sgd")
        hm, ho = m._h, opt._h
        del m
        gc.collect()
        self.assertIsNotNone(hm.ptr)  # the optimizer keeps its model alive
        self.assertIs(opt.model._h, hm)
        del opt
        gc.collect()
        self.assertIsNone(ho.ptr)
        self.assertIsNone(hm.ptr)

    def test_context_managers(self):
        with mmaint.Model("4-2") as m, mmaint.Optimizer(m) as opt, \
                mmaint.Pruner() as p, mmaint.Quantizer("fp16") as q, \
                mmaint.Dataset([[1, 2, 3, 4]], [0]) as ds:
            opt.fit(ds)
            self.assertEqual(p.criterion, "magnitude_global")
            self.assertEqual(q.scheme, "fp16")
        for o in (m, opt, p, q, ds):
            self.assertTrue(o.closed)
            self.assertIsNone(o._h.ptr)

    def test_dataset_views_keep_it_alive(self):
        x, y = blobs(10, 1)
        ds = mmaint.Dataset(x, y, dim=DIM)
        f, l = ds.features, ds.labels
        h = ds._h
        ds.close()
        self.assertIsNotNone(h.ptr)
        self.assertEqual(list(memoryview(f).cast("B").cast("f")) if np is None
                         else f.ravel().tolist(), list(x))
        self.assertEqual(list(l), list(y))
        del f
        gc.collect()
        self.assertIsNotNone(h.ptr)
        del l
        gc.collect()
        self.assertIsNone(h.ptr)

    def test_no_leaks(self):
        """Create/use/free in a loop: Python allocations (tracemalloc) and the
        process RSS stay flat. Each iteration would leak ~1 MB of C memory."""
        x, y = blobs(64, 1)

        def once():
            m = mmaint.Model("8-256-256-3", seed=1)
            opt = mmaint.Optimizer(m, "adam")
            opt.step(x, y)
            ds = mmaint.Dataset(x, y, dim=DIM)
            opt.fit(ds, batch_size=32, callback=lambda p: None)
            m.predict(x)
            ds.features
            if np is not None:
                m.predict(np.frombuffer(x, np.float32).reshape(-1, DIM))
            p = mmaint.Pruner("magnitude", sparsity=0.5)
            p.apply(m)
            c = m.clone()
            c.close()
            with self.assertRaises(mmaint.ShapeError):
                m.predict([1.0])
            with self.assertRaises(mmaint.InvalidArgumentError):
                mmaint.Optimizer(m, "nope")
            del m  # before the optimizer: frees wait for it

        for _ in range(30):
            once()
        gc.collect()
        tracemalloc.start()
        snap0 = tracemalloc.take_snapshot()
        rss0 = rss_kb()
        for _ in range(300):
            once()
        gc.collect()
        rss1 = rss_kb()
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        py_growth = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
        self.assertLess(py_growth, 64 * 1024, "Python allocations grew by %d bytes" % py_growth)
        if os.environ.get("MMAINT_TEST_SANITIZED"):
            return  # ASan's quarantine holds freed memory: RSS says nothing here
        self.assertLess(rss1 - rss0, 16 * 1024,
                        "RSS grew from %d to %d kB over 300 iterations" % (rss0, rss1))


class TestDataset(TempDir):
    def test_from_arrays(self):
        x, y = blobs(50, 1)
        ds = mmaint.Dataset.from_arrays(x, y, dim=DIM)
        self.assertEqual((len(ds), ds.size, ds.dim, ds.num_classes), (50, 50, DIM, 3))
        rows = [list(x[i * DIM:(i + 1) * DIM]) for i in range(50)]
        self.assertEqual(len(mmaint.Dataset(rows, list(y))), 50)  # list of rows
        sub = ds[10:20]
        self.assertEqual(len(sub), 10)
        self.assertEqual(list(sub.labels), list(y[10:20]))
        self.assertEqual(len(ds.slice(45, 5)), 5)
        with self.assertRaises(mmaint.OutOfRangeError):
            ds.slice(45, 6)
        with self.assertRaises(TypeError):
            ds[3]
        nolabels = mmaint.Dataset(x, dim=DIM)
        self.assertIsNone(nolabels.labels)
        self.assertEqual(nolabels.num_classes, 0)
        with self.assertRaises(TypeError):
            mmaint.Dataset(x)  # flat data needs dim=
        with self.assertRaises(mmaint.ShapeError):
            mmaint.Dataset(x, y[:3], dim=DIM)

    def test_views_are_read_only(self):
        x, y = blobs(5, 1)
        ds = mmaint.Dataset(x, y, dim=DIM)
        f = ds.features
        with self.assertRaises((TypeError, ValueError)):
            f[0] = 1.0

    def test_standardize_minmax(self):
        x, y = blobs(200, 1)
        ds = mmaint.Dataset(x, y, dim=DIM).standardize()
        f = list(memoryview(ds.features).cast("B").cast("f"))
        col0 = f[0::DIM]
        self.assertAlmostEqual(sum(col0) / len(col0), 0.0, places=4)
        mm = mmaint.Dataset(x, y, dim=DIM).minmax()
        g = list(memoryview(mm.features).cast("B").cast("f"))
        self.assertAlmostEqual(min(g), 0.0, places=6)
        self.assertAlmostEqual(max(g), 1.0, places=6)
        other = mmaint.Dataset([[1.0] * 4], dim=4)
        with self.assertRaises(mmaint.ShapeError):
            ds.standardize(other)

    def test_csv(self):
        p = self.path("d.csv")
        with open(p, "w") as f:
            f.write("a,b,label\n1,2,0\n3,4,1\n5,6,1\n")
        ds = mmaint.Dataset.load_csv(p)  # labels: the last column
        self.assertEqual((len(ds), ds.dim), (3, 2))
        self.assertEqual(list(ds.labels), [0, 1, 1])
        with open(p, "w") as f:
            f.write("1,2,0\n3,4\n")
        with self.assertRaises(mmaint.FormatError) as cm:
            mmaint.Dataset.load_csv(p)
        self.assertIn("line 2", str(cm.exception))

    def test_idx(self):
        img = os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")
        lab = os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")
        if not os.path.exists(img):
            self.skipTest("Fashion-MNIST not installed at %s" % FASHION)
        ds = mmaint.Dataset.load_idx(img, lab)
        self.assertEqual((len(ds), ds.dim, ds.num_classes), (10000, 784, 10))
        with self.assertRaises(mmaint.FormatError):
            mmaint.Dataset.load_idx(lab, None)  # 1-d labels file is not images
        if np is not None:
            f = ds.features
            self.assertEqual(f.shape, (10000, 784))
            self.assertTrue(0.0 <= f.min() and f.max() <= 1.0)


class TestPrunerQuantizer(unittest.TestCase):
    def trained(self):
        x, y = blobs(600, 1)
        m = mmaint.Model("8-32-32-3:relu", seed=1)
        mmaint.Optimizer(m, "adam", lr=1e-2).fit(x, y, epochs=5, batch_size=32)
        return m, x, y

    def test_prune_one_shot_and_finalize(self):
        m, x, y = self.trained()
        p = mmaint.Pruner("magnitude_global", sparsity=0.6, sparse_format="dense")
        self.assertEqual(p["sparse_format"], "dense")
        nz = m.num_nonzero
        p.apply(m)
        self.assertLess(m.num_nonzero, nz)
        total = sum(l.inputs * l.outputs for l in m.layers)
        zeros = sum(m.layer_sparsity(i) * l.inputs * l.outputs for i, l in enumerate(m.layers))
        self.assertAlmostEqual(zeros / total, 0.6, delta=0.01)
        self.assertGreater(m.evaluate(x, y)[1], 0.8)
        structured = mmaint.Pruner("neuron_l1", sparsity=0.5)
        m2, _, _ = self.trained()
        structured.apply(m2)
        structured.finalize(m2)
        self.assertEqual(m2.layers[0].outputs, 16)

    def test_gradual_pruning_while_training(self):
        m, x, y = self.trained()
        opt = mmaint.Optimizer(m, "adam", lr=1e-3)
        p = mmaint.Pruner("magnitude", sparsity=0.5, schedule="polynomial", begin_step=0,
                          end_step=20, frequency=5)
        self.assertAlmostEqual(p.sparsity_at(20), 0.5)
        p.attach(opt)
        del p  # the optimizer keeps it alive
        gc.collect()
        opt.fit(x, y, epochs=2, batch_size=32)
        self.assertAlmostEqual(m.layer_sparsity(0), 0.5, delta=0.02)
        opt._pruner.detach()
        self.assertIsNone(opt._pruner)

    def test_quantize(self):
        m, x, y = self.trained()
        acc = m.evaluate(x, y)[1]
        q = mmaint.Quantizer("int8_static", observer="percentile", percentile=99.9)
        self.assertEqual(q["observer"], "percentile")
        q.calibrate(m, x[:DIM * 200])
        q.apply(m)
        self.assertNotEqual(m.layers[0].kind, "dense")
        self.assertGreater(m.evaluate(x, y)[1], acc - 0.05)
        rep = q.report
        self.assertEqual(len(rep["layers"]), 3)
        with self.assertRaises(mmaint.UnsupportedError):
            mmaint.Quantizer("fp16", observer="mse")
        m2, _, _ = self.trained()
        q2 = mmaint.Quantizer("int8_dynamic", max_drop=0.01)
        final = q2.apply_with_tolerance(m2, x, y)
        self.assertGreater(final, 0.8)
        self.assertEqual(q2.report["mode"], "accuracy_aware")

    def test_prune_then_quantize(self):
        """A pruned model (sparse layers) quantizes: its layers become
        sparse_int8 (it used to raise UnsupportedError)."""
        m, x, y = self.trained()
        mmaint.Pruner("magnitude_global", sparsity=0.8, sparse_format="sparse").apply(m)
        pr = mmaint.Pruner("magnitude_global", sparsity=0.8, sparse_format="sparse")
        pr.finalize(m)
        self.assertEqual([l.kind for l in m.layers], ["sparse"] * 3)
        acc = m.evaluate(x, y)[1]
        q = mmaint.Quantizer("int8_static")
        q.calibrate(m, x[:DIM * 200])
        q.apply(m)
        self.assertEqual([l.kind for l in m.layers], ["sparse_int8"] * 3)
        self.assertGreater(m.evaluate(x, y)[1], acc - 0.05)


def floats(buf):
    """The float32 values of a result buffer (numpy array or memoryview)."""
    return list(array.array("f", bytes(memoryview(buf).cast("B"))))


class TestConventions(TempDir):
    """What a new user expects to be the same everywhere (issue 12)."""

    def test_get_weights_of_every_layer_kind(self):
        """get_weights gives the dense outputs x inputs matrix of any layer
        kind: zeros where a sparse layer pruned, the dequantized weights of
        an int8 layer without master weights; set_weights takes the same."""
        x, y = blobs(300, 2)
        m = mmaint.Model("8-32-3:relu", seed=1)
        mmaint.Optimizer(m, "adam", lr=1e-2).fit(x, y, epochs=3, batch_size=32)
        p = mmaint.Pruner("magnitude", sparsity=0.75, sparse_format="sparse",
                          reorder_neurons=False)
        p.apply(m)
        masked = [floats(m.get_weights(i)[0]) for i in range(2)]
        p.finalize(m)
        self.assertEqual([l.kind for l in m.layers], ["sparse", "sparse"])
        for i, (nin, nout) in enumerate([(8, 32), (32, 3)]):
            w, b = m.get_weights(i)
            if np is not None:
                self.assertEqual(w.shape, (nout, nin))
            self.assertEqual(floats(w), masked[i])
            self.assertAlmostEqual(floats(w).count(0.0) / (nin * nout), 0.75, delta=0.02)
        # set_weights takes the dense matrix too; pruned positions stay zero
        w0 = floats(m.get_weights(0)[0])
        m.set_weights(0, [v * 2 + 1 for v in w0])
        w1 = floats(m.get_weights(0)[0])
        self.assertEqual(w1, list(array.array("f", [v * 2 + 1 if v != 0 else 0.0 for v in w0])))
        g = m.backward(x[:DIM * 4], labels=y[:4])
        self.assertGreater(g, 0)
        dw, db = m.get_gradients(0)
        self.assertEqual([i for i, v in enumerate(floats(dw)) if v != 0 and w1[i] == 0], [])
        # an int8 layer that keeps no float master weights: its dequantized weights
        m2 = mmaint.Model("8-16-3", seed=2)
        before = floats(m2.get_weights(0)[0])
        mmaint.Quantizer("int8_weight_only", keep_master=False).apply(m2)
        self.assertEqual(m2.layers[0].kind, "int8")
        after = floats(m2.get_weights(0)[0])
        scale = max(abs(v) for v in before) / 127
        self.assertLessEqual(max(abs(a - b) for a, b in zip(after, before)), scale * 0.51)

    def test_enum_settings_take_the_library_names(self):
        """Enum-valued settings of every object take names, mapped by the C
        library (no name tables in the binding); unknown names list the
        valid ones."""
        import mmaint.optimizer
        self.assertFalse(hasattr(mmaint.optimizer, "SCHEDULES"))
        m = mmaint.Model("4-3-2", seed=1)
        opt = mmaint.Optimizer(m, "sgd", schedule="exponential")
        self.assertEqual(opt["schedule"], "exponential")
        with self.assertRaises(mmaint.InvalidArgumentError) as cm:
            opt.set(schedule="cosin")
        self.assertIn("constant, step, exponential, cosine", str(cm.exception))
        with self.assertRaises(TypeError):
            opt.set(momentum="high")
        p = mmaint.Pruner("magnitude", schedule="polynomial", sparse_format="sparse")
        self.assertEqual((p["schedule"], p["sparse_format"]), ("polynomial", "sparse"))
        with self.assertRaisesRegex(mmaint.InvalidArgumentError, "one_shot, polynomial"):
            p.set(schedule="gradual")
        q = mmaint.Quantizer("int8_static", observer="entropy")
        self.assertEqual(q["observer"], "entropy")
        with self.assertRaisesRegex(mmaint.InvalidArgumentError, "moving_minmax"):
            q.set(observer="max")
        mt = mmaint.Maintainer(m, "sgd", detector="ddm")
        self.assertEqual(mt["detector"], "ddm")
        mt.set(detector="none")
        self.assertEqual(mt["detector"], "none")
        mt["detector"] = "ph"
        self.assertEqual(mt["detector"], "page_hinkley")
        with self.assertRaisesRegex(mmaint.InvalidArgumentError, "adwin, page_hinkley"):
            mt.set(detector="kswin")
        with self.assertRaises(TypeError):
            mt.set(window="large")
        mt.set_optimizer(schedule="cosine", lr=0.01)

    def test_csv_label_column(self):
        """The label column: the last by default ("last"), None or "none"
        for no labels, else a 0-based column (negative from the end, -1 =
        the last), as the CLI's --label-column."""
        p = self.path("d.csv")
        with open(p, "w") as f:
            f.write("a,b,label\n1,2,0\n3,4,1\n5,6,1\n")
        for col in ((), ("last",), (-1,), (2,)):
            ds = mmaint.Dataset.load_csv(p, *col)
            self.assertEqual((len(ds), ds.dim, list(ds.labels)), (3, 2, [0, 1, 1]), col)
        for col in (None, "none"):
            ds = mmaint.Dataset.load_csv(p, label_column=col)
            self.assertEqual((ds.dim, ds.labels), (3, None))
        self.assertEqual(list(mmaint.Dataset.load_csv(p, 0).labels), [1, 3, 5])
        self.assertEqual(list(mmaint.Dataset.load_csv(p, -3).labels), [1, 3, 5])
        self.assertEqual(list(mmaint.Dataset.load_csv(p, -2).labels), [2, 4, 6])
        for bad in (3, -4):
            with self.assertRaises(mmaint.OutOfRangeError):
                mmaint.Dataset.load_csv(p, bad)
        with self.assertRaises(ValueError):
            mmaint.Dataset.load_csv(p, "first")
        with self.assertRaises(TypeError):
            mmaint.Dataset.load_csv(p, 1.5)


class TestThreads(unittest.TestCase):
    def test_parallel_inference_on_a_shared_model(self):
        x, _ = blobs(256, 1)
        m = mmaint.Model("8-64-64-3", seed=4)
        want = bytes(memoryview(m.predict_proba(x)).cast("B"))
        results, errors = [], []

        def work():
            try:
                for _ in range(50):
                    results.append(bytes(memoryview(m.predict_proba(x)).cast("B")) == want)
            except BaseException as e:  # reported below
                errors.append(e)
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(results, [True] * 200)

    def test_error_messages_are_per_thread(self):
        msgs = {}

        def work(k):
            m = mmaint.Model("4-2")
            try:
                mmaint.Optimizer(m, "opt%d" % k)
            except mmaint.InvalidArgumentError as e:
                msgs[k] = str(e)
        ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for k in range(4):
            self.assertIn("opt%d" % k, msgs[k])


if __name__ == "__main__":
    unittest.main()
