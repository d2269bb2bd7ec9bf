#!/usr/bin/python3
"""Tests of the mmaint command-line tool.

usage: test_cli.py PATH_TO_MMAINT [unittest args]   (or env MMAINT=PATH)

Generates small synthetic data sets (CSV and IDX, one gzip-compressed) so
that everything runs in seconds, then checks: train -> eval -> update -> info
round trips, --json output, optimizer-state resumption, error messages and
exit codes (1 runtime, 2 usage), and `demo --quick` when Fashion-MNIST is
installed. Standard library only (no numpy).
"""
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import unittest

MMAINT = os.environ.get("MMAINT")
FASHION_DIR = os.environ.get("MM_FASHION_DIR", "/usr/share/datasets/fashion-mnist")

FEATURES = 8
CLASSES = 3


def run(*args, timeout=120):
    """Run mmaint; return (exit code, stdout, stderr)."""
    p = subprocess.run([MMAINT] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def blobs(rng, n):
    """n samples of FEATURES floats in CLASSES well separated Gaussian blobs."""
    centers = [[3.0 * ((k + j) % CLASSES == 0) - 1.0 for j in range(FEATURES)] for k in range(CLASSES)]
    rows = []
    for _ in range(n):
        k = rng.randrange(CLASSES)
        rows.append(([c + rng.gauss(0, 0.4) for c in centers[k]], k))
    return rows


def write_csv(path, rows, header=True):
    with open(path, "w") as f:
        if header:
            f.write(",".join(["f%d" % j for j in range(FEATURES)] + ["label"]) + "\n")
        for x, y in rows:
            f.write(",".join("%.5f" % v for v in x) + ",%d\n" % y)


def write_idx(images_path, labels_path, rng, n, side=4, gz=False):
    """IDX images (side x side bytes) whose bright block encodes the class."""
    pixels, labels = bytearray(), bytearray()
    block = side * side // CLASSES
    for _ in range(n):
        k = rng.randrange(CLASSES)
        for p in range(side * side):
            bright = k * block <= p < (k + 1) * block
            v = rng.gauss(200, 25) if bright else rng.gauss(30, 20)
            pixels.append(max(0, min(255, int(v))))
        labels.append(k)
    img = struct.pack(">IIII", 0x803, n, side, side) + bytes(pixels)
    lab = struct.pack(">II", 0x801, n) + bytes(labels)
    opener = gzip.open if gz else open
    with opener(images_path, "wb") as f:
        f.write(img)
    with open(labels_path, "wb") as f:
        f.write(lab)


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="mmaint-cli-")
        d = cls.dir = cls.tmp.name
        rng = random.Random(1234)
        write_csv(os.path.join(d, "train.csv"), blobs(rng, 600))
        write_csv(os.path.join(d, "test.csv"), blobs(rng, 200))
        write_csv(os.path.join(d, "stream.csv"), blobs(rng, 300), header=False)
        write_idx(os.path.join(d, "train-images.gz"), os.path.join(d, "train-labels"), rng, 500, gz=True)
        write_idx(os.path.join(d, "test-images"), os.path.join(d, "test-labels"), rng, 150)
        # A trained model shared by several tests.
        cls.model = os.path.join(d, "shared.mmf")
        rc, out, err = run("train", "--train-csv", cls.p("train.csv"), "--arch", "8-16-3:relu",
                           "--epochs", 3, "--batch-size", 16, "--lr", "0.01", "--out", cls.model,
                           "--quiet")
        if rc != 0:
            raise RuntimeError("setup training failed (%d): %s" % (rc, err))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def p(cls, name):
        return os.path.join(cls.dir, name)

    # -- helpers ----------------------------------------------------------
    def ok(self, *args, **kw):
        rc, out, err = run(*args, **kw)
        self.assertEqual(rc, 0, "mmaint %s failed (%d):\n%s\n%s" % (" ".join(map(str, args)), rc, out, err))
        return out, err

    def ok_json(self, *args, **kw):
        out, err = self.ok(*args, "--json", **kw)
        try:
            return json.loads(out)
        except ValueError as e:
            self.fail("--json output does not parse (%s):\n%s" % (e, out))

    def fails(self, code, fragment, *args):
        rc, out, err = run(*args)
        self.assertEqual(rc, code, "mmaint %s: expected exit %d, got %d\nstdout: %s\nstderr: %s"
                         % (" ".join(map(str, args)), code, rc, out, err))
        self.assertIn(fragment, err, "stderr of mmaint %s lacks %r:\n%s" % (" ".join(map(str, args)), fragment, err))
        self.assertNotIn("AddressSanitizer", err)
        return err

    # -- basics -----------------------------------------------------------
    def test_version_and_help(self):
        out, _ = self.ok("--version")
        self.assertRegex(out, r"^mmaint \d+\.\d+\.\d+")
        out, _ = self.ok("help")
        for cmd in ("train", "eval", "update", "info", "demo"):
            self.assertIn(cmd, out)
        for cmd in ("train", "eval", "update", "info", "demo"):
            out, _ = self.ok("help", cmd)
            self.assertIn("Usage: mmaint " + cmd, out)
            out2, _ = self.ok(cmd, "--help")
            self.assertEqual(out, out2)
        out, _ = self.ok("train", "--help")
        self.assertIn("--weight-decay", out)
        self.assertIn("--beta2", out)  # generated from the library's setting names

    def test_usage_errors_at_top_level(self):
        rc, out, err = run()
        self.assertEqual(rc, 2)
        self.assertIn("Usage", err)
        self.fails(2, "unknown command 'frobnicate'", "frobnicate")
        self.fails(2, "unknown command", "help", "frobnicate")

    # -- round trip -------------------------------------------------------
    def test_round_trip_csv(self):
        m1, m2 = self.p("rt1.mmf"), self.p("rt2.mmf")
        t = self.ok_json("train", "--train-csv", self.p("train.csv"), "--label-column", "last",
                         "--val-split", "0.2", "--test-csv", self.p("test.csv"), "--arch", "8-16-3:relu",
                         "--epochs", 4, "--batch-size", 16, "--lr", "0.01", "--seed", 7, "--out", m1)
        self.assertEqual(t["command"], "train")
        self.assertEqual(len(t["epochs"]), 4)
        self.assertEqual(t["data"]["train"]["samples"], 480)
        self.assertEqual(t["data"]["val"]["samples"], 120)
        self.assertGreater(t["test_accuracy"], 0.9)
        self.assertGreater(t["val_accuracy"], 0.9)
        self.assertEqual(t["params"], 8 * 16 + 16 + 16 * 3 + 3)
        self.assertEqual(t["file_size"], os.path.getsize(m1))

        e = self.ok_json("eval", m1, "--csv", self.p("test.csv"))
        self.assertEqual(e["samples"], 200)
        self.assertAlmostEqual(e["accuracy"], t["test_accuracy"], places=6)
        self.assertEqual(len(e["confusion"]), 3)
        self.assertEqual(sum(map(sum, e["confusion"])), 200)
        self.assertEqual(sum(e["confusion"][i][i] for i in range(3)), round(e["accuracy"] * 200))
        self.assertGreater(e["samples_per_second"], 0)
        out, _ = self.ok("eval", m1, "--test-csv", self.p("test.csv"))
        self.assertIn("confusion matrix", out)
        self.assertIn("accuracy", out)

        u = self.ok_json("update", m1, "--csv", self.p("stream.csv"), "--test-csv", self.p("test.csv"),
                         "--optimizer", "sgd", "--lr", "0.01", "--every", 100, "--report-every", 50,
                         "--window", 100, "--out", m2)
        self.assertEqual(u["online"]["samples"], 300)
        self.assertEqual(u["online"]["window"], 100)
        self.assertGreater(u["online"]["progressive_accuracy"], 0.8)
        self.assertGreater(u["test_accuracy_after"], 0.8)
        self.assertEqual([s["samples"] for s in u["saves"]], [100, 200, 300])
        self.assertFalse(u["resumed_optimizer_state"])

        i = self.ok_json("info", m2)
        self.assertEqual(i["arch"], "8-16-3:relu")
        self.assertEqual(i["params"], t["params"])
        self.assertEqual(i["file_size"], os.path.getsize(m2))
        self.assertFalse(i["optimizer_state"]["present"])
        self.assertEqual([l["outputs"] for l in i["layers"]], [16, 3])
        ops = [ev["op"] for ev in i["lineage"]]
        self.assertIn("train", ops)
        self.assertEqual(ops.count("online_update"), 3)
        ups = [ev for ev in i["lineage"] if ev["op"] == "online_update"]
        self.assertEqual(ups[0]["parent"], m1)
        self.assertEqual([ev["total_samples"] for ev in ups], [100, 200, 300])
        out, _ = self.ok("info", m2)
        self.assertIn("lineage:", out)
        self.assertIn("online_update", out)
        self.assertIn("no state stored", out)

    def test_json_goes_to_stdout_only(self):
        rc, out, err = run("train", "--train-csv", self.p("train.csv"), "--arch", "8-8-3",
                           "--epochs", 2, "--out", self.p("j.mmf"), "--json")
        self.assertEqual(rc, 0, err)
        json.loads(out)  # exactly one JSON document
        self.assertIn("epoch 2/2", err)  # human lines moved to stderr
        self.assertNotIn("\r", err)  # no progress bar when stderr is not a terminal

    def test_idx_data_and_default_arch(self):
        m = self.p("idx.mmf")
        t = self.ok_json("train", "--train-images", self.p("train-images.gz"), "--train-labels",
                         self.p("train-labels"), "--test-images", self.p("test-images"), "--test-labels",
                         self.p("test-labels"), "--epochs", 3, "--batch-size", 32, "--out", m)
        self.assertEqual(t["arch"], "16-256-128-3:relu")  # derived from the data
        self.assertEqual(t["data"]["train"]["features"], 16)
        self.assertGreater(t["test_accuracy"], 0.9)
        e = self.ok_json("eval", m, "--images", self.p("test-images"), "--labels", self.p("test-labels"),
                         "--limit", 100)
        self.assertEqual(e["samples"], 100)

    def test_optimizer_settings_and_state(self):
        m1, m2 = self.p("opt1.mmf"), self.p("opt2.mmf")
        t = self.ok_json("train", "--train-csv", self.p("train.csv"), "--arch", "8-12-3:tanh",
                         "--optimizer", "sgd", "--nesterov", "--momentum", "0.9", "--lr", "0.02",
                         "--schedule", "cosine", "--warmup-steps", 5, "--set", "clip_norm=5",
                         "--weight-decay", "1e-4", "--epochs", 2, "--save-optimizer", "--out", m1)
        o = t["optimizer"]
        self.assertEqual(o["optimizer"], "sgd")
        self.assertAlmostEqual(o["momentum"], 0.9)
        self.assertTrue(o["nesterov"])
        self.assertAlmostEqual(o["clip_norm"], 5)
        self.assertEqual(o["schedule"], "cosine")
        self.assertTrue(t["optimizer_state_saved"])
        i = self.ok_json("info", m1)
        self.assertTrue(i["optimizer_state"]["present"])
        self.assertEqual(i["optimizer_state"]["optimizer"], "sgd")
        steps = i["optimizer_state"]["steps"]
        self.assertGreater(steps, 0)
        u = self.ok_json("update", m1, "--csv", self.p("stream.csv"), "--limit", 40, "--out", m2)
        self.assertTrue(u["resumed_optimizer_state"])
        self.assertTrue(u["optimizer_state_saved"])
        i2 = self.ok_json("info", m2)
        self.assertEqual(i2["optimizer_state"]["steps"], steps + 40)
        # --fresh-optimizer ignores the stored state.
        u = self.ok_json("update", m1, "--csv", self.p("stream.csv"), "--limit", 10, "--fresh-optimizer",
                         "--out", self.p("opt3.mmf"))
        self.assertFalse(u["resumed_optimizer_state"])
        # Continue batch training from a file.
        t2 = self.ok_json("train", "--from", m1, "--train-csv", self.p("train.csv"), "--epochs", 1,
                          "--out", self.p("opt4.mmf"))
        self.assertEqual(t2["arch"], "8-12-3:tanh")

    # -- errors -----------------------------------------------------------
    def test_bad_numbers_and_flags(self):
        base = ["train", "--train-csv", self.p("train.csv"), "--out", self.p("x.mmf")]
        self.fails(2, "mmaint train: --epochs: 'abc' is not a number", *base, "--epochs", "abc")
        self.fails(2, "mmaint train: --lr: '1e-3x' is not a number", *base, "--lr", "1e-3x")
        self.fails(2, "mmaint train: --batch-size: '' is not a number", *base, "--batch-size", "")
        self.fails(2, "--threads: '2.5' is not a whole number", *base, "--threads", "2.5")
        self.fails(2, "--epochs", *base, "--epochs", "0")  # out of range, from the library
        self.fails(2, "--epochs", *base, "--epochs", "1.5")
        self.fails(2, "--val-split", *base, "--val-split", "1.5")
        self.fails(2, "unknown or ambiguous option '--frobnicate'", *base, "--frobnicate")
        self.fails(2, "needs a value", *base, "--epochs")
        self.fails(2, "takes no value", *base, "--json=yes")
        self.fails(2, "--momentum", *base, "--optimizer", "sgd", "--momentum", "2")
        self.fails(2, "--momentum", *base, "--optimizer", "adam", "--momentum", "0.5")  # unsupported
        self.fails(2, "unknown optimizer setting 'bogus'", *base, "--set", "bogus=1")
        self.fails(2, "--set: 'momentum' is not NAME=VALUE", *base, "--set", "momentum")
        self.fails(2, "'rmsprop' is not an optimizer", *base, "--optimizer", "rmsprop")
        self.fails(2, "'sometimes' is not a schedule", *base, "--schedule", "sometimes")
        self.fails(2, "--out FILE is required", "train", "--train-csv", self.p("train.csv"))
        self.fails(2, "unexpected argument 'extra'", *base, "extra")
        self.fails(2, "--train-images needs --train-labels", "train", "--train-images",
                   self.p("test-images"), "--out", self.p("x.mmf"))
        self.fails(2, "which model?", "eval")
        self.fails(2, "which model?", "info")
        self.fails(2, "--out FILE is required", "update", self.model, "--csv", self.p("stream.csv"))
        self.fails(2, "--every: '-5' must not be negative", "update", self.model, "--every", "-5",
                   "--out", self.p("x.mmf"))

    def test_bad_arch(self):
        base = ["train", "--train-csv", self.p("train.csv"), "--out", self.p("x.mmf")]
        self.fails(2, "mmaint train: --arch '8-x-3'", *base, "--arch", "8-x-3")
        self.fails(2, "mmaint train: --arch", *base, "--arch", "8-16-3:wiggle")
        err = self.fails(1, "has 8 features per sample but the model takes 10 inputs", *base, "--arch", "10-4-3")
        self.assertTrue(err.startswith("mmaint train: "))
        self.fails(1, "labels up to 2 but the model has only 2 outputs", *base, "--arch", "8-4-2")
        self.assertFalse(os.path.exists(self.p("x.mmf")))

    def test_missing_files(self):
        self.fails(1, "mmaint train: loading %s: " % self.p("nope.csv"), "train", "--train-csv",
                   self.p("nope.csv"), "--out", self.p("x.mmf"))
        self.fails(1, "mmaint train: loading", "train", "--train-images", self.p("nope-images"),
                   "--train-labels", self.p("train-labels"), "--out", self.p("x.mmf"))
        self.fails(1, "mmaint eval: loading %s: " % self.p("nope.mmf"), "eval", self.p("nope.mmf"),
                   "--csv", self.p("test.csv"))
        self.fails(1, "mmaint info: loading", "info", self.p("nope.mmf"))
        self.fails(1, "mmaint update: loading", "update", self.p("nope.mmf"), "--csv", self.p("stream.csv"),
                   "--out", self.p("x.mmf"))
        self.fails(1, "mmaint eval: loading", "eval", self.model, "--csv", self.p("nope.csv"))
        self.fails(1, "Fashion-MNIST not found", "eval", self.model, "--data-dir", self.p("no-such-dir"))
        self.fails(1, "Fashion-MNIST not found", "demo", "--quick", "--data-dir", self.p("no-such-dir"),
                   "--out", self.p("demo-none"))

    def test_corrupt_model_files(self):
        garbage = self.p("garbage.mmf")
        with open(garbage, "wb") as f:
            f.write(b"this is not a model file at all\n" * 10)
        with open(self.model, "rb") as f:
            good = f.read()
        truncated = self.p("truncated.mmf")
        with open(truncated, "wb") as f:
            f.write(good[: len(good) // 2])
        flipped = self.p("flipped.mmf")
        bad = bytearray(good)
        bad[len(bad) - 20] ^= 0x40  # in the tensor data: the checksum must catch it
        with open(flipped, "wb") as f:
            f.write(bytes(bad))
        empty = self.p("empty.mmf")
        open(empty, "wb").close()
        for path in (garbage, truncated, flipped, empty):
            for cmd in (["info", path], ["eval", path, "--csv", self.p("test.csv")],
                        ["update", path, "--csv", self.p("stream.csv"), "--out", self.p("x.mmf")]):
                rc, out, err = run(*cmd)
                self.assertEqual(rc, 1, "%s: exit %d\n%s" % (" ".join(cmd), rc, err))
                self.assertIn("mmaint %s: loading %s: " % (cmd[0], path), err)
                self.assertEqual(out, "")
        rc, out, err = run("eval", garbage, "--csv", self.p("test.csv"), "--json")
        self.assertEqual((rc, out), (1, ""))

    def test_bad_data(self):
        ragged = self.p("ragged.csv")
        with open(ragged, "w") as f:
            f.write("1,2,3,0\n4,5,6,1\n7,8,1\n")
        self.fails(1, "mmaint train: loading %s: " % ragged, "train", "--train-csv", ragged, "--out",
                   self.p("x.mmf"))
        narrow = self.p("narrow.csv")
        with open(narrow, "w") as f:
            f.write("1,2,3,0\n4,5,6,1\n")
        self.fails(1, "has 3 features per sample but the model takes 8 inputs", "eval", self.model, "--csv",
                   narrow)
        err = self.fails(1, "line 3", "eval", self.model, "--csv", ragged)
        self.assertEqual(err.count(ragged), 1, err)  # the path is not repeated
        self.fails(2, "--offset 5000 is past the end", "eval", self.model, "--csv", self.p("test.csv"),
                   "--offset", 5000)

    # -- demo -------------------------------------------------------------
    def test_demo_quick(self):
        if not os.path.exists(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")):
            self.skipTest("Fashion-MNIST not installed in %s (Debian package dataset-fashion-mnist)"
                          % FASHION_DIR)
        out_dir = self.p("demo")
        start = time.monotonic()
        rc, out, err = run("demo", "--quick", "--out", out_dir, "--json", timeout=300)
        elapsed = time.monotonic() - start
        self.assertEqual(rc, 0, err)
        d = json.loads(out)
        self.assertTrue(d["quick"])
        versions = d["versions"]
        self.assertGreaterEqual(len(versions), 3)
        self.assertEqual(versions[0]["version"], "v1")
        for v in versions:
            self.assertTrue(os.path.isfile(v["file"]), v["file"])
            self.assertEqual(v["file_size"], os.path.getsize(v["file"]))
            self.assertGreater(v["test_accuracy"], 0.6)
        self.assertEqual(d["online"]["samples"], versions[-1]["online_samples"])
        ops = [ev["op"] for ev in d["lineage"]]
        self.assertEqual(ops.count("online_update"), len(versions) - 1)
        self.assertIn("Summary", err)
        # The last version's file carries the same lineage.
        i = self.ok_json("info", versions[-1]["file"])
        self.assertEqual(i["lineage"], d["lineage"])
        self.assertLess(elapsed, 120, "demo --quick took %.1f s" % elapsed)
        sys.stderr.write("demo --quick: %.1f s\n" % elapsed)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        MMAINT = sys.argv.pop(1)
    if not MMAINT:
        sys.exit("usage: test_cli.py PATH_TO_MMAINT (or set MMAINT)")
    MMAINT = os.path.abspath(MMAINT)
    unittest.main(verbosity=2)
