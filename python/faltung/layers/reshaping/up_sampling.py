"""UpSampling1D and UpSampling2D (Keras 3)."""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.pooling.base_pooling import check_ndim
from faltung.ops import pooling as P
from faltung.ops import resampling as R

_KERAS_ONLY = ("bicubic", "lanczos3", "lanczos5", "area")


class UpSampling1D(Layer):
    """Repeats each step `size` times along the steps axis.

    Args:
        size: positive int, the upsampling factor (default 2).

    Input shape: (batch, steps, features). Output shape: (batch, steps * size, features).
    Backward: the sum of the gradients of each step's copies.
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"Argument `size` should be a positive integer. Received: size={size}")
        self.size = int(size)

    def build(self, input_shape):
        check_ndim(self, input_shape, 3)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, 3)
        steps = None if input_shape[1] is None else input_shape[1] * self.size
        return (input_shape[0], steps, input_shape[2])

    def check_input(self, x, min_rank=None, rank=None):
        check_ndim(self, x.shape, 3)

    def forward(self, x, training=False):
        self.check_input(x)
        if training:
            self.save_for_backward()
        return R.upsample(x[:, :, None, :], (self.size, 1))[:, :, 0, :]

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return R.upsample_backward(dy[:, :, None, :], (self.size, 1))[:, :, 0, :] if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=self.size)
        return cfg


class UpSampling2D(Layer):
    """Upsamples rows and columns by integer factors.

    Args:
        size: int or (rows, cols) factors (default (2, 2)).
        data_format: "channels_last" only.
        interpolation: "nearest" (repeat rows and columns) or "bilinear" (Keras 3's
            ops.image.resize: half-pixel centres, edges clamped). faltung does not
            implement Keras's "bicubic", "lanczos3", "lanczos5" (ValueError).

    Input shape: (batch, rows, cols, channels).
    Output shape: (batch, rows * size[0], cols * size[1], channels).
    Backward: the adjoint of the forward (block sums for nearest, transposed bilinear
    weights for bilinear).
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.data_format = P.standardize_data_format(data_format)
        self.size = P.standardize_tuple(size, 2, "size")
        self.interpolation = str(interpolation).lower()
        if self.interpolation in _KERAS_ONLY:
            raise ValueError(f"UpSampling2D: interpolation={self.interpolation!r} is not implemented in faltung; "
                             f"use one of {R.INTERPOLATIONS}")
        if self.interpolation not in R.INTERPOLATIONS:
            raise ValueError(f"Invalid value for argument `interpolation`. Expected one of "
                             f"{R.INTERPOLATIONS}. Received: interpolation={interpolation}")

    def build(self, input_shape):
        check_ndim(self, input_shape, 4)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, 4)
        return (input_shape[0],) + tuple(None if s is None else s * k
                                         for s, k in zip(input_shape[1:3], self.size)) + (input_shape[3],)

    def check_input(self, x, min_rank=None, rank=None):
        check_ndim(self, x.shape, 4)

    def forward(self, x, training=False):
        self.check_input(x)
        if training:
            self.save_for_backward()
        return R.upsample(x, self.size, self.interpolation)

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return R.upsample_backward(dy, self.size, self.interpolation) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=self.size, data_format=self.data_format, interpolation=self.interpolation)
        return cfg
