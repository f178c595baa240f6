"""IDX file reader/writer and the shared look-up / download logic of the dataset loaders.

IDX (the MNIST format): 2 zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, each dimension as a
big-endian uint32, then the data (big-endian), optionally gzipped. No pickle anywhere.

Search order for a dataset NAME: $FALTUNG_DATA/NAME/, $FALTUNG_DATA/,
~/.faltung/datasets/NAME/, ~/.keras/datasets/NAME/, then the loader's system directories
(Debian's dataset-fashion-mnist installs /usr/share/datasets/fashion-mnist/).
"""
import gzip
import os
import tempfile
import urllib.request

import numpy as np

_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}


def _open(path):
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path):
    """The array stored in an IDX file (gzipped or not), in native byte order.
    Raises ValueError naming the file if the header or the size is wrong."""
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: not a readable IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES or not 1 <= data[3] <= 8:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _TYPES[data[2]], data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(f"{path}: IDX header says shape {dims} ({expected} bytes of data), "
                         f"file holds {len(data) - offset} bytes")
    arr = np.frombuffer(data, dtype, offset=offset).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path, array, compress=None):
    """Write `array` as IDX (gzipped if compress, default: path ends with .gz)."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype)
    if code is None:
        raise ValueError(f"write_idx: unsupported dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, _TYPES[code]).tobytes()
    if compress is None:
        compress = str(path).endswith(".gz")
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(payload)


def search_dirs(name, system_dirs=()):
    dirs = []
    root = os.environ.get("FALTUNG_DATA")
    if root:
        dirs += [os.path.join(root, name), root]
    home = os.path.expanduser("~")
    dirs += [os.path.join(home, ".faltung", "datasets", name),
             os.path.join(home, ".keras", "datasets", name)]
    dirs += list(system_dirs)
    return dirs


def cache_dir(name):
    """Where downloads go: $FALTUNG_DATA/NAME if FALTUNG_DATA is set, else ~/.faltung/datasets/NAME."""
    root = os.environ.get("FALTUNG_DATA")
    if root:
        return os.path.join(root, name)
    return os.path.join(os.path.expanduser("~"), ".faltung", "datasets", name)


def find_in(directory, filename):
    """`filename` or `filename.gz` inside directory, else None."""
    for candidate in (filename, filename + ".gz"):
        p = os.path.join(directory, candidate)
        if os.path.isfile(p):
            return p
    return None


def find_set(dirs, filenames):
    """The first directory holding every file (plain or .gz): list of paths, else None."""
    for d in dirs:
        paths = [find_in(d, f) for f in filenames]
        if all(paths):
            return paths
    return None


def download(url, dest, verify=None, timeout=10.0):
    """Fetch url to dest atomically (temp file in dest's directory, verify(temp) may raise,
    then rename). Returns dest. Raises OSError / ValueError on failure."""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dest


def load_idx_set(title, name, base_url, files, system_dirs, download_ok, install_hint):
    """Shared loader of the MNIST-style sets: `files` = (train images, train labels, test
    images, test labels) base names; returns (x_train, y_train), (x_test, y_test)."""
    dirs = search_dirs(name, system_dirs)
    paths = find_set(dirs, files)
    error = None
    if paths is None and download_ok:
        target = cache_dir(name)
        expected = {files[0]: (60000, 28, 28), files[1]: (60000,),
                    files[2]: (10000, 28, 28), files[3]: (10000,)}
        try:
            paths = []
            for f in files:
                dest = os.path.join(target, f + ".gz")
                if not os.path.isfile(dest):
                    download(base_url + f + ".gz", dest,
                             verify=lambda p, shape=expected[f]: _check_shape(p, shape))
                paths.append(dest)
        except (OSError, ValueError) as e:
            paths, error = None, e
    if paths is None:
        looked = "\n  ".join(dirs)
        why = f"\nDownload failed: {error}" if error else ""
        raise FileNotFoundError(
            f"{title} not found. Looked for {', '.join(f + '[.gz]' for f in files)} in:\n  {looked}"
            f"\n{install_hint}{why}")
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    for x, y, px, py in ((x_train, y_train, paths[0], paths[1]), (x_test, y_test, paths[2], paths[3])):
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(f"{px}: expected uint8 images of shape (N, rows, cols), found "
                             f"{x.dtype} of shape {x.shape}")
        if y.ndim != 1 or y.dtype != np.uint8 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{py}: expected {x.shape[0]} uint8 labels, found {y.dtype} of "
                             f"shape {y.shape}")
    return (x_train, y_train), (x_test, y_test)


def _check_shape(path, shape):
    arr = read_idx(path)
    if arr.shape != shape:
        raise ValueError(f"{path}: expected shape {shape}, found {arr.shape}")
