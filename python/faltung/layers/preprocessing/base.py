"""What Keras 3's random image preprocessing layers share: a seed, channels-last images of
rank 3 (one image) or 4 (a batch), and augmentation only in training (identity at
inference).

faltung's backward: these layers have no weights. The flips, crops and the colour layers
pass dL/dy back exactly (flipped, scattered, scaled). The affine ones (RandomTranslation,
RandomRotation, RandomZoom) raise ValueError when an input gradient is requested in training:
Keras does not differentiate them in practice either, and a model that places them right
after its `Input` (where augmentation goes) never asks for one, since no gradient flows to
an Input.
"""
import numpy as np

from faltung import initializers
from faltung.layers.layer import Layer


def check_data_format(data_format, name):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"Layer {name}: faltung's image layers are channels-last only. "
                         f"Received: data_format={data_format}")


def config_value(value):
    """A get_config value: None, a number, or nested lists for arrays."""
    return None if value is None else np.asarray(value).tolist()


def check_choice(value, choices, arg):
    if value not in choices:
        raise NotImplementedError(f"Unknown `{arg}` {value}. Expected of one {choices}.")


def symmetric_factor(factor, arg, bounds=(-1.0, 1.0)):
    """Keras's `_set_factor`: a number f -> (-|f|, |f|) (clipped to bounds), a pair -> sorted."""
    error = (f"The `{arg}` argument should be a number (or a list of two numbers) in the range "
             f"[{bounds[0]}, {bounds[1]}]. Received: {arg}={factor}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ValueError(error)
        lower, upper = sorted(factor)
        return lower, upper
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise ValueError(error)
    if not bounds[0] <= factor <= bounds[1]:
        raise ValueError(error)
    factor = abs(factor)
    return max(-factor, bounds[0]), factor


class RandomImageLayer(Layer):
    """Base of the random image layers. Subclasses implement `augment(x, rng)` on a batch
    (N, H, W, C) -> (y, state) and `augment_backward(dy, state)`."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, self.name)
        self.seed = seed
        self.data_format = "channels_last"
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def generator(self):
        """The layer's own generator when seeded, else faltung's global one
        (`faltung.utils.set_random_seed`)."""
        return self._rng if self._rng is not None else initializers.rng()

    def _as_batch(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"Layer {self.name}: expected image tensor of rank 3 (single image) or 4 "
                             f"(batch of images). Received: data.shape={tuple(x.shape)}")
        return x if x.ndim == 4 else x[None]

    def forward(self, x, training=False):
        batch = self._as_batch(x)
        if not self.behaves_as_training(training):
            if training:
                self.save_for_backward(None)
            return self.infer(x)
        y, state = self.augment(batch, self.generator())
        if training:
            self.save_for_backward(state, x.ndim)
        return y if x.ndim == 4 else y[0]

    def infer(self, x):
        """The inference output: the input itself."""
        return x

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        saved = self.saved_for_backward()
        if saved[0] is None:
            return dy
        state, ndim = saved
        dx = self.augment_backward(dy if ndim == 4 else dy[None], state)
        return dx if ndim == 4 else dx[0]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(seed=self.seed, data_format=self.data_format)
        return cfg
