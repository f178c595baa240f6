"""RepeatVector (Keras's `keras.layers.RepeatVector`)."""
import operator

import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.pooling.base_pooling import check_ndim


class RepeatVector(Layer):
    """Repeats the input n times.

    Args:
        n: integer, repetition factor (faltung raises ValueError for n < 0).

    Input shape: 2D tensor with shape `(batch_size, features)`.
    Output shape: 3D tensor with shape `(batch_size, n, features)`.
    Backward: the sum of the gradients of the n copies.

    Example:
        >>> x = faltung.layers.Input(shape=(32,))
        >>> faltung.layers.RepeatVector(3)(x).shape
        (None, 3, 32)
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        try:
            n = operator.index(n)
        except (TypeError, OverflowError):
            raise TypeError(f"Expected an integer value for `n`, got {type(n)}.") from None
        if n < 0:
            raise ValueError(f"Argument `n` should be a non-negative integer. Received: n={n}")
        self.n = n

    def build(self, input_shape):
        check_ndim(self, input_shape, 2)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, 2)
        return (input_shape[0], self.n, input_shape[1])

    def check_input_shape(self, shapes):
        check_ndim(self, shapes, 2)  # Keras's input spec: ndim=2 only

    def forward(self, x, training=False):
        check_ndim(self, x.shape, 2)
        if training:
            self.save_for_backward()
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return dy.sum(axis=1) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(n=self.n)
        return cfg
