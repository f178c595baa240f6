"""Merging layers inside models: end-to-end gradients of two-input functional models
against float64 finite differences of a float64 reimplementation, a model that trains,
masks passed by the graph, saving and loading."""
import numpy as np
import pytest

import faltung
from faltung import layers
from faltung.layers import Input
from faltung.utils import set_random_seed
from reference import merging as ref
from reference.gradcheck import numeric_grad
from reference.merging import M1, M2, MASKED, X1, X2


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _dense64(x, layer, act=None):
    z = x @ layer.kernel.value.astype(np.float64) + layer.bias.value.astype(np.float64)
    return np.tanh(z) if act == "tanh" else z


MODEL_MERGES = {
    "Add": (layers.Add, ref.add, {}),
    "Subtract": (layers.Subtract, ref.subtract, {}),
    "Multiply": (layers.Multiply, ref.multiply, {}),
    "Average": (layers.Average, ref.average, {}),
    "Maximum": (layers.Maximum, ref.maximum, {}),
    "Minimum": (layers.Minimum, ref.minimum, {}),
    "Concatenate": (layers.Concatenate, lambda v: np.concatenate(v, -1), {}),
    "Dot": (layers.Dot, lambda v: ref.batch_dot(v[0], v[1], 1), {"axes": 1}),
    "Dot-normalize": (layers.Dot, lambda v: ref.batch_dot(v[0], v[1], 1, True),
                      {"axes": 1, "normalize": True}),
}


@pytest.mark.parametrize("name", list(MODEL_MERGES))
def test_two_input_model_gradients_match_finite_differences(name):
    cls, merge64, kwargs = MODEL_MERGES[name]
    set_random_seed(1)  # fixed weights: no near-ties for Maximum/Minimum
    a, b = Input((3,)), Input((4,))
    da, db = layers.Dense(5, activation="tanh"), layers.Dense(5)
    model = faltung.Model(inputs=[a, b], outputs=cls(**kwargs)([da(a), db(b)]))
    xa, xb = rand((4, 3), 0), rand((4, 4), 1)
    y = model.forward([xa, xb], training=True)
    R = np.random.default_rng(5).standard_normal(y.shape)
    ga, gb = model.backward(R.astype(np.float32))

    def f(va, vb):
        return merge64([_dense64(va, da, "tanh"), _dense64(vb, db)])
    np.testing.assert_allclose(y, f(xa.astype(np.float64), xb.astype(np.float64)),
                               rtol=1e-5, atol=1e-5)
    a64, b64 = xa.astype(np.float64), xb.astype(np.float64)
    np.testing.assert_allclose(ga, numeric_grad(lambda v: f(v, b64), a64.copy(), R),
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(gb, numeric_grad(lambda v: f(a64, v), b64.copy(), R),
                               rtol=1e-3, atol=1e-4)
    kernel = da.kernel.value.astype(np.float64)

    def f_kernel(k):
        z = np.tanh(a64 @ k + da.bias.value.astype(np.float64))
        return merge64([z, _dense64(b64, db)])
    np.testing.assert_allclose(da.kernel.grad, numeric_grad(f_kernel, kernel.copy(), R),
                               rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name,factor", [("Add", 2.0), ("Average", 1.0), ("Maximum", 1.0),
                                         ("Minimum", 1.0), ("Multiply", None)])
def test_a_tensor_merged_with_itself(name, factor):
    # the graph sums the two gradients of the one tensor; ties of max(h, h) give dy once
    a = Input((3,))
    model = faltung.Model(a, getattr(layers, name)()([a, a]))
    x, dy = rand((2, 3), 0), rand((2, 3), 1)
    model.forward(x, training=True)
    dx = model.backward(dy)
    np.testing.assert_allclose(dx, dy * (2 * x if factor is None else factor), rtol=1e-6)


def test_model_with_concatenate_and_add_trains():
    set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 256
    xa = rng.standard_normal((n, 4)).astype(np.float32)
    xb = rng.standard_normal((n, 4)).astype(np.float32)
    y = ((xa[:, 0] + xb[:, 1]) > 0).astype(np.int32) + (xa[:, 2] * xb[:, 3] > 0)
    a, b = Input((4,)), Input((4,))
    h = layers.add([layers.Dense(16, activation="relu")(a), layers.Dense(16, activation="relu")(b)])
    h = layers.concatenate([h, a, b])
    model = faltung.Model(inputs=[a, b], outputs=layers.Dense(3, activation="softmax")(h))
    model.compile(faltung.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    before = model.evaluate([xa, xb], y, verbose=0)
    hist = model.fit([xa, xb], y, epochs=8, batch_size=32, verbose=0)
    # seeds 0-9 all end below 0.68 of the starting loss
    assert model.evaluate([xa, xb], y, verbose=0) < 0.75 * before
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert model.predict([xa, xb], verbose=0).shape == (n, 3)


def test_masks_reach_the_merge_layer_in_a_model():
    a, b = Input((4, 2)), Input((4, 2))
    mul = layers.Multiply()
    model = faltung.Model(inputs=[a, b], outputs=mul([a, b]))
    out = model.forward([X1, X2], mask=[M1, M2])
    np.testing.assert_allclose(out, [MASKED["Multiply"][1]])
    np.testing.assert_allclose(model.forward([X1, X2]), X1 * X2)


def test_model_with_merge_layers_saves_and_loads(tmp_path):
    a, b = Input((4,)), Input((3, 5))
    h = layers.add([layers.Dense(5)(a), b])
    c = layers.concatenate([h, b], axis=1)
    d = layers.Dot(axes=(2, 2), normalize=True)([c, b])
    out = layers.maximum([layers.Dense(3)(layers.subtract([d, d])), layers.Dense(3)(d)])
    model = faltung.Model(inputs=[a, b], outputs=out)
    xs = [rand((2, 4), 0), rand((2, 3, 5), 1)]
    model.save(tmp_path / "m.keras")
    loaded = faltung.load_model(tmp_path / "m.keras")
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0))


@pytest.mark.parametrize("make", [lambda: layers.Dense(3, activation="relu"),
                                  lambda: layers.Dense(3),
                                  lambda: layers.Conv2D(2, 3, padding="same"),
                                  layers.BatchNormalization, layers.MaxPooling2D,
                                  lambda: layers.Dropout(0.5), layers.Flatten, layers.PReLU,
                                  lambda: layers.Activation("softmax"),
                                  lambda: layers.Permute((3, 1, 2))],
                         ids=["dense-relu", "dense", "conv", "bn", "pool", "dropout", "flatten",
                              "prelu", "softmax", "permute"])
def test_bricks_take_the_read_only_gradients_of_add(make):
    # Add and Average hand out read-only views of one dy; a brick upstream must not write
    # into the dy it receives (none does: each allocates its dx), or this raises
    x = rand((2, 4, 4, 3), 0)
    a = Input((4, 4, 3))
    h = make()(a)
    b = Input(h.shape[1:])
    model = faltung.Model([a, b], layers.add([h, b]))
    y = model.forward([x, rand((2,) + h.shape[1:], 2)], training=True)
    dx, db = model.backward(rand(y.shape, 1))
    assert dx.shape == x.shape and np.all(np.isfinite(dx)) and not db.flags.writeable


def test_merges_propagate_nan_and_inf():
    from faltung import layers as L
    a = np.array([[1.0, np.nan, np.inf]], np.float32)
    b = np.array([[2.0, 1.0, 1.0]], np.float32)
    assert np.isnan(L.Add()([a, b])[0, 1]) and np.isinf(L.Add()([a, b])[0, 2])
    assert np.isnan(L.Concatenate()([a, b])[0, 1])
    assert np.isnan(L.Maximum()([a, b])[0, 1])
