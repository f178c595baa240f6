"""PReLU: parametric ReLU with a learned slope (Keras's `PReLU`). Computed in numpy."""
import numpy as np

from faltung import constraints, initializers, regularizers
from faltung.layers.layer import Layer


class PReLU(Layer):
    """f(x) = x for x >= 0, alpha * x for x < 0, with a learned `alpha`.

    Args:
        alpha_initializer: initializer of alpha (default "Zeros").
        alpha_regularizer: stored as `alpha.regularizer`.
        alpha_constraint: stored as `alpha.constraint`.
        shared_axes: axes (1-based, as Keras) along which alpha is shared.

    Input shape: arbitrary. Output shape: same as input.
    Weights: alpha of shape input_shape[1:] with the shared axes set to 1.
    """

    supports_masking = True

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        elif not isinstance(shared_axes, (list, tuple)):
            self.shared_axes = [shared_axes]
        else:
            self.shared_axes = list(shared_axes)

    def build(self, input_shape):
        param_shape = list(input_shape[1:])
        for i in self.shared_axes or []:
            if not 1 <= i < len(input_shape):
                raise ValueError(f"PReLU {self.name}: shared axis {i} is out of range for an input "
                                 f"of rank {len(input_shape)}")
            param_shape[i - 1] = 1
        if any(s is None for s in param_shape):
            raise ValueError(f"PReLU {self.name}: unknown dimensions need to be shared, received "
                             f"input_shape={tuple(input_shape)}, shared_axes={self.shared_axes}")
        self.alpha = self.add_weight(param_shape, self.alpha_initializer, "alpha",
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)
        super().build(input_shape)

    def forward(self, x, training=False):
        self.check_input(x)
        y = np.maximum(x, 0) + self.alpha.value * np.minimum(x, 0)
        if training:
            self.save_for_backward(x)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy, need_dx=True):
        (x,) = self.saved_for_backward()
        a = self.alpha.value
        if self.trainable:
            g = dy * np.minimum(x, 0)
            axes = (0,) + tuple(i + 1 for i, s in enumerate(a.shape) if s == 1 and x.shape[i + 1] != 1)
            self.alpha.grad = g.sum(axis=axes, keepdims=True).reshape(a.shape).astype(np.float32)
        return np.where(x > 0, dy, dy * a).astype(dy.dtype, copy=False) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(alpha_initializer=initializers.serialize(self.alpha_initializer),
                   alpha_regularizer=regularizers.serialize(self.alpha_regularizer),
                   alpha_constraint=constraints.serialize(self.alpha_constraint), shared_axes=self.shared_axes)
        return cfg
