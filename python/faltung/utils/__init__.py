"""Utilities (Keras: keras.utils)."""
import random

import numpy as np


def set_random_seed(seed):
    """Seed Python's, NumPy's and faltung's generators (weights, dropout, shuffling)."""
    from faltung import initializers
    random.seed(seed)
    np.random.seed(seed)
    initializers.set_seed(seed)


from faltung.utils.reports import classification_report, confusion_matrix  # noqa: E402


def to_categorical(x, num_classes=None):
    """One-hot encode integer labels (Keras: keras.utils.to_categorical)."""
    x = np.asarray(x, dtype=np.int64)
    if x.ndim > 1 and x.shape[-1] == 1:
        x = x.reshape(x.shape[:-1])
    n = int(num_classes if num_classes is not None else x.max() + 1)
    if x.size and (x.min() < 0 or x.max() >= n):
        raise ValueError(f"to_categorical: labels must lie in [0, {n}), received min={x.min()}, max={x.max()}")
    out = np.zeros(x.shape + (n,), np.float32)
    np.put_along_axis(out, x[..., None], 1.0, axis=-1)
    return out
from faltung.utils.progbar import Progbar  # noqa: E402,F401  (keras.utils.Progbar)
from faltung.utils.py_dataset import PyDataset  # noqa: E402,F401  (keras.utils.PyDataset)
from faltung.utils.plots import plot_feature_maps, plot_history, plot_model  # noqa: E402,F401
from faltung.utils import text  # noqa: E402,F401  (CharVocabulary: strings <-> CTC labels)
