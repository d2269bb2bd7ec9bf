#!/usr/bin/env python3
"""Tests of `mmaint transfer`: synthetic CSV data (a 4-class base task, a
new 2-class task from a label map), --freeze/--head/--map/--per-class,
before/after/scratch accuracies in --json output, frozen layers kept in the
saved file (via `mmaint info --json`), and usage errors with exit code 2.
With Fashion-MNIST installed, the tops-bottoms-shoes preset end to end.

usage: test_transfer.py PATH_TO_MMAINT [unittest args]   (or env MMAINT=PATH)
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

MMAINT = os.environ.get("MMAINT")
FASHION_DIR = os.environ.get("MM_FASHION_DIR", "/usr/share/datasets/fashion-mnist")
FEATURES = 8


def run(*args, timeout=300):
    p = subprocess.run([MMAINT] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def write_blobs(path, rng, n, classes=4):
    """Class k centred at +3 on feature k; labels 0..classes-1."""
    with open(path, "w") as f:
        f.write(",".join("f%d" % j for j in range(FEATURES)) + ",label\n")
        for _ in range(n):
            k = rng.randrange(classes)
            x = [rng.gauss(0, 0.5) + (3.0 if j == k else 0.0) for j in range(FEATURES)]
            f.write(",".join("%.5f" % v for v in x) + ",%d\n" % k)


class TestTransfer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        rng = random.Random(5)
        cls.train = os.path.join(d, "train.csv")
        cls.test = os.path.join(d, "test.csv")
        write_blobs(cls.train, rng, 800)
        write_blobs(cls.test, rng, 400)
        cls.base = os.path.join(d, "base.mmf")
        rc, out, err = run("train", "--arch", "8-16-12-4:relu", "--train-csv", cls.train,
                           "--test-csv", cls.test, "--epochs", 5, "--quiet", "--out", cls.base)
        assert rc == 0, err

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_new_head_frozen_body(self):
        out_path = self.path("pair.mmf")
        # new task: {0,1} -> 0, {2,3} -> 1, small set of 20 per class
        rc, out, err = run("transfer", "--from", self.base, "--map", "0,0,1,1",
                           "--per-class", 20, "--epochs", 30, "--lr", 0.01, "--batch-size", 8,
                           "--train-csv", self.train, "--test-csv", self.test,
                           "--compare-scratch", "--json", "--out", out_path)
        self.assertEqual(rc, 0, err)
        r = json.loads(out)
        self.assertEqual(r["command"], "transfer")
        self.assertEqual(r["classes"], 2)
        self.assertEqual(r["old_outputs"], 4)
        self.assertEqual(r["train_samples"], 40)
        self.assertEqual(r["frozen_layers"], 2)
        self.assertGreater(r["test_accuracy"], 0.9)
        self.assertGreater(r["test_accuracy"], r["before_accuracy"])
        self.assertIsNotNone(r["scratch_accuracy"])
        self.assertGreater(r["seconds"], 0)
        # `mmaint info` lists the two body layers as frozen (model file flag)
        rc, out, err = run("info", out_path)
        self.assertEqual(rc, 0, err)
        frozen_lines = [l for l in out.splitlines() if l.rstrip().endswith("frozen")]
        self.assertEqual(len(frozen_lines), 2, out)
        rc, out, err = run("info", out_path, "--json")  # ... and so does its JSON
        self.assertEqual(rc, 0, err)
        flags = [l["trainable"] for l in json.loads(out)["layers"]]
        self.assertEqual(flags, [False, False, True], out)

    def test_freeze_list_head_and_drop(self):
        # '-' drops class 3 from training and test data; explicit --head 5
        rc, out, err = run("transfer", "--from", self.base, "--map", "0,1,2,-", "--head", 5,
                           "--freeze", "0", "--epochs", 5, "--train-csv", self.train,
                           "--test-csv", self.test, "--json", "--out", self.path("drop.mmf"))
        self.assertEqual(rc, 0, err)
        r = json.loads(out)
        self.assertEqual(r["classes"], 3)
        self.assertEqual(r["frozen_layers"], 1)
        self.assertIn("-5", r["arch"])
        self.assertLess(r["test_samples"], 400)

    def test_usage_errors(self):
        base = ["--train-csv", self.train, "--out", self.path("x.mmf")]
        cases = [
            (["--map", "0,0,1,1"] + base, "--from"),
            (["--from", self.base, "--map", "0,x,1,1"] + base, "--map"),
            (["--from", self.base, "--map", "0,0,0,0"] + base, "2 new classes"),
            (["--from", self.base, "--freeze", "7"] + base, "does not exist"),
            (["--from", self.base, "--freeze", "bodyy"] + base, "--freeze"),
            (["--from", self.base, "--head", 1] + base, "--head"),
            (["--from", self.base, "--map", "0,1,2"] + base, "entries"),
            (["--from", self.base, "--arch", "8-3"] + base, "exactly one"),
            (["--from", self.base, "--train-csv", self.train], "--out"),
        ]
        for args, words in cases:
            rc, out, err = run("transfer", *args)
            self.assertEqual(rc, 2, "%s: rc %d %s" % (args, rc, err))
            self.assertIn(words, err, args)
        rc, out, err = run("transfer", "--from", self.path("missing.mmf"), *base)
        self.assertEqual(rc, 1, err)

    def test_help(self):
        rc, out, err = run("transfer", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("tops-bottoms-shoes", out)

    @unittest.skipUnless(os.path.exists(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz")),
                         "Fashion-MNIST not installed")
    def test_fashion_tops_bottoms_shoes(self):
        base = self.path("fbase.mmf")
        rc, out, err = run("train", "--epochs", 1, "--limit", 10000, "--quiet", "--out", base)
        self.assertEqual(rc, 0, err)
        rc, out, err = run("transfer", "--from", base, "--map", "tops-bottoms-shoes",
                           "--per-class", 50, "--epochs", 10, "--lr", 3e-3, "--json",
                           "--out", self.path("tbs.mmf"))
        self.assertEqual(rc, 0, err)
        r = json.loads(out)
        self.assertEqual(r["classes"], 3)
        self.assertEqual(r["train_samples"], 150)
        self.assertEqual(r["test_samples"], 10000)
        self.assertGreater(r["test_accuracy"], 0.85)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        MMAINT = sys.argv.pop(1)
    if not MMAINT:
        sys.exit("usage: test_transfer.py PATH_TO_MMAINT (or set MMAINT)")
    MMAINT = os.path.abspath(MMAINT)
    unittest.main(verbosity=2)
