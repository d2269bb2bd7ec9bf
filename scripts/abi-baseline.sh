#!/usr/bin/env bash
# Write the ABI baseline of a release for the abi test (doc/ABI.md, "The ABI
# check"): builds libmmaint at REV in a temporary worktree (debug info,
# library only) and writes, under tests/abi/ of this tree,
#   libmmaint-VERSION.abi  abidw's ABI of libmmaint.so, restricted to the
#                          public headers (include/mm) and exported interfaces
#   probe-VERSION.c        the probe of the public enums and integer macros
#                          (tests/abi/gen_probe.py)
#   probe-VERSION.abi      abidw's ABI of that probe built against REV's headers
# and points tests/abi/meson.build at VERSION (REV's project version).
# Usage: scripts/abi-baseline.sh [REV]   (default HEAD; run it on the commit
# of a release, then `git rm` the previous baseline's three files and commit)
# Needs abigail-tools (abidw), gcc or $CC, meson, ninja.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
rev=${1:-HEAD}
cc=${CC:-gcc}
command -v abidw >/dev/null || { echo "abidw not found: apt-get install abigail-tools" >&2; exit 1; }
tmp=$(mktemp -d /tmp/mm-abi-baseline.XXXXXX)
cleanup() { git -C "$top" worktree remove --force "$tmp/src" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
git worktree add --detach "$tmp/src" "$rev" >/dev/null
src=$tmp/src
version=$(sed -n "s/^ *version *: *'\([0-9.]*\)'.*/\1/p" "$src/meson.build" | head -1)
[ -n "$version" ] || { echo "no project version in $rev's meson.build" >&2; exit 1; }
# The bindings' options changed type over time (python: boolean, then feature).
off() { grep -q "option('$1', type : 'feature'" "$src/meson_options.txt" && echo disabled || echo false; }
echo "building libmmaint $version ($(git rev-parse --short "$rev")) in $tmp"
CC=$cc meson setup "$tmp/build" "$src" --buildtype=debugoptimized -Dtests=false \
  -Dbenchmarks=false -Dcli=false -Dlua="$(off lua)" -Dpython="$(off python)" \
  >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
ninja -C "$tmp/build" >"$tmp/ninja.log" 2>&1 || { cat "$tmp/ninja.log"; exit 1; }
lib=$tmp/build/lib/libmmaint.so.$version
# Only what the public headers declare, only exported interfaces, no
# paths of this machine and no DT_NEEDED (BLIS and protobuf-c are optional
# dependencies, not ABI).
abidw_opts=(--drop-undefined-syms --no-elf-needed --no-corpus-path --no-comp-dir-path --short-locs)
abidw "${abidw_opts[@]}" --hd "$src/include/mm" --hd "$tmp/build/include/mm" \
  --drop-private-types --exported-interfaces-only \
  --out-file "$top/tests/abi/libmmaint-$version.abi" "$lib"
python3 "$top/tests/abi/gen_probe.py" "$version" "$src/include/mm" "$cc" \
  -I"$src/include" -I"$tmp/build/include/mm" >"$top/tests/abi/probe-$version.c"
"$cc" -std=c11 -g -O0 -shared -fPIC -I"$src/include" -I"$tmp/build/include/mm" \
  "$top/tests/abi/probe-$version.c" -o "$tmp/probe.so"
abidw "${abidw_opts[@]}" --out-file "$top/tests/abi/probe-$version.abi" "$tmp/probe.so"
sed -i "s/^abi_baseline_version = .*/abi_baseline_version = '$version'/" "$top/tests/abi/meson.build"
ls -l "$top"/tests/abi/*-"$version".*
echo "tests/abi/meson.build now compares against $version; git rm the previous baseline's files"
