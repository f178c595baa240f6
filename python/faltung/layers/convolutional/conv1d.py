"""Conv1D: 1D convolution over (batch, steps, channels)."""
from faltung.layers.convolutional.base_conv import BaseConv


class Conv1D(BaseConv):
    """1D convolution layer (temporal convolution), as keras.layers.Conv1D.

    Args:
        filters: number of output channels.
        kernel_size: int or tuple of 1 int.
        strides: int or tuple of 1 int (> 1 excludes dilation_rate > 1).
        padding: "valid", "same", "causal" (left pad, output[t] sees inputs <= t) or
            "full" (faltung addition: pad (k-1)*dilation on both sides).
        data_format: None or "channels_last" only.
        dilation_rate, groups, activation, use_bias, *_initializer, *_regularizer,
        *_constraint: as Keras.

    Input shape: (batch, steps, channels).
    Output shape: (batch, new_steps, filters).
    Kernel: (kernel_size, channels // groups, filters); bias (filters,).

    >>> Conv1D(4, 3, padding="causal").compute_output_shape((None, 10, 2))
    (None, 10, 4)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, filters, kernel_size, strides, padding, data_format, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


Convolution1D = Conv1D
