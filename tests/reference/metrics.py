"""Slow, obvious numpy versions of Keras 3's metric formulas (never imports faltung). The
loss-backed metrics (hinge, kl_divergence, ...) use reference/losses.py."""
import numpy as np


def mape(t, p):
    return 100 * np.mean(np.abs(t - p) / np.abs(t), axis=-1)


def msle(t, p):
    return np.mean((np.log(1 + t) - np.log(1 + p)) ** 2, axis=-1)


def cosine_similarity(t, p, axis=-1):
    """Dot product of the unit vectors; a zero vector scores 0."""
    def unit(x):
        n = np.linalg.norm(x, axis=axis, keepdims=True)
        return np.where(n > 0, x / np.where(n > 0, n, 1), 0)
    return (unit(t) * unit(p)).sum(axis=axis)


def pearson_correlation(t, p):
    """Per row of (samples, values)."""
    return np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(t, p)])


def concordance_correlation(t, p):
    """Keras 3's formula, written out per row: 2 * mean((t - mean p)(p - mean p)) over
    var t + var p + (mean t - mean p)^2 + 1e-7 (its covariance centres t on p's mean)."""
    out = []
    for a, b in zip(t, p):
        num = 2 * np.mean((a - b.mean()) * (b - b.mean()))
        out.append(num / (a.var() + b.var() + (a.mean() - b.mean()) ** 2 + 1e-7))
    return np.array(out)


def r2_per_column(t, p, w):
    """Weighted R2 of each column of (samples, columns); w holds one weight per sample."""
    w = w[:, None] * np.ones_like(t)
    mean = (w * t).sum(0) / w.sum(0)
    return 1 - (w * (t - p) ** 2).sum(0) / (w * (t - mean) ** 2).sum(0)


def confusion_rates(y_true, y_pred, w, thresholds):
    """Weighted sensitivity (= recall), specificity and precision at each threshold,
    y_pred > threshold counting as positive; 0 where a denominator is 0."""
    y_true, y_pred, w = (np.ravel(a).astype(np.float64) for a in (y_true, y_pred, w))
    pos = y_pred[None] > np.asarray(thresholds)[:, None]
    tp = (pos * (y_true == 1) * w).sum(1)
    fp = (pos * (y_true == 0) * w).sum(1)
    fn = (~pos * (y_true == 1) * w).sum(1)
    tn = (~pos * (y_true == 0) * w).sum(1)

    def div(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b != 0)
    return {"sensitivity": div(tp, tp + fn), "recall": div(tp, tp + fn),
            "specificity": div(tn, tn + fp), "precision": div(tp, tp + fp)}


def iou(cm, ids):
    """Mean over `ids` of tp / (tp + fp + fn) from a confusion matrix (rows true, columns
    predicted), classes never seen left out; 0 when none is seen."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    den = cm.sum(0) + cm.sum(1) - tp
    vals = [tp[i] / den[i] for i in ids if den[i] > 0]
    return float(np.mean(vals)) if vals else 0.0
