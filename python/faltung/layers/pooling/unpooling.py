"""MaxUnpooling2D and AverageUnpooling2D — faltung additions (Keras has no unpooling),
for encoder-decoder segmentation networks (SegNet-style decoders)."""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.pooling.base_pooling import BasePooling, check_ndim
from faltung.ops import pooling as P


class MaxUnpooling2D(Layer):
    """faltung addition: the inverse placement of a max pooling.

    Two modes:

    - `MaxUnpooling2D(pool=p)` with `p` a `MaxPooling2D` layer: each input value goes back
      to the position where `p`'s most recent forward found its window's maximum; every
      other output element is 0. The output shape is `p`'s input shape. `p` must run
      forward before this layer on the same batch (in a `Sequential`: `p` comes earlier);
      otherwise a ValueError says so. Values of overlapping windows that share a maximum
      add up (this makes the layer the exact adjoint of `p`'s gradient routing).
    - `MaxUnpooling2D(size=(2, 2))` without a partner: each value goes to the top-left
      pixel of its size[0] x size[1] block; output (batch, h*size[0], w*size[1], c).

    Backward: the gradient at each placed position is read back (a gather).

    Args:
        pool: a MaxPooling2D layer instance, or None. (A saved model's config names the partner;
            loading the model reconnects the two, `resolve_layer_references`.)
        size: int or (kh, kw), used only without `pool` (default (2, 2)).

    Input shape: (batch, h, w, channels) — with `pool`, exactly `p`'s output shape.
    Output shape: `p`'s input shape, or (batch, h*kh, w*kw, channels).
    """

    def __init__(self, pool=None, size=(2, 2), **kwargs):
        super().__init__(**kwargs)
        self._pool_name = None  # a partner named by a saved config, until the model resolves it
        if isinstance(pool, str):
            self._pool_name, pool = pool, None
        elif pool is not None and not _is_max_pool_2d(pool):
            raise ValueError(f"MaxUnpooling2D: `pool` must be a MaxPooling2D layer instance or None. "
                             f"Received: pool={pool!r}")
        self.pool = pool
        self.size = P.standardize_tuple(size, 2, "size")
        if pool is not None:
            pool._keep_argmax = True  # the partner now keeps its argmax at every forward
        self._used_version = None

    def resolve_layer_references(self, layers_by_name):
        """Reconnects the partner that a saved config names (called by the model being loaded,
        before it is built)."""
        if self._pool_name is None:
            return
        pool = layers_by_name.get(self._pool_name)
        if pool is None or not _is_max_pool_2d(pool):
            raise ValueError(f"Layer {self.name}: its config names the partner '{self._pool_name}', "
                             f"which is not a MaxPooling2D layer of the model being loaded")
        self.pool, self._pool_name = pool, None
        pool._keep_argmax = True

    @property
    def awaits_references(self):
        """True while a partner named by a saved config is not reconnected yet."""
        return self._pool_name is not None

    def _check_resolved(self):
        if self._pool_name is not None:
            raise ValueError(f"Layer {self.name}: its partner '{self._pool_name}' (named in a saved "
                             "config) was never reconnected; load it within the model that holds both")

    def _geometry(self):
        if self.pool is None:
            return self.size, self.size, "valid"
        return self.pool.pool_size, self.pool.strides, self.pool.padding

    def build(self, input_shape):
        check_ndim(self, input_shape, 4)
        self._check_resolved()
        if self.pool is not None and not self.pool.built:
            raise ValueError(f"Layer {self.name}: its partner pooling layer {self.pool.name} must be built "
                             f"(placed earlier in the model) before this MaxUnpooling2D")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, 4)
        self._check_resolved()
        if self.pool is not None:
            if self.pool.input_shape is None:
                raise ValueError(f"Layer {self.name}: the output shape is the input shape of partner "
                                 f"{self.pool.name}, which is not built yet")
            return (input_shape[0],) + tuple(self.pool.input_shape[1:])
        return (input_shape[0],) + tuple(None if s is None else s * k
                                         for s, k in zip(input_shape[1:3], self.size)) + (input_shape[3],)

    def check_input(self, x, min_rank=None, rank=None):
        check_ndim(self, x.shape, 4)

    def forward(self, x, training=False):
        self.check_input(x)
        pool_size, strides, padding = self._geometry()
        if self.pool is None:
            arg = P.top_left_argmax(x.shape, self.size)
            out_shape = (x.shape[0], x.shape[1] * self.size[0], x.shape[2] * self.size[1], x.shape[3])
        else:
            p = self.pool
            if p.last_argmax is None:
                raise ValueError(f"Layer {self.name}: partner pooling layer {p.name} has not run forward yet; "
                                 f"the MaxPooling2D must run before its MaxUnpooling2D (in a Sequential, place "
                                 f"it earlier)")
            if self._used_version == p.argmax_version:
                raise ValueError(f"Layer {self.name}: partner pooling layer {p.name} has not run forward since "
                                 f"this layer's last call; the MaxPooling2D must run before its MaxUnpooling2D "
                                 f"on every batch")
            arg, out_shape = p.last_argmax, p.last_input_shape
            if tuple(arg.shape) != tuple(x.shape):
                raise ValueError(f"Layer {self.name}: expected an input of shape {tuple(arg.shape)} (the output "
                                 f"shape of partner {p.name}'s last forward), received shape {tuple(x.shape)}")
            self._used_version = p.argmax_version
        y = P.max_unpool(x, arg, out_shape, pool_size, strides, padding)
        if training:
            self.save_for_backward(arg)
        return y

    def backward(self, dy, need_dx=True):
        (arg,) = self.saved_for_backward()
        if not need_dx:
            return None
        pool_size, strides, padding = self._geometry()
        return P.max_unpool_backward(dy, arg, pool_size, strides, padding)

    def get_config(self):
        cfg = super().get_config()
        # The partner is a live layer object; the config records its name only.
        cfg.update(size=self.size, pool=self._pool_name if self.pool is None else self.pool.name)
        return cfg


def _is_max_pool_2d(layer):
    return isinstance(layer, BasePooling) and layer.pool_mode == "max" and layer.pool_dimensions == 2


class AverageUnpooling2D(Layer):
    """faltung addition: spreads each value evenly over a size[0] x size[1] block
    (value / (kh*kw)), the adjoint of AveragePooling2D(pool_size=size).

    Args:
        size: int or (kh, kw) (default (2, 2)).

    Input shape: (batch, h, w, channels). Output shape: (batch, h*kh, w*kw, channels).
    Backward: block means of the output gradient.
    """

    def __init__(self, size=(2, 2), **kwargs):
        super().__init__(**kwargs)
        self.size = P.standardize_tuple(size, 2, "size")

    def build(self, input_shape):
        check_ndim(self, input_shape, 4)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_ndim(self, input_shape, 4)
        return (input_shape[0],) + tuple(None if s is None else s * k
                                         for s, k in zip(input_shape[1:3], self.size)) + (input_shape[3],)

    def check_input(self, x, min_rank=None, rank=None):
        check_ndim(self, x.shape, 4)

    def forward(self, x, training=False):
        self.check_input(x)
        if training:
            self.save_for_backward()
        return P.average_unpool(x, self.size)

    def backward(self, dy, need_dx=True):
        self.saved_for_backward()
        return P.average_unpool_backward(dy, self.size) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=self.size)
        return cfg
