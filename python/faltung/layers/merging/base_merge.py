"""Merge: the base of the elementwise merge layers (Keras's `keras.layers.Merge`).

Shapes follow Keras 3's `Merge`: all inputs have the same batch size; the other axes are
aligned to the right and must be equal or 1 (`_compute_elemwise_op_output_shape`), and an
input of lower rank gets size-1 axes inserted after the batch axis. So (batch, 4, 5) merges
with (batch, 5), (batch, 1, 5) or (batch, 4, 1), but not with (batch, 4) or (1, 4, 5) when
the batch is 2. Anything else raises ValueError naming the layer and the shapes.

Aliasing: `backward` returns one gradient per input and never the same array object twice.
Where several inputs get the same values (Add, Average), each gets its own read-only view of
one array: no copy, and a caller that tried to add into one in place (the graph never does:
it sums with `a + b`) gets an error instead of silently changing another input's gradient.
Bricks do not write into the dy they receive (every existing backward allocates its dx).
"""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.node import is_shape


def readonly(a):
    """A read-only view of `a` (a distinct array object sharing a's memory)."""
    v = a.view()
    v.flags.writeable = False
    return v


def expand_rank(x, ndim):
    """x with size-1 axes inserted after the batch axis up to `ndim` axes (Keras's Merge
    does this with expand_dims(x, 1) for inputs of lower rank)."""
    return x.reshape(x.shape[:1] + (1,) * (ndim - x.ndim) + x.shape[1:])


def unbroadcast(g, shape):
    """The gradient `g` (of the output's shape) of an input of `shape` that was expanded
    with expand_rank and broadcast: sums over the broadcast axes."""
    expanded = tuple(shape[:1]) + (1,) * (g.ndim - len(shape)) + tuple(shape[1:])
    axes = tuple(i for i, (a, b) in enumerate(zip(expanded, g.shape)) if a == 1 and b != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def elementwise_reduce(op, xs):
    """op(...op(op(x0, x1), x2)...) for a numpy ufunc `op` (broadcasting), into one new
    array; one input is copied."""
    out = np.empty(np.broadcast_shapes(*(x.shape for x in xs)), np.result_type(*xs))
    if len(xs) == 1:
        np.copyto(out, xs[0])
    else:
        op(xs[0], xs[1], out=out)
    for x in xs[2:]:
        op(out, x, out=out)
    return out


class Merge(Layer):
    """Generic merge layer for elementwise merge functions (Keras's `Merge`); used to
    implement `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`.

    Subclasses implement `_merge(xs, masks, out_shape, shapes, training)` (xs and masks
    already expanded to the output's rank, `shapes` the inputs' own shapes), which returns
    the output and saves what backward needs, and `_merge_backward(dy, *saved)`, which
    returns the list of input gradients.

    Masks: the output mask is the logical OR of the input masks when every input has one,
    else None (Keras's `compute_mask`). Add, Subtract and Average ignore the masks in their
    values; Multiply, Maximum and Minimum use them as Keras does (see those layers).
    """

    supports_masking = True
    _min_inputs = 1     # Keras 3 accepts a list of one input (the output is a copy of it)
    _max_inputs = None

    # -- shapes ----------------------------------------------------------------------
    def _shapes(self, input_shape, what="input_shape"):
        """`input_shape` as a list of tuples, checked to be a list of the right length."""
        if not isinstance(input_shape, (list, tuple)) or not all(
                isinstance(s, (list, tuple)) and is_shape(s) for s in input_shape):
            raise ValueError(f'Layer "{self.name}": a merge layer should be called on a list '
                             f"of inputs. Received: {what}={input_shape} (not a list of shapes)")
        shapes = [tuple(s) for s in input_shape]
        n = len(shapes)
        if n < self._min_inputs or (self._max_inputs is not None and n > self._max_inputs):
            exactly = self._min_inputs == self._max_inputs
            expected = f"{'exactly' if exactly else 'at least'} {self._min_inputs}"
            raise ValueError(f'Layer "{self.name}": a `{type(self).__name__}` layer should be '
                             f"called on a list of {expected} input(s). Received {n} inputs: "
                             f"{what}={shapes}")
        if any(len(s) < 1 for s in shapes):
            raise ValueError(f'Layer "{self.name}": every input needs a batch axis. Received: '
                             f"{what}={shapes}")
        return shapes

    def _elemwise_shape(self, shape1, shape2, shapes):
        """Keras's `_compute_elemwise_op_output_shape` for two shapes without the batch."""
        if len(shape1) < len(shape2):
            shape1, shape2 = shape2, shape1
        if not shape2:
            return shape1
        out = list(shape1[:len(shape1) - len(shape2)])
        for i, j in zip(shape1[len(shape1) - len(shape2):], shape2):
            if i is None or j is None:
                out.append(None)
            elif i == 1 or j == 1:
                out.append(j if i == 1 else i)
            elif i != j:
                raise ValueError(f'Layer "{self.name}": inputs have incompatible shapes. '
                                 f"Received shapes {shape1} and {shape2} (full input shapes: "
                                 f"{shapes})")
            else:
                out.append(i)
        return tuple(out)

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        batch_sizes = {s[0] for s in shapes} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(f'Layer "{self.name}": cannot merge tensors with different batch '
                             f"sizes. Received tensors with shapes {shapes}")
        out = shapes[0][1:]
        for s in shapes[1:]:
            out = self._elemwise_shape(out, s[1:], shapes)
        return (batch_sizes.pop() if batch_sizes else None,) + out

    def build(self, input_shape):
        shapes = self._shapes(input_shape)
        super().build(shapes)  # computes (and so checks) the output shape

    def check_input_shape(self, shapes):
        # Keras's merge layers have no input spec: a built layer may be called again on
        # other shapes as long as they merge (compute_output_shape checks that).
        self._shapes(shapes)

    def _check_inputs(self, inputs):
        """The input arrays as a list, and the output shape (ValueError if they do not merge)."""
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f'Layer "{self.name}": a merge layer should be called on a list of '
                             f"inputs. Received: inputs of type {type(inputs).__name__} "
                             f"(not a list of tensors)")
        xs = list(inputs)
        return xs, self.compute_output_shape([x.shape for x in xs])

    # -- masks -------------------------------------------------------------------------
    def _check_masks(self, inputs, mask):
        if not isinstance(mask, (tuple, list)):
            raise ValueError(f'Layer "{self.name}": `mask` should be a list. Received: mask={mask}')
        if not isinstance(inputs, (tuple, list)):
            raise ValueError(f'Layer "{self.name}": `inputs` should be a list. Received: '
                             f"inputs of type {type(inputs).__name__}")
        if len(mask) != len(inputs):
            raise ValueError(f'Layer "{self.name}": the lists `inputs` and `mask` should have '
                             f"the same length. Received: inputs of length {len(inputs)}, and "
                             f"mask of length {len(mask)}")

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        self._check_masks(inputs, mask)
        if any(m is None for m in mask):
            return None
        out = np.asarray(mask[0], dtype=bool)
        for m in mask[1:]:
            out = np.logical_or(out, m)
        return out

    def _value_masks(self, xs, mask, out_ndim):
        """Per input: None, or its mask as a bool array broadcast to the input's shape
        (Keras: broadcast_to(expand_dims(mask, -1), shape(x))) and expanded to `out_ndim`."""
        if mask is None:
            return [None] * len(xs)
        self._check_masks(xs, mask)
        out = []
        for i, (x, m) in enumerate(zip(xs, mask)):
            if m is None:
                out.append(None)
                continue
            m = np.asarray(m, dtype=bool)
            try:
                m = np.broadcast_to(m[..., None], x.shape)
            except ValueError:
                raise ValueError(f'Layer "{self.name}": the mask of input {i} has shape '
                                 f"{m.shape}, which does not broadcast (with a trailing axis) "
                                 f"to the input's shape {x.shape}") from None
            out.append(expand_rank(m, out_ndim))
        return out

    # -- computation -------------------------------------------------------------------
    def forward(self, inputs, training=False, mask=None):
        xs, out_shape = self._check_inputs(inputs)
        shapes = [x.shape for x in xs]
        ndim = len(out_shape)
        masks = self._value_masks(xs, mask, ndim)
        return self._merge([expand_rank(x, ndim) for x in xs], masks, out_shape, shapes, training)

    def backward(self, dy, need_dx=True):
        saved = self.saved_for_backward()
        if not need_dx:
            return None
        return self._merge_backward(dy, *saved)

    def _merge(self, xs, masks, out_shape, shapes, training):
        raise NotImplementedError

    def _merge_backward(self, dy, *saved):
        raise NotImplementedError


class ExtremeMerge(Merge):
    """The base of `Maximum` and `Minimum` (faltung's; Keras shares this logic in
    `Merge._apply_merge_op_and_or_mask`): `op` is np.maximum or np.minimum, `better`
    np.greater or np.less.

    Masks (as Keras 3): a masked-out entry of an input takes the value merged so far (and
    the merged value so far takes the input's where it was masked), so masked entries do
    not take part when another input is unmasked there.

    Gradient: each output entry sends dL/dy to exactly one input, the first (lowest index)
    attaining the extreme, so ties go to the earliest input. That is what Keras gives on its
    default TensorFlow backend (tf.maximum's gradient goes to x where x >= y, and Keras
    chains maximum(merged_so_far, next_input)); torch.maximum and jax split a tie evenly
    between the two operands. Both are valid subgradients; first-wins keeps the gradient
    sparse, as MaxPooling's. (Where an input is NaN the output is NaN, as np.maximum's, and
    the gradient goes to one input.)
    """

    _op = _better = None

    def _merge(self, xs, masks, out_shape, shapes, training):
        if not training and all(m is None for m in masks):
            return elementwise_reduce(self._op, xs)
        cur, cur_mask = xs[0], masks[0]
        win = np.zeros(out_shape, np.min_scalar_type(len(xs)))  # index of the input taken
        for i in range(1, len(xs)):
            x, m, src = xs[i], masks[i], i
            if m is not None:
                x, src = np.where(m, x, cur), np.where(m, i, win)
            if cur_mask is not None:
                cur, win = np.where(cur_mask, cur, x), np.where(cur_mask, win, src)
            cur_mask = None if m is None or cur_mask is None else cur_mask | m
            take = self._better(x, cur)  # strict: a tie keeps the earlier input
            cur = self._op(cur, x)
            win = np.where(take, src, win)
        out = np.array(np.broadcast_to(cur, out_shape)) if len(xs) == 1 else cur
        if training:
            self.save_for_backward(win, shapes)
        return out

    def _merge_backward(self, dy, win, shapes):
        zero = np.zeros((), dy.dtype)
        return [unbroadcast(np.where(win == i, dy, zero), s) for i, s in enumerate(shapes)]
