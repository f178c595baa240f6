"""Utilities (Keras: keras.utils)."""
import random

import numpy as np


def set_random_seed(seed):
    """Seed Python's, NumPy's and faltung's generators (weights, dropout, shuffling)."""
    from faltung import initializers
    random.seed(seed)
    np.random.seed(seed)
    initializers.set_seed(seed)
from faltung.utils.progbar import Progbar  # noqa: E402,F401  (keras.utils.Progbar)
