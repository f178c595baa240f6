#!/usr/bin/env bash
# Builds faltung's extension with AddressSanitizer + UndefinedBehaviorSanitizer in its own
# build dir and venv (build/sanitize), checks that the installed _core is the instrumented
# one, then runs pytest under it. Any sanitizer report aborts the process, so it fails the run.
#
# Usage: tools/sanitize.sh [pytest arguments]   (default: the whole suite, -q)
#   e.g. tools/sanitize.sh -q tests/test_fuzz_ops.py tests/test_hardening_numerics.py
# PYTHON (default python3) creates the venv; build/sanitize is reused across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/build/sanitize"
venv=$dir/venv

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install -q numpy scipy-openblas32 h5py scikit-learn pytest hypothesis \
  scikit-build-core pybind11 cmake ninja

# -fno-sanitize-recover: the first UBSan report is fatal (ASan's always are).
san="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all"
# Two CPU levels, not all three (the instrumented compile is the slow part): the portable
# baseline, which the dispatcher always needs, and the one the tests will run at here.
best=baseline
grep -qw avx2 /proc/cpuinfo && best=avx2
grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && best=avx512
levels="baseline"
[ "$best" != baseline ] && levels="baseline;$best"
"$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall \
  -Cbuild-dir="$dir/cmake" \
  -Ccmake.define.FALTUNG_CPU_LEVELS="$levels" \
  -Ccmake.define.CMAKE_CXX_FLAGS="$san -fno-omit-frame-pointer -g" \
  -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$san" \
  -Ccmake.define.CMAKE_MODULE_LINKER_FLAGS="$san" \
  .

# python itself is not instrumented: the ASan runtime must be the first library loaded.
# libstdc++ too: ASan finds the real __cxa_throw at start-up, and without it there every
# C++ exception (each ValueError a binding raises) dies in "CHECK failed: real___cxa_throw".
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so.6)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# The module pytest will import must be this venv's copy, and it must be instrumented.
so=$(cd /tmp && "$venv/bin/python" -c \
  "import faltung._core as c; print(c.level_module(c.LEVEL).__file__)")
case "$so" in
  "$venv"/*) ;;
  *) echo "sanitize.sh: faltung._core loads from $so, not from $venv" >&2; exit 1 ;;
esac
imports=$(nm -D --undefined-only "$so")
for sym in __asan_report_load __ubsan_handle_; do
  if ! grep -q "$sym" <<<"$imports"; then
    echo "sanitize.sh: $so has no $sym* references: not instrumented" >&2; exit 1
  fi
done

# A deliberate report must abort: the runtime, its options and the preload work together.
g++ $san -g -shared -fPIC -o "$dir/selftest.so" tools/sanitize_selftest.cpp
for call in "signed_overflow(5)" "float_cast_overflow(ctypes.c_double(1e300))" "heap_overflow(4)"; do
  if "$venv/bin/python" -c "import ctypes; ctypes.CDLL('$dir/selftest.so').$call" 2>"$dir/selftest.err"; then
    echo "sanitize.sh: the deliberate $call did not abort" >&2; exit 1
  fi
  grep -q "runtime error\|AddressSanitizer" "$dir/selftest.err" || {
    echo "sanitize.sh: the deliberate $call failed without a sanitizer report:" >&2
    cat "$dir/selftest.err" >&2; exit 1; }
done
echo "sanitize.sh: deliberate UB and heap overflow abort; running pytest on the instrumented $so"

# --capture=sys: pytest's default fd capture would swallow a report written to fd 2 by
# the process that the report then aborts.
if [ $# -eq 0 ]; then set -- -q; fi
exec "$venv/bin/python" -m pytest -p no:cacheprovider --capture=sys "$@"
