from faltung.ops.nn import *  # noqa: F401,F403  (dense, activations, dropout, softmax xent)
