import numpy as np
import pytest

from faltung import losses
from tests.reference import losses as ref

RNG = np.random.default_rng(0)


def probs(shape, rng=RNG):
    p = rng.uniform(0.05, 1.0, size=shape)
    return p / p.sum(axis=-1, keepdims=True)


def onehot(labels, c):
    return np.eye(c)[labels]


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


# (id, loss factory, y_true maker, y_pred maker, reference fn)
N, C = 5, 4
labels = RNG.integers(0, C, size=N)
CASES = [
    ("cce", lambda: losses.CategoricalCrossentropy(), lambda: onehot(labels, C), lambda: probs((N, C)),
     lambda t, p: ref.categorical_crossentropy(t, p)),
    ("cce-unnormalized", lambda: losses.CategoricalCrossentropy(), lambda: onehot(labels, C),
     lambda: RNG.uniform(0.1, 2.0, (N, C)), lambda t, p: ref.categorical_crossentropy(t, p)),
    ("cce-logits-smooth", lambda: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2),
     lambda: onehot(labels, C), lambda: RNG.normal(size=(N, C)),
     lambda t, p: ref.categorical_crossentropy(t, p, True, 0.2)),
    ("cce-soft-targets-logits", lambda: losses.CategoricalCrossentropy(from_logits=True),
     lambda: probs((N, C)), lambda: RNG.normal(size=(N, C)),
     lambda t, p: ref.categorical_crossentropy(t, p, True)),
    ("scce", lambda: losses.SparseCategoricalCrossentropy(), lambda: labels, lambda: probs((N, C)),
     lambda t, p: ref.sparse_categorical_crossentropy(t, p)),
    ("scce-logits", lambda: losses.SparseCategoricalCrossentropy(from_logits=True), lambda: labels,
     lambda: RNG.normal(size=(N, C)), lambda t, p: ref.sparse_categorical_crossentropy(t, p, True)),
    ("scce-logits-3d-trailing1", lambda: losses.SparseCategoricalCrossentropy(from_logits=True),
     lambda: RNG.integers(0, C, (2, 3, 1)), lambda: RNG.normal(size=(2, 3, C)),
     lambda t, p: ref.sparse_categorical_crossentropy(t[..., 0], p, True)),
    ("bce", lambda: losses.BinaryCrossentropy(), lambda: RNG.integers(0, 2, (N, 3)).astype(float),
     lambda: RNG.uniform(0.05, 0.95, (N, 3)), lambda t, p: ref.binary_crossentropy(t, p)),
    ("bce-logits-smooth", lambda: losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
     lambda: RNG.integers(0, 2, (N, 1)).astype(float), lambda: RNG.normal(size=(N, 1)),
     lambda t, p: ref.binary_crossentropy(t, p, True, 0.1)),
    ("mse", lambda: losses.MeanSquaredError(), lambda: RNG.normal(size=(N, 3)),
     lambda: RNG.normal(size=(N, 3)), ref.mse),
    ("mae", lambda: losses.MeanAbsoluteError(), lambda: RNG.normal(size=(N, 3)),
     lambda: RNG.normal(size=(N, 3)), ref.mae),
    ("hinge-01-labels", lambda: losses.Hinge(), lambda: RNG.integers(0, 2, (N, 3)).astype(float),
     lambda: RNG.normal(size=(N, 3)), ref.hinge),
    ("squared-hinge", lambda: losses.SquaredHinge(), lambda: RNG.choice([-1.0, 1.0], (N, 3)),
     lambda: RNG.normal(size=(N, 3)), ref.squared_hinge),
    ("categorical-hinge", lambda: losses.CategoricalHinge(), lambda: onehot(labels, C),
     lambda: RNG.normal(size=(N, C)), ref.categorical_hinge),
    ("huber-delta0.7", lambda: losses.Huber(delta=0.7), lambda: RNG.normal(size=(N, 3)),
     lambda: RNG.normal(size=(N, 3)), lambda t, p: ref.huber(t, p, 0.7)),
    ("log-cosh", lambda: losses.LogCosh(), lambda: RNG.normal(size=(N, 3)),
     lambda: RNG.normal(size=(N, 3)), ref.log_cosh),
    ("kld", lambda: losses.KLDivergence(), lambda: probs((N, C)), lambda: probs((N, C)),
     ref.kl_divergence),
    ("poisson", lambda: losses.Poisson(), lambda: RNG.uniform(0, 3, (N, 3)),
     lambda: RNG.uniform(0.1, 3, (N, 3)), ref.poisson),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_values_match_reference(case):
    _, make, t_fn, p_fn, reference = case
    t, p = t_fn(), p_fn()
    loss = make()
    loss.reduction = None
    np.testing.assert_allclose(loss(t, p), reference(t, p), rtol=1e-10, atol=1e-12)
    loss.reduction = "sum_over_batch_size"
    np.testing.assert_allclose(loss(t, p), reference(t, p).mean(), rtol=1e-10)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_and_grad_matches_central_differences(case, reduction, weighted):
    _, make, t_fn, p_fn, _ = case
    t, p = t_fn(), p_fn()
    loss = make()
    loss.reduction = reduction
    w = RNG.uniform(0.2, 2.0, size=p.shape[:-1]) if weighted else None

    def total(x):
        return np.sum(loss(t, x, sample_weight=w))

    value, grad = loss.value_and_grad(t, p, sample_weight=w)
    assert grad.shape == p.shape and grad.dtype == np.float64
    np.testing.assert_allclose(np.sum(value), total(p), rtol=1e-12)
    np.testing.assert_allclose(grad, numeric_grad(total, p.copy()), rtol=1e-5, atol=1e-8)


def test_float32_in_float32_out():
    loss = losses.get("categorical_crossentropy")
    value, grad = loss.value_and_grad(onehot(labels, C).astype(np.float32), probs((N, C)).astype(np.float32))
    assert isinstance(value, float) and grad.dtype == np.float32


def test_keras_docstring_numbers():
    y_true = [[0, 1, 0], [0, 0, 1]]
    y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    assert losses.CategoricalCrossentropy()(y_true, y_pred) == pytest.approx(1.177, abs=1e-3)
    assert losses.SparseCategoricalCrossentropy()([1, 2], y_pred) == pytest.approx(1.177, abs=1e-3)
    assert losses.BinaryCrossentropy(from_logits=True)(
        [0, 1, 0, 0], [-18.6, 0.51, 2.94, -12.8]) == pytest.approx(0.865, abs=1e-3)
    assert losses.MeanSquaredError()([[0., 1.], [0., 0.]], [[1., 1.], [1., 0.]]) == pytest.approx(0.5)
    assert losses.Hinge()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]) == pytest.approx(1.3)
    assert losses.Huber()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]) == pytest.approx(0.155)
    # sample_weight divides by the number of samples, not by the weights' sum
    assert losses.MeanSquaredError()([[0., 1.], [0., 0.]], [[1., 1.], [1., 0.]],
                                     sample_weight=[0.7, 0.3]) == pytest.approx(0.25)


def test_hand_computed_clipping():
    # p = [1, 0] for label 1: Keras clips 0 to 1e-7, loss = -log(1e-7)
    assert losses.SparseCategoricalCrossentropy()([1], [[1.0, 0.0]]) == pytest.approx(-np.log(1e-7), rel=1e-6)
    assert losses.BinaryCrossentropy()([[1.0]], [[0.0]]) == pytest.approx(-np.log(1e-7), rel=1e-5)


def test_reductions_relate():
    t, p = onehot(labels, C), probs((N, C))
    per = losses.CategoricalCrossentropy(reduction=None)(t, p)
    assert per.shape == (N,)
    assert losses.CategoricalCrossentropy(reduction="sum")(t, p) == pytest.approx(per.sum())
    assert losses.CategoricalCrossentropy(reduction="mean")(t, p) == pytest.approx(per.mean())
    w = np.arange(1.0, N + 1)
    assert losses.CategoricalCrossentropy(reduction="mean_with_sample_weight")(
        t, p, sample_weight=w) == pytest.approx((per * w).sum() / w.sum())
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        losses.CategoricalCrossentropy(reduction="avg")


def test_ignore_class_averages_over_kept_samples():
    x = RNG.normal(size=(6, 3))
    y = np.array([0, 2, -1, 1, -1, 2])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    keep = y != -1
    expected = ref.sparse_categorical_crossentropy(y[keep], x[keep], True).mean()
    assert loss(y, x) == pytest.approx(expected, rel=1e-6)
    value, grad = loss.value_and_grad(y, x)
    assert np.all(grad[~keep] == 0)
    np.testing.assert_allclose(grad, numeric_grad(lambda z: loss(y, z), x.copy()), rtol=1e-5, atol=1e-8)


def test_regression_target_vector_against_column_output():
    y = RNG.normal(size=7)
    p = RNG.normal(size=(7, 1))
    value, grad = losses.get("mse").value_and_grad(y, p)
    assert value == pytest.approx(np.mean((p[:, 0] - y) ** 2))
    np.testing.assert_allclose(grad[:, 0], 2 * (p[:, 0] - y) / 7)


def test_function_identifiers_and_wrappers():
    t, p = onehot(labels, C), probs((N, C))
    np.testing.assert_allclose(losses.categorical_crossentropy(t, p), ref.categorical_crossentropy(t, p))
    wrapped = losses.get(losses.categorical_crossentropy)
    assert wrapped.name == "categorical_crossentropy"
    np.testing.assert_allclose(wrapped.value_and_grad(t, p)[1],
                               losses.CategoricalCrossentropy().value_and_grad(t, p)[1])

    def my_loss(y_true, y_pred):  # per-sample values; gradient by central differences
        return np.sum((y_pred - y_true) ** 4, axis=-1)

    loss = losses.get(my_loss)
    value, grad = loss.value_and_grad(t, p)
    assert value == pytest.approx(my_loss(t, p).mean())
    np.testing.assert_allclose(grad, 4 * (p - t) ** 3 / N, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name,cls", [
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("binary_crossentropy", losses.BinaryCrossentropy), ("mse", losses.MeanSquaredError),
    ("mean_squared_error", losses.MeanSquaredError), ("mae", losses.MeanAbsoluteError),
    ("hinge", losses.Hinge), ("huber", losses.Huber), ("categorical_hinge", losses.CategoricalHinge),
    ("squared_hinge", losses.SquaredHinge), ("log_cosh", losses.LogCosh),
    ("kl_divergence", losses.KLDivergence), ("MeanSquaredError", losses.MeanSquaredError)])
def test_get_names(name, cls):
    loss = losses.get(name)
    assert isinstance(loss, cls) and loss.reduction == "sum_over_batch_size"


def test_get_other_identifiers():
    inst = losses.Huber(delta=2.0)
    assert losses.get(inst) is inst
    assert losses.get(None) is None
    from_dict = losses.get({"class_name": "Huber", "config": {"delta": 3.0}})
    assert isinstance(from_dict, losses.Huber) and from_dict.delta == 3.0
    assert losses.get(losses.serialize(inst)).get_config() == inst.get_config()
    with pytest.raises(ValueError, match="Could not interpret loss identifier: nope"):
        losses.get("nope")


def test_error_messages_name_loss_and_shapes():
    with pytest.raises(ValueError, match=r"categorical_crossentropy.*target.shape=\(5, 3\).*output.shape=\(5, 4\)"):
        losses.CategoricalCrossentropy()(np.zeros((5, 3)), probs((5, 4)))
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy: labels must be in \[0, 4\)"):
        losses.SparseCategoricalCrossentropy(from_logits=True)([0, 4], RNG.normal(size=(2, 4)))
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy.*target.shape=\(3,\), output.shape=\(2, 4\)"):
        losses.SparseCategoricalCrossentropy()([0, 1, 2], probs((2, 4)))
    with pytest.raises(ValueError, match=r"mean_squared_error.*target.shape=\(4, 2\).*output.shape=\(4, 3\)"):
        losses.MeanSquaredError()(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="labels must be integers"):
        losses.SparseCategoricalCrossentropy()([0.5, 1.0], probs((2, 4)))


@pytest.mark.parametrize("y_true,y_pred,resolved", [
    (np.array([[1.0], [0.0]]), np.array([[0.7], [0.2]]), losses.BinaryCrossentropy),
    (np.array([1, 0]), probs((2, 3)), losses.SparseCategoricalCrossentropy),
    (np.array([[1], [0]]), probs((2, 3)), losses.SparseCategoricalCrossentropy),
    (onehot([1, 0], 3), probs((2, 3)), losses.CategoricalCrossentropy),
], ids=["binary", "sparse", "sparse-trailing1", "categorical"])
def test_auto_crossentropy(y_true, y_pred, resolved):
    loss = losses.get("crossentropy")
    value, grad = loss.value_and_grad(y_true, y_pred)
    assert isinstance(loss.resolved, resolved) and loss.name == "crossentropy"
    want_value, want_grad = resolved().value_and_grad(y_true, y_pred)
    assert value == pytest.approx(want_value)
    np.testing.assert_allclose(grad, want_grad)
