"""Slow numpy references for the conv family (never imports faltung).

Layouts as Keras: x (N,H,W,C), kernel (KH,KW,C/groups,K), out (N,OH,OW,K).
"""
import math

import numpy as np


def pads_1d(size, k, stride, dilation, padding):
    """(pad_before, pad_after, out_size) of one spatial dim under a padding mode."""
    ek = (k - 1) * dilation + 1
    if padding == "valid":
        before, out = 0, (size - ek) // stride + 1
    elif padding == "same":
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + ek - size, 0)
        before = total // 2
    elif padding == "causal":
        before, out = ek - 1, math.ceil(size / stride)
    elif padding == "full":
        before, out = ek - 1, (size + ek - 1 - 1) // stride + 1
    else:
        raise ValueError(padding)
    after = (out - 1) * stride + ek - size - before
    return before, after, out


def conv2d(x, w, b=None, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """x (N,H,W,C), w (KH,KW,C/G,K) -> (N,OH,OW,K); pads ((top,bottom),(left,right)) may
    be negative at the end (unused input rows)."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    KH, KW, Cg, K = w.shape
    (pt, pb), (pl, pr) = pads
    xp = np.zeros((N, H + pt + max(pb, 0), W + pl + max(pr, 0), C))
    xp[:, pt:pt + H, pl:pl + W] = x
    sh, sw = strides
    dh, dw = dilation
    OH = (H + pt + pb - (KH - 1) * dh - 1) // sh + 1
    OW = (W + pl + pr - (KW - 1) * dw - 1) // sw + 1
    Kg = K // groups
    out = np.zeros((N, OH, OW, K))
    for g in range(groups):
        xg = xp[..., g * Cg:(g + 1) * Cg]
        for kh in range(KH):
            for kw in range(KW):
                patch = xg[:, kh * dh:kh * dh + (OH - 1) * sh + 1:sh, kw * dw:kw * dw + (OW - 1) * sw + 1:sw]
                out[..., g * Kg:(g + 1) * Kg] += patch @ w[kh, kw, :, g * Kg:(g + 1) * Kg]
    if b is not None:
        out += b
    return out


def conv(x, w, b=None, strides=1, padding="valid", dilation_rate=1):
    """keras.ops.conv semantics for rank 3 (N,W,C) or 4 (N,H,W,C) inputs."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    r = x.ndim - 2
    st = (strides,) * r if np.isscalar(strides) else tuple(strides)
    dl = (dilation_rate,) * r if np.isscalar(dilation_rate) else tuple(dilation_rate)
    if r == 1:
        x, w, st, dl = x[:, None], w[None], (1,) + st, (1,) + dl
    pads = []
    for i in range(2):
        if r == 1 and i == 0:
            pads.append((0, 0))
            continue
        bef, aft, _ = pads_1d(x.shape[1 + i], w.shape[i], st[i], dl[i], padding)
        pads.append((bef, aft))
    groups = x.shape[-1] // w.shape[2]
    out = conv2d(x, w, b, st, pads, dl, groups)
    return out[:, 0] if r == 1 else out


def depthwise_conv(x, w, b=None, strides=1, padding="valid", dilation_rate=1):
    """w (KH,KW,C,m) (or (KW,C,m) for rank 3) -> groups=C conv with output c*m + j."""
    w = np.asarray(w, np.float64)
    w2 = w.reshape(w.shape[:-2] + (1, w.shape[-2] * w.shape[-1]))
    return conv(x, w2, b, strides, padding, dilation_rate)


def separable_conv(x, dw, pw, b=None, strides=1, padding="valid", dilation_rate=1):
    y = depthwise_conv(x, dw, None, strides, padding, dilation_rate)
    return conv(y, pw, b, 1, "valid", 1)
