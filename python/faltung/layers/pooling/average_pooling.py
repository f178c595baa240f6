"""AveragePooling1D and AveragePooling2D (Keras 3)."""
from faltung.layers.pooling.base_pooling import BasePooling


class AveragePooling1D(BasePooling):
    """Average pooling over the steps axis of (batch, steps, features) inputs.

    Args:
        pool_size: int (default 2). strides: int or None (None: pool_size).
        padding: "valid" or "same" ("same" divides each window by its number of in-bounds
            elements, as Keras/TF). data_format: "channels_last" only.

    Input shape: (batch, steps, features). Output shape: (batch, downsampled_steps, features).
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, 1, "average", padding, data_format, name=name, **kwargs)


class AveragePooling2D(BasePooling):
    """Average pooling over the two spatial axes of (batch, height, width, channels) inputs.

    Args:
        pool_size: int or (ph, pw) (default (2, 2)). strides: int, tuple or None.
        padding: "valid" or "same" ("same" divides each window by its number of in-bounds
            elements, as Keras/TF). data_format: "channels_last" only.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, pooled_height, pooled_width, channels).
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, 2, "average", padding, data_format, name=name, **kwargs)
