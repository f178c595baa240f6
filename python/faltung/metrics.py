"""Metrics with Keras 3 names: stateful `update_state(y_true, y_pred, sample_weight=None)`,
`result() -> float`, `reset_state()`.

"accuracy"/"acc" resolves, at its first update, to binary / sparse categorical /
categorical accuracy from the shapes, as Keras's compile does: y_pred's last dim 1 ->
binary; y_true of lower rank, or last dim 1 while y_pred's is > 1 -> sparse; else
categorical. The metric keeps the identifier as its name.
"""
import numpy as np

from faltung.backend import to_snake_case

from faltung import losses as losses_module


class Metric:
    """Base class: subclasses implement update_state / result / reset_state."""

    def __init__(self, name=None, dtype=None):
        self.name = name or to_snake_case(type(self).__name__)
        self.dtype = dtype or "float32"

    def update_state(self, y_true, y_pred, sample_weight=None):
        raise NotImplementedError(f"{type(self).__name__}.update_state")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__}.result")

    def reset_state(self):
        raise NotImplementedError(f"{type(self).__name__}.reset_state")

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras's stateless-looking call: update, then return the running result."""
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"



class Mean(Metric):
    """Weighted mean of the values given to update_state(values, sample_weight=None)."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name, dtype)
        self.reset_state()

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        self._add(np.asarray(values, dtype=np.float64), sample_weight)

    def _add(self, values, sample_weight):
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += float(values.size)
            return
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.ndim == values.ndim + 1 and w.shape[-1] == 1:
            w = w[..., 0]
        while w.ndim < values.ndim:
            w = w[..., None]
        while w.ndim > values.ndim and w.shape[-1] == 1:
            w = w[..., 0]
        try:
            w = np.broadcast_to(w, values.shape)
        except ValueError:
            raise ValueError(f"{self.name}: `sample_weight` of shape {np.shape(sample_weight)} does "
                             f"not match values of shape {values.shape}") from None
        self.total += float((values * w).sum())
        self.count += float(w.sum())

    def result(self):
        return self.total / self.count if self.count else 0.0


class Sum(Mean):
    """Weighted sum of the values."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name, dtype)

    def result(self):
        return self.total


class MeanMetricWrapper(Mean):
    """Weighted mean of fn(y_true, y_pred, **kwargs) per sample."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name or getattr(fn, "__name__", "mean_metric_wrapper"), dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = np.asarray(self._fn(np.asarray(y_true), np.asarray(y_pred), **self._fn_kwargs),
                            dtype=np.float64)
        self._add(values, sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


# ----------------------------------------------------------------------------------
# Per-sample metric functions (Keras names)
# ----------------------------------------------------------------------------------
def _check_same(name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true and y_pred must have the same shape. Received: "
                         f"y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}")


def accuracy(y_true, y_pred):
    """Elementwise equality (keras.metrics.Accuracy)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    _check_same("accuracy", y_true, y_pred)
    return (y_true == y_pred).astype(np.float32)


def categorical_accuracy(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _check_same("categorical_accuracy", y_true, y_pred)
    return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(np.float32)


def _sparse_labels(name, y_true, y_pred):
    y_true = np.asarray(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"{name}: y_true must have shape y_pred.shape[:-1] (or with a trailing 1). "
                         f"Received: y_true.shape={np.shape(y_true)}, y_pred.shape={y_pred.shape}")
    return y_true


def sparse_categorical_accuracy(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = _sparse_labels("sparse_categorical_accuracy", y_true, y_pred)
    return (y_true.astype(np.int64) == y_pred.argmax(axis=-1)).astype(np.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    _check_same("binary_accuracy", y_true, y_pred)
    return ((y_pred > threshold).astype(np.float64) == y_true).mean(axis=-1).astype(np.float32)


def _in_top_k(labels, y_pred, k):
    """TF's in_top_k: the label's score has fewer than k strictly larger scores."""
    scores = np.take_along_axis(y_pred, labels[..., None].astype(np.int64), -1)
    return ((y_pred > scores).sum(axis=-1) < k).astype(np.float32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _check_same("top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k(y_true.argmax(axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_pred = np.asarray(y_pred)
    y_true = _sparse_labels("sparse_top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k(y_true.astype(np.int64), y_pred, k)


# ----------------------------------------------------------------------------------
# Classes
# ----------------------------------------------------------------------------------
def _wrapper_class(cls_name, fn, default_name, doc, **defaults):
    def __init__(self, name=default_name, dtype=None, **kwargs):
        kw = {**defaults, **kwargs}
        unknown = set(kw) - set(defaults)
        if unknown:
            raise TypeError(f"{cls_name}: unrecognized keyword argument(s) {sorted(unknown)}")
        MeanMetricWrapper.__init__(self, fn, name, dtype, **kw)
    return type(cls_name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": doc})


Accuracy = _wrapper_class("Accuracy", accuracy, "accuracy", "Fraction of y_pred equal to y_true.")
CategoricalAccuracy = _wrapper_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy",
                                     "argmax(y_true) == argmax(y_pred), one-hot targets.")
SparseCategoricalAccuracy = _wrapper_class(
    "SparseCategoricalAccuracy", sparse_categorical_accuracy, "sparse_categorical_accuracy",
    "y_true == argmax(y_pred), integer labels.")
BinaryAccuracy = _wrapper_class("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                                "(y_pred > threshold) == y_true, mean over the last axis.",
                                threshold=0.5)
TopKCategoricalAccuracy = _wrapper_class(
    "TopKCategoricalAccuracy", top_k_categorical_accuracy, "top_k_categorical_accuracy",
    "argmax(y_true) among the k largest y_pred (ties at the boundary count as in).", k=5)
SparseTopKCategoricalAccuracy = _wrapper_class(
    "SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy", "y_true among the k largest y_pred.", k=5)
MeanSquaredError = _wrapper_class("MeanSquaredError", losses_module.mean_squared_error,
                                  "mean_squared_error", "mean(square(y_pred - y_true), axis=-1).")
MeanAbsoluteError = _wrapper_class("MeanAbsoluteError", losses_module.mean_absolute_error,
                                   "mean_absolute_error", "mean(abs(y_pred - y_true), axis=-1).")
CategoricalCrossentropy = _wrapper_class(
    "CategoricalCrossentropy", losses_module.categorical_crossentropy, "categorical_crossentropy",
    "Mean categorical crossentropy.", from_logits=False, label_smoothing=0.0, axis=-1)
SparseCategoricalCrossentropy = _wrapper_class(
    "SparseCategoricalCrossentropy", losses_module.sparse_categorical_crossentropy,
    "sparse_categorical_crossentropy", "Mean sparse categorical crossentropy.", from_logits=False)
BinaryCrossentropy = _wrapper_class(
    "BinaryCrossentropy", losses_module.binary_crossentropy, "binary_crossentropy",
    "Mean binary crossentropy.", from_logits=False, label_smoothing=0.0)


class RootMeanSquaredError(Mean):
    """sqrt of the weighted mean of squared errors."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, np.float64)
        y_true = np.asarray(y_true, np.float64).reshape(y_pred.shape) if np.size(y_true) == y_pred.size \
            else np.asarray(y_true, np.float64)
        self._add((y_pred - y_true) ** 2, sample_weight)

    def result(self):
        return float(np.sqrt(super().result()))


class _BinaryCounts(Metric):
    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.thresholds = 0.5 if thresholds is None else float(thresholds)
        self.reset_state()

    def reset_state(self):
        self.tp = self.fp = self.fn = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true).reshape(y_pred.shape) if np.size(y_true) == y_pred.size else None
        if y_true is None:
            raise ValueError(f"{self.name}: y_true and y_pred must have the same size. Received: "
                             f"y_pred.shape={y_pred.shape}")
        pred = y_pred > self.thresholds
        true = y_true.astype(bool)
        w = 1.0 if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight, np.float64).reshape(
                np.shape(sample_weight) + (1,) * (y_pred.ndim - np.ndim(sample_weight))), y_pred.shape)
        self.tp += float(np.sum((pred & true) * w))
        self.fp += float(np.sum((pred & ~true) * w))
        self.fn += float(np.sum((~pred & true) * w))

    def get_config(self):
        return {**super().get_config(), "thresholds": self.thresholds}


class Precision(_BinaryCounts):
    """tp / (tp + fp) of y_pred > thresholds (one threshold, default 0.5)."""

    def __init__(self, thresholds=None, name="precision", dtype=None):
        super().__init__(thresholds, name, dtype)

    def result(self):
        d = self.tp + self.fp
        return self.tp / d if d else 0.0


class Recall(_BinaryCounts):
    """tp / (tp + fn) of y_pred > thresholds (one threshold, default 0.5)."""

    def __init__(self, thresholds=None, name="recall", dtype=None):
        super().__init__(thresholds, name, dtype)

    def result(self):
        d = self.tp + self.fn
        return self.tp / d if d else 0.0


class _AutoAccuracy(MeanMetricWrapper):
    """"accuracy"/"acc": binary, sparse or categorical accuracy chosen at the first update."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(None, name, dtype)
        self.resolved = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._fn is None:
            y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
            t_last = y_true.shape[-1] if y_true.ndim else 1
            p_last = y_pred.shape[-1] if y_pred.ndim else 1
            if p_last == 1:
                self._fn, self.resolved = binary_accuracy, "binary_accuracy"
            elif y_true.ndim < y_pred.ndim or (t_last == 1 and p_last > 1):
                self._fn, self.resolved = sparse_categorical_accuracy, "sparse_categorical_accuracy"
            else:
                self._fn, self.resolved = categorical_accuracy, "categorical_accuracy"
        super().update_state(y_true, y_pred, sample_weight)


_BY_NAME = {
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "root_mean_squared_error": RootMeanSquaredError,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "precision": Precision, "recall": Recall, "mean": Mean, "sum": Sum,
}
_CLASSES = {c.__name__: c for c in list(_BY_NAME.values()) + [Accuracy]}


def get(identifier):
    """Metric from "accuracy"/"acc" (auto-resolved), a Keras metric name or class name, a
    dict {"class_name", "config"}, a Metric instance or class, or fn(y_true, y_pred) -> values.
    Returns a new Metric object for names."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Could not interpret metric identifier: {identifier}")
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return _AutoAccuracy(name=identifier)
        cls = _BY_NAME.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Could not interpret metric identifier: {identifier}. Valid names: "
                             f"{sorted(['accuracy', 'acc'] + list(_BY_NAME) + list(_CLASSES))}")
        m = cls()
        if identifier in _BY_NAME:
            m.name = identifier
        return m
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(f"Could not interpret metric identifier: {identifier}")
