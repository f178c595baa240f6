"""RepeatVector and Permute: forward vs loop references (tests/reference/reshaping.py),
backward vs float64 central differences, shapes, errors, configs, and Keras when present."""
import numpy as np
import pytest

import faltung
from faltung import layers
from faltung.layers import Input
from reference import reshaping as ref
from reference.gradcheck import numeric_grad


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check_grad(layer, x, ref_fn):
    y = layer(x, training=True)
    R = np.random.default_rng(7).standard_normal(y.shape)
    dx = layer.backward(R.astype(np.float32))
    assert dx.shape == x.shape and dx.dtype == np.float32
    np.testing.assert_allclose(dx, numeric_grad(ref_fn, x.astype(np.float64), R),
                               rtol=1e-4, atol=1e-5)


# -- RepeatVector ----------------------------------------------------------------------

@pytest.mark.parametrize("shape,n", [((2, 5), 3), ((1, 4), 1), ((3, 1), 4), ((2, 3), 0)],
                         ids=["B2-n3", "B1-n1", "F1-n4", "n0"])
def test_repeat_vector_forward_backward(shape, n):
    x = rand(shape)
    layer = layers.RepeatVector(n)
    y = layer(x)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, ref.repeat_vector(x, n))
    check_grad(layer, x, lambda v: ref.repeat_vector(v, n))
    assert layer(Input(shape[1:])).shape == (None, n, shape[1])


def test_repeat_vector_errors_and_config():
    with pytest.raises(ValueError, match=r'"rv".*expected ndim=2, found ndim=3'):
        layers.RepeatVector(2, name="rv")(Input((3, 4)))
    layer = layers.RepeatVector(2)
    layer(rand((2, 3)))
    with pytest.raises(ValueError, match="expected ndim=2, found ndim=3"):
        layer(rand((2, 3, 4)))
    assert layer(rand((5, 7))).shape == (5, 2, 7)  # Keras's input spec fixes only the rank
    with pytest.raises(TypeError, match="Expected an integer value for `n`"):
        layers.RepeatVector(2.5)
    with pytest.raises(ValueError, match="non-negative"):
        layers.RepeatVector(-1)
    cfg = layers.RepeatVector(np.int64(3)).get_config()
    assert cfg["n"] == 3 and set(cfg) == {"name", "trainable", "dtype", "n"}
    assert layers.RepeatVector.from_config(cfg).get_config() == cfg


# -- Permute -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape,dims", [((2, 3, 4), (2, 1)), ((1, 2, 3, 4), (3, 1, 2)),
                                        ((2, 3, 4, 5), (1, 3, 2)), ((3, 4), (1,))],
                         ids=["swap", "B1-cycle", "inner-swap", "identity"])
def test_permute_forward_backward(shape, dims):
    x = rand(shape)
    layer = layers.Permute(dims)
    y = layer(x)
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(y, ref.permute(x, dims))
    check_grad(layer, x, lambda v: ref.permute(v, dims))
    assert layer(Input(shape[1:])).shape == (None,) + y.shape[1:]


def test_permute_keras_example_errors_and_config():
    assert layers.Permute((2, 1))(Input((10, 64))).shape == (None, 64, 10)
    with pytest.raises(ValueError, match=r"consecutive and start from 1. Received dims=\(0, 1\)"):
        layers.Permute((0, 1))
    with pytest.raises(ValueError, match="consecutive"):
        layers.Permute((1, 3))
    with pytest.raises(ValueError, match=r'"perm".*expected ndim=3, found ndim=4'):
        layers.Permute((2, 1), name="perm")(Input((2, 3, 4)))
    layer = layers.Permute((2, 1))
    layer(rand((2, 3, 4)))
    assert layer(rand((2, 5, 6))).shape == (2, 6, 5)
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=2"):
        layer(rand((2, 3)))
    cfg = layers.Permute([3, 1, 2]).get_config()
    assert cfg["dims"] == (3, 1, 2) and set(cfg) == {"name", "trainable", "dtype", "dims"}
    assert layers.Permute.from_config(cfg).get_config() == cfg


def test_permute_and_repeat_vector_in_a_model():
    a = Input((4,))
    h = layers.RepeatVector(3)(layers.Dense(5, activation="tanh")(a))   # (None, 3, 5)
    model = faltung.Model(a, layers.Permute((2, 1))(h))                    # (None, 5, 3)
    dense = model.layers[1]
    x = rand((2, 4))
    y = model.forward(x, training=True)
    R = np.random.default_rng(3).standard_normal(y.shape)
    dx = model.backward(R.astype(np.float32))

    def f(v):
        z = np.tanh(v @ dense.kernel.value.astype(np.float64) + dense.bias.value)
        return ref.permute(ref.repeat_vector(z, 3), (2, 1))
    np.testing.assert_allclose(y, f(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, numeric_grad(f, x.astype(np.float64), R), rtol=1e-3, atol=1e-4)


# -- against Keras -----------------------------------------------------------------------

def test_repeat_vector_and_permute_match_keras():
    keras = pytest.importorskip("keras")
    x = rand((2, 5))
    np.testing.assert_array_equal(layers.RepeatVector(3)(x),
                                  keras.ops.convert_to_numpy(keras.layers.RepeatVector(3)(x)))
    x = rand((2, 3, 4, 5))
    for dims in [(3, 1, 2), (2, 1, 3), (1, 2, 3)]:
        np.testing.assert_array_equal(layers.Permute(dims)(x),
                                      keras.ops.convert_to_numpy(keras.layers.Permute(dims)(x)))
    assert layers.Permute((3, 1, 2)).get_config()["dims"] == \
        keras.layers.Permute((3, 1, 2)).get_config()["dims"]
    assert layers.RepeatVector(3).get_config()["n"] == keras.layers.RepeatVector(3).get_config()["n"]
