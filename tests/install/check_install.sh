#!/bin/sh
# usage: check_install.sh SOURCE_ROOT BUILD_ROOT PREFIX LIBDIR [SANITIZE]
# Environment (from tests/install/meson.build): MM_BINDIR (absolute; the CLI
# is checked when set), MM_LUA and MM_LUA_DIR (interpreter and the module's
# install directory; the Lua module is checked when set), MM_PYTHON and
# MM_PYTHON_DIR (interpreter and the package's install directory; the Python
# package is checked when set), MM_ASAN_RUNTIME (an AddressSanitizer build:
# preloaded into the uninstrumented interpreters).
#
# Installs into a staging directory (DESTDIR) and runs what was installed as
# a user would, with LD_LIBRARY_PATH unset: a consumer built with pkg-config
# (static and shared, with the run path the README recommends), the mmaint
# CLI, the Lua module and the Python package. Each must find the staged
# libmmaint by itself ($ORIGIN-relative run paths, the package's recorded
# location), not some other copy on the system.
set -eu
src=$1 build=$2 prefix=$3 libdir=$4 sanitize=${5:-none}
# A sanitizer build of the library needs consumers built the same way.
CC="${CC:-cc}"
[ "$sanitize" = none ] || CC="$CC -fsanitize=$sanitize"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
lib="$stage$libdir/libmmaint.so.0"
test -f "$lib"
unset LD_LIBRARY_PATH MMAINT_LIBRARY
cd "$stage"
# resolves_staged FILE: the dynamic loader resolves FILE's libmmaint.so.0 to
# the staged copy.
resolves_staged() {
  got=$(ldd "$1" | awk '$1 == "libmmaint.so.0" {print ($3 == "not" ? "not found" : $3)}')
  case $got in
    "$stage"/*) ;;
    *) echo "$1: libmmaint.so.0 resolves to '${got:-nothing}', not the staged $lib"
       ldd "$1"; exit 1 ;;
  esac
}
export PKG_CONFIG_PATH="$stage$libdir/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$stage"
pkg-config --exists mmaint
test -f "$stage$prefix/include/mm/mm.h"
test -f "$stage$prefix/include/mm/mm_version.h"
# Headers of internal modules must not be installed.
! find "$stage" -name '*_internal.h' | grep -q .
# A pkg-config host in a prefix the dynamic loader does not search: the run
# path from `pkg-config --variable=libdir` (README, doc/API.md).
$CC -o "$stage/consumer" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs mmaint) \
  -Wl,-rpath,"$(pkg-config --variable=libdir mmaint)"
"$stage/consumer"
resolves_staged "$stage/consumer"
# Static linking works too.
$CC -o "$stage/consumer-static" "$src/tests/install/consumer.c" \
  $(pkg-config --cflags mmaint) "$stage$libdir/libmmaint.a" $(pkg-config --libs --static mmaint | sed 's/-lmmaint//')
"$stage/consumer-static"
# Only mm_* symbols are exported, and none that Debian's OSSP mm (libmm) owns.
syms=$(nm -D --defined-only "$stage$libdir/libmmaint.so" | awk '$2 ~ /[TDBR]/ {print $3}')
echo "$syms" | grep -v '^mm_' | grep -v '^MMAINT_' && { echo "non-mm symbol exported"; exit 1; }
for s in mm_create mm_destroy mm_malloc mm_free mm_calloc mm_realloc mm_strdup mm_lock \
         mm_unlock mm_error mm_display_info mm_core_create mm_available mm_maxsize; do
  if echo "$syms" | grep -qx "$s"; then echo "exports $s, which clashes with OSSP mm"; exit 1; fi
done
echo "install + pkg-config consumer: ok"

# The uninstrumented interpreters load an AddressSanitizer-instrumented
# library: its runtime must come first. Leak checking stays off for them
# (the interpreters' own allocations at exit, and BLIS's process-lifetime
# pools once lua_close unloads the module, are not leaks of ours; the
# binding test suites run LeakSanitizer with the library preloaded).
interp() {
  if [ -n "${MM_ASAN_RUNTIME:-}" ]; then
    LD_PRELOAD="$MM_ASAN_RUNTIME" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$@"
  else
    "$@"
  fi
}

# The Lua module: builds, trains and saves a small model (used below).
model="$stage/installed.mmf"
if [ -n "${MM_LUA:-}" ]; then
  luamod="$stage$MM_LUA_DIR/mmaint.so"
  test -f "$luamod"
  interp "$MM_LUA" - "$stage$MM_LUA_DIR" "$model" <<'EOF'
local dir, path = ...
package.cpath = dir .. "/?.so"
local mm = require "mmaint"
local m = assert(mm.model("4-8-3:relu", 7))
local o = assert(mm.optimizer(m, "adam", {learning_rate = 1e-2}))
local x = {0.1, 0.2, 0.3, 0.4}
local first = assert(o:step(x, 2))
local last
for _ = 1, 50 do last = assert(o:step(x, 2)) end
assert(last < first, "loss did not fall")
assert(m:predict(x)[1] == 2, "prediction after training")
assert(o:save(path))
print(string.format("installed Lua module: mmaint %s, loss %.4f -> %.4f, ok", mm.version,
                    first, last))
EOF
  resolves_staged "$luamod"
else
  echo "installed Lua module: not built, skipped"
fi

# The CLI.
if [ -n "${MM_BINDIR:-}" ]; then
  cli="$stage$MM_BINDIR/mmaint"
  test -x "$cli"
  "$cli" --version
  resolves_staged "$cli"
  if [ -f "$model" ]; then
    "$cli" info "$model" >"$stage/info.txt"
    grep -q optimizer "$stage/info.txt" || { cat "$stage/info.txt"; echo "info: no optimizer state?"; exit 1; }
  fi
  echo "installed CLI: ok"
else
  echo "installed CLI: not built, skipped"
fi

# The Python package: every module of the source package is installed, and
# `import mmaint` finds the staged library without LD_LIBRARY_PATH or
# MMAINT_LIBRARY.
if [ -n "${MM_PYTHON:-}" ]; then
  pkg="$stage$MM_PYTHON_DIR/mmaint"
  test -f "$pkg/_install.py"
  for f in "$src"/bindings/python/mmaint/*.py; do
    test -f "$pkg/$(basename "$f")" || { echo "$f is not installed"; exit 1; }
  done
  PYTHONPATH="$stage$MM_PYTHON_DIR" PYTHONDONTWRITEBYTECODE=1 \
    interp "$MM_PYTHON" - "$stage" "$model" <<'EOF'
import os, sys
import mmaint
stage, path = sys.argv[1], sys.argv[2]
here = os.path.realpath(mmaint.__file__)
assert here.startswith(os.path.realpath(stage) + os.sep), "imported %s, not the staged package" % here
lib = os.path.realpath(mmaint.library_path())
assert lib.startswith(os.path.realpath(stage) + os.sep), "loaded %s, not the staged library" % lib
m = mmaint.Model("4-8-3:relu", seed=7)
opt = mmaint.Optimizer(m, "adam", lr=1e-2)
x = [0.1, 0.2, 0.3, 0.4]
first = opt.step(x, 2)
for _ in range(50):
    last = opt.step(x, 2)
assert last < first, (first, last)
assert int(m.predict(x)[0]) == 2
if os.path.exists(path):  # saved by the Lua module
    assert int(mmaint.Model.load(path).predict(x)[0]) == 2
print("installed Python package: mmaint %s from %s, loss %.4f -> %.4f, ok"
      % (mmaint.version(), lib, first, last))
EOF
else
  echo "installed Python package: not installed (-Dpython), skipped"
fi
