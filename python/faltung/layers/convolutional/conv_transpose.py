"""Transposed convolution layers: Conv1DTranspose, Conv2DTranspose (Keras 3 semantics).

Aliases as in Keras 3: Convolution1DTranspose, Convolution2DTranspose.
"""
import numpy as np

from faltung import constraints, initializers, regularizers
from faltung.layers.convolutional.base_conv import ConvBrick
from faltung.ops.argument_validation import standardize_data_format, standardize_padding, standardize_tuple
from faltung.ops.convolution_transpose import (compute_conv_transpose_output_shape, conv_transpose,
                                               conv_transpose_backward)

__all__ = ["Conv1DTranspose", "Conv2DTranspose", "Convolution1DTranspose",
           "Convolution2DTranspose"]


class BaseConvTranspose(ConvBrick):
    """Rank-generic transposed convolution (rank 1 or 2), channels_last.

    Args:
        rank: 1 or 2.
        filters: int, number of output channels.
        kernel_size: int or tuple of `rank` ints.
        strides: int or tuple of `rank` ints. `strides > 1` is incompatible with
            `dilation_rate > 1`.
        padding: "valid" or "same" (case-insensitive).
        output_padding: None or int / tuple of `rank` ints, each < the stride: extra
            size added on the right/bottom of the output.
        data_format: None or "channels_last" ("channels_first" raises ValueError: faltung
            is channels_last only).
        dilation_rate: int or tuple of `rank` ints.
        activation: activation name or None.
        use_bias: whether to add a bias of shape (filters,).
        kernel_initializer, bias_initializer: initializers.
        kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
            bias_constraint: as Keras (resolved with regularizers.get / constraints.get).

    The kernel has shape (*kernel_size, filters, in_channels) as in Keras (note the order,
    swapped vs. ConvND). `get_config` also contains `output_padding` (Keras 3 omits it,
    so its configs lose it; faltung keeps it so a round trip rebuilds the same layer).
    """

    _exact_ndim = True

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        # The transposed kernels apply the activation after the op (no fused epilogue).
        super().__init__(rank, kernel_size, strides, "valid", data_format, dilation_rate,
                         activation, use_bias, activity_regularizer, fuse_activation=False,
                         **kwargs)
        if self.algorithm_arg != "auto":
            raise ValueError(f"{type(self).__name__}: the transposed convolution chooses its "
                             "kernel itself (direct, Winograd phases); `algorithm` must be "
                             f"'auto'. Received algorithm={self.algorithm_arg!r}")
        self.padding = standardize_padding(padding)  # "valid" or "same" only
        self.output_padding = (None if output_padding is None else
                               standardize_tuple(output_padding, rank, "output_padding", allow_zero=True))
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        if filters is not None and (not isinstance(filters, (int, np.integer)) or filters <= 0):
            raise ValueError("Invalid value for argument `filters`. Expected a strictly positive "
                             f"value. Received filters={filters}.")
        self.filters = int(filters)
        if self.output_padding is not None:
            for i in range(rank):
                if self.output_padding[i] >= self.strides[i]:
                    raise ValueError("`output_padding` must be < `strides`. "
                                     f"output_padding={self.output_padding}, strides={self.strides}")

    def _conv_args(self):
        return dict(strides=self.strides, padding=self.padding, output_padding=self.output_padding,
                    dilation_rate=self.dilation_rate)

    def build(self, input_shape):
        input_shape = self._check_input_shape(input_shape)
        self.kernel = self.add_weight(self.kernel_size + (self.filters, input_shape[-1]),
                                      self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias",
                                     regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint)
                     if self.use_bias else None)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return compute_conv_transpose_output_shape(
            tuple(input_shape), self.kernel_size, self.filters, **self._conv_args())

    def _op_forward(self, x, relu):
        bias = None if self.bias is None else self.bias.value
        return conv_transpose(x, self.kernel.value, bias=bias, **self._conv_args()), "transpose"

    def _op_backward(self, dz, x, need_dx):
        train = self.trainable
        dx, dk, db = conv_transpose_backward(
            dz, x, self.kernel.value, need_dx=need_dx, need_dkernel=train,
            need_dbias=train and self.bias is not None, **self._conv_args())
        self._set_grads([(self.kernel, dk), (self.bias, db)])
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            filters=self.filters, output_padding=self.output_padding,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
            kernel_constraint=constraints.serialize(self.kernel_constraint),
            bias_constraint=constraints.serialize(self.bias_constraint))
        return cfg


class Conv1DTranspose(BaseConvTranspose):
    """1D transposed convolution layer (Keras `Conv1DTranspose`).

    Args: see BaseConvTranspose (here `kernel_size`, `strides`, `output_padding` and
    `dilation_rate` are an int or a tuple of 1 int).

    Input shape:
        3D tensor (batch_size, steps, channels).

    Output shape:
        3D tensor (batch_size, new_steps, filters): new_steps = steps * strides for
        "same", (steps - 1) * strides + max(kernel_size, strides) for "valid" (dilation 1,
        output_padding None).

    Example:
    >>> x = np.random.rand(4, 10, 128)
    >>> Conv1DTranspose(32, 3, 2, activation='relu')(x).shape
    (4, 21, 32)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


class Conv2DTranspose(BaseConvTranspose):
    """2D transposed convolution layer (Keras `Conv2DTranspose`).

    Args: see BaseConvTranspose (`kernel_size`, `strides`, `dilation_rate`,
    `output_padding`: an int or a tuple of 2 ints). As in Keras, `output_padding` is a
    keyword argument (the fifth positional argument is `data_format`).

    Input shape:
        4D tensor (batch_size, height, width, channels).

    Output shape:
        4D tensor (batch_size, new_height, new_width, filters).

    Example:
    >>> x = np.random.rand(4, 10, 8, 128)
    >>> Conv2DTranspose(32, 2, 2, activation='relu')(x).shape
    (4, 20, 16, 32)
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, output_padding=None, **kwargs):
        super().__init__(2, filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, activation, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer, bias_regularizer,
                         activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
