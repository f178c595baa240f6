#!/bin/sh
# Cross-compiles faltung's C++ core (cpp/src) for aarch64 to object files, to prove that the
# non-x86 build uses no x86 intrinsics or flags (simd.hpp falls back to NEON / generic vectors).
# Needs Debian's g++-aarch64-linux-gnu; cblas.h comes from the scipy_openblas32 wheel of the
# Python that runs this script (PYTHON, default python3). Usage: tools/check_aarch64.sh
set -eu
CXX=${CXX_AARCH64:-aarch64-linux-gnu-g++}
PYTHON=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
blas_include=$("$PYTHON" -c "import scipy_openblas32; print(scipy_openblas32.get_include_dir())")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for src in "$root"/cpp/src/*.cpp; do
  "$CXX" -std=c++17 -O2 -fopenmp -Wall -Wno-psabi \
    -I"$root/cpp/include" -I"$blas_include" -c "$src" -o "$out/$(basename "$src" .cpp).o"
  n=$((n + 1))
done
if file "$out"/*.o | grep -v -q "ARM aarch64"; then
  echo "check_aarch64: an object file is not AArch64 code" >&2
  exit 1
fi
echo "check_aarch64: $n files of cpp/src compile for aarch64"
