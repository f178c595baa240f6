"""MNIST (Keras's `keras.datasets.mnist`): 28x28 grayscale handwritten digits, 60000
training and 10000 test samples.

Read from the four IDX files (gzipped or not) or Keras's `mnist.npz` (loaded with
allow_pickle=False) found in $FALTUNG_DATA/mnist/, $FALTUNG_DATA/,
~/.faltung/datasets/mnist/, ~/.keras/datasets/mnist/ (and ~/.keras/datasets/mnist.npz) or
/usr/share/datasets/mnist/; otherwise Keras's mnist.npz is downloaded when a network is
reachable. Debian has no MNIST package (only dataset-fashion-mnist).
"""
import os

import numpy as np

from faltung.datasets import _idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
SYSTEM_DIRS = ("/usr/share/datasets/mnist",)
HINT = ("Put the four MNIST IDX files (gzipped or not) or Keras's mnist.npz in "
        "$FALTUNG_DATA/mnist/ and set FALTUNG_DATA (Debian has no MNIST package; "
        "`apt-get install dataset-fashion-mnist` gives Fashion-MNIST, same format).")


def _read_npz(path, expect_full=False):
    try:
        with np.load(path, allow_pickle=False) as f:
            parts = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a valid mnist.npz ({e})") from None
    x_train, y_train, x_test, y_test = parts
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if x.ndim != 3 or x.dtype != np.uint8 or y.shape != x.shape[:1] or y.dtype != np.uint8:
            raise ValueError(f"{path}: expected uint8 images (N, 28, 28) and uint8 labels (N,), "
                             f"found {x.dtype}{x.shape} and {y.dtype}{y.shape}")
    if expect_full and (x_train.shape != (60000, 28, 28) or x_test.shape != (10000, 28, 28)):
        raise ValueError(f"{path}: expected 60000 + 10000 images of 28x28, found "
                         f"{x_train.shape} and {x_test.shape}")
    return (x_train, y_train), (x_test, y_test)


def load_data(download=True):
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 images (N, 28, 28), uint8
    labels (N,). FileNotFoundError with instructions when absent, ValueError when corrupt.
    `download` is faltung's addition."""
    dirs = _idx.search_dirs("mnist", SYSTEM_DIRS)
    if _idx.find_set(dirs, FILES) is not None:
        return _idx.load_idx_set("MNIST", "mnist", None, FILES, SYSTEM_DIRS, False, HINT)
    npz_dirs = dirs + [os.path.join(os.path.expanduser("~"), ".keras", "datasets")]
    for d in npz_dirs:
        p = os.path.join(d, "mnist.npz")
        if os.path.isfile(p):
            return _read_npz(p)
    error = None
    if download:
        dest = os.path.join(_idx.cache_dir("mnist"), "mnist.npz")
        try:
            _idx.download(NPZ_URL, dest, verify=lambda p: _read_npz(p, expect_full=True))
            return _read_npz(dest)
        except (OSError, ValueError) as e:
            error = e
    looked = "\n  ".join(npz_dirs)
    why = f"\nDownload failed: {error}" if error else ""
    raise FileNotFoundError(f"MNIST not found. Looked for {', '.join(f + '[.gz]' for f in FILES)} "
                            f"or mnist.npz in:\n  {looked}\n{HINT}{why}")
