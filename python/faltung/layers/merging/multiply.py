"""Multiply (Keras's `keras.layers.Multiply`) and its functional interface `multiply`."""
import numpy as np

from faltung.layers.merging.base_merge import Merge, elementwise_reduce, unbroadcast


class Multiply(Merge):
    """Performs elementwise multiplication.

    It takes as input a list of tensors, all of the same shape (or shapes that broadcast
    as Keras's merge layers allow, see `Merge`), and returns a single tensor.

    Masks (as Keras 3): a masked-out entry of an input counts as 1 in the product; when
    every input has a mask, the output is 0 where no input is unmasked.

    Input shape: a list of tensors `(batch_size, ...)`.
    Output shape: `(batch_size, ...)`, the broadcast shape of the inputs.
    Backward: input i gets dL/dy times the product of the other inputs (0 where its mask
    is off), summed over the axes it was broadcast along. With n inputs this takes
    n * (n - 1) elementwise products (no division, so zeros in the inputs are exact).
    """

    def _merge(self, xs, masks, out_shape, shapes, training):
        xs = [x if m is None else np.where(m, x, np.ones((), x.dtype)) for x, m in zip(xs, masks)]
        out = elementwise_reduce(np.multiply, xs)
        out_mask = None
        if all(m is not None for m in masks):
            out_mask = np.zeros(out.shape, bool)
            for m in masks:
                out_mask |= m
            out[~out_mask] = 0
        if training:
            self.save_for_backward(xs, masks, out_mask, shapes)
        return out

    def _merge_backward(self, dy, xs, masks, out_mask, shapes):
        if out_mask is not None:
            dy = np.where(out_mask, dy, np.zeros((), dy.dtype))
        dxs = []
        for i, (m, shape) in enumerate(zip(masks, shapes)):
            g = dy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            if m is not None:
                g = np.where(m, g, np.zeros((), g.dtype))
            dxs.append(unbroadcast(g, shape))
        return dxs


def multiply(inputs, **kwargs):
    """Functional interface to the `Multiply` layer: `Multiply(**kwargs)(inputs)`.

    Args:
        inputs: a list of input tensors of the same shape.
        **kwargs: standard layer keyword arguments.

    Returns:
        A tensor, the elementwise product of the inputs.
    """
    return Multiply(**kwargs)(inputs)
