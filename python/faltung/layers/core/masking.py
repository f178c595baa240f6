"""Masking: marks the time steps whose features all equal `mask_value` as padding."""
import numpy as np

from faltung.layers.layer import Layer


class Masking(Layer):
    """Masks a sequence by using a mask value to skip timesteps (Keras's `Masking`).

    A step is masked when all of its features (the last axis) equal `mask_value`:
    mask = any(inputs != mask_value, axis=-1). The output is the input with masked steps
    set to 0 (inputs * mask[..., None]); the layers after it receive the mask (Keras's
    convention: True = keep, False = skip). An incoming mask is replaced, as in Keras.

    Args:
        mask_value: the padding value (default 0.0).

    Input shape: arbitrary, usually (batch, timesteps, features).
    Output shape: same as the input.
    """

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value

    def check_input_shape(self, shapes):
        pass  # Keras's Masking has no input_spec: inputs of any shape

    def compute_mask(self, inputs, mask=None):
        return np.any(np.asarray(inputs) != self.mask_value, axis=-1)

    def forward(self, x, training=False):
        keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        y = x * keep.astype(x.dtype)  # a product, as Keras's (masked steps become 0)
        if training:
            self.save_for_backward(keep)
        return y

    def backward(self, dy, need_dx=True):
        (keep,) = self.saved_for_backward()
        if not need_dx:
            return None
        # y = x * keep, the mask taken as a constant (Keras's gradient)  =>  dx = dy * keep:
        # masked steps get no gradient
        return dy * keep.astype(dy.dtype)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(mask_value=self.mask_value)
        return cfg
