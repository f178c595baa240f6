"""Activation functions by Keras 3 name, computed by the C++ core.

`get(identifier)` returns an activation object with `forward(x) -> y`,
`backward(dy, x, y) -> dx` (x the input, y the output of forward) and `.name`; layers use
those. The module also has Keras's functions (`faltung.activations.relu(x)`, ...), which
compute forward only.

Keras names: relu, leaky_relu, relu6, softmax, elu, selu, softplus, softsign, silu (swish),
gelu, tanh, sigmoid, exponential, hard_sigmoid, hard_silu (hard_swish), linear, mish,
log_softmax. Not supported: crelu (it changes the output shape).
"""
import numpy as np

from faltung.ops import nn


class Activation:
    """One activation with its parameters.

    Args:
        name: the Keras name (what `serialize` returns).
        kernel: the C++ kernel name (`faltung._core.activation_names()`), or "softmax",
            "log_softmax", "linear".
        params: kernel parameters (negative_slope, threshold, max_value, alpha, axis).
    """

    def __init__(self, name, kernel=None, **params):
        self.name = name
        self.kernel = kernel or name
        self.axis = params.pop("axis", -1)
        self.params = params

    def forward(self, x):
        if self.kernel == "linear":
            return x
        if self.kernel == "softmax":
            return nn.softmax(x, self.axis)
        if self.kernel == "log_softmax":
            return nn.log_softmax(x, self.axis)
        return nn.activation(self.kernel, x, **self.params)

    def backward(self, dy, x, y):
        if self.kernel == "linear":
            return dy
        if self.kernel == "softmax":
            return nn.softmax_backward(dy, y, self.axis)
        if self.kernel == "log_softmax":
            return nn.log_softmax_backward(dy, y, self.axis)
        return nn.activation_backward(self.kernel, dy, x, y, **self.params)

    def __call__(self, x):
        # float64 arrays stay float64 (gradient checks); lists and the rest become float32
        if not (isinstance(x, np.ndarray) and x.dtype == np.float64):
            x = np.asarray(x, dtype=np.float32)
        return self.forward(x)

    def __repr__(self):
        extra = "".join(f", {k}={v}" for k, v in self.params.items())
        return f"<activation {self.name}{extra}>"


_REGISTRY = {a.name: a for a in [
    Activation("linear"),
    Activation("relu"),
    Activation("leaky_relu", "relu", negative_slope=0.2),
    Activation("relu6", "relu", max_value=6.0),
    Activation("softmax"),
    Activation("log_softmax"),
    Activation("elu", alpha=1.0),
    Activation("selu"),
    Activation("softplus"),
    Activation("softsign"),
    Activation("silu"),
    Activation("gelu"),  # Keras's activations.gelu default: approximate=False (erf form)
    Activation("tanh"),
    Activation("sigmoid"),
    Activation("exponential"),
    Activation("hard_sigmoid"),
    Activation("hard_silu"),
    Activation("mish"),
]}
_REGISTRY["swish"] = _REGISTRY["silu"]
_REGISTRY["hard_swish"] = _REGISTRY["hard_silu"]


# -- Keras's functions (forward only) ---------------------------------------------------------

def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0); below `threshold` slope `negative_slope`, saturating at `max_value`."""
    return Activation("relu", negative_slope=negative_slope, threshold=threshold,
                      max_value=max_value)(x)


def leaky_relu(x, negative_slope=0.2):
    return Activation("leaky_relu", "relu", negative_slope=negative_slope)(x)


def relu6(x):
    return _REGISTRY["relu6"](x)


def softmax(x, axis=-1):
    return Activation("softmax", axis=axis)(x)


def log_softmax(x, axis=-1):
    return Activation("log_softmax", axis=axis)(x)


def elu(x, alpha=1.0):
    return Activation("elu", alpha=alpha)(x)


def gelu(x, approximate=False):
    """x * Phi(x); approximate=True uses the tanh approximation (Keras's default here is
    the exact form, approximate=False)."""
    return Activation("gelu", "gelu_approximate" if approximate else "gelu")(x)


def linear(x):
    return x


def _plain(name):
    def fn(x):
        return _REGISTRY[name](x)
    fn.__name__ = name
    fn.__doc__ = f"Keras's `{name}` activation, computed by faltung's C++ core."
    return fn


selu = _plain("selu")
softplus = _plain("softplus")
softsign = _plain("softsign")
silu = swish = _plain("silu")
tanh = _plain("tanh")
sigmoid = _plain("sigmoid")
exponential = _plain("exponential")
hard_sigmoid = _plain("hard_sigmoid")
hard_silu = hard_swish = _plain("hard_silu")
mish = _plain("mish")

_FUNCTIONS = {relu: "relu", leaky_relu: "leaky_relu", relu6: "relu6", softmax: "softmax",
              log_softmax: "log_softmax", elu: "elu", gelu: "gelu", linear: "linear",
              selu: "selu", softplus: "softplus", softsign: "softsign", silu: "silu",
              tanh: "tanh", sigmoid: "sigmoid", exponential: "exponential",
              hard_sigmoid: "hard_sigmoid", hard_silu: "hard_silu", mish: "mish"}


def get(identifier):
    """An activation object from a Keras name ("relu"), None (linear), one of this module's
    functions (`faltung.activations.relu`), a Keras config dict, or an object that already
    has `forward(x)` and `backward(dy, x, y)`."""
    if identifier is None:
        return _REGISTRY["linear"]
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, dict):
        identifier = identifier.get("config", identifier.get("class_name"))
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier]
    try:
        if identifier in _FUNCTIONS:
            return _REGISTRY[_FUNCTIONS[identifier]]
    except TypeError:  # unhashable
        pass
    if hasattr(identifier, "forward") and hasattr(identifier, "backward"):
        return identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}. "
                     f"Expected one of {sorted(_REGISTRY)} (faltung needs a backward: a custom "
                     f"activation must be an object with forward(x) and backward(dy, x, y))")


def serialize(activation):
    """The Keras name of an activation ("relu")."""
    return getattr(activation, "name", None) or str(activation)


def deserialize(config):
    return get(config)
