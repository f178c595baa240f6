"""Permute (Keras's `keras.layers.Permute`)."""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.pooling.base_pooling import check_ndim


class Permute(Layer):
    """Permutes the dimensions of the input according to a given pattern.

    Useful e.g. to connect RNNs and convnets.

    Args:
        dims: tuple of integers, the permutation pattern, not including the batch axis.
            Indexing starts at 1: `(2, 1)` swaps the first and second axes of the input
            after the batch.

    Input shape: arbitrary, of rank `len(dims) + 1`.
    Output shape: the input shape with its axes re-ordered by `dims`.
    Forward returns a C-contiguous copy (np.transpose would give a strided view); backward
    applies the inverse permutation to dL/dy, also as a C-contiguous array.

    Example:
        >>> x = faltung.layers.Input(shape=(10, 64))
        >>> faltung.layers.Permute((2, 1))(x).shape
        (None, 64, 10)
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError("Invalid permutation argument `dims` for Permute Layer. The set "
                             "of indices in `dims` must be consecutive and start from 1. "
                             f"Received dims={dims}")
        self.dims = tuple(int(d) for d in dims)
        self._perm = (0,) + self.dims
        self._inverse = tuple(int(i) for i in np.argsort(self._perm))

    def build(self, input_shape):
        check_ndim(self, input_shape, len(self.dims) + 1)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, len(self.dims) + 1)
        return tuple(input_shape[d] for d in self._perm)

    def check_input_shape(self, shapes):
        check_ndim(self, shapes, len(self.dims) + 1)  # Keras's input spec: ndim only

    def forward(self, x, training=False):
        check_ndim(self, x.shape, len(self.dims) + 1)
        if training:
            self.save_for_backward()
        return np.ascontiguousarray(np.transpose(x, self._perm))

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return np.ascontiguousarray(np.transpose(dy, self._inverse)) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(dims=self.dims)
        return cfg
