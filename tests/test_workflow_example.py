"""examples/workflow_fashion_mnist.py runs end to end on a tiny slice of Fashion-MNIST, and
(with Keras 3 present) the .keras file it saves loads in Keras with the same predictions."""
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import faltung

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "workflow_fashion_mnist.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    try:
        faltung.datasets.fashion_mnist.load_data(download=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
    out = tmp_path_factory.mktemp("workflow")
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--epochs", "2", "--fine-tune-epochs", "1",
         "--train-samples", "300", "--test-samples", "64", "--batch-size", "32",
         "--out-dir", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_example_runs_and_writes_its_files(run):
    out, stdout = run
    assert "precision    recall  f1-score   support" in stdout
    assert "same as before saving: True" in stdout
    assert "after fine-tuning: test loss" in stdout
    for name in ("fashion_mnist_cnn.keras", "fashion_mnist_cnn_finetuned.keras"):
        assert (out / name).stat().st_size > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "skipping the history plot" in stdout
    else:
        for name in ("history.png", "feature_maps_conv1.png", "feature_maps_conv2.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_model_predicts_the_same_in_keras(run):
    keras = pytest.importorskip("keras")
    out, _ = run
    x = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    for name in ("fashion_mnist_cnn.keras", "fashion_mnist_cnn_finetuned.keras"):
        ours = faltung.models.load_model(out / name)
        theirs = keras.models.load_model(out / name)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs.predict(x, verbose=0)),
                                   ours.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
        assert [layer.trainable for layer in theirs.layers] == [layer.trainable for layer in ours.layers]


def test_saved_files_get_the_permissions_open_would_give(tmp_path):
    # the atomic save goes through a 0600 temporary file; the result must not stay private
    model = faltung.Sequential([faltung.layers.Input((3,)), faltung.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    with open(tmp_path / "plain", "w"):
        pass
    plain = (tmp_path / "plain").stat().st_mode & 0o777
    assert (tmp_path / "m.keras").stat().st_mode & 0o777 == plain
    assert (tmp_path / "m.weights.h5").stat().st_mode & 0o777 == plain
