import gzip
import os

import numpy as np
import pytest

from faltung.datasets import _idx, cifar10, fashion_mnist, mnist

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FILES = fashion_mnist.FILES


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """Empty FALTUNG_DATA and HOME, no system directories."""
    monkeypatch.setenv("FALTUNG_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", ())
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def write_tiny_set(directory, n_train=6, n_test=4, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_test, dtype=np.uint8)]
    for name, arr in zip(FILES, arrays):
        _idx.write_idx(directory / (name + (".gz" if gz else "")), arr)
    return arrays


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.delenv("FALTUNG_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(download=False)
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert y_train.min() == 0 and y_train.max() == 9
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert x_train.max() == 255 and x_train.flags.writeable


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
@pytest.mark.parametrize("where", ["name-subdir", "root"])
def test_tiny_idx_set_from_faltung_data(data_root, gz, where):
    directory = data_root / "fashion-mnist" if where == "name-subdir" else data_root
    arrays = write_tiny_set(directory, gz=gz)
    loaded = fashion_mnist.load_data(download=False)
    for got, want in zip([a for pair in loaded for a in pair], arrays):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.uint8


def test_mnist_from_idx_and_npz(data_root):
    arrays = write_tiny_set(data_root / "mnist")
    (x, y), _ = mnist.load_data(download=False)
    np.testing.assert_array_equal(x, arrays[0])
    for f in FILES:
        os.remove(data_root / "mnist" / (f + ".gz"))
    np.savez(data_root / "mnist" / "mnist.npz", x_train=arrays[0], y_train=arrays[1],
             x_test=arrays[2], y_test=arrays[3])
    (x, y), (xt, yt) = mnist.load_data(download=False)
    np.testing.assert_array_equal(yt, arrays[3])


def test_idx_roundtrip_other_dtypes(tmp_path):
    for arr in (np.arange(12, dtype=np.int32).reshape(3, 4) - 5, np.linspace(0, 1, 5).astype(np.float32)):
        _idx.write_idx(tmp_path / "a.idx", arr)
        got = _idx.read_idx(tmp_path / "a.idx")
        assert got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)


def test_corrupt_files_raise(data_root, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "magic").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="bad magic number"):
        _idx.read_idx(bad / "magic")
    (bad / "short").write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 7)
    with pytest.raises(ValueError, match=r"shape \(10,\) \(10 bytes of data\), file holds 7 bytes"):
        _idx.read_idx(bad / "short")
    payload = bytes([0, 0, 8, 1]) + (4000).to_bytes(4, "big") + np.random.default_rng(0).bytes(4000)
    (bad / "trunc.gz").write_bytes(gzip.compress(payload)[:1000])
    with pytest.raises(ValueError, match="not a readable IDX file"):
        _idx.read_idx(bad / "trunc.gz")
    arrays = write_tiny_set(data_root / "fashion-mnist")
    _idx.write_idx(data_root / "fashion-mnist" / (FILES[1] + ".gz"), arrays[1][:5])
    with pytest.raises(ValueError, match="expected 6 uint8 labels"):
        fashion_mnist.load_data(download=False)


def test_missing_data_message(data_root):
    with pytest.raises(FileNotFoundError, match=r"(?s)Fashion-MNIST not found.*apt-get install dataset-fashion-mnist.*FALTUNG_DATA"):
        fashion_mnist.load_data(download=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)MNIST not found.*FALTUNG_DATA"):
        mnist.load_data(download=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)CIFAR-10 \(binary version\) not found.*pickled python version is not supported"):
        cifar10.load_data(download=False)


def test_download_is_atomic_and_verified(tmp_path):
    src = tmp_path / "src.gz"
    _idx.write_idx(src, np.zeros((3, 28, 28), np.uint8))
    dest = tmp_path / "cache" / "x.gz"
    _idx.download(src.as_uri(), str(dest), verify=lambda p: _idx._check_shape(p, (3, 28, 28)))
    assert _idx.read_idx(dest).shape == (3, 28, 28)
    other = tmp_path / "cache" / "y.gz"
    with pytest.raises(ValueError, match=r"expected shape \(60000, 28, 28\)"):
        _idx.download(src.as_uri(), str(other), verify=lambda p: _idx._check_shape(p, (60000, 28, 28)))
    assert os.listdir(tmp_path / "cache") == ["x.gz"]  # no partial file left behind


def test_cifar10_binary_batches(data_root):
    directory = data_root / "cifar10" / "cifar-10-batches-bin"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {}
    for i, name in enumerate(cifar10.TRAIN_FILES + cifar10.TEST_FILES):
        chw = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
        labels = np.array([i % 10, (i + 3) % 10], np.uint8)
        records = np.concatenate([labels[:, None], chw.reshape(2, -1)], axis=1)
        records.tofile(directory / name)
        images[name] = (chw, labels)
    (x, y), (xt, yt) = cifar10.load_data(download=False)
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (10, 1) and y.dtype == np.uint8
    chw, labels = images["data_batch_2.bin"]
    np.testing.assert_array_equal(x[2, 5, 7], chw[0, :, 5, 7])  # pixel (row 5, col 7) = (R, G, B)
    np.testing.assert_array_equal(y[2:4, 0], labels)
    np.testing.assert_array_equal(yt[:, 0], images["test_batch.bin"][1])
    (directory / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a multiple of the CIFAR-10 record size 3073"):
        cifar10.load_data(download=False)
