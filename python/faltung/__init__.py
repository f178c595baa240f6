"""faltung: a deep-learning library with a C++ core and a Keras 3 API."""
from faltung._core import build_info, get_num_threads, set_num_threads

__version__ = "0.1.0"
from faltung import models, callbacks, saving  # noqa: E402
from faltung.models import Sequential, Model, load_model  # noqa: E402
from faltung import losses, optimizers, metrics, regularizers, datasets
