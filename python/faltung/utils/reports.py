"""Evaluation reports as the seeds print them: `confusion_matrix` and
`classification_report` with scikit-learn's arguments, numbers and text layout (faltung
addition; Keras leaves this to scikit-learn, which faltung does not need).

Labels are integers; a 2-D y_true or y_pred (one-hot rows or class scores, as `predict`
returns them) is turned into class indices with argmax first. A class that is never
predicted (or never present) gets precision (or recall) 0, as scikit-learn's
zero_division default does, without its warning.
"""
import numpy as np


def _class_indices(name, y):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    if y.ndim > 1 and y.size != len(y):
        raise ValueError(f"{name}: expected integer labels of shape (n,) or one-hot/score rows of "
                         f"shape (n, classes). Received shape {y.shape}")
    y = y.reshape(-1)
    if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError(f"{name}: labels must be integers (or one-hot/score rows). Received "
                         f"values such as {y[np.mod(y, 1) != 0][0]}")
    return y.astype(np.int64)


def _prepare(name, y_true, y_pred, sample_weight):
    y_true, y_pred = _class_indices(name, y_true), _class_indices(name, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true and y_pred must have the same length, received "
                         f"{y_true.shape[0]} and {y_pred.shape[0]}")
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != y_true.shape:
        raise ValueError(f"{name}: sample_weight must have shape {y_true.shape}, received {w.shape}")
    return y_true, y_pred, w


def confusion_matrix(y_true, y_pred, labels=None, sample_weight=None, normalize=None,
                     num_classes=None):
    """Counts (n, n): row = true class, column = predicted class, in the order of `labels`
    (default: the sorted labels present in y_true or y_pred, as scikit-learn; or
    0..num_classes-1). `normalize` = "true" / "pred" / "all" divides by row / column /
    grand totals. Integer counts without weights and normalization, else float."""
    y_true, y_pred, w = _prepare("confusion_matrix", y_true, y_pred, sample_weight)
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"confusion_matrix: normalize must be one of {{'true', 'pred', 'all', "
                         f"None}}. Received normalize={normalize!r}")
    if labels is None:
        labels = np.arange(num_classes) if num_classes else np.union1d(y_true, y_pred)
    labels = np.asarray(labels, np.int64)
    index = {int(c): i for i, c in enumerate(labels)}
    keep = np.array([t in index and p in index for t, p in zip(y_true.tolist(), y_pred.tolist())],
                    bool).reshape(-1)
    rows = np.array([index[t] for t in y_true[keep].tolist()], np.int64)
    cols = np.array([index[p] for p in y_pred[keep].tolist()], np.int64)
    cm = np.zeros((len(labels), len(labels)))
    np.add.at(cm, (rows, cols), w[keep])
    if normalize is None:
        return cm.astype(np.int64) if sample_weight is None else cm
    total = {"true": cm.sum(axis=1, keepdims=True), "pred": cm.sum(axis=0, keepdims=True),
             "all": cm.sum()}[normalize]
    return np.divide(cm, total, out=np.zeros_like(cm), where=total != 0)


def _counts(y_true, y_pred, w, labels):
    """Per label: weighted true positives, predictions and support over all samples (summed
    in sample order with bincount, as scikit-learn, so weighted supports print alike)."""
    classes = np.union1d(np.union1d(y_true, y_pred), labels)
    t, p = np.searchsorted(classes, y_true), np.searchsorted(classes, y_pred)
    pick = np.searchsorted(classes, labels)
    count = lambda idx, weights: np.bincount(idx, weights, len(classes))[pick]  # noqa: E731
    return count(t[t == p], w[t == p]), count(p, w), count(t, w)


def _f1(precision, recall):
    denom = precision + recall
    return np.divide(2 * precision * recall, denom, out=np.zeros(np.shape(denom)), where=denom > 0)


def classification_report(y_true, y_pred, labels=None, target_names=None, sample_weight=None,
                          digits=2, output_dict=False):
    """scikit-learn's text report: precision, recall, f1-score and support per class, then
    accuracy, macro avg and weighted avg (`output_dict=True`: the same numbers as a dict)."""
    y_true, y_pred, w = _prepare("classification_report", y_true, y_pred, sample_weight)
    labels_given = labels is not None
    labels = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels, np.int64)
    if target_names is not None and len(target_names) != len(labels) and not labels_given:
        raise ValueError(f"classification_report: number of classes, {len(labels)}, does not "
                         f"match size of target_names, {len(target_names)}. Try specifying "
                         "the labels parameter")
    names = [str(n) for n in target_names] if target_names is not None else [str(c) for c in labels]
    tp, predicted, support = _counts(y_true, y_pred, w, labels)
    precision = np.divide(tp, predicted, out=np.zeros(len(tp)), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(len(tp)), where=support > 0)
    f1 = _f1(precision, recall)
    total = support.sum()
    # micro averages equal accuracy when every label present is reported
    micro_is_accuracy = set(labels.tolist()) >= set(np.union1d(y_true, y_pred).tolist())
    micro_p, micro_r = _divide(tp.sum(), predicted.sum()), _divide(tp.sum(), total)
    weights = np.divide(support, total, out=np.zeros(len(support)), where=total > 0)
    averages = [("accuracy" if micro_is_accuracy else "micro avg",
                 [micro_p, micro_r, float(_f1(micro_p, micro_r))]),
                ("macro avg", [precision.mean(), recall.mean(), f1.mean()]),
                ("weighted avg", [(precision * weights).sum(), (recall * weights).sum(),
                                  (f1 * weights).sum()])]
    sup = [_support(s, sample_weight) for s in support]
    if output_dict:
        out = {n: _row(p, r, f, s) for n, p, r, f, s in zip(names, precision, recall, f1, sup)}
        for heading, (p, r, f) in averages:
            out[heading] = f if heading == "accuracy" else _row(p, r, f, _support(total, sample_weight))
        return out
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    lines = [f"{'':>{width}s} " + "".join(f" {h:>9}" for h in ("precision", "recall",
                                                                "f1-score", "support")), ""]
    row = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}"
    lines += [row.format(n, p, r, f, s, width=width, digits=digits)
              for n, p, r, f, s in zip(names, precision, recall, f1, sup)]
    lines.append("")
    for heading, (p, r, f) in averages:
        if heading == "accuracy":
            lines.append(f"{heading:>{width}s} " + f" {'':>9}" * 2 +
                         f" {f:>9.{digits}f} {_support(total, sample_weight):>9}")
        else:
            lines.append(row.format(heading, p, r, f, _support(total, sample_weight), width=width,
                                    digits=digits))
    return "\n".join(lines) + "\n"


def _divide(a, b):
    return float(a / b) if b else 0.0


def _support(s, sample_weight):
    """Support as scikit-learn prints it: an int count, a float sum of weights."""
    return int(round(s)) if sample_weight is None else float(s)


def _row(p, r, f, s):
    return {"precision": float(p), "recall": float(r), "f1-score": float(f), "support": s}
