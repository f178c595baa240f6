"""Activation, softmax, dropout and softmax cross-entropy kernels and faltung.activations."""
import numpy as np
import pytest

import faltung
from faltung import activations
from faltung.ops import nn
from reference import nn as ref

KINKS = [0.0, 0.5, -3.0, 3.0, 6.0, 2.0]  # where some derivative jumps (relu family, hard_*)

# (kernel name, kernel params, reference params)
CASES = [(k, {}, {}) for k in ref.ELEMENTWISE if k != "relu"] + [
    ("relu", {}, {}),
    ("relu", {"negative_slope": 0.3}, {"negative_slope": 0.3}),
    ("relu", {"max_value": 2.0}, {"max_value": 2.0}),
    ("relu", {"threshold": 0.5}, {"threshold": 0.5}),
    ("relu", {"negative_slope": 0.5, "max_value": 6.0, "threshold": 0.5},
     {"negative_slope": 0.5, "max_value": 6.0, "threshold": 0.5}),
    ("elu", {"alpha": 0.7}, {"alpha": 0.7}),
]
IDS = [name + "".join(f"-{k}{v}" for k, v in p.items()) for name, p, _ in CASES]


def _inputs(shape, seed=0, lo=-5.0, hi=5.0):
    x = np.random.default_rng(seed).uniform(lo, hi, shape)
    for k in KINKS:  # keep finite differences away from kinks
        near = np.abs(x - k) < 1e-3
        x[near] += 2e-3
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params,rparams", CASES, ids=IDS)
def test_activation_forward(name, params, rparams, dtype):
    # 70001 elements: above the OpenMP threshold, and not a multiple of 16
    for shape in [(1,), (3, 7), (70001,)]:
        x = _inputs(shape).astype(dtype)
        y = nn.activation(name, x, **params)
        assert y.dtype == dtype and y.shape == shape
        tol = 2e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(y, ref.ELEMENTWISE[name](x.astype(np.float64), **rparams),
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("name,params,rparams", CASES, ids=IDS)
def test_activation_backward_finite_differences(name, params, rparams):
    x = _inputs((4, 9), seed=1)
    R = np.random.default_rng(2).standard_normal(x.shape)
    y = nn.activation(name, x, **params)
    dx = nn.activation_backward(name, R, x, y, **params)
    num = ref.numeric_grad(lambda v: (nn.activation(name, v, **params) * R).sum(), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-6)


def test_activation_large_inputs_finite():
    x = np.array([-1e4, -100.0, 100.0, 1e4], np.float32)
    for name in ["sigmoid", "softplus", "tanh", "elu", "selu", "gelu", "silu", "mish"]:
        y = nn.activation(name, x)
        assert np.all(np.isfinite(y)), name
    np.testing.assert_allclose(nn.sigmoid(x), [0, 0, 1, 1], atol=1e-30)
    np.testing.assert_allclose(nn.softplus(x), [0, 0, 100, 1e4], rtol=1e-6, atol=1e-40)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((4, 10), -1), ((3, 5, 7), 1), ((2, 3, 4), 0),
                                        ((20000, 5), -1)], ids=["1x1", "4x10", "axis1", "axis0", "big"])
def test_softmax_and_log_softmax_forward(shape, axis, dtype):
    x = (np.random.default_rng(3).standard_normal(shape) * 10).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(nn.softmax(x, axis), ref.softmax(x, axis), rtol=tol, atol=tol)
    np.testing.assert_allclose(nn.log_softmax(x, axis), ref.log_softmax(x, axis), rtol=tol, atol=tol)
    big = np.array([[1e4, 0.0, -1e4]], dtype)
    np.testing.assert_allclose(nn.softmax(big), [[1, 0, 0]])
    np.testing.assert_allclose(nn.log_softmax(big), [[0, -1e4, -2e4]])


@pytest.mark.parametrize("fn", [nn.softmax, nn.log_softmax,
                                lambda x, axis: nn.softmax_backward(x, x, axis),
                                lambda x, axis: nn.log_softmax_backward(x, x, axis)])
def test_softmax_axis_out_of_range_is_refused(fn):
    # found by the fuzzer: axis 2 of a rank-2 array used to wrap around to axis 0
    x = np.ones((2, 3), np.float32)
    for axis in (2, -3):
        with pytest.raises(ValueError, match=f"axis {axis} is out of bounds for an array of rank 2"):
            fn(x, axis)
    with pytest.raises(TypeError):
        fn(x, 1.0)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax_backward_finite_differences(axis):
    x = np.random.default_rng(4).standard_normal((3, 5))
    R = np.random.default_rng(5).standard_normal((3, 5))
    for fwd, bwd in [(nn.softmax, nn.softmax_backward), (nn.log_softmax, nn.log_softmax_backward)]:
        dx = bwd(R, fwd(x, axis), axis)
        num = ref.numeric_grad(lambda v: (fwd(v, axis) * R).sum(), x)
        np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


# -- dropout ----------------------------------------------------------------------------------

def test_dropout_deterministic_and_thread_count_independent():
    x = np.random.default_rng(6).standard_normal((300, 1000)).astype(np.float32)
    n0 = faltung.get_num_threads()
    try:
        faltung.set_num_threads(1)
        y1, m1 = nn.dropout(x, 0.3, seed=1234)
        faltung.set_num_threads(2)
        y2, m2 = nn.dropout(x, 0.3, seed=1234)
    finally:
        faltung.set_num_threads(n0)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    _, m3 = nn.dropout(x, 0.3, seed=1235)
    assert (m3 != m1).mean() > 0.3  # another seed, another mask


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_keep_rate_and_scale(rate):
    x = np.ones(200_000, np.float32)
    y, mask = nn.dropout(x, rate, seed=7)
    assert mask.dtype == np.uint8
    keep = mask.mean()
    assert abs(keep - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / x.size) + 1e-9
    np.testing.assert_allclose(y[mask == 1], 1 / (1 - rate), rtol=1e-6)
    assert np.all(y[mask == 0] == 0)
    dy = np.random.default_rng(8).standard_normal(x.size).astype(np.float32)
    np.testing.assert_allclose(nn.dropout_backward(dy, mask, rate), dy * mask / (1 - rate), rtol=1e-6)


def test_dropout_rate_one_drops_everything_and_noise_shape_broadcasts():
    y, mask = nn.dropout(np.ones((4, 5), np.float32), 1.0, seed=1)
    assert not y.any() and not mask.any()
    x = np.random.default_rng(9).standard_normal((6, 3, 8)).astype(np.float32)
    y, mask = nn.dropout(x, 0.5, seed=3, noise_shape=(6, 1, 8))
    assert mask.shape == (6, 1, 8)
    np.testing.assert_allclose(y, x * mask * 2.0, rtol=1e-6)
    dy = np.ones_like(x)
    np.testing.assert_allclose(nn.dropout_backward(dy, mask, 0.5), np.broadcast_to(mask * 2.0, x.shape))
    with pytest.raises(ValueError, match=r"dropout: expected 0 <= rate <= 1, received rate=1.5"):
        nn.dropout(x, 1.5, seed=1)


# -- softmax cross-entropy ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,K", [(1, 1), (1, 5), (7, 3), (64, 10)], ids=["1x1", "1x5", "7x3", "64x10"])
def test_softmax_xent_matches_reference(B, K, dtype):
    rng = np.random.default_rng(10)
    logits = (rng.standard_normal((B, K)) * 5).astype(dtype)
    labels = rng.integers(0, K, B)
    onehot = np.eye(K)[labels].astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    loss_s, grad_s = nn.softmax_cross_entropy_with_grad(logits, labels, sparse=True, scale=0.5)
    loss_d, grad_d = nn.softmax_cross_entropy_with_grad(logits, onehot, sparse=False, scale=0.5)
    assert loss_s.dtype == grad_s.dtype == dtype and loss_s.shape == (B,) and grad_s.shape == (B, K)
    np.testing.assert_allclose(loss_s, ref.sparse_softmax_xent(logits, labels), rtol=tol, atol=tol)
    np.testing.assert_allclose(loss_d, ref.softmax_xent(logits, onehot), rtol=tol, atol=tol)
    expect = 0.5 * (ref.softmax(logits) - onehot)
    np.testing.assert_allclose(grad_s, expect, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad_d, expect, rtol=tol, atol=tol)


def test_softmax_xent_gradient_finite_differences():
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((5, 4))
    probs = rng.uniform(0, 1, (5, 4))
    probs /= probs.sum(1, keepdims=True)
    labels = np.array([0, 3, 1, 1, 2], np.int32)
    for target, sparse in [(probs, False), (labels, True), (probs * 1.7, False)]:
        _, g = nn.softmax_cross_entropy_with_grad(logits, target, sparse, scale=0.25)
        num = ref.numeric_grad(
            lambda v: 0.25 * nn.softmax_cross_entropy_with_grad(v, target, sparse)[0].sum(), logits)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_softmax_xent_stable_and_label_forms():
    logits = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    loss, grad = nn.softmax_cross_entropy_with_grad(logits, [2], sparse=True)
    np.testing.assert_allclose(loss, [2000.0])
    np.testing.assert_allclose(grad, [[1, 0, -1]])
    loss2, _ = nn.softmax_cross_entropy_with_grad(logits, np.array([[2.0]]), sparse=True)
    np.testing.assert_array_equal(loss, loss2)
    _, none = nn.softmax_cross_entropy_with_grad(logits, [2], sparse=True, need_grad=False)
    assert none is None


def test_softmax_xent_errors():
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"label 4 at index 1 is out of range \[0, 4\)"):
        nn.softmax_cross_entropy_with_grad(logits, [0, 4, 1], sparse=True)
    with pytest.raises(ValueError, match=r"label -1 at index 2 is out of range"):
        nn.softmax_cross_entropy_with_grad(logits, [0, 1, -1], sparse=True)
    with pytest.raises(ValueError, match=r"expected `labels` of shape \(3,\), received shape \(2,\)"):
        nn.softmax_cross_entropy_with_grad(logits, [0, 1], sparse=True)
    with pytest.raises(ValueError, match=r"expected `labels` of shape \(3, 4\), received shape \(3, 5\)"):
        nn.softmax_cross_entropy_with_grad(logits, np.zeros((3, 5)), sparse=False)
    with pytest.raises(ValueError, match="non-integer"):
        nn.softmax_cross_entropy_with_grad(logits, [0.5, 1, 2], sparse=True)


# -- faltung.activations --------------------------------------------------------------------

def test_activations_get_and_interface():
    x = np.linspace(-3, 3, 13).astype(np.float32)
    for name in ["relu", "sigmoid", "tanh", "softmax", "linear", "gelu", "swish", "log_softmax"]:
        act = activations.get(name)
        y = act.forward(x)
        dx = act.backward(np.ones_like(x), x, y)
        assert y.shape == dx.shape == x.shape and act.name in (name, "silu")
        assert activations.serialize(act) == act.name
    assert activations.get(None).name == "linear"
    assert activations.get(activations.relu).name == "relu"
    assert activations.get({"class_name": "function", "config": "tanh"}).name == "tanh"
    act = activations.get("tanh")
    assert activations.get(act) is act


def test_activations_keras_examples():
    x = np.array([-10, -5, 0.0, 5, 10], np.float32)
    np.testing.assert_array_equal(activations.relu(x), [0, 0, 0, 5, 10])
    np.testing.assert_array_equal(activations.relu(x, negative_slope=0.5), [-5, -2.5, 0, 5, 10])
    np.testing.assert_array_equal(activations.relu(x, max_value=5.0), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(activations.relu(x, threshold=5.0), [0, 0, 0, 0, 10])
    np.testing.assert_allclose(activations.leaky_relu(x), [-2, -1, 0, 5, 10], rtol=1e-6)
    np.testing.assert_allclose(activations.relu6(x), [0, 0, 0, 5, 6])
    # Keras's activations.gelu defaults to the exact form; ops.gelu to the tanh form
    g = np.array([1.0], np.float32)
    np.testing.assert_allclose(activations.gelu(g), ref.ELEMENTWISE["gelu"](g), rtol=1e-6)
    np.testing.assert_allclose(activations.gelu(g, approximate=True),
                               ref.ELEMENTWISE["gelu_approximate"](g), rtol=1e-6)
    np.testing.assert_allclose(nn.gelu(g), ref.ELEMENTWISE["gelu_approximate"](g), rtol=1e-6)
    np.testing.assert_allclose(activations.softmax(np.ones((2, 4))), np.full((2, 4), 0.25))
    assert activations.tanh([0.5]).dtype == np.float32


def test_activations_unknown_name():
    with pytest.raises(ValueError, match=r"Could not interpret activation function identifier: "
                                         r"'relux'\. Expected one of \['elu', .*'relu'"):
        activations.get("relux")
    with pytest.raises(ValueError, match="forward"):
        activations.get(lambda x: x)
    with pytest.raises(ValueError, match=r"Unknown activation kernel 'nope'. Expected one of: linear, relu"):
        nn.activation("nope", np.zeros(3))


def test_float32_fast_exp_tanh_erf_accuracy():
    # float32 kernels use faltung's own vectorizable exp / tanh / erf (float64 uses libm)
    x = np.linspace(-87.0, 88.7, 200_001).astype(np.float32)
    e = nn.exponential(x)
    np.testing.assert_allclose(e, np.exp(x.astype(np.float64)), rtol=3e-7)
    np.testing.assert_array_equal(nn.exponential(np.array([89, 1e4, np.inf, -88, -1e4, -np.inf], np.float32)),
                                  [np.inf, np.inf, np.inf, 0, 0, 0])
    assert np.isnan(nn.exponential(np.array([np.nan], np.float32)))[0]
    t = np.linspace(-20, 20, 200_001).astype(np.float32)
    np.testing.assert_allclose(nn.tanh(t), np.tanh(t.astype(np.float64)), rtol=4e-7, atol=1e-7)
    np.testing.assert_allclose(nn.gelu(t, approximate=False), ref.ELEMENTWISE["gelu"](t.astype(np.float64)),
                               rtol=1e-6, atol=2e-6)
    s = np.linspace(-30, 30, 100_001).astype(np.float32)
    np.testing.assert_allclose(nn.softplus(s), np.logaddexp(0, s.astype(np.float64)), rtol=5e-7)


@pytest.mark.parametrize("name, scale", [("elu", 1.0), ("selu", 1.0507009873554805 * 1.6732632423543772)])
def test_elu_and_selu_float32_relative_accuracy_near_zero(name, scale):
    """The negative side is a expm1(x): near 0 it must keep its relative precision, as PyTorch's
    expm1 does (exp(x) - 1 in float32 made x = -1e-6 come out 5% off)."""
    x = -np.logspace(-9, 1.5, 20001).astype(np.float32)
    got = np.asarray(getattr(nn, name)(x)).astype(np.float64)
    want = scale * np.expm1(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=5e-7, atol=0)
