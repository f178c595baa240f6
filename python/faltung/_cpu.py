"""Which OpenBLAS kernels to ask for, decided before faltung's OpenBLAS loads.

scipy-openblas32 is built with DYNAMIC_ARCH and picks its kernels from the CPU model when it
loads (with the _core modules); OPENBLAS_CORETYPE, read then, overrides the choice, and a
user's OPENBLAS_CORETYPE always wins. faltung sets it in two cases, and removes its own value
again once OpenBLAS has loaded (`forget`: a child process would take it for a user's):

- FALTUNG_CPU caps faltung's level below what the CPU runs (faltung/_core.py): OpenBLAS gets
  the kernels a CPU of that level would get (avx2: Haswell; baseline: Nehalem, SSE only), so
  that a capped process runs what such a CPU runs, GEMMs included. (Before, the avx2 level's
  GEMMs ran OpenBLAS's AVX-512 kernels on an AVX-512 CPU, and comparing the levels compared
  only faltung's own kernels.)
- AMD's AVX-512 cores (Zen 4 / Zen 5), which OpenBLAS does not know: it falls back to its AVX2
  (Haswell) kernels, leaving half of every vector unit idle, so faltung asks for the SkylakeX
  kernels, which need exactly AVX-512 F/BW/DQ/VL (measured on an EPYC Zen 5, 2 threads, a
  4096x1024 @ 1024x512 sgemm: 110-207 GFLOP/s Haswell, 382-394 SkylakeX). Intel CPUs with
  AVX-512 are recognized by OpenBLAS itself.

The CPU's levels come from cpuid (faltung._cpuid, which does not load OpenBLAS): under an
emulator /proc/cpuinfo describes the host, and asking for kernels the emulated CPU lacks would
end the process with an illegal instruction.
"""
_AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
_CAPPED_CORE = {"avx2": "Haswell", "baseline": "Nehalem"}


def openblas_coretype(cpuinfo):
    """The OPENBLAS_CORETYPE for an uncapped CPU with this /proc/cpuinfo text, or None to leave
    the choice to OpenBLAS."""
    vendor, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    if vendor == "AuthenticAMD" and _AVX512 <= flags:
        return "SkylakeX"
    return None


def capped_coretype(cap, levels):
    """The OPENBLAS_CORETYPE for FALTUNG_CPU=cap on a CPU that runs `levels` (lowest first), or
    None when the cap does not lower the CPU's level (an unknown cap is faltung._core's error)."""
    if cap not in _CAPPED_CORE or cap not in levels or levels[-1] == cap:
        return None
    return _CAPPED_CORE[cap]


def configure(environ, levels, cpuinfo=None):
    """Set OPENBLAS_CORETYPE in environ (os.environ, before OpenBLAS loads) where faltung wants
    other kernels than OpenBLAS would pick, and return the value set (None: nothing set).
    `levels`: faltung._cpuid.levels(); `cpuinfo`: the /proc/cpuinfo text (read when needed)."""
    if "OPENBLAS_CORETYPE" in environ:
        return None
    core = capped_coretype(environ.get("FALTUNG_CPU"), levels)
    if core is None and environ.get("FALTUNG_CPU") in (None, "", "avx512") and "avx512" in levels:
        if cpuinfo is None:
            try:
                with open("/proc/cpuinfo") as f:
                    cpuinfo = f.read()
            except OSError:  # not Linux: OpenBLAS decides
                return None
        core = openblas_coretype(cpuinfo)
    if core:
        environ["OPENBLAS_CORETYPE"] = core
    return core


def forget(environ, core):
    """After OpenBLAS has loaded (it reads OPENBLAS_CORETYPE once, then): remove faltung's own
    choice `core` (configure's return value) from environ, so that child processes do not take
    it for a user's and each chooses under its own FALTUNG_CPU. A user's value stays."""
    if core is not None and environ.get("OPENBLAS_CORETYPE") == core:
        del environ["OPENBLAS_CORETYPE"]
