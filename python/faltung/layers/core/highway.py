"""Highway: a gated skip connection (Srivastava et al., 2015). faltung addition (from the
seeds; Keras 1 had it, Keras 3 does not)."""
import numpy as np

from faltung import activations, initializers, regularizers
from faltung.layers.layer import Layer
from faltung.ops import nn


class Highway(Layer):
    """y = H(x) * T(x) + x * (1 - T(x)) with H(x) = activation(x @ kernel + bias) and the
    transform gate T(x) = sigmoid(x @ transform_kernel + transform_bias), on the last axis.

    faltung addition. Weights, in order: kernel (d, d), bias (d,), transform_kernel (d, d),
    transform_bias (d,). The transform bias starts at `transform_bias` = -2 so that the
    gate starts mostly closed (T ~ 0.12) and the layer starts close to the identity, as
    the paper recommends. The default activation is "linear", which gives exactly
    y = (xW+b) T(x) + x (1 - T(x)) (Keras 1's Highway default too).

    Args:
        activation: activation of H (default "linear").
        kernel_initializer, bias_initializer: for kernel and transform_kernel ("glorot_uniform"),
            and for bias ("zeros").
        transform_bias: initial value of transform_bias (default -2.0).
        kernel_regularizer, bias_regularizer: stored on the kernels / biases.

    Input shape: (batch, ..., d).
    Output shape: same as input.
    """

    supports_masking = True

    def __init__(self, activation="linear", kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", transform_bias=-2.0, kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.transform_bias_value = float(transform_bias)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"Layer {self.name}: expected an input of rank >= 2 with a known last "
                             f"dimension, received input_shape={tuple(input_shape)}")
        d = input_shape[-1]
        kr, br = self.kernel_regularizer, self.bias_regularizer
        self.kernel = self.add_weight((d, d), self.kernel_initializer, "kernel", regularizer=kr)
        self.bias = self.add_weight((d,), self.bias_initializer, "bias", regularizer=br)
        self.transform_kernel = self.add_weight((d, d), self.kernel_initializer, "transform_kernel",
                                                regularizer=kr)
        self.transform_bias = self.add_weight((d,), initializers.Constant(self.transform_bias_value),
                                              "transform_bias", regularizer=br)
        super().build(input_shape)

    def forward(self, x, training=False):
        self.check_input(x)
        zh = nn.dense(x, self.kernel.value, self.bias.value)
        h = self.activation.forward(zh)
        t = nn.sigmoid(nn.dense(x, self.transform_kernel.value, self.transform_bias.value))
        y = t * (h - x) + x
        if training:
            self.save_for_backward(x, zh, h, t)
        return y

    def backward(self, dy, need_dx=True):
        x, zh, h, t = self.saved_for_backward()
        # y = t h + (1 - t) x
        dzh = self.activation.backward(dy * t, zh, h)
        dzt = nn.sigmoid_backward(dy * (h - x), t)
        train = self.trainable
        dxh, dk, db = nn.dense_backward(dzh, x, self.kernel.value, need_dx, train, train)
        dxt, dtk, dtb = nn.dense_backward(dzt, x, self.transform_kernel.value, need_dx, train, train)
        if train:
            self.kernel.grad, self.bias.grad = dk, db
            self.transform_kernel.grad, self.transform_bias.grad = dtk, dtb
        if not need_dx:
            return None
        return dxh + dxt + dy * (1 - t)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(activation=activations.serialize(self.activation),
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer),
                   transform_bias=self.transform_bias_value,
                   kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer))
        return cfg
