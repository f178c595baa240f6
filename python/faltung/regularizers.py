"""Weight regularizers (Keras 3 names): `reg(value) -> float` penalty added to the loss,
`reg.grad(value) -> ndarray` its gradient (faltung's addition for the brick backward).

Layers resolve their `*_regularizer` arguments once, with `get`, in `__init__`, and write them
back into their config with `serialize` (Keras's dict: module, class_name, config,
registered_name)."""
import inspect

import numpy as np


class Regularizer:
    def __call__(self, x):
        return 0.0

    def grad(self, x):
        return np.zeros_like(np.asarray(x))

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _check(name, value):
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"Value for argument `{name}` must be a finite non-negative float. "
                         f"Received: {name}={value}")
    return value


class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x**2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check("l1", l1)
        self.l2 = _check("l2", l2)

    def __call__(self, x):
        x = np.asarray(x)
        out = 0.0
        if self.l1:
            out += self.l1 * float(np.abs(x).sum())
        if self.l2:
            out += self.l2 * float(np.vdot(x, x))
        return out

    def grad(self, x):
        x = np.asarray(x)
        g = np.zeros_like(x)
        if self.l1:
            g += self.l1 * np.sign(x)
        if self.l2:
            g += (2.0 * self.l2) * x
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum(|x|)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(x**2)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * mean(|off-diagonal of normalized rows (or columns) Gram|) (Keras formula)."""

    def __init__(self, factor=0.01, mode="rows"):
        if mode not in ("rows", "columns"):
            raise ValueError("Invalid value for argument `mode`. Expected one of "
                             f"{{'rows', 'columns'}}. Received: mode={mode}")
        self.factor = _check("factor", factor)
        self.mode = mode

    def _parts(self, x):
        x = np.asarray(x, np.float64)
        if x.ndim != 2:
            raise ValueError(f"Inputs to OrthogonalRegularizer must have rank 2. Received: "
                             f"inputs.shape={x.shape}")
        return x if self.mode == "rows" else x.T

    def __call__(self, x):
        a = self._parts(x)
        n = a.shape[0]
        if n < 2:
            return 0.0
        u = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        prod = u @ u.T
        off = np.abs(prod - np.diag(np.diag(prod)))
        return float(self.factor * off.sum() / (n * (n - 1)))

    def grad(self, x):
        a = self._parts(x)
        n = a.shape[0]
        if n < 2:
            return np.zeros_like(np.asarray(x))
        norms = np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        u = a / norms
        s = np.sign(u @ u.T)
        np.fill_diagonal(s, 0.0)
        gu = (self.factor / (n * (n - 1))) * 2.0 * (s @ u)
        ga = (gu - u * (gu * u).sum(axis=1, keepdims=True)) / norms
        ga = ga if self.mode == "rows" else ga.T
        return ga.astype(np.asarray(x).dtype)

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer
_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2,
            "orthogonal_regularizer": OrthogonalRegularizer}
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2, "OrthogonalRegularizer": OrthogonalRegularizer}


def get(identifier):
    """Regularizer from None, a name ("l1", "l2", "l1_l2", "L2"), a config dict (`serialize`'s,
    or just {"class_name", "config"}), a class, an instance, or a callable(value) -> float (its
    `.grad` must exist for training). Layers call it once, in `__init__`."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name")) or _BY_NAME.get(str(identifier.get("class_name")).lower())
        if cls is None:
            raise ValueError(f"Could not interpret regularizer identifier: {identifier}")
        return cls.from_config(identifier.get("config") or {})
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Could not interpret regularizer identifier: {identifier}. "
                             f"Valid names: {sorted(_BY_NAME)}")
        return cls()
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret regularizer identifier: {identifier}")


def serialize(regularizer):
    """Keras's config dict of a regularizer (None stays None; a plain function is returned as is)."""
    if regularizer is None or not hasattr(regularizer, "get_config"):
        return regularizer
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__,
            "config": regularizer.get_config(), "registered_name": None}


def deserialize(config):
    return get(config)
