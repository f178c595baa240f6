"""ZeroPadding1D and ZeroPadding2D (Keras 3). Plain numpy: np.pad forward, slicing backward."""
from faltung.layers.layer import Layer
from faltung.layers.pooling.base_pooling import check_ndim
from faltung.ops import pooling as P
from faltung.ops import resampling as R


class _ZeroPadding(Layer):
    ndim = None

    def build(self, input_shape):
        check_ndim(self, input_shape, self.ndim)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, self.ndim)
        return (input_shape[0],) + tuple(None if s is None else s + a + b
                                         for s, (a, b) in zip(input_shape[1:-1], self._pads)) + (input_shape[-1],)

    def check_input(self, x, min_rank=None, rank=None):
        check_ndim(self, x.shape, self.ndim)

    def forward(self, x, training=False):
        self.check_input(x)
        if training:
            self.save_for_backward()
        return R.zero_pad(x, self._pads)

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return R.zero_pad_backward(dy, self._pads) if need_dx else None


class ZeroPadding1D(_ZeroPadding):
    """Adds zeros at the start and end of the steps axis.

    Args:
        padding: int, or (left_pad, right_pad) (default 1).

    Input shape: (batch, steps, features). Output shape: (batch, padded_steps, features).
    """
    ndim = 3

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = P.standardize_tuple(padding, 2, "padding", allow_zero=True)
        self._pads = (self.padding,)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(padding=self.padding)
        return cfg


class ZeroPadding2D(_ZeroPadding):
    """Adds rows and columns of zeros around an image.

    Args:
        padding: int; or (symmetric_height_pad, symmetric_width_pad); or
            ((top_pad, bottom_pad), (left_pad, right_pad)) (default (1, 1)).
        data_format: "channels_last" only.

    Input shape: (batch, rows, cols, channels).
    Output shape: (batch, padded_rows, padded_cols, channels).
    """
    ndim = 4

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = P.standardize_data_format(data_format)
        if isinstance(padding, int):
            height, width = P.standardize_tuple(padding, 2, "padding", allow_zero=True)  # refuses < 0
            self.padding = ((height, height), (width, width))
        elif hasattr(padding, "__len__"):
            if len(padding) != 2:
                raise ValueError(f"`padding` should have two elements. Received: padding={padding}.")
            self.padding = (P.standardize_tuple(padding[0], 2, "1st entry of padding", allow_zero=True),
                            P.standardize_tuple(padding[1], 2, "2nd entry of padding", allow_zero=True))
        else:
            raise ValueError("`padding` should be either an int, a tuple of 2 ints "
                             "(symmetric_height_crop, symmetric_width_crop), or a tuple of 2 tuples of 2 ints "
                             f"((top_crop, bottom_crop), (left_crop, right_crop)). Received: padding={padding}.")
        self._pads = self.padding

    def get_config(self):
        cfg = super().get_config()
        cfg.update(padding=self.padding, data_format=self.data_format)
        return cfg
