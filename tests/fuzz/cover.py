#!/usr/bin/env python3
"""Pick a small corpus that keeps the coverage (tests/fuzz/README.md).

    cover.py CONTROL_FILE KEEP_DIR OUT_DIR BUDGET_BYTES

CONTROL_FILE is what `fuzz_<name> -merge=1 -use_counters=0
-merge_control_file=CONTROL_FILE EMPTY_DIR DIR...` leaves: every input of
the DIRs with the edges it covers. Every input under KEEP_DIR (the named
seeds and bug reproducers) is kept; then inputs are added greedily by new
edges per byte while the total stays within BUDGET_BYTES. The chosen files
are copied to OUT_DIR (run it from the directory the fuzzer ran in: the
control file holds relative paths). Prints the edges covered.
"""
import os
import shutil
import sys


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    ctl, keep_dir, out_dir, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    lines = open(ctl).read().split('\n')
    n = int(lines[0])
    paths = lines[2:2 + n]
    cov = {}
    for line in lines[2 + n:]:
        if line.startswith('COV '):
            parts = line.split()
            cov[int(parts[1])] = set(parts[2:])
    sizes = {i: max(1, os.path.getsize(p)) for i, p in enumerate(paths)}
    every = set().union(*cov.values()) if cov else set()
    keep = os.path.normpath(keep_dir) + os.sep
    chosen = [i for i, p in enumerate(paths) if os.path.normpath(p).startswith(keep)]
    covered = set().union(*(cov.get(i, set()) for i in chosen))
    total = sum(sizes[i] for i in chosen)
    picked = set(chosen)
    while True:
        best, score = None, 0.0
        for i, c in cov.items():
            if i in picked or total + sizes[i] > budget:
                continue
            gain = len(c - covered)
            if gain and gain / sizes[i] > score:
                best, score = i, gain / sizes[i]
        if best is None:
            break
        chosen.append(best)
        picked.add(best)
        covered |= cov[best]
        total += sizes[best]
    os.makedirs(out_dir, exist_ok=True)
    for i in chosen:
        shutil.copy(paths[i], os.path.join(out_dir, os.path.basename(paths[i])))
    share = 100.0 * len(covered) / len(every) if every else 100.0
    print(f"{len(chosen)} files, {total} bytes: {len(covered)} of {len(every)} edges ({share:.1f}%)")


if __name__ == '__main__':
    main()
