#!/bin/sh
# usage: check_c_example.sh MARKDOWN HEADING LIBRARY -- CC [CFLAGS...]
# Extracts the first ```c block under the section of MARKDOWN whose heading
# starts with HEADING, compiles it as a newcomer would (C11, warnings are
# errors) against the headers in CFLAGS and the just-built LIBRARY, and
# runs it in a scratch directory: it must exit 0 and print a line with
# "test accuracy A" where A >= 0.8. The run is skipped (exit 77) without
# Fashion-MNIST; the compile never is. So the documentation's example
# cannot drift from the real headers.
set -eu
doc=$1 heading=$2 lib=$3
shift 3
[ "$1" = -- ] && shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v h="$heading" '
  !insec && index($0, h) == 1 { insec = 1; next }
  insec && !inblk && /^#+ / { exit }
  insec && !inblk && /^```c[ \t]*$/ { inblk = 1; next }
  inblk && /^```/ { exit }
  inblk { print }' "$doc" >"$work/example.c"
if [ ! -s "$work/example.c" ]; then
  echo "$doc: no \`\`\`c block under a heading starting with '$heading'"
  exit 1
fi
echo "$doc, \"$heading\": $(wc -l <"$work/example.c") lines"
"$@" -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$work/example" "$work/example.c" \
  "$lib" -Wl,-rpath,"$(dirname "$lib")" || {
  echo "--- the example as extracted:"; cat -n "$work/example.c"; exit 1; }
echo "compiles: ok"
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "SKIP run: Fashion-MNIST is not installed (dataset-fashion-mnist)"
  exit 77
fi
cd "$work"
./example | tee out.txt
acc=$(sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' out.txt | tail -n 1)
[ -n "$acc" ] || { echo "no 'test accuracy' line in the output"; exit 1; }
awk -v a="$acc" 'BEGIN { exit !(a >= 0.8) }' || { echo "test accuracy $acc < 0.8"; exit 1; }
echo "runs: ok (test accuracy $acc)"
