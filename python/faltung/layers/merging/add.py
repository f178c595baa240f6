"""Add (Keras's `keras.layers.Add`) and its functional interface `add`."""
import numpy as np

from faltung.layers.merging.base_merge import Merge, elementwise_reduce, readonly, unbroadcast


class Add(Merge):
    """Performs elementwise addition.

    It takes as input a list of tensors, all of the same shape (or shapes that broadcast
    as Keras's merge layers allow, see `Merge`), and returns a single tensor.

    Input shape: a list of tensors `(batch_size, ...)`.
    Output shape: `(batch_size, ...)`, the broadcast shape of the inputs.
    Backward: each input gets dL/dy (summed over the axes it was broadcast along), as a
    read-only view when no sum was needed.

    Example:
        >>> x1 = np.random.rand(2, 3, 4).astype("float32")
        >>> x2 = np.random.rand(2, 3, 4).astype("float32")
        >>> y = faltung.layers.Add()([x1, x2])
    """

    def _merge(self, xs, masks, out_shape, shapes, training):
        if training:
            self.save_for_backward(shapes)
        return elementwise_reduce(np.add, xs)

    def _merge_backward(self, dy, shapes):
        return [readonly(unbroadcast(dy, s)) for s in shapes]


def add(inputs, **kwargs):
    """Functional interface to the `Add` layer: `Add(**kwargs)(inputs)`.

    Args:
        inputs: a list of input tensors with the same shape.
        **kwargs: standard layer keyword arguments.

    Returns:
        A tensor, the sum of the inputs.
    """
    return Add(**kwargs)(inputs)
