"""The manylinux wheel of tools/build_wheel.sh, as a user gets it: installed with
`pip install --no-index` into a fresh venv (its dependencies numpy, h5py and scipy-openblas32
installed first, normally), where a small conv net trains and predicts; then the same installed
wheel imports and predicts under an emulated CPU without AVX (qemu-x86_64 -cpu Nehalem) and
must agree with the host's predictions.

Building the wheel takes minutes, so these tests run only when FALTUNG_WHEEL names it:
    FALTUNG_WHEEL=$(tools/build_wheel.sh) python -m pytest -q tests/test_wheel.py
(.ci/run does this as its own stage).
"""
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

WHEEL = os.environ.get("FALTUNG_WHEEL", "")
pytestmark = pytest.mark.skipif(not WHEEL, reason="FALTUNG_WHEEL is not set: build the wheel with "
                                                  "tools/build_wheel.sh and set it to the wheel's path")

# argv: fit|predict, a working directory. "fit" trains 3 epochs, saves the weights and the
# predictions; "predict" loads the weights and saves its predictions. Prints what it checks.
SCRIPT = """
import os, sys
import numpy as np
import faltung as keras
from faltung import layers

mode, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 8, 8, 1)).astype("float32")
y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("int32")  # top brighter
keras.utils.set_random_seed(0)
model = keras.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3, padding="same", activation="relu"),
                          layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(2, activation="softmax")])
if mode == "fit":
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    loss = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    print("loss", *loss)
    model.save_weights(os.path.join(out, "model.weights.h5"))
else:
    model.load_weights(os.path.join(out, "model.weights.h5"))
np.save(os.path.join(out, f"{mode}.npy"), model.predict(x, verbose=0))
print("faltung", os.path.dirname(keras.__file__))
print("level", keras.build_info()["cpu_level"])
print("blas", keras.build_info()["blas_core"])
"""


def _fields(stdout):
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line.strip()}


def test_wheel_is_manylinux_2_28_and_holds_every_level():
    assert "manylinux_2_28_x86_64" in os.path.basename(WHEEL)
    names = zipfile.ZipFile(WHEEL).namelist()
    for level in ("baseline", "avx2", "avx512"):
        assert any(n.startswith(f"faltung/_core_{level}.") and n.endswith(".so") for n in names), level
    assert any(n.startswith("faltung/_cpuid.") and n.endswith(".so") for n in names)
    assert any(n.startswith("faltung.libs/libgomp") for n in names)      # grafted
    assert not any("openblas" in n for n in names)                       # from scipy-openblas32
    assert not any(n.startswith("faltung/_cuda") for n in names)         # CPU-only, test-free


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel_venv")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = str(root / "venv" / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["numpy", "h5py", "scipy-openblas32"], check=True)
    subprocess.run(pip + ["--no-index", "--find-links", os.path.dirname(WHEEL), WHEEL], check=True)
    return python, root


def test_installed_wheel_fits_and_predicts(venv):
    python, root = venv
    p = subprocess.run([python, "-c", SCRIPT, "fit", str(root)], cwd=root, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = _fields(p.stdout)
    assert out["faltung"][0].startswith(str(root / "venv")), out["faltung"]  # not the source tree
    loss = [float(v) for v in out["loss"]]
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0], loss
    pred = np.load(root / "fit.npy")
    assert pred.shape == (96, 2) and np.allclose(pred.sum(axis=1), 1, atol=1e-5)


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-x86_64 (Debian qemu-user) is not installed")
def test_installed_wheel_predicts_on_a_cpu_without_avx(venv):
    python, root = venv
    if not (root / "fit.npy").exists():
        pytest.skip("needs test_installed_wheel_fits_and_predicts's weights")
    env = {k: v for k, v in os.environ.items() if k not in ("FALTUNG_CPU", "LD_PRELOAD", "OPENBLAS_CORETYPE")}
    env.update(OMP_NUM_THREADS="1")
    # The venv's python is a symlink to an ELF binary, which qemu-user runs (a shell-script
    # shim like pyenv's would not be).
    p = subprocess.run(["qemu-x86_64", "-cpu", "Nehalem", python, "-c", SCRIPT, "predict", str(root)],
                       cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _fields(p.stdout)["level"] == ["baseline"]
    assert _fields(p.stdout)["blas"] == ["Nehalem"]  # OpenBLAS's own choice, not the host's
    np.testing.assert_allclose(np.load(root / "predict.npy"), np.load(root / "fit.npy"), rtol=1e-4, atol=1e-5)
