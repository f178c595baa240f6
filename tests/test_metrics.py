import numpy as np
import pytest

from faltung import metrics, regularizers


def test_categorical_and_sparse_accuracy():
    y_pred = np.array([[0.1, 0.6, 0.3], [0.05, 0.95, 0.0], [0.5, 0.2, 0.3]])
    m = metrics.CategoricalAccuracy()
    m.update_state(np.eye(3)[[1, 2, 0]], y_pred)
    assert m.result() == pytest.approx(2 / 3) and m.name == "categorical_accuracy"
    s = metrics.SparseCategoricalAccuracy()
    s.update_state(np.array([[1], [2], [0]]), y_pred, sample_weight=[0.5, 0.25, 0.25])
    assert s.result() == pytest.approx(0.75)
    s.reset_state()
    assert s.result() == 0.0
    s.update_state([2, 2, 2], y_pred)
    s.update_state([1], y_pred[:1])
    assert s.result() == pytest.approx(1 / 4)


def test_binary_accuracy_threshold():
    m = metrics.BinaryAccuracy()
    m.update_state([[1], [1], [0], [0]], [[0.98], [0.4], [0.6], [0.2]])
    assert m.result() == pytest.approx(0.5)
    m = metrics.BinaryAccuracy(threshold=0.3)
    m.update_state([1, 1, 0, 0], [[0.98], [0.4], [0.6], [0.2]])
    assert m.result() == pytest.approx(0.75)


def test_top_k():
    y_pred = np.array([[0.1, 0.5, 0.4, 0.0], [0.3, 0.2, 0.1, 0.4]])
    m = metrics.SparseTopKCategoricalAccuracy(k=2)
    m.update_state([2, 2], y_pred)
    assert m.result() == pytest.approx(0.5)
    m = metrics.TopKCategoricalAccuracy(k=1)
    m.update_state(np.eye(4)[[1, 0]], y_pred)
    assert m.result() == pytest.approx(0.5)
    assert metrics.TopKCategoricalAccuracy().get_config()["k"] == 5
    # ties at the boundary count as in the top k (TF's in_top_k)
    tie = metrics.SparseTopKCategoricalAccuracy(k=1)
    tie.update_state([1], [[0.5, 0.5, 0.0]])
    assert tie.result() == 1.0


@pytest.mark.parametrize("identifier,y_true,y_pred,resolved,expected", [
    ("accuracy", [[1], [0]], [[0.7], [0.6]], "binary_accuracy", 0.5),
    ("accuracy", [1, 0], [[0.2, 0.8], [0.3, 0.7]], "sparse_categorical_accuracy", 0.5),
    ("acc", [[1], [0]], [[0.2, 0.8], [0.9, 0.1]], "sparse_categorical_accuracy", 1.0),
    ("accuracy", [[0, 1], [0, 1]], [[0.2, 0.8], [0.9, 0.1]], "categorical_accuracy", 0.5),
], ids=["binary", "sparse-rank", "sparse-trailing1", "categorical"])
def test_auto_accuracy(identifier, y_true, y_pred, resolved, expected):
    m = metrics.get(identifier)
    assert m.name == identifier
    m.update_state(np.array(y_true), np.array(y_pred))
    assert m.resolved == resolved
    assert m.result() == pytest.approx(expected)


def test_mean_and_regression_metrics():
    m = metrics.Mean()
    m.update_state([1.0, 2.0, 3.0], sample_weight=[1, 0, 1])
    assert m.result() == pytest.approx(2.0)
    mse = metrics.get("mse")
    mse.update_state([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]])
    assert mse.result() == pytest.approx(0.5) and mse.name == "mse"
    mae = metrics.MeanAbsoluteError()
    mae.update_state([[0.0], [2.0]], [[1.0], [1.0]])
    assert mae.result() == pytest.approx(1.0)
    rmse = metrics.RootMeanSquaredError()
    rmse.update_state([0.0, 0.0], [3.0, 4.0])
    assert rmse.result() == pytest.approx(np.sqrt(12.5))
    ce = metrics.get("sparse_categorical_crossentropy")
    ce.update_state([0], [[0.5, 0.5]])
    assert ce.result() == pytest.approx(np.log(2), rel=1e-6)


def test_precision_recall():
    y_true = [0, 1, 1, 1, 0]
    y_pred = [0.9, 0.8, 0.2, 0.7, 0.1]
    p, r = metrics.Precision(), metrics.Recall()
    p.update_state(y_true, y_pred)
    r.update_state(y_true, y_pred)
    assert p.result() == pytest.approx(2 / 3)
    assert r.result() == pytest.approx(2 / 3)


def test_get_identifiers_and_errors():
    m = metrics.CategoricalAccuracy(name="acc1")
    assert metrics.get(m) is m
    assert isinstance(metrics.get("SparseCategoricalAccuracy"), metrics.SparseCategoricalAccuracy)
    wrapped = metrics.get(lambda t, p: np.abs(np.asarray(t) - p).sum(axis=-1))
    wrapped.update_state([[1.0, 1.0]], [[0.0, 0.5]])
    assert wrapped.result() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="Could not interpret metric identifier: acuracy. Valid names:.*accuracy"):
        metrics.get("acuracy")
    with pytest.raises(ValueError, match=r"categorical_accuracy: .*y_true.shape=\(2, 3\), y_pred.shape=\(2, 4\)"):
        metrics.CategoricalAccuracy().update_state(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"sparse_categorical_accuracy: .*y_true.shape=\(3,\)"):
        metrics.SparseCategoricalAccuracy().update_state([0, 1, 2], np.zeros((2, 4)))


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("reg", [regularizers.L1(0.3), regularizers.L2(0.2), regularizers.L1L2(0.1, 0.05),
                                 regularizers.OrthogonalRegularizer(0.5), regularizers.OrthogonalRegularizer(0.5, "columns")],
                         ids=["l1", "l2", "l1l2", "orthogonal-rows", "orthogonal-columns"])
def test_regularizer_value_and_grad(reg):
    x = np.random.default_rng(3).normal(size=(4, 3))
    np.testing.assert_allclose(reg.grad(x), numeric_grad(reg, x.copy()), rtol=1e-5, atol=1e-8)


def test_regularizer_values_and_get():
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    assert regularizers.L1(0.1)(x) == pytest.approx(0.65)
    assert regularizers.L2(0.1)(x) == pytest.approx(1.425)
    assert regularizers.get("l2").l2 == 0.01 and regularizers.get("l1").l1 == 0.01
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.0, "l2": 0.0}
    assert regularizers.get({"class_name": "L1L2", "config": {"l1": 0.2, "l2": 0.3}}).l2 == 0.3
    assert regularizers.get(None) is None
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier: l3"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="`l2` must be a finite non-negative float"):
        regularizers.L2(-1.0)
