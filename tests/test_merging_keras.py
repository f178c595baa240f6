"""Merging layers against Keras 3 (skipped when keras is not installed): outputs, symbolic
shapes, configs, and gradients against the Keras backend's autodiff (jax, torch or
tensorflow; the numpy backend has none)."""
import numpy as np
import pytest

from faltung import layers
from faltung.layers import Input
from reference.merging import CONCAT, DOT, M1, M2, SHAPES, X1, X2

ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


KERAS_CASES = ["same", "B1", "three", "lower-rank", "lower-rank-first", "ones", "grows-late",
               "batch-only"]


def _np(keras, t):
    return np.asarray(keras.ops.convert_to_numpy(t))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_matches_keras(name):
    keras = pytest.importorskip("keras")
    for case in KERAS_CASES:
        shapes = SHAPES[case]
        if name == "Subtract" and len(shapes) != 2:
            continue
        xs = [rand(s, i) for i, s in enumerate(shapes)]
        want = _np(keras, getattr(keras.layers, name)()(xs))
        np.testing.assert_allclose(getattr(layers, name)()(xs), want, rtol=1e-5, atol=1e-6,
                                   err_msg=case)
        sym = getattr(keras.layers, name)()([keras.Input(s[1:]) for s in shapes])
        assert getattr(layers, name)()([Input(s[1:]) for s in shapes]).shape == tuple(sym.shape)


def test_concatenate_matches_keras():
    keras = pytest.importorskip("keras")
    for case, (shapes, axis) in CONCAT.items():
        xs = [rand(s, i) for i, s in enumerate(shapes)]
        want = _np(keras, keras.layers.Concatenate(axis=axis)(xs))
        np.testing.assert_array_equal(layers.Concatenate(axis=axis)(xs), want, err_msg=case)
    for axis in (1, 2):
        for masks in ([M1, None], [None, M2], [M1, M2]):
            want = _np(keras, keras.layers.Concatenate(axis=axis).compute_mask([X1, X2], masks))
            np.testing.assert_array_equal(
                layers.Concatenate(axis=axis).compute_mask([X1, X2], masks), want)


def test_dot_matches_keras():
    keras = pytest.importorskip("keras")
    for case, (shapes, axes) in DOT.items():
        xs = [rand(s, i) for i, s in enumerate(shapes)]
        for normalize in (False, True):
            want = _np(keras, keras.layers.Dot(axes=axes, normalize=normalize)(xs))
            got = layers.Dot(axes=axes, normalize=normalize)(xs)
            assert got.shape == want.shape, case
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=case)
        sym = keras.layers.Dot(axes=axes)([keras.Input(s[1:]) for s in shapes])
        assert layers.Dot(axes=axes)([Input(s[1:]) for s in shapes]).shape == tuple(sym.shape)


def test_configs_have_keras_keys():
    keras = pytest.importorskip("keras")
    pairs = [(layers.Add(), keras.layers.Add()), (layers.Subtract(), keras.layers.Subtract()),
             (layers.Multiply(), keras.layers.Multiply()), (layers.Average(), keras.layers.Average()),
             (layers.Maximum(), keras.layers.Maximum()), (layers.Minimum(), keras.layers.Minimum()),
             (layers.Concatenate(axis=1), keras.layers.Concatenate(axis=1)),
             (layers.Dot(axes=(1, 2), normalize=True), keras.layers.Dot(axes=(1, 2), normalize=True))]
    base = set(keras.layers.Layer().get_config())
    for ours, theirs in pairs:
        extra = set(theirs.get_config()) - base
        assert extra == set(ours.get_config()) - {"name", "trainable", "dtype"}
        assert all(ours.get_config()[k] == theirs.get_config()[k] for k in extra)


def _keras_grads(keras, layer, xs, r):
    """d sum(layer(xs) * r) / d xs by the Keras backend's autodiff (jax, torch, tensorflow)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return jax.grad(lambda *v: (layer(list(v)) * r).sum(), argnums=tuple(range(len(xs))))(*xs)
    if backend == "torch":
        import torch
        ts = [torch.tensor(x, requires_grad=True) for x in xs]
        (layer(ts) * torch.tensor(r)).sum().backward()
        return [t.grad for t in ts]
    if backend == "tensorflow":
        import tensorflow as tf
        ts = [tf.Variable(x) for x in xs]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(ts) * r)
        return tape.gradient(loss, ts)
    pytest.skip(f"no autodiff in Keras's {backend} backend")


def _grad_cases(name):
    if name in ELEMENTWISE:
        return [({}, SHAPES[c]) for c in KERAS_CASES if name != "Subtract" or len(SHAPES[c]) == 2]
    if name == "Concatenate":
        return [({"axis": axis}, shapes) for shapes, axis in CONCAT.values()]
    return [({"axes": axes, "normalize": nz}, shapes) for shapes, axes in DOT.values()
            for nz in (False, True)]


@pytest.mark.parametrize("name", ELEMENTWISE + ["Concatenate", "Dot"])
def test_gradients_match_keras_autodiff(name):
    # random inputs have no ties, where backends differ (jax and torch split them evenly)
    keras = pytest.importorskip("keras")
    for kwargs, shapes in _grad_cases(name):
        xs = [rand(s, i) for i, s in enumerate(shapes)]
        layer = getattr(layers, name)(**kwargs)
        y = layer(xs, training=True)
        r = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
        want = _keras_grads(keras, getattr(keras.layers, name)(**kwargs), xs, r)
        for got, w in zip(layer.backward(r), want):
            np.testing.assert_allclose(got, _np(keras, w), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{kwargs} {shapes}")
