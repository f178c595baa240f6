"""Plain numpy references for 3x3 stride-1 convolutions (NHWC, weight (3,3,C,K)).

Output pixel (oh, ow) reads input rows oh - pad_top + kh and columns ow - pad_left + kw;
reads outside the input are zeros. Computed in float64.
"""
import numpy as np


def _padded(x, pad_top, pad_left, rows, cols):
    """x (N,H,W,C) embedded in zeros so that padded[:, r, c] = x[:, r - pad_top, c - pad_left]."""
    n, h, w, c = x.shape
    out = np.zeros((n, rows, cols, c), dtype=np.float64)
    r0, c0 = max(pad_top, 0), max(pad_left, 0)
    src = x[:, max(-pad_top, 0):, max(-pad_left, 0):, :]
    hh = max(0, min(src.shape[1], rows - r0))
    ww = max(0, min(src.shape[2], cols - c0))
    out[:, r0:r0 + hh, c0:c0 + ww, :] = src[:, :hh, :ww, :]
    return out


def conv3x3_forward(x, w, b, pad_top, pad_left, oh, ow):
    """x (N,H,W,C), w (3,3,C,K), b (K,) or None -> (N,OH,OW,K)."""
    xp = _padded(np.asarray(x, np.float64), pad_top, pad_left, oh + 2, ow + 2)
    w = np.asarray(w, np.float64)
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for kh in range(3):
        for kw in range(3):
            out += xp[:, kh:kh + oh, kw:kw + ow, :] @ w[kh, kw]
    if b is not None:
        out += np.asarray(b, np.float64)
    return out


def conv3x3_backward_data(dout, w, h, wd, pad_top, pad_left):
    """dout (N,OH,OW,K), w (3,3,C,K) -> dx (N,H,W,C), by scattering each tap."""
    n, oh, ow, k = dout.shape
    c = w.shape[2]
    dxp = np.zeros((n, oh + 2, ow + 2, c))
    for kh in range(3):
        for kw in range(3):
            dxp[:, kh:kh + oh, kw:kw + ow, :] += np.asarray(dout, np.float64) @ np.asarray(w[kh, kw], np.float64).T
    # dxp[:, r] corresponds to input row r - pad_top.
    dx = np.zeros((n, h, wd, c))
    for i in range(h):
        r = i + pad_top
        if not 0 <= r < oh + 2:
            continue
        for j in range(wd):
            q = j + pad_left
            if 0 <= q < ow + 2:
                dx[:, i, j, :] = dxp[:, r, q, :]
    return dx


def conv3x3_backward_filter(dout, x, pad_top, pad_left):
    """dout (N,OH,OW,K), x (N,H,W,C) -> dw (3,3,C,K)."""
    n, oh, ow, k = dout.shape
    xp = _padded(np.asarray(x, np.float64), pad_top, pad_left, oh + 2, ow + 2)
    d = np.asarray(dout, np.float64).reshape(-1, k)
    dw = np.zeros((3, 3, x.shape[3], k))
    for kh in range(3):
        for kw in range(3):
            dw[kh, kw] = xp[:, kh:kh + oh, kw:kw + ow, :].reshape(-1, x.shape[3]).T @ d
    return dw
