"""Dense: y = activation(x @ kernel + bias). PLACEHOLDER numpy body until the dense slice lands."""
import numpy as np

from faltung import activations, initializers
from faltung.layers.layer import Layer


class Dense(Layer):
    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive integer. "
                             f"Received: units={units}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"Layer {self.name}: the last dimension of the input must be known, "
                             f"received input_shape={input_shape}")
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer, "kernel")
        self.bias = self.add_weight((self.units,), self.bias_initializer, "bias") if self.use_bias else None
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training=False):
        self.check_input(x)
        z = x @ self.kernel.value
        if self.bias is not None:
            z += self.bias.value
        y = self.activation.forward(z)
        if training:
            self._cache = (x, z, y)
        return y

    def backward(self, dy, need_dx=True):
        x, z, y = self._cache
        dz = self.activation.backward(dy, z, y)
        x2 = x.reshape(-1, x.shape[-1])
        dz2 = dz.reshape(-1, self.units)
        if self.trainable:
            self.kernel.grad = x2.T @ dz2
            if self.bias is not None:
                self.bias.grad = dz2.sum(axis=0)
        return (dz @ self.kernel.value.T) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=activations.serialize(self.activation),
                   use_bias=self.use_bias)
        return cfg
