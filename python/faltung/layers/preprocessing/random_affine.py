"""RandomTranslation, RandomRotation, RandomZoom (Keras 3's layers): one random affine map
per image, sampled in C++ as keras.ops.image.affine_transform samples (fill modes extend
the image per tap: "reflect" half-sample symmetric, "wrap" periodic, "constant" fill_value,
"nearest" edge)."""
import numpy as np

from faltung.layers.preprocessing.base import RandomImageLayer, check_choice, symmetric_factor
from faltung.ops.image import KERAS_FILL_MODES, affine_transform, keras_transforms_to_matrices

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")


class BaseRandomAffine(RandomImageLayer):
    """Subclasses implement `transforms(batch, rng)` -> (N, 8) Keras transforms."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        check_choice(fill_mode, FILL_MODES, "fill_mode")
        check_choice(interpolation, INTERPOLATIONS, "interpolation")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, fill_value

    def augment(self, x, rng):
        matrices = keras_transforms_to_matrices(self.transforms(x, rng))
        y = affine_transform(x, matrices, self.interpolation, KERAS_FILL_MODES[self.fill_mode],
                             self.fill_value)
        return y, True

    def augment_backward(self, dy, state):
        raise ValueError(f"Layer {self.name} ({type(self).__name__}): no gradient with respect to its "
                         "input in training (Keras does not differentiate its geometric augmentation "
                         "either). Place it before the first trainable layer, e.g. right after the "
                         "model's Input.")

    def get_config(self):
        cfg = super().get_config()
        cfg.update(fill_mode=self.fill_mode, interpolation=self.interpolation, fill_value=self.fill_value)
        return cfg


def _range_factor(factor, arg):
    """RandomTranslation / RandomZoom: a number f -> (-|f|, |f|), a pair -> sorted, all in [-1, 1]."""
    values = factor if isinstance(factor, (tuple, list)) else [factor]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not -1.0 <= v <= 1.0:
            raise ValueError(f"The `height_factor` and `width_factor` arguments should be a number (or a "
                             f"list of two numbers) in the range [-1.0, 1.0]. Received: {arg}={factor}")
    return symmetric_factor(factor, arg)


def _column(n, value):
    return np.full(n, value, np.float64)


class RandomTranslation(BaseRandomAffine):
    """Shifts each image by a random fraction of its size during training.

    Args:
        height_factor / width_factor: a fraction f (shift uniform in [-f, f] of the height /
            width, positive = down / right) or a pair (lower, upper), within [-1, 1].
        fill_mode ("reflect"), interpolation ("bilinear"), seed, fill_value (0.0): Keras's.
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear",
                 seed=None, fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_lower, self.height_upper = _range_factor(height_factor, "height_factor")
        self.width_lower, self.width_upper = _range_factor(width_factor, "width_factor")

    def transforms(self, x, rng):
        n, h, w = x.shape[:3]
        dh = rng.uniform(self.height_lower, self.height_upper, n) * h
        dw = rng.uniform(self.width_lower, self.width_upper, n) * w
        one, zero = _column(n, 1), _column(n, 0)
        return np.stack([one, zero, -dw, zero, one, -dh, zero, zero], 1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return cfg


class RandomRotation(BaseRandomAffine):
    """Rotates each image about its centre by a random angle during training.

    Args:
        factor: a fraction of 2*pi: f -> angle uniform in [-f*360, f*360] degrees (positive =
            counter-clockwise), or a pair (lower, upper).
        fill_mode ("reflect"), interpolation ("bilinear"), seed, fill_value (0.0): Keras's.
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = symmetric_factor(factor, "factor")

    def transforms(self, x, rng):
        n, h, w = x.shape[:3]
        angle = np.deg2rad(rng.uniform(self.factor[0] * 360.0, self.factor[1] * 360.0, n))
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        cos, sin = np.cos(angle), np.sin(angle)
        a0, a1, b0, b1 = cos, -sin, sin, cos
        zero = _column(n, 0)
        return np.stack([a0, a1, cx - cx * a0 - cy * a1, b0, b1, cy - cx * b0 - cy * b1, zero, zero], 1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(factor=self.factor)
        return cfg


class RandomZoom(BaseRandomAffine):
    """Zooms each image about its centre by a random factor during training.

    Args:
        height_factor: f -> the sampled extent is 1 + uniform(-f, f) times the height
            (positive = zoom out), or a pair (lower, upper), within [-1, 1].
        width_factor: the same for the width; None (default) keeps the aspect ratio.
        fill_mode ("reflect"), interpolation ("bilinear"), seed, fill_value (0.0): Keras's.
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear",
                 seed=None, fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self.height_lower, self.height_upper = _range_factor(height_factor, "height_factor")
        if width_factor is not None:
            self.width_lower, self.width_upper = _range_factor(width_factor, "width_factor")

    def transforms(self, x, rng):
        n, h, w = x.shape[:3]
        zy = rng.uniform(1.0 + self.height_lower, 1.0 + self.height_upper, n)
        zx = zy if self.width_factor is None else rng.uniform(1.0 + self.width_lower,
                                                              1.0 + self.width_upper, n)
        zero = _column(n, 0)
        return np.stack([zx, zero, (w - 1.0) / 2.0 * (1.0 - zx), zero, zy, (h - 1.0) / 2.0 * (1.0 - zy),
                         zero, zero], 1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return cfg
