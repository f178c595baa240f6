"""Dense, Activation, Identity, Highway, activation layers, Dropout, Flatten, Reshape.

Layers compute in float32; their gradients are checked against float64 central
differences of the numpy reference (tests/reference/nn.py) with float32 tolerances.
"""
import numpy as np
import pytest

import faltung
from faltung import layers, utils
from reference import nn as ref


def _fd_check(layer, x, ref_fn, weights=(), rtol=2e-3, atol=2e-4):
    """layer.backward vs float64 finite differences of sum(ref_fn(x, *weights) * R)."""
    y = layer(x.astype(np.float32), training=True)
    R = np.random.default_rng(99).standard_normal(y.shape)
    dx = layer.backward(R.astype(np.float32))
    vals = [w.value.astype(np.float64) for w in weights]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(dx, ref.numeric_grad(lambda v: (ref_fn(v, *vals) * R).sum(), x64),
                               rtol=rtol, atol=atol)
    for i, w in enumerate(weights):
        def f(v, i=i):
            vs = list(vals)
            vs[i] = v
            return (ref_fn(x64, *vs) * R).sum()
        assert w.grad.dtype == np.float32 and w.grad.shape == w.shape
        np.testing.assert_allclose(w.grad, ref.numeric_grad(f, vals[i]), rtol=rtol, atol=atol)


# -- Dense ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 3), (5, 7), (2, 3, 4)], ids=["B1", "B5", "rank3"])
@pytest.mark.parametrize("activation", [None, "tanh", "relu", "softmax"])
def test_dense_forward_backward(shape, activation):
    d = layers.Dense(6, activation=activation)
    x = np.random.default_rng(0).standard_normal(shape)
    act = {None: lambda z: z, "tanh": np.tanh, "relu": ref.relu, "softmax": ref.softmax}[activation]
    y = d(x.astype(np.float32))
    assert y.shape == shape[:-1] + (6,) and y.dtype == np.float32
    np.testing.assert_allclose(y, act(ref.dense(x, d.kernel.value, d.bias.value)), rtol=1e-4, atol=1e-5)
    _fd_check(d, x, lambda v, k, b: act(ref.dense(v, k, b)), [d.kernel, d.bias])


def test_dense_weights_config_and_flags():
    d = layers.Dense(4, use_bias=False, kernel_regularizer="l2", name="fc")
    d.build((None, 3))
    assert [w.name for w in d.weights] == ["fc/kernel"] and d.kernel.shape == (3, 4)
    assert d.kernel.regularizer is not None
    cfg = d.get_config()
    assert cfg["units"] == 4 and cfg["activation"] == "linear" and cfg["use_bias"] is False
    x = np.ones((2, 3), np.float32)
    d(x, training=True)
    assert d.backward(np.ones((2, 4), np.float32), need_dx=False) is None
    assert d.kernel.grad.shape == (3, 4)
    frozen = layers.Dense(2, trainable=False)
    frozen(x, training=True)
    frozen.backward(np.ones((2, 2), np.float32))
    assert frozen.kernel.grad is None and frozen.bias.grad is None
    assert layers.Dense(3, input_shape=(5,)).input_shape_arg == (None, 5)


def test_dense_errors():
    d = layers.Dense(2, name="my_dense")
    d(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match=r'Input 0 of layer "my_dense" is incompatible with the layer: '
                                         r"expected axis -1 of input shape to have value 4, but "
                                         r"received input with shape \(3, 5\)"):
        d(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected min_ndim=2, found ndim=1"):
        layers.Dense(2)(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"Received an invalid value for `units`, expected a positive "
                                         r"integer. Received: units=0"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: 'relu2'"):
        layers.Dense(2, activation="relu2")


# -- Activation, Identity, Highway ---------------------------------------------------------

def test_activation_and_identity_layers():
    x = np.random.default_rng(1).standard_normal((3, 5))
    a = layers.Activation("softmax")
    np.testing.assert_allclose(a(x.astype(np.float32)), ref.softmax(x), rtol=1e-5, atol=1e-6)
    assert a.get_config()["activation"] == "softmax"
    _fd_check(layers.Activation("softmax"), x, ref.softmax)
    _fd_check(layers.Activation("gelu"), x, ref.ELEMENTWISE["gelu"])
    ident = layers.Identity()
    assert ident(x.astype(np.float32)) is not None
    np.testing.assert_array_equal(ident(x.astype(np.float32)), x.astype(np.float32))
    np.testing.assert_array_equal(ident.backward(x), x)


def _highway_ref(x, k, b, tk, tb, act=lambda z: z):
    t = 1 / (1 + np.exp(-(ref.dense(x, tk, tb))))
    return act(ref.dense(x, k, b)) * t + x * (1 - t)


def test_highway():
    hw = layers.Highway()
    x = np.random.default_rng(2).standard_normal((4, 6))
    y = hw(x.astype(np.float32))
    assert [w.name.split("/")[1] for w in hw.weights] == ["kernel", "bias", "transform_kernel",
                                                          "transform_bias"]
    np.testing.assert_array_equal(hw.transform_bias.value, np.full(6, -2.0, np.float32))
    ws = [w.value for w in hw.weights]
    np.testing.assert_allclose(y, _highway_ref(x, *ws), rtol=1e-4, atol=1e-5)
    hw.transform_bias.assign(np.random.default_rng(3).standard_normal(6))
    _fd_check(hw, x, _highway_ref, hw.weights)
    hw_tanh = layers.Highway(activation="tanh")
    hw_tanh(x[:, :3].astype(np.float32))
    _fd_check(hw_tanh, x[:, :3].copy(),
              lambda v, k, b, tk, tb: _highway_ref(v, k, b, tk, tb, act=np.tanh), hw_tanh.weights)


# -- activation layers ---------------------------------------------------------------------

@pytest.mark.parametrize("layer,fn", [
    (lambda: layers.ReLU(), ref.relu),
    (lambda: layers.ReLU(max_value=1.5, negative_slope=0.2, threshold=0.3),
     lambda v: ref.relu(v, 0.2, 1.5, 0.3)),
    (lambda: layers.LeakyReLU(), lambda v: ref.relu(v, negative_slope=0.3)),
    (lambda: layers.ELU(alpha=0.5), lambda v: ref.ELEMENTWISE["elu"](v, alpha=0.5)),
    (lambda: layers.Softmax(axis=1), lambda v: ref.softmax(v, axis=1)),
], ids=["ReLU", "ReLU-params", "LeakyReLU", "ELU", "Softmax-axis1"])
def test_activation_layers(layer, fn):
    x = np.random.default_rng(4).uniform(-3, 3, (2, 4, 5))
    x[np.abs(x - 0.3) < 1e-2] += 0.05
    x[np.abs(x - 1.5) < 1e-2] += 0.05
    x[np.abs(x) < 1e-2] += 0.05
    np.testing.assert_allclose(layer()(x.astype(np.float32)), fn(x), rtol=1e-5, atol=1e-6)
    _fd_check(layer(), x, fn)


def test_activation_layer_errors_and_config():
    assert layers.LeakyReLU().get_config()["negative_slope"] == 0.3
    assert layers.ReLU(max_value=6).get_config()["max_value"] == 6
    with pytest.raises(ValueError, match=r"max_value of a ReLU layer cannot be a negative value. "
                                         r"Received: max_value=-1"):
        layers.ReLU(max_value=-1)
    with pytest.raises(ValueError, match=r"negative_slope of a ReLU layer cannot be None"):
        layers.ReLU(negative_slope=-0.1)
    with pytest.raises(ValueError, match=r"The negative_slope value of a Leaky ReLU layer"):
        layers.LeakyReLU(negative_slope=-1)


def test_prelu():
    p = layers.PReLU(alpha_initializer="random_normal", shared_axes=[1])
    x = np.random.default_rng(5).standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-2] += 0.05
    p(x.astype(np.float32))
    assert p.alpha.shape == (1, 5)
    _fd_check(p, x, lambda v, a: np.maximum(v, 0) + a * np.minimum(v, 0), [p.alpha])


def test_prelu_on_rank_1_inputs_has_a_scalar_alpha_and_trains():
    # found by the API fuzzer: alpha became shape (1,) (Keras: ()) and backward raised IndexError
    model = faltung.Sequential([layers.Input(()), layers.PReLU(alpha_initializer=faltung.initializers.Constant(0.5))])
    assert model.layers[-1].alpha.shape == ()
    x = np.array([-2.0, 1.0, -4.0], np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), [-1.0, 1.0, -2.0])
    model.compile("sgd", "mse")
    model.fit(x, np.zeros(3, np.float32), batch_size=3, epochs=1, verbose=0)
    # d mse / d alpha = mean(2 * (a x) * x) over the negatives = 2 * 0.5 * (4 + 16) / 3
    np.testing.assert_allclose(model.layers[-1].alpha.value, 0.5 - 0.01 * 20 / 3, rtol=1e-5)

# -- Dropout -------------------------------------------------------------------------------

def test_dropout_inference_is_identity_and_training_drops():
    x = np.ones((200, 500), np.float32)
    d = layers.Dropout(0.25)
    np.testing.assert_array_equal(d(x), x)
    np.testing.assert_array_equal(d.backward(x), x)
    y = d(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    dy = np.random.default_rng(6).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(d.backward(dy), dy * kept / 0.75, rtol=1e-6)


def test_dropout_reproducible_with_set_random_seed_and_threads():
    x = np.ones((300, 300), np.float32)
    n0 = faltung.get_num_threads()
    try:
        faltung.set_num_threads(1)
        utils.set_random_seed(42)
        a = layers.Dropout(0.5)(x, training=True)
        faltung.set_num_threads(2)
        utils.set_random_seed(42)
        b = layers.Dropout(0.5)(x, training=True)
    finally:
        faltung.set_num_threads(n0)
    np.testing.assert_array_equal(a, b)
    d = layers.Dropout(0.5)
    assert not np.array_equal(d(x, training=True), d(x, training=True))  # fresh mask each call
    e, f = layers.Dropout(0.5, seed=7), layers.Dropout(0.5, seed=7)
    np.testing.assert_array_equal(e(x, training=True), f(x, training=True))


def test_dropout_noise_shape_and_errors():
    x = np.ones((4, 10, 6), np.float32)
    d = layers.Dropout(0.5, noise_shape=(None, 1, 6), seed=1)
    y = d(x, training=True)
    assert np.all(y == y[:, :1, :])  # same mask over axis 1
    assert d.get_config()["noise_shape"] == (None, 1, 6)
    with pytest.raises(ValueError, match=r"Invalid value received for argument `rate`. Expected a float "
                                         r"value between 0 and 1. Received: rate=1.5"):
        layers.Dropout(1.5)
    with pytest.raises(ValueError, match=r"Received negative or zero value at index 1: 0"):
        layers.Dropout(0.5, noise_shape=(2, 0))


# -- Flatten, Reshape ------------------------------------------------------------------------

def test_flatten():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    f = layers.Flatten()
    np.testing.assert_array_equal(f(x, training=True), x.reshape(2, -1))
    assert f.compute_output_shape((None, 3, 4, 5)) == (None, 60)
    assert f.compute_output_shape((None,)) == (None, 1)
    np.testing.assert_array_equal(f.backward(x.reshape(2, -1)), x)
    fc = layers.Flatten(data_format="channels_first")
    y = fc(x, training=True)
    np.testing.assert_array_equal(y, np.transpose(x, (0, 2, 3, 1)).reshape(2, -1))
    np.testing.assert_array_equal(fc.backward(y), x)


def test_reshape():
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    r = layers.Reshape((-1, 2, 2))
    assert r.compute_output_shape((None, 12)) == (None, 3, 2, 2)
    y = r(x, training=True)
    assert y.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(r.backward(y), x)
    assert r.get_config()["target_shape"] == (-1, 2, 2)
    with pytest.raises(ValueError, match=r"The total size of the tensor must be unchanged. Received: "
                                         r"input_shape=\(12,\), target_shape=\(5, 2\)"):
        layers.Reshape((5, 2))(x)
    with pytest.raises(ValueError, match=r"input size cannot by divided by the specified dimensions in "
                                         r"target_shape. Received: input_shape=\(12,\), target_shape=\(-1, 5\)"):
        layers.Reshape((-1, 5))(x)
    with pytest.raises(ValueError, match=r"must not contain more than one `-1` value"):
        layers.Reshape((-1, -1))
