#!/usr/bin/env bash
# Checks faltung's C++ package without Python in the program: configures and builds the core
# (one CPU level, FALTUNG_INSTALL_LEVEL, default baseline), `cmake --install`s it into a
# temporary prefix, then builds examples/cpp against that prefix with find_package(faltung)
# and runs it (a conv net's forward and backward, checked against finite differences, and a
# few SGD steps). CMake, Ninja, pybind11 (the configure step still looks for it) and the
# scipy-openblas32 wheel (OpenBLAS) come from PyPI into build/cpp-package/venv, created by
# PYTHON (default python3). Usage: tools/check_cpp_package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/build/cpp-package"
venv=$dir/venv
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install -q cmake ninja pybind11 scipy-openblas32
export PATH="$venv/bin:$PATH"
level=${FALTUNG_INSTALL_LEVEL:-baseline}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT

cmake -S . -B "$dir/core" -G Ninja -DPython_EXECUTABLE="$venv/bin/python" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DFALTUNG_INSTALL_LEVEL="$level" >/dev/null
cmake --build "$dir/core" --target "faltung_core_$level"
cmake --install "$dir/core" --component faltung_cpp --prefix "$prefix" >/dev/null
echo "check_cpp_package: installed into $prefix:" $(cd "$prefix" && find . -type f ! -name "*.hpp" | sort) \
  "and $(ls "$prefix"/include/faltung/*.hpp | wc -l) headers in ./include/faltung"

rm -rf "$dir/example"
cmake -S examples/cpp -B "$dir/example" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$dir/example"
"$dir/example/conv_net"
