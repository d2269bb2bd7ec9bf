#!/usr/bin/env bash
# Set up, build and run the model maintenance demo on Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
exec build/tools/mmaint demo --out demo-out "$@"
