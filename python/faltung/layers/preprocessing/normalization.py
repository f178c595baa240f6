"""Normalization (Keras 3's keras.layers.Normalization) with `adapt`."""
import numpy as np

from faltung.layers.layer import Layer, Variable
from faltung.layers.preprocessing.base import config_value

EPSILON = 1e-7  # keras.backend.epsilon()


class Normalization(Layer):
    """y = (x - mean) / max(sqrt(variance), 1e-7) per index of the kept `axis`, in training
    and at inference; `invert=True` computes the inverse, mean + x * max(sqrt(variance), 1e-7).

    Args:
        axis: the axis (or axes) that keep their own statistics (-1: one mean per channel /
            feature); None normalizes with one scalar mean and variance.
        mean, variance: given statistics (then no weights and no `adapt`); else `adapt(data)`
            computes them into the non-trainable weights mean, variance (and Keras's `count`,
            an int32 scalar that Keras 3.15's adapt leaves at 0, kept for file compatibility).
        invert: bool.
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        if (mean is None) != (variance is None):
            raise ValueError("When setting values directly, both `mean` and `variance` must be set. "
                             f"Received: mean={mean} and variance={variance}")
        self.input_mean, self.input_variance, self.invert = mean, variance, invert
        self.mean = self.variance = None

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError("All `axis` values must be in the range [-ndim, ndim). Received inputs with "
                             f"ndim={ndim}, while axis={self.axis}")
        keep = tuple(sorted(a % ndim for a in self.axis))
        for d in keep:
            if input_shape[d] is None:
                raise ValueError(f"All `axis` values to be kept must have a known shape. Received "
                                 f"axis={self.axis}, inputs.shape={tuple(input_shape)}, with unknown "
                                 f"axis at index {d}")
        self._keep = keep
        self._reduce = tuple(d for d in range(ndim) if d not in keep)
        self._broadcast_shape = [input_shape[d] if d in keep else 1 for d in range(ndim)]
        stats_shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(stats_shape, "zeros", "mean", trainable=False)
            self.adapt_variance = self.add_weight(stats_shape, "ones", "variance", trainable=False)
            self.count = Variable(np.zeros(1, np.int32), f"{self.name}/count", trainable=False, dtype=np.int32)
            self.count.value = np.zeros((), np.int32)  # a scalar, as Keras's (Variable keeps ndim >= 1)
            self._weights.append(self.count)
        else:
            self.mean = self._broadcast(self.input_mean)
            self.variance = self._broadcast(self.input_variance)
        super().build(input_shape)

    def _broadcast(self, stats):
        stats = np.asarray(stats, np.float32)
        if stats.ndim == 0:
            return np.broadcast_to(stats, self._broadcast_shape)
        shape = [1] * len(self._broadcast_shape)
        for i in range(1, stats.ndim + 1):
            shape[self._keep[-i]] = stats.shape[-i]
        return stats.reshape(shape)

    def adapt(self, data, batch_size=None, steps=None):
        """Computes mean and variance of `data` over every axis but `axis`: an array, or
        batches (a PyDataset or an iterable; from `(x, y)` batches the x), `steps` of them at
        most. `batch_size` is accepted for Keras's signature (the statistics are exact)."""
        from faltung.models.data_adapters import is_dataset, is_indexed
        if self.input_mean is not None:
            raise ValueError(f"Layer {self.name}: `adapt` cannot be used when `mean` and `variance` were "
                             "passed to the constructor.")
        if is_dataset(data):
            batches = (data[i] for i in range(len(data))) if is_indexed(data) else iter(data)
            parts = [b[0] if isinstance(b, tuple) else b for _, b in zip(range(steps or 2 ** 62), batches)]
            data = np.concatenate([np.asarray(b, np.float64) for b in parts])
        else:
            data = np.asarray(data, np.float64)
        if not self.built:
            self.build((None,) + data.shape[1:])
        self.check_input(data)
        self.adapt_mean.assign(data.mean(axis=self._reduce).reshape(self.adapt_mean.shape))
        self.adapt_variance.assign(data.var(axis=self._reduce).reshape(self.adapt_variance.shape))

    def _stats(self):
        if self.input_mean is not None:
            return self.mean, self.variance
        return (self.adapt_mean.value.reshape(self._broadcast_shape),
                self.adapt_variance.value.reshape(self._broadcast_shape))

    def forward(self, x, training=False):
        if not self.built:
            raise ValueError("You must call `.build(input_shape)` on the layer before using it.")
        self.check_input(x)
        mean, variance = (s.astype(x.dtype) for s in self._stats())
        std = np.maximum(np.sqrt(variance), x.dtype.type(EPSILON))
        if training:
            self.save_for_backward(std)
        return mean + x * std if self.invert else (x - mean) / std

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        (std,) = self.saved_for_backward()
        return dy * std if self.invert else dy / std

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, invert=self.invert, mean=config_value(self.input_mean),
                   variance=config_value(self.input_variance))
        return cfg

