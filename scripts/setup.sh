#!/usr/bin/env bash
# Install what building, testing and the demo need on Debian (bookworm).
# Usage: scripts/setup.sh [extra packages...]   (runs apt-get as root or via sudo)
set -euo pipefail
pkgs=(gcc meson ninja-build pkg-config libblis-dev check zlib1g-dev libjansson-dev
      dataset-fashion-mnist lua5.4 liblua5.4-dev lua-system python3 python3-numpy
      libprotobuf-c-dev protobuf-c-compiler libonnx-dev python3-onnx clang libclang-rt-14-dev abigail-tools "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
