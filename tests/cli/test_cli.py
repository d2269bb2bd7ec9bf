#!/usr/bin/python3
"""Tests of the mmaint command-line tool.

usage: test_cli.py PATH_TO_MMAINT [unittest args]   (or env MMAINT=PATH)

Generates small synthetic data sets (CSV and IDX, one gzip-compressed) so
that everything runs in seconds, then checks: train -> eval -> update -> info
round trips, --json output, optimizer-state resumption, error messages and
exit codes (1 runtime, 2 usage), and `demo --quick` when Fashion-MNIST is
installed. Standard library only (no numpy).
"""
import fcntl
import gzip
import json
import os
import pty
import random
import re
import struct
import subprocess
import sys
import tempfile
import termios
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


def run_pty(args, columns, env=None, timeout=120):
    """Run mmaint with stdout and stderr on a pseudo-terminal of `columns`
    columns (0: the size is left unset); return (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal
        try:
            if columns:
                fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
            os.execve(MMAINT, [MMAINT] + [str(a) for a in args], env if env is not None else os.environ)
        finally:
            os._exit(127)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


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
        for cmd in ("train", "eval", "update", "info", "prune", "quantize", "demo"):
            self.assertIn(cmd, out)
        for cmd in ("train", "eval", "update", "info", "prune", "quantize", "demo"):
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
    def test_label_column_spellings(self):
        """--label-column: 'last' (the default), 'none', or a 0-based column,
        negative from the end (-1 = last): as the Python and Lua bindings
        spell it."""
        base = ("train", "--train-csv", self.p("train.csv"), "--arch", "8-4-3", "--epochs", 1,
                "--out", self.p("lc.mmf"))
        for col in ((), ("--label-column", "last"), ("--label-column", "-1"),
                    ("--label-column", "8")):
            t = self.ok_json(*base, *col)
            self.assertEqual((t["data"]["train"]["features"], t["data"]["train"]["classes"]),
                             (8, 3), col)
        self.fails(1, "has no labels", *base, "--label-column", "none")
        out, _ = self.ok("train", "--help")
        self.assertIn("'none' (no", out)

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
        # update records its own events: the library's online_steps would repeat them
        self.assertNotIn("online_steps", ops)
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
        self.fails(2, "takes no value", *base, "--help=yes")
        self.fails(2, "--json: 'maybe' is not a yes/no value", *base, "--json=maybe")
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
                if path == garbage:  # not a damaged model file: not one at all
                    self.assertIn("mmaint %s: %s is not an mmaint model file (no safetensors "
                                  "header)" % (cmd[0], path), err)
                else:
                    self.assertIn("mmaint %s: loading %s: " % (cmd[0], path), err)
                self.assertEqual(out, "")
        rc, out, err = run("eval", garbage, "--csv", self.p("test.csv"), "--json")
        self.assertEqual((rc, out), (1, ""))

    # -- what a new user trips over (issue 12) ------------------------------
    def help_bool_flags(self, cmd):
        """The yes/no flags a command's help lists: options without a value
        word ('--quiet') or with '[0|1]', and optimizer settings marked yes/no."""
        out, _ = self.ok("help", cmd)
        options, _, settings = out.partition("\nOptimizer settings")
        flags = re.findall(r"^  --([a-z0-9-]+)(?: \[0\|1\])?(?:  |$)", options, re.M)
        flags += re.findall(r"^  --([a-z0-9-]+) +\[0, 1\]  yes/no$", settings, re.M)
        return sorted(set(flags) - {"help"})

    def test_boolean_flags_take_values(self):
        # --NAME VALUE as the optimizer-settings list shows, and the value counts.
        base = ["train", "--train-csv", self.p("train.csv"), "--arch", "8-8-3", "--epochs", 2,
                "--batch-size", 32, "--seed", 3, "--out", self.p("bool.mmf")]
        on = self.ok_json(*base, "--shuffle", "1")
        self.assertEqual(self.ok_json(*base, "--shuffle")["train_loss"], on["train_loss"])
        off = self.ok_json(*base, "--shuffle", "0")
        self.assertNotEqual(off["train_loss"], on["train_loss"])
        for form in (["--shuffle=0"], ["--shuffle", "false"], ["--shuffle", "no"], ["--shuffle=OFF"]):
            self.assertEqual(self.ok_json(*base, *form)["train_loss"], off["train_loss"], form)
        sgd = base + ["--optimizer", "sgd", "--momentum", "0.9"]
        self.assertTrue(self.ok_json(*sgd, "--nesterov", "1")["optimizer"]["nesterov"])
        self.assertTrue(self.ok_json(*sgd, "--nesterov")["optimizer"]["nesterov"])
        self.assertNotIn("nesterov", self.ok_json(*sgd, "--nesterov", "0")["optimizer"])
        r = self.ok_json(*base, "--val-split", "0.2", "--patience", 1, "--restore-best", "1")
        self.assertEqual(r["data"]["val"]["samples"], 120)
        self.ok_json(*base, "--restore-best", "true", "--save-optimizer", "yes")
        self.assertFalse(self.ok_json(*base, "--save-optimizer", "0")["optimizer_state_saved"])
        self.assertTrue(self.ok_json(*base, "--save-optimizer", "on")["optimizer_state_saved"])
        self.fails(2, "--shuffle: 'maybe' is not a yes/no value", *base, "--shuffle=maybe")
        for cmd in ("train", "eval", "update", "info", "prune", "quantize", "convert", "transfer",
                    "maintain", "demo"):  # the help says so
            out, _ = self.ok("help", cmd)
            self.assertIn("--FLAG 0|1", " ".join(out.split()), cmd)

        # Every yes/no flag of every command: --FLAG=1 and --FLAG=off parse,
        # a value that is not yes/no is a usage error naming the flag.
        for cmd in ("train", "eval", "update", "info", "prune", "quantize", "convert", "transfer",
                    "maintain", "demo"):
            flags = self.help_bool_flags(cmd)
            self.assertIn("quiet", flags, cmd)
            for flag in flags:
                for value in ("1", "off", "Yes"):
                    rc, out, err = run(cmd, "--%s=%s" % (flag, value), "--help")
                    self.assertEqual(rc, 0, "%s --%s=%s: %s" % (cmd, flag, value, err))
                self.fails(2, "--%s: 'maybe' is not a yes/no value" % flag, cmd,
                           "--%s=maybe" % flag, "--help")
        self.assertTrue({"shuffle", "restore-best", "nesterov"} <= set(self.help_bool_flags("train")))

        # A bare flag before a positional argument keeps it; a yes/no word
        # after a flag is its value, also before the positional.
        i = self.ok_json("info", "--quiet", self.model)
        self.assertEqual(i["arch"], "8-16-3:relu")
        rc, out, err = run("info", "--json", "1", self.model)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["arch"], "8-16-3:relu")
        rc, out, err = run("info", "--json", "0", self.model)
        self.assertEqual(rc, 0, err)
        self.assertIn("model:", out)  # text, not JSON
        e = self.ok_json("eval", "--quiet", "yes", self.model, "--csv", self.p("test.csv"))
        self.assertEqual(e["samples"], 200)
        # per command: the value switches the setting off again
        q = self.ok_json("quantize", self.model, "--train-csv", self.p("train.csv"), "--test-csv",
                         self.p("test.csv"), "--per-tensor", "1", "--out", self.p("bq1.mmf"))
        self.assertFalse(q["settings"]["per_channel"])
        q = self.ok_json("quantize", self.model, "--train-csv", self.p("train.csv"), "--test-csv",
                         self.p("test.csv"), "--per-tensor", "0", "--out", self.p("bq0.mmf"))
        self.assertTrue(q["settings"]["per_channel"])
        u = self.ok_json("update", self.model, "--csv", self.p("stream.csv"), "--limit", 20,
                         "--save-optimizer", "1", "--fresh-optimizer", "no", "--out", self.p("bu.mmf"))
        self.assertTrue(u["optimizer_state_saved"])

    def write_onnx(self, path):
        """An ONNX file of the shared model (mmaint convert), or when the
        build has no ONNX support the first bytes of one; True if real."""
        rc, _, _ = run("convert", self.model, path)
        if rc == 0:
            return True
        with open(path, "wb") as f:  # ir_version 8, producer "pytorch", graph {}
            f.write(b"\x08\x08\x12\x07pytorch\x1a\x031.0\x3a\x00\x42\x02\x10\x11")
        return False

    def test_not_a_model_file(self):
        text = self.p("notes.mmf")
        with open(text, "w") as f:
            f.write("hello, these are my notes about the model\n" * 3)
        onnx = self.p("net.onnx")
        real_onnx = self.write_onnx(onnx)
        onnx_named_mmf = self.p("net-onnx.mmf")
        with open(onnx, "rb") as f, open(onnx_named_mmf, "wb") as g:
            g.write(f.read())
        st = self.p("weights.safetensors")
        self.ok("convert", self.model, st)
        stream = ["--csv", self.p("stream.csv")]
        commands = [["info"], ["eval", "--csv", self.p("test.csv")],
                    ["update", *stream, "--out", self.p("x.mmf")],
                    ["prune", "--test-csv", self.p("test.csv"), "--out", self.p("x.mmf")],
                    ["quantize", "--scheme", "fp16", "--test-csv", self.p("test.csv"), "--out",
                     self.p("x.mmf")],
                    ["maintain", *stream]]
        for cmd in commands:
            for path, want in [
                (text, "%s is not an mmaint model file (no safetensors header)" % text),
                (onnx, "%s is an ONNX file; import it with: mmaint convert %s %s"
                 % (onnx, onnx, self.p("net.mmf"))),
                (onnx_named_mmf, "%s is an ONNX file; import it with: mmaint convert --from onnx "
                 "%s %s" % (onnx_named_mmf, onnx_named_mmf, self.p("net-onnx-imported.mmf"))),
                (st, "%s is a safetensors file without mmaint's model metadata; import it with: "
                 "mmaint convert %s %s" % (st, st, self.p("weights.mmf"))),
            ]:
                args = [cmd[0], path] + cmd[1:]
                err = self.fails(1, "mmaint %s: %s" % (cmd[0], want), *args)
                self.assertNotIn("header length", err)
        # the models given with --from
        for cmd in (["train", "--train-csv", self.p("train.csv"), "--out", self.p("x.mmf")],
                    ["transfer", "--train-csv", self.p("train.csv"), "--out", self.p("x.mmf")]):
            self.fails(1, "%s is an ONNX file; import it with: mmaint convert" % onnx, *cmd,
                       "--from", onnx)
            self.fails(1, "%s is not an mmaint model file (no safetensors header)" % text, *cmd,
                       "--from", text)
        self.assertFalse(os.path.exists(self.p("x.mmf")))
        # the suggested commands work
        self.ok("convert", st, self.p("weights.mmf"))
        self.assertEqual(self.ok_json("info", self.p("weights.mmf"))["arch"], "8-16-3:relu")
        if real_onnx:
            self.ok("convert", "--from", "onnx", onnx_named_mmf, self.p("net-onnx-imported.mmf"))
            self.assertEqual(self.ok_json("info", self.p("net-onnx-imported.mmf"))["arch"],
                             "8-16-3:relu")
        # a damaged model file is still reported in detail
        with open(self.model, "rb") as f:
            good = bytearray(f.read())
        good[0:8] = struct.pack("<Q", len(good) * 4)
        bad = self.p("bad-length.mmf")
        with open(bad, "wb") as f:
            f.write(bytes(good))
        self.fails(1, "loading %s: header length" % bad, "info", bad)

    def test_test_data_without_training_data(self):
        # Test (or holdout, or validation) data given but no training data:
        # a usage error naming the missing flag, never Fashion-MNIST.
        test = ["--test-csv", self.p("test.csv")]
        out = ["--out", self.p("x.mmf")]
        for args, flag in [
            (["prune", self.model, *test, "--fine-tune-epochs", 1, *out], "--train-csv FILE"),
            (["prune", self.model, *test, "--criterion", "neuron-activation", *out], "--train-csv FILE"),
            (["prune", self.model, "--csv", self.p("test.csv"), "--fine-tune-epochs", 1, *out],
             "--train-csv FILE"),
            (["prune", self.model, "--test-images", self.p("test-images"), "--test-labels",
              self.p("test-labels"), "--fine-tune-epochs", 1, *out],
             "--train-images FILE --train-labels FILE"),
            (["quantize", self.model, *test, *out], "--train-csv FILE"),
            (["quantize", self.model, "--scheme", "fp16", "--max-drop", "0.01", "--val-split", "0.2",
              *test, *out], "--train-csv FILE"),
            (["train", *test, *out], "--csv FILE (or --train-csv FILE)"),
            (["train", "--val-csv", self.p("test.csv"), *out], "--csv FILE (or --train-csv FILE)"),
            (["update", self.model, *test, *out], "--csv FILE (or --train-csv FILE)"),
            (["transfer", "--from", self.model, *test, *out], "--csv FILE (or --train-csv FILE)"),
            (["maintain", self.model, *test], "--csv FILE (or --train-csv FILE)"),
            (["maintain", self.model, "--holdout-csv", self.p("test.csv")],
             "--csv FILE (or --train-csv FILE)"),
        ]:
            err = self.fails(2, "was given but no training data", *args)
            self.assertIn("needs " + flag, err)
            self.assertNotIn("fashion", err.split("Fashion-MNIST is the default")[0].lower())
        self.assertFalse(os.path.exists(self.p("x.mmf")))
        # --data-dir asks for Fashion-MNIST explicitly
        self.fails(1, "Fashion-MNIST not found", "prune", self.model, *test, "--fine-tune-epochs", 1,
                   "--data-dir", self.p("no-such-dir"), *out)
        # the data that is needed is there: fine
        r = self.ok_json("prune", self.model, *test, "--train-csv", self.p("train.csv"),
                         "--fine-tune-epochs", 1, "--batch-size", 32, "--sparsity", "0.5", *out)
        self.assertEqual(r["fine_tune_epochs"], 1)
        self.ok("prune", self.model, *test, "--sparsity", "0.5", *out)  # no training needed

    def bar_segments(self, output):
        """What the progress bar drew: the pieces between carriage returns
        that show a bar ('label [###...')."""
        pieces = [p for line in output.split("\n") for p in line.split("\r")]
        return [p for p in pieces if re.search(r" \[[#.]{3,}", p)], pieces

    def test_progress_bar_fits_the_terminal(self):
        args = ["train", "--train-csv", self.p("train.csv"), "--arch", "8-32-3", "--epochs", 150,
                "--batch-size", 1, "--out", self.p("bar.mmf")]
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        for columns, cols_env, width in [(50, None, 50), (132, None, 132), (0, "60", 60),
                                         (0, None, 80), (24, None, 24)]:
            e = dict(env, COLUMNS=cols_env) if cols_env else env
            rc, output = run_pty(args, columns, e)
            self.assertEqual(rc, 0, output[-2000:])
            bars, pieces = self.bar_segments(output)
            self.assertTrue(bars, "no progress bar drawn at %d columns:\n%s" % (columns, output[-2000:]))
            for b in bars:  # fits, leaving the last column free: never wraps
                self.assertLessEqual(len(b), width - 1, "%d columns: %r" % (width, b))
            for p in pieces:  # the erasing spaces too
                if p and not p.strip():
                    self.assertLessEqual(len(p), width - 1)
            if width >= 50:  # the rate, shortened if need be
                self.assertTrue(any(re.search(r"\d+( samples)?/s", b) for b in bars), bars[:3])
            if width >= 80:
                self.assertTrue(any("samples/s" in b for b in bars), bars[:3])
            if width >= 120:  # room for the loss too
                self.assertTrue(any("loss" in b for b in bars), bars[:3])

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

    def test_nan_in_data(self):
        """A NaN or infinite feature stops eval and update with the place named
        and exit status 1 (the data loaders refuse it; the library's inference
        calls would refuse it too, MM_E_NUMERIC)."""
        nan = self.p("nan.csv")
        with open(self.p("test.csv")) as f:
            lines = f.read().splitlines()
        cells = lines[3].split(",")
        cells[2] = "nan"
        lines[3] = ",".join(cells)
        with open(nan, "w") as f:
            f.write("\n".join(lines) + "\n")
        for cmd in (["eval", self.model, "--csv", nan],
                    ["update", self.model, "--csv", nan, "--out", self.p("nan-out.mmf")]):
            err = self.fails(1, "line 4, column 3: 'nan' is not a finite float", *cmd)
            self.assertIn(nan, err)
        self.assertFalse(os.path.exists(self.p("nan-out.mmf")))

    # -- prune ------------------------------------------------------------
    def prune_json(self, *args):
        return self.ok_json("prune", self.model, "--test-csv", self.p("test.csv"), *args)

    @staticmethod
    def weight_sparsity(layers):
        w = sum(l["inputs"] * l["outputs"] for l in layers)
        return sum(l["sparsity"] * l["inputs"] * l["outputs"] for l in layers) / w

    def check_pruned_file(self, r, out):
        """The saved file loads, evaluates like the report, and records its lineage."""
        self.assertTrue(os.path.isfile(out))
        self.assertEqual(r["after"]["file_size"], os.path.getsize(out))
        self.assertEqual(r["before"]["file_size"], os.path.getsize(self.model))
        e = self.ok_json("eval", out, "--csv", self.p("test.csv"))
        self.assertAlmostEqual(e["accuracy"], r["after"]["test_accuracy"], places=6)
        i = self.ok_json("info", out)
        self.assertEqual([l["kind"] for l in i["layers"]], [l["kind"] for l in r["after"]["layers"]])
        self.assertEqual(i["params"], r["after"]["params"])
        ops = [ev["op"] for ev in i["lineage"]]
        self.assertIn("prune_finalize", ops)
        self.assertEqual(ops[-1], "prune_summary")
        self.assertEqual(i["lineage"][-1]["parent"], self.model)
        for key in ("infer_batch1_samples_per_second", "infer_batch256_samples_per_second"):
            self.assertGreater(r["before"][key], 0)
            self.assertGreater(r["after"][key], 0)
        return i

    def test_prune_one_shot_unstructured(self):
        out = self.p("p-mag.mmf")
        r = self.prune_json("--criterion", "magnitude", "--sparsity", "0.5", "--out", out)
        self.assertEqual(r["command"], "prune")
        self.assertEqual(r["criterion"], "magnitude")
        self.assertFalse(r["structured"])
        self.assertEqual(r["schedule"], "one-shot")
        self.assertEqual(r["fine_tune_epochs"], 0)
        self.assertIsNone(r["train_data"])  # not needed, not loaded
        b, a = r["before"], r["after"]
        self.assertEqual(b["params"], 8 * 16 + 16 + 16 * 3 + 3)
        self.assertEqual(b["nonzero"], b["params"])
        for l in a["layers"]:  # each layer to the target (per-layer magnitude)
            self.assertAlmostEqual(l["sparsity"], 0.5, delta=0.02)
        self.assertEqual([(l["inputs"], l["outputs"]) for l in a["layers"]], [(8, 16), (16, 3)])
        self.assertLess(a["nonzero"], 0.6 * b["nonzero"])
        self.assertAlmostEqual(r["test_accuracy_pruned"], a["test_accuracy"], places=6)
        self.assertGreater(a["test_accuracy"], 0.5)
        self.check_pruned_file(r, out)
        # Human output: the before/after table and the per-layer lines.
        out_txt, _ = self.ok("prune", self.model, "--test-csv", self.p("test.csv"), "--criterion",
                             "random", "--sparsity", "0.3", "--format", "sparse",
                             "--keep-neuron-order", "--out", self.p("p-rand.mmf"))
        for row in ("test accuracy", "parameters", "non-zeros", "parameter bytes", "file size",
                    "batch 1 samples/s", "batch 256 samples/s", "layer", "sparse"):
            self.assertIn(row, out_txt)

    def test_prune_gradual_unstructured(self):
        out = self.p("p-grad.mmf")
        r = self.prune_json("--train-csv", self.p("train.csv"), "--criterion", "global",
                            "--sparsity", "0.8", "--schedule", "polynomial", "--fine-tune-epochs", 3,
                            "--batch-size", 16, "--lr", "0.005", "--format", "sparse", "--out", out)
        self.assertEqual(r["criterion"], "magnitude_global")
        self.assertEqual(r["schedule"], "polynomial")
        self.assertEqual(r["steps"], 3 * 38)  # 600 samples, batch 16
        self.assertEqual(r["end_step"], 57)   # default: half of the fine-tuning
        self.assertEqual(r["frequency"], 5)
        self.assertEqual(len(r["fine_tune"]), 3)
        self.assertAlmostEqual(r["optimizer"]["learning_rate"], 0.005)
        a = r["after"]
        self.assertEqual([l["kind"] for l in a["layers"]], ["sparse", "sparse"])
        self.assertAlmostEqual(self.weight_sparsity(a["layers"]), 0.8, delta=0.01)
        self.assertGreater(a["test_accuracy"], 0.9)
        i = self.check_pruned_file(r, out)
        ev = [e for e in i["lineage"] if e["op"] == "prune"]
        self.assertTrue(ev and ev[-1].get("schedule") == "polynomial", ev)
        # Explicit schedule settings; dense format keeps dense layers with zeros.
        r = self.prune_json("--train-csv", self.p("train.csv"), "--criterion", "magnitude",
                            "--sparsity", "0.6", "--schedule", "polynomial", "--fine-tune-epochs", 2,
                            "--batch-size", 32, "--initial-sparsity", "0.1", "--begin-step", 2,
                            "--end-step", 20, "--frequency", 3, "--power", 2, "--format", "dense",
                            "--out", self.p("p-grad2.mmf"))
        self.assertEqual((r["begin_step"], r["end_step"], r["frequency"]), (2, 20, 3))
        self.assertAlmostEqual(r["initial_sparsity"], 0.1)
        self.assertAlmostEqual(r["power"], 2)
        for l in r["after"]["layers"]:
            self.assertEqual(l["kind"], "dense")
            self.assertAlmostEqual(l["sparsity"], 0.6, delta=0.02)

    def test_prune_structured(self):
        out = self.p("p-neur.mmf")
        r = self.prune_json("--train-csv", self.p("train.csv"), "--criterion", "neuron-l1",
                            "--sparsity", "0.5", "--fine-tune-epochs", 1, "--batch-size", 16,
                            "--out", out)
        self.assertTrue(r["structured"])
        a = r["after"]
        self.assertEqual([(l["inputs"], l["outputs"]) for l in a["layers"]], [(8, 8), (8, 3)])
        self.assertEqual([l["kind"] for l in a["layers"]], ["dense", "dense"])
        self.assertEqual(a["params"], 8 * 8 + 8 + 8 * 3 + 3)
        self.assertEqual(len(r["fine_tune"]), 1)
        self.assertGreater(a["test_accuracy"], 0.9)
        self.check_pruned_file(r, out)
        # Gradual structured pruning, and the activation criterion (calibrated
        # on the training data).
        r = self.prune_json("--train-csv", self.p("train.csv"), "--criterion", "neuron-l2",
                            "--sparsity", "0.25", "--schedule", "polynomial", "--fine-tune-epochs", 2,
                            "--batch-size", 16, "--out", self.p("p-neur2.mmf"))
        self.assertEqual(r["after"]["layers"][0]["outputs"], 12)
        r = self.prune_json("--train-csv", self.p("train.csv"), "--criterion", "neuron-activation",
                            "--calibration-samples", 50, "--sparsity", "0.75",
                            "--out", self.p("p-neur3.mmf"))
        self.assertEqual(r["after"]["layers"][0]["outputs"], 4)

    def test_prune_errors(self):
        base = ["prune", self.model, "--test-csv", self.p("test.csv"), "--out", self.p("px.mmf")]
        self.fails(2, "--sparsity: sparsity must be in [0, 1), got 1.5", *base, "--sparsity", "1.5")
        self.fails(2, "--sparsity: sparsity must be in [0, 1), got 1", *base, "--sparsity", "1")
        self.fails(2, "--sparsity", *base, "--sparsity", "-0.2")
        self.fails(2, "--sparsity: 'lots' is not a number", *base, "--sparsity", "lots")
        self.fails(2, "'pointy' is not a criterion", *base, "--criterion", "pointy")
        self.fails(2, "needs importance scores", *base, "--criterion", "user")
        self.fails(2, "'sometimes' is not a pruning schedule", *base, "--schedule", "sometimes")
        self.fails(2, "give --fine-tune-epochs", *base, "--schedule", "polynomial")
        self.fails(2, "need --schedule polynomial", *base, "--end-step", 10)
        self.fails(2, "power", *base, "--schedule", "polynomial", "--fine-tune-epochs", 1,
                   "--power", 20)
        self.fails(2, "must be below the 38 steps of fine-tuning", *base, "--train-csv",
                   self.p("train.csv"), "--schedule", "polynomial", "--fine-tune-epochs", 1,
                   "--batch-size", 16, "--end-step", 500)
        self.fails(2, "--format: 'tiny' is not auto, sparse or dense", *base, "--format", "tiny")
        self.fails(2, "--calibration-samples applies to --criterion neuron-activation", *base,
                   "--calibration-samples", 10)
        self.fails(2, "--fine-tune-epochs: '-1' is out of range", *base, "--fine-tune-epochs", "-1")
        self.fails(2, "--out FILE is required", "prune", self.model)
        self.fails(2, "which model?", "prune", "--out", self.p("px.mmf"))
        self.fails(1, "mmaint prune: loading %s: " % self.p("nope.mmf"), "prune", self.p("nope.mmf"),
                   "--out", self.p("px.mmf"))
        # A layer cannot lose every neuron: a runtime error naming the layer.
        self.fails(1, "would remove all of its 16 neurons", *base, "--criterion", "neuron-l2",
                   "--sparsity", "0.99")
        narrow = self.p("prune-narrow.csv")
        with open(narrow, "w") as f:
            f.write("1,2,3,0\n4,5,6,1\n")
        self.fails(1, "has 3 features per sample but the model takes 8 inputs", "prune", self.model,
                   "--csv", narrow, "--out", self.p("px.mmf"))
        self.assertFalse(os.path.exists(self.p("px.mmf")))

    # -- quantize ---------------------------------------------------------
    def quantize_json(self, *args):
        return self.ok_json("quantize", self.model, "--test-csv", self.p("test.csv"), *args)

    def check_quantized_file(self, r, out):
        """The saved file loads, evaluates like the report, and records its lineage."""
        self.assertTrue(os.path.isfile(out))
        self.assertEqual(r["after"]["file_size"], os.path.getsize(out))
        self.assertEqual(r["before"]["file_size"], os.path.getsize(self.model))
        e = self.ok_json("eval", out, "--csv", self.p("test.csv"))
        self.assertAlmostEqual(e["accuracy"], r["after"]["test_accuracy"], places=6)
        i = self.ok_json("info", out)
        self.assertEqual([l["kind"] for l in i["layers"]], [l["kind"] for l in r["layers"]])
        ops = [ev["op"] for ev in i["lineage"]]
        self.assertIn("quantize", ops)
        self.assertEqual(ops[-1], "quantize_summary")
        self.assertEqual(i["lineage"][-1]["parent"], self.model)
        for key in ("infer_batch1_samples_per_second", "infer_batch256_samples_per_second"):
            self.assertGreater(r["before"][key], 0)
            self.assertGreater(r["after"][key], 0)
        return i

    def test_quantize_schemes(self):
        kinds = {"int8-static": "int8", "int8-dynamic": "int8", "int8-weight-only": "int8",
                 "fp16": "fp16", "bf16": "bf16"}
        for scheme, kind in kinds.items():
            out = self.p("q-%s.mmf" % scheme)
            extra = ["--train-csv", self.p("train.csv")] if scheme == "int8-static" else []
            r = self.quantize_json("--scheme", scheme, "--out", out, *extra)
            self.assertEqual(r["command"], "quantize")
            self.assertEqual(r["scheme"], scheme.replace("-", "_"))
            self.assertEqual(r["mode"], "apply")
            self.assertEqual([l["kind"] for l in r["layers"]], [kind, kind])
            self.assertEqual([(l["inputs"], l["outputs"]) for l in r["layers"]], [(8, 16), (16, 3)])
            self.assertTrue(all(l["quantized"] for l in r["layers"]))
            self.assertTrue(all(l["reason"].startswith("quantized") for l in r["layers"]))
            self.assertEqual(r["layers_quantized"], 2)
            self.assertEqual(r["report"]["scheme"], scheme.replace("-", "_"))
            self.assertFalse(r["settings"]["keep_master"])  # the default here: smallest file
            self.assertGreater(r["after"]["test_accuracy"], 0.9)
            self.assertGreater(r["after"]["test_accuracy"], r["before"]["test_accuracy"] - 0.05)
            # The 8x16 layer shrinks; at this size the 16x3 layer's kernel
            # padding and the file's metadata outweigh the savings (the demo
            # test checks the file size on Fashion-MNIST).
            l0 = r["layers"][0]
            self.assertLess(l0["bytes_after"], 0.7 * l0["bytes_before"])
            if scheme == "int8-static":
                self.assertEqual(r["calibration_data"], self.p("train.csv"))
                self.assertEqual(r["settings"]["calibration_samples"], 512)
                self.assertTrue(r["settings"]["per_channel"])
                self.assertEqual(r["settings"]["observer"], "minmax")
                self.assertEqual(len(r["report"]["layers"][1]["input_range"]), 2)
            else:
                self.assertIsNone(r["calibration_data"])  # not needed, not loaded
            self.check_quantized_file(r, out)
        # Human output: the before/after table and the per-layer lines.
        txt, _ = self.ok("quantize", self.model, "--test-csv", self.p("test.csv"), "--train-csv",
                         self.p("train.csv"), "--per-tensor", "--observer", "percentile",
                         "--percentile", "99.9", "--calibration-samples", 100, "--out",
                         self.p("q-txt.mmf"))
        for row in ("test accuracy", "parameter bytes", "file size", "batch 1 samples/s",
                    "batch 256 samples/s", "layer", "int8", "per-tensor", "from percentile"):
            self.assertIn(row, txt)
        # Settings reach the library.
        r = self.quantize_json("--train-csv", self.p("train.csv"), "--per-tensor",
                               "--asymmetric-weights", "--symmetric-activations", "--observer",
                               "mse", "--calibration-samples", 64, "--float-layer", 1, "--out",
                               self.p("q-set.mmf"))
        st = r["settings"]
        self.assertEqual((st["per_channel"], st["weight_symmetric"], st["act_symmetric"]),
                         (False, False, True))
        self.assertEqual((st["observer"], st["calibration_samples"]), ("mse", 64))
        self.assertEqual([l["kind"] for l in r["layers"]], ["int8", "dense"])
        self.assertFalse(r["layers"][1]["quantized"])
        self.assertIn("kept in float", r["layers"][1]["reason"])

    def test_prune_then_quantize(self):
        # What people want for small devices: prune (finalized to sparse
        # layers, the default of `prune`), then quantize, under every int8
        # scheme; it used to be refused ("a sparse layer, which the
        # int8_static scheme cannot quantize").
        pruned = self.p("pq-pruned.mmf")
        self.ok_json("prune", self.model, "--test-csv", self.p("test.csv"), "--sparsity", "0.6",
                     "--format", "sparse", "--out", pruned)
        for scheme in ("int8-static", "int8-dynamic", "int8-weight-only"):
            out = self.p("pq-%s.mmf" % scheme)
            extra = ["--train-csv", self.p("train.csv")] if scheme == "int8-static" else []
            r = self.ok_json("quantize", pruned, "--test-csv", self.p("test.csv"), "--scheme",
                             scheme, "--out", out, *extra)
            self.assertEqual([l["kind"] for l in r["layers"]], ["sparse_int8", "sparse_int8"])
            self.assertTrue(all(l["quantized"] for l in r["layers"]))
            self.assertGreater(r["after"]["test_accuracy"], r["before"]["test_accuracy"] - 0.05)
            # (sizes: this 8-16-3 model is all metadata; tests/test_qsparse.c
            # checks the file of the demo's model shape)
            e = self.ok_json("eval", out, "--csv", self.p("test.csv"))
            self.assertAlmostEqual(e["accuracy"], r["after"]["test_accuracy"], places=6)
            # as sparse as the pruned float model, though nothing is trainable
            i, ip = self.ok_json("info", out), self.ok_json("info", pruned)
            self.assertEqual((i["params"], i["nonzero"]), (0, ip["nonzero"]))
        # fp16 keeps the sparse layers in float, and says why.
        r = self.ok_json("quantize", pruned, "--test-csv", self.p("test.csv"), "--scheme", "fp16",
                         "--out", self.p("pq-fp16.mmf"))
        self.assertEqual([l["kind"] for l in r["layers"]], ["sparse", "sparse"])
        self.assertIn("sparse layers have no fp16 form", r["layers"][0]["reason"])

    def test_quantize_master_weights(self):
        # With --keep-master the file is bigger than without, and the model
        # can still learn online.
        lean = self.quantize_json("--scheme", "int8-dynamic", "--out", self.p("q-lean.mmf"))
        r = self.quantize_json("--scheme", "int8-dynamic", "--keep-master", "--out",
                               self.p("q-master.mmf"))
        self.assertTrue(r["settings"]["keep_master"])
        self.assertGreater(r["after"]["file_size"], lean["after"]["file_size"])
        u = self.ok_json("update", self.p("q-master.mmf"), "--csv", self.p("stream.csv"),
                         "--label-column", "last", "--out", self.p("q-master-upd.mmf"))
        self.assertEqual(u["online"]["samples"], 300)
        i = self.ok_json("info", self.p("q-master-upd.mmf"))
        self.assertEqual([l["kind"] for l in i["layers"]], ["int8", "int8"])

    def test_quantize_accuracy_aware(self):
        # --max-drop 0: the result is never below the float accuracy on the
        # evaluation data (at worst every layer is back in float).
        r = self.quantize_json("--train-csv", self.p("train.csv"), "--max-drop", "0",
                               "--out", self.p("q-tol.mmf"))
        self.assertEqual(r["mode"], "accuracy_aware")
        self.assertEqual(r["report"]["mode"], "accuracy_aware")
        self.assertEqual(r["tolerance_data"], self.p("test.csv"))
        self.assertGreaterEqual(r["final_accuracy"], r["float_accuracy"])
        self.assertAlmostEqual(r["float_accuracy"], r["before"]["test_accuracy"], places=6)
        self.assertAlmostEqual(r["final_accuracy"], r["after"]["test_accuracy"], places=6)
        self.assertEqual(r["layers_quantized"], sum(l["quantized"] for l in r["layers"]))
        for l in r["layers"]:
            if not l["quantized"]:
                self.assertIn("fallback", l["reason"])
        self.check_quantized_file(r, self.p("q-tol.mmf"))
        # A generous relative tolerance keeps every layer quantized; validation
        # data from --val-split instead of the test data.
        r = self.quantize_json("--train-csv", self.p("train.csv"), "--max-drop", "0.5",
                               "--relative", "--val-split", "0.25", "--out", self.p("q-tol2.mmf"))
        self.assertTrue(r["report"]["drop_relative"])
        self.assertEqual(r["layers_quantized"], 2)
        self.assertEqual(r["tolerance_data"], self.p("train.csv") + "[450:600]")
        self.assertEqual(r["calibration_data"], self.p("train.csv") + "[0:450]")
        r = self.quantize_json("--scheme", "fp16", "--max-drop", "0.01", "--val-csv",
                               self.p("test.csv"), "--out", self.p("q-tol3.mmf"))
        self.assertEqual(r["tolerance_data"], self.p("test.csv"))

    def test_quantize_errors(self):
        base = ["quantize", self.model, "--test-csv", self.p("test.csv"), "--out", self.p("qx.mmf")]
        self.fails(2, "--scheme: 'int4' is not a quantization scheme", *base, "--scheme", "int4")
        self.fails(2, "--observer: 'magic' is not an observer", *base, "--observer", "magic")
        self.fails(2, "--observer applies to int8-static, not to --scheme int8-dynamic", *base,
                   "--scheme", "int8-dynamic", "--observer", "mse")
        self.fails(2, "--per-tensor applies to the int8 schemes, not to --scheme fp16", *base,
                   "--scheme", "fp16", "--per-tensor")
        self.fails(2, "--calibration-samples applies to int8-static", *base, "--scheme", "bf16",
                   "--calibration-samples", 10)
        self.fails(2, "--percentile needs --observer percentile", *base, "--percentile", "99.9")
        self.fails(2, "--percentile: '40' is out of range", *base, "--observer", "percentile",
                   "--percentile", "40")
        self.fails(2, "--max-drop: '1.5' is out of range", *base, "--max-drop", "1.5")
        self.fails(2, "--max-drop: 'some' is not a number", *base, "--max-drop", "some")
        self.fails(2, "--relative needs --max-drop", *base, "--relative")
        self.fails(2, "validation data is for --max-drop", *base, "--val-split", "0.2")
        self.fails(2, "--calibration-samples: needs at least 1 sample", *base,
                   "--calibration-samples", 0)
        self.fails(2, "--float-layer 5: %s has layers 0..1" % self.model, *base,
                   "--float-layer", 5)
        self.fails(2, "--out FILE is required", "quantize", self.model)
        self.fails(2, "which model?", "quantize", "--out", self.p("qx.mmf"))
        self.fails(1, "mmaint quantize: loading %s: " % self.p("nope.mmf"), "quantize",
                   self.p("nope.mmf"), "--out", self.p("qx.mmf"))
        narrow = self.p("quant-narrow.csv")
        with open(narrow, "w") as f:
            f.write("1,2,3,0\n4,5,6,1\n")
        self.fails(1, "has 3 features per sample but the model takes 8 inputs", *base,
                   "--train-csv", narrow)
        self.assertFalse(os.path.exists(self.p("qx.mmf")))
        out, _ = self.ok("quantize", "--help")
        self.assertIn("--keep-master", out)
        self.assertIn("int8-weight-only", out)

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
        online_versions = [v for v in versions if v["made_by"].startswith("online")]
        self.assertEqual(ops.count("online_update"), len(online_versions))
        self.assertNotIn("online_steps", ops)
        # The guarded maintenance step: three runs over the drift stream, the
        # guarded result as the last version, checkpoints and the plot.
        m = d["maintain"]
        self.assertEqual(sorted(k for k in m if k != "plot"), ["guarded", "naive", "never"])
        self.assertEqual(m["never"]["version"], 1)
        self.assertEqual(m["naive"]["learned"], m["naive"]["samples"])
        self.assertGreater(m["guarded"]["learned"], 0)
        self.assertLessEqual(m["guarded"]["learned"] + m["guarded"]["quarantined"],
                             m["guarded"]["samples"])
        self.assertTrue(versions[-1]["made_by"].startswith("guarded"))
        self.assertIn("checkpoint", ops)
        self.assertTrue(os.path.isfile(m["plot"]))
        ckpts = os.listdir(os.path.join(out_dir, "checkpoints"))
        self.assertTrue(ckpts and all(f.startswith("ckpt-") for f in ckpts), ckpts)
        if "export" in d:
            self.assertTrue(os.path.isfile(d["export"]["file"]))
            self.assertGreater(d["export"]["test_accuracy"], 0.6)
        self.assertIn("Summary", err)
        # The last version's file carries the same lineage.
        i = self.ok_json("info", versions[-1]["file"])
        self.assertEqual(i["lineage"], d["lineage"])
        # The pruning step: a 90 %-sparse copy of the last version, beside the versions.
        pr = d["pruned"]
        self.assertEqual(pr["parent"], versions[-1]["file"])
        self.assertEqual(pr["file_size"], os.path.getsize(pr["file"]))
        self.assertLess(pr["file_size"], 0.25 * versions[-1]["file_size"])
        self.assertGreater(pr["test_accuracy"], 0.6)
        self.assertLess(pr["nonzero"], 0.11 * 235146)
        self.assertGreater(pr["infer_batch1_samples_per_second"], 0)
        self.assertIn("infer_batch1_samples_per_second", versions[-1])
        self.assertIn("model-pruned.mmf", err)
        ip = self.ok_json("info", pr["file"])
        self.assertEqual(ip["lineage"][-1]["op"], "prune_summary")
        self.assertIn("sparse", [l["kind"] for l in ip["layers"]])
        # The quantization step: an int8 copy of the last version, no master weights.
        q = d["quantized"]
        self.assertEqual(q["parent"], versions[-1]["file"])
        self.assertEqual(q["file_size"], os.path.getsize(q["file"]))
        self.assertLess(q["file_size"], 0.27 * versions[-1]["file_size"])
        self.assertGreaterEqual(q["test_accuracy"], q["parent_test_accuracy"] - 0.003 - 1e-9)
        self.assertGreater(q["infer_batch1_samples_per_second"], 0)
        self.assertIn("model-int8.mmf", err)
        iq = self.ok_json("info", q["file"])
        self.assertEqual(iq["lineage"][-1]["op"], "quantize_summary")
        self.assertIn("int8", [l["kind"] for l in iq["layers"]])
        sys.stderr.write("demo --quick: %.1f s\n" % elapsed)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        MMAINT = sys.argv.pop(1)
    if not MMAINT:
        sys.exit("usage: test_cli.py PATH_TO_MMAINT (or set MMAINT)")
    MMAINT = os.path.abspath(MMAINT)
    unittest.main(verbosity=2)
