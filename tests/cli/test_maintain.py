#!/usr/bin/python3
"""Tests of `mmaint maintain` (guarded maintenance over a stream).

usage: test_maintain.py PATH_TO_MMAINT [unittest args]   (or env MMAINT=PATH)

Synthetic CSV blobs: a model is trained, then a stream with a poisoned
segment (labels permuted) is maintained: the poisoned windows must be rolled
back and reported as quarantined ranges, the deployed model must keep its
accuracy, the JSON report and series must be consistent, the SVG plot must
be a well-formed chart and the PNG plot a valid image with the series drawn,
the stream can come from stdin, and bad arguments give usage errors.
Standard library only.
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
import zlib

MMAINT = os.environ.get("MMAINT")
FEATURES = 8
CLASSES = 3


def run(*args, stdin=None, timeout=300):
    p = subprocess.run([MMAINT] + [str(a) for a in args], input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def blobs(rng, n):
    centers = [[3.0 * ((k + j) % CLASSES == 0) - 1.0 for j in range(FEATURES)] for k in range(CLASSES)]
    rows = []
    for _ in range(n):
        k = rng.randrange(CLASSES)
        rows.append(([c + rng.gauss(0, 0.9) for c in centers[k]], k))
    return rows


def png_chunks(data):
    """[(type, payload)] of a PNG file, checking the signature and CRCs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    chunks, i = [], 8
    while i < len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        payload = data[i + 8:i + 8 + n]
        (crc,) = struct.unpack(">I", data[i + 8 + n:i + 12 + n])
        assert crc == zlib.crc32(kind + payload), kind
        chunks.append((kind, payload))
        i += 12 + n
    return chunks


def csv_text(rows):
    return "".join(",".join("%.5f" % v for v in x) + ",%d\n" % y for x, y in rows)


class MaintainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="mmaint-maintain-")
        d = cls.dir = cls.tmp.name
        rng = random.Random(77)
        with open(os.path.join(d, "train.csv"), "w") as f:
            f.write(csv_text(blobs(rng, 1500)))
        with open(os.path.join(d, "holdout.csv"), "w") as f:
            f.write(csv_text(blobs(rng, 300)))
        # stream: 1500 clean, 600 with labels permuted (poison), 900 clean
        stream = blobs(rng, 3000)
        cls.poison = (1500, 2100)
        for i in range(*cls.poison):
            x, y = stream[i]
            stream[i] = (x, (y + 1) % CLASSES)
        cls.stream_text = csv_text(stream)
        with open(os.path.join(d, "stream.csv"), "w") as f:
            f.write(cls.stream_text)
        cls.model = os.path.join(d, "model.mmf")
        rc, out, err = run("train", "--train-csv", os.path.join(d, "train.csv"), "--arch",
                           "8-16-3:relu", "--epochs", 4, "--batch-size", 16, "--lr", "0.01",
                           "--out", cls.model, "--quiet")
        if rc != 0:
            raise RuntimeError("training failed (%d): %s" % (rc, err))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def p(self, name):
        return os.path.join(self.dir, name)

    def maintain_json(self, *args, stdin=None):
        rc, out, err = run("maintain", self.model, "--json", *args, stdin=stdin)
        self.assertEqual(rc, 0, "maintain failed (%d):\n%s\n%s" % (rc, out, err))
        self.assertNotIn("AddressSanitizer", err)
        return json.loads(out), err

    def guarded_args(self):
        return ["--window", 100, "--lr", "0.05", "--holdout-csv", self.p("holdout.csv"),
                "--holdout-every", 0, "--threshold", "0.02", "--plot-every", 100]

    def test_poisoned_segment_is_rolled_back(self):
        plot = self.p("acc.svg")
        out_model = self.p("maintained.mmf")
        j, err = self.maintain_json("--csv", self.p("stream.csv"), "--test-csv", self.p("holdout.csv"),
                                    "--plot", plot, "--out", out_model, "--status-every", 1000,
                                    *self.guarded_args())
        self.assertEqual(j["command"], "maintain")
        self.assertEqual(j["mode"], "guarded")
        self.assertEqual(j["samples"], 3000)
        self.assertGreaterEqual(j["rollbacks"], 4)
        ranges = j["quarantined_ranges"]
        self.assertEqual(len(ranges), j["rollbacks"])
        # every poisoned window is quarantined; quarantined windows touch the poison
        covered = set()
        for r in ranges:
            self.assertEqual(r["reason"], "metric")
            self.assertLess(r["holdout_accuracy"], r["good_accuracy"] - 0.02)
            self.assertLess(r["start"], self.poison[1])
            self.assertGreater(r["end"], self.poison[0])
            covered.update(range(r["start"], r["end"]))
        poisoned = set(range(*self.poison))
        self.assertGreaterEqual(len(poisoned & covered), 0.9 * len(poisoned))
        self.assertEqual(j["quarantined"], sum(r["end"] - r["start"] for r in ranges))
        self.assertEqual(j["learned"] + j["quarantined"], 3000)
        # the deployed model kept its accuracy
        self.assertGreater(j["test_accuracy_after"], j["test_accuracy_before"] - 0.02)
        self.assertGreater(j["holdout_accuracy"], 0.8)
        # series: one point per 100 samples, accuracy of each stretch
        s = j["series"]
        self.assertEqual([p[0] for p in s], list(range(100, 3001, 100)))
        poisoned_pts = [a for e, a in s if self.poison[0] < e <= self.poison[1]]
        clean_pts = [a for e, a in s if e <= self.poison[0]]
        self.assertLess(max(poisoned_pts), 0.5)
        self.assertGreater(sum(clean_pts) / len(clean_pts), 0.8)
        # status lines (no terminal) and the final report
        self.assertIn("[   1000/3000] version", err)
        self.assertIn("quarantined [", err)
        # the saved model and its lineage
        rc, out, _ = run("info", out_model, "--json")
        self.assertEqual(rc, 0)
        ops = [e["op"] for e in json.loads(out)["lineage"]]
        self.assertIn("checkpoint", ops)
        # the plot
        root = ET.parse(plot).getroot()
        self.assertTrue(root.tag.endswith("svg"))
        ns = "{http://www.w3.org/2000/svg}"
        lines = root.findall(ns + "polyline")
        self.assertEqual(len(lines), 1)
        self.assertEqual(len(lines[0].get("points").split()), 30)
        bands = [r for r in root.findall(ns + "rect") if r.find(ns + "title") is not None]
        self.assertEqual(len(bands), len(ranges))
        self.assertFalse([f for f in os.listdir(self.dir) if ".tmp." in f])
        # the same run drawn as PNG (extension in any case)
        png = self.p("acc.PNG")
        self.maintain_json("--csv", self.p("stream.csv"), "--plot", png, *self.guarded_args())
        with open(png, "rb") as f:
            chunks = png_chunks(f.read())
        self.assertEqual([k for k, _ in chunks], [b"IHDR", b"IDAT", b"IEND"])
        w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
        self.assertEqual((w, h, depth, ctype, comp, filt, interlace), (900, 420, 8, 2, 0, 0, 0))
        raw = zlib.decompress(chunks[1][1])
        self.assertEqual(len(raw), h * (1 + 3 * w))
        rows = [raw[y * (1 + 3 * w):(y + 1) * (1 + 3 * w)] for y in range(h)]
        self.assertEqual({r[0] for r in rows}, {0})  # filter type 0 everywhere
        pixels = [bytes(r[1 + 3 * x:4 + 3 * x]) for r in rows for x in range(w)]
        count = {c: pixels.count(bytes.fromhex(c)) for c in ("1f77b4", "ffffff", "000000")}
        self.assertGreater(count["1f77b4"], 500)  # the guarded series and its legend
        self.assertGreater(count["ffffff"], w * h // 2)  # background
        self.assertGreater(count["000000"], 200)  # labels
        self.assertFalse([f for f in os.listdir(self.dir) if ".tmp." in f])

    def test_modes_compare(self):
        args = ["--csv", self.p("stream.csv"), "--plot-every", 100]
        never, _ = self.maintain_json("--mode", "never", *args)
        naive, _ = self.maintain_json("--mode", "naive", "--lr", "0.01", *args)
        guarded, _ = self.maintain_json(*args, *self.guarded_args()[:-2])
        self.assertEqual(never["version"], 1)
        self.assertEqual(never["rollbacks"], 0)
        self.assertEqual(naive["learned"], 3000)

        def after(j):  # accuracy of the first clean stretch after the poison
            return [a for e, a in j["series"] if e > self.poison[1]][0]

        # naive SGD learned the permuted labels and pays for it afterwards;
        # the guarded deployment never learned them
        self.assertGreater(after(guarded), 0.95)
        self.assertGreater(after(guarded), after(naive) + 0.1)
        self.assertGreater(after(never), 0.95)

    def test_stream_from_stdin(self):
        j, _ = self.maintain_json("--csv", "-", *self.guarded_args(),
                                  stdin=self.stream_text.encode())
        j2, _ = self.maintain_json("--csv", self.p("stream.csv"), *self.guarded_args())
        self.assertEqual(j["samples"], 3000)
        self.assertEqual(j["series"], j2["series"])
        self.assertEqual(j["quarantined_ranges"], j2["quarantined_ranges"])

    def test_short_stream_has_enough_points(self):
        # 900 samples: the point spacing follows the stream's length (>= 50
        # points) unless --plot-every is given; from a file and from stdin,
        # in every mode, in the JSON series and in the plot.
        short = "".join(self.stream_text.splitlines(True)[:900])
        path = self.p("short.csv")
        with open(path, "w") as f:
            f.write(short)
        plot = self.p("short.svg")
        for mode in ("guarded", "naive", "never"):
            j, _ = self.maintain_json("--csv", path, "--mode", mode, "--plot", plot)
            s = j["series"]
            self.assertGreaterEqual(len(s), 50, (mode, s))
            ends = [p[0] for p in s]
            self.assertEqual(ends, sorted(set(ends)))
            self.assertEqual(ends[-1], 900)
            self.assertEqual(ends, list(range(ends[0], 901, ends[0])))  # evenly spaced
            # the points add up to the progressive accuracy
            correct = sum(a * (e - b) for (e, a), b in zip(s, [0] + ends[:-1]))
            self.assertAlmostEqual(correct / 900, j["progressive_accuracy"], places=6)
            root = ET.parse(plot).getroot()
            line = root.findall("{http://www.w3.org/2000/svg}polyline")[0]
            self.assertGreaterEqual(len(line.get("points").split()), 50)
        j, _ = self.maintain_json("--csv", "-", stdin=short.encode())
        self.assertGreaterEqual(len(j["series"]), 50)
        j2, _ = self.maintain_json("--csv", path)
        self.assertEqual(j["series"], j2["series"])
        j, _ = self.maintain_json("--csv", path, "--plot-every", 300)  # given: kept
        self.assertEqual([p[0] for p in j["series"]], [300, 600, 900])
        rc, out, _ = run("help", "maintain")
        self.assertIn("at least 50 points", " ".join(out.split()))

    def test_checkpoint_dir(self):
        d = self.p("ckpts")
        os.mkdir(d)
        j, _ = self.maintain_json("--csv", self.p("stream.csv"), "--checkpoint-dir", d, "--ring", 3,
                                  *self.guarded_args())
        files = sorted(os.listdir(d))
        self.assertEqual(len(files), 3, files)
        self.assertEqual(files[-1], "ckpt-%08d.mmf" % j["version"])
        rc, out, err = run("eval", os.path.join(d, files[-1]), "--csv", self.p("holdout.csv"))
        self.assertEqual(rc, 0, err)

    def test_usage_errors(self):
        for args, code, frag in [
            (["--mode", "sometimes"], 2, "--mode"),
            (["--plot", self.p("x.gif")], 2, "*.png"),
            (["--plot", self.p("png")], 2, "*.svg"),
            (["--window", "0"], 2, "window"),
            (["--threshold", "2"], 2, "guard_threshold"),
            (["--detector", "magic"], 2, "magic"),
            (["--scenario", "tornado"], 2, "tornado"),
            (["--plot-every", "0"], 2, "--plot-every"),
            (["--checkpoint-dir", self.p("no/such/dir")], 1, "no/such/dir"),
        ]:
            rc, out, err = run("maintain", self.model, "--csv", self.p("stream.csv"), *args)
            self.assertEqual(rc, code, "%s: %d\n%s" % (args, rc, err))
            self.assertIn(frag, err, args)
        rc, _, err = run("maintain", self.p("missing.mmf"), "--csv", self.p("stream.csv"))
        self.assertEqual(rc, 1)
        self.assertIn("missing.mmf", err)
        rc, _, err = run("maintain")
        self.assertEqual(rc, 2)
        rc, out, _ = run("help", "maintain")
        self.assertEqual(rc, 0)
        self.assertIn("--plot", out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        MMAINT = sys.argv.pop(1)
    if not MMAINT:
        sys.exit("usage: test_maintain.py PATH_TO_MMAINT")
    unittest.main(verbosity=2)
