"""faltung/_malloc.py: at import, glibc's malloc keeps a training step's freed arrays in the
heap (no fresh pages, no page faults, in the next step), unless the user configured malloc
or turned it off. Each case runs in a fresh interpreter, because the settings are process-wide
and applied once."""
import ctypes
import os
import subprocess
import sys

import pytest

from faltung import _malloc

try:
    ctypes.CDLL(None).gnu_get_libc_version
    GLIBC = True
except (OSError, AttributeError):
    GLIBC = False
# under tools/sanitize.sh the children inherit ASan's runtime, whose malloc ignores mallopt
REPLACED = _malloc.preloaded_allocator(os.environ)
needs_glibc_malloc = pytest.mark.skipif(not GLIBC or REPLACED is not None,
                                        reason=f"glibc's malloc is not in use ({REPLACED or 'not glibc'})")

# A step's pattern: six 12 MB arrays alive at once (written, as activations are), then freed.
# Prints the status and the page faults of steps 3-6 (the first steps may fault everywhere).
CHILD = r"""
import os, resource, numpy as np, faltung
from faltung import _malloc
def step():
    n = int(os.environ.get("ARRAY_MB", "12")) << 18
    arrays = [np.ones(n, np.float32) for _ in range(int(os.environ.get("STEP_ARRAYS", "6")))]
    del arrays
for i in range(2):
    step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(4):
    step()
print(_malloc.status()[1], faltung.build_info()["malloc_tuning"],
      resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def run_child(**env):
    full = {k: v for k, v in os.environ.items()
            if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "FALTUNG_MALLOC_TUNING"))}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", CHILD], env=full, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return out[0], out[1], int(out[2])


@needs_glibc_malloc
def test_applied_by_default_and_steps_stop_faulting():
    status, info, faults = run_child()
    assert status == info == "applied"
    assert faults < 1000, faults  # measured: 0


@needs_glibc_malloc
@needs_glibc_malloc
def test_a_step_peaking_above_256_mb_is_not_trimmed_back():
    """40 arrays of 12 MB (480 MB at the step's peak): a 256 MB trim threshold gave the heap
    back at the end of every step (a DenseNet block's training step: ~18,000 faults per step)."""
    status, info, faults = run_child(STEP_ARRAYS="40")
    assert status == "applied" and info == "applied"
    assert faults < 1000, faults  # measured: 0; with 256 MB: 45,368


@needs_glibc_malloc
def test_arrays_above_glibcs_largest_mmap_threshold_stop_faulting():
    """40 MB arrays (above the 32 MB that M_MMAP_THRESHOLD allows): glibc maps each one
    freshly unless M_MMAP_MAX is 0 (a 33.5 MB SeparableConv2D output: forward 17.4 -> 6.7-8.8 ms)."""
    status, info, faults = run_child(ARRAY_MB="40", STEP_ARRAYS="3")
    assert status == info == "applied"
    assert faults < 1000, faults  # measured: 0
    status, info, faults = run_child(ARRAY_MB="40", STEP_ARRAYS="3", FALTUNG_MALLOC_TUNING="0")
    assert faults > 2000, faults  # measured: 4,340 and 6,384 in two runs


def test_turned_off_steps_fault_again():
    status, info, faults = run_child(FALTUNG_MALLOC_TUNING="0")
    assert status == info == "FALTUNG_MALLOC_TUNING=0"
    # what the settings prevent: glibc trims the freed top of the heap after every step, and the
    # next step touches fresh pages (measured: 12,280 faults in 4 steps, one 12 MB array each)
    assert faults > 6000, faults


@pytest.mark.parametrize("env, reason", [
    ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, "the user's MALLOC_TRIM_THRESHOLD_"),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, "the user's GLIBC_TUNABLES"),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "a preloaded jemalloc"),
    ({"LD_PRELOAD": "/usr/lib/gcc/x86_64-linux-gnu/12/libasan.so"}, "a preloaded libasan"),
    ({"FALTUNG_MALLOC_TUNING": "0"}, "FALTUNG_MALLOC_TUNING=0"),
])
def test_the_users_malloc_settings_win(env, reason):
    assert _malloc._skip_reason(env) == reason
