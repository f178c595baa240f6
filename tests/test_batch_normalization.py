"""BatchNormalization: train vs inference, moving statistics, backward vs finite
differences, frozen layer, weights order, errors."""
import numpy as np
import pytest

import faltung.layers as L
from faltung import _core
from faltung.ops import normalization as N
from tests.reference import pooling as ref
from tests.reference.gradcheck import numeric_grad

rng = np.random.default_rng(2)
SHAPES = [(4, 3), (2, 5, 3), (2, 3, 5, 4), (1, 3, 3, 2), (3, 1, 1, 7)]
IDS = ["dense-4x3", "seq-2x5x3", "img-2x3x5x4", "batch1-img", "img-1x1"]


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_train_forward_matches_reference(shape):
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    c = shape[-1]
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    y, mean, var, inv_std = N.batch_norm_train(x, gamma, beta, 1e-3)
    y_ref, m_ref, v_ref = ref.batch_norm_train(x.astype(np.float64), gamma, beta, 1e-3)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean, m_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, v_ref, rtol=1e-5, atol=1e-6)  # biased
    y_naive = _core.batch_norm_train_f32(x, gamma, beta, 1e-3, True)[0]
    np.testing.assert_allclose(y, y_naive, rtol=1e-5, atol=1e-5)


def test_large_parallel_moments_match_numpy():
    x = (rng.standard_normal((64, 16, 16, 8)) + 5).astype(np.float32)
    _, mean, var, _ = N.batch_norm_train(x)
    np.testing.assert_allclose(mean, x.mean((0, 1, 2), dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(var, x.var((0, 1, 2), dtype=np.float64), rtol=1e-5)
    # Large offset, small spread: the shifted one-pass sums must not cancel.
    x = (1e4 + 0.01 * rng.standard_normal((64, 16, 16, 8))).astype(np.float32)
    _, mean, var, _ = N.batch_norm_train(x)
    np.testing.assert_allclose(var, x.var((0, 1, 2), dtype=np.float64), rtol=1e-4)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_backward_matches_finite_differences(shape, affine):
    x = rng.standard_normal(shape)
    c = shape[-1]
    gamma = rng.standard_normal(c) if affine else None
    beta = rng.standard_normal(c) if affine else None
    y, mean, var, inv_std = N.batch_norm_train(x, gamma, beta, 1e-3)
    r = rng.standard_normal(shape)
    dx, dg, db = N.batch_norm_train_backward(r, x, mean, inv_std, gamma, need_dgamma=affine, need_dbeta=affine)
    f = lambda v: N.batch_norm_train(v, gamma, beta, 1e-3)[0]
    np.testing.assert_allclose(dx, numeric_grad(f, x, r), rtol=1e-5, atol=1e-7)
    if affine:
        np.testing.assert_allclose(dg, numeric_grad(lambda g: N.batch_norm_train(x, g, beta, 1e-3)[0], gamma.copy(), r),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(db, r.reshape(-1, c).sum(0), rtol=1e-10)
    dx_naive = _core.batch_norm_backward_f64(r, x, mean, inv_std, gamma, True, True, True, True)[0]
    np.testing.assert_allclose(dx, dx_naive, rtol=1e-9, atol=1e-12)


def test_layer_weights_order_and_moving_update():
    layer = L.BatchNormalization(momentum=0.9)
    x = (rng.standard_normal((8, 4, 4, 3)) * 2 + 3).astype(np.float32)
    layer.build((None, 4, 4, 3))
    assert [w.name.split("/")[-1] for w in layer.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.trainable for w in layer.weights] == [True, True, False, False]
    assert len(layer.trainable_weights) == 2 and len(layer.non_trainable_weights) == 2
    y = layer(x, training=True)
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    np.testing.assert_allclose(layer.moving_mean.value, 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.value, 0.9 + 0.1 * var, rtol=1e-5)
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0, atol=1e-5)
    # Inference uses the moving statistics.
    y_inf = layer(x, training=False)
    mm, mv = layer.moving_mean.value, layer.moving_variance.value
    np.testing.assert_allclose(y_inf, (x - mm) / np.sqrt(mv + 1e-3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.value, mm)  # no update at inference


def test_layer_backward_sets_grads():
    layer = L.BatchNormalization()
    x = rng.standard_normal((6, 5, 4)).astype(np.float32)
    y = layer(x, training=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    assert dx.shape == x.shape and dx.dtype == np.float32
    np.testing.assert_allclose(layer.beta.grad, dy.sum((0, 1)), rtol=1e-5)
    assert layer.gamma.grad.shape == (4,) and layer.moving_mean.grad is None
    assert layer.backward(dy, need_dx=False) is None


def test_frozen_layer_runs_in_inference_mode():
    layer = L.BatchNormalization()
    x = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    layer.build(x.shape)
    layer.moving_mean.assign([0.5, -1.0])
    layer.moving_variance.assign([2.0, 0.5])
    layer.trainable = False
    y = layer(x, training=True)
    np.testing.assert_allclose(y, (x - [0.5, -1.0]) / np.sqrt(np.array([2.0, 0.5]) + 1e-3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.value, [0.5, -1.0])  # not updated
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy), dy / np.sqrt(np.array([2.0, 0.5]) + 1e-3), rtol=1e-5)
    assert layer.gamma.grad is None and layer.trainable_weights == []


def test_axis_other_than_last():
    layer = L.BatchNormalization(axis=1)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    y = layer(x, training=True)
    assert layer.gamma.shape == (3,)
    np.testing.assert_allclose(y.mean((0, 2)), 0, atol=1e-5)
    dx = layer.backward(rng.standard_normal(y.shape).astype(np.float32))
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx.sum((0, 2)), 0, atol=1e-4)


def test_center_scale_false_and_config():
    layer = L.BatchNormalization(center=False, scale=False)
    layer.build((None, 3))
    assert [w.name.split("/")[-1] for w in layer.weights] == ["moving_mean", "moving_variance"]
    cfg = L.BatchNormalization().get_config()
    assert cfg["momentum"] == 0.99 and cfg["epsilon"] == 1e-3 and cfg["axis"] == -1
    assert cfg["center"] and cfg["scale"] and not cfg["synchronized"]


def test_errors():
    layer = L.BatchNormalization(name="bn_err")
    layer(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r'layer "bn_err".*axis -1 of size 3, found shape=\(2, 4, 5\)'):
        layer(np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"Layer bn_axis: axis=3 is out of range for an input of rank 3"):
        L.BatchNormalization(axis=3, name="bn_axis")(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"backward\(\) needs a preceding forward"):
        L.BatchNormalization().backward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"batch_norm_backward: expected `dy` of shape \(2, 3\), received shape \(2, 4\)"):
        _core.batch_norm_backward_f32(np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32),
                                      np.zeros(3, np.float32), np.ones(3, np.float32), None)
