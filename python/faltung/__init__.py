"""faltung: a deep-learning library with a C++ core and a Keras 3 API.

    import faltung as keras        # Keras code runs after changing only this import
"""
from faltung._core import build_info, get_num_threads, set_num_threads

__version__ = "0.1.0"

from faltung import backend, utils, initializers, activations, ops, layers  # noqa: E402
from faltung import losses, optimizers, metrics, regularizers, datasets  # noqa: E402
from faltung import models, callbacks, saving  # noqa: E402
from faltung.models import Sequential, Model, load_model  # noqa: E402
from faltung.layers import Input  # noqa: E402
