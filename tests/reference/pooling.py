"""Slow numpy references for pooling (never imports faltung). NHWC, float64."""
import math

import numpy as np


def same_pads(size, k, s):
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2


def out_and_pad(size, k, s, padding):
    if padding == "valid":
        return (size - k) // s + 1, 0
    return same_pads(size, k, s)


def pool2d(x, pool, strides, padding, mode):
    """x (N,H,W,C) -> (y (N,OH,OW,C), argmax (N,OH,OW,C) flat h*W+w, first max wins)."""
    n, h, w, c = x.shape
    oh, pt = out_and_pad(h, pool[0], strides[0], padding)
    ow, pl = out_and_pad(w, pool[1], strides[1], padding)
    y = np.zeros((n, oh, ow, c))
    arg = np.zeros((n, oh, ow, c), np.int64)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * strides[0] - pt, j * strides[1] - pl
            hs, he = max(h0, 0), min(h0 + pool[0], h)
            ws, we = max(w0, 0), min(w0 + pool[1], w)
            win = x[:, hs:he, ws:we, :].reshape(n, -1, c)
            if mode == "max":
                k = np.argmax(win, axis=1)  # numpy: first occurrence
                y[:, i, j] = np.take_along_axis(win, k[:, None], 1)[:, 0]
                kh, kw = np.divmod(k, we - ws)
                arg[:, i, j] = (hs + kh) * w + ws + kw
            else:
                y[:, i, j] = win.mean(axis=1)
    return y, arg


def resize_bilinear(x, oh, ow):
    """Half-pixel-centre bilinear resize (TF / Keras 3 ops.image.resize), x (N,H,W,C)."""
    n, h, w, c = x.shape

    def taps(o, size, out):
        src = (o + 0.5) * size / out - 0.5
        f = math.floor(src)
        return min(max(f, 0), size - 1), min(max(f + 1, 0), size - 1), src - f

    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        h0, h1, lh = taps(i, h, oh)
        for j in range(ow):
            w0, w1, lw = taps(j, w, ow)
            y[:, i, j] = ((1 - lh) * ((1 - lw) * x[:, h0, w0] + lw * x[:, h0, w1])
                          + lh * ((1 - lw) * x[:, h1, w0] + lw * x[:, h1, w1]))
    return y


def batch_norm_train(x, gamma, beta, eps):
    """Over all axes but the last: biased variance."""
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta, mean, var
