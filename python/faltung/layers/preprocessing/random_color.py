"""RandomContrast and RandomBrightness (Keras 3's layers): per-image value changes in
training, clipped to `value_range`; identity at inference."""
import numpy as np

from faltung.layers.preprocessing.base import RandomImageLayer, symmetric_factor


def _value_range(value_range):
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise ValueError("The `value_range` argument should be a list of two numbers. "
                         f"Received: value_range={value_range}")
    return tuple(sorted(value_range))


class RandomContrast(RandomImageLayer):
    """y = clip((x - mean) * f + mean, value_range), mean over each image's height and width
    per channel, f uniform in [1 - lower, 1 + upper] per image.

    Args:
        factor: a number f in [0, 1] -> (lower, upper) = (0, f), as Keras 3.15 sets it (so a
            number only raises the contrast), or a pair (lower, upper).
        value_range: (0, 255) by default. seed: int or None.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = symmetric_factor(factor, "factor", bounds=(0, 1))
        self.value_range = _value_range(value_range)

    def augment(self, x, rng):
        f = rng.uniform(1.0 - self.factor[0], 1.0 + self.factor[1], (x.shape[0], 1, 1, 1)).astype(x.dtype)
        mean = x.mean(axis=(1, 2), keepdims=True)
        z = (x - mean) * f + mean
        lo, hi = self.value_range
        return np.clip(z, lo, hi), (f, (z >= lo) & (z <= hi))

    def augment_backward(self, dy, state):
        f, inside = state
        dz = dy * inside
        return dz * f + dz.mean(axis=(1, 2), keepdims=True) * (1 - f)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(factor=self.factor, value_range=self.value_range)
        return cfg


class RandomBrightness(RandomImageLayer):
    """y = clip(x + delta, value_range), delta uniform in [lower, upper] times the range's
    width, per image.

    Args:
        factor: a number f in [-1, 1] -> (-|f|, |f|), or a pair (lower, upper).
        value_range: (0, 255) by default. seed: int or None.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = symmetric_factor(factor, "factor")
        self.value_range = _value_range(value_range)

    def augment(self, x, rng):
        lo, hi = self.value_range
        delta = rng.uniform(self.factor[0], self.factor[1], (x.shape[0], 1, 1, 1)) * (hi - lo)
        z = x + delta.astype(x.dtype)
        return np.clip(z, lo, hi), (z >= lo) & (z <= hi)

    def augment_backward(self, dy, inside):
        return dy * inside

    def get_config(self):
        cfg = super().get_config()
        cfg.update(factor=self.factor, value_range=list(self.value_range))
        return cfg
