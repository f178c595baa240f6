"""Average (Keras's `keras.layers.Average`) and its functional interface `average`."""
import numpy as np

from faltung.layers.merging.base_merge import Merge, elementwise_reduce, readonly, unbroadcast


class Average(Merge):
    """Averages a list of inputs elementwise.

    It takes as input a list of tensors, all of the same shape (or shapes that broadcast
    as Keras's merge layers allow, see `Merge`), and returns a single tensor.

    Input shape: a list of tensors `(batch_size, ...)`.
    Output shape: `(batch_size, ...)`, the broadcast shape of the inputs.
    Backward: each input gets dL/dy / n (n inputs), summed over the axes it was broadcast
    along; inputs that need no sum share one array through read-only views.
    """

    def _merge(self, xs, masks, out_shape, shapes, training):
        if training:
            self.save_for_backward(shapes)
        out = elementwise_reduce(np.add, xs)
        out /= len(xs)
        return out

    def _merge_backward(self, dy, shapes):
        g = dy / len(shapes)
        return [readonly(unbroadcast(g, s)) for s in shapes]


def average(inputs, **kwargs):
    """Functional interface to the `Average` layer: `Average(**kwargs)(inputs)`.

    Args:
        inputs: a list of input tensors of the same shape.
        **kwargs: standard layer keyword arguments.

    Returns:
        A tensor, the elementwise mean of the inputs.
    """
    return Average(**kwargs)(inputs)
