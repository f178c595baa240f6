"""Activation functions by Keras name. Each is an object with
`forward(x) -> y` and `backward(dy, x, y) -> dx` (x the input, y the output of forward).

PLACEHOLDER numpy versions: the activations slice moves these into the C++ core.
"""
import numpy as np


class _Act:
    def __init__(self, name, fwd, bwd):
        self.name, self._fwd, self._bwd = name, fwd, bwd

    def forward(self, x):
        return self._fwd(x)

    def backward(self, dy, x, y):
        return self._bwd(dy, x, y)

    def __call__(self, x):
        return self._fwd(np.asarray(x, np.float32))

    def __repr__(self):
        return f"<activation {self.name}>"


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_REGISTRY = {
    "linear": _Act("linear", lambda x: x, lambda dy, x, y: dy),
    "relu": _Act("relu", lambda x: np.maximum(x, 0), lambda dy, x, y: dy * (x > 0)),
    "sigmoid": _Act("sigmoid", lambda x: 1 / (1 + np.exp(-x)), lambda dy, x, y: dy * y * (1 - y)),
    "tanh": _Act("tanh", np.tanh, lambda dy, x, y: dy * (1 - y * y)),
    "softmax": _Act("softmax", _softmax,
                    lambda dy, x, y: y * (dy - (dy * y).sum(axis=-1, keepdims=True))),
}


def get(identifier):
    """Activation object for a name, None (linear) or an existing activation object."""
    if identifier is None:
        return _REGISTRY["linear"]
    if isinstance(identifier, _Act):
        return identifier
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier]
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}. "
                     f"Expected one of {sorted(_REGISTRY)}")


def serialize(act):
    return act.name
