"""Evaluation reports as the seeds print them: confusion matrix and per-class
precision / recall / F1 (faltung addition; Keras leaves this to scikit-learn)."""
import numpy as np


def confusion_matrix(y_true, y_pred, num_classes=None):
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: y_true and y_pred must have the same length, "
                         f"received {y_true.shape[0]} and {y_pred.shape[0]}")
    n = int(num_classes or max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_report(y_true, y_pred, target_names=None, digits=3):
    """Text table of precision, recall, F1 and support per class, plus accuracy."""
    cm = confusion_matrix(y_true, y_pred, len(target_names) if target_names else None)
    n = cm.shape[0]
    names = list(target_names) if target_names else [str(i) for i in range(n)]
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    precision = np.divide(tp, cm.sum(axis=0), out=np.zeros(n), where=cm.sum(axis=0) > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n),
                   where=(precision + recall) > 0)
    w = max(12, max(len(s) for s in names))
    lines = [f"{'':>{w}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
    for i in range(n):
        lines.append(f"{names[i]:>{w}} {precision[i]:9.{digits}f} {recall[i]:9.{digits}f} "
                     f"{f1[i]:9.{digits}f} {support[i]:9d}")
    total = support.sum()
    lines += ["", f"{'accuracy':>{w}} {'':>9} {'':>9} {tp.sum() / max(total, 1):9.{digits}f} {total:9d}",
              f"{'macro avg':>{w}} {precision.mean():9.{digits}f} {recall.mean():9.{digits}f} "
              f"{f1.mean():9.{digits}f} {total:9d}"]
    return "\n".join(lines)
