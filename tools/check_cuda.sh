#!/usr/bin/env bash
# Builds and tests the CUDA variant on a machine without a GPU (issue 14): installs faltung
# with -Ccmake.define.FALTUNG_CUDA=ON (nvcc compiles cpp/cuda/kernels.cu for sm_80 and sm_90;
# the baseline CPU level only, to keep it short) into its own venv (build/cuda), checks that
# faltung._cuda loads, names its runtime (nvcc's version) and architectures and holds device
# code for both, finds cuBLAS in NVIDIA's wheel (installed into the venv) and reads its version,
# then runs the CUDA tests in that venv: build_info and faltung.device report
# what this machine lacks, and the kernel and device-resident tests run the host harness (and
# the device, where a GPU exists; they skip with the reason here); then the fuzzing of the
# resident entry points (tests/test_fuzz_ops.py -k resident, on the host harness).
# Without nvcc it says so and exits 0 (1 with FALTUNG_REQUIRE_CUDA=1).
# Usage: tools/check_cuda.sh [pytest arguments]   PYTHON (default python3) creates the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "check_cuda: no nvcc (CUDA toolkit) on this machine; the CUDA variant was not built"
  [ "${FALTUNG_REQUIRE_CUDA:-0}" = 1 ] && exit 1
  exit 0
fi
dir="$PWD/build/cuda"
venv=$dir/venv
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install -q numpy scipy-openblas32 h5py pytest hypothesis scikit-build-core pybind11 cmake ninja
# cuBLAS from NVIDIA's wheel (~450 MB download, cached by pip): faltung._cuda opens it at run time
# (cpp/cuda/blas.hpp); the check below asks that it is found and its version read (no GPU needed).
"$venv/bin/pip" install -q "nvidia-cublas>=13,<14"
"$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall \
  -Cbuild-dir="$dir/cmake" \
  -Ccmake.define.FALTUNG_CUDA=ON \
  -Ccmake.define.FALTUNG_CPU_LEVELS=baseline \
  -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="80;90" \
  .

cd /tmp  # import the installed copy, not the source tree
"$venv/bin/python" - <<'PY'
import subprocess
import faltung
from faltung import _cuda
nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
info = faltung.build_info()
assert info["cuda"] and f"release {info['cuda_version']}" in nvcc, (info, nvcc)
assert info["cuda_architectures"] == "80 90", info["cuda_architectures"]
assert info["cuda_devices"] > 0 or info["cuda_error"], info
data = open(_cuda.__file__, "rb").read()
for sm in (b"sm_80", b"sm_90"):
    assert sm in data, f"no {sm.decode()} device code in {_cuda.__file__}"
assert info["cublas"] and info["cublas_version"].startswith("13."), info
assert "/nvidia/" in info["cublas_path"], info["cublas_path"]  # the wheel's, found through sys.path
print(f"check_cuda: faltung._cuda built (CUDA {info['cuda_version']}, sm {info['cuda_architectures']}) "
      f"and loaded; cuBLAS {info['cublas_version']} at {info['cublas_path']}; "
      f"devices: {info['cuda_devices']} {info['cuda_error']}")
PY
cd - >/dev/null
"$venv/bin/python" -m pytest -p no:cacheprovider "${@:--q}" tests/test_cuda_device.py tests/test_cuda_kernels.py \
  tests/test_cuda_conv.py tests/test_cuda_layers.py tests/test_cuda_resident_ops.py tests/test_cuda_resident_model.py \
  tests/test_cuda_resident_layers.py tests/test_cuda_resident_graph.py tests/test_cuda_resident_io.py \
  tests/test_cuda_resident_masks.py tests/test_cuda_resident_nested.py tests/test_cuda_resident_merges.py \
  tests/test_cuda_resident_states.py tests/test_cuda_resident_refusals.py tests/test_cuda_resident_rnn_dropout.py \
  tests/test_cuda_blas.py
# the resident entry points' fuzzing (test_fuzz_ops's CPU families run in the ordinary suite)
"$venv/bin/python" -m pytest -p no:cacheprovider "${@:--q}" tests/test_fuzz_ops.py -k resident
