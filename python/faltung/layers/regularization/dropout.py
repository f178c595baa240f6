"""Dropout (Keras's `Dropout`), on the C++ dropout kernel."""
import numpy as np

from faltung import initializers
from faltung.layers.layer import Layer
from faltung.ops import nn


class Dropout(Layer):
    """Randomly sets input units to 0 with frequency `rate` during training and scales the
    others by 1 / (1 - rate). Identity at inference (training=False).

    Args:
        rate: float between 0 and 1, fraction of the input units to drop.
        noise_shape: shape of the binary mask multiplied with the input (None entries take
            the input's size), e.g. (batch, 1, features) to share the mask over time.
        seed: int. With seed=None each call draws its mask seed from faltung's global
            generator (`faltung.initializers.rng()`), so `faltung.utils.set_random_seed`
            makes runs reproducible. The mask depends only on that seed and the element
            index, not on the thread count (faltung's guarantee).

    Input shape: arbitrary. Output shape: same as input.
    """

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError("Invalid value received for argument `rate`. Expected a float value "
                             f"between 0 and 1. Received: rate={rate}")
        self.rate = float(rate)
        self.seed = seed
        self.noise_shape = self._validate_noise_shape(noise_shape)
        self._rng = np.random.default_rng(seed) if seed is not None else None

    @staticmethod
    def _validate_noise_shape(noise_shape):
        if noise_shape is None:
            return None
        if isinstance(noise_shape, str):
            raise ValueError("Invalid value received for argument `noise_shape`. Expected a tuple "
                             f"or list of integers. Received: noise_shape={noise_shape}")
        try:
            noise_shape = tuple(noise_shape)
        except TypeError:
            raise ValueError("Invalid value received for argument `noise_shape`. Expected an "
                             "iterable of integers (e.g., a tuple or list). "
                             f"Received: noise_shape={noise_shape}") from None
        for i, dim in enumerate(noise_shape):
            if dim is not None:
                if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
                    raise ValueError("Invalid value received for argument `noise_shape`. Expected "
                                     f"all elements to be integers or None. Received element at "
                                     f"index {i}: {dim} (type: {type(dim).__name__})")
                if dim <= 0:
                    raise ValueError("Invalid value received for argument `noise_shape`. Expected "
                                     "all dimensions to be positive integers or None. Received "
                                     f"negative or zero value at index {i}: {dim}")
        return noise_shape

    def _noise_shape_for(self, x):
        if self.noise_shape is None:
            return None
        if len(self.noise_shape) != x.ndim:
            raise ValueError(f"Layer {self.name}: noise_shape={self.noise_shape} does not match the "
                             f"rank of the input shape {tuple(x.shape)}")
        shape = tuple(s if n is None else int(n) for n, s in zip(self.noise_shape, x.shape))
        for n, s in zip(shape, x.shape):
            if n not in (1, s):
                raise ValueError(f"Layer {self.name}: noise_shape={self.noise_shape} cannot be "
                                 f"broadcast to the input shape {tuple(x.shape)}")
        return shape

    def forward(self, x, training=False):
        self.check_input(x)
        if not self.behaves_as_training(training) or self.rate == 0:
            return x
        rng = self._rng if self._rng is not None else initializers.rng()
        seed = int(rng.integers(0, 2 ** 63 - 1))
        y, mask = nn.dropout(x, self.rate, seed, self._noise_shape_for(x))
        self.save_for_backward(mask)
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if not self.has_saved():  # rate 0: the forward was the identity
            return dy
        (mask,) = self.saved_for_backward()
        return nn.dropout_backward(dy, mask, self.rate)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed, noise_shape=self.noise_shape)
        return cfg
