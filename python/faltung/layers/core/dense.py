"""Dense: y = activation(x @ kernel + bias), computed by the C++ core."""
import numpy as np

from faltung import activations, constraints, initializers, regularizers
from faltung.layers.layer import Layer
from faltung.ops import nn


class Dense(Layer):
    """Just your regular densely-connected NN layer (Keras's `Dense`).

    `output = activation(dot(input, kernel) + bias)`. Inputs of rank > 2 are multiplied on
    their last axis: (batch, d0, d1) -> (batch, d0, units).

    Args:
        units: positive int, dimensionality of the output space.
        activation: activation name or object (default None: linear).
        use_bias: whether the layer has a bias vector.
        kernel_initializer, bias_initializer: initializers ("glorot_uniform", "zeros").
        kernel_regularizer, bias_regularizer: stored as `Variable.regularizer` of the
            weights (applied by the training loop); activity_regularizer: penalty on the
            output, over the batch size (faltung.layers.layer.collect_activity_losses).
        kernel_constraint, bias_constraint: stored as `Variable.constraint`.

    Input shape:
        N-D tensor with shape `(batch_size, ..., input_dim)`.
    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`.
    """

    supports_masking = True  # as Keras: on (batch, time, features) the time mask passes on

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive integer. "
                             f"Received: units={units}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: '
                             f"expected min_ndim=2, found ndim={len(input_shape)}. "
                             f"Full shape received: {tuple(input_shape)}")
        if input_shape[-1] is None:
            raise ValueError(f"Layer {self.name}: the last dimension of the input must be known, "
                             f"received input_shape={tuple(input_shape)}")
        self.kernel = self.add_weight((input_shape[-1], self.units), self.kernel_initializer,
                                      "kernel", regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight((self.units,), self.bias_initializer, "bias",
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def check_input(self, x, min_rank=None, rank=None):
        # Keras's Dense input_spec: min_ndim=2 and axis -1 == input_dim (other axes free).
        in_dim = self.kernel.shape[0]
        if x.ndim < 2:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: '
                             f"expected min_ndim=2, found ndim={x.ndim}. "
                             f"Full shape received: {tuple(x.shape)}")
        if x.shape[-1] != in_dim:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: '
                             f"expected axis -1 of input shape to have value {in_dim}, but "
                             f"received input with shape {tuple(x.shape)}")

    def forward(self, x, training=False):
        self.check_input(x)
        z = nn.dense(x, self.kernel.value, None if self.bias is None else self.bias.value)
        y = self.activation.forward(z)
        if training:
            self.save_for_backward(x, z, y)
        return y

    def backward(self, dy, need_dx=True):
        x, z, y = self.saved_for_backward()
        dz = self.activation.backward(dy, z, y)
        train = self.trainable
        dx, dk, db = nn.dense_backward(dz, x, self.kernel.value, need_dx=need_dx,
                                       need_dkernel=train, need_dbias=train and self.use_bias)
        if train:
            self.kernel.grad = dk
            if self.bias is not None:
                self.bias.grad = db
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=activations.serialize(self.activation),
                   use_bias=self.use_bias,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer),
                   kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer),
                   activity_regularizer=regularizers.serialize(self.activity_regularizer),
                   kernel_constraint=constraints.serialize(self.kernel_constraint),
                   bias_constraint=constraints.serialize(self.bias_constraint))
        return cfg
