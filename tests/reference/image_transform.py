"""Plain numpy oracle of faltung.ops.image.affine_transform: scipy.ndimage.affine_transform
with order 0/1 applied per channel, written point by point from scipy's documented modes.
Never imports faltung."""
import math

import numpy as np


def _index(i, n, mode):
    """Sample index of tap i on an axis of length n, or None for the fill value."""
    if mode == "reflect":            # d c b a | a b c d | d c b a
        i %= 2 * n
        return i if i < n else 2 * n - 1 - i
    if mode == "mirror":             # d c b | a b c d | c b a
        if n == 1:
            return 0
        i %= 2 * n - 2
        return i if i < n else 2 * n - 2 - i
    if mode == "grid-wrap":
        return i % n
    if mode == "grid-constant":
        return i if 0 <= i < n else None
    return min(max(i, 0), n - 1)     # constant / nearest / wrap: the coordinate is in range


def _coordinate(x, n, mode):
    """The coordinate after scipy's point-level mapping; None when the point is the fill value."""
    if mode == "constant" and not 0 <= x <= n - 1:
        return None
    if mode == "nearest":
        return min(max(x, 0.0), n - 1.0)
    if mode == "wrap":               # period n-1: the first and last sample overlap
        if n == 1:
            return 0.0
        p = n - 1
        if x < 0:
            return x + p * (int(-x / p) + 1)
        if x > p:
            return x - p * int(x / p)
    return x


def _taps(x, n, order, mode):
    x = _coordinate(x, n, mode)
    if x is None:
        return None
    if order == 0:
        return [(_index(math.floor(x + 0.5), n, mode), 1.0)]
    i0 = math.floor(x)
    w = x - i0
    return [(_index(i0, n, mode), 1.0 - w), (_index(i0 + 1, n, mode), w)]


def affine_transform(images, matrices, order=1, mode="constant", cval=0.0):
    """images (N,H,W,C) float64, matrices (N,2,3) -> (N,H,W,C) float64."""
    images = np.asarray(images, np.float64)
    N, H, W, C = images.shape
    out = np.empty_like(images)
    for n in range(N):
        m = np.asarray(matrices[n], np.float64)
        for r in range(H):
            for c in range(W):
                ty = _taps(m[0, 2] + r * m[0, 0] + c * m[0, 1], H, order, mode)
                tx = _taps(m[1, 2] + r * m[1, 0] + c * m[1, 1], W, order, mode)
                if ty is None or tx is None:
                    out[n, r, c] = cval
                    continue
                acc = np.zeros(C)
                for i, wi in ty:
                    for j, wj in tx:
                        v = cval if i is None or j is None else images[n, i, j]
                        acc = acc + v * (wi * wj)
                out[n, r, c] = acc
    return out
