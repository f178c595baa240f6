"""Activations, softmax, cross-entropy and optimizer kernels at the edges of floating point:
+-inf, NaN, denormals and huge finite inputs, in float32 and float64 (issue 15)."""
import numpy as np
import pytest

from faltung import optimizers
from faltung.layers.layer import Variable
from faltung.ops import nn
from reference import nn as ref
from test_optimizers import CASES as OPTIMIZER_CASES

EDGES = {
    np.float32: [-np.inf, -3e38, -1e30, -5e5, -300.0, -88.0, -1e-40, 0.0, 1e-40, 20.0, 300.0,
                 5e5, 1e30, 3e38, np.inf, np.nan],
    np.float64: [-np.inf, -1e308, -1e300, -5e5, -300.0, -750.0, -1e-310, 0.0, 1e-310, 20.0,
                 300.0, 5e5, 1e300, 1e308, np.inf, np.nan],
}
# Where the reference formula is indeterminate (inf / inf, -inf * 0) the table holds the limit.
LIMITS = {
    "softsign": {-np.inf: -1.0, np.inf: 1.0},
    "gelu": {-np.inf: 0.0},
    "gelu_approximate": {-np.inf: 0.0},
    "silu": {-np.inf: 0.0},
    "mish": {-np.inf: 0.0},
    "hard_silu": {-np.inf: 0.0},
    "relu": {-np.inf: 0.0},
}
CASES = [(name, {}) for name in ref.ELEMENTWISE] + [
    ("relu", {"negative_slope": 0.3}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"threshold": 0.5}),
    ("relu", {"max_value": 6.0, "threshold": 0.5}),
    ("elu", {"alpha": 0.7}),
]
IDS = [name + "".join(f"-{k}{v}" for k, v in p.items()) for name, p in CASES]


def _expected(name, params, x):
    with np.errstate(all="ignore"):
        want = ref.ELEMENTWISE[name](x.astype(np.float64), **params)
    if name == "relu" and params.get("negative_slope", 0.0) != 0.0:
        return want  # -inf * slope is -inf: no limit to take
    for at, value in LIMITS.get(name, {}).items():
        want = np.where(x == at, value, want)
    return want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_activation_edge_values_match_float64_reference(name, params, dtype):
    x = np.array(EDGES[dtype], dtype)
    y = nn.activation(name, x, **params)
    with np.errstate(over="ignore"):  # rounded to the dtype: exp(300) is inf in float32
        want = _expected(name, params, x).astype(dtype)
    # float32's fast exp gives 0 below -87.3 (the true value is denormal): hence atol
    tiny = 1e-30 if dtype == np.float32 else 1e-300
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, want, rtol=rtol, atol=tiny, equal_nan=True,
                               err_msg=f"{name} {params} at {x}")
    assert np.array_equal(np.isnan(y), np.isnan(x)), "NaN in, NaN out; no NaN from a number"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_saturates_for_huge_and_infinite_inputs(dtype):
    x = np.array([-np.inf, -1e30, -5e5, 5e5, 1e30, np.inf], dtype)
    np.testing.assert_array_equal(nn.activation("tanh", x), np.sign(x))


def test_relu_propagates_nan():
    y = nn.activation("relu", np.array([np.nan, -1.0, 2.0], np.float32))
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params", [c for c in CASES if c[0] != "exponential"],
                         ids=[i for i in IDS if i != "exponential"])
def test_activation_gradient_at_the_edges_equals_its_flat_limit(name, params, dtype):
    # Far from 0 every derivative except exponential's is flat (0, 1 or selu's scale): the
    # gradient at +-inf and huge finite x equals the one at +-1e20, and is never NaN.
    x = np.array([v for v in EDGES[dtype] if abs(v) >= 1e20], dtype)
    far = (np.sign(x) * 1e20).astype(dtype)
    dy = np.ones_like(x)
    dx = nn.activation_backward(name, dy, x, nn.activation(name, x, **params), **params)
    dx_far = nn.activation_backward(name, dy, far, nn.activation(name, far, **params), **params)
    np.testing.assert_allclose(dx, dx_far, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exponential_edges(dtype):
    x = np.array([-np.inf, -1e30, 0.0, 1e30, np.inf, np.nan], dtype)
    np.testing.assert_array_equal(nn.activation("exponential", x), [0, 0, 1, np.inf, np.inf, np.nan])


SOFTMAX_ROWS = [
    [-np.inf, 0.0, 1.0],    # a masked entry gets probability 0
    [1e30, 0.0, -1e30],     # huge finite logits: no overflow
    [1e-40, -1e-40, 0.0],   # denormals: uniform
    [np.nan, 0.0, 1.0],     # NaN poisons its row only
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_edges(dtype):
    x = np.array(SOFTMAX_ROWS, dtype)
    np.testing.assert_allclose(nn.softmax(x), ref.softmax(x), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(nn.log_softmax(x), ref.log_softmax(x), rtol=1e-6, atol=1e-30)
    assert np.isnan(nn.softmax(x)[3]).all() and np.isfinite(nn.softmax(x)[:3]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_xent_edges(dtype):
    x = np.array(SOFTMAX_ROWS[1:], dtype)
    labels = np.array([1, 2, 0], np.int32)
    loss, grad = nn.softmax_cross_entropy_with_grad(x, labels, sparse=True)
    want = ref.sparse_softmax_xent(x, labels)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert np.isfinite(grad[:2]).all() and np.isnan(grad[2]).all()


OPTIMIZER_PATHS = [pytest.param(False, id="numpy"),
                   pytest.param(True, id="fused", marks=pytest.mark.skipif(
                       not optimizers.rules.FUSED, reason="no fused optimizer kernels"))]


@pytest.mark.parametrize("fused", OPTIMIZER_PATHS)
@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=[c[0] for c in OPTIMIZER_CASES])
def test_optimizer_edge_gradients(case, fused, monkeypatch):
    # A NaN or inf gradient makes that weight NaN or inf (IEEE, as Keras); denormal and zero
    # gradients leave the others exact; no element leaks into another.
    _, make, reference = case
    monkeypatch.setattr(optimizers.rules, "FUSED", optimizers.rules.FUSED and fused)
    g = np.array([[np.nan, np.inf, -np.inf, 1e-40], [0.0, 1e-3, -2.0, 3e4]], np.float32)
    w0 = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    v = Variable(w0.copy(), "w")
    opt = make()
    with np.errstate(invalid="ignore", over="ignore"):  # the numpy rules meet inf - inf
        for _ in range(3):
            v.grad = g
            opt.apply([v])
        want = reference(w0, [g] * 3)
    np.testing.assert_allclose(v.value, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert not np.isfinite(v.value[0, :3]).any() and np.isfinite(v.value[0, 3:]).all()
    assert np.isfinite(v.value[1]).all()
