"""Subtract (Keras's `keras.layers.Subtract`) and its functional interface `subtract`."""
import numpy as np

from faltung.layers.merging.base_merge import Merge, unbroadcast


class Subtract(Merge):
    """Performs elementwise subtraction: `inputs[0] - inputs[1]`.

    It takes as input a list of exactly 2 tensors of the same shape (or shapes that
    broadcast as Keras's merge layers allow, see `Merge`), and returns a single tensor.

    Input shape: a list of 2 tensors `(batch_size, ...)`.
    Output shape: `(batch_size, ...)`, the broadcast shape of the inputs.
    Backward: dL/dy for the first input (a view of dy when no sum was needed), -dL/dy for
    the second, each summed over the axes it was broadcast along.
    """

    _min_inputs = _max_inputs = 2

    def _merge(self, xs, masks, out_shape, shapes, training):
        if training:
            self.save_for_backward(shapes)
        return np.subtract(xs[0], xs[1])

    def _merge_backward(self, dy, shapes):
        return [unbroadcast(dy, shapes[0]), -unbroadcast(dy, shapes[1])]


def subtract(inputs, **kwargs):
    """Functional interface to the `Subtract` layer: `Subtract(**kwargs)(inputs)`.

    Args:
        inputs: a list of 2 input tensors of the same shape.
        **kwargs: standard layer keyword arguments.

    Returns:
        A tensor, `inputs[0] - inputs[1]`.
    """
    return Subtract(**kwargs)(inputs)
