"""RandomFlip (Keras 3's keras.layers.RandomFlip)."""
import numpy as np

from faltung.layers.preprocessing.base import RandomImageLayer

HORIZONTAL, VERTICAL, HORIZONTAL_AND_VERTICAL = "horizontal", "vertical", "horizontal_and_vertical"


class RandomFlip(RandomImageLayer):
    """Flips each image with probability 1/2 during training; identity at inference.

    Args:
        mode: "horizontal" (left-right), "vertical" (up-down) or "horizontal_and_vertical"
            (Keras 3 draws one coin per image for both: such an image is flipped both ways).
        seed: int or None (faltung's global generator).

    Input shape: (H, W, C) or (N, H, W, C). Output shape: the same.
    """

    def __init__(self, mode=HORIZONTAL_AND_VERTICAL, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in (HORIZONTAL, VERTICAL, HORIZONTAL_AND_VERTICAL):
            raise ValueError(f"RandomFlip layer {self.name} received an unknown mode argument {mode}")
        self.mode = mode

    def _flip(self, x, flips):
        y = np.array(x)
        if self.mode in (HORIZONTAL, HORIZONTAL_AND_VERTICAL):
            y[flips] = y[flips, :, ::-1]
        if self.mode in (VERTICAL, HORIZONTAL_AND_VERTICAL):
            y[flips] = y[flips, ::-1]
        return y

    def augment(self, x, rng):
        flips = rng.uniform(size=x.shape[0]) <= 0.5
        return self._flip(x, flips), flips

    def augment_backward(self, dy, flips):
        return self._flip(dy, flips)  # a flip is its own adjoint

    def get_config(self):
        cfg = super().get_config()
        cfg.update(mode=self.mode)
        return cfg
