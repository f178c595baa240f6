"""The Keras ops that Keras 3 records in the functional config of a masked model, as layers.

Keras computes a mask inside a functional model with ops, and each op call becomes a node
of the saved graph: `Embedding(mask_zero=True)` writes `NotEqual(tokens, 0)`, `Masking`
writes `Any(NotEqual(x, mask_value), axis=-1)`; the recurrent layers then receive that
tensor as `mask=`. faltung's models propagate masks without such nodes, so these layers
exist only to read (and write back) Keras files that hold them. Their outputs are boolean:
no gradient flows through them.
"""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.node import KerasTensor


class _KerasOp(Layer):
    output_dtype = "bool"
    keras_module = "keras.src.ops.numpy"

    def convert_input(self, x):
        return np.asarray(x)

    def check_input_shape(self, shapes):
        pass  # an op takes any shape, as Keras's ops do

    def backward(self, dy, need_dx=True):
        raise ValueError(f"Op '{self.name}' ({type(self).__name__}) has a boolean output and "
                         "no gradient.")

    def get_config(self):
        return {"name": self.name}


class NotEqual(_KerasOp):
    """`keras.ops.not_equal(x, other)` for a constant `other` (Keras's `NotEqual` op)."""

    def __init__(self, other=0, **kwargs):
        super().__init__(**kwargs)
        self.other = other

    def __call__(self, inputs, other=None, **kwargs):
        if other is not None:
            if isinstance(other, KerasTensor) or np.ndim(other):
                raise ValueError(f"NotEqual '{self.name}': faltung reads only a comparison "
                                 f"with a scalar constant. Received other={other!r}")
            self.other = other
        return super().__call__(inputs, **kwargs)

    def call_constants(self):
        """The positional arguments after the tensor, as Keras records them."""
        return [self.other]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        return np.not_equal(x, self.other)


class Any(_KerasOp):
    """`keras.ops.any(x, axis, keepdims)` (Keras's `Any` op)."""

    def __init__(self, axis=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = [axis] if isinstance(axis, int) else axis
        self.keepdims = bool(keepdims)

    def _axes(self, rank):
        return tuple(range(rank)) if self.axis is None else tuple(a % rank for a in self.axis)

    def compute_output_shape(self, input_shape):
        axes = self._axes(len(input_shape))
        if self.keepdims:
            return tuple(1 if i in axes else s for i, s in enumerate(input_shape))
        return tuple(s for i, s in enumerate(input_shape) if i not in axes)

    def forward(self, x, training=False):
        return np.any(x, axis=self._axes(x.ndim), keepdims=self.keepdims)

    def get_config(self):
        return dict(super().get_config(), axis=self.axis, keepdims=self.keepdims)


OPS = {cls.__name__: cls for cls in (NotEqual, Any)}
