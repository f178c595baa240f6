"""Slow, obviously-correct numpy references for conv and conv_transpose (Keras 3 semantics,
channels_last). Never imports faltung.

conv_transpose is computed the way Keras's JAX backend describes it: insert stride-1 zeros
between input pixels, pad by (left, right) per Keras's padding rules, then correlate with
the spatially flipped kernel. conv is Keras's forward convolution with TF "same" padding.
Both take rank-3 (1D) or rank-4 (2D) inputs.
"""
import numpy as np


def _pair(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def conv_transpose_length(length, kernel_size, stride, padding, output_padding=None, dilation=1):
    """Keras 3 output length of one spatial dim of conv_transpose."""
    ke = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        op = max(ke, stride) - ke if output_padding is None else output_padding
        return (length - 1) * stride + ke + op
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + ke % 2 + output_padding


def conv_transpose_pads(kernel_size, stride, padding, output_padding=None, dilation=1):
    """(left, right) zero padding of the stride-dilated input (Keras's JAX backend rule)."""
    ke = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        op = max(ke, stride) - ke if output_padding is None else output_padding
        return ke - 1, ke - 1 + op
    if output_padding is None:
        pad_len = stride + ke - 2
    else:
        pad_len = ke + ke % 2 - 2 + output_padding
    left = min(pad_len // 2 + pad_len % 2, ke - 1)
    return left, pad_len - left


def _as2d(x, kernel):
    if x.ndim == 3:
        return x[:, None], kernel[None], True
    return x, kernel, False


def conv_transpose(x, kernel, strides=1, padding="valid", output_padding=None, dilation_rate=1,
                   bias=None):
    """x (N,IH,IW,CI) or (N,L,CI), kernel (KH,KW,F,CI) or (K,F,CI) -> (N,H,W,F) or (N,L',F)."""
    x, kernel, one_d = _as2d(np.asarray(x, np.float64), np.asarray(kernel, np.float64))
    rank = 1 if one_d else 2
    s = (1,) + _pair(strides, rank) if one_d else _pair(strides, 2)
    d = (1,) + _pair(dilation_rate, rank) if one_d else _pair(dilation_rate, 2)
    op = None if output_padding is None else _pair(output_padding, rank)
    op = (None, None) if op is None else ((0,) + op if one_d else op)
    N, IH, IW, CI = x.shape
    KH, KW, F, _ = kernel.shape
    # stride-dilate the input
    xd = np.zeros((N, (IH - 1) * s[0] + 1, (IW - 1) * s[1] + 1, CI))
    xd[:, ::s[0], ::s[1]] = x
    pads = [conv_transpose_pads(k, st, padding, o, dd) if not (one_d and i == 0) else (0, 0)
            for i, (k, st, o, dd) in enumerate(zip((KH, KW), s, op, d))]
    for axis, (left, right) in zip((1, 2), pads):
        width = [(0, 0)] * 4
        width[axis] = (max(left, 0), max(right, 0))
        xd = np.pad(xd, width)
        n = xd.shape[axis]
        xd = np.take(xd, range(max(-left, 0), n - max(-right, 0)), axis=axis)
    H = xd.shape[1] - (KH - 1) * d[0]
    W = xd.shape[2] - (KW - 1) * d[1]
    y = np.zeros((N, H, W, F))
    for kh in range(KH):
        for kw in range(KW):
            patch = xd[:, kh * d[0]:kh * d[0] + H, kw * d[1]:kw * d[1] + W]
            y += patch @ kernel[KH - 1 - kh, KW - 1 - kw].T  # (F,CI)^T
    if bias is not None:
        y += np.asarray(bias, np.float64)
    return y[:, 0] if one_d else y


def conv(x, kernel, strides=1, padding="valid", dilation_rate=1):
    """Keras forward conv: x (N,H,W,C) or (N,L,C), kernel (KH,KW,C,K) or (K,C,F)."""
    x, kernel, one_d = _as2d(np.asarray(x, np.float64), np.asarray(kernel, np.float64))
    rank = 1 if one_d else 2
    s = (1,) + _pair(strides, rank) if one_d else _pair(strides, 2)
    d = (1,) + _pair(dilation_rate, rank) if one_d else _pair(dilation_rate, 2)
    N, H, W, C = x.shape
    KH, KW, _, K = kernel.shape
    outs, befores = [], []
    for n, k, st, dd in zip((H, W), (KH, KW), s, d):
        ke = (k - 1) * dd + 1
        if padding == "same":
            out = -(-n // st)
            total = max((out - 1) * st + ke - n, 0)
            befores.append((total // 2, total - total // 2))
        else:
            out = (n - ke) // st + 1
            befores.append((0, 0))
        outs.append(out)
    xp = np.pad(x, [(0, 0), befores[0], befores[1], (0, 0)])
    OH, OW = outs
    y = np.zeros((N, OH, OW, K))
    for kh in range(KH):
        for kw in range(KW):
            patch = xp[:, kh * d[0]:kh * d[0] + (OH - 1) * s[0] + 1:s[0],
                       kw * d[1]:kw * d[1] + (OW - 1) * s[1] + 1:s[1]]
            y += patch @ kernel[kh, kw]
    return y[:, 0] if one_d else y
