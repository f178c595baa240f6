"""faltung's C++ core at the best CPU level this CPU runs (`from faltung import _core`).

The core is built once per CPU level (CMakeLists.txt) as faltung._core_<level>:
baseline (any x86-64 CPU, or the one module of a non-x86 build), avx2 (x86-64-v3) and
avx512 (x86-64-v4). At import this module asks faltung._cpuid, which runs on any CPU, which
levels the CPU supports (cpuid: right under an emulator too, where /proc/cpuinfo describes the
host), imports the highest one that was built, and re-exports its functions, so
`_core.conv2d_forward(...)` is the chosen level's kernel. The environment variable
FALTUNG_CPU=baseline|avx2|avx512 caps the level (for tests and benchmarks); set before faltung
is imported, it caps OpenBLAS's kernels too (faltung/_cpu.py).
"""
import importlib
import importlib.util
import os

LEVELS = ("baseline", "avx2", "avx512")  # lowest first

from faltung import _cpuid

SUPPORTED = tuple(_cpuid.levels())  # what this CPU can run
AVAILABLE = tuple(lv for lv in LEVELS if lv == "baseline"
                  or importlib.util.find_spec(f"faltung._core_{lv}") is not None)  # what was built


def usable_levels():
    """The levels both built and supported by this CPU, lowest first."""
    return tuple(lv for lv in AVAILABLE if lv in SUPPORTED)


def _capped_level(cap):
    usable = usable_levels()
    if cap is None or cap == "":
        return usable[-1]
    if cap not in LEVELS:
        raise ValueError(f"FALTUNG_CPU: expected one of {', '.join(LEVELS)}, received {cap!r}")
    return [lv for lv in usable if LEVELS.index(lv) <= LEVELS.index(cap)][-1]


def level_module(level):
    """The extension module faltung._core_<level> (ValueError if this CPU cannot run it or
    it was not built)."""
    if level not in usable_levels():
        raise ValueError(f"faltung._core: expected a CPU level of {', '.join(usable_levels())} "
                         f"(built: {', '.join(AVAILABLE)}; this CPU: {', '.join(SUPPORTED)}), "
                         f"received {level!r}")
    return importlib.import_module(f"faltung._core_{level}")


_exported = []


def use_level(level):
    """Re-export the kernels of `level` from this module (the import does this once, with the
    best level allowed by FALTUNG_CPU). Code that calls `_core.<kernel>` picks up the change;
    names bound earlier with `from faltung._core import ...` keep their level."""
    global LEVEL
    mod = level_module(level)
    names = [k for k in vars(mod) if not k.startswith("__") and k != "build_info"]
    for k in _exported:
        globals().pop(k, None)
    globals().update({k: getattr(mod, k) for k in names})
    _exported[:] = names
    LEVEL = level


def build_info():
    """The build's facts (version, OpenMP, CUDA, BLAS), the CPU level in use (`cpu_level`),
    whether faltung's malloc settings are in force (`malloc_tuning`),
    the levels built (`cpu_levels_available`) and the levels this CPU runs (`cpu_levels_supported`).
    The CUDA facts (cuda, cuda_version, cuda_devices, ...) come from faltung._device.cuda_info()."""
    from faltung import _device

    d = level_module(LEVEL).build_info()
    d.update(_device.cuda_info())
    d["cpu_levels_available"] = list(AVAILABLE)
    d["cpu_levels_supported"] = list(SUPPORTED)
    from faltung import _malloc
    d["malloc_tuning"] = _malloc.status()[1]  # "applied", or why not (faltung/_malloc.py)
    return d


LEVEL = None
use_level(_capped_level(os.environ.get("FALTUNG_CPU")))
