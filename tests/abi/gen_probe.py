#!/usr/bin/env python3
"""Write the ABI probe source for the public headers of a release.

Used by scripts/abi-baseline.sh when a baseline is cut (doc/ABI.md). The
probe makes the values of every public enumerator and integer macro visible
to abidw/abidiff: libmmaint's own debug info holds only the enums that
appear in an exported function's signature, so enums whose values travel as
other types (MM_SCHEDULE_* through a double setting, MM_SAFETENSORS_* as
uint32_t flags) and macros (MM_MAINT_EV_*) would escape the check. The probe
is one exported function taking a struct with a member of every public enum
type and of an enum whose enumerators copy the integer macros; compiled
against later headers, a renumbered enumerator or a changed macro value is
an enumerator change abidiff reports, and a removed one does not compile.

usage: gen_probe.py VERSION HEADERS_DIR CC [CC_ARGS...]
  HEADERS_DIR is include/mm; CC_ARGS must let CC find <mm/...> and the
  generated mm_version.h (-Iinclude -Ibuild/include/mm).
"""
import os
import re
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    version, hdir, cc = sys.argv[1], sys.argv[2], sys.argv[3:]
    headers = sorted(h for h in os.listdir(hdir) if h.endswith('.h'))
    src = ''.join('#include <mm/%s>\n' % h for h in headers)

    def cpp(*flags):
        return subprocess.run(cc + ['-std=c11', '-E', *flags, '-x', 'c', '-'], input=src,
                              capture_output=True, text=True, check=True).stdout

    # Enum tags of the public headers (every public enum has an mm_ tag).
    tags = []
    for t in re.findall(r'\benum\s+(mm_\w+)\s*\{', cpp()):
        if t not in tags:
            tags.append(t)
    # Object-like MM_ macros with an integer value, except the version
    # (it changes with every release) and include guards (empty).
    int_re = re.compile(r'^\(?\s*-?\s*(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\s*\)?$')
    macros = []
    for line in cpp('-dM').splitlines():
        m = re.match(r'#define (MM_\w+) (.*)$', line)
        if m and not m.group(1).startswith('MM_VERSION_') and int_re.match(m.group(2).strip()):
            macros.append(m.group(1))
    macros.sort()
    if not tags:
        sys.exit('gen_probe.py: no public enums found in ' + hdir)

    out = ['/* ABI probe of the libmmaint %s public headers, written by' % version,
           ' * tests/abi/gen_probe.py (scripts/abi-baseline.sh); do not edit. The abi',
           ' * test compiles it against the current headers and compares it with',
           ' * probe-%s.abi (doc/ABI.md). */' % version]
    out += [l.rstrip() for l in src.splitlines()]
    out += ['', '/* The integer macros of the public headers, as enumerators. */',
            'enum mm_abi_probe_macro {']
    out += ['    MM_ABI_PROBE_%s = %s,' % (m, m) for m in macros]
    out += ['    MM_ABI_PROBE_MACRO_END_ = 0', '};', '',
            'struct mm_abi_probe {']
    out += ['    enum %s %s;' % (t, t) for t in tags]
    out += ['    enum mm_abi_probe_macro macros;', '};', '',
            'MM_API void mm_abi_probe(const struct mm_abi_probe *p);',
            'void mm_abi_probe(const struct mm_abi_probe *p) { (void)p; }']
    print('\n'.join(out))


if __name__ == '__main__':
    main()
