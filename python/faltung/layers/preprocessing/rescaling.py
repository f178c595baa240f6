"""Rescaling (Keras 3's keras.layers.Rescaling)."""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.preprocessing.base import config_value


class Rescaling(Layer):
    """y = x * scale + offset, in training and at inference (e.g. scale=1/255 maps [0, 255]
    to [0, 1]; scale=1/127.5, offset=-1 to [-1, 1]).

    Args:
        scale: a float, or an array broadcast against the input (e.g. one per channel).
        offset: a float or an array, likewise.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("scale", scale), ("offset", offset)):
            if value is None or np.asarray(value).dtype.kind not in "biuf":  # None would become NaN
                raise TypeError(f"Rescaling: expected a number or an array of numbers for `{arg}`, "
                                f"received {arg}={value!r}")
        self.scale, self.offset = scale, offset
        self._scale = np.asarray(scale, np.float32)
        self._offset = np.asarray(offset, np.float32)

    def forward(self, x, training=False):
        self.check_input(x)
        scale, offset = self._scale.astype(x.dtype), self._offset.astype(x.dtype)
        if training:
            self.save_for_backward(x.shape)
        return x * scale + offset

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        (shape,) = self.saved_for_backward()
        dx = dy * self._scale.astype(dy.dtype)
        if dx.shape != shape:  # a scale of more dimensions than the input broadcast it up
            raise ValueError(f"Layer {self.name}: scale of shape {self._scale.shape} broadcasts the input "
                             f"shape {shape} to {dx.shape}; backward needs the input's shape")
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(scale=config_value(self.scale), offset=config_value(self.offset))
        return cfg

