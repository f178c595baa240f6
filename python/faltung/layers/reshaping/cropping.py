"""Cropping1D and Cropping2D (Keras 3). Plain numpy: slicing forward, np.pad backward."""
from faltung.layers.layer import Layer
from faltung.layers.pooling.base_pooling import check_ndim
from faltung.ops import pooling as P
from faltung.ops import resampling as R


class Cropping1D(Layer):
    """Trims the start and end of the steps axis.

    Args:
        cropping: int, or (left_crop, right_crop) (default (1, 1)).

    Input shape: (batch, steps, features). Output shape: (batch, cropped_steps, features).
    """

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = P.standardize_tuple(cropping, 2, "cropping", allow_zero=True)

    def build(self, input_shape):
        check_ndim(self, input_shape, 3)
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape, what="input_shape"):
        check_ndim(self, input_shape, 3)
        length = None
        if input_shape[1] is not None:
            length = input_shape[1] - self.cropping[0] - self.cropping[1]
            if length <= 0:
                raise ValueError("`cropping` parameter of `Cropping1D` layer must be smaller than the input "
                                 f"length. Received: {what}={tuple(input_shape)}, cropping={self.cropping}")
        return (input_shape[0], length, input_shape[2])

    def check_input(self, x, min_rank=None, rank=None):
        self.compute_output_shape(x.shape, "inputs.shape")

    def forward(self, x, training=False):
        self.check_input(x)
        if training:
            self.save_for_backward()
        return R.crop(x, (self.cropping,))

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return R.crop_backward(dy, (self.cropping,)) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(cropping=self.cropping)
        return cfg


class Cropping2D(Layer):
    """Trims rows and columns at the borders of an image.

    Args:
        cropping: int; or (symmetric_height_crop, symmetric_width_crop); or
            ((top_crop, bottom_crop), (left_crop, right_crop)) (default ((0, 0), (0, 0))).
        data_format: "channels_last" only.

    Input shape: (batch, rows, cols, channels).
    Output shape: (batch, cropped_rows, cropped_cols, channels).
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = P.standardize_data_format(data_format)
        if isinstance(cropping, int):
            if cropping < 0:
                raise ValueError(f"`cropping` cannot be negative. Received: cropping={cropping}.")
            self.cropping = ((cropping, cropping), (cropping, cropping))
        elif hasattr(cropping, "__len__"):
            if len(cropping) != 2:
                raise ValueError(f"`cropping` should have two elements. Received: cropping={cropping}.")
            self.cropping = (P.standardize_tuple(cropping[0], 2, "1st entry of cropping", allow_zero=True),
                             P.standardize_tuple(cropping[1], 2, "2nd entry of cropping", allow_zero=True))
        else:
            raise ValueError("`cropping` should be either an int, a tuple of 2 ints "
                             "(symmetric_height_crop, symmetric_width_crop), or a tuple of 2 tuples of 2 ints "
                             f"((top_crop, bottom_crop), (left_crop, right_crop)). Received: cropping={cropping}.")

    def build(self, input_shape):
        check_ndim(self, input_shape, 4)
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape, what="input_shape"):
        check_ndim(self, input_shape, 4)
        (t, b), (l, r) = self.cropping
        h, w = input_shape[1], input_shape[2]
        if (h is not None and t + b >= h) or (w is not None and l + r >= w):
            raise ValueError("Values in `cropping` argument should be smaller than the corresponding spatial "
                             f"dimension of the input. Received: {what}={tuple(input_shape)}, "
                             f"cropping={self.cropping}")
        return (input_shape[0], None if h is None else h - t - b, None if w is None else w - l - r, input_shape[3])

    def check_input(self, x, min_rank=None, rank=None):
        self.compute_output_shape(x.shape, "inputs.shape")

    def forward(self, x, training=False):
        self.check_input(x)
        if training:
            self.save_for_backward()
        return R.crop(x, self.cropping)

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return R.crop_backward(dy, self.cropping) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(cropping=self.cropping, data_format=self.data_format)
        return cfg
