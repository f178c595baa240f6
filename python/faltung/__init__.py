"""faltung: a deep-learning library with a C++ core and a Keras 3 API.

    import faltung as keras        # Keras code runs after changing only this import
"""
import os

# OpenMP idle threads: libgomp's default spins ~300,000 iterations before sleeping, which on a
# 2-core machine shared with another job takes the core that job needs (measured: CIFAR
# training step 226 ms by default vs 195 ms with a short spin, next to one busy process).
# A short spin keeps back-to-back kernels as fast as before on a quiet machine (93 ms both),
# while a fully passive policy costs ~10% there. Read once, when libgomp loads with _core;
# a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from faltung import _cpu, _cpuid, _malloc  # noqa: E402

_malloc.configure(os.environ)  # keep a training step's freed arrays in the heap (see _malloc)

_blas_core = _cpu.configure(os.environ, _cpuid.levels())  # OpenBLAS's kernels: FALTUNG_CPU's cap, AMD's AVX-512

from faltung._core import build_info, get_num_threads, release_workspaces, set_num_threads  # noqa: E402

_cpu.forget(os.environ, _blas_core)  # OpenBLAS has read it; child processes choose their own

from faltung._device import device  # noqa: E402

__version__ = "0.1.0"

from faltung import backend, utils, initializers, activations, ops, layers  # noqa: E402
from faltung import losses, optimizers, metrics, regularizers, constraints, datasets  # noqa: E402
from faltung import models, callbacks, saving, applications, preprocessing, distribution  # noqa: E402
from faltung.models import Sequential, Model, load_model  # noqa: E402
from faltung.layers import Input  # noqa: E402
