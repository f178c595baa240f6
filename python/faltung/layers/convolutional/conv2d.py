"""Conv2D: 2D convolution over (batch, height, width, channels)."""
from faltung.layers.convolutional.base_conv import BaseConv


class Conv2D(BaseConv):
    """2D convolution layer, as keras.layers.Conv2D.

    Args:
        filters: number of output channels.
        kernel_size: int or tuple of 2 ints.
        strides: int or tuple of 2 ints (> 1 excludes dilation_rate > 1).
        padding: "valid", "same" or "full" (faltung addition: pad (k-1)*dilation on both
            sides of each spatial dim).
        data_format: None or "channels_last" only.
        dilation_rate, groups, activation, use_bias, *_initializer, *_regularizer,
        *_constraint: as Keras.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, filters).
    Kernel: (kh, kw, channels // groups, filters); bias (filters,).

    >>> layer = Conv2D(32, (3, 3)); layer.build((None, 28, 28, 3)); layer.count_params()
    896
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(2, filters, kernel_size, strides, padding, data_format, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                         bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint, **kwargs)


Convolution2D = Conv2D
