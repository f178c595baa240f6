"""Slow, obvious numpy versions of Keras 3's loss formulas (never imports faltung)."""
import numpy as np

EPS = 1e-7


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def categorical_crossentropy(t, p, from_logits=False, label_smoothing=0.0):
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    if label_smoothing:
        t = t * (1 - label_smoothing) + label_smoothing / t.shape[-1]
    if from_logits:
        p = softmax(p)
    else:
        p = p / p.sum(axis=-1, keepdims=True)
    p = np.clip(p, EPS, 1 - EPS)
    out = np.zeros(p.shape[:-1])
    for idx in np.ndindex(*p.shape[:-1]):
        out[idx] = -sum(t[idx][k] * np.log(p[idx][k]) for k in range(p.shape[-1]))
    return out


def sparse_categorical_crossentropy(y, p, from_logits=False):
    y = np.asarray(y).astype(int)
    onehot = np.eye(np.shape(p)[-1])[y]
    return categorical_crossentropy(onehot, p, from_logits)


def binary_crossentropy(t, p, from_logits=False, label_smoothing=0.0):
    t = np.asarray(t, np.float64)
    p = np.asarray(p, np.float64)
    if label_smoothing:
        t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        p = 1 / (1 + np.exp(-p))
    p = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=-1)


def mse(t, p):
    return ((np.asarray(p, np.float64) - t) ** 2).mean(axis=-1)


def mae(t, p):
    return np.abs(np.asarray(p, np.float64) - t).mean(axis=-1)


def hinge(t, p):
    t = np.asarray(t, np.float64)
    if np.all((t == 0) | (t == 1)):
        t = 2 * t - 1
    return np.maximum(1 - t * p, 0).mean(axis=-1)


def squared_hinge(t, p):
    t = np.asarray(t, np.float64)
    if np.all((t == 0) | (t == 1)):
        t = 2 * t - 1
    return (np.maximum(1 - t * p, 0) ** 2).mean(axis=-1)


def categorical_hinge(t, p):
    pos = (t * p).sum(axis=-1)
    neg = ((1 - t) * p).max(axis=-1)
    return np.maximum(neg - pos + 1, 0)


def huber(t, p, delta=1.0):
    e = np.asarray(p, np.float64) - t
    a = np.abs(e)
    return np.where(a <= delta, 0.5 * e ** 2, delta * a - 0.5 * delta ** 2).mean(axis=-1)


def log_cosh(t, p):
    return np.log(np.cosh(np.asarray(p, np.float64) - t)).mean(axis=-1)


def kl_divergence(t, p):
    t = np.clip(np.asarray(t, np.float64), EPS, 1)
    p = np.clip(np.asarray(p, np.float64), EPS, 1)
    return (t * np.log(t / p)).sum(axis=-1)


def poisson(t, p):
    p = np.asarray(p, np.float64)
    return (p - t * np.log(p + EPS)).mean(axis=-1)
