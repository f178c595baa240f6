"""Slow, obviously-correct numpy references for RepeatVector and Permute (never imports
faltung). Computed in float64."""
import itertools

import numpy as np


def repeat_vector(x, n):
    out = np.zeros((x.shape[0], n, x.shape[1]))
    for b in range(x.shape[0]):
        for r in range(n):
            out[b, r] = x[b]
    return out


def permute(x, dims):
    perm = (0,) + tuple(dims)
    out = np.zeros(tuple(x.shape[p] for p in perm))
    for idx in itertools.product(*(range(n) for n in x.shape)):
        out[tuple(idx[p] for p in perm)] = x[idx]
    return out
