"""The math of faltung.losses: per-sample loss values and their gradients (numpy, plus
the fused C++ softmax cross-entropy of faltung.ops.nn for logits). Keras 3's formulas;
probabilities are clipped to [EPSILON, 1 - EPSILON] as Keras does.
"""
import numpy as np

# from_logits crossentropies run the fused C++ softmax + cross-entropy kernel (dense slice).
from faltung.ops.nn import softmax_cross_entropy_with_grad as _fused_softmax_ce

EPSILON = 1e-7


# ----------------------------------------------------------------------------------
# Kernels: (y_true, y_pred, need_grad) -> (values, dvalues/dy_pred or None).
# y_pred has the reduced axis last; values have y_pred's shape without it.
# ----------------------------------------------------------------------------------
def softmax_ce(x, t, sparse, scale, need_grad=True):
    """Logits (..., C) -> per-sample loss (...), grad (..., C) times `scale` (or None)."""
    lead, c = x.shape[:-1], x.shape[-1]
    x2 = np.ascontiguousarray(x.reshape(-1, c))
    t2 = t.reshape(-1) if sparse else np.ascontiguousarray(t.reshape(-1, c))
    loss, g = _fused_softmax_ce(x2, t2, sparse, float(scale), need_grad)
    g = g.reshape(x.shape) if (need_grad and g is not None) else None
    return np.asarray(loss, x.dtype).reshape(lead), g


def probs_ce(p, t, need_grad):
    """Keras's non-logit categorical crossentropy on probabilities p (..., C)."""
    s = p.sum(axis=-1, keepdims=True)
    q = p / s
    qc = np.clip(q, EPSILON, 1.0 - EPSILON)
    values = -(t * np.log(qc)).sum(axis=-1)
    if not need_grad:
        return values, None
    gq = -t / qc
    gq[(q < EPSILON) | (q > 1.0 - EPSILON)] = 0.0
    g = (gq - (gq * q).sum(axis=-1, keepdims=True)) / s
    return values, g


def bce(t, p, from_logits, need_grad):
    c = p.shape[-1]
    if from_logits:
        v = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
        g = (1.0 / (1.0 + np.exp(-p)) - t) / c if need_grad else None
    else:
        pc = np.clip(p, EPSILON, 1.0 - EPSILON)
        v = -(t * np.log(pc) + (1.0 - t) * np.log(1.0 - pc))
        g = None
        if need_grad:
            g = -(t / pc - (1.0 - t) / (1.0 - pc)) / c
            g[(p < EPSILON) | (p > 1.0 - EPSILON)] = 0.0
    return v.mean(axis=-1), g


def hinge_labels(t):
    if np.all((t == 0) | (t == 1)):
        return 2.0 * t - 1.0
    return t


def elementwise(kind, t, p, need_grad, delta=1.0):
    c = p.shape[-1]
    if kind == "mse":  # one temporary: the squares are summed without an array, d becomes g
        d = p - t
        values = np.einsum("...i,...i->...", d, d) / c
        if need_grad:
            d *= 2.0 / c
        return values, (d if need_grad else None)
    if kind == "mae":
        d = p - t
        return np.abs(d).mean(axis=-1), (np.sign(d) / c if need_grad else None)
    if kind == "mape":
        d = p - t
        den = np.maximum(np.abs(t), EPSILON)
        return 100.0 * (np.abs(d) / den).mean(axis=-1), (100.0 * np.sign(d) / den / c if need_grad else None)
    if kind == "msle":
        a = np.log1p(np.maximum(p, EPSILON))
        b = np.log1p(np.maximum(t, EPSILON))
        g = None
        if need_grad:
            g = 2.0 * (a - b) / (1.0 + np.maximum(p, EPSILON)) / c
            g[p < EPSILON] = 0.0
        return ((a - b) ** 2).mean(axis=-1), g
    if kind in ("hinge", "squared_hinge"):
        t = hinge_labels(t)
        m = np.maximum(1.0 - t * p, 0.0)
        if kind == "hinge":
            return m.mean(axis=-1), (-t * (m > 0) / c if need_grad else None)
        return (m * m).mean(axis=-1), (-2.0 * t * m / c if need_grad else None)
    if kind == "categorical_hinge":
        pos = (t * p).sum(axis=-1)
        negs = (1.0 - t) * p
        j = negs.argmax(axis=-1)
        neg = np.take_along_axis(negs, j[..., None], -1)[..., 0]
        v = np.maximum(neg - pos + 1.0, 0.0)
        g = None
        if need_grad:
            g = -t.copy()
            np.put_along_axis(g, j[..., None], np.take_along_axis(g, j[..., None], -1)
                              + np.take_along_axis(1.0 - t, j[..., None], -1), -1)
            g *= (v > 0)[..., None]
        return v, g
    if kind == "huber":
        d = p - t
        a = np.abs(d)
        small = a <= delta
        v = np.where(small, 0.5 * d * d, delta * a - 0.5 * delta * delta).mean(axis=-1)
        return v, (np.where(small, d, delta * np.sign(d)) / c if need_grad else None)
    if kind == "log_cosh":
        d = p - t
        v = (d + np.logaddexp(0.0, -2.0 * d) - np.log(2.0)).mean(axis=-1)
        return v, (np.tanh(d) / c if need_grad else None)
    if kind == "kl_divergence":
        tc = np.clip(t, EPSILON, 1.0)
        pc = np.clip(p, EPSILON, 1.0)
        g = None
        if need_grad:
            g = -tc / pc
            g[(p < EPSILON) | (p > 1.0)] = 0.0
        return (tc * np.log(tc / pc)).sum(axis=-1), g
    if kind == "poisson":
        v = (p - t * np.log(p + EPSILON)).mean(axis=-1)
        return v, ((1.0 - t / (p + EPSILON)) / c if need_grad else None)
    raise ValueError(f"unknown elementwise loss {kind}")
