"""Slow, obviously-correct numpy references for dense, activations, softmax
cross-entropy (never imports faltung). Computed in float64."""
import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def dense(x, w, b=None):
    x = np.asarray(x, np.float64)
    out = np.zeros(x.shape[:-1] + (w.shape[1],))
    flat_x, flat_o = x.reshape(-1, x.shape[-1]), out.reshape(-1, w.shape[1])
    for n in range(flat_x.shape[0]):
        for o in range(w.shape[1]):
            flat_o[n, o] = sum(flat_x[n, i] * w[i, o] for i in range(w.shape[0]))
            if b is not None:
                flat_o[n, o] += b[o]
    return out


def _erf(v):
    return np.vectorize(math.erf)(v)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _softplus(v):
    return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras 3's ReLU, case by case."""
    x = np.asarray(x, np.float64)
    pos = np.where(x > threshold, x, 0.0)
    if max_value is not None:
        pos = np.clip(pos, 0.0, max_value)
    return pos - negative_slope * np.maximum(threshold - x, 0.0)


ELEMENTWISE = {
    "linear": lambda x: x,
    "relu": relu,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softplus": _softplus,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "elu": lambda x, alpha=1.0: np.where(x > 0, x, alpha * (np.exp(x) - 1)),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "gelu_approximate": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "silu": lambda x: x * _sigmoid(x),
    "exponential": np.exp,
    "hard_sigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "hard_silu": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "mish": lambda x: x * np.tanh(_softplus(x)),
}


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def softmax_xent(logits, target):
    """per-sample -sum(target * log_softmax(logits)) for one-hot / probability targets."""
    return -(np.asarray(target, np.float64) * log_softmax(logits)).sum(axis=-1)


def sparse_softmax_xent(logits, labels):
    ls = log_softmax(logits)
    return -np.array([ls[i, int(k)] for i, k in enumerate(labels)])


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at x (float64)."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g
