"""Minimum (Keras's `keras.layers.Minimum`) and its functional interface `minimum`."""
import numpy as np

from faltung.layers.merging.base_merge import ExtremeMerge


class Minimum(ExtremeMerge):
    """Computes the elementwise minimum of a list of inputs.

    It takes as input a list of tensors, all of the same shape (or shapes that broadcast
    as Keras's merge layers allow, see `Merge`), and returns a single tensor.

    Input shape: a list of tensors `(batch_size, ...)`.
    Output shape: `(batch_size, ...)`, the broadcast shape of the inputs.
    Backward: dL/dy goes to the first input attaining the minimum (ties to the earliest
    input, as TensorFlow's gradient; see `ExtremeMerge`).
    """

    _op, _better = np.minimum, np.less


def minimum(inputs, **kwargs):
    """Functional interface to the `Minimum` layer: `Minimum(**kwargs)(inputs)`.

    Args:
        inputs: a list of input tensors of the same shape.
        **kwargs: standard layer keyword arguments.

    Returns:
        A tensor, the elementwise minimum of the inputs.
    """
    return Minimum(**kwargs)(inputs)
