"""Conv layers: Keras output shapes, param counts, weights, forward vs reference,
backward vs central differences, Keras's error messages."""
import numpy as np
import pytest

from faltung import activations, layers
from reference import conv as R

rng = np.random.default_rng(7)


def keras_out(n, k, s, d, padding):
    """Keras's compute_conv_output_shape formula for one dim ("full": faltung's)."""
    if padding == "valid":
        return (n - d * (k - 1) - 1) // s + 1
    if padding == "full":
        return (n + (k - 1) * d - 1) // s + 1
    return (n - 1) // s + 1


@pytest.mark.parametrize("n,k,s,d,padding", [
    (28, 3, 1, 1, "valid"), (28, 3, 2, 1, "same"), (7, 4, 3, 1, "valid"), (10, 3, 1, 3, "same"),
    (9, 5, 2, 1, "valid"), (6, 3, 1, 2, "full"), (1, 1, 1, 1, "same")])
def test_conv2d_output_shape_matches_keras_formula(n, k, s, d, padding):
    layer = layers.Conv2D(5, k, strides=s, padding=padding, dilation_rate=d)
    o = keras_out(n, k, s, d, padding)
    assert layer.compute_output_shape((None, n, n + 1, 3)) == (None, o, keras_out(n + 1, k, s, d, padding), 5)
    y = layer(rng.standard_normal((2, n, n + 1, 3)).astype(np.float32))
    assert y.shape == (2, o, keras_out(n + 1, k, s, d, padding), 5)


@pytest.mark.parametrize("n,k,s,d,padding", [(10, 3, 1, 1, "causal"), (10, 3, 1, 2, "causal"), (10, 3, 2, 1, "causal"), (11, 4, 3, 1, "same"), (8, 3, 1, 1, "valid")])
def test_conv1d_output_shape_matches_keras_formula(n, k, s, d, padding):
    layer = layers.Conv1D(4, k, strides=s, padding=padding, dilation_rate=d)
    o = keras_out(n, k, s, d, padding)
    assert layer.compute_output_shape((None, n, 2)) == (None, o, 4)
    assert layer(rng.standard_normal((3, n, 2))).shape == (3, o, 4)


def test_param_counts_and_weight_shapes():
    c = layers.Conv2D(32, (3, 3))
    c.build((None, 28, 28, 3))
    assert c.count_params() == 896 and [w.shape for w in c.weights] == [(3, 3, 3, 32), (32,)]
    g = layers.Conv2D(8, 3, groups=2, use_bias=False)
    g.build((None, 9, 9, 4))
    assert [w.shape for w in g.weights] == [(3, 3, 2, 8)]
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2)
    dw.build((None, 8, 8, 4))
    assert [w.shape for w in dw.weights] == [(3, 3, 4, 2), (8,)]
    sp = layers.SeparableConv2D(16, 3, depth_multiplier=2)
    sp.build((None, 8, 8, 4))
    assert [w.shape for w in sp.weights] == [(3, 3, 4, 2), (1, 1, 8, 16), (16,)]
    assert sp.count_params() == 72 + 128 + 16
    c1 = layers.Conv1D(6, 5)
    c1.build((None, 20, 3))
    assert c1.count_params() == 5 * 3 * 6 + 6
    assert layers.Convolution2D is layers.Conv2D and layers.SeparableConvolution2D is layers.SeparableConv2D


def _num_grad(f, a, eps=1e-3):
    g = np.zeros(a.shape)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


LAYERS = [
    ("Conv2D-relu-same-s2", lambda: layers.Conv2D(3, 3, strides=2, padding="same", activation="relu"), (2, 6, 5, 2)),
    ("Conv2D-tanh-groups2", lambda: layers.Conv2D(4, (2, 3), groups=2, activation="tanh"), (1, 5, 6, 4)),
    ("Conv2D-1x1-nobias", lambda: layers.Conv2D(3, 1, use_bias=False), (2, 3, 4, 2)),
    ("Conv1D-causal-d2", lambda: layers.Conv1D(3, 3, padding="causal", dilation_rate=2), (2, 9, 2)),
    ("DepthwiseConv2D-m2", lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (2, 5, 5, 3)),
    ("DepthwiseConv1D", lambda: layers.DepthwiseConv1D(3, activation="sigmoid"), (2, 7, 3)),
    ("SeparableConv2D-relu", lambda: layers.SeparableConv2D(4, 3, activation="relu", depth_multiplier=2), (1, 6, 6, 2)),
    ("SeparableConv1D-s2", lambda: layers.SeparableConv1D(3, 2, strides=2, padding="same"), (2, 7, 2)),
]


@pytest.mark.parametrize("make,xs", [c[1:] for c in LAYERS], ids=[c[0] for c in LAYERS])
def test_layer_backward_vs_central_differences(make, xs):
    layer = make()
    x = rng.standard_normal(xs).astype(np.float32)
    layer(x)
    act = layer.activation
    for _ in range(20):  # keep pre-activations away from relu's kink (finite differences)
        layer.activation = activations.get(None)
        z = layer.forward(x)
        layer.activation = act
        if act.name != "relu" or np.abs(z).min() > 2e-2:
            break
        x = rng.standard_normal(xs).astype(np.float32)
    y = layer(x, training=True)
    assert isinstance(layer.algorithm, str) and layer.algorithm
    Rw = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(Rw)
    assert dx.shape == x.shape and dx.dtype == np.float32

    def loss():
        return float((layer.forward(x).astype(np.float64) * Rw).sum())

    tol = dict(rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(dx, _num_grad(loss, x), **tol)
    for w in layer.weights:
        assert w.grad.shape == w.shape and w.grad.dtype == np.float32
        np.testing.assert_allclose(w.grad, _num_grad(loss, w.value), **tol, err_msg=w.name)


def test_layer_forward_matches_reference_and_records_algorithm():
    c = layers.Conv2D(4, 3, padding="same", dilation_rate=2, activation="relu")
    x = rng.standard_normal((2, 8, 7, 3)).astype(np.float32)
    y = c(x)
    assert c.algorithm == "im2col"
    ref = np.maximum(R.conv(x, c.kernel.value, c.bias.value, 1, "same", 2), 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    forced = layers.Conv2D(4, 3, padding="same", dilation_rate=2, algorithm="reference")
    forced.build((None, 8, 7, 3))
    forced.set_weights(c.get_weights())
    np.testing.assert_allclose(forced(x), R.conv(x, c.kernel.value, c.bias.value, 1, "same", 2),
                               rtol=1e-4, atol=1e-5)
    assert forced.algorithm == "reference"
    p = layers.Conv2D(2, 1)
    p(x)
    assert p.algorithm == "gemm1x1"


def test_backward_skips_dx_and_frozen_weights():
    c = layers.Conv2D(2, 3)
    x = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)
    y = c(x, training=True)
    assert c.backward(np.ones_like(y), need_dx=False) is None and c.kernel.grad is not None
    f = layers.Conv2D(2, 3, trainable=False)
    f(x, training=True)
    assert f.backward(np.ones_like(y)).shape == x.shape and f.kernel.grad is None


def test_get_config_keys():
    cfg = layers.Conv2D(8, 3, strides=2, padding="same").get_config()
    for key in ["name", "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
                "activation", "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer",
                "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint"]:
        assert key in cfg
    assert cfg["kernel_size"] == (3, 3) and cfg["strides"] == (2, 2) and cfg["data_format"] == "channels_last"
    assert "depth_multiplier" in layers.DepthwiseConv2D(3).get_config()
    assert "pointwise_initializer" in layers.SeparableConv2D(4, 3).get_config()


# -- errors (Keras wording) --------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=0, kernel_size=3), r"Invalid value for argument `filters`. Expected a strictly positive value. "
                                     r"Received filters=0"),
    (dict(filters=-2, kernel_size=3), "Received filters=-2"),
    (dict(filters=4, kernel_size=0), r"The `kernel_size` argument must be a tuple of 2 integers"),
    (dict(filters=4, kernel_size=(3, 3, 3)), r"The `kernel_size` argument must be a tuple of 2 integers"),
    (dict(filters=4, kernel_size=3, strides=0), r"The `strides` argument must be a tuple"),
    (dict(filters=4, kernel_size=3, strides=2, dilation_rate=2), r"`strides > 1` not supported in conjunction"),
    (dict(filters=5, kernel_size=3, groups=2), r"The number of filters must be evenly divisible by the number of "
                                               r"groups. Received: groups=2, filters=5"),
    (dict(filters=4, kernel_size=3, groups=0), r"The number of groups must be a positive integer"),
    (dict(filters=4, kernel_size=3, padding="causal"), r"The `padding` argument must be one of"),
    (dict(filters=4, kernel_size=3, data_format="channels_first"), r"only data_format='channels_last'"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.Conv2D(**kwargs)


def test_depthwise_and_separable_constructor_errors():
    with pytest.raises(ValueError, match="Received depth_multiplier=0"):
        layers.DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match="Received filters=0"):
        layers.SeparableConv2D(0, 3)


def test_build_and_call_errors():
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        layers.Conv2D(4, 5)(np.ones((1, 3, 3, 1), np.float32))
    with pytest.raises(ValueError, match="input channels must be evenly divisible by the number of groups"):
        layers.Conv2D(4, 3, groups=2).build((None, 8, 8, 3))
    c = layers.Conv2D(4, 3)
    c(np.ones((1, 6, 6, 3), np.float32))
    with pytest.raises(ValueError, match=r'layer "conv2d.*expected axis -1 of input shape to have value 3, but '
                                         r"received input with shape \(1, 6, 6, 2\)"):
        c(np.ones((1, 6, 6, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected min_ndim=4, found ndim=3"):
        layers.Conv2D(4, 3)(np.ones((6, 6, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected min_ndim=3, found ndim=2"):
        layers.Conv1D(4, 3)(np.ones((6, 3), np.float32))
    with pytest.raises(ValueError, match="input sizes must be positive"):
        layers.Conv2D(4, 1).build((None, 0, 5, 3))
    y = c(np.ones((1, 6, 6, 3), np.float32), training=True)
    with pytest.raises(ValueError, match=r"expected an output gradient of shape \(1, 4, 4, 4\)"):
        c.backward(np.ones((1, 4, 4, 3), np.float32))
    assert y.shape == (1, 4, 4, 4)
