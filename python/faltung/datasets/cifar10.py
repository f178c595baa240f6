"""CIFAR-10 (Keras's `keras.datasets.cifar10`): 32x32 RGB images of 10 classes, 50000
training and 10000 test samples.

faltung reads only the BINARY version (`cifar-10-batches-bin`: data_batch_1.bin ..
data_batch_5.bin, test_batch.bin; each record = 1 label byte + 3072 bytes of R, G, B
planes, row-major). The "python version" that Keras downloads is pickled, and faltung
never unpickles (loading a file must not execute code).

Searched in $FALTUNG_DATA/cifar10/, $FALTUNG_DATA/, ~/.faltung/datasets/cifar10/,
~/.keras/datasets/, each directly or in a `cifar-10-batches-bin` subdirectory; otherwise
the binary tarball is downloaded from the dataset's home when a network is reachable.
"""
import os
import tarfile

import numpy as np

from faltung.datasets import _idx

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
RECORD = 1 + 32 * 32 * 3
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck")
HINT = ("Download the binary version (cifar-10-binary.tar.gz) and extract it so that "
        "$FALTUNG_DATA/cifar10/cifar-10-batches-bin/ holds data_batch_1.bin .. "
        "data_batch_5.bin and test_batch.bin, then set FALTUNG_DATA. The pickled python "
        "version is not supported.")


def read_batch(path):
    """One binary batch file -> images (N, 32, 32, 3) uint8, labels (N,) uint8."""
    size = os.path.getsize(path)
    if size == 0 or size % RECORD:
        raise ValueError(f"{path}: size {size} is not a multiple of the CIFAR-10 record size "
                         f"{RECORD} (1 label byte + 3072 pixel bytes)")
    raw = np.fromfile(path, np.uint8).reshape(-1, RECORD)
    labels = raw[:, 0].copy()
    if labels.max() > 9:
        raise ValueError(f"{path}: labels must be in 0..9, found {int(labels.max())}")
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return images, labels


def _dirs():
    out = []
    for d in _idx.search_dirs("cifar10") + [os.path.join(os.path.expanduser("~"), ".keras", "datasets")]:
        out += [os.path.join(d, "cifar-10-batches-bin"), d]
    return out


def _find():
    for d in _dirs():
        paths = [os.path.join(d, f) for f in TRAIN_FILES + TEST_FILES]
        if all(os.path.isfile(p) for p in paths):
            return paths
    return None


def _download():
    target = os.path.join(_idx.cache_dir("cifar10"), "cifar-10-batches-bin")
    tar_path = os.path.join(_idx.cache_dir("cifar10"), "cifar-10-binary.tar.gz")
    if not os.path.isfile(tar_path):
        _idx.download(URL, tar_path, timeout=10.0)
    wanted = set(TRAIN_FILES + TEST_FILES)
    os.makedirs(target, exist_ok=True)
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if member.isfile() and base in wanted:  # only plain files with known names
                data = tar.extractfile(member).read()
                tmp = os.path.join(target, base + ".part")
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, os.path.join(target, base))
    return [os.path.join(target, f) for f in TRAIN_FILES + TEST_FILES]


def load_data(download=True):
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 images (N, 32, 32, 3) and uint8
    labels (N, 1), as Keras. `download` is faltung's addition."""
    paths = _find()
    error = None
    if paths is None and download:
        try:
            paths = _download()
        except (OSError, ValueError, tarfile.TarError) as e:
            error = e
    if paths is None:
        looked = "\n  ".join(_dirs())
        why = f"\nDownload failed: {error}" if error else ""
        raise FileNotFoundError(f"CIFAR-10 (binary version) not found. Looked for "
                                f"{', '.join(TRAIN_FILES + TEST_FILES)} in:\n  {looked}\n{HINT}{why}")
    train = [read_batch(p) for p in paths[:5]]
    x_test, y_test = read_batch(paths[5])
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train.reshape(-1, 1)), (x_test, y_test.reshape(-1, 1))
