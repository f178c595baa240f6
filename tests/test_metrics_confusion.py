"""Hand-checked Precision / Recall / AUC / F1Score / top-k cases, their use in compile()
with Keras's log names, and their argument errors (Keras's numbers themselves are checked
in tests/test_metrics_keras.py)."""
import numpy as np
import pytest

import faltung
from faltung import layers as L
from faltung import metrics


def test_precision_recall_by_hand():
    y_true, y_pred = [0, 1, 1, 1], [0.9, 0.2, 0.6, 0.8]
    assert metrics.Precision()(y_true, y_pred) == pytest.approx(2 / 3)   # tp 2, fp 1
    assert metrics.Recall()(y_true, y_pred) == pytest.approx(2 / 3)      # tp 2, fn 1
    # several thresholds: one result each; y_pred == threshold counts as negative
    np.testing.assert_allclose(metrics.Precision(thresholds=[0.2, 0.85])(y_true, y_pred), [2 / 3, 0])
    np.testing.assert_allclose(metrics.Recall(thresholds=[0.2, 0.85])(y_true, y_pred), [2 / 3, 0])
    # sample weights scale each sample's count
    m = metrics.Precision()
    m.update_state(y_true, y_pred, sample_weight=[3, 1, 1, 1])
    assert m.result() == pytest.approx(2 / 5)


def test_precision_top_k_and_class_id_by_hand():
    y_true = [[0, 0, 1], [0, 1, 0]]
    y_pred = [[0.1, 0.5, 0.4], [0.3, 0.6, 0.1]]
    # top 1: sample 0 predicts class 1 (wrong), sample 1 predicts class 1 (right)
    assert metrics.Precision(top_k=1)(y_true, y_pred) == pytest.approx(0.5)
    assert metrics.Recall(top_k=1)(y_true, y_pred) == pytest.approx(0.5)
    # class 1 alone: predicted positive twice (> 0.5 only for sample 1)
    assert metrics.Precision(class_id=1)(y_true, y_pred) == pytest.approx(1.0)
    assert metrics.Recall(class_id=2)(y_true, y_pred) == pytest.approx(0.0)


def test_auc_by_hand():
    # perfectly ranked scores: ROC AUC 1; reversed: 0; PR AUC of a perfect ranking ~1
    y_true = [0, 0, 1, 1]
    assert metrics.AUC()(y_true, [0.1, 0.3, 0.6, 0.9]) == pytest.approx(1.0, abs=1e-6)
    assert metrics.AUC()(y_true, [0.9, 0.6, 0.3, 0.1]) == pytest.approx(0.0, abs=1e-6)
    # one tie between a positive and a negative at 0.5: the trapezoid gives half its area
    assert metrics.AUC()([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.AUC(curve="PR")(y_true, [0.1, 0.3, 0.6, 0.9]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("method, want", [("majoring", 1.0), ("minoring", 0.0), ("interpolation", 0.5)])
def test_auc_precision_recall_gain_by_hand(method, want):
    """Keras's worked cases (3 thresholds): weighted tp [7, 4, 0], fp [3, 0, 0], fn [0, 3, 7],
    tn [0, 3, 3]; P/N = 7/3; recall gain [1, -3/4 -> 0, 0], precision gain [0, 1, 1 (no tp)]."""
    auc = metrics.AUC(num_thresholds=3, curve="PRGAIN", summation_method=method)
    assert auc([0, 0, 1, 1], [0, 0.5, 0.3, 0.9], sample_weight=[1, 2, 3, 4]) == pytest.approx(want, abs=1e-6)
    assert auc.get_config()["curve"] == "PRGAIN"


def test_auc_precision_recall_gain_unweighted_by_hand():
    # tp [5, 3, 0], fp [5, 1, 0], fn [0, 2, 5], tn [0, 4, 4]: recall gain [1, 1/3, 0],
    # precision gain [0, 2/3, 1]: (2/3) (1/3) + (1/3) (5/6)
    y_true = [0, 0, 0, 1, 0, 1, 0, 1, 1, 1]
    y_pred = [0.1, 0.2, 0.3, 0.3, 0.4, 0.4, 0.6, 0.6, 0.8, 0.9]
    got = metrics.AUC(num_thresholds=3, curve="prgain")(y_true, y_pred)
    assert got == pytest.approx(2 / 3 * 1 / 3 + 1 / 3 * 5 / 6, rel=1e-6)
    with pytest.raises(ValueError, match='Expected values are \\["PR", "ROC", "PRGAIN"\\]'):
        metrics.AUC(curve="gain")


def test_auc_precision_recall_gain_against_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(4)
    y_true = (rng.random((40, 3)) < 0.4).astype(np.float32)
    y_pred = rng.random((40, 3)).astype(np.float32)
    w = rng.random(40).astype(np.float32)
    for method in ("interpolation", "minoring", "majoring"):
        for multi in (False, True):
            kw = dict(num_thresholds=17, curve="PRGAIN", summation_method=method, multi_label=multi)
            ours, theirs = metrics.AUC(**kw), keras.metrics.AUC(**kw)
            ours.update_state(y_true, y_pred, sample_weight=w)
            theirs.update_state(y_true, y_pred, sample_weight=w)
            assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-5, abs=1e-6)


def test_f1_score_by_hand():
    y_true = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    y_pred = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], np.float32)
    # argmax predictions 0, 1, 0, 2: class 0 p 1/2 r 1 -> 2/3; class 1 p 1 r 1/2 -> 2/3; class 2: 1
    np.testing.assert_allclose(metrics.F1Score()(y_true, y_pred), [2 / 3, 2 / 3, 1], rtol=1e-5)
    assert metrics.F1Score(average="macro")(y_true, y_pred) == pytest.approx(7 / 9, rel=1e-5)
    # weighted by support 1, 2, 1
    assert metrics.F1Score(average="weighted")(y_true, y_pred) == pytest.approx(
        (2 / 3 + 2 * 2 / 3 + 1) / 4, rel=1e-5)
    assert metrics.F1Score(average="micro")(y_true, y_pred) == pytest.approx(0.75, rel=1e-5)
    # beta = 2 with p 1/2, r 1: 5 * 0.5 / (4 * 0.5 + 1) = 5/6
    assert metrics.FBetaScore(beta=2.0)(y_true, y_pred)[0] == pytest.approx(5 / 6, rel=1e-5)


def test_top_k_by_hand():
    y_pred = [[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]
    assert metrics.SparseTopKCategoricalAccuracy(k=2)([2, 1], y_pred) == pytest.approx(0.5)
    assert metrics.TopKCategoricalAccuracy(k=1)([[0, 1, 0], [1, 0, 0]], y_pred) == pytest.approx(1.0)


@pytest.mark.parametrize("identifier, name", [
    ("precision", "precision"), ("recall", "recall"), ("auc", "auc"), ("AUC", "AUC"),
    ("f1_score", "f1_score"), ("top_k_categorical_accuracy", "top_k_categorical_accuracy")])
def test_string_identifiers_name_the_metric_as_keras(identifier, name):
    assert metrics.get(identifier).name == name


def test_compile_logs_keras_names(capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    model = faltung.Sequential([L.Input((6,)), L.Dense(3, activation="softmax")])
    model.compile("adam", "categorical_crossentropy",
                  metrics=["auc", metrics.Precision(name="p"), metrics.Recall(class_id=0),
                           metrics.F1Score(), metrics.F1Score(average="macro", name="f1_macro"),
                           metrics.TopKCategoricalAccuracy(k=2)])
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=2)
    logs = history.history
    for key in ("auc", "p", "recall", "f1_score", "f1_macro", "top_k_categorical_accuracy",
                "val_auc", "val_f1_score"):
        assert key in logs, sorted(logs)
    assert np.shape(logs["f1_score"][-1]) == (3,)  # average=None: one score per class
    assert logs["f1_macro"][-1] == pytest.approx(float(np.mean(logs["f1_score"][-1])), rel=1e-5)
    assert "f1_score: " in capsys.readouterr().out  # the progress line shows its mean
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    assert result["auc"] == pytest.approx(metrics.AUC()(y, probs), rel=1e-5)
    assert result["top_k_categorical_accuracy"] == pytest.approx(
        metrics.TopKCategoricalAccuracy(k=2)(y, probs), rel=1e-6)


@pytest.mark.parametrize("make, match", [
    (lambda: metrics.Precision(thresholds=[0.5, 1.5]), r"Threshold values must be in \[0, 1\]"),
    (lambda: metrics.AUC(curve="XY"), "invalid AUC curve"),
    (lambda: metrics.AUC(summation_method="trapezoid"), "summation method"),
    (lambda: metrics.AUC(num_thresholds=1), "num_thresholds"),
    (lambda: metrics.AUC(num_labels=3), "`num_labels` is needed only"),
    (lambda: metrics.AUC(multi_label=True).update_state([0, 1], [0.2, 0.4]),
     "rank 2 when `multi_label=True`"),
    (lambda: metrics.F1Score(average="samples"), "Invalid `average`"),
    (lambda: metrics.FBetaScore(beta=2), "Invalid `beta`"),
    (lambda: metrics.F1Score(threshold=0.0), "0 < threshold <= 1"),
    (lambda: metrics.F1Score().update_state([1, 0], [0.3, 0.2]), "expects 2D inputs"),
    (lambda: metrics.Precision(class_id=1).update_state([0, 1], [0.2, 0.4]), "class_id is provided"),
    (lambda: metrics.Recall().update_state([[0, 1, 1]], [[0.2, 0.4]]), "same shape"),
], ids=["threshold-range", "curve", "summation", "num-thresholds", "num-labels", "multi-label-rank",
        "average", "beta", "f1-threshold", "f1-rank", "class-id-rank", "shape"])
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_batches_with_another_number_of_classes_are_refused():
    m = metrics.F1Score()
    m.update_state(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="this batch gives 4 classes, earlier batches gave 3"):
        m.update_state(np.eye(4), np.eye(4))


def test_sparse_top_k_from_sorted_ids():
    # y_pred: the best class ids first (Keras 3's from_sorted_ids=True)
    m = metrics.SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True)
    assert m([2, 1, 0], [[2, 0, 1], [0, 2, 1], [1, 0, 2]]) == pytest.approx(2 / 3)
    assert m.get_config()["from_sorted_ids"] is True
    assert "from_sorted_ids" not in metrics.SparseTopKCategoricalAccuracy().get_config()
