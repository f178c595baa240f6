"""MaxPooling1D and MaxPooling2D (Keras 3)."""
from faltung.layers.pooling.base_pooling import BasePooling


class MaxPooling1D(BasePooling):
    """Max pooling over the steps axis of (batch, steps, features) inputs.

    Args:
        pool_size: int, window size (default 2).
        strides: int or None (None: pool_size).
        padding: "valid" or "same" (padded elements never win).
        data_format: "channels_last" only.

    Input shape: (batch, steps, features).
    Output shape: (batch, downsampled_steps, features).

    Backward routes each gradient to the window's maximum; on ties the first maximum in
    window order gets it (faltung's documented rule).
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, 1, "max", padding, data_format, name=name, **kwargs)


class MaxPooling2D(BasePooling):
    """Max pooling over the two spatial axes of (batch, height, width, channels) inputs.

    Args:
        pool_size: int or (ph, pw) (default (2, 2)).
        strides: int, (sh, sw) or None (None: pool_size).
        padding: "valid" or "same" (padded elements never win).
        data_format: "channels_last" only.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, pooled_height, pooled_width, channels).

    Backward routes each gradient to the window's maximum; on ties the first maximum in
    row-major window order gets it. A `MaxUnpooling2D(pool=this_layer)` partner (faltung
    addition) makes every forward keep its argmax in `last_argmax`.

    >>> MaxPooling2D()(np.zeros((1, 4, 4, 3))).shape
    (1, 2, 2, 3)
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(pool_size, strides, 2, "max", padding, data_format, name=name, **kwargs)
