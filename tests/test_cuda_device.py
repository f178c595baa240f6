"""faltung.device and build_info's CUDA facts: what a user without a GPU (or without a CUDA
build) is told, and what a GPU machine reports."""
import pytest

import faltung
from faltung import _device


def test_build_info_reports_cuda():
    info = faltung.build_info()
    for key in ("cuda", "cuda_version", "cuda_driver", "cuda_devices", "cuda_error", "cublas", "cublas_path",
                "cublas_version", "cublas_error"):
        assert key in info
    assert info["cublas"] == bool(info["cublas_path"]) == bool(info["cublas_version"]) != bool(info["cublas_error"])
    assert info["cuda"] == (_device._cuda_module() is not None)
    if info["cuda"]:
        assert info["cuda_version"].split(".")[0].isdigit()
        assert info["cuda_architectures"]
        assert (info["cuda_devices"] == 0) == bool(info["cuda_error"])
    else:
        assert info["cuda_devices"] == 0


def test_cpu_device_is_the_default_placement():
    with faltung.device("cpu") as d:
        assert d == "cpu"
    with faltung.device("CPU:0"):
        pass


def test_gpu_device_names_what_is_missing():
    info = _device.cuda_info()
    if info["cuda"] and info["cuda_devices"] > 0:
        with faltung.device("gpu:0") as kind:
            assert kind == "gpu" and _device.current_placement().name == "gpu:0"
        assert _device.current_placement() is None
        return
    if not info["cuda"]:
        expected = "no CUDA backend.*FALTUNG_CUDA=ON"
    elif not info["cuda_driver"]:
        expected = "no NVIDIA driver is installed"
    else:
        expected = "reports no GPU"
    for name in ("gpu:0", "gpu", "cuda:1"):
        with pytest.raises(RuntimeError, match=expected):
            with faltung.device(name):
                pass


@pytest.mark.parametrize("name", ["tpu:0", "gpu:-1", "", 0])
def test_device_rejects_bad_names(name):
    with pytest.raises(ValueError, match="device_name"):
        with faltung.device(name):
            pass


def test_device_index_beyond_the_gpus():
    info = _device.cuda_info()
    if not (info["cuda"] and info["cuda_devices"] > 0):
        pytest.skip(f"needs a GPU ({info['cuda_error']})")
    with pytest.raises(RuntimeError, match="device index"):
        _device.require_gpu(info["cuda_devices"])


class FakeCuda:
    """What faltung._cuda reports on a machine with the given driver and devices."""
    architectures = "80 90"

    def __init__(self, driver, count, error):
        self.driver, self.count, self.error = driver, count, error
        self.current = None

    def set_device(self, index):
        self.current = index

    def runtime_version(self):
        return "13.0"

    def driver_version(self):
        return self.driver

    def blas_info(self, dirs):
        return {"found": False, "path": "", "version": "", "error": "libcublas.so.13 not found"}

    def devices(self):
        return {"count": self.count, "error": self.error,
                "devices": [{"name": "Fake GPU", "compute_capability": "9.0", "memory": 1 << 34}] * self.count}


@pytest.mark.parametrize("fake,exc,match", [
    (FakeCuda("", 0, "cudaErrorInsufficientDriver: CUDA driver version is insufficient"), RuntimeError,
     "no NVIDIA driver is installed, so the CUDA runtime 13.0 finds no GPU"),
    (FakeCuda("13.0", 0, "cudaErrorNoDevice: no CUDA-capable device is detected"), RuntimeError,
     r"driver \(CUDA 13.0\) reports no GPU \(cudaErrorNoDevice"),
    (FakeCuda("13.0", 1, ""), None, None),
], ids=["no-driver", "no-device", "one-gpu"])
def test_device_messages_of_a_cuda_build(monkeypatch, fake, exc, match):
    monkeypatch.setattr(_device, "_cuda_module", lambda: fake)
    if exc is None:  # a GPU: the scope places models on it
        with faltung.device("gpu:0") as kind:
            placement = _device.current_placement()
            assert kind == "gpu" and placement.module is fake and placement.index == 0
            assert placement.dtype == "float32" and fake.current == 0
            with faltung.device("cpu"):
                assert _device.current_placement() is None
            assert _device.current_placement() is placement
        assert _device.current_placement() is None
    else:
        with pytest.raises(exc, match=match):
            with faltung.device("gpu:0"):
                pass
    info = _device.cuda_info()
    assert info["cuda"] and info["cuda_devices"] == fake.count and info["cuda_version"] == "13.0"
    assert not info["cublas"] and info["cublas_error"] == "libcublas.so.13 not found"
    if fake.count:
        assert info["cuda_device_names"] == ["Fake GPU"]
        with pytest.raises(RuntimeError, match=r"device index in \[0, 1\)"):
            _device.require_gpu(1)
