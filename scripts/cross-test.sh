#!/usr/bin/env bash
# Platform independence check (doc/PORTABILITY.md): model files written on
# this x86-64 machine load on big-endian s390x and on 32-bit i386 with
# bit-identical outputs, files written there load here bit-identically, and
# training, pruning and quantizing from the same seed give the same bits on
# all three. The library is cross-built (reference kernels, no BLIS) and the
# check program tests/cross/cross_check runs under qemu-user.
#
# Usage: scripts/cross-test.sh [BUILD_ROOT]   (default build-cross)
#
# Installs (apt-get, as root or via sudo): gcc-s390x-linux-gnu,
# gcc-i686-linux-gnu and their libc, qemu-user; and fetches Debian's zlib and
# jansson packages for s390x and i386 with `apt-get download` (after
# `dpkg --add-architecture`), unpacking them into BUILD_ROOT/sysroot-<arch>
# instead of installing them as multiarch packages: a foreign-architecture
# install needs exactly the host's versions of shared packages (libc6,
# libssl3, linux-libc-dev, ...), which a machine with security updates often
# does not find for s390x, and it would tie the host's later upgrades to
# them. The libraries are only linked against and loaded under qemu.
#
# Prints "SKIP: ..." and exits 0 only when the cross tools cannot be
# installed (no apt-get, no root, package or network failure); every other
# failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
root=${1:-build-cross}
mkdir -p "$root"
root=$(cd "$root" && pwd)
fashion=${MM_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
archs=(s390x i386)
declare -A gnu=([s390x]=s390x-linux-gnu [i386]=i386-linux-gnu)
declare -A tool=([s390x]=s390x-linux-gnu [i386]=i686-linux-gnu)
declare -A qemu=([s390x]=qemu-s390x [i386]=qemu-i386)

skip() {
    echo "SKIP: cross-platform test not run: $*"
    exit 0
}

# ---- tools ----------------------------------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=(gcc-s390x-linux-gnu libc6-dev-s390x-cross gcc-i686-linux-gnu libc6-dev-i386-cross
      qemu-user pkg-config)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v apt-get >/dev/null || skip "apt-get not found (cross tools: ${need[*]})"
if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    [ ${#missing[@]} -eq 0 ] || skip "need root or sudo to install ${missing[*]}"
fi
foreign=$(dpkg --print-foreign-architectures)
for a in "${archs[@]}"; do
    if ! grep -qx "$a" <<<"$foreign"; then
        $SUDO dpkg --add-architecture "$a" || skip "dpkg --add-architecture $a failed"
        added=1
    fi
done
if [ ${#missing[@]} -gt 0 ] || [ -n "${added:-}" ]; then
    echo "cross-test: installing ${missing[*]:-(package lists for ${archs[*]})}"
    # An index that fails (a mirror in sync) must not stop the others.
    $SUDO apt-get update -qq || echo "cross-test: apt-get update reported errors; going on"
fi
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" || skip "could not install ${missing[*]}"
fi

# ---- zlib and jansson for each architecture, unpacked ---------------------
for a in "${archs[@]}"; do
    sys=$root/sysroot-$a
    if [ ! -f "$sys/.complete" ]; then
        rm -rf "$sys" "$root/debs-$a"
        mkdir -p "$sys" "$root/debs-$a"
        (cd "$root/debs-$a" &&
         apt-get download -q zlib1g:"$a" zlib1g-dev:"$a" libjansson4:"$a" libjansson-dev:"$a" \
             >/dev/null 2>&1) ||
            skip "apt-get download of zlib and jansson for $a failed"
        for d in "$root/debs-$a"/*.deb; do dpkg-deb -x "$d" "$sys"; done
        # absolute symbolic links (libz.so -> /lib/...) point into the sysroot
        find "$sys" -type l | while read -r l; do
            t=$(readlink "$l")
            case $t in /*) ln -sfn "$sys$t" "$l" ;; esac
        done
        touch "$sys/.complete"
    fi
done

# ---- builds -----------------------------------------------------------------
setup() {  # setup DIR [meson options...]
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; exit 1; }
    fi
    ninja -C "$dir" tests/cross/cross_check >"$dir.build.log" 2>&1 || { cat "$dir.build.log"; exit 1; }
}
echo "cross-test: native reference build (x86-64, no BLIS)"
setup "$root/native" -Dblis=disabled -Donnx=disabled -Dcli=false -Dbenchmarks=false
for a in "${archs[@]}"; do
    echo "cross-test: cross build for $a"
    printf "[constants]\nsysroot = '%s'\n" "$root/sysroot-$a" >"$root/sysroot-$a.ini"
    setup "$root/$a" --cross-file "$root/sysroot-$a.ini" --cross-file "$src/scripts/cross/$a.ini" \
        -Dblis=disabled -Donnx=disabled -Dcli=false -Dbenchmarks=false
done

# ---- run ------------------------------------------------------------------
run_on() {  # run_on ARCH|native cross_check-arguments...
    local a=$1; shift
    if [ "$a" = native ]; then
        "$root/native/tests/cross/cross_check" "$@"
    else
        local sys=$root/sysroot-$a
        LD_LIBRARY_PATH="$sys/lib/${gnu[$a]}:$sys/usr/lib/${gnu[$a]}:$root/$a/lib" \
            "${qemu[$a]}" -L "/usr/${tool[$a]}" "$root/$a/tests/cross/cross_check" "$@"
    fi
}
check() {  # check WRITER VERIFIER
    local w=$1 v=$2 dir=$root/files-$1
    echo "=== files written on $w, verified on $v"
    run_on "$v" verify "$dir" "$fashion" | tee "$root/verify-$w-on-$v.log" | grep -v ' identical' || true
    grep -q '^OK:' "$root/verify-$w-on-$v.log" || { echo "cross-test: FAILED ($w -> $v)"; exit 1; }
}
[ -f "$fashion/t10k-images-idx3-ubyte.gz" ] ||
    { echo "cross-test: Fashion-MNIST not found at $fashion (scripts/setup.sh installs it)"; exit 1; }
for w in native "${archs[@]}"; do
    echo "cross-test: writing model files on $w"
    rm -rf "$root/files-$w"
    run_on "$w" write "$root/files-$w" "$fashion" >"$root/write-$w.log" ||
        { cat "$root/write-$w.log"; exit 1; }
done
for a in "${archs[@]}"; do
    check native "$a"
    check "$a" native
done
check s390x i386
echo "cross-test: OK: x86-64, s390x (big-endian) and i386 agree bit for bit"
