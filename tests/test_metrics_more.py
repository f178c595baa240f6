"""Sensitivity/specificity family, regression, hinge, probabilistic, correlation and IoU
metrics against the numpy references of tests/reference/ (no Keras), plus their names, configs,
errors, compile() and .keras round trips. Keras's own numbers: test_metrics_more_keras.py."""
import warnings

import numpy as np
import pytest

import faltung
from faltung import callbacks
from faltung import layers as L
from faltung import metrics
from reference import losses as ref_losses
from reference import metrics as ref


def weighted_mean(values, w):
    return float((values * w).sum() / w.sum())


# ----------------------------------------------------------------------------------
# Mean-of-a-function metrics
# ----------------------------------------------------------------------------------
RNG = np.random.default_rng(0)
T_POS, P_POS = RNG.uniform(0.1, 2, (9, 4)), RNG.uniform(0, 2, (9, 4))
T_SGN, P_SGN = RNG.normal(size=(9, 4)), RNG.normal(size=(9, 4))
T_BIN = (RNG.random((9, 4)) > 0.5).astype(float)
T_HOT = np.eye(4)[RNG.integers(0, 4, 9)]
T_PROB = RNG.dirichlet(np.ones(4), 9)
P_PROB = RNG.dirichlet(np.ones(4), 9)
W = RNG.uniform(0, 2, 9)

FUNCTION_CASES = [
    (metrics.MeanAbsolutePercentageError, T_POS, P_POS, ref.mape, "mean_absolute_percentage_error"),
    (metrics.MeanSquaredLogarithmicError, T_POS, P_POS, ref.msle, "mean_squared_logarithmic_error"),
    (metrics.LogCoshError, T_SGN, P_SGN, ref_losses.log_cosh, "logcosh"),
    (metrics.CosineSimilarity, T_SGN, P_SGN, ref.cosine_similarity, "cosine_similarity"),
    (metrics.Hinge, T_BIN, P_SGN, ref_losses.hinge, "hinge"),  # 0/1 labels become -1/1
    (metrics.Hinge, T_SGN, P_SGN, ref_losses.hinge, "hinge"),
    (metrics.SquaredHinge, T_BIN, P_SGN, ref_losses.squared_hinge, "squared_hinge"),
    (metrics.CategoricalHinge, T_HOT, P_SGN, ref_losses.categorical_hinge, "categorical_hinge"),
    (metrics.KLDivergence, T_PROB, P_PROB, ref_losses.kl_divergence, "kl_divergence"),
    (metrics.Poisson, T_POS, P_POS, ref_losses.poisson, "poisson"),
    (metrics.PearsonCorrelation, T_SGN, P_SGN, ref.pearson_correlation, "pearson_correlation"),
    (metrics.ConcordanceCorrelation, T_SGN, P_SGN, ref.concordance_correlation,
     "concordance_correlation"),
]


@pytest.mark.parametrize("cls, t, p, formula, name", FUNCTION_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(FUNCTION_CASES)])
def test_mean_of_function_metrics(cls, t, p, formula, name):
    m = cls()
    assert m.name == name
    assert m.result() == 0.0  # nothing seen yet
    m.update_state(t[:4], p[:4], sample_weight=W[:4])
    m.update_state(t[4:], p[4:], sample_weight=W[4:])
    assert m.result() == pytest.approx(weighted_mean(formula(t, p), W), rel=1e-6, abs=1e-9)
    m.reset_state()
    assert m.result() == 0.0
    m.update_state(t, p)  # unweighted
    assert m.result() == pytest.approx(float(np.mean(formula(t, p))), rel=1e-6, abs=1e-9)
    assert m.get_config()["name"] == name and m.get_config()["dtype"] == "float32"
    assert type(m).from_config(m.get_config()).get_config() == m.get_config()


def test_one_dimensional_batches():
    """As in Keras: a loss-backed metric takes a 1-D batch as one value (the loss reduces
    its only axis); binary accuracy counts each element."""
    m = metrics.MeanSquaredError()
    m.update_state([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # batch mean 1
    m.update_state([0.0], [3.0])                       # batch mean 9
    m.update_state([], [])                             # an empty batch adds nothing
    assert m.result() == pytest.approx(5.0)
    k = metrics.KLDivergence()  # sums over the axis: one value per batch
    k.update_state([0.5, 0.5], [0.25, 0.75])
    assert k.result() == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75))
    a = metrics.BinaryAccuracy()
    a.update_state([1, 0, 1], [0.9, 0.2, 0.1])  # 2 of 3
    a.update_state([1], [0.7])                  # 1 of 1
    assert a.result() == pytest.approx(3 / 4)
    np.testing.assert_array_equal(metrics.binary_accuracy([[1, 0], [1, 1]], [[0.6, 0.6], [0.9, 0.8]]),
                                  [[1, 0], [1, 1]])
    w = metrics.MeanAbsoluteError()  # with sample weights each element is weighed
    w.update_state([0.0, 0.0], [1.0, 3.0], sample_weight=[3, 1])
    assert w.result() == pytest.approx(1.5)


def test_cosine_similarity_axis_and_zero_vectors():
    t = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    p = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    np.testing.assert_allclose(metrics.cosine_similarity(t, p), [0.0, 1.0, 0.0], atol=1e-7)
    m = metrics.CosineSimilarity(axis=0)
    np.testing.assert_allclose(m(t, p), np.mean(ref.cosine_similarity(t, p, axis=0)), rtol=1e-6)
    # Keras writes only name and dtype for CosineSimilarity
    assert m.get_config() == {"name": "cosine_similarity", "dtype": "float32"}


def test_correlation_edge_cases():
    t = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    p = np.array([[0.5, 0.1, 0.9], [2.0, 4.0, 6.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warnings leak out
        r = metrics.pearson_correlation(t, p)
    assert np.isnan(r[0]) and r[1] == pytest.approx(1.0)  # a constant row: nan, as Keras
    # concordance of identical rows is 1; shifted rows score lower
    same = metrics.concordance_correlation(t[1:], t[1:])
    assert same[0] == pytest.approx(1.0, rel=1e-6)
    assert metrics.concordance_correlation(t[1:], t[1:] + 1.0)[0] < 0.7
    assert metrics.PearsonCorrelation(axis=0).get_config() == {
        "name": "pearson_correlation", "dtype": "float32", "axis": 0}


def test_function_forms_are_the_losses_values():
    from faltung import losses
    for name in ("mean_absolute_percentage_error", "mean_squared_logarithmic_error", "hinge",
                 "squared_hinge", "categorical_hinge", "log_cosh", "kl_divergence", "poisson",
                 "huber", "mean_squared_error", "mean_absolute_error"):
        assert getattr(metrics, name) is getattr(losses, name)
    np.testing.assert_allclose(metrics.pearson_correlation(T_SGN, P_SGN),
                               ref.pearson_correlation(T_SGN, P_SGN), rtol=1e-9)


# ----------------------------------------------------------------------------------
# R2Score
# ----------------------------------------------------------------------------------
def test_r2_score_aggregations_and_weights():
    t, p = T_SGN, T_SGN + 0.5 * P_SGN
    per = ref.r2_per_column(t, p, W)
    m = metrics.R2Score(class_aggregation=None)
    m.update_state(t[:5], p[:5], sample_weight=W[:5])
    m.update_state(t[5:], p[5:], sample_weight=W[5:])
    np.testing.assert_allclose(m.result(), per, rtol=1e-6)
    assert m.num_samples == t.size
    for name, shape in (("sum", (4,)), ("squared_sum", (4,)), ("total_mse", (4,)), ("count", (4,))):
        assert np.shape(getattr(m, name)) == shape
    u = metrics.R2Score()
    u.update_state(t, p, sample_weight=W)
    assert u.result() == pytest.approx(per.mean(), rel=1e-6)
    v = metrics.R2Score(class_aggregation="variance_weighted_average")
    v.update_state(t, p, sample_weight=W)
    var = (W[:, None] * (t - (W[:, None] * t).sum(0) / W.sum()) ** 2).sum(0)
    assert v.result() == pytest.approx((var * per).sum() / var.sum(), rel=1e-6)
    # a (N, 1) y_pred with (N,) y_true, and the adjusted score (n counts the values)
    a = metrics.R2Score(num_regressors=2)
    a.update_state(t[:, 0], p[:, :1])
    r2 = ref.r2_per_column(t[:, :1], p[:, :1], np.ones(9))[0]
    assert a.result() == pytest.approx(1 - (1 - r2) * (9 - 1) / (9 - 2 - 1), rel=1e-6)
    a.reset_state()
    assert a.result() == 0.0 and a.sum is None


def test_r2_score_edge_cases():
    # constant column: predicted exactly -> nan (0/0), otherwise -inf -> 0 (Keras)
    t = np.array([[1.0, 2.0], [1.0, 3.0]])
    m = metrics.R2Score(class_aggregation=None)
    m.update_state(t, t)
    r = m.result()
    assert np.isnan(r[0]) and r[1] == 1.0
    m.reset_state()
    m.update_state(t, t + 1.0)
    assert m.result()[0] == 0.0
    # too few values for the adjusted score: a warning, then the plain score
    a = metrics.R2Score(num_regressors=5)
    a.update_state(t[:, :1] * [[1], [2]], t[:, :1])
    with pytest.warns(UserWarning, match="More independent predictors"):
        assert a.result() == pytest.approx(1 - 1 / 0.5)
    with pytest.raises(ValueError, match="expects 2D inputs"):
        metrics.R2Score().update_state(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="class_aggregation"):
        metrics.R2Score(class_aggregation="mean")
    with pytest.raises(ValueError, match="num_regressors"):
        metrics.R2Score(num_regressors=-1)
    b = metrics.R2Score()
    b.update_state(t, t)
    with pytest.raises(ValueError, match="3 columns, earlier batches gave 2"):
        b.update_state(np.ones((2, 3)), np.ones((2, 3)))


# ----------------------------------------------------------------------------------
# Sensitivity / specificity family
# ----------------------------------------------------------------------------------
def evenly(n):
    return [0.0] + [(i + 1) / (n - 1) for i in range(n - 2)] + [1.0] if n > 1 else [0.5]


AT_CASES = [(metrics.SensitivityAtSpecificity, "specificity", "sensitivity"),
            (metrics.SpecificityAtSensitivity, "sensitivity", "specificity"),
            (metrics.PrecisionAtRecall, "recall", "precision"),
            (metrics.RecallAtPrecision, "precision", "recall")]


@pytest.mark.parametrize("cls, target, dependent", AT_CASES, ids=[c[0].__name__ for c in AT_CASES])
@pytest.mark.parametrize("num_thresholds", [200, 13, 1])
@pytest.mark.parametrize("value", [0.0, 0.35, 0.8, 1.0])
def test_value_at_target(cls, target, dependent, num_thresholds, value):
    rng = np.random.default_rng(num_thresholds)
    y_true = (rng.random(40) > 0.45).astype(float)
    y_pred = np.clip(0.3 * y_true + 0.7 * rng.random(40), 0.001, 0.999)
    w = rng.uniform(0, 2, 40)
    m = cls(value, num_thresholds=num_thresholds)
    m.update_state(y_true[:25], y_pred[:25], sample_weight=w[:25])
    m.update_state(y_true[25:], y_pred[25:], sample_weight=w[25:])
    rates = ref.confusion_rates(y_true, y_pred, w, evenly(num_thresholds))
    feasible = rates[target].astype(np.float32) >= np.float32(value)
    want = max([0.0] + list(rates[dependent][feasible]))
    assert m.result() == pytest.approx(want, rel=1e-6, abs=1e-9)  # float32 weights
    assert m.true_positives.shape == (len(evenly(num_thresholds)),)
    m.reset_state()
    assert m.result() == 0.0 and not m.false_negatives.any()


def test_value_at_target_by_hand_and_class_id():
    y_true, y_pred = [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]
    # thresholds 0.5: tp 1, fp 1, tn 1, fn 1 -> every rate is 0.5
    assert metrics.SensitivityAtSpecificity(0.5, num_thresholds=1)(y_true, y_pred) == 0.5
    assert metrics.SensitivityAtSpecificity(0.6, num_thresholds=1)(y_true, y_pred) == 0.0
    # thresholds 0, 0.5, 1: at 0 recall 1 / precision 0.5; at 0.5 both 0.5; at 1 both 0
    assert metrics.PrecisionAtRecall(0.9, num_thresholds=3)(y_true, y_pred) == 0.5
    assert metrics.RecallAtPrecision(0.5, num_thresholds=3)(y_true, y_pred) == 1.0
    # class_id picks one column of (samples, classes)
    yt2 = np.stack([np.zeros(4), y_true], 1)
    yp2 = np.stack([np.full(4, 0.9), y_pred], 1)
    m = metrics.RecallAtPrecision(0.5, num_thresholds=3, class_id=1)
    assert m(yt2, yp2) == 1.0
    assert m.get_config() == {"name": "recall_at_precision", "dtype": "float32", "class_id": 1,
                              "num_thresholds": 3, "precision": 0.5}
    assert metrics.RecallAtPrecision.from_config(m.get_config()).get_config() == m.get_config()


@pytest.mark.parametrize("make, match", [
    (lambda: metrics.SensitivityAtSpecificity(1.5), r"`specificity` must be in the range \[0, 1\]"),
    (lambda: metrics.SpecificityAtSensitivity(-0.1), "`sensitivity` must be in the range"),
    (lambda: metrics.PrecisionAtRecall(2), "`recall` must be in the range"),
    (lambda: metrics.RecallAtPrecision(0.5, num_thresholds=0), "num_thresholds"),
    (lambda: metrics.PrecisionAtRecall(0.5, class_id=1).update_state([0, 1], [0.2, 0.4]),
     "class_id is provided"),
], ids=["specificity", "sensitivity", "recall", "num-thresholds", "class-id-rank"])
def test_value_at_target_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ----------------------------------------------------------------------------------
# IoU family
# ----------------------------------------------------------------------------------
def test_iou_by_hand():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    # cm rows true, cols pred: [[1,1,0],[0,2,0],[1,0,1]]
    cm = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    m = metrics.IoU(3, [0, 2])
    m.update_state(y_true, y_pred)
    np.testing.assert_array_equal(m.total_cm, cm)
    assert m.total_cm.dtype == np.int32
    # class 0: 1 / (2 + 2 - 1) = 1/3; class 2: 1 / (1 + 2 - 1) = 1/2
    assert m.result() == pytest.approx((1 / 3 + 1 / 2) / 2, rel=1e-6)
    mean = metrics.MeanIoU(3)
    assert mean(y_true, y_pred) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3, rel=1e-6)
    mean.reset_state()
    assert mean.result() == 0.0 and not mean.total_cm.any()


def test_iou_weights_out_of_range_ids_and_ignore_class():
    y_true = np.array([0, 1, 2, 2.7, -1, 5, 1])
    y_pred = np.array([0, 1, 1, 2.9, 1, 1, 3])
    w = np.array([1, 0.5, 2.5, 1, 1, 1, 1])
    # float32 dtype: fractional weights kept; ids truncated; ids outside [0, 3) skipped
    f = metrics.IoU(3, [0, 1, 2], dtype="float32")
    f.update_state(y_true, y_pred, sample_weight=w)
    cm = [[1, 0, 0], [0, 0.5, 0], [0, 2.5, 1]]
    np.testing.assert_allclose(f.total_cm, cm)
    assert f.result() == pytest.approx(ref.iou(cm, [0, 1, 2]), rel=1e-6)
    # default int32: the float weights are truncated (Keras warns the same way)
    i = metrics.IoU(3, [0, 1, 2])
    with pytest.warns(UserWarning, match="weight as `float`"):
        i.update_state(y_true, y_pred, sample_weight=w)
    np.testing.assert_array_equal(i.total_cm, [[1, 0, 0], [0, 0, 0], [0, 2, 1]])
    # ignore_class drops samples whose y_true is that class; classes never seen are left out
    g = metrics.MeanIoU(3, ignore_class=2)
    g.update_state(y_true, y_pred)
    np.testing.assert_array_equal(g.total_cm, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert g.result() == pytest.approx(1.0, rel=1e-6)
    # (N, 1) sample weights for (N, 1) labels
    h = metrics.IoU(3, [1])
    h.update_state(np.array([[1], [1]]), np.array([[1], [0]]), sample_weight=np.array([[2], [1]]))
    np.testing.assert_array_equal(h.total_cm, [[0, 0, 0], [1, 2, 0], [0, 0, 0]])
    assert h.result() == pytest.approx(2 / 3, rel=1e-6)


def test_binary_and_one_hot_iou():
    y_true = np.array([0, 1, 0.7, 1, 0])
    y_pred = np.array([0.5, 0.4, 0.2, 0.9, 0.1])
    # y_pred >= 0.5 is class 1; y_true 0.7 casts to class 0 (int32)
    b = metrics.BinaryIoU()
    b.update_state(y_true, y_pred)
    cm = [[2, 1], [1, 1]]
    np.testing.assert_array_equal(b.total_cm, cm)
    assert b.result() == pytest.approx(ref.iou(cm, [0, 1]), rel=1e-6)
    b1 = metrics.BinaryIoU(target_class_ids=[1], threshold=0.95)
    assert b1(y_true, y_pred) == pytest.approx(0.0)
    assert b1.get_config() == {"target_class_ids": [1], "threshold": 0.95, "name": "binary_io_u",
                               "dtype": "int32"}
    rng = np.random.default_rng(2)
    labels, scores = rng.integers(0, 4, 30), rng.random((30, 4))
    hot = np.eye(4)[labels]
    want = metrics.MeanIoU(4)(labels, scores.argmax(-1))
    assert metrics.OneHotMeanIoU(4)(hot, scores) == pytest.approx(want)
    assert metrics.OneHotIoU(4, [0, 3])(hot, scores) == pytest.approx(
        metrics.IoU(4, [0, 3])(labels, scores.argmax(-1)))
    # sparse_y_pred with one-hot y_true; axis picks the class axis
    assert metrics.OneHotIoU(4, [1], sparse_y_pred=True)(hot, scores.argmax(-1)) == pytest.approx(
        metrics.IoU(4, [1])(labels, scores.argmax(-1)))
    assert metrics.OneHotMeanIoU(4, axis=0)(hot.T, scores.T) == pytest.approx(want)


def test_iou_configs_and_errors():
    assert metrics.IoU(3, (0, 2), ignore_class=1).get_config() == {
        "name": "io_u", "dtype": "int32", "num_classes": 3, "target_class_ids": [0, 2],
        "ignore_class": 1, "sparse_y_true": True, "sparse_y_pred": True, "axis": -1}
    assert metrics.MeanIoU(3, dtype="float32").get_config() == {
        "num_classes": 3, "name": "mean_io_u", "dtype": "float32", "ignore_class": None,
        "sparse_y_true": True, "sparse_y_pred": True, "axis": -1}
    assert metrics.OneHotIoU(3, [1]).get_config() == {
        "num_classes": 3, "target_class_ids": [1], "name": "one_hot_io_u", "dtype": "int32",
        "ignore_class": None, "sparse_y_pred": False, "axis": -1}
    assert metrics.OneHotMeanIoU(3).get_config() == {
        "num_classes": 3, "name": "one_hot_mean_io_u", "dtype": "int32", "ignore_class": None,
        "sparse_y_pred": False, "axis": -1}
    for m in (metrics.IoU(3, [0, 2]), metrics.BinaryIoU(threshold=0.3), metrics.MeanIoU(4),
              metrics.OneHotIoU(3, [1], ignore_class=0), metrics.OneHotMeanIoU(2, dtype="float32")):
        assert type(m).from_config(m.get_config()).get_config() == m.get_config()
        assert metrics.get({"class_name": type(m).__name__, "config": m.get_config()}).get_config() \
            == m.get_config()
    with pytest.raises(ValueError, match=r"Target class id 3 is out of range, which is \[0, 3\)"):
        metrics.IoU(3, [0, 3])
    with pytest.raises(ValueError, match="as many class ids"):
        metrics.IoU(3, [0]).update_state([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.IoU(3, [0]).update_state([0, 1, 2], [0, 1, 2], sample_weight=[1, 2])


# ----------------------------------------------------------------------------------
# Names, compile(), callbacks and .keras files
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("identifier, cls", [
    ("mape", "MeanAbsolutePercentageError"), ("MAPE", "MeanAbsolutePercentageError"),
    ("mean_absolute_percentage_error", "MeanAbsolutePercentageError"),
    ("msle", "MeanSquaredLogarithmicError"), ("MSLE", "MeanSquaredLogarithmicError"),
    ("cosine_similarity", "CosineSimilarity"), ("log_cosh_error", "LogCoshError"),
    ("LogCoshError", "LogCoshError"), ("r2_score", "R2Score"), ("hinge", "Hinge"),
    ("squared_hinge", "SquaredHinge"), ("categorical_hinge", "CategoricalHinge"),
    ("kl_divergence", "KLDivergence"), ("poisson", "Poisson"),
    ("pearson_correlation", "PearsonCorrelation"),
    ("concordance_correlation", "ConcordanceCorrelation"), ("bce", "BinaryCrossentropy"),
    ("MSE", "MeanSquaredError"), ("MAE", "MeanAbsoluteError")])
def test_string_identifiers(identifier, cls):
    m = metrics.get(identifier)
    assert type(m).__name__ == cls and m.name == identifier


def test_identifiers_needing_arguments_and_unknown_names():
    with pytest.raises(TypeError):
        metrics.get("mean_io_u")  # num_classes is required, as in Keras
    with pytest.raises(TypeError):
        metrics.get("sensitivity_at_specificity")
    with pytest.raises(ValueError, match="Could not interpret metric identifier: logcosh"):
        metrics.get("logcosh")  # not a Keras metric name (the class is LogCoshError)
    m = metrics.get({"class_name": "SensitivityAtSpecificity",
                     "config": {"specificity": 0.3, "num_thresholds": 5, "name": "s"}})
    assert m.specificity == 0.3 and len(m.thresholds) == 5 and m.name == "s"


@pytest.mark.parametrize("cls, kwargs, direction", [
    (metrics.MeanAbsolutePercentageError, {}, "down"), (metrics.MeanSquaredLogarithmicError, {}, "down"),
    (metrics.LogCoshError, {}, "down"), (metrics.CosineSimilarity, {}, "up"),
    (metrics.Hinge, {}, "down"), (metrics.SquaredHinge, {}, "down"),
    (metrics.CategoricalHinge, {}, "down"), (metrics.KLDivergence, {}, "down"),
    (metrics.Poisson, {}, "down"), (metrics.PearsonCorrelation, {}, "up"),
    (metrics.ConcordanceCorrelation, {}, "up"), (metrics.R2Score, {}, "up"),
    (metrics.SensitivityAtSpecificity, {"specificity": 0.5}, "up"),
    (metrics.PrecisionAtRecall, {"recall": 0.5}, "up"), (metrics.IoU, {"num_classes": 2,
                                                                       "target_class_ids": [0]}, "up"),
    (metrics.BinaryIoU, {}, "up"), (metrics.OneHotMeanIoU, {"num_classes": 2}, "up")])
def test_directions(cls, kwargs, direction):
    assert cls(**kwargs)._direction == direction


def test_compile_fit_callbacks_and_keras_file_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    model = faltung.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
    model.compile("adam", "categorical_crossentropy",
                  metrics=["mape", "kl_divergence", "r2_score", metrics.OneHotMeanIoU(3),
                           metrics.RecallAtPrecision(0.4, name="r_at_p"),
                           metrics.R2Score(class_aggregation=None, name="r2_each")])
    stop = callbacks.EarlyStopping(monitor="val_one_hot_mean_io_u", patience=5)
    low = callbacks.EarlyStopping(monitor="val_kl_divergence", patience=5)
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0,
                        callbacks=[stop, low])
    assert stop._direction_mode() == "max" and low._direction_mode() == "min"
    for key in ("mape", "kl_divergence", "r2_score", "one_hot_mean_io_u", "r_at_p", "r2_each",
                "val_r_at_p"):
        assert key in history.history, sorted(history.history)
    assert np.shape(history.history["r2_each"][-1]) == (3,)
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    assert result["one_hot_mean_io_u"] == pytest.approx(metrics.OneHotMeanIoU(3)(y, probs), rel=1e-5)
    assert result["r_at_p"] == pytest.approx(metrics.RecallAtPrecision(0.4)(y, probs), rel=1e-5)
    assert result["mape"] == pytest.approx(metrics.MeanAbsolutePercentageError()(y, probs), rel=1e-5)
    model.save(tmp_path / "m.keras")
    restored = faltung.models.load_model(tmp_path / "m.keras")
    again = restored.evaluate(x, y, verbose=0, return_dict=True)
    assert sorted(again) == sorted(result)
    for key in result:
        np.testing.assert_allclose(again[key], result[key], rtol=1e-5, err_msg=key)
    kinds = {type(m).__name__ for m in restored.metrics}
    assert {"OneHotMeanIoU", "RecallAtPrecision", "R2Score", "KLDivergence"} <= kinds
