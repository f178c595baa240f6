"""Separable convolution layers: a depthwise convolution followed by a pointwise (1x1)
convolution (Keras's base_separable_conv.py semantics)."""
import numpy as np

from faltung import constraints, initializers, regularizers
from faltung.layers.convolutional.base_conv import ConvBrick, check_positive, serialize
from faltung.ops import convolution as conv_ops


class BaseSeparableConv(ConvBrick):
    """Abstract separable convolution (rank 1 or 2).

    Args:
        rank: 1 or 2.
        depth_multiplier: depthwise output channels per input channel.
        filters: output channels of the pointwise convolution.
        kernel_size, strides, padding, data_format, dilation_rate: of the depthwise step
            (the pointwise step is 1x1, stride 1, "valid").
        activation, use_bias, depthwise_initializer, pointwise_initializer,
        bias_initializer, *_regularizer, *_constraint: as Keras.

    Weights (Keras order): depthwise_kernel kernel_size + (channels, depth_multiplier),
    pointwise_kernel (1,)*rank + (channels * depth_multiplier, filters), bias (filters,).
    `self.algorithm` is "<depthwise kernel>+<pointwise kernel>".
    """

    def __init__(self, rank, depth_multiplier, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(rank, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         activity_regularizer, **kwargs)
        check_positive(depth_multiplier, "depth_multiplier")
        check_positive(filters, "filters")
        self.depth_multiplier, self.filters = int(depth_multiplier), int(filters)
        self.depthwise_initializer = initializers.get(depthwise_initializer or "glorot_uniform")
        self.pointwise_initializer = initializers.get(pointwise_initializer or "glorot_uniform")
        self.bias_initializer = initializers.get(bias_initializer or "zeros")
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)
        self.pointwise_constraint = constraints.get(pointwise_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        input_shape = self._check_input_shape(input_shape)
        C = input_shape[-1]
        self.compute_output_shape(input_shape)
        self.depthwise_kernel = self.add_weight(
            self.kernel_size + (C, self.depth_multiplier), self.depthwise_initializer, "depthwise_kernel",
            regularizer=self.depthwise_regularizer, constraint=self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight(
            (1,) * self.rank + (C * self.depth_multiplier, self.filters), self.pointwise_initializer,
            "pointwise_kernel", regularizer=self.pointwise_regularizer, constraint=self.pointwise_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias", regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint) if self.use_bias else None)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return conv_ops.compute_conv_output_shape(tuple(input_shape), self.filters, self.kernel_size, self.strides,
                                                  self.padding, self.dilation_rate)

    def _op_forward(self, x, relu):
        d, a1 = conv_ops.depthwise_conv_forward(x, self.depthwise_kernel.value, **self._geometry())
        b = self.bias.value if self.bias is not None else None
        z, a2 = conv_ops.conv_forward(d, self.pointwise_kernel.value, b, relu=relu, algorithm="auto")
        return z, f"{a1}+{a2}", d  # backward of the pointwise step needs d

    def _op_backward(self, dz, x, need_dx, d):
        dd, dpw, db = conv_ops.conv_backward(dz, d, self.pointwise_kernel.value, need_dx=True,
                                             need_dw=self.trainable, need_db=self.trainable and self.bias is not None)
        dx, ddw, _ = conv_ops.depthwise_conv_backward(np.ascontiguousarray(dd), x, self.depthwise_kernel.value,
                                                      need_dx=need_dx, need_dw=self.trainable, need_db=False,
                                                      **self._geometry())
        self._set_grads([(self.depthwise_kernel, ddw), (self.pointwise_kernel, dpw), (self.bias, db)])
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(depth_multiplier=self.depth_multiplier, filters=self.filters,
                   depthwise_initializer=serialize(self.depthwise_initializer),
                   pointwise_initializer=serialize(self.pointwise_initializer),
                   bias_initializer=serialize(self.bias_initializer),
                   depthwise_regularizer=regularizers.serialize(self.depthwise_regularizer),
                   pointwise_regularizer=regularizers.serialize(self.pointwise_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer),
                   depthwise_constraint=constraints.serialize(self.depthwise_constraint),
                   pointwise_constraint=constraints.serialize(self.pointwise_constraint),
                   bias_constraint=constraints.serialize(self.bias_constraint))
        return cfg


class SeparableConv1D(BaseSeparableConv):
    """1D separable convolution, as keras.layers.SeparableConv1D.

    Input shape: (batch, steps, channels). Output shape: (batch, new_steps, filters).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, depth_multiplier, filters, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, depthwise_initializer, pointwise_initializer, bias_initializer,
                         depthwise_regularizer, pointwise_regularizer, bias_regularizer, activity_regularizer,
                         depthwise_constraint, pointwise_constraint, bias_constraint, **kwargs)


class SeparableConv2D(BaseSeparableConv):
    """2D separable convolution, as keras.layers.SeparableConv2D.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, filters).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(2, depth_multiplier, filters, kernel_size, strides, padding, data_format, dilation_rate,
                         activation, use_bias, depthwise_initializer, pointwise_initializer, bias_initializer,
                         depthwise_regularizer, pointwise_regularizer, bias_regularizer, activity_regularizer,
                         depthwise_constraint, pointwise_constraint, bias_constraint, **kwargs)


SeparableConvolution1D = SeparableConv1D
SeparableConvolution2D = SeparableConv2D
