#!/bin/sh
# usage: check_install.sh SOURCE_ROOT BUILD_ROOT PREFIX LIBDIR [SANITIZE]
set -eu
src=$1 build=$2 prefix=$3 libdir=$4 sanitize=${5:-none}
# A sanitizer build of the library needs consumers built the same way.
CC="${CC:-cc}"
[ "$sanitize" = none ] || CC="$CC -fsanitize=$sanitize"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
export PKG_CONFIG_PATH="$stage$libdir/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$stage"
pkg-config --exists mmaint
test -f "$stage$prefix/include/mm/mm.h"
test -f "$stage$prefix/include/mm/mm_version.h"
# Headers of internal modules must not be installed.
! find "$stage" -name '*_internal.h' | grep -q .
$CC -o "$stage/consumer" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs mmaint)
LD_LIBRARY_PATH="$stage$libdir" "$stage/consumer"
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
