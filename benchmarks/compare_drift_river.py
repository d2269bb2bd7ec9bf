#!/usr/bin/env python3
"""mmaint's drift detectors on the example streams of River's documentation.

River (online ML in Python) is not packaged for Debian and PyPI is not
reachable here, so it cannot run side by side. Its docstring examples,
however, print the exact sample index at which each River detector fires on a
stream built from a seeded Python `random.Random` (or numpy's legacy
`RandomState`); both generators are deterministic across versions, so the
same streams can be rebuilt here and fed to mmaint's detectors (through the
Python bindings' ctypes signatures). The River outputs below are quoted from
River's docstrings (drift/adwin.py, drift/page_hinkley.py in River 0.x,
drift/binary/ddm.py, drift/binary/eddm.py). With --check it exits 1 when an
index differs (a meson test, drift-river-examples; the Page-Hinkley stream
needs numpy and is skipped without it).

    PYTHONPATH=bindings/python MMAINT_LIBRARY=build/lib/libmmaint.so \\
        /usr/bin/python3 benchmarks/compare_drift_river.py   # Debian python3-numpy for the PH stream
"""
import ctypes
import random
import sys

from mmaint import _lib

lib = _lib.lib


def run(kind, stream, **params):
    """Indices where mmaint's detector of `kind` says WARNING / DRIFT."""
    k = ctypes.c_int()
    lib.mm_drift_kind_from_name(kind.encode(), ctypes.byref(k))
    h = ctypes.c_void_p()
    lib.mm_drift_create(ctypes.byref(h), k.value)
    for name, value in params.items():
        lib.mm_drift_set(h, name.encode(), float(value))
    st = ctypes.c_int()
    warnings, drifts = [], []
    for i, v in enumerate(stream):
        lib.mm_drift_update(h, float(v), ctypes.byref(st))
        if st.value == 1:
            warnings.append(i)
        elif st.value == 2:
            drifts.append(i)
    lib.mm_drift_free(h)
    return warnings, drifts


def first_warnings(warnings, drifts):
    """River's examples print a warning only once per drift period."""
    out, armed, d = [], True, sorted(drifts)
    for i in sorted(set(warnings) | set(drifts)):
        if i in d:
            armed = True
        elif armed:
            out.append(i)
            armed = False
    return out


def main():
    check = "--check" in sys.argv[1:]
    rows, mismatches = [], []

    def compare(kind, want_w, want_d, w, d):
        if (want_w is not None and want_w != w) or want_d != d:
            mismatches.append("%s: River warning %s drift %s, mmaint warning %s drift %s"
                              % (kind, want_w, want_d, w, d))

    # ADWIN: random.Random(12345); 1000 of {0,1} then 1000 of {4..7}
    rng = random.Random(12345)
    s = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    w, d = run("adwin", s)
    compare("adwin", None, [1023], None, d)
    rows.append(("adwin", "0/1 then 4..7 (Random(12345))", "drift 1023", "drift %s" % d))
    # DDM / EDDM: random.Random(42); 1000 fair bits, then 1000 with P(1) = 0.7
    # (River's EDDM example sets alpha 0.8, beta 0.75 "to avoid too many
    # false positives"; the same levels here)
    for kind, river, params, want_w, want_d in (
            ("ddm", "warning 1084, drift 1334, warning 1492", {}, [1084, 1492], [1334]),
            ("eddm", "warning 1059, drift 1278 (levels 0.8/0.75)",
             {"drift_level": 0.75, "warning_level": 0.8}, [1059], [1278])):
        rng = random.Random(42)
        s = rng.choices([0, 1], k=1000)
        s = s + rng.choices([0, 1], k=1000, weights=[0.3, 0.7])
        w, d = run(kind, s, **params)
        compare(kind, want_w, want_d, first_warnings(w, d), d)
        rows.append((kind, "p 0.5 then 0.7 (Random(42))", river,
                     "warning %s, drift %s" % (first_warnings(w, d), d)))
    # Page-Hinkley: numpy seed 12345; randint(2) x1000 then randint(4, 8) x1000
    try:
        import numpy as np
        np.random.seed(12345)
        s = np.concatenate((np.random.randint(2, size=1000),
                            np.random.randint(4, high=8, size=1000)))
        w, d = run("page_hinkley", s.tolist())
        compare("page_hinkley", None, [1009], None, d)
        rows.append(("page_hinkley", "0/1 then 4..7 (numpy seed 12345)", "drift 1009",
                     "drift %s" % d))
    except ImportError:
        rows.append(("page_hinkley", "(numpy missing)", "drift 1009", "-"))
    print("| detector | stream | River (documented) | mmaint |")
    print("|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)
    for m in mismatches:
        print("MISMATCH " + m)
    return 1 if check and mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
