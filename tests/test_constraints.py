"""Constraints and regularizers resolved once: faltung.constraints (Keras's classes, get,
serialize), Keras's config dicts for both, layers that keep them through get_config ->
from_config, Variables that always hold resolved objects, and constraints holding after fit."""
import numpy as np
import pytest

import faltung
from faltung import backend, constraints, layers, regularizers
from faltung.layers.layer import Variable
from faltung.models import Sequential
from faltung.utils import set_random_seed

EPS = 1e-7  # keras.config.epsilon()


@pytest.fixture(autouse=True)
def _fresh():
    backend.clear_session()
    set_random_seed(0)


def norms(w, axis):
    return np.sqrt((w.astype(np.float64) ** 2).sum(axis=axis, keepdims=True))


W = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype(np.float32) * 2


# Keras's formulas (keras/src/constraints/constraints.py), in float64.
@pytest.mark.parametrize("c, expected", [
    (constraints.MaxNorm(1.5), W * (np.clip(norms(W, 0), 0, 1.5) / (EPS + norms(W, 0)))),
    (constraints.MaxNorm(1.5, axis=[0, 1, 2]),
     W * (np.clip(norms(W, (0, 1, 2)), 0, 1.5) / (EPS + norms(W, (0, 1, 2))))),
    (constraints.UnitNorm(axis=-1), W / (EPS + norms(W, -1))),
    (constraints.MinMaxNorm(0.5, 1.0, rate=0.5, axis=0),
     W * ((0.5 * np.clip(norms(W, 0), 0.5, 1.0) + 0.5 * norms(W, 0)) / (EPS + norms(W, 0)))),
    (constraints.NonNeg(), np.maximum(W, 0)),
], ids=["max_norm", "max_norm-filters", "unit_norm", "min_max_norm", "non_neg"])
def test_constraint_projects_as_keras(c, expected):
    out = c(W)
    assert out.dtype == np.float32 and out.shape == W.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)


def test_max_norm_leaves_small_columns_alone():
    w = np.array([[0.3, 3.0], [0.4, 4.0]], np.float32)  # column norms 0.5 and 5
    np.testing.assert_allclose(constraints.MaxNorm(2.0)(w), [[0.3, 1.2], [0.4, 1.6]], rtol=1e-6)


@pytest.mark.parametrize("identifier, cls", [
    ("max_norm", constraints.MaxNorm), ("MaxNorm", constraints.MaxNorm), ("non_neg", constraints.NonNeg),
    ("NonNeg", constraints.NonNeg), ("unit_norm", constraints.UnitNorm), ("min_max_norm", constraints.MinMaxNorm),
    ({"class_name": "MaxNorm", "config": {"max_value": 3, "axis": 1}}, constraints.MaxNorm),
    (constraints.UnitNorm, constraints.UnitNorm)])
def test_constraints_get(identifier, cls):
    assert type(constraints.get(identifier)) is cls


def test_constraints_get_passes_instances_functions_and_none():
    c = constraints.MaxNorm(3)
    assert constraints.get(c) is c
    assert constraints.get(abs) is abs
    assert constraints.get(None) is None
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: max_norms"):
        constraints.get("max_norms")
    with pytest.raises(ValueError, match="Could not interpret constraint identifier"):
        constraints.get({"class_name": "Clip", "config": {}})
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 3"):
        constraints.get(3)


@pytest.mark.parametrize("call, message", [
    (lambda: constraints.MaxNorm(-1), r"Invalid value for argument `max_value`. Expected a finite number >= 0. "
                                      r"Received: max_value=-1"),
    (lambda: constraints.MinMaxNorm(2.0, 1.0), r"Expected min_value <= max_value. Received: min_value=2.0, "
                                               r"max_value=1.0"),
    (lambda: constraints.MinMaxNorm(rate=1.5), r"argument `rate`. Expected a value in \[0, 1\]. Received: rate=1.5"),
    (lambda: constraints.MaxNorm("2"), r"argument `max_value`.*Received: max_value=2")])
def test_constraint_argument_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# Keras 3's serialize_keras_object of the built-in classes: the public module, no registered name.
@pytest.mark.parametrize("module, obj, class_name, config", [
    (constraints, constraints.MaxNorm(), "MaxNorm", {"max_value": 2, "axis": 0}),
    (constraints, constraints.MinMaxNorm(), "MinMaxNorm", {"min_value": 0.0, "max_value": 1.0, "rate": 1.0,
                                                            "axis": 0}),
    (constraints, constraints.NonNeg(), "NonNeg", {}),
    (constraints, constraints.UnitNorm(axis=[0, 1]), "UnitNorm", {"axis": [0, 1]}),
    (regularizers, regularizers.L1(), "L1", {"l1": 0.01}),
    (regularizers, regularizers.L2(0.5), "L2", {"l2": 0.5}),
    (regularizers, regularizers.L1L2(0.1, 0.2), "L1L2", {"l1": 0.1, "l2": 0.2}),
    (regularizers, regularizers.OrthogonalRegularizer(0.1, "columns"), "OrthogonalRegularizer",
     {"factor": 0.1, "mode": "columns"})], ids=["MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "L1", "L2", "L1L2",
                                                "OrthogonalRegularizer"])
def test_serialize_is_keras_dict_and_get_round_trips(module, obj, class_name, config):
    d = module.serialize(obj)
    assert d == {"module": "keras." + module.__name__.split(".")[-1], "class_name": class_name,
                 "config": config, "registered_name": None}
    back = module.get(d)
    assert type(back) is type(obj) and back.get_config() == obj.get_config()
    assert module.serialize(None) is None


def test_regularizers_get_instantiates_classes():
    assert type(regularizers.get(regularizers.L1)) is regularizers.L1


REG, CON = regularizers.L2(0.25), constraints.MaxNorm(1.5, axis=[0, 1, 2])
# name -> (a layer with regularizers / constraints given in every accepted form, its input shape)
REGULARIZED_LAYERS = {
    "Dense": (lambda: layers.Dense(3, kernel_regularizer=REG, bias_regularizer="l1", activity_regularizer="l2",
                                   kernel_constraint=constraints.MaxNorm(2.0), bias_constraint="non_neg"),
              (None, 4)),
    "Conv2D": (lambda: layers.Conv2D(3, 3, kernel_regularizer=REG, kernel_constraint=CON, bias_constraint="non_neg"),
               (None, 6, 6, 2)),
    "Conv1D": (lambda: layers.Conv1D(3, 3, kernel_regularizer="l1_l2", kernel_constraint="unit_norm"), (None, 6, 2)),
    "DepthwiseConv2D": (lambda: layers.DepthwiseConv2D(3, depthwise_regularizer=REG, depthwise_constraint=CON),
                        (None, 6, 6, 2)),
    "SeparableConv2D": (lambda: layers.SeparableConv2D(3, 3, pointwise_regularizer=REG, depthwise_constraint="non_neg",
                                                       pointwise_constraint=constraints.MaxNorm(2.0)),
                        (None, 6, 6, 2)),
    "Conv2DTranspose": (lambda: layers.Conv2DTranspose(3, 3, kernel_regularizer={"class_name": "L2",
                                                                                 "config": {"l2": 0.25}},
                                                       kernel_constraint=CON), (None, 4, 4, 2)),
    "BatchNormalization": (lambda: layers.BatchNormalization(gamma_regularizer=REG, beta_constraint="non_neg",
                                                             gamma_constraint=constraints.MinMaxNorm(0.5, 2.0)),
                           (None, 4)),
    "PReLU": (lambda: layers.PReLU(alpha_regularizer=REG, alpha_constraint="non_neg"), (None, 4)),
    "Highway": (lambda: layers.Highway(kernel_regularizer=REG, bias_regularizer="l1"), (None, 4)),
}


def reg_and_constraint_args(layer):
    return {k: v for k, v in layer.get_config().items() if k.endswith(("_regularizer", "_constraint"))}


@pytest.mark.parametrize("name", REGULARIZED_LAYERS)
def test_layer_config_round_trip_keeps_regularizers_and_constraints(name):
    make, shape = REGULARIZED_LAYERS[name]
    layer = make()
    cfg = reg_and_constraint_args(layer)
    assert any(v is not None for v in cfg.values())
    for key, value in cfg.items():  # every one resolved in __init__, Keras's dict in the config
        obj = getattr(layer, key)
        module = regularizers if key.endswith("_regularizer") else constraints
        assert value == module.serialize(obj)
        assert value is None or (set(value) == {"module", "class_name", "config", "registered_name"})
    clone = type(layer).from_config(layer.get_config())
    assert reg_and_constraint_args(clone) == cfg
    clone.build(shape)
    for v in clone.weights:  # the Variables hold objects, never names or dicts
        assert v.regularizer is None or isinstance(v.regularizer, regularizers.Regularizer)
        assert v.constraint is None or isinstance(v.constraint, constraints.Constraint)
    assert any(v.regularizer is not None or v.constraint is not None for v in clone.weights)


def test_variable_resolves_what_is_set():
    v = Variable(np.ones(3), "v", regularizer="l2", constraint="non_neg")
    assert isinstance(v.regularizer, regularizers.L2) and isinstance(v.constraint, constraints.NonNeg)
    v.regularizer = {"class_name": "L1", "config": {"l1": 0.5}}
    v.constraint = {"module": "keras.constraints", "class_name": "MaxNorm", "config": {"max_value": 1, "axis": 0},
                    "registered_name": None}
    assert v.regularizer.l1 == 0.5 and v.constraint.max_value == 1
    v.regularizer = v.constraint = None
    assert v.regularizer is None and v.constraint is None
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: nonneg"):
        v.constraint = "nonneg"


def test_constraints_hold_after_a_fit_step():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6, 6, 2)).astype(np.float32)
    y = rng.normal(size=(64, 4)).astype(np.float32) * 10
    model = Sequential([layers.Input((6, 6, 2)),
                        layers.Conv2D(4, 3, kernel_constraint="non_neg", bias_constraint="non_neg"),
                        layers.Flatten(),
                        layers.Dense(4, kernel_constraint=constraints.MaxNorm(0.5), bias_constraint="non_neg")])
    conv, dense = model.layers[0], model.layers[2]
    model.compile(faltung.optimizers.SGD(learning_rate=0.5), "mse")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert conv.kernel.value.min() >= 0 and conv.bias.value.min() >= 0
    assert dense.bias.value.min() >= 0
    assert norms(dense.kernel.value, 0).max() <= 0.5 * (1 + 1e-6)
    # without the constraints the same step breaks them
    set_random_seed(0)
    backend.clear_session()
    free = Sequential([layers.Input((6, 6, 2)), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(4)])
    free.compile(faltung.optimizers.SGD(learning_rate=0.5), "mse")
    free.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert free.layers[0].kernel.value.min() < 0 and norms(free.layers[2].kernel.value, 0).max() > 0.5


def test_optimizer_apply_projects_after_the_update():
    v = Variable(np.array([1.0, 2.0]), "v", constraint="non_neg")
    v.grad = np.array([3.0, -1.0], np.float32)
    faltung.optimizers.SGD(learning_rate=1.0).apply([v])
    np.testing.assert_array_equal(v.value, [0.0, 3.0])  # 1 - 3 -> -2 -> projected to 0


def test_saved_model_keeps_regularizers_and_constraints(tmp_path):
    model = Sequential([layers.Input((4,)), layers.Dense(3, kernel_regularizer=regularizers.L2(0.25),
                                                         kernel_constraint=constraints.MaxNorm(1.5))])
    model.save(tmp_path / "m.keras")
    dense = faltung.models.load_model(tmp_path / "m.keras").layers[0]
    assert dense.kernel.regularizer.get_config() == {"l2": 0.25}
    assert isinstance(dense.kernel.constraint, constraints.MaxNorm) and dense.kernel.constraint.max_value == 1.5
