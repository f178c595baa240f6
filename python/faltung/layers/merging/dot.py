"""Dot (Keras's `keras.layers.Dot`) and its functional interface `dot`.

Keras's batched dot (`batch_dot`): for x (batch, *X) and y (batch, *Y) and axes (a, b),
out[n, i..., j...] = sum_k x[n, i..., k (at a), ...] * y[n, j..., k (at b), ...], shape
(batch, *X without a, *Y without b), or (batch, 1) when that leaves only the batch axis.
Computed as one batched np.matmul (numpy's BLAS, OpenBLAS in numpy's wheels) of x moved to
(batch, M, k) and y moved to (batch, k, N).
"""
import math

import numpy as np

from faltung.layers.merging.base_merge import Merge

EPSILON = 1e-7  # Keras's backend.epsilon(), the floor of the norm in `normalize`


def l2_normalize(x, axis):
    """Keras's ops.normalize(x, axis, order=2): x / max(||x||, EPSILON) along `axis`.
    Returns (x_hat, inv) with inv = 1 / max(||x||, EPSILON) (keepdims)."""
    norm = np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    inv = 1 / np.maximum(norm, np.asarray(EPSILON, x.dtype))
    return x * inv, inv


def l2_normalize_backward(g, x_hat, inv, axis):
    """dL/dx from dL/dx_hat: inv * (g - x_hat * sum(g * x_hat)) where the norm is above
    EPSILON, inv * g where the floor was taken (x_hat = x / EPSILON is linear there)."""
    proj = np.sum(g * x_hat, axis=axis, keepdims=True)
    proj *= inv < 1 / np.asarray(EPSILON, x_hat.dtype)
    return inv * (g - x_hat * proj)


def _as_matrices(x, y, a0, a1):
    """x with its dot axis moved last, (batch, *X, k); y with its dot axis moved to 1,
    (batch, k, *Y); and (batch, M, k, N) with M = prod(X), N = prod(Y)."""
    xm, ym = np.moveaxis(x, a0, -1), np.moveaxis(y, a1, 1)
    return xm, ym, (x.shape[0], math.prod(xm.shape[1:-1]), x.shape[a0], math.prod(ym.shape[2:]))


def _is_int(a):
    return isinstance(a, (int, np.integer)) and not isinstance(a, bool)


class Dot(Merge):
    """Computes the dot product of samples of two tensors along `axes`.

    With x of shape (2, 3, 5), y of shape (2, 10, 3) and `axes=(1, 2)`, the output has
    shape (2, 5, 10). The batch sizes must be equal, and the sizes of the two selected
    axes too.

    Args:
        axes: integer, or tuple/list of two integers: the axis of the first input and the
            axis of the second input to take the dot product along (negative counts from
            the end; the batch axis 0 is not allowed).
        normalize: whether to L2-normalize each sample along the dot axes first (as
            Keras: x / max(||x||, 1e-7)); the output is then the cosine proximity.
        **kwargs: standard layer keyword arguments.

    Input shape: a list of 2 tensors of rank >= 2, `(batch_size, ...)`.
    Output shape: `(batch_size, *rest_of_x, *rest_of_y)` (the dot axes and y's batch axis
        removed), or `(batch_size, 1)` when both inputs are 2-D.

    Masks: the output has no mask (as Keras).

    Example:
        >>> x = np.arange(10, dtype="float32").reshape(1, 5, 2)
        >>> y = np.arange(10, 20, dtype="float32").reshape(1, 2, 5)
        >>> faltung.layers.Dot(axes=(1, 2))([x, y]).shape
        (1, 2, 2)
    """

    _min_inputs = _max_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(axes):
            if not isinstance(axes, (list, tuple)):
                raise TypeError("Invalid type for argument `axes`: it should be a list or an "
                                f"int. Received: axes={axes}")
            if len(axes) != 2:
                raise ValueError("Invalid format for argument `axes`: it should contain two "
                                 f"elements. Received: axes={axes}")
            if not (_is_int(axes[0]) and _is_int(axes[1])):
                raise ValueError("Invalid format for argument `axes`: list elements should be "
                                 f"integers. Received: axes={axes}")
            axes = type(axes)(int(a) for a in axes)
        else:
            axes = int(axes)
        self.axes = axes
        self.normalize = bool(normalize)

    def _axes(self, shapes):
        """The two dot axes as non-negative ints, checked against `shapes`."""
        pair = (self.axes, self.axes) if isinstance(self.axes, int) else tuple(self.axes)
        if any(len(s) < 2 for s in shapes):
            raise ValueError(f'Layer "{self.name}": cannot do batch_dot on inputs with rank < '
                             f"2. Received inputs with shapes {shapes[0]} and {shapes[1]}.")
        axes = []
        for a, s in zip(pair, shapes):
            if not -len(s) <= a < len(s):
                raise ValueError(f'Layer "{self.name}": axes={self.axes} is out of bounds for '
                                 f"inputs with shapes {shapes[0]} and {shapes[1]}.")
            axes.append(a % len(s))
        if 0 in axes:
            raise ValueError(f'Layer "{self.name}": cannot perform batch_dot over axis 0 (the '
                             f"batch axis). Received: axes={self.axes}, input shapes "
                             f"{shapes[0]} and {shapes[1]}.")
        d1, d2 = shapes[0][axes[0]], shapes[1][axes[1]]
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(f'Layer "{self.name}": incompatible input shapes: axis values {d1} '
                             f"(at axis {axes[0]}) != {d2} (at axis {axes[1]}). Full input "
                             f"shapes: {shapes[0]}, {shapes[1]}")
        b1, b2 = shapes[0][0], shapes[1][0]
        if b1 is not None and b2 is not None and b1 != b2:
            raise ValueError(f'Layer "{self.name}": cannot do batch_dot on inputs with '
                             f"different batch sizes. Received inputs with shapes {shapes[0]} "
                             f"and {shapes[1]}.")
        return axes

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        a0, a1 = self._axes(shapes)
        s0, s1 = shapes
        out = s0[:a0] + s0[a0 + 1:] + s1[1:a1] + s1[a1 + 1:]
        batch = s0[0] if s0[0] is not None else s1[0]
        out = (batch,) + out[1:]
        return out if len(out) > 1 else out + (1,)

    def forward(self, inputs, training=False, mask=None):
        (x, y), out_shape = self._check_inputs(inputs)
        a0, a1 = self._axes([x.shape, y.shape])
        if self.normalize:
            x, inv_x = l2_normalize(x, a0)
            y, inv_y = l2_normalize(y, a1)
        xm, ym, (batch, m, k, n) = _as_matrices(x, y, a0, a1)
        out = np.matmul(xm.reshape(batch, m, k), ym.reshape(batch, k, n))
        if training:  # x, y are the normalized inputs when normalize=True
            self.save_for_backward(x, y, a0, a1, *((inv_x, inv_y) if self.normalize else ()))
        return out.reshape(out_shape)

    def backward(self, dy, need_dx=True):
        x, y, a0, a1, *inv = self.saved_for_backward()
        if not need_dx:
            return None
        xm, ym, (batch, m, k, n) = _as_matrices(x, y, a0, a1)
        g = dy.reshape(batch, m, n)
        gx = np.matmul(g, ym.reshape(batch, k, n).transpose(0, 2, 1))   # (batch, M, k)
        gy = np.matmul(xm.reshape(batch, m, k).transpose(0, 2, 1), g)   # (batch, k, N)
        dx0 = np.moveaxis(gx.reshape(xm.shape), -1, a0)
        dx1 = np.moveaxis(gy.reshape(ym.shape), 1, a1)
        if self.normalize:
            inv_x, inv_y = inv
            dx0 = l2_normalize_backward(dx0, x, inv_x, a0)
            dx1 = l2_normalize_backward(dx1, y, inv_y, a1)
        return [dx0, dx1]

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axes=self.axes, normalize=self.normalize)
        return cfg


def dot(inputs, axes=-1, **kwargs):
    """Functional interface to the `Dot` layer.

    Args:
        inputs: a list of 2 input tensors.
        axes: integer or tuple of two integers, the axis or axes along which to take the
            dot product (default -1).
        normalize: whether to L2-normalize samples along the dot axes first.
        **kwargs: standard layer keyword arguments.

    Returns:
        A tensor, the dot product of the samples of the inputs.
    """
    return Dot(axes=axes, **kwargs)(inputs)
