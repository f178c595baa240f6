"""Devices: what the CUDA backend of this build can reach, and `faltung.device`.

faltung._cuda exists only in a build made with -DFALTUNG_CUDA=ON (pip install
-Ccmake.define.FALTUNG_CUDA=ON .); it links the CUDA runtime statically, so it imports on a
machine without a driver or a GPU and says which is missing.

`with faltung.device("gpu:0"):` places what is built inside it on GPU 0, as `keras.device`:
a model (Sequential or functional) built there keeps its weights, optimizer slots and
activations in device memory (faltung.models.resident: its supported layers, losses and
optimizers); `fit` copies
each batch in once and only the loss (and what compiled metrics read) out; `predict` returns
numpy; `get_weights`/`save` copy to the host. Asking for a GPU where none is raises
RuntimeError naming what is missing (the CUDA build, the driver, a device).

The same path runs on any machine with the test harness faltung._cuda_host (the CUDA kernel
bodies over their whole grid on the CPU, host memory standing in for device memory):
`_harness_device()` (test-only, private) selects it, so that tests hold device-resident
training to the ordinary CPU fit without a GPU.
"""
import contextlib
import importlib
import os
import re
import sys
import threading

import numpy as np

_current = threading.local()  # .placement: the Placement of the innermost device() scope


def _cuda_module():
    """faltung._cuda, or None in a CPU-only build. Opens cuBLAS on first use (cublas_dirs())."""
    try:
        mod = importlib.import_module("faltung._cuda")
    except ImportError:
        return None
    mod.blas_info(cublas_dirs())  # the process's cuBLAS: opened by the first call, then reported
    return mod


def cublas_dirs():
    """Where NVIDIA's cuBLAS wheel (nvidia-cublas) puts libcublas.so.13 under each sys.path entry
    (nvidia/cu13/lib; nvidia/cublas/lib in its older layout): the directories cpp/cuda/blas.hpp
    searches after $FALTUNG_CUBLAS and before the system loader."""
    dirs = []
    for entry in sys.path:
        for sub in (("nvidia", "cu13", "lib"), ("nvidia", "cublas", "lib")):
            d = os.path.join(entry or os.getcwd(), *sub)
            if os.path.isdir(d) and d not in dirs:
                dirs.append(d)
    return dirs


def cuda_info():
    """The CUDA facts build_info() reports: cuda (compiled in), cuda_version (the runtime
    linked in), cuda_driver (the CUDA version the driver supports, "" without a driver),
    cuda_architectures (the SM versions compiled), cuda_devices (how many GPUs the runtime
    sees), cuda_device_names, and cuda_error (why it sees none, "" otherwise); cublas (whether
    the device GEMMs run on cuBLAS, opened at run time: cpp/cuda/blas.hpp), cublas_path,
    cublas_version and cublas_error (why not, "" otherwise)."""
    mod = _cuda_module()
    if mod is None:
        return {"cuda": False, "cuda_version": "", "cuda_driver": "", "cuda_architectures": "",
                "cuda_devices": 0, "cuda_device_names": [], "cuda_error": "built without CUDA",
                "cublas": False, "cublas_path": "", "cublas_version": "", "cublas_error": "built without CUDA"}
    devs = mod.devices()
    blas = mod.blas_info(cublas_dirs())
    return {"cuda": True, "cuda_version": mod.runtime_version(), "cuda_driver": mod.driver_version(),
            "cuda_architectures": mod.architectures, "cuda_devices": devs["count"],
            "cuda_device_names": [d["name"] for d in devs["devices"]], "cuda_error": devs["error"],
            "cublas": blas["found"], "cublas_path": blas["path"], "cublas_version": blas["version"],
            "cublas_error": blas["error"]}


def _parse(device_name):
    """("cpu" | "gpu", index) from Keras's names: "cpu", "cpu:0", "gpu", "gpu:1", "cuda:1"."""
    if not isinstance(device_name, str):
        raise ValueError("Invalid value for argument `device_name`. Expected a string like "
                         f"'gpu:0' or 'cpu'. Received: device_name={device_name!r}")
    m = re.fullmatch(r"(cpu|gpu|cuda)(?::(\d+))?", device_name.strip().lower())
    if m is None:
        raise ValueError("Invalid value for argument `device_name`. Expected 'cpu', 'cpu:0', "
                         f"'gpu', 'gpu:N' or 'cuda:N'. Received: device_name={device_name!r}")
    kind = "cpu" if m.group(1) == "cpu" else "gpu"
    return kind, int(m.group(2) or 0)


def require_gpu(index=0):
    """Raise RuntimeError naming what is missing for GPU `index`: the CUDA build, the driver,
    a device, or that device. Returns the runtime's device list when the GPU exists."""
    mod = _cuda_module()
    if mod is None:
        raise RuntimeError(
            f"gpu:{index}: this faltung build has no CUDA backend (faltung._cuda is missing); "
            "build it with pip install -Ccmake.define.FALTUNG_CUDA=ON (needs the CUDA toolkit's nvcc)")
    devs = mod.devices()
    if devs["count"] == 0:
        driver = mod.driver_version()
        why = devs["error"] or "no device"
        if not driver:
            raise RuntimeError(f"gpu:{index}: no NVIDIA driver is installed, so the CUDA runtime "
                               f"{mod.runtime_version()} finds no GPU ({why})")
        raise RuntimeError(f"gpu:{index}: the NVIDIA driver (CUDA {driver}) reports no GPU ({why})")
    if index >= devs["count"]:
        raise RuntimeError(f"gpu:{index}: expected a device index in [0, {devs['count']}), "
                           f"this machine has {devs['count']} GPU(s)")
    return devs["devices"]


class Placement:
    """Where a model built inside a device scope lives: `module` (faltung._cuda or the test
    harness faltung._cuda_host, each with `DeviceArray` and the `resident` entry points), the
    device `index`, the float `dtype` (float32; float64 only through `_harness_device`) and
    the `name` error messages use."""

    def __init__(self, module, index, dtype, name):
        self.module, self.index, self.dtype, self.name = module, index, np.dtype(dtype), name

    def __repr__(self):
        return f"<Placement {self.name} {self.dtype}>"


def current_placement():
    """The Placement of the innermost `device("gpu:N")` / `_harness_device()` scope, or None
    (the CPU)."""
    return getattr(_current, "placement", None)


@contextlib.contextmanager
def _placed(placement):
    prev = current_placement()
    _current.placement = placement
    try:
        yield
    finally:
        _current.placement = prev


@contextlib.contextmanager
def device(device_name):
    """Context manager placing what is built inside it on a device, as `keras.device`.

    "cpu" / "cpu:0" is the default placement and changes nothing. "gpu:N" / "cuda:N" checks
    that this build has CUDA and that GPU N exists (RuntimeError naming what is missing), makes
    N the current CUDA device, and builds the models inside the scope device-resident
    (faltung.models.resident); a layer, loss or optimizer that path does not support raises
    NotImplementedError naming it, never training on the CPU behind the user's back. The
    model stays on the device after the scope ends.

    Example:
        >>> with faltung.device("gpu:0"):                            # doctest: +SKIP
        ...     model = Sequential([Input((784,)), Dense(10)])
        >>> model.compile("adam", SparseCategoricalCrossentropy(from_logits=True))
        >>> model.fit(x, y)  # on GPU 0
    """
    kind, index = _parse(device_name)
    if kind == "cpu":
        with _placed(None):
            yield kind
        return
    require_gpu(index)
    mod = _cuda_module()
    mod.set_device(index)
    with _placed(Placement(mod, index, np.float32, f"gpu:{index}")):
        yield kind


@contextlib.contextmanager
def _harness_device(dtype="float32"):
    """Test-only: device-resident models on faltung._cuda_host, the CUDA kernel bodies run on
    the CPU over their whole grid, with host memory as the device's. `dtype` float64 makes the
    device copies float64 (the host weights stay float32; read the float64 values with
    `model._resident.get_weights()`), for comparisons to tight tolerances."""
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"_harness_device: expected dtype float32 or float64, received {dtype!r}")
    mod = importlib.import_module("faltung._cuda_host")
    with _placed(Placement(mod, 0, dtype, "cuda_host:0")):
        yield "gpu"
