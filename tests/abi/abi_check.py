#!/usr/bin/env python3
"""The abi test (meson test --suite abi; doc/ABI.md "The ABI check").

Compares the freshly built libmmaint.so with the committed baseline of the
last release (tests/abi/libmmaint-VERSION.abi, written by abidw through
scripts/abi-baseline.sh), and the ABI probe of that release's public
enumerators and integer macros (tests/abi/probe-VERSION.c, compiled here
against the current headers) with its baseline (probe-VERSION.abi).

Allowed: added functions and variables (abidiff --no-added-syms), and
enumerators appended to an enum (abidiff classes an enumerator insertion
whose existing values are unchanged as harmless and leaves it out of its
verdict). Everything else abidiff finds fails: a removed or renamed symbol,
a changed function signature (parameter or return type, parameter count),
a changed value of an existing enumerator or macro, a change of layout or
size of a public struct (mm_fit_progress, mm_maint_report, mm_maint_range),
a change of size of an enum.

abidiff's exit status is a bit set (abidiff(1)): 1 error, 2 usage error,
4 ABI change, 8 incompatible change (a removed symbol). Exit status of this
test: 0 pass, 1 ABI break, 77 skipped (with the reason), 99 tool failure.

usage: abi_check.py [--skip REASON] --baseline F --probe-src F --probe-baseline F
                    --lib F --hd DIR [--hd DIR...] -- CC [CC_ARGS...]
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

SKIP, FAIL, ERROR = 77, 1, 99
# e_machine of the ELF header -> libabigail's architecture name.
ARCH = {62: 'elf-amd-x86_64', 3: 'elf-intel-80386', 183: 'elf-arm-aarch64',
        40: 'elf-arm', 22: 'elf-ibm-s390', 21: 'elf-ibm-ppc64', 243: 'elf-riscv'}


def elf_info(path):
    """(e_machine, section names) of an ELF file."""
    with open(path, 'rb') as f:
        data = f.read()
    if data[:4] != b'\x7fELF':
        raise ValueError(path + ' is not an ELF file')
    is64, end = data[4] == 2, '<' if data[5] == 1 else '>'
    machine = struct.unpack_from(end + 'H', data, 18)[0]
    if is64:
        shoff, = struct.unpack_from(end + 'Q', data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + 'HHH', data, 0x3a)
    else:
        shoff, = struct.unpack_from(end + 'I', data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + 'HHH', data, 0x2e)

    def section(i):  # (sh_name, sh_offset)
        base = shoff + i * shentsize
        if is64:
            return struct.unpack_from(end + 'I', data, base)[0], \
                struct.unpack_from(end + 'Q', data, base + 0x18)[0]
        return struct.unpack_from(end + 'I', data, base)[0], \
            struct.unpack_from(end + 'I', data, base + 0x10)[0]

    strtab = section(shstrndx)[1]
    names = set()
    for i in range(shnum):
        off = strtab + section(i)[0]
        names.add(data[off:data.index(b'\0', off)].decode())
    return machine, names


def verdict(rc):
    """Words for abidiff's exit status bits."""
    if rc == 0:
        return 'no ABI change beyond additions'
    words = []
    if rc & 1:
        words.append('abidiff error')
    if rc & 2:
        words.append('usage error')
    if rc & 8:
        words.append('INCOMPATIBLE change (a symbol was removed)')
    if rc & 4:
        words.append('ABI change (a signature, type, layout or value changed)')
    return ', '.join(words)


def abidiff(what, args):
    cmd = ['abidiff', '--no-default-suppression'] + args
    print('$ ' + ' '.join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    print('%s: abidiff exit status %d: %s\n' % (what, p.returncode, verdict(p.returncode)),
          flush=True)
    return p.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--skip', default='')
    ap.add_argument('--baseline', required=True)
    ap.add_argument('--probe-src', required=True)
    ap.add_argument('--probe-baseline', required=True)
    ap.add_argument('--lib', required=True)
    ap.add_argument('--hd', action='append', required=True)
    ap.add_argument('cc', nargs='+')
    a = ap.parse_args()

    if a.skip:
        print('SKIP: ' + a.skip)
        return SKIP
    if not shutil.which('abidiff'):
        print('SKIP: abidiff not found (Debian package abigail-tools; scripts/setup.sh '
              'installs it)')
        return SKIP
    with open(a.baseline) as f:
        m = re.search(r"architecture='([^']*)'", f.readline())
    base_arch = m.group(1) if m else '?'
    machine, sections = elf_info(a.lib)
    if ARCH.get(machine) != base_arch:
        print('SKIP: the baseline is for %s, this library is ELF machine %d (%s): type sizes '
              'differ between architectures' % (base_arch, machine, ARCH.get(machine, '?')))
        return SKIP
    if '.debug_info' not in sections:
        print('SKIP: %s has no DWARF (.debug_info): abidiff compares types only with '
              'debug info (build with -Ddebug=true, the default)' % a.lib)
        return SKIP

    hd = [x for d in a.hd for x in ('--hd2', d)]
    # The verdict: added functions and variables are not counted.
    rc_lib = abidiff('library', ['--no-added-syms'] + hd + [a.baseline, a.lib])
    # For the record: what was added since the baseline (never a failure).
    p = subprocess.run(['abidiff', '--no-default-suppression', '--added-fns', '--added-vars']
                       + hd + [a.baseline, a.lib], capture_output=True, text=True)
    added = [l for l in p.stdout.splitlines() if l.lstrip().startswith('[A]')]
    print('added since %s (allowed):\n%s' % (os.path.basename(a.baseline),
                                              '\n'.join(added) or '  (none)'))
    print(flush=True)

    with tempfile.TemporaryDirectory(prefix='mm-abi-') as tmp:
        so = os.path.join(tmp, 'probe.so')
        cmd = a.cc + ['-std=c11', '-g', '-O0', '-shared', '-fPIC', a.probe_src, '-o', so]
        print('$ ' + ' '.join(cmd), flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.stdout.write(p.stdout + p.stderr)
            print('probe: does not compile against the current headers: a public header, '
                  'enum, enumerator or macro of the baseline was removed or renamed\n'
                  'FAIL: ABI break')
            return FAIL
        rc_probe = abidiff('probe (enumerator and macro values)', [a.probe_baseline, so])

    if (rc_lib | rc_probe) & 3:
        print('ERROR: abidiff failed')
        return ERROR
    if rc_lib or rc_probe:
        print('FAIL: ABI break against %s (doc/ABI.md: only appended symbols and enum values; '
              'after a deliberate soname bump refresh the baseline with '
              'scripts/abi-baseline.sh)' % os.path.basename(a.baseline))
        return FAIL
    print('PASS: the ABI of %s is kept (additions only)' % os.path.basename(a.baseline))
    return 0


if __name__ == '__main__':
    sys.exit(main())
