"""Fashion-MNIST (Keras's `keras.datasets.fashion_mnist`): 28x28 grayscale images of 10
clothing classes, 60000 training and 10000 test samples.

Read from IDX files (gzipped or not) found in $FALTUNG_DATA/fashion-mnist/, $FALTUNG_DATA/,
~/.faltung/datasets/fashion-mnist/, ~/.keras/datasets/fashion-mnist/ or Debian's
/usr/share/datasets/fashion-mnist/ (`apt-get install dataset-fashion-mnist`); otherwise
downloaded from Keras's location when a network is reachable.
"""
from faltung.datasets import _idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")


def load_data(download=True):
    """Returns `(x_train, y_train), (x_test, y_test)`: uint8 images (N, 28, 28), uint8
    labels (N,) in 0..9. Raises FileNotFoundError saying how to get the data when it is
    absent, ValueError when a file is corrupt. `download` is faltung's addition."""
    return _idx.load_idx_set(
        "Fashion-MNIST", "fashion-mnist", BASE_URL, FILES, SYSTEM_DIRS, download,
        "Install it with `apt-get install dataset-fashion-mnist` (Debian), or put the four "
        "IDX files (gzipped or not) in $FALTUNG_DATA/fashion-mnist/ and set FALTUNG_DATA.")
