"""Losses with Keras 3 names, arguments and reductions, plus faltung's `value_and_grad`.

A loss reduces one axis of `y_pred` (the last, or `axis`) to per-sample values, then the
reduction ("sum_over_batch_size" = "mean", "sum", None = "none") turns those into the
scalar the model reports. `value_and_grad` also returns dL/dy_pred (same shape as
y_pred, float32 for float32 input, float64 for float64 input) consistent with that
reduction and the sample weights; the training loop starts backward from it.

Non-logit crossentropies clip probabilities to [1e-7, 1 - 1e-7] as Keras does.
"""
import numpy as np

from faltung._loss_math import EPSILON, bce, elementwise, probs_ce, softmax_ce
from faltung.backend import to_snake_case
from faltung.ops.ctc import ctc_loss, ctc_loss_and_grad

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _float_dtype(y_pred):
    return np.float64 if np.asarray(y_pred).dtype == np.float64 else np.float32


def _shape_error(name, t, p, extra=""):
    return ValueError(f"{name}: Arguments `target` and `output` must have the same shape{extra}. "
                      f"Received: target.shape={tuple(t.shape)}, output.shape={tuple(p.shape)}")


def _same_rank(name, t, p):
    """Keras's squeeze_or_expand_to_same_rank, then an exact shape check."""
    if t.ndim == p.ndim - 1 and p.shape[-1] == 1:
        t = t[..., None]
    elif p.ndim == t.ndim - 1 and t.shape[-1] == 1:
        t = t[..., 0]
    if t.shape != p.shape:
        raise _shape_error(name, t, p)
    return t


# ----------------------------------------------------------------------------------
# Loss classes
# ----------------------------------------------------------------------------------
class Loss:
    """Base class. Subclasses implement `_forward(y_true, y_pred, need_grad, scale)`
    returning (values, grad, mask): values per sample, grad = scale * d(values)/d(y_pred)
    summed per sample (or None), mask (bool, values' shape) of the counted values or None.
    A user subclass that only overrides `call(y_true, y_pred)` gets its gradient by
    central differences (faltung-only behaviour, slow: 2*C calls of `call`)."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in _REDUCTIONS:
            raise ValueError("Invalid value for argument `reduction`. Expected one of "
                             f"{_REDUCTIONS}. Received: reduction={reduction}")
        self.name = name or to_snake_case(type(self).__name__)
        self.reduction = reduction
        self.dtype = dtype
        self._general = False  # True: gradient weights need the values (masks, custom fns)

    # -- per-sample values -------------------------------------------------------------
    def call(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        return self._forward(y_true, y_pred.astype(_float_dtype(y_pred), copy=False), False, 1.0)[0]

    def _forward(self, y_true, y_pred, need_grad, scale):
        fn = self.call
        t = np.asarray(y_true)
        p = y_pred.astype(np.float64)
        values = np.asarray(fn(t, p), dtype=np.float64)
        if values.shape != p.shape[:-1]:
            raise ValueError(f"{self.name}: a loss function must return one value per sample, "
                             f"shape {p.shape[:-1]} for y_pred.shape={p.shape}; received shape "
                             f"{values.shape}")
        if not need_grad:
            return values, None, None
        g = _numeric_grad(lambda q: np.asarray(fn(t, q), np.float64), p, values.shape)
        return values, g * scale, None

    # -- reduced loss ------------------------------------------------------------------
    # A loss that reads the model output's mask itself (CTC: per-sample lengths) says so here;
    # the trainer then passes `mask=` instead of turning the mask into sample weights.
    takes_output_mask = False

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        return self._run(y_true, y_pred, sample_weight, False, mask)[0]

    def value_and_grad(self, y_true, y_pred, sample_weight=None, mask=None):
        """(loss, dL/dy_pred). With reduction None/"none", loss is the per-sample array and
        the gradient is that of its (weighted) sum. `mask` only for takes_output_mask losses."""
        return self._run(y_true, y_pred, sample_weight, True, mask)

    def _run(self, y_true, y_pred, sample_weight, need_grad, mask=None):
        if mask is not None and not self.takes_output_mask:
            raise ValueError(f"{self.name}: this loss does not read an output mask; weigh the "
                             "samples with `sample_weight` instead")
        y_pred = np.asarray(y_pred)
        dt = _float_dtype(y_pred)
        p = y_pred.astype(dt, copy=False)
        red = self.reduction
        mean = red in ("sum_over_batch_size", "mean", "mean_with_sample_weight")
        # fast: the gradient scale is one number known before the values are computed
        fast = sample_weight is None and not self._general
        scale = 1.0
        if fast and mean and need_grad:
            scale = 1.0 / max(int(np.prod(self._values_shape(p))), 1)
        values, g, mask = self._forward(y_true, p, need_grad, scale)
        values = np.asarray(values, dtype=dt)
        w = None
        if sample_weight is not None:
            w = _match_weight(self.name, np.asarray(sample_weight, dtype=dt), values)
        if mask is not None:
            mw = mask.astype(dt)
            if red in ("sum_over_batch_size", "mean"):
                mw *= mask.size / (mask.sum() + EPSILON)
            w = mw if w is None else w * mw
        wvalues = values if w is None else values * w
        divisor = max(values.size, 1)
        if red == "mean_with_sample_weight" and sample_weight is not None:
            divisor = float(np.sum(w))
        if red in ("none", None):
            loss = wvalues
        elif red == "sum":
            loss = float(wvalues.sum())
        else:
            loss = float(wvalues.sum() / divisor) if divisor else 0.0
        if not need_grad:
            return loss, None
        if not fast:
            dv = np.ones_like(values) if w is None else np.broadcast_to(w, values.shape)
            if mean:
                dv = dv / divisor if divisor else dv * 0.0
            g = g * dv.reshape(dv.shape + (1,) * (g.ndim - dv.ndim))
        axis = getattr(self, "axis", -1)
        if axis not in (-1, None) and g.ndim > 1:
            g = np.moveaxis(g, -1, axis)
        return loss, np.asarray(g, dtype=dt).reshape(y_pred.shape)

    def _values_shape(self, p):
        return p.shape[:-1]

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"



def _match_weight(name, w, values):
    """Keras's squeeze_or_expand_to_same_rank for sample weights, then broadcasting."""
    if w.ndim == values.ndim + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    while w.ndim < values.ndim:
        w = w[..., None]
    try:
        return np.broadcast_to(w, values.shape)
    except ValueError:
        raise ValueError(f"{name}: `sample_weight` of shape {w.shape} cannot be broadcast to the "
                         f"per-sample losses of shape {values.shape}") from None


def _numeric_grad(fn, p, vshape, h=1e-5):
    """Central differences of per-sample values w.r.t. each entry of the last axis."""
    g = np.empty(p.shape, np.float64)
    q = p.copy()
    for k in range(p.shape[-1]):
        q[..., k] = p[..., k] + h
        up = fn(q)
        q[..., k] = p[..., k] - h
        down = fn(q)
        q[..., k] = p[..., k]
        g[..., k] = np.broadcast_to((up - down) / (2 * h), vshape)
    return g


def _move_axis(axis, *arrays):
    if axis in (-1, None):
        return arrays
    return tuple(np.moveaxis(a, axis, -1) for a in arrays)


class CategoricalCrossentropy(Loss):
    """Crossentropy between one-hot (or soft) targets and predicted probabilities/logits.

    Args:
        from_logits: whether y_pred holds logits (a softmax is applied) or probabilities.
        label_smoothing: float in [0, 1]; targets become t * (1 - ls) + ls / num_classes.
        axis: the class axis. reduction, name: as every loss.
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.label_smoothing = float(label_smoothing)
        self.axis = axis

    def _forward(self, y_true, y_pred, need_grad, scale):
        t = np.asarray(y_true, dtype=y_pred.dtype)
        if t.shape != y_pred.shape:
            raise _shape_error(self.name, t, y_pred)
        t, p = _move_axis(self.axis, t, y_pred)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / t.shape[-1]
        if self.from_logits:
            values, g = softmax_ce(p, t, False, scale, need_grad)
        else:
            values, g = probs_ce(p, t, need_grad)
            if g is not None and scale != 1.0:
                g *= scale
        return values, (g if need_grad else None), None

    def _values_shape(self, p):
        return np.delete(np.array(p.shape), self.axis if self.axis is not None else -1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class SparseCategoricalCrossentropy(Loss):
    """Crossentropy between integer labels (shape y_pred.shape[:-1], or with a trailing 1)
    and predicted probabilities/logits over the last axis.

    Args:
        from_logits: whether y_pred holds logits.
        ignore_class: a label value whose samples count neither in the loss nor in the
            "sum_over_batch_size" divisor (Keras semantics).
    """

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self._general = ignore_class is not None

    def _forward(self, y_true, y_pred, need_grad, scale):
        t = np.asarray(y_true)
        lead, c = y_pred.shape[:-1], y_pred.shape[-1]
        if t.shape == lead + (1,) and t.ndim == y_pred.ndim:
            t = t[..., 0]
        if t.shape != lead:
            raise _shape_error(self.name, t, y_pred, " up until the last dimension")
        if t.dtype.kind == "f":
            if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
                raise ValueError(f"{self.name}: labels must be integers, received non-integer "
                                 f"values in target of shape {tuple(t.shape)}")
        t = t.astype(np.int64)
        mask = None
        if self.ignore_class is not None:
            mask = t != self.ignore_class
            t = np.where(mask, t, 0)
        if t.size and (t.min() < 0 or t.max() >= c):
            raise ValueError(f"{self.name}: labels must be in [0, {c}) for output.shape="
                             f"{tuple(y_pred.shape)}; received labels in [{t.min()}, {t.max()}] "
                             f"with target.shape={tuple(np.shape(y_true))}")
        if self.from_logits:
            values, g = softmax_ce(y_pred, t, True, scale, need_grad)
        else:
            onehot = np.zeros(y_pred.shape, y_pred.dtype)
            np.put_along_axis(onehot, t[..., None], 1.0, -1)
            values, g = probs_ce(y_pred, onehot, need_grad)
            if g is not None and scale != 1.0:
                g *= scale
        if mask is not None:
            values = values * mask
            if g is not None:
                g *= mask[..., None]
        return values, (g if need_grad else None), mask

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_class": self.ignore_class}


class BinaryCrossentropy(Loss):
    """Crossentropy for 0/1 targets; mean over the last axis.

    Args:
        from_logits: whether y_pred holds logits (a sigmoid is applied) or probabilities.
        label_smoothing: targets become t * (1 - ls) + 0.5 * ls.
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(name, reduction, dtype)
        self.from_logits = from_logits
        self.label_smoothing = float(label_smoothing)
        self.axis = axis

    def _forward(self, y_true, y_pred, need_grad, scale):
        t = _same_rank(self.name, np.asarray(y_true, dtype=y_pred.dtype), y_pred)
        t, p = _move_axis(self.axis, t, y_pred)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        values, g = bce(t, p, self.from_logits, need_grad)
        if g is not None and scale != 1.0:
            g *= scale
        return values, g, None

    def _values_shape(self, p):
        return np.delete(np.array(p.shape), self.axis if self.axis is not None else -1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class _Elementwise(Loss):
    _kind = None

    def _forward(self, y_true, y_pred, need_grad, scale):
        p = y_pred[:, None] if y_pred.ndim == 1 else y_pred
        t = _same_rank(self.name, np.asarray(y_true, dtype=p.dtype), p)
        values, g = elementwise(self._kind, t, p, need_grad, **self._kwargs())
        if g is not None and scale != 1.0:
            g *= scale  # g is a fresh array of elementwise's: no second full-size temporary
        return values, g, None

    def _values_shape(self, p):
        return p.shape[:-1] if p.ndim > 1 else p.shape

    def _kwargs(self):
        return {}


def _elementwise_class(cls_name, kind, default_name, doc):
    def __init__(self, reduction="sum_over_batch_size", name=default_name, dtype=None):
        Loss.__init__(self, name, reduction, dtype)
    return type(cls_name, (_Elementwise,), {"__init__": __init__, "_kind": kind, "__doc__": doc})


MeanSquaredError = _elementwise_class("MeanSquaredError", "mse", "mean_squared_error",
                                      "mean(square(y_pred - y_true), axis=-1).")
MeanAbsoluteError = _elementwise_class("MeanAbsoluteError", "mae", "mean_absolute_error",
                                       "mean(abs(y_pred - y_true), axis=-1).")
MeanAbsolutePercentageError = _elementwise_class(
    "MeanAbsolutePercentageError", "mape", "mean_absolute_percentage_error",
    "100 * mean(abs((y_true - y_pred) / max(abs(y_true), eps)), axis=-1).")
MeanSquaredLogarithmicError = _elementwise_class(
    "MeanSquaredLogarithmicError", "msle", "mean_squared_logarithmic_error",
    "mean(square(log1p(y_pred) - log1p(y_true)), axis=-1) (values floored at eps).")
Hinge = _elementwise_class("Hinge", "hinge", "hinge",
                           "mean(max(1 - y_true * y_pred, 0), axis=-1); 0/1 labels become -1/1.")
SquaredHinge = _elementwise_class("SquaredHinge", "squared_hinge", "squared_hinge",
                                  "mean(square(max(1 - y_true * y_pred, 0)), axis=-1).")
CategoricalHinge = _elementwise_class(
    "CategoricalHinge", "categorical_hinge", "categorical_hinge",
    "max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0).")
LogCosh = _elementwise_class("LogCosh", "log_cosh", "log_cosh",
                             "mean(log(cosh(y_pred - y_true)), axis=-1).")
KLDivergence = _elementwise_class("KLDivergence", "kl_divergence", "kl_divergence",
                                  "sum(y_true * log(y_true / y_pred), axis=-1), both clipped to [eps, 1].")
Poisson = _elementwise_class("Poisson", "poisson", "poisson",
                             "mean(y_pred - y_true * log(y_pred + eps), axis=-1).")


class Huber(_Elementwise):
    """mean(0.5 * e**2 if |e| <= delta else delta * |e| - 0.5 * delta**2, axis=-1), e = y_pred - y_true."""
    _kind = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(name, reduction, dtype)
        self.delta = float(delta)

    def _kwargs(self):
        return {"delta": self.delta}

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class LossFunctionWrapper(Loss):
    """Wraps fn(y_true, y_pred, **kwargs) -> per-sample values. If fn is one of this
    module's functions, the matching class computes the gradient; otherwise central
    differences do (faltung-only)."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name or getattr(fn, "__name__", "loss"), reduction, dtype)
        self.fn = fn
        self.fn_kwargs = kwargs
        cls = _FUNCTION_CLASSES.get(fn)
        self._inner = cls(reduction=reduction, **kwargs) if cls is not None else None
        if self._inner is not None:
            self._inner.name = self.name
            self._general = self._inner._general
        else:
            self._general = True

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.fn_kwargs)

    def _forward(self, y_true, y_pred, need_grad, scale):
        if self._inner is not None:
            return self._inner._forward(y_true, y_pred, need_grad, scale)
        return super()._forward(y_true, y_pred, need_grad, scale)

    def _values_shape(self, p):
        if self._inner is not None:
            return self._inner._values_shape(p)
        return p.shape[:-1]

    @property
    def takes_output_mask(self):
        return self._inner is not None and self._inner.takes_output_mask

    def _run(self, y_true, y_pred, sample_weight, need_grad, mask=None):
        if mask is not None and self.takes_output_mask:  # e.g. losses.ctc: the mask gives lengths
            return self._inner._run(y_true, y_pred, sample_weight, need_grad, mask)
        return super()._run(y_true, y_pred, sample_weight, need_grad, mask)

    def get_config(self):
        return {**super().get_config(), "fn": getattr(self.fn, "__name__", str(self.fn)), **self.fn_kwargs}


class CTC(Loss):
    """Connectionist temporal classification loss, as Keras 3's `keras.losses.CTC`.

    y_true: (batch, max_label_length) integer labels padded with 0 (0 is the blank class and
    is never a label; a sample's label length is its number of non-zero entries). y_pred:
    (batch, time, classes) logits, not softmax-normalised. The per-sample value is
    -log P(labels | y_pred) (`faltung.ops.ctc_loss`), +inf for a label its input cannot align.

    Per-sample input lengths (faltung-only; Keras's CTC assumes every input has full length):
    when the model's output carries a Keras mask (`Masking`, `Embedding(mask_zero=True)`,
    propagated through recurrent layers), a sample's logit length is its number of unmasked
    steps (the mask must be right-padded), instead of the mask weighting the loss."""

    takes_output_mask = True  # the trainer passes the output's mask to the loss itself

    def __init__(self, reduction="sum_over_batch_size", name="ctc", dtype=None):
        super().__init__(name, reduction, dtype)

    def _run(self, y_true, y_pred, sample_weight, need_grad, mask=None):
        if mask is not None:
            y_true = _CtcTarget(y_true, _lengths_from_mask(self.name, mask, np.shape(y_pred)))
        return super()._run(y_true, y_pred, sample_weight, need_grad)

    def _forward(self, y_true, y_pred, need_grad, scale):
        lengths = None
        if isinstance(y_true, _CtcTarget):
            y_true, lengths = y_true.labels, y_true.lengths
        t = np.asarray(y_true)
        if t.ndim != 2:
            raise ValueError("Targets `y_true` are expected to be a tensor of shape "
                             "`(batch_size, max_length)` in integer format. "
                             f"Received: y_true.shape={t.shape}")
        if y_pred.ndim != 3:
            raise ValueError("Logits `y_pred` are expected to be a tensor of shape "
                             "`(batch_size, max_length, num_classes)`. "
                             f"Received: y_pred.shape={y_pred.shape}")
        if lengths is None:
            lengths = np.full(y_pred.shape[0], y_pred.shape[1], np.int32)
        label_length = np.count_nonzero(t, axis=-1)
        if not need_grad:
            return ctc_loss(t, y_pred, label_length, lengths), None, None
        values, g = ctc_loss_and_grad(t, y_pred, label_length, lengths)
        if scale != 1.0:
            g *= scale
        return values, g, None

    def _values_shape(self, p):
        return p.shape[:1]


class _CtcTarget:
    """Labels plus per-sample logit lengths, handed from CTC._run to CTC._forward."""

    def __init__(self, labels, lengths):
        self.labels, self.lengths = labels, lengths


def _lengths_from_mask(name, mask, pred_shape):
    m = np.asarray(mask, bool)
    if m.shape != tuple(pred_shape[:2]):
        raise ValueError(f"{name}: expected the output mask of shape {tuple(pred_shape[:2])} "
                         f"(batch, time), received shape {m.shape}")
    lengths = m.sum(axis=1)
    if not np.array_equal(m, np.arange(m.shape[1]) < lengths[:, None]):
        raise ValueError(f"{name}: the output mask must be right-padded (each sample's unmasked "
                         "steps first) to give per-sample logit lengths")
    return lengths.astype(np.int32)


def ctc(y_true, y_pred):
    """Per-sample values of CTC (Keras's `keras.losses.ctc`)."""
    return CTC().call(y_true, y_pred)


class _AutoCrossentropy(Loss):
    """"crossentropy"/"ce": binary, sparse categorical or categorical crossentropy chosen
    from the shapes at the first call, as Keras's compile does (y_pred's last dim 1 ->
    binary; y_true of lower rank, or last dim 1 while y_pred's is > 1 -> sparse)."""

    def __init__(self, reduction="sum_over_batch_size", name="crossentropy", dtype=None):
        super().__init__(name, reduction, dtype)
        self.resolved = None

    def _resolve(self, y_true, y_pred):
        if self.resolved is None:
            t_shape, p_shape = np.shape(y_true), np.shape(y_pred)
            t_last = t_shape[-1] if t_shape else 1
            if p_shape[-1] == 1:
                cls = BinaryCrossentropy
            elif len(t_shape) < len(p_shape) or (t_last == 1 and p_shape[-1] > 1):
                cls = SparseCategoricalCrossentropy
            else:
                cls = CategoricalCrossentropy
            self.resolved = cls(reduction=self.reduction, name=self.name)
        return self.resolved

    def _run(self, y_true, y_pred, sample_weight, need_grad, mask=None):
        inner = self._resolve(y_true, y_pred)
        inner.reduction = self.reduction
        return inner._run(y_true, y_pred, sample_weight, need_grad, mask)

    def _forward(self, y_true, y_pred, need_grad, scale):
        return self._resolve(y_true, y_pred)._forward(y_true, y_pred, need_grad, scale)


# ----------------------------------------------------------------------------------
# Functions: per-sample values, as keras.losses.<name>(y_true, y_pred)
# ----------------------------------------------------------------------------------
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return CategoricalCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    if axis != -1:
        raise ValueError("sparse_categorical_crossentropy: only axis=-1 is supported")
    return SparseCategoricalCrossentropy(from_logits, ignore_class).call(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return BinaryCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    return Huber(delta).call(y_true, y_pred)


def _function(cls, fname):
    def fn(y_true, y_pred):
        return cls().call(y_true, y_pred)
    fn.__name__ = fname
    fn.__doc__ = f"Per-sample values of {cls.__name__}."
    return fn


mean_squared_error = _function(MeanSquaredError, "mean_squared_error")
mean_absolute_error = _function(MeanAbsoluteError, "mean_absolute_error")
mean_absolute_percentage_error = _function(MeanAbsolutePercentageError, "mean_absolute_percentage_error")
mean_squared_logarithmic_error = _function(MeanSquaredLogarithmicError, "mean_squared_logarithmic_error")
hinge = _function(Hinge, "hinge")
squared_hinge = _function(SquaredHinge, "squared_hinge")
categorical_hinge = _function(CategoricalHinge, "categorical_hinge")
log_cosh = _function(LogCosh, "log_cosh")
kl_divergence = _function(KLDivergence, "kl_divergence")
poisson = _function(Poisson, "poisson")
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
logcosh = log_cosh
kld = KLD = kullback_leibler_divergence = kl_divergence

_FUNCTION_CLASSES = {
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy, huber: Huber,
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError, hinge: Hinge,
    squared_hinge: SquaredHinge, categorical_hinge: CategoricalHinge, log_cosh: LogCosh,
    kl_divergence: KLDivergence, poisson: Poisson, ctc: CTC,
}

_ALIASES = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError, "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError, "msle": MeanSquaredLogarithmicError,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "huber": Huber, "huber_loss": Huber, "log_cosh": LogCosh, "logcosh": LogCosh,
    "kl_divergence": KLDivergence, "kld": KLDivergence, "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson, "ctc": CTC,
}
_CLASSES = {c.__name__: c for c in set(_ALIASES.values())}


def get(identifier):
    """Loss from a name ("mse", "categorical_crossentropy", ...), a class name, a dict
    {"class_name", "config"}, a Loss instance or class, or fn(y_true, y_pred) -> values."""
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Could not interpret loss identifier: {identifier}")
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier.lower() in ("crossentropy", "ce"):
            return _AutoCrossentropy(name=identifier)
        cls = _ALIASES.get(identifier) or _ALIASES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Could not interpret loss identifier: {identifier}. Valid names: "
                             f"{sorted(_ALIASES)}")
        loss = cls()
        if identifier in _ALIASES and identifier not in _CLASSES:
            loss.name = identifier
        return loss
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    raise ValueError(f"Could not interpret loss identifier: {identifier}")


def serialize(loss):
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config):
    return get(config)
