"""Weight constraints (Keras 3's `keras.constraints`): `constraint(w) -> w'` projects a weight;
the optimizer applies it after each update (`v.value[...] = v.constraint(v.value)`).

Layers resolve their `*_constraint` arguments once, with `get`, in `__init__`, and write them
back into their config with `serialize` (Keras's dict: module, class_name, config,
registered_name).
"""
import inspect

import numpy as np

EPSILON = 1e-7  # keras.config.epsilon(), added to the norms as Keras does


def _check(name, value):
    """A finite norm bound >= 0, or ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a finite number >= 0. "
                         f"Received: {name}={value}")
    return value


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis  # a JSON config gives a list


def _norms(w, axis):
    return np.sqrt(np.sum(np.square(w), axis=_axis(axis), keepdims=True))


class Constraint:
    """Base class: `__call__(w)` returns the projected weight (the identity here)."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class MaxNorm(Constraint):
    """Rescales the weights incident to each unit (the slices along `axis`) to a norm of at
    most `max_value`. For a Dense kernel (input_dim, units) axis=0 constrains each unit's
    incoming weights; for a Conv2D kernel (kh, kw, in, out) use axis=[0, 1, 2]."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = _check("max_value", max_value)
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return (w * (desired / (EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Constrains the weights to be non-negative."""

    def __call__(self, w):
        w = np.asarray(w)
        return np.maximum(w, w.dtype.type(0))


class UnitNorm(Constraint):
    """Rescales the weights incident to each unit (the slices along `axis`) to unit norm."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        return (w / (EPSILON + _norms(w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Rescales the weights incident to each unit to a norm in [min_value, max_value]:
    norm -> (1 - rate) * norm + rate * clip(norm, min_value, max_value); rate=1 enforces the
    bounds at once, rate < 1 moves towards them step by step."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _check("min_value", min_value)
        self.max_value = _check("max_value", max_value)
        if min_value > max_value:
            raise ValueError("Invalid value for argument `min_value`. Expected min_value <= max_value. "
                             f"Received: min_value={min_value}, max_value={max_value}")
        if not 0 <= _check("rate", rate) <= 1:
            raise ValueError(f"Invalid value for argument `rate`. Expected a value in [0, 1]. Received: rate={rate}")
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        norms = _norms(w, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return (w * (desired / (EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm


_CLASSES = {cls.__name__: cls for cls in (Constraint, MaxNorm, NonNeg, UnitNorm, MinMaxNorm)}
_BY_NAME = {"constraint": Constraint, "max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
            "min_max_norm": MinMaxNorm}


def get(identifier):
    """A constraint from None, a name ("max_norm", "MaxNorm", "non_neg", ...), a config dict
    (`serialize`'s, or just {"class_name", "config"}), a class, an instance, or a callable
    w -> projected w. Layers call it once, in `__init__`."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name")) or _BY_NAME.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Could not interpret constraint identifier: {identifier}. Expected a "
                             f"class_name in {sorted(_CLASSES)}")
        return cls.from_config(identifier.get("config") or {})
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Could not interpret constraint identifier: {identifier}. Expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls()
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret constraint identifier: {identifier}")


def serialize(constraint):
    """Keras's config dict of a constraint (None stays None; a plain function is returned as is)."""
    if constraint is None or not hasattr(constraint, "get_config"):
        return constraint
    return {"module": "keras.constraints", "class_name": type(constraint).__name__,
            "config": constraint.get_config(), "registered_name": None}


def deserialize(config):
    return get(config)
