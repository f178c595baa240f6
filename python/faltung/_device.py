"""Devices: what the CUDA backend of this build can reach, and `faltung.device`.

faltung._cuda exists only in a build made with -DFALTUNG_CUDA=ON (pip install
-Ccmake.define.FALTUNG_CUDA=ON .); it links the CUDA runtime statically, so it imports on a
machine without a driver or a GPU and says which is missing. This slice of issue 14 has the
kernel families and their tests, not yet models whose weights live in device memory, so
`faltung.device("gpu:0")` explains what is missing, and with everything present says that
device-resident models are not implemented yet, instead of silently training on the CPU.
"""
import contextlib
import importlib
import re


def _cuda_module():
    """faltung._cuda, or None in a CPU-only build."""
    try:
        return importlib.import_module("faltung._cuda")
    except ImportError:
        return None


def cuda_info():
    """The CUDA facts build_info() reports: cuda (compiled in), cuda_version (the runtime
    linked in), cuda_driver (the CUDA version the driver supports, "" without a driver),
    cuda_architectures (the SM versions compiled), cuda_devices (how many GPUs the runtime
    sees), cuda_device_names, and cuda_error (why it sees none, "" otherwise)."""
    mod = _cuda_module()
    if mod is None:
        return {"cuda": False, "cuda_version": "", "cuda_driver": "", "cuda_architectures": "",
                "cuda_devices": 0, "cuda_device_names": [], "cuda_error": "built without CUDA"}
    devs = mod.devices()
    return {"cuda": True, "cuda_version": mod.runtime_version(), "cuda_driver": mod.driver_version(),
            "cuda_architectures": mod.architectures, "cuda_devices": devs["count"],
            "cuda_device_names": [d["name"] for d in devs["devices"]], "cuda_error": devs["error"]}


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


@contextlib.contextmanager
def device(device_name):
    """Context manager placing what is built inside it on a device, as `keras.device`.

    "cpu" / "cpu:0" is the default placement and changes nothing. "gpu:N" / "cuda:N" checks
    that this build has CUDA and that GPU N exists, raising RuntimeError naming what is
    missing; device-resident models are not implemented yet (issue 14), so with a GPU present
    it raises NotImplementedError rather than train on the CPU behind the user's back.
    """
    kind, index = _parse(device_name)
    if kind == "gpu":
        require_gpu(index)
        raise NotImplementedError(
            f"faltung.device({device_name!r}): GPU {index} is present, but models whose weights "
            "live in device memory are not implemented yet (issue 14); the CUDA kernels are "
            "reachable for testing through faltung._cuda")
    yield kind
