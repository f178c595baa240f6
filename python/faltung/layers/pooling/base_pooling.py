"""Shared bases of the pooling layers (Keras's BasePooling / BaseGlobalPooling)."""
import numpy as np

from faltung.layers.layer import Layer
from faltung.ops import pooling as P


def check_ndim(layer, shape, ndim):
    """Keras's InputSpec(ndim=...) check, with Keras's wording."""
    if len(shape) != ndim:
        raise ValueError(f'Input 0 of layer "{layer.name}" is incompatible with the layer: '
                         f"expected ndim={ndim}, found ndim={len(shape)}. Full shape received: {tuple(shape)}")


class BasePooling(Layer):
    """Max or average pooling over `pool_dimensions` spatial axes, channels_last.

    Args:
        pool_size: int or tuple of `pool_dimensions` ints, the window size.
        strides: int, tuple or None (None: `pool_size`).
        padding: "valid" (no padding) or "same" (TF rule: output = ceil(in / stride),
            padding split evenly with the extra element at the end; max ignores padded
            elements, average divides by the number of in-bounds elements).
        data_format: "channels_last" (or None); "channels_first" raises ValueError.
    """

    def __init__(self, pool_size, strides, pool_dimensions, pool_mode="max", padding="valid",
                 data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pool_size = P.standardize_tuple(pool_size, pool_dimensions, "pool_size")
        strides = pool_size if strides is None else strides
        self.strides = P.standardize_tuple(strides, pool_dimensions, "strides")
        if pool_mode not in ("max", "average"):
            raise ValueError(f"`pool_mode` must be either 'max' or 'average'. Received: {pool_mode}.")
        self.pool_mode = pool_mode
        self.padding = P.standardize_padding(padding)
        self.data_format = P.standardize_data_format(data_format)
        self.pool_dimensions = pool_dimensions
        self._keep_argmax = False  # set by a MaxUnpooling2D partner (faltung addition)
        self.last_argmax = None
        self.last_input_shape = None
        self.argmax_version = 0

    def build(self, input_shape):
        check_ndim(self, input_shape, self.pool_dimensions + 2)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, self.pool_dimensions + 2)
        spatial = tuple(input_shape[1:-1])
        out = tuple(P.pool_output_size(s, k, st, self.padding)
                    for s, k, st in zip(spatial, self.pool_size, self.strides))
        if any(o is not None and o <= 0 for o in out):
            raise ValueError(f"Layer {self.name}: computed output size would be non-positive. Received: "
                             f"inputs.shape={tuple(input_shape)}, pool_size={self.pool_size}, "
                             f"strides={self.strides}, padding={self.padding!r} -> output spatial size {out}. "
                             f"Use a smaller pool_size or padding='same'.")
        return (input_shape[0],) + out + (input_shape[-1],)

    def check_input(self, x, min_rank=None, rank=None):
        # Pooling accepts any spatial size (Keras: InputSpec(ndim) only); the output size
        # check names the layer.
        check_ndim(self, x.shape, self.pool_dimensions + 2)
        self.compute_output_shape(x.shape)

    def forward(self, x, training=False):
        self.check_input(x)
        if self.pool_mode == "average":
            y = P.average_pool(x, self.pool_size, self.strides, self.padding)
            if training:
                self.save_for_backward(x.shape, None)
            return y
        need_arg = training or self._keep_argmax
        res = P.max_pool(x, self.pool_size, self.strides, self.padding, return_argmax=need_arg)
        y, arg = res if need_arg else (res, None)
        if training:
            self.save_for_backward(x.shape, arg)
        if self._keep_argmax:
            self.last_argmax, self.last_input_shape = arg, x.shape
            self.argmax_version += 1
        return y

    def backward(self, dy, need_dx=True):
        shape, arg = self.saved_for_backward()
        if not need_dx:
            return None
        if self.pool_mode == "average":
            return P.average_pool_backward(dy, shape, self.pool_size, self.strides, self.padding)
        return P.max_pool_backward(dy, arg, shape, self.pool_size, self.strides, self.padding)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(pool_size=self.pool_size, padding=self.padding, strides=self.strides,
                   data_format=self.data_format)
        return cfg


class BaseGlobalPooling(Layer):
    """Max or average over all spatial axes (a pooling whose window is the whole input).

    Args:
        data_format: "channels_last" (or None).
        keepdims: keep the spatial axes with size 1 (Keras default False).
    """

    def __init__(self, pool_dimensions, pool_mode, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = P.standardize_data_format(data_format)
        self.keepdims = keepdims
        self.pool_dimensions = pool_dimensions
        self.pool_mode = pool_mode

    def build(self, input_shape):
        check_ndim(self, input_shape, self.pool_dimensions + 2)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, self.pool_dimensions + 2)
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.pool_dimensions + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def check_input(self, x, min_rank=None, rank=None):
        check_ndim(self, x.shape, self.pool_dimensions + 2)
        if self.input_shape is not None and x.shape[-1] != self.input_shape[-1]:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                             f"axis -1 of input shape to have value {self.input_shape[-1]}, but received "
                             f"input with shape {tuple(x.shape)}")

    def forward(self, x, training=False):
        return self._pool(x, training)

    def _pool(self, x, training, mask=None):
        """The pooling; `mask` (batch, steps) is honoured by the average of 1D inputs only
        (GlobalAveragePooling1D, as Keras)."""
        self.check_input(x)
        window = x.shape[1:-1]
        if mask is not None:
            # Keras: sum(where(mask, x, 0)) / sum(mask) over the steps; a sample whose steps
            # are all masked gives 0/0 = NaN, as in Keras (numpy warns)
            keep = self._step_mask(x, mask)
            count = keep.sum(axis=1, keepdims=True).astype(x.dtype)
            y = np.where(keep, x, 0).sum(axis=1, keepdims=True) / count
            arg = keep  # what backward needs: the kept steps
        elif self.pool_mode == "max":
            # the argmax only for a backward (computed at inference too, it cost 1.19x PyTorch's time)
            y, arg = (P.max_pool(x, window, window, "valid", return_argmax=True) if training
                      else (P.max_pool(x, window, window, "valid"), None))
        else:
            y, arg = P.average_pool(x, window, window, "valid"), None
        if training:
            self.save_for_backward(x.shape, arg)
        return y if self.keepdims else y.reshape(x.shape[0], x.shape[-1])

    def _step_mask(self, x, mask):
        """mask (batch, steps) as a bool array (batch, steps, 1); ValueError naming the layer
        if its shape is not x's first two axes."""
        m = np.asarray(mask)
        if m.shape != x.shape[:2]:
            raise ValueError(f'Layer "{self.name}": expected a mask of shape {x.shape[:2]} (batch, '
                             f"steps) for inputs of shape {x.shape}, received mask shape {m.shape}")
        return m.astype(bool)[:, :, None]

    def backward(self, dy, need_dx=True):
        shape, arg = self.saved_for_backward()
        if not need_dx:
            return None
        window = shape[1:-1]
        dy = dy.reshape((shape[0],) + (1,) * self.pool_dimensions + (shape[-1],))
        if self.pool_mode == "max":
            return P.max_pool_backward(dy, arg, shape, window, window, "valid")
        if arg is not None:
            # y = sum over kept steps of x / count  =>  dx = dy / count on kept steps, 0 on
            # masked ones (all-masked samples: 0, as the gradient of Keras's where)
            keep = arg
            count = np.maximum(keep.sum(axis=1, keepdims=True), 1).astype(dy.dtype)
            return np.where(keep, dy / count, dy.dtype.type(0))
        return P.average_pool_backward(dy, shape, window, window, "valid")

    def get_config(self):
        cfg = super().get_config()
        cfg.update(data_format=self.data_format, keepdims=self.keepdims)
        return cfg
