"""Depthwise convolution layers: each input channel is convolved with its own
`depth_multiplier` filters (Keras's base_depthwise_conv.py semantics)."""
from faltung import constraints, initializers, regularizers
from faltung.layers.convolutional.base_conv import ConvBrick, check_positive, serialize
from faltung.ops import convolution as conv_ops


class BaseDepthwiseConv(ConvBrick):
    """Abstract depthwise convolution (rank 1 or 2).

    Args:
        rank: 1 or 2.
        depth_multiplier: output channels per input channel.
        kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias:
            as BaseConv ("full" padding is a faltung addition).
        depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer,
        activity_regularizer, depthwise_constraint, bias_constraint: as Keras.

    Kernel: depthwise_kernel kernel_size + (channels, depth_multiplier); bias
    (channels * depth_multiplier,). Output channel c * depth_multiplier + j comes from
    input channel c.
    """

    def __init__(self, rank, depth_multiplier, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(rank, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         activity_regularizer, **kwargs)
        check_positive(depth_multiplier, "depth_multiplier")
        self.depth_multiplier = int(depth_multiplier)
        self.depthwise_initializer = initializers.get(depthwise_initializer or "glorot_uniform")
        self.bias_initializer = initializers.get(bias_initializer or "zeros")
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        input_shape = self._check_input_shape(input_shape)
        C = input_shape[-1]
        self.compute_output_shape(input_shape)
        self.kernel = self.add_weight(self.kernel_size + (C, self.depth_multiplier), self.depthwise_initializer,
                                      "kernel", regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint)
        self.bias = (self.add_weight((C * self.depth_multiplier,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer, constraint=self.bias_constraint)
                     if self.use_bias else None)
        super().build(input_shape)

    depthwise_kernel = property(lambda self: self.kernel)

    def compute_output_shape(self, input_shape):
        return conv_ops.compute_conv_output_shape(tuple(input_shape), input_shape[-1] * self.depth_multiplier,
                                                  self.kernel_size, self.strides, self.padding, self.dilation_rate)

    def _op_forward(self, x, relu):
        b = self.bias.value if self.bias is not None else None
        return conv_ops.depthwise_conv_forward(x, self.kernel.value, b, relu=relu, **self._geometry())

    def _op_backward(self, dz, x, need_dx):
        dx, dw, db = conv_ops.depthwise_conv_backward(
            dz, x, self.kernel.value, need_dx=need_dx, need_dw=self.trainable,
            need_db=self.trainable and self.bias is not None, **self._geometry())
        self._set_grads([(self.kernel, dw), (self.bias, db)])
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(depth_multiplier=self.depth_multiplier,
                   depthwise_initializer=serialize(self.depthwise_initializer),
                   bias_initializer=serialize(self.bias_initializer),
                   depthwise_regularizer=regularizers.serialize(self.depthwise_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer),
                   depthwise_constraint=constraints.serialize(self.depthwise_constraint),
                   bias_constraint=constraints.serialize(self.bias_constraint))
        return cfg


class DepthwiseConv1D(BaseDepthwiseConv):
    """1D depthwise convolution, as keras.layers.DepthwiseConv1D.

    Input shape: (batch, steps, channels).
    Output shape: (batch, new_steps, channels * depth_multiplier).
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer,
                         bias_regularizer, activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)


class DepthwiseConv2D(BaseDepthwiseConv):
    """2D depthwise convolution, as keras.layers.DepthwiseConv2D.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, channels * depth_multiplier).

    >>> DepthwiseConv2D(3, depth_multiplier=2).compute_output_shape((None, 8, 8, 4))
    (None, 6, 6, 8)
    """

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(2, depth_multiplier, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer,
                         bias_regularizer, activity_regularizer, depthwise_constraint, bias_constraint, **kwargs)
