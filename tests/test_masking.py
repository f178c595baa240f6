"""Masking, and GlobalAveragePooling1D over masked steps (mask from Masking or from
Embedding(mask_zero=True)), against numpy references and finite differences."""
import numpy as np
import pytest

from faltung import Input, Model, layers
from tests.reference.gradcheck import numeric_grad


def ref_masking(x, mask_value):
    keep = np.any(x != mask_value, axis=-1, keepdims=True)
    return x * keep, keep[..., 0]


def ref_masked_mean(x, mask):
    m = np.asarray(mask, np.float64)[:, :, None]
    return (x * m).sum(axis=1) / m.sum(axis=1)


def padded(rng, shape, value, masked_steps):
    x = rng.standard_normal(shape)
    for b, t in masked_steps:
        x[b, t] = value
    return x


# -- Masking ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mask_value", [0.0, -1.0])
def test_masking_forward_mask_and_backward(mask_value):
    rng = np.random.default_rng(0)
    x = padded(rng, (3, 5, 4), mask_value, [(0, 3), (0, 4), (1, 0), (2, 2)])
    x[2, 1, :2] = mask_value  # only some features at the mask value: kept
    layer = layers.Masking(mask_value=mask_value)
    y = layer(x.astype(np.float32), training=True)
    y_ref, keep = ref_masking(x, mask_value)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    mask = layer.compute_mask(x.astype(np.float32))
    np.testing.assert_array_equal(mask, keep)
    assert mask.dtype == bool and not mask[0, 3] and mask[2, 1]
    r = rng.standard_normal(x.shape)
    dx = layer.backward(r.astype(np.float32))
    np.testing.assert_allclose(dx, r * keep[..., None], rtol=1e-6)
    # on kept steps the output is x itself: finite differences agree there; masked steps get
    # no gradient (Keras's rule: the mask is a constant)
    num = numeric_grad(lambda v: ref_masking(v, mask_value)[0], x.copy(), r)
    np.testing.assert_allclose(dx[keep], num[keep], atol=1e-6)
    assert not dx[~keep].any()
    assert layer.get_config()["mask_value"] == mask_value


def test_masking_replaces_an_incoming_mask_and_takes_any_shape():
    layer = layers.Masking()
    x = np.ones((2, 3, 2), np.float32)
    x[1, 2] = 0
    np.testing.assert_array_equal(layer.compute_mask(x, np.zeros((2, 3), bool)), [[1, 1, 1], [1, 1, 0]])
    assert layer.supports_masking
    assert layer(np.zeros((1, 4, 3, 2), np.float32)).shape == (1, 4, 3, 2)  # no input_spec, as Keras
    assert layer(Input((7, 5))).shape == (None, 7, 5)


# -- masked GlobalAveragePooling1D ---------------------------------------------------------------

@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_global_average_matches_numpy_and_finite_differences(keepdims):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 3))
    mask = rng.random((4, 6)) < 0.6
    mask[0] = [1, 0, 0, 0, 0, 0]  # one step
    mask[1] = True                # no step masked
    layer = layers.GlobalAveragePooling1D(keepdims=keepdims)
    y = layer(x.astype(np.float32), training=True, mask=mask)
    ref = ref_masked_mean(x, mask)
    assert y.dtype == np.float32 and y.shape == ((4, 1, 3) if keepdims else (4, 3))
    np.testing.assert_allclose(y.reshape(4, 3), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y.reshape(4, 3)[1], x[1].mean(axis=0), rtol=1e-5)
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r.astype(np.float32))
    num = numeric_grad(lambda v: ref_masked_mean(v, mask).reshape(y.shape), x.copy(), r)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-6)
    assert not dx[~mask].any()
    assert layer.compute_mask(x, mask) is None and layer.supports_masking


def test_masked_global_average_edge_cases():
    layer = layers.GlobalAveragePooling1D()
    x = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    # an integer 0/1 mask works as booleans
    np.testing.assert_allclose(layer(x, mask=np.array([[1, 0, 1], [0, 1, 0]])), [[2, 3], [8, 9]])
    # every step masked: 0/0 = NaN as in Keras, and no gradient
    with pytest.warns(RuntimeWarning):
        y = layer(x, training=True, mask=np.array([[0, 0, 0], [1, 1, 1]], bool))
    assert np.isnan(y[0]).all() and np.allclose(y[1], x[1].mean(axis=0))
    dx = layer.backward(np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(dx[0], 0)
    np.testing.assert_allclose(dx[1], np.full((3, 2), 1 / 3), rtol=1e-6)
    with pytest.raises(ValueError, match=r'Layer "global_average_pooling1d.*": expected a mask of shape '
                                         r"\(2, 3\) \(batch, steps\) for inputs of shape \(2, 3, 2\), "
                                         r"received mask shape \(2, 2\)"):
        layer(x, mask=np.ones((2, 2), bool))
    # without a mask: unchanged (the C++ average)
    np.testing.assert_allclose(layer(x), x.mean(axis=1))


def test_masking_then_pooling_in_a_model_forward_and_backward():
    # Masking's mask reaches GlobalAveragePooling1D through the graph, in forward and backward
    rng = np.random.default_rng(2)
    inp = Input((5, 3))
    model = Model(inp, layers.GlobalAveragePooling1D()(layers.Masking()(inp)))
    x = padded(rng, (3, 5, 3), 0.0, [(0, 4), (1, 0), (1, 3), (2, 2)])
    keep = np.any(x != 0, axis=-1)
    np.testing.assert_allclose(model.predict(x.astype(np.float32), verbose=0), ref_masked_mean(x, keep),
                               rtol=1e-5, atol=1e-6)
    y = model.forward(x.astype(np.float32), training=True)
    r = rng.standard_normal(y.shape)
    dx = model.backward(r.astype(np.float32))
    num = numeric_grad(lambda v: ref_masked_mean(v, keep), x.copy(), r)
    np.testing.assert_allclose(dx[keep], num[keep], rtol=1e-5, atol=1e-6)
    assert not dx[~keep].any()


def test_global_max_pooling_ignores_the_mask_as_keras():
    # Keras's GlobalMaxPooling1D takes no mask: masked steps take part in the max and the
    # mask stops there
    inp = Input((4,), dtype="int32")
    emb = layers.Embedding(5, 2, mask_zero=True,
                           weights=np.array([[9, 9], [1, 2], [3, 1], [0, 0], [2, 2]], np.float32))
    model = Model(inp, layers.GlobalMaxPooling1D()(emb(inp)))
    x = np.array([[1, 2, 0, 0], [4, 3, 3, 4]])
    np.testing.assert_array_equal(model.predict(x, verbose=0), [[9, 9], [2, 2]])
    _, masks, _ = model._graph.forward([x.astype(np.int32)])
    assert masks == [None]


# -- the same numbers as Keras (skipped when keras is not installed) ---------------------------

@pytest.mark.parametrize("mask_value", [0.0, 2.0])
def test_masking_matches_keras(mask_value):
    keras = pytest.importorskip("keras")
    x = padded(np.random.default_rng(3), (3, 5, 4), mask_value, [(0, 1), (2, 4)]).astype(np.float32)
    ours, theirs = layers.Masking(mask_value), keras.layers.Masking(mask_value)
    np.testing.assert_allclose(ours(x), keras.ops.convert_to_numpy(theirs(x)))
    np.testing.assert_array_equal(ours.compute_mask(x), keras.ops.convert_to_numpy(theirs.compute_mask(x)))


@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_global_average_matches_keras(keepdims):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    mask = rng.random((4, 6)) < 0.5
    mask[0], mask[1] = True, [0, 0, 1, 0, 0, 0]
    ours = layers.GlobalAveragePooling1D(keepdims=keepdims)
    theirs = keras.layers.GlobalAveragePooling1D(keepdims=keepdims)
    np.testing.assert_allclose(ours(x, mask=mask), keras.ops.convert_to_numpy(theirs(x, mask=mask)),
                               rtol=1e-6, atol=1e-7)
    assert theirs.compute_mask(x, mask) is None and ours.compute_mask(x, mask) is None


def test_masking_model_matches_keras():
    keras = pytest.importorskip("keras")
    x = padded(np.random.default_rng(5), (6, 5, 3), 0.0, [(0, 4), (1, 0), (1, 1), (5, 2)]).astype(np.float32)
    i1 = Input((5, 3))
    ours = Model(i1, layers.Dense(2)(layers.GlobalAveragePooling1D()(layers.Masking()(i1))))
    i2 = keras.Input((5, 3))
    theirs = keras.Model(i2, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(keras.layers.Masking()(i2))))
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
