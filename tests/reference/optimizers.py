"""Keras 3 update rules written out step by step in float64 (never imports faltung)."""
import numpy as np


def sgd(w, grads, lr=0.01, momentum=0.0, nesterov=False):
    w = w.astype(np.float64).copy()
    m = np.zeros_like(w)
    for g in grads:
        if momentum == 0:
            w = w - lr * g
            continue
        m = momentum * m - lr * g
        w = w + (momentum * m - lr * g if nesterov else m)
    return w


def adam(w, grads, lr=0.001, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, wd=None):
    w = w.astype(np.float64).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    vhat = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if wd:
            w = w - w * wd * lr
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        vv = v
        if amsgrad:
            vhat = np.maximum(vhat, v)
            vv = vhat
        w = w - m * alpha / (np.sqrt(vv) + eps)
    return w


def rmsprop(w, grads, lr=0.001, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    w = w.astype(np.float64).copy()
    v = np.zeros_like(w)
    a = np.zeros_like(w)
    mom = np.zeros_like(w)
    for g in grads:
        v = rho * v + (1 - rho) * g * g
        if centered:
            a = rho * a + (1 - rho) * g
            den = v - a * a + eps
        else:
            den = v + eps
        inc = lr * g / np.sqrt(den)
        if momentum > 0:
            mom = momentum * mom + inc
            w = w - mom
        else:
            w = w - inc
    return w


def adagrad(w, grads, lr=0.001, init=0.1, eps=1e-7):
    w = w.astype(np.float64).copy()
    acc = np.full_like(w, init)
    for g in grads:
        acc = acc + g * g
        w = w - lr * g / np.sqrt(acc + eps)
    return w


def adamax(w, grads, lr=0.001, b1=0.9, b2=0.999, eps=1e-7):
    w = w.astype(np.float64).copy()
    m = np.zeros_like(w)
    u = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * (1 - b1)
        u = np.maximum(b2 * u, np.abs(g))
        w = w - lr / (1 - b1 ** t) * m / (u + eps)
    return w
