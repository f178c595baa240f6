"""Property-based tests of the Keras metrics (faltung.metrics) on random batches: a metric is a
running statistic, so feeding a dataset batch by batch gives the value of feeding it at once;
unit sample weights change nothing; the order of the samples does not matter; reset_state()
returns a metric to its fresh value. (The values themselves are held to Keras's in
test_metrics*_keras.py.) FALTUNG_FUZZ_EXAMPLES / 15 examples per metric (default 10)."""
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from faltung import metrics as M  # noqa: E402

EXAMPLES = max(5, int(os.environ.get("FALTUNG_FUZZ_EXAMPLES", "150")) // 15)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
C = 4  # classes / features

# (factory, kind of data). Kinds: "real" (regression, (n, C) values), "binary" (0/1 labels,
# probabilities; "binary_flat" the same as (n,)), "onehot" (one-hot labels, probability rows),
# "sparse" (integer labels (n,), probability rows), "logits" (0/1 labels, real scores),
# "sparse_pred" (integer labels against integer predictions).
STREAMING = [
    (M.MeanSquaredError, "real"), (M.MeanAbsoluteError, "real"), (M.RootMeanSquaredError, "real"),
    (M.MeanAbsolutePercentageError, "real"), (M.MeanSquaredLogarithmicError, "real"),
    (M.LogCoshError, "real"), (M.CosineSimilarity, "real"), (lambda: M.R2Score(), "real"),
    (M.Hinge, "binary"), (M.SquaredHinge, "binary"), (M.CategoricalHinge, "onehot"),
    (M.Poisson, "binary"), (M.KLDivergence, "onehot"), (M.BinaryAccuracy, "binary"),
    (M.BinaryCrossentropy, "binary"), (M.CategoricalAccuracy, "onehot"),
    (M.CategoricalCrossentropy, "onehot"), (M.SparseCategoricalAccuracy, "sparse"),
    (M.SparseCategoricalCrossentropy, "sparse"), (lambda: M.TopKCategoricalAccuracy(k=2), "onehot"),
    (lambda: M.SparseTopKCategoricalAccuracy(k=2), "sparse"), (M.Accuracy, "sparse_pred"),
    (M.TruePositives, "binary"), (M.FalsePositives, "binary"), (M.TrueNegatives, "binary"),
    (M.FalseNegatives, "binary"), (M.Precision, "binary"), (M.Recall, "binary"),
    (lambda: M.AUC(num_thresholds=31), "binary"), (lambda: M.AUC(curve="PR", num_thresholds=31), "binary"),
    (lambda: M.AUC(num_thresholds=31, multi_label=True), "binary"),
    (lambda: M.AUC(curve="PRGAIN", num_thresholds=31), "binary"),
    (lambda: M.AUC(curve="PRGAIN", summation_method="minoring", num_thresholds=31, multi_label=True), "binary"),
    (lambda: M.AUC(num_thresholds=31, from_logits=True), "logits"),
    (lambda: M.PrecisionAtRecall(0.5, num_thresholds=31), "binary"),
    (lambda: M.RecallAtPrecision(0.5, num_thresholds=31), "binary"),
    (lambda: M.SensitivityAtSpecificity(0.5, num_thresholds=31), "binary"),
    (lambda: M.SpecificityAtSensitivity(0.5, num_thresholds=31), "binary"),
    (lambda: M.F1Score(average="macro", threshold=0.5), "binary"),
    (lambda: M.FBetaScore(beta=2.0, average="weighted", threshold=0.5), "binary"),
    (lambda: M.MeanIoU(num_classes=C), "sparse_pred"),
    (lambda: M.IoU(num_classes=C, target_class_ids=[0, 2]), "sparse_pred"),
    (lambda: M.BinaryIoU(target_class_ids=[0, 1]), "binary_flat"),  # weights per element: 1-D
    (lambda: M.OneHotIoU(num_classes=C, target_class_ids=[1, 3]), "onehot"),
    (lambda: M.OneHotMeanIoU(num_classes=C), "onehot"),
]


def data(kind, n, rng):
    if kind == "real":
        return rng.uniform(0.1, 3.0, (n, C)), rng.uniform(0.1, 3.0, (n, C))
    if kind == "binary":
        return (rng.random((n, C)) < 0.5).astype(np.float64), rng.random((n, C))
    if kind == "binary_flat":
        return (rng.random(n) < 0.5).astype(np.float64), rng.random(n)
    if kind == "logits":
        return (rng.random((n, C)) < 0.5).astype(np.float64), rng.normal(0, 2, (n, C))
    probs = rng.random((n, C)) + 0.05
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, C, n)
    if kind == "onehot":
        return np.eye(C)[labels], probs
    if kind == "sparse":
        return labels, probs
    return labels, rng.integers(0, C, n)  # sparse_pred: integer labels against integer predictions


def value(metric):
    return np.asarray(metric.result(), np.float64)


@st.composite
def case(draw):
    n = draw(st.integers(2, 40))
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), max_size=3, unique=True)))
    weighted = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return n, cuts, weighted, seed


# the IoU metrics count in integers, as Keras's do, and warn (as Keras does) that float weights
# are truncated; the properties hold all the same
@pytest.mark.filterwarnings("ignore:You are passing weight as `float`")
@pytest.mark.parametrize("i", range(len(STREAMING)))
@FUZZ
@given(c=case())
def test_metrics_stream_commute_and_reset(i, c):
    n, cuts, weighted, seed = c
    make, kind = STREAMING[i]
    rng = np.random.default_rng(seed)
    y_true, y_pred = data(kind, n, rng)
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    kw = lambda idx: {} if w is None else {"sample_weight": w[idx]}  # noqa: E731

    whole = make()
    whole.update_state(y_true, y_pred, **kw(slice(None)))
    want = value(whole)
    name = type(whole).__name__

    parts = make()
    for lo, hi in zip([0] + cuts, cuts + [n]):
        parts.update_state(y_true[lo:hi], y_pred[lo:hi], **kw(slice(lo, hi)))
    np.testing.assert_allclose(value(parts), want, rtol=2e-5, atol=2e-6, err_msg=f"{name}: batches")

    perm = rng.permutation(n)
    shuffled = make()
    shuffled.update_state(y_true[perm], y_pred[perm], **kw(perm))
    np.testing.assert_allclose(value(shuffled), want, rtol=2e-5, atol=2e-6, err_msg=f"{name}: order")

    if w is None:
        ones = make()
        ones.update_state(y_true, y_pred, sample_weight=np.ones(n))
        np.testing.assert_allclose(value(ones), want, rtol=2e-5, atol=2e-6, err_msg=f"{name}: unit weights")

    fresh = value(make())
    whole.reset_state()
    np.testing.assert_array_equal(value(whole), fresh, err_msg=f"{name}: reset_state")
    whole.update_state(y_true, y_pred, **kw(slice(None)))
    np.testing.assert_allclose(value(whole), want, rtol=1e-6, atol=1e-7, err_msg=f"{name}: after reset")
