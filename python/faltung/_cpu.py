"""Which OpenBLAS kernels to ask for, decided before faltung's OpenBLAS loads.

scipy-openblas32 is built with DYNAMIC_ARCH and picks its kernels from the CPU model; it does
not know AMD's AVX-512 cores (Zen 4 / Zen 5) and falls back to its AVX2 (Haswell) kernels,
leaving half of every vector unit idle. On such a CPU faltung asks for the SkylakeX kernels,
which need exactly AVX-512 F/BW/DQ/VL (measured on an EPYC Zen 5, 2 threads, a 4096x1024 @
1024x512 sgemm: 110-207 GFLOP/s Haswell, 382-394 SkylakeX). Intel CPUs with AVX-512 are
recognized by OpenBLAS itself, and a user's OPENBLAS_CORETYPE always wins (the shared
development machines preset OPENBLAS_CORETYPE=Haswell for older OpenBLAS builds, so there this
changes nothing; the test suite passes with SkylakeX kernels too).
"""
_AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}


def openblas_coretype(cpuinfo):
    """The OPENBLAS_CORETYPE to set for a /proc/cpuinfo text, or None to leave it alone."""
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


def configure(environ):
    if "OPENBLAS_CORETYPE" in environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            core = openblas_coretype(f.read())
    except OSError:  # not Linux: OpenBLAS decides
        return
    if core:
        environ["OPENBLAS_CORETYPE"] = core
