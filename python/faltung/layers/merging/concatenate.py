"""Concatenate (Keras's `keras.layers.Concatenate`) and its functional interface
`concatenate`."""
import numpy as np

from faltung.layers.merging.base_merge import Merge


class Concatenate(Merge):
    """Concatenates a list of inputs along `axis`.

    It takes as input a list of tensors, all of the same shape except for the
    concatenation axis, and returns a single tensor that is the concatenation of all
    inputs. Sizes that are None (unknown) in a symbolic shape match any size.

    Forward costs one copy: np.concatenate writes the inputs into the new output.
    Backward returns views (slices) of dL/dy, one per input, with no copy.

    Masks (as Keras 3): the output mask concatenates the input masks along `axis` (an
    input without a mask counts as all-True; a mask of lower rank than its input is
    broadcast over the input's last axis), then reduces the last axis with `any`.

    Args:
        axis: axis along which to concatenate (default -1).
        **kwargs: standard layer keyword arguments.

    Input shape: a list of tensors of the same rank.
    Output shape: the inputs' shape with the sizes along `axis` summed.

    Example:
        >>> x = np.arange(20, dtype="float32").reshape(2, 2, 5)
        >>> y = np.arange(20, 30, dtype="float32").reshape(2, 1, 5)
        >>> faltung.layers.Concatenate(axis=1)([x, y]).shape
        (2, 3, 5)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise ValueError(f"Invalid value for argument `axis`: expected an integer. "
                             f"Received: axis={axis}")
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        error = (f'Layer "{self.name}": a `Concatenate` layer requires inputs with matching '
                 f"shapes except for the concatenation axis. Received: input_shape={shapes}")
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(error)
        ndim = ranks.pop()
        if not -ndim <= self.axis < ndim:
            raise ValueError(f'Layer "{self.name}": axis {self.axis} is out of bounds for '
                             f"inputs of rank {ndim}. Received: input_shape={shapes}")
        axis = self.axis % ndim
        for d in range(ndim):
            if d != axis and len({s[d] for s in shapes} - {None}) > 1:
                raise ValueError(error)
        out = list(shapes[0])  # Keras takes the other axes from the first input
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def forward(self, inputs, training=False, mask=None):
        xs, _ = self._check_inputs(inputs)
        axis = self.axis % xs[0].ndim
        if training:
            self.save_for_backward(axis, [x.shape[axis] for x in xs])
        return np.concatenate(xs, axis=axis)

    def backward(self, dy, need_dx=True):
        axis, sizes = self.saved_for_backward()
        if not need_dx:
            return None
        dxs, start = [], 0
        for n in sizes:  # disjoint slices: no two inputs share memory
            dxs.append(dy[(slice(None),) * axis + (slice(start, start + n),)])
            start += n
        return dxs

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        self._check_masks(inputs, mask)
        if all(m is None for m in mask):
            return None
        masks = []
        for x, m in zip(inputs, mask):
            if m is None:
                m = np.ones(np.shape(x), bool)
            elif np.ndim(m) < np.ndim(x):
                m = np.broadcast_to(np.expand_dims(m, -1), np.shape(x))
            masks.append(np.asarray(m, bool))
        return np.any(np.concatenate(masks, axis=self.axis), axis=-1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis)
        return cfg


def concatenate(inputs, axis=-1, **kwargs):
    """Functional interface to the `Concatenate` layer.

    Args:
        inputs: a list of input tensors.
        axis: concatenation axis (default -1).
        **kwargs: standard layer keyword arguments.

    Returns:
        A tensor, the concatenation of the inputs along `axis`.
    """
    return Concatenate(axis=axis, **kwargs)(inputs)
