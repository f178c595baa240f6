"""Global{Max,Average}Pooling{1D,2D} (Keras 3): reduce all spatial axes."""
from faltung.layers.pooling.base_pooling import BaseGlobalPooling


class GlobalMaxPooling1D(BaseGlobalPooling):
    """Max over steps. Input (batch, steps, features) -> (batch, features), or
    (batch, 1, features) with keepdims=True. Ties: first maximum gets the gradient.

    As in Keras, it takes no mask: an incoming mask (from `Embedding(mask_zero=True)`,
    `Masking`) is dropped, and masked steps take part in the max."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, "max", data_format, keepdims, **kwargs)


class GlobalAveragePooling1D(BaseGlobalPooling):
    """Mean over steps. Input (batch, steps, features) -> (batch, features), or
    (batch, 1, features) with keepdims=True.

    Call arguments:
        mask: optional (batch, steps) booleans (passed along by models from
            `Embedding(mask_zero=True)` or `Masking`): the mean is then taken over the
            unmasked steps only, as in Keras; a sample with every step masked gives NaN (Keras
            too). The output has no mask.
    """

    supports_masking = True  # Keras: it consumes the mask (and compute_mask returns None)

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, "average", data_format, keepdims, **kwargs)

    def forward(self, x, training=False, mask=None):
        return self._pool(x, training, mask)

    def compute_mask(self, inputs, mask=None):
        return None


class GlobalMaxPooling2D(BaseGlobalPooling):
    """Max over height and width. Input (batch, h, w, channels) -> (batch, channels), or
    (batch, 1, 1, channels) with keepdims=True. Ties: first maximum in row-major order."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, "max", data_format, keepdims, **kwargs)


class GlobalAveragePooling2D(BaseGlobalPooling):
    """Mean over height and width. Input (batch, h, w, channels) -> (batch, channels), or
    (batch, 1, 1, channels) with keepdims=True."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, "average", data_format, keepdims, **kwargs)


# Keras aliases
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
