"""The metrics added after the first set (sensitivity/specificity family, regression, hinge,
probabilistic, correlation, IoU) against live Keras 3: results over several update_state
calls with sample weights and after reset_state, configs, directions, string names, and a
compiled model saved by faltung and evaluated by Keras. Needs Keras (skipped without it)."""
import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import faltung  # noqa: E402
from faltung import layers as L  # noqa: E402
from faltung import metrics  # noqa: E402


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# data makers: rng, batch size -> (y_true, y_pred) float32
def regression(rng, n):
    return rng.uniform(0.1, 2.0, (n, 4)), rng.uniform(0.0, 2.0, (n, 4))


def signed(rng, n):
    return rng.normal(size=(n, 4)), rng.normal(size=(n, 4))


def binary_labels(rng, n):
    return (rng.random((n, 4)) > 0.5).astype(float), rng.normal(size=(n, 4))


def one_hot(rng, n):
    return np.eye(5)[rng.integers(0, 5, n)], rng.normal(size=(n, 5))


def probabilities(rng, n):
    return _softmax(rng.normal(size=(n, 5))), _softmax(rng.normal(size=(n, 5)))


def counts(rng, n):
    return rng.poisson(2.0, (n, 3)).astype(float), rng.uniform(0.1, 4.0, (n, 3))


def scores(rng, n):
    return (rng.random(n) > 0.4).astype(float), rng.random(n)


def scores_2d(rng, n):
    return (rng.random((n, 3)) > 0.5).astype(float), rng.random((n, 3))


def class_ids(rng, n):  # ids outside [0, 4) included: both skip them
    return rng.integers(-1, 5, n).astype(float), rng.integers(-1, 5, n).astype(float)


def class_maps(rng, n):  # (n, 3) ids per sample (pixels), weights (n, 3) below
    return rng.integers(0, 4, (n, 3)).astype(float), rng.integers(0, 4, (n, 3)).astype(float)


def one_hot_scores(rng, n):
    return np.eye(4)[rng.integers(0, 4, n)], rng.random((n, 4))


def binary_scores(rng, n):
    return (rng.random(n) > 0.5).astype(float), rng.random(n)


# (class name, constructor kwargs, data maker, sample weights: "float", "int" (IoU's default
# int32 dtype truncates float weights) or "none" (CosineSimilarity(axis=0) gives one value per
# column, which per-sample weights do not fit, in Keras as in faltung))
CASES = [
    ("MeanAbsolutePercentageError", {}, regression, "float"),
    ("MeanSquaredLogarithmicError", {}, regression, "float"),
    ("LogCoshError", {}, signed, "float"),
    ("CosineSimilarity", {}, signed, "float"),
    ("CosineSimilarity", {"axis": 0}, signed, "none"),
    ("Hinge", {}, binary_labels, "float"),
    ("Hinge", {}, signed, "float"),
    ("SquaredHinge", {}, binary_labels, "float"),
    ("CategoricalHinge", {}, one_hot, "float"),
    ("KLDivergence", {}, probabilities, "float"),
    ("Poisson", {}, counts, "float"),
    ("PearsonCorrelation", {}, signed, "float"),
    ("ConcordanceCorrelation", {}, signed, "float"),
    ("R2Score", {}, signed, "float"),
    ("R2Score", {"class_aggregation": "variance_weighted_average"}, regression, "float"),
    ("R2Score", {"class_aggregation": None}, regression, "float"),
    ("R2Score", {"num_regressors": 3}, signed, "float"),
    ("SensitivityAtSpecificity", {"specificity": 0.6}, scores, "float"),
    ("SensitivityAtSpecificity", {"specificity": 0.8, "num_thresholds": 7}, scores, "float"),
    ("SensitivityAtSpecificity", {"specificity": 0.5, "num_thresholds": 1}, scores, "float"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.7}, scores, "float"),
    ("SpecificityAtSensitivity", {"sensitivity": 0.4, "class_id": 2}, scores_2d, "float"),
    ("PrecisionAtRecall", {"recall": 0.6}, scores, "float"),
    ("PrecisionAtRecall", {"recall": 0.3, "num_thresholds": 11, "class_id": 1}, scores_2d, "float"),
    ("RecallAtPrecision", {"precision": 0.6}, scores, "float"),
    ("RecallAtPrecision", {"precision": 0.9}, scores_2d, "float"),
    ("IoU", {"num_classes": 4, "target_class_ids": [0, 2]}, class_ids, "int"),
    ("IoU", {"num_classes": 4, "target_class_ids": [1, 3], "ignore_class": 2}, class_ids, "int"),
    ("IoU", {"num_classes": 4, "target_class_ids": [0, 1, 3], "dtype": "float32"}, class_ids,
     "float"),
    ("IoU", {"num_classes": 4, "target_class_ids": [0, 1], "sparse_y_true": False,
             "sparse_y_pred": False}, one_hot_scores, "int"),
    ("MeanIoU", {"num_classes": 4}, class_ids, "int"),
    ("MeanIoU", {"num_classes": 4}, class_ids, "float"),  # int32: weights truncated
    ("MeanIoU", {"num_classes": 4}, class_maps, "map"),
    ("MeanIoU", {"num_classes": 4, "ignore_class": 0, "dtype": "float32"}, class_ids, "float"),
    ("BinaryIoU", {}, binary_scores, "int"),
    ("BinaryIoU", {"target_class_ids": [1], "threshold": 0.3}, binary_scores, "int"),
    ("OneHotIoU", {"num_classes": 4, "target_class_ids": [0, 3]}, one_hot_scores, "int"),
    ("OneHotMeanIoU", {"num_classes": 4}, one_hot_scores, "int"),
    ("OneHotMeanIoU", {"num_classes": 4, "ignore_class": 1, "dtype": "float32"}, one_hot_scores,
     "float"),
]


def case_id(case):
    return f"{case[0]}-{case[1]}-{case[2].__name__}"


def batches(seed, maker, weights):
    """Three batches of different sizes, with sample weights."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (7, 12, 4):
        y_true, y_pred = maker(rng, n)
        w = {"int": lambda: rng.integers(0, 4, n).astype(np.float32),
             "float": lambda: rng.uniform(0.0, 2.0, n).astype(np.float32),
             "map": lambda: rng.integers(0, 3, (n, 3)).astype(np.float32),
             "none": lambda: None}[weights]()
        out.append((np.float32(y_true), np.float32(y_pred), w))
    return out


def replay(metric, data, weighted=True):
    for y_true, y_pred, w in data:
        metric.update_state(y_true, y_pred, sample_weight=w if weighted else None)
    return np.asarray(metric.result(), np.float64)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_result_matches_keras(case):
    cls_name, kwargs, maker, weights = case
    ours = getattr(metrics, cls_name)(**kwargs)
    theirs = getattr(keras.metrics, cls_name)(**kwargs)
    data = batches(len(cls_name) + len(kwargs), maker, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # R2Score's adjusted fallback, IoU's float weights
        for weighted in (True, False):
            want = replay(theirs, data, weighted)
            np.testing.assert_allclose(replay(ours, data, weighted), want, rtol=2e-5, atol=2e-6)
            ours.reset_state()
            theirs.reset_state()
        # after a reset, one batch alone
        np.testing.assert_allclose(replay(ours, data[:1]), replay(theirs, data[:1]),
                                   rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_config_direction_and_state_match_keras(case):
    cls_name, kwargs, maker, weights = case
    kwargs = {**kwargs, "name": "m"}  # Keras numbers unnamed instances (io_u_3)
    ours = getattr(metrics, cls_name)(**kwargs)
    theirs = getattr(keras.metrics, cls_name)(**kwargs)
    assert ours.get_config() == theirs.get_config()
    assert getattr(ours, "_direction", None) == getattr(theirs, "_direction", None)
    # each reads the other's config back
    again = getattr(metrics, cls_name).from_config(theirs.get_config())
    assert again.get_config() == theirs.get_config()
    assert getattr(keras.metrics, cls_name).from_config(ours.get_config()).get_config() == \
        theirs.get_config()
    # the state variables: Keras's names (R2Score's total_mse is the variable "residual")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        replay(ours, batches(1, maker, weights))
        replay(theirs, batches(1, maker, weights))
    attr = {"residual": "total_mse", "total_confusion_matrix": "total_cm"}
    for v in theirs.variables:
        if v.name in ("total", "count") and cls_name not in ("R2Score",):
            mine = getattr(ours, v.name)  # Mean: faltung counts elements, Keras samples
            assert np.shape(mine) == tuple(v.shape)
            continue
        mine = getattr(ours, attr.get(v.name, v.name))
        assert np.shape(mine) == tuple(v.shape), v.name
        np.testing.assert_allclose(mine, keras.ops.convert_to_numpy(v), rtol=2e-5, atol=1e-4)


def test_default_names_match_keras():
    for cls_name, kwargs, _, _ in CASES:
        ours, theirs = getattr(metrics, cls_name)(**kwargs), getattr(keras.metrics, cls_name)(**kwargs)
        # Keras appends _1, _2 ... to repeated default names
        assert theirs.name == ours.name or theirs.name.startswith(ours.name + "_"), cls_name


def test_string_identifiers_match_keras():
    """Every name keras.metrics.get accepts gives the same class in faltung (or the same
    TypeError for classes with required arguments)."""
    from keras.src.metrics import ALL_OBJECTS_DICT
    for key, cls in ALL_OBJECTS_DICT.items():
        if cls.__name__ in ("Metric", "MeanMetricWrapper") or key in ("accuracy", "Accuracy"):
            continue  # faltung's "accuracy", like Keras's compile(), picks the accuracy kind
        try:
            ours = metrics.get(key)
        except TypeError:
            with pytest.raises(TypeError):
                keras.metrics.get(key)
            continue
        assert type(ours).__name__ == cls.__name__, key
        assert ours.name == key


def test_function_forms_match_keras():
    rng = np.random.default_rng(3)
    y_true, y_pred = np.float32(rng.uniform(0.1, 1, (6, 5))), np.float32(rng.uniform(0.1, 1, (6, 5)))
    for name in ("mean_absolute_percentage_error", "mean_squared_logarithmic_error", "hinge",
                 "squared_hinge", "categorical_hinge", "log_cosh", "kl_divergence", "poisson",
                 "huber", "pearson_correlation", "concordance_correlation"):
        want = keras.ops.convert_to_numpy(getattr(keras.metrics, name)(y_true, y_pred))
        np.testing.assert_allclose(getattr(metrics, name)(y_true, y_pred), want, rtol=1e-5,
                                   atol=1e-6, err_msg=name)


def _evaluate_in_both(model, x, y, tmp_path):
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "m.keras")
    ours = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.models.load_model(tmp_path / "m.keras").evaluate(
            x, y, batch_size=len(x), verbose=0, return_dict=True)
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        np.testing.assert_allclose(ours[key], np.asarray(theirs[key]), rtol=1e-4, atol=1e-5,
                                   err_msg=key)


def test_compiled_regression_metrics_round_trip_through_keras(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(48, 6)).astype(np.float32)
    y = rng.uniform(0.5, 2.0, (48, 3)).astype(np.float32)
    model = faltung.Sequential([L.Input((6,)), L.Dense(3, activation="softplus")])
    model.compile("adam", "mse",
                  metrics=["mape", "msle", "cosine_similarity", "log_cosh_error", "r2_score",
                           "hinge", "kl_divergence", "poisson", metrics.PearsonCorrelation(),
                           metrics.ConcordanceCorrelation(name="ccc"),
                           metrics.R2Score(class_aggregation="variance_weighted_average",
                                           name="r2w")])
    _evaluate_in_both(model, x, y, tmp_path)


def test_compiled_classification_metrics_round_trip_through_keras(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)]
    model = faltung.Sequential([L.Input((5,)), L.Dense(3, activation="softmax")])
    model.compile("adam", "categorical_crossentropy",
                  metrics=[metrics.OneHotMeanIoU(3), metrics.OneHotIoU(3, [0, 2], name="iou02"),
                           metrics.SensitivityAtSpecificity(0.5, class_id=1),
                           metrics.PrecisionAtRecall(0.3, num_thresholds=50),
                           metrics.RecallAtPrecision(0.4), metrics.SpecificityAtSensitivity(0.6),
                           metrics.CategoricalHinge(), metrics.SquaredHinge()])
    _evaluate_in_both(model, x, y, tmp_path)


def test_keras_saved_metrics_load_in_faltung(tmp_path):
    """The other way: a model compiled and saved by Keras evaluates in faltung to Keras's
    numbers under the same names (the metric configs that Keras writes are read back)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "categorical_crossentropy",
                  metrics=["mape", "cosine_similarity", keras.metrics.OneHotIoU(3, [0, 1]),
                           keras.metrics.MeanIoU(3, sparse_y_true=False, sparse_y_pred=False,
                                                 name="miou"),
                           keras.metrics.PrecisionAtRecall(0.5, num_thresholds=30),
                           keras.metrics.R2Score(num_regressors=2),
                           keras.metrics.PearsonCorrelation(axis=-1),
                           keras.metrics.KLDivergence(), keras.metrics.CategoricalHinge()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
        model.save(tmp_path / "k.keras")
    ours = faltung.models.load_model(tmp_path / "k.keras").evaluate(
        x, y, batch_size=len(x), verbose=0, return_dict=True)
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        np.testing.assert_allclose(ours[key], np.asarray(theirs[key]), rtol=1e-4, atol=1e-5,
                                   err_msg=key)


@pytest.mark.parametrize("cls_name", [
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "Hinge", "SquaredHinge", "CategoricalHinge", "LogCoshError",
    "Poisson", "KLDivergence", "BinaryCrossentropy", "CategoricalCrossentropy",
    "CosineSimilarity", "PearsonCorrelation", "BinaryAccuracy"])
def test_one_dimensional_batches_of_unequal_size_match_keras(cls_name):
    """Keras's loss functions reduce 1-D inputs to one value per batch; binary_accuracy
    stays elementwise. Batches of 3 and 5 tell the two apart."""
    ours, theirs = getattr(metrics, cls_name)(), getattr(keras.metrics, cls_name)()
    rng = np.random.default_rng(8)
    for n in (3, 5):
        y_true = (rng.random(n) > 0.5).astype(np.float32)
        y_pred = rng.uniform(0.05, 0.95, n).astype(np.float32)
        ours.update_state(y_true, y_pred)
        theirs.update_state(y_true, y_pred)
    np.testing.assert_allclose(ours.result(), keras.ops.convert_to_numpy(theirs.result()),
                               rtol=2e-5)
