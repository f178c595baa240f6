// faltung._cpuid: which CPU levels this CPU runs, asked before anything loads OpenBLAS.
//
// faltung/_cpu.py must choose OpenBLAS's kernel set (OPENBLAS_CORETYPE) before OpenBLAS loads,
// and the _core_<level> modules load it: so this question lives in a module of its own that
// links neither OpenBLAS nor OpenMP. The answer comes from cpuid (the CPU's own answer, also
// under an emulator, where /proc/cpuinfo describes the host); the x86-64-v3/v4 names check the
// OS's support for the AVX / AVX-512 register state too.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_cpuid, m) {
  m.doc() = "The CPU levels (faltung._core_<level>) this CPU can run, without loading OpenBLAS.";
  m.def("levels", [] {
    py::list levels;
    levels.append("baseline");
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v3")) levels.append("avx2");
    if (__builtin_cpu_supports("x86-64-v4")) levels.append("avx512");
#endif
    return levels;
  }, "The CPU levels this CPU can run, lowest first.");
}
