"""Slow, obviously-correct numpy references for the merging layers (never imports
faltung), and the test cases the merging tests share. Computed in float64.

Keras's merge broadcasting: inputs of lower rank get size-1 axes after the batch axis,
then the shapes broadcast as numpy's do (equal sizes or 1), with equal batch sizes.
"""
import itertools

import numpy as np

EPSILON = 1e-7  # Keras's backend.epsilon()


def expand(xs):
    ndim = max(x.ndim for x in xs)
    return [np.asarray(x, np.float64).reshape(x.shape[:1] + (1,) * (ndim - x.ndim) + x.shape[1:])
            for x in xs]


def add(xs):
    xs = expand(xs)
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def subtract(xs):
    a, b = expand(xs)
    return a - b


def multiply(xs):
    xs = expand(xs)
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


def average(xs):
    return add(xs) / len(xs)


def maximum(xs):
    xs = expand(xs)
    out = xs[0]
    for x in xs[1:]:
        out = np.maximum(out, x)
    return out


def minimum(xs):
    xs = expand(xs)
    out = xs[0]
    for x in xs[1:]:
        out = np.minimum(out, x)
    return out


def extreme_grads(xs, dy, better):
    """Gradients of the elementwise max (better=np.greater) or min (np.less), with each
    output entry's gradient going to the first input attaining the extreme."""
    ex = [np.broadcast_to(x, dy.shape) for x in expand(xs)]
    grads = [np.zeros(x.shape) for x in ex]
    for idx in itertools.product(*(range(n) for n in dy.shape)):
        best = 0
        for i in range(1, len(ex)):
            if better(ex[i][idx], ex[best][idx]):
                best = i
        grads[best][idx] += dy[idx]
    return [sum_to(g, x.shape) for g, x in zip(grads, xs)]


def sum_to(g, shape):
    """Sums g (broadcast output shape) down to an input's shape (Keras's alignment)."""
    ex = tuple(shape[:1]) + (1,) * (g.ndim - len(shape)) + tuple(shape[1:])
    for axis, n in enumerate(ex):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g.reshape(shape)


def l2_normalize(x, axis):
    norm = np.sqrt((np.asarray(x, np.float64) ** 2).sum(axis=axis, keepdims=True))
    return x / np.maximum(norm, EPSILON)


def batch_dot(x, y, axes, normalize=False):
    """Keras's batch_dot, one sample at a time with np.tensordot (as Keras's own test)."""
    if isinstance(axes, int):
        axes = (axes, axes)
    a0, a1 = axes[0] % x.ndim, axes[1] % y.ndim
    if normalize:
        x, y = l2_normalize(x, a0), l2_normalize(y, a1)
    out = np.stack([np.tensordot(x[n], y[n], (a0 - 1, a1 - 1)) for n in range(x.shape[0])])
    return out.reshape(out.shape[0], 1) if out.ndim == 1 else out


# -- cases shared by the merging tests ----------------------------------------------------

# input shapes (batch first); the broadcasting ones are those Keras's Merge allows
SHAPES = {
    "same": [(3, 4, 5), (3, 4, 5)],
    "B1": [(1, 6), (1, 6)],
    "three": [(2, 3, 4), (2, 3, 4), (2, 3, 4)],
    "four": [(2, 5), (2, 5), (2, 5), (2, 5)],
    "lower-rank": [(2, 4, 5), (2, 5)],
    "lower-rank-first": [(2, 5), (2, 3, 4, 5)],
    "ones": [(2, 1, 5), (2, 4, 1)],
    "grows-late": [(2, 1, 5), (2, 1, 5), (2, 4, 5)],
    "batch-only": [(3,), (3, 4)],
}

CONCAT = {
    "last": ([(2, 3, 4), (2, 3, 5)], -1),
    "axis1": ([(2, 3, 4), (2, 1, 4), (2, 2, 4)], 1),
    "neg2": ([(1, 3, 4), (1, 2, 4)], -2),
    "B1-2d": ([(1, 3), (1, 5)], 1),
    "batch-axis": ([(2, 3), (4, 3)], 0),
    "one": ([(2, 3)], -1),
}

DOT = {
    "2d": ([(3, 4), (3, 4)], -1),
    "3d": ([(2, 4, 5), (2, 4, 5)], -1),
    "axes-1-2": ([(2, 3, 5), (2, 10, 3)], (1, 2)),
    "higher-dim": ([(1, 3, 2), (1, 1, 2, 3)], (-2, -1)),
    "2d-3d": ([(2, 4), (2, 6, 4)], (1, 2)),
    "3d-2d": ([(2, 6, 4), (2, 4)], [2, 1]),
    "4d-3d": ([(2, 3, 2, 5), (2, 5, 4)], (3, 1)),
    "B1-axis1": ([(1, 3, 2), (1, 3, 4)], 1),
}

# Keras 3's own masking example (merging_test.py): X1 and X2 with the masks
# keras.layers.Masking() gives them, and each layer's expected output for
# (X1 masked, X2 not) and (both masked).
X1 = np.array([[[0, 0], [1, 2], [0, 0], [3, 4]]], np.float32)
X2 = np.array([[[0, 0], [0, 0], [1, 2], [3, 4]]], np.float32)
M1 = np.array([[False, True, False, True]])   # keras.layers.Masking() of X1
M2 = np.array([[False, False, True, True]])   # ... of X2
MASKED = {
    "Add": ([[0, 0], [1, 2], [1, 2], [6, 8]], [[0, 0], [1, 2], [1, 2], [6, 8]]),
    "Subtract": ([[0, 0], [1, 2], [-1, -2], [0, 0]], [[0, 0], [1, 2], [-1, -2], [0, 0]]),
    "Average": ([[0, 0], [0.5, 1], [0.5, 1], [3, 4]], [[0, 0], [0.5, 1], [0.5, 1], [3, 4]]),
    "Multiply": ([[0, 0], [0, 0], [1, 2], [9, 16]], [[0, 0], [1, 2], [1, 2], [9, 16]]),
    "Minimum": ([[0, 0], [0, 0], [1, 2], [3, 4]], [[0, 0], [1, 2], [1, 2], [3, 4]]),
}
