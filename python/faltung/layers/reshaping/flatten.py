"""Flatten (Keras's `Flatten`)."""
import math

import numpy as np

from faltung.layers.layer import Layer


class Flatten(Layer):
    """Flattens the input, keeping the batch size. (batch,) inputs become (batch, 1).

    Args:
        data_format: "channels_last" (default) or "channels_first"; channels_first inputs
            are transposed to channels-last before flattening, as Keras does.

    Input shape: (batch, ...). Output shape: (batch, product of the other dims).
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        data_format = "channels_last" if data_format is None else str(data_format).lower()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError("The `data_format` argument must be one of {'channels_first', "
                             f"'channels_last'}}. Received: data_format={data_format}")
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape[1:])
        if len(rest) == 0:
            flat = 1
        elif any(d is None for d in rest):
            flat = None
        else:
            flat = math.prod(rest)
        return (input_shape[0], flat)

    def _to_last(self, x):
        if self.data_format == "channels_first" and x.ndim > 2:
            return np.transpose(x, (0, *range(2, x.ndim), 1))
        return x

    def forward(self, x, training=False):
        self.check_input(x)
        if training:
            self.save_for_backward(x.shape)
        return np.ascontiguousarray(self._to_last(x)).reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        (shape,) = self.saved_for_backward()
        if not need_dx:
            return None
        if self.data_format == "channels_first" and len(shape) > 2:
            last = (shape[0], *shape[2:], shape[1])
            return np.ascontiguousarray(
                np.moveaxis(dy.reshape(last), -1, 1))
        return dy.reshape(shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(data_format=self.data_format)
        return cfg
