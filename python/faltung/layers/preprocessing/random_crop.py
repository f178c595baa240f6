"""RandomCrop (Keras 3's keras.layers.RandomCrop)."""
import numpy as np

from faltung.layers.preprocessing.base import RandomImageLayer
from faltung.ops.resampling import resize_bilinear, resize_bilinear_backward


class RandomCrop(RandomImageLayer):
    """Crops a random (height, width) window during training, the same window for the whole
    batch. An image not larger than the window in both sizes is centre-cropped to the
    window's aspect ratio and resized (bilinear) instead. At inference the input passes
    unchanged, as in Keras 3.15 (whose output shape then differs from
    `compute_output_shape`).

    Args:
        height, width: the output size. seed: int or None.
    """

    def __init__(self, height, width, seed=None, data_format=None, name=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, name=name, **kwargs)
        self.height, self.width = int(height), int(width)

    def augment(self, x, rng):
        h, w = x.shape[1:3]
        if h > self.height and w > self.width:
            top = int(rng.uniform(0, float(h - self.height + 1)))
            left = int(rng.uniform(0, float(w - self.width + 1)))
        else:
            crop_h = max(min(h, int(float(w * self.height) / self.width)), 1)
            crop_w = max(min(w, int(float(h * self.width) / self.height)), 1)
            top, left = int(float(h - crop_h) / 2), int(float(w - crop_w) / 2)
        y = x[:, top:top + self.height, left:left + self.width]
        cropped = y.shape
        if y.shape[1:3] != (self.height, self.width):
            y = resize_bilinear(y, (self.height, self.width))
        return np.array(y, x.dtype), (x.shape, top, left, cropped)

    def augment_backward(self, dy, state):
        in_shape, top, left, cropped = state
        if cropped[1:3] != (self.height, self.width):
            dy = resize_bilinear_backward(dy, cropped[1:3])
        dx = np.zeros(in_shape, dy.dtype)
        dx[:, top:top + cropped[1], left:left + cropped[2]] = dy
        return dx

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + (self.height, self.width, input_shape[-1])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height=self.height, width=self.width)
        return cfg
