"""Metrics with Keras 3 names: stateful `update_state(y_true, y_pred, sample_weight=None)`,
`result() -> float`, `reset_state()`.

"accuracy"/"acc" resolves, at its first update, to binary / sparse categorical /
categorical accuracy from the shapes, as Keras's compile does: y_pred's last dim 1 ->
binary; y_true of lower rank, or last dim 1 while y_pred's is > 1 -> sparse; else
categorical. The metric keeps the identifier as its name.
"""
import warnings

import numpy as np

from faltung.backend import to_snake_case

from faltung import losses as losses_module
# keras.metrics re-exports these loss functions (per-sample values); pearson_correlation and
# concordance_correlation are defined below.
from faltung.losses import (  # noqa: F401
    binary_crossentropy, categorical_crossentropy, categorical_hinge, hinge, huber, kl_divergence,
    log_cosh, mean_absolute_error, mean_absolute_percentage_error, mean_squared_error,
    mean_squared_logarithmic_error, poisson, sparse_categorical_crossentropy, squared_hinge)


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



def _broadcast_weight(name, sample_weight, shape):
    """Sample weights (float64) broadcast to values of `shape` as Keras's Mean does."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == len(shape) + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    while w.ndim < len(shape):
        w = w[..., None]
    while w.ndim > len(shape) and w.shape[-1] == 1:
        w = w[..., 0]
    try:
        return np.broadcast_to(w, shape)
    except ValueError:
        raise ValueError(f"{name}: `sample_weight` of shape {np.shape(sample_weight)} does "
                         f"not match values of shape {tuple(shape)}") from None


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
        w = _broadcast_weight(self.name, sample_weight, values.shape)
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
        if _is_loss(fn):  # Keras: a wrapped loss should fall (callbacks' mode="auto")
            self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if sample_weight is None and y_true.ndim == y_pred.ndim == 1 and _is_loss(self._fn):
            # Keras's loss functions reduce 1-D inputs' only axis: the batch is one value of
            # the mean (faltung.losses reads them as (N, 1)). Keras refuses (N,) sample
            # weights there; faltung then weighs each element. An empty batch adds nothing.
            if not y_pred.size:
                return
            y_true, y_pred = y_true[None], y_pred[None]
        values = np.asarray(self._fn(y_true, y_pred, **self._fn_kwargs), dtype=np.float64)
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
    """Elementwise (y_pred > threshold) == y_true: Keras 3 does not average the last axis
    here, so a 1-D batch counts each element (the metric's mean is the same otherwise)."""
    y_true, y_pred = _same_rank(np.asarray(y_true), np.asarray(y_pred))
    _check_same("binary_accuracy", y_true, y_pred)
    return ((y_pred > threshold).astype(np.float64) == y_true).astype(np.float32)


def _in_top_k(labels, y_pred, k):
    """TF's in_top_k: the label's score has fewer than k strictly larger scores."""
    scores = np.take_along_axis(y_pred, labels[..., None].astype(np.int64), -1)
    return ((y_pred > scores).sum(axis=-1) < k).astype(np.float32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _check_same("top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k(y_true.argmax(axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """y_true among the k best classes; with from_sorted_ids, y_pred holds class ids sorted
    from the best down (Keras 3), and y_true is looked for among its first k."""
    y_pred = np.asarray(y_pred)
    if from_sorted_ids:
        y_true = np.asarray(y_true)
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        return (y_pred[..., :k] == y_true[..., None]).any(axis=-1).astype(np.float32)
    y_true = _sparse_labels("sparse_top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k(y_true.astype(np.int64), y_pred, k)


# ----------------------------------------------------------------------------------
# Classes. `_direction` ("up" / "down", Keras's attribute) tells callbacks with mode="auto"
# whether the metric should rise or fall; metrics without it (counts, means) have no direction.
# ----------------------------------------------------------------------------------
def _is_loss(fn):
    return isinstance(fn, losses_module.Loss) or (
        callable(fn) and getattr(fn, "__module__", None) == losses_module.__name__)


def _wrapper_class(cls_name, fn, default_name, doc, direction=None, **defaults):
    def __init__(self, name=default_name, dtype=None, **kwargs):
        kw = {**defaults, **kwargs}
        unknown = set(kw) - set(defaults)
        if unknown:
            raise TypeError(f"{cls_name}: unrecognized keyword argument(s) {sorted(unknown)}")
        MeanMetricWrapper.__init__(self, fn, name, dtype, **kw)
    attrs = {"__init__": __init__, "__doc__": doc}
    if direction:
        attrs["_direction"] = direction
    return type(cls_name, (MeanMetricWrapper,), attrs)


Accuracy = _wrapper_class("Accuracy", accuracy, "accuracy", "Fraction of y_pred equal to y_true.",
                          "up")
CategoricalAccuracy = _wrapper_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy",
                                     "argmax(y_true) == argmax(y_pred), one-hot targets.", "up")
SparseCategoricalAccuracy = _wrapper_class(
    "SparseCategoricalAccuracy", sparse_categorical_accuracy, "sparse_categorical_accuracy",
    "y_true == argmax(y_pred), integer labels.", "up")
BinaryAccuracy = _wrapper_class("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                                "(y_pred > threshold) == y_true, mean over the last axis.", "up",
                                threshold=0.5)
TopKCategoricalAccuracy = _wrapper_class(
    "TopKCategoricalAccuracy", top_k_categorical_accuracy, "top_k_categorical_accuracy",
    "argmax(y_true) among the k largest y_pred (ties at the boundary count as in).", "up", k=5)
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


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """Integer y_true among the k largest y_pred (or, with from_sorted_ids, among the first
    k of y_pred's sorted class ids)."""

    _direction = "up"

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None,
                 from_sorted_ids=False):
        super().__init__(sparse_top_k_categorical_accuracy, name, dtype, k=k,
                         from_sorted_ids=from_sorted_ids)

    def get_config(self):  # Keras writes from_sorted_ids only when it is set
        config = super().get_config()
        if not config["from_sorted_ids"]:
            del config["from_sorted_ids"]
        return config


class RootMeanSquaredError(Mean):
    """sqrt of the weighted mean of squared errors."""

    _direction = "down"

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, np.float64)
        y_true = np.asarray(y_true, np.float64).reshape(y_pred.shape) if np.size(y_true) == y_pred.size \
            else np.asarray(y_true, np.float64)
        self._add((y_pred - y_true) ** 2, sample_weight)

    def result(self):
        return float(np.sqrt(super().result()))


# ----------------------------------------------------------------------------------
# Confusion-matrix metrics (Keras 3: metrics/confusion_metrics.py, metrics_utils.py)
# ----------------------------------------------------------------------------------
_NEG_INF = -1e10  # Keras's threshold when top_k is set: every kept score counts


def _parse_thresholds(thresholds, default):
    values = default if thresholds is None else thresholds
    values = list(values) if isinstance(values, (list, tuple, np.ndarray)) else [values]
    if thresholds is not None:
        bad = [t for t in values if t is None or t < 0 or t > 1]
        if bad:
            raise ValueError(f"Threshold values must be in [0, 1]. Received: {bad}")
    return [float(t) for t in values]


def _evenly_spaced(thresholds):
    """Keras's is_evenly_distributed_thresholds: [0, 1/(n-1), ..., 1] with n >= 3."""
    n = len(thresholds)
    return n >= 3 and np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1),
                                  atol=1e-7)


def _same_rank(x1, x2, expand_rank_1=True):
    """Keras's squeeze_or_expand_to_same_rank: fix a rank difference of one trailing 1."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _filter_top_k(x, k):
    """Keep the k largest scores of the last axis (first index wins ties); others -> -1e10."""
    keep = np.zeros(x.shape, bool)
    np.put_along_axis(keep, np.argsort(-x, axis=-1, kind="stable")[..., :k], True, axis=-1)
    return np.where(keep, x, np.float32(_NEG_INF)).astype(np.float32)


def confusion_counts(name, y_true, y_pred, thresholds, evenly=False, top_k=None, class_id=None,
                     sample_weight=None, multi_label=False, label_weights=None):
    """Weighted tp, fp, tn, fn at each threshold, a prediction counting as positive when
    y_pred > threshold (Keras's update_confusion_matrix_variables, including the bucket
    method it uses when `evenly`: thresholds spaced evenly over [0, 1]). Each count has shape (thresholds,), or
    (thresholds, labels) with multi_label (y_pred of rank 2)."""
    y_pred = np.asarray(y_pred, np.float32)
    y_true = np.asarray(y_true, np.float32)
    y_pred, y_true = _same_rank(y_pred, y_true)
    sw = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, np.float32)[..., None]
        _, sw = _same_rank(y_true, sw, expand_rank_1=False)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError(f"{name}: when class_id is provided, y_pred must be a 2D array with "
                             f"shape (num_samples, num_classes), found shape: {y_pred.shape}")
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true and y_pred must have the same shape. Received: "
                         f"y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}")
    try:
        w = np.ones_like(y_pred) if sw is None else np.broadcast_to(sw, y_pred.shape)
    except ValueError:
        raise ValueError(f"{name}: `sample_weight` of shape {np.shape(sample_weight)} does not "
                         f"broadcast to y_pred of shape {y_pred.shape}") from None
    if label_weights is not None and not multi_label:
        w = w * np.broadcast_to(np.asarray(label_weights, np.float32), y_pred.shape)
    if multi_label:
        if y_pred.ndim != 2:
            raise ValueError(f"{name}: `y_pred` must have rank 2 when `multi_label=True`. "
                             f"Received: y_pred.shape={y_pred.shape}")
    else:
        y_pred, y_true, w = y_pred.reshape(-1, 1), y_true.reshape(-1, 1), w.reshape(-1, 1)
    thresholds = np.asarray(thresholds, np.float32)
    pos_w = np.where(y_true != 0, w, 0).astype(np.float64)  # (N, L)
    neg_w = np.where(y_true != 0, 0, w).astype(np.float64)
    if evenly:
        n = len(thresholds)
        # bucket b holds predictions in (t_b, t_b+1]; a prediction counts at every t <= t_b
        bucket = np.ceil(np.clip(y_pred, 0, 1) * np.float32(n - 1)) - 1
        if thresholds[0] < 0 or thresholds[-1] > 1:  # endpoints -eps and 1 + eps
            bucket = np.maximum(bucket, 0)
        bucket, labels = bucket.astype(np.int64), y_pred.shape[1]
        valid = bucket >= 0  # a prediction of exactly 0 exceeds no threshold of [0, ...]
        flat = (bucket * labels + np.arange(labels))[valid]
        tp, fp = (np.bincount(flat, wts[valid], n * labels).reshape(n, labels)
                  for wts in (pos_w, neg_w))
        tp, fp = np.cumsum(tp[::-1], 0)[::-1], np.cumsum(fp[::-1], 0)[::-1]
    else:
        positive = y_pred[None] > thresholds[:, None, None]  # (T, N, L)
        tp = (positive * pos_w).sum(axis=1)
        fp = (positive * neg_w).sum(axis=1)
    fn, tn = pos_w.sum(axis=0) - tp, neg_w.sum(axis=0) - fp
    if not multi_label:
        tp, fp, tn, fn = tp[:, 0], fp[:, 0], tn[:, 0], fn[:, 0]
    return tp, fp, tn, fn


_COUNT_NAMES = ("true_positives", "false_positives", "true_negatives", "false_negatives")


def _accumulate(metric, names, values, unit):
    """Add each value to the metric's attribute of that name (None: start from zeros)."""
    for name, value in zip(names, values):
        old = getattr(metric, name)
        old = np.zeros_like(value) if old is None else old
        if np.shape(old) != np.shape(value):
            raise ValueError(f"{metric.name}: this batch gives {np.shape(value)[-1]} {unit}, "
                             f"earlier batches gave {np.shape(old)[-1]}")
        setattr(metric, name, old + value)


def _divide_no_nan(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def _scalar_or_array(values):
    """One threshold -> a float, several -> a float32 array, as Keras's results."""
    return float(values[0]) if len(values) == 1 else np.asarray(values, np.float32)


class _ConfusionMetric(Metric):
    """Accumulates the counts named in `_counts` ("true_positives", ...) per threshold."""
    _counts = ()

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.init_thresholds = thresholds
        self.top_k, self.class_id = top_k, class_id
        self.thresholds = _parse_thresholds(thresholds, 0.5 if top_k is None else _NEG_INF)
        self.reset_state()

    def reset_state(self):
        for count in self._counts:
            setattr(self, count, np.zeros(len(self.thresholds)))

    def update_state(self, y_true, y_pred, sample_weight=None):
        counts = confusion_counts(self.name, y_true, y_pred, self.thresholds,
                                  _evenly_spaced(self.thresholds), self.top_k, self.class_id,
                                  sample_weight)
        new = dict(zip(_COUNT_NAMES, counts))
        _accumulate(self, self._counts, [new[c] for c in self._counts], "thresholds")

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


class _ConditionCount(_ConfusionMetric):
    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds, name=name, dtype=dtype)

    def result(self):
        return _scalar_or_array(getattr(self, self._counts[0]))


class TruePositives(_ConditionCount):
    """Weighted count of y_true == 1 and y_pred > threshold (one result per threshold)."""
    _counts = ("true_positives",)


class FalsePositives(_ConditionCount):
    """Weighted count of y_true == 0 and y_pred > threshold."""
    _counts = ("false_positives",)


class TrueNegatives(_ConditionCount):
    """Weighted count of y_true == 0 and y_pred <= threshold."""
    _counts = ("true_negatives",)


class FalseNegatives(_ConditionCount):
    """Weighted count of y_true == 1 and y_pred <= threshold."""
    _counts = ("false_negatives",)


class Precision(_ConfusionMetric):
    """tp / (tp + fp), y_pred > thresholds counting as positive (default 0.5; a list gives
    one result per threshold). `top_k` keeps only the k largest scores of each sample
    (then the default threshold lets every kept score count); `class_id` looks at one
    column of (samples, classes) inputs."""

    _direction = "up"
    _counts = ("true_positives", "false_positives")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name="precision", dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)

    def result(self):
        return _scalar_or_array(_divide_no_nan(self.true_positives,
                                               self.true_positives + self.false_positives))

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k, "class_id": self.class_id}


class Recall(Precision):
    """tp / (tp + fn), with Precision's `thresholds`, `top_k` and `class_id`."""
    _counts = ("true_positives", "false_negatives")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name="recall", dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)

    def result(self):
        return _scalar_or_array(_divide_no_nan(self.true_positives,
                                               self.true_positives + self.false_negatives))


class AUC(Metric):
    """Area under the ROC, precision-recall or precision-recall-gain ("PRGAIN") curve,
    approximated over `num_thresholds` evenly spaced thresholds (or the given `thresholds`) as
    Keras 3 does: a Riemann sum
    ("interpolation": trapezoids for ROC, Davis & Goadrich's interpolation for PR;
    "minoring"/"majoring": lower/upper rectangles). `multi_label=True` computes one AUC per
    column of (samples, labels) inputs and averages them (weighted by `label_weights`)."""

    _direction = "up"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name="auc", dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        super().__init__(name, dtype)
        self.curve = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}.get(str(curve).lower())
        if self.curve is None:
            raise ValueError(f'{name}: invalid AUC curve value: "{curve}". Expected values are '
                             '["PR", "ROC", "PRGAIN"]')
        if str(summation_method).lower() not in ("interpolation", "majoring", "minoring"):
            raise ValueError(f'{name}: invalid AUC summation method value: "{summation_method}". '
                             'Expected values are ["interpolation", "majoring", "minoring"]')
        self.summation_method = str(summation_method).lower()
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(inner) + 2
            self._evenly = _evenly_spaced([0.0] + inner + [1.0])
        else:
            if num_thresholds <= 1:
                raise ValueError(f"{name}: argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly = True
        eps = 1e-7  # Keras's backend.epsilon(): end points just outside [0, 1]
        self.thresholds = [0.0 - eps] + inner + [1.0 + eps]
        if num_labels and not multi_label:
            raise ValueError(f"{name}: `num_labels` is needed only when `multi_label` is True.")
        self.multi_label, self.num_labels = bool(multi_label), num_labels
        self.label_weights = None if label_weights is None else np.asarray(label_weights, np.float64)
        self.from_logits = bool(from_logits)
        self.reset_state()

    def reset_state(self):
        """Zero counts of shape (thresholds,) or (thresholds, labels); with multi_label and
        no num_labels, None until the first batch shows the number of labels."""
        zeros = None
        if not self.multi_label or self.num_labels:
            shape = (self.num_thresholds,) + ((self.num_labels,) if self.multi_label else ())
            zeros = np.zeros(shape)
        self.true_positives = self.false_positives = zeros
        self.true_negatives = self.false_negatives = zeros

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, np.float32)
        if self.from_logits:
            y_pred = (1.0 / (1.0 + np.exp(-y_pred))).astype(np.float32)
        counts = confusion_counts(self.name, y_true, y_pred, self.thresholds, self._evenly,
                                  sample_weight=sample_weight, multi_label=self.multi_label,
                                  label_weights=None if self.multi_label else self.label_weights)
        _accumulate(self, _COUNT_NAMES, counts, "labels")

    def _average(self, by_threshold):
        """Sum the per-interval terms; average the labels' areas when multi_label."""
        by_label = by_threshold.sum(axis=0)
        if not self.multi_label:
            return float(by_label)
        if self.label_weights is None:
            return float(by_label.mean())
        return float(_divide_no_nan((by_label * self.label_weights).sum(), self.label_weights.sum()))

    def _interpolate_pr_auc(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        prec_slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - prec_slope * p[1:]
        safe_p_ratio = np.where((p[:-1] > 0) & (p[1:] > 0),
                                _divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return self._average(_divide_no_nan(prec_slope * (dtp + intercept * np.log(safe_p_ratio)),
                                            np.maximum(tp[1:] + fn[1:], 0)))

    def result(self):
        if self.true_positives is None:
            return 0.0
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc()
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:  # PRGAIN (Flach & Kull): gains scaled by P/N; no true positives: recall gain 0,
            # precision gain 1; a negative recall gain counts as 0 (Keras's choices)
            scale = _divide_no_nan(tp + fn, tn + fp)
            x = np.where(tp == 0, 0.0, np.maximum(1.0 - scale * _divide_no_nan(fn, tp), 0.0))
            y = np.where(tp == 0, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
        heights = {"interpolation": (y[:-1] + y[1:]) / 2, "minoring": np.minimum(y[:-1], y[1:]),
                   "majoring": np.maximum(y[:-1], y[1:])}[self.summation_method]
        return self._average((x[:-1] - x[1:]) * heights)

    def get_config(self):
        config = {**super().get_config(), "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": self.multi_label, "num_labels": self.num_labels,
                  "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
                  "from_logits": self.from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


class FBetaScore(Metric):
    """F-beta of (samples, classes) inputs: (1 + beta^2) * p * r / (beta^2 * p + r) per
    class, y_pred counting as positive where it is the sample's maximum (threshold=None,
    and not 0) or > threshold. `average`: None (one score per class), "micro" (counts
    pooled over classes), "macro" (mean of the class scores), "weighted" (mean weighted by
    each class's support)."""

    _direction = "up"

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name, dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("Invalid `average` argument value. Expected one of: {None, 'micro', "
                             f"'macro', 'weighted'}}. Received: average={average}")
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be a Python float > 0. "
                             f"Received: beta={beta!r}")
        if threshold is not None and (not isinstance(threshold, float) or not 0.0 < threshold <= 1.0):
            raise ValueError("Invalid `threshold` argument value. It should be a Python float "
                             f"with 0 < threshold <= 1. Received: threshold={threshold!r}")
        self.average, self.beta, self.threshold = average, beta, threshold
        self.reset_state()

    def reset_state(self):
        self.true_positives = self.false_positives = self.false_negatives = None
        self.intermediate_weights = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)
        if y_pred.ndim != 2 or y_true.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects 2D inputs with shape (batch_size, "
                             f"output_dim). Received input shapes: y_pred.shape={y_pred.shape} "
                             f"and y_true.shape={y_true.shape}.")
        _check_same(self.name, y_true, y_pred)
        if self.threshold is None:
            pred = (y_pred >= y_pred.max(axis=-1, keepdims=True)) & (np.abs(y_pred) > 1e-9)
        else:
            pred = y_pred > self.threshold
        pred = pred.astype(np.float64)
        w = np.ones((len(y_true), 1)) if sample_weight is None else \
            np.asarray(sample_weight, np.float64).reshape(-1, 1)
        axis = None if self.average == "micro" else 0
        new = [((v * w).sum(axis=axis)) for v in
               (pred * y_true, pred * (1 - y_true), (1 - pred) * y_true, y_true * np.ones_like(pred))]
        _accumulate(self, ("true_positives", "false_positives", "false_negatives",
                           "intermediate_weights"), new, "classes")

    def result(self):
        if self.true_positives is None:
            return 0.0
        eps = 1e-7  # Keras's backend.epsilon()
        tp = self.true_positives
        precision = tp / (tp + self.false_positives + eps)
        recall = tp / (tp + self.false_negatives + eps)
        b2 = self.beta ** 2
        f = precision * recall / (b2 * precision + recall + eps) * (1 + b2)
        if self.average == "weighted":
            weights = self.intermediate_weights / (self.intermediate_weights.sum() + eps)
            return float((f * weights).sum())
        if self.average is not None:
            return float(np.mean(f))
        return np.asarray(f, np.float32)

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """FBetaScore with beta = 1: 2 * p * r / (p + r)."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average, 1.0, threshold, name, dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config


# ----------------------------------------------------------------------------------
# Sensitivity / specificity family (Keras 3: SensitivitySpecificityBase). Counts at
# `num_thresholds` thresholds evenly spaced over [0, 1] (one threshold, 0.5, when
# num_thresholds == 1); the result is the best `dependent` value among the thresholds whose
# `constrained` value is >= the target (0 when none is).
# ----------------------------------------------------------------------------------
class _SensitivitySpecificityBase(Metric):
    _direction = "up"
    _target = None  # the argument's name: "specificity", "sensitivity", "recall", "precision"

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        if value < 0 or value > 1:
            raise ValueError(f"Argument `{self._target}` must be in the range [0, 1]. "
                             f"Received: {self._target}={value}")
        if num_thresholds <= 0:
            raise ValueError("Argument `num_thresholds` must be an integer > 0. "
                             f"Received: num_thresholds={num_thresholds}")
        super().__init__(name, dtype)
        self.value = value
        setattr(self, self._target, value)
        self.num_thresholds, self.class_id = num_thresholds, class_id
        if num_thresholds == 1:
            self.thresholds, self._evenly = [0.5], False
        else:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.thresholds, self._evenly = [0.0] + inner + [1.0], True
        self.reset_state()

    def reset_state(self):
        for count in _COUNT_NAMES:
            setattr(self, count, np.zeros(len(self.thresholds)))

    def update_state(self, y_true, y_pred, sample_weight=None):
        counts = confusion_counts(self.name, y_true, y_pred, self.thresholds, self._evenly,
                                  class_id=self.class_id, sample_weight=sample_weight)
        _accumulate(self, _COUNT_NAMES, counts, "thresholds")

    def _rates(self):
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        return {"sensitivity": _divide_no_nan(tp, tp + fn), "recall": _divide_no_nan(tp, tp + fn),
                "specificity": _divide_no_nan(tn, tn + fp), "precision": _divide_no_nan(tp, tp + fp)}

    def result(self):
        rates = self._rates()
        # compared in float32, as Keras's variables are: 2/3 meets a target of 0.6666667
        feasible = rates[self._target].astype(np.float32) >= np.float32(self.value)
        return float(np.max(np.where(feasible, rates[self._dependent], 0.0), initial=0.0))

    def get_config(self):
        return {**super().get_config(), "class_id": self.class_id,
                "num_thresholds": self.num_thresholds, self._target: self.value}


class SensitivityAtSpecificity(_SensitivitySpecificityBase):
    """Best sensitivity (recall) at thresholds where specificity >= `specificity`."""
    _target, _dependent = "specificity", "sensitivity"

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)


class SpecificityAtSensitivity(_SensitivitySpecificityBase):
    """Best specificity at thresholds where sensitivity >= `sensitivity`."""
    _target, _dependent = "sensitivity", "specificity"

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)


class PrecisionAtRecall(_SensitivitySpecificityBase):
    """Best precision at thresholds where recall >= `recall`."""
    _target, _dependent = "recall", "precision"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)


class RecallAtPrecision(_SensitivitySpecificityBase):
    """Best recall at thresholds where precision >= `precision`."""
    _target, _dependent = "precision", "recall"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)


# ----------------------------------------------------------------------------------
# Regression, hinge and probabilistic metrics (Keras 3: regression_metrics.py,
# hinge_metrics.py, probabilistic_metrics.py, correlation_metrics.py). The loss-backed
# ones are the weighted mean of the faltung.losses function of the same name.
# ----------------------------------------------------------------------------------
def _l2_normalize(x, axis):
    """Keras's ops.normalize(order=2): x * min(rsqrt(sum(x^2)), 1 / eps), so zeros stay 0."""
    with np.errstate(divide="ignore"):
        inv = 1.0 / np.sqrt((x * x).sum(axis=axis, keepdims=True))
    return x * np.minimum(inv, 1e7)


def _float_pair(y_true, y_pred, name):
    """float64 pair at the same rank (Keras's squeeze_or_expand_to_same_rank), then of the same
    shape: a ValueError naming `name` instead of numpy broadcasting (4, 1) against (4, 3)."""
    y_true, y_pred = _same_rank(np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64))
    _check_same(name, y_true, y_pred)
    return y_true, y_pred


def cosine_similarity(y_true, y_pred, axis=-1):
    """sum(l2_normalize(y_true) * l2_normalize(y_pred), axis): +1 for the same direction
    (keras.metrics.CosineSimilarity's function; the loss of that name is its negative)."""
    y_true, y_pred = _float_pair(y_true, y_pred, "cosine_similarity")
    return (_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis)).sum(axis=axis)


def pearson_correlation(y_true, y_pred, axis=-1):
    """Pearson's r along `axis` (population std, no epsilon: a constant row gives nan, as
    Keras's)."""
    y_true, y_pred = _float_pair(y_true, y_pred, "pearson_correlation")
    t = y_true - y_true.mean(axis=axis, keepdims=True)
    p = y_pred - y_pred.mean(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = t / t.std(axis=axis, keepdims=True)
        p = p / p.std(axis=axis, keepdims=True)
    return (t * p).mean(axis=axis)


def concordance_correlation(y_true, y_pred, axis=-1):
    """Lin's concordance correlation along `axis`, with Keras 3's formula: its covariance
    term centres y_true on y_pred's mean, 2 * mean((t - mean(p)) * (p - mean(p))) /
    (var(t) + var(p) + (mean(t) - mean(p))^2 + eps), and faltung keeps that for equal
    results."""
    y_true, y_pred = _float_pair(y_true, y_pred, "concordance_correlation")
    t_mean = y_true.mean(axis=axis, keepdims=True)
    p_mean = y_pred.mean(axis=axis, keepdims=True)
    norm = (y_true - t_mean).var(axis=axis, keepdims=True) + \
        (y_pred - p_mean).var(axis=axis, keepdims=True) + (t_mean - p_mean) ** 2
    covar = (y_true - p_mean) * (y_pred - p_mean)
    return (2.0 * covar / (norm + 1e-7)).mean(axis=axis)


class _NameDtypeConfig:
    """Keras's config for these wrappers: name and dtype only (CosineSimilarity's `axis` is
    not written either, so a restored one uses axis=-1, as in Keras)."""

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _loss_wrapper_class(cls_name, fn, default_name, doc, direction, **defaults):
    base = _wrapper_class(cls_name, fn, default_name, doc, direction, **defaults)
    return type(cls_name, (_NameDtypeConfig, base), {"__doc__": doc})


MeanAbsolutePercentageError = _loss_wrapper_class(
    "MeanAbsolutePercentageError", losses_module.mean_absolute_percentage_error,
    "mean_absolute_percentage_error",
    "100 * mean(abs((y_true - y_pred) / max(abs(y_true), eps)), axis=-1).", "down")
MeanSquaredLogarithmicError = _loss_wrapper_class(
    "MeanSquaredLogarithmicError", losses_module.mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error",
    "mean(square(log1p(max(y_pred, eps)) - log1p(max(y_true, eps))), axis=-1).", "down")
LogCoshError = _loss_wrapper_class("LogCoshError", losses_module.log_cosh, "logcosh",
                                   "mean(log(cosh(y_pred - y_true)), axis=-1).", "down")
Hinge = _loss_wrapper_class("Hinge", losses_module.hinge, "hinge",
                            "mean(max(1 - y_true * y_pred, 0), axis=-1); 0/1 labels become -1/1.",
                            "down")
SquaredHinge = _loss_wrapper_class("SquaredHinge", losses_module.squared_hinge, "squared_hinge",
                                   "mean(square(max(1 - y_true * y_pred, 0)), axis=-1).", "down")
CategoricalHinge = _loss_wrapper_class(
    "CategoricalHinge", losses_module.categorical_hinge, "categorical_hinge",
    "max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0).", "down")
KLDivergence = _loss_wrapper_class(
    "KLDivergence", losses_module.kl_divergence, "kl_divergence",
    "sum(y_true * log(y_true / y_pred), axis=-1), both clipped to [eps, 1].", "down")
Poisson = _loss_wrapper_class("Poisson", losses_module.poisson, "poisson",
                              "mean(y_pred - y_true * log(y_pred + eps), axis=-1).", "down")
CosineSimilarity = _loss_wrapper_class(
    "CosineSimilarity", cosine_similarity, "cosine_similarity",
    "Mean cosine similarity of y_true and y_pred along `axis` (1: same direction).", "up",
    axis=-1)


class PearsonCorrelation(MeanMetricWrapper):
    """Mean over samples of Pearson's r along `axis`."""

    _direction = "up"

    def __init__(self, name="pearson_correlation", dtype=None, axis=-1):
        super().__init__(pearson_correlation, name, dtype, axis=axis)
        self.axis = axis


class ConcordanceCorrelation(MeanMetricWrapper):
    """Mean over samples of the concordance correlation along `axis` (Keras's formula)."""

    _direction = "up"

    def __init__(self, name="concordance_correlation", dtype=None, axis=-1):
        super().__init__(concordance_correlation, name, dtype, axis=axis)
        self.axis = axis


class R2Score(Metric):
    """Coefficient of determination per column of (samples, outputs) inputs,
    1 - sum(w * (y - p)^2) / sum(w * (y - weighted mean(y))^2), aggregated by
    `class_aggregation`: "uniform_average" (mean of the columns), "variance_weighted_average"
    (weighted by each column's variance) or None (one score per column). `num_regressors`
    > 0 gives the adjusted R2 with n = the number of values seen (Keras counts elements).
    A column whose y_true is constant scores 0 (nan when also predicted exactly, as Keras)."""

    _direction = "up"

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score",
                 dtype=None):
        super().__init__(name, dtype)
        valid = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in valid:
            raise ValueError("Invalid value for argument `class_aggregation`. Expected one of "
                             f"{valid}. Received: class_aggregation={class_aggregation}")
        if num_regressors < 0:
            raise ValueError("Invalid value for argument `num_regressors`. Expected a value >= 0. "
                             f"Received: num_regressors={num_regressors}")
        self.class_aggregation, self.num_regressors = class_aggregation, num_regressors
        self.reset_state()

    def reset_state(self):
        """num_samples is a scalar; the per-column sums (Keras's variables squared_sum, sum,
        residual (attribute total_mse), count) are None until the first batch shows the
        number of columns, then keep that shape."""
        self.num_samples = 0.0
        self.squared_sum = self.sum = self.total_mse = self.count = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _same_rank(np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64))
        if y_true.ndim != 2 or y_pred.ndim != 2:
            raise ValueError("R2Score expects 2D inputs with shape (batch_size, output_dim). "
                             f"Received input shapes: y_pred.shape={y_pred.shape} and "
                             f"y_true.shape={y_true.shape}.")
        _check_same(self.name, y_true, y_pred)
        w = np.asarray(1.0 if sample_weight is None else sample_weight, np.float64)
        if w.ndim == 1:
            w = w[:, None]
        try:
            w = np.broadcast_to(w, y_true.shape)
        except ValueError:
            raise ValueError(f"{self.name}: `sample_weight` of shape {np.shape(sample_weight)} "
                             f"does not broadcast to y_true of shape {y_true.shape}") from None
        wy = y_true * w
        new = (wy.sum(axis=0), (y_true * wy).sum(axis=0), ((y_true - y_pred) ** 2 * w).sum(axis=0),
               w.sum(axis=0))
        _accumulate(self, ("sum", "squared_sum", "total_mse", "count"), new, "columns")
        self.num_samples += y_true.size

    def result(self):
        if self.sum is None:
            return 0.0  # Keras has no variables to read yet; faltung reports 0
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = self.sum / self.count
            total = self.squared_sum - self.sum * mean
            raw = 1.0 - self.total_mse / total
        raw = np.where(np.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            r2 = raw.mean()
        elif self.class_aggregation == "variance_weighted_average":
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = (total * raw).sum() / total.sum()
        else:
            r2 = raw
        if self.num_regressors != 0:
            n, p = self.num_samples, self.num_regressors
            if p > n - 1:
                warnings.warn("More independent predictors than datapoints in adjusted R2 score. "
                              "Falling back to standard R2 score.", stacklevel=2)
            elif p == n - 1:
                warnings.warn("Division by zero in Adjusted R2 score. Falling back to standard "
                              "R2 score.", stacklevel=2)
            else:
                r2 = 1.0 - (1.0 - r2) * (n - 1.0) / (n - p - 1.0)
        return float(r2) if np.ndim(r2) == 0 else np.asarray(r2, np.float32)

    def get_config(self):
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


# ----------------------------------------------------------------------------------
# Intersection over union (Keras 3: iou_metrics.py). A (num_classes, num_classes) confusion
# matrix, rows = true class, columns = predicted class, accumulates over batches. Its dtype
# is the metric's: "int32" by default, so float labels and sample weights are truncated
# toward zero (Keras warns about float weights); dtype="float32" keeps fractional weights.
# ----------------------------------------------------------------------------------
def _is_int_dtype(dtype):
    return np.dtype(dtype).kind in "iu"


class _IoUBase(Metric):
    _direction = "up"

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True,
                 sparse_y_pred=True, axis=-1):
        dtype = dtype or "int32"
        super().__init__(name, "int32" if dtype == "int" else str(np.dtype(dtype)))
        self.num_classes, self.ignore_class = num_classes, ignore_class
        self.sparse_y_true, self.sparse_y_pred, self.axis = sparse_y_true, sparse_y_pred, axis
        self.reset_state()

    def reset_state(self):
        self.total_cm = np.zeros((self.num_classes, self.num_classes), np.dtype(self.dtype))

    def _cast(self, x):
        """Values in the metric's dtype: truncated toward zero when it is an integer type."""
        x = np.asarray(x, np.float64)
        return np.trunc(x) if _is_int_dtype(self.dtype) else x

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.sparse_y_true:
            y_true = np.argmax(np.asarray(y_true), axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = np.argmax(np.asarray(y_pred), axis=self.axis)
        y_true, y_pred = self._cast(y_true).reshape(-1), self._cast(y_pred).reshape(-1)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"{self.name}: y_true and y_pred must hold as many class ids. "
                             f"Received {y_true.size} and {y_pred.size} (after argmax and "
                             "flattening)")
        if sample_weight is None:
            w = np.ones_like(y_true)
        else:
            if _is_int_dtype(self.dtype) and getattr(sample_weight, "dtype", None) is not None \
                    and np.asarray(sample_weight).dtype.kind == "f":
                warnings.warn("You are passing weight as `float`, but dtype is `int`. This may "
                              "result in an incorrect weight due to type casting Consider using "
                              "integer weights.", stacklevel=2)
            w = self._cast(sample_weight)
            if w.ndim > 1:
                w = w.reshape(-1)
            try:
                w = np.broadcast_to(w, y_true.shape)
            except ValueError:
                raise ValueError(f"{self.name}: `sample_weight` of shape "
                                 f"{np.shape(sample_weight)} does not broadcast to the "
                                 f"{y_true.size} flattened labels") from None
        n = self.num_classes
        keep = (y_true >= 0) & (y_true < n) & (y_pred >= 0) & (y_pred < n)
        if self.ignore_class is not None:
            keep &= y_true != self.ignore_class
        cm = np.zeros((n, n))
        np.add.at(cm, (y_true[keep].astype(np.int64), y_pred[keep].astype(np.int64)), w[keep])
        self.total_cm = (self.total_cm + cm).astype(self.total_cm.dtype)


class IoU(_IoUBase):
    """Mean over `target_class_ids` of tp / (tp + fp + fn) per class, classes whose
    denominator is 0 left out. Integer class ids (`sparse_y_true` / `sparse_y_pred` False:
    argmax over `axis` first); ids outside [0, num_classes) and `ignore_class` (y_true) are
    skipped."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, name, dtype, ignore_class, sparse_y_true, sparse_y_pred, axis)
        if max(target_class_ids) >= num_classes:
            raise ValueError(f"Target class id {max(target_class_ids)} is out of range, which is "
                             f"[0, {num_classes}).")
        self.target_class_ids = list(target_class_ids)

    def result(self):
        cm = self.total_cm.astype(np.float64)
        tp = np.diag(cm)
        denominator = cm.sum(axis=0) + cm.sum(axis=1) - tp
        ids = np.asarray(self.target_class_ids, np.int64)
        tp, denominator = tp[ids], denominator[ids]
        valid = denominator > 1e-9
        iou = np.where(valid, tp / (denominator + 1e-7), 0.0)
        return float(iou.sum() / (valid.sum() + 1e-7))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "target_class_ids": self.target_class_ids, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}


class BinaryIoU(IoU):
    """IoU of two classes: y_pred >= `threshold` predicts class 1 (y_true is cast to the
    metric's dtype, so 0.7 is class 0 with the default int32)."""

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        super().__init__(2, target_class_ids, name, dtype)
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = (np.asarray(y_pred, np.float32) >= np.float32(self.threshold)).astype(np.float64)
        super().update_state(self._cast(y_true), y_pred, sample_weight)

    def get_config(self):
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold,
                "name": self.name, "dtype": self.dtype}


class MeanIoU(IoU):
    """IoU averaged over all `num_classes` classes."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True,
                 sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, list(range(num_classes)), name, dtype, ignore_class,
                         sparse_y_true, sparse_y_pred, axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class OneHotIoU(IoU):
    """IoU with one-hot y_true (argmax over `axis`) and scores y_pred (unless sparse_y_pred)."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None,
                 sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, target_class_ids, name, dtype, ignore_class, False,
                         sparse_y_pred, axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "target_class_ids": self.target_class_ids,
                "name": self.name, "dtype": self.dtype, "ignore_class": self.ignore_class,
                "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class OneHotMeanIoU(MeanIoU):
    """MeanIoU with one-hot y_true and scores y_pred (unless sparse_y_pred)."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_pred=False,
                 axis=-1):
        super().__init__(num_classes, name, dtype, ignore_class, False, sparse_y_pred, axis)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype,
                "ignore_class": self.ignore_class, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}


class _AutoAccuracy(MeanMetricWrapper):
    """"accuracy"/"acc": binary, sparse or categorical accuracy chosen at the first update."""

    _direction = "up"

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(None, name, dtype)
        self.resolved = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        self._resolve(y_true.shape, y_pred.shape)
        super().update_state(y_true, y_pred, sample_weight)

    def _resolve(self, t_shape, p_shape):
        """Choose the accuracy from the shapes of the first batch (a device-resident model's
        metrics call this with the shapes alone)."""
        if self._fn is not None:
            return
        t_last = t_shape[-1] if t_shape else 1
        p_last = p_shape[-1] if p_shape else 1
        if p_last == 1:
            self._fn, self.resolved = binary_accuracy, "binary_accuracy"
        elif len(t_shape) < len(p_shape) or (t_last == 1 and p_last > 1):
            self._fn, self.resolved = sparse_categorical_accuracy, "sparse_categorical_accuracy"
        else:
            self._fn, self.resolved = categorical_accuracy, "categorical_accuracy"


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
    "auc": AUC, "f1_score": F1Score, "f_beta_score": FBetaScore,
    "true_positives": TruePositives, "false_positives": FalsePositives,
    "true_negatives": TrueNegatives, "false_negatives": FalseNegatives,
    # Keras's ALL_OBJECTS_DICT: each class's snake_case name, and these upper-case aliases
    "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy, "MSE": MeanSquaredError,
    "MAE": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
    "cosine_similarity": CosineSimilarity, "log_cosh_error": LogCoshError, "r2_score": R2Score,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "kl_divergence": KLDivergence, "poisson": Poisson,
    "pearson_correlation": PearsonCorrelation, "concordance_correlation": ConcordanceCorrelation,
    "precision_at_recall": PrecisionAtRecall, "recall_at_precision": RecallAtPrecision,
    "sensitivity_at_specificity": SensitivityAtSpecificity,
    "specificity_at_sensitivity": SpecificityAtSensitivity,
    "io_u": IoU, "binary_io_u": BinaryIoU, "mean_io_u": MeanIoU, "one_hot_io_u": OneHotIoU,
    "one_hot_mean_io_u": OneHotMeanIoU,
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
        m.name = identifier  # Keras names a metric given as a string by that string
        return m
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(f"Could not interpret metric identifier: {identifier}")
