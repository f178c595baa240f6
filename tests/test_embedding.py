"""Embedding: the kernels (faltung.ops.embedding / embedding_backward) against numpy
references, the Embedding layer, and models that train on embedded sequences."""
import numpy as np
import pytest

import faltung
from faltung import Input, Model, _core, layers, ops
from tests.reference.gradcheck import numeric_grad


def ref_forward(idx, table):
    return np.asarray(table)[np.asarray(idx)]


def ref_backward(dy, idx, V):
    g = np.zeros((V, dy.shape[-1]), np.float64)
    np.add.at(g, np.asarray(idx).reshape(-1), dy.reshape(-1, dy.shape[-1]))
    return g


# (indices shape, input_dim V, output_dim D); the last three move > 2**20 elements, enough
# for two threads
CASES = [((1,), 1, 1), ((1, 5), 7, 3), ((4, 9), 10, 17), ((3, 2, 5), 6, 40), ((0, 3), 4, 2),
         ((7,), 1000, 5), ((300, 40), 50, 64), ((256, 80), 3000, 64), ((1100000,), 3, 1),
         ((64, 50), 40000, 33)]
IDS = [f"{'x'.join(map(str, s))}-V{v}-D{d}" for s, v, d in CASES]


def with_threads(n, fn):
    n0 = faltung.get_num_threads()
    try:
        faltung.set_num_threads(n)
        return fn()
    finally:
        faltung.set_num_threads(n0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,V,D", CASES, ids=IDS)
def test_kernel_matches_numpy(shape, V, D, dtype, threads):
    rng = np.random.default_rng(sum(shape) + V + D)
    idx = rng.integers(0, V, shape).astype(np.int32)
    table = rng.standard_normal((V, D)).astype(dtype)
    dy = rng.standard_normal(shape + (D,)).astype(dtype)
    y, g = with_threads(threads, lambda: (ops.embedding(idx, table),
                                          ops.embedding_backward(dy, idx, V)))
    assert y.dtype == g.dtype == dtype and y.shape == shape + (D,) and g.shape == (V, D)
    np.testing.assert_array_equal(y, ref_forward(idx, table))
    # float32 rows sum up to ~N/V terms in sequence: the rounding error grows with that count
    tol = 1e-5 if dtype == np.float32 else 1e-13
    atol = tol * (1 + 0.1 * np.bincount(idx.reshape(-1), minlength=1).max())
    np.testing.assert_allclose(g, ref_backward(dy.astype(np.float64), idx, V), rtol=tol, atol=atol)
    # the naive C++ oracle sums each row in the same order: equal to the bit
    sfx = "_f64" if dtype == np.float64 else "_f32"
    np.testing.assert_array_equal(g, getattr(_core, "embedding_backward" + sfx)(dy, idx, V, ref=True))
    np.testing.assert_array_equal(y, getattr(_core, "embedding_forward" + sfx)(idx, table, ref=True))


def test_backward_is_the_same_on_one_and_two_threads_with_skewed_indices():
    # mostly index 0 (padding), as with mask_zero: the column split keeps both threads busy
    # and each row's sum in index order, so the two results agree to the bit
    rng = np.random.default_rng(1)
    idx = np.where(rng.random((256, 100)) < 0.7, 0, rng.integers(0, 500, (256, 100))).astype(np.int32)
    dy = rng.standard_normal((256, 100, 48)).astype(np.float32)
    one = with_threads(1, lambda: ops.embedding_backward(dy, idx, 500))
    two = with_threads(2, lambda: ops.embedding_backward(dy, idx, 500))
    np.testing.assert_array_equal(one, two)
    # row 0 sums ~18000 float32 terms in sequence: a looser absolute tolerance for it
    np.testing.assert_allclose(one, ref_backward(dy.astype(np.float64), idx, 500), rtol=1e-5, atol=1e-2)


def test_duplicated_indices_accumulate():
    dy = np.arange(12, dtype=np.float64).reshape(4, 3)
    g = ops.embedding_backward(dy, np.array([2, 0, 2, 2], np.int32), 3)
    np.testing.assert_array_equal(g, [[3, 4, 5], [0, 0, 0], [0 + 6 + 9, 1 + 7 + 10, 2 + 8 + 11]])
    idx = np.full((200, 100), 3, np.int32)  # every index the same, threaded path
    dy = np.ones((200, 100, 64), np.float32)
    g = with_threads(2, lambda: ops.embedding_backward(dy, idx, 5))
    np.testing.assert_array_equal(g[3], np.full(64, 20000.0))
    assert not g[[0, 1, 2, 4]].any()


@pytest.mark.parametrize("shape,V,D", [((1,), 3, 2), ((2, 3), 4, 3), ((2, 2, 2), 3, 5)])
def test_backward_matches_finite_differences(shape, V, D):
    rng = np.random.default_rng(2)
    idx = rng.integers(0, V, shape).astype(np.int32)
    table = rng.standard_normal((V, D))
    r = rng.standard_normal(shape + (D,))
    num = numeric_grad(lambda t: ops.embedding(idx, t), table, r)
    np.testing.assert_allclose(ops.embedding_backward(r, idx, V), num, atol=1e-8)


def test_index_conversions_follow_keras():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    # other integer types are cast; floats are truncated toward zero (Keras casts to int32)
    np.testing.assert_array_equal(ops.embedding(np.array([3, 1], np.int64), table), table[[3, 1]])
    np.testing.assert_array_equal(ops.embedding(np.array([3, 1], np.uint8), table), table[[3, 1]])
    np.testing.assert_array_equal(ops.embedding([2.9, -0.5, 1.0], table), table[[2, 0, 1]])
    np.testing.assert_array_equal(ops.embedding(np.array([True, False]), table), table[[1, 0]])
    # a scalar index gives one row of shape (D,), as table[i] (found by the fuzzer: was (1, D))
    for i in (np.int32(2), np.int64(2), 2, 2.5):
        assert ops.embedding(i, table).shape == (3,)
        np.testing.assert_array_equal(ops.embedding(i, table), table[2])
    # a non-contiguous int32 view
    idx = np.arange(8, dtype=np.int32).reshape(2, 4)[:, ::2] % 4
    np.testing.assert_array_equal(ops.embedding(idx, table), table[idx])


@pytest.mark.parametrize("bad,dtype", [(4, np.int32), (-1, np.int32), (2**31 - 1, np.int32), (5, np.int64),
                                       (-3, np.int64), (2**32 + 1, np.int64), (4.5, np.float32), (-1.5, np.float64)])
def test_out_of_range_indices_raise(bad, dtype):
    idx = np.array([[0, 1, 2], [3, 0, bad]]).astype(dtype)
    shown = int(np.trunc(bad))
    msg = rf"index {shown} at position 5 of `indices` is outside \[0, input_dim=4\)"
    with pytest.raises(ValueError, match="embedding: " + msg):
        ops.embedding(idx, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="embedding_backward: " + msg):
        ops.embedding_backward(np.zeros((2, 3, 3), np.float32), idx, 4)


def test_nan_index_and_bad_arguments_raise():
    table = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"index nan at position 1 of `indices` is outside \[0, input_dim=4\)"):
        ops.embedding([1.0, np.nan], table)
    with pytest.raises(TypeError, match="expected integer `indices`, received an array of dtype <U1"):
        ops.embedding(["a"], table)
    with pytest.raises(ValueError, match=r"embedding: expected `table` of rank 2, received shape \(4,\)"):
        ops.embedding([1], np.zeros(4))
    with pytest.raises(ValueError, match=r"embedding_backward: expected `dout` of shape \(2, 3, 3\), received "
                                         r"shape \(2, 4, 3\)"):
        ops.embedding_backward(np.zeros((2, 4, 3), np.float32), np.zeros((2, 3), np.int32), 4)
    with pytest.raises(ValueError, match=r"embedding_backward: expected `dout` of rank 3"):
        ops.embedding_backward(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int32), 4)
    # the binding itself refuses to cast indices (a cast could wrap them into range)
    with pytest.raises(TypeError, match="embedding: expected `indices` of dtype int32, received dtype int64"):
        _core.embedding_forward_f32(np.array([2**32 + 1]), table)


# -- the Embedding layer ---------------------------------------------------------------------

def test_layer_signature_defaults_and_config():
    import inspect
    sig = inspect.signature(layers.Embedding.__init__).parameters
    keras_defaults = {"embeddings_initializer": "uniform", "embeddings_regularizer": None,
                      "embeddings_constraint": None, "mask_zero": False, "weights": None,
                      "lora_rank": None, "lora_alpha": None, "quantization_config": None}
    assert list(sig)[1:3] == ["input_dim", "output_dim"]
    assert {k: sig[k].default for k in keras_defaults} == keras_defaults
    e = layers.Embedding(50, 8, embeddings_regularizer="l2", name="emb")
    e.build((None, 3))
    assert [w.name for w in e.weights] == ["emb/embeddings"] and e.embeddings.shape == (50, 8)
    assert e.embeddings.regularizer is not None
    assert np.abs(e.embeddings.value).max() <= 0.05 and e.embeddings.value.std() > 0.02  # RandomUniform(-0.05, 0.05)
    assert isinstance(faltung.initializers.get("uniform"), faltung.initializers.RandomUniform)
    assert e.compute_output_shape((None, 3)) == (None, 3, 8)
    assert e.compute_output_shape((None, 2, 5)) == (None, 2, 5, 8)
    cfg = e.get_config()
    assert {k: cfg[k] for k in ("input_dim", "output_dim", "mask_zero")} == \
        {"input_dim": 50, "output_dim": 8, "mask_zero": False}
    assert cfg["embeddings_initializer"]["class_name"] == "RandomUniform"
    e2 = layers.Embedding.from_config(dict(cfg, name="emb2"))
    assert e2.input_dim == 50 and e2.output_dim == 8 and e2.embeddings_regularizer is not None


def test_layer_forward_and_embeddings_gradient_match_finite_differences():
    rng = np.random.default_rng(5)
    e = layers.Embedding(6, 4)
    x = rng.integers(0, 6, (3, 5))
    x[0, :3] = 2  # duplicates within a sample
    y = e(x, training=True)
    assert y.dtype == np.float32 and y.shape == (3, 5, 4)
    np.testing.assert_array_equal(y, e.embeddings.value[x])
    r = rng.standard_normal(y.shape)
    assert e.backward(r.astype(np.float32)) is None  # integer inputs get no gradient
    table64 = e.embeddings.value.astype(np.float64)
    num = numeric_grad(lambda t: ref_forward(x, t), table64, r)
    assert e.embeddings.grad.dtype == np.float32
    np.testing.assert_allclose(e.embeddings.grad, num, rtol=1e-5, atol=1e-5)


def test_mask_zero():
    x = np.array([[3, 1, 0, 0], [0, 2, 5, 0]])
    e = layers.Embedding(6, 2, mask_zero=True)
    e(x)
    assert e.supports_masking
    np.testing.assert_array_equal(e.compute_mask(x), x != 0)
    assert e.compute_mask(x).dtype == bool
    plain = layers.Embedding(6, 2)
    assert plain.compute_mask(x) is None and not plain.supports_masking


def test_layer_inputs_weights_and_errors():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    e = layers.Embedding(4, 3, weights=table, name="tok")
    assert e.built
    np.testing.assert_array_equal(e([[3, 0]]), table[[[3, 0]]])
    np.testing.assert_array_equal(e(np.array([[2.7, 1.0]], np.float32)), table[[[2, 1]]])  # Keras casts
    np.testing.assert_array_equal(layers.Embedding(4, 3, weights=[table])(np.array([1])), table[[1]])
    for bad in (np.array([[4]], np.int32), np.array([[-1]]), np.array([[9.0]])):
        with pytest.raises(ValueError, match=r'Layer "tok": embedding: index -?\d+ at position 0 of '
                                             r"`indices` is outside \[0, input_dim=4\)"):
            e(bad)
    with pytest.raises(ValueError, match=r"weight shape \(4, 3\) is not compatible with provided weight "
                                         r"shape \(3, 3\)"):
        layers.Embedding(4, 3, weights=table[:3])
    with pytest.raises(ValueError, match=r"Invalid value for argument `input_dim`.*Received input_dim=0"):
        layers.Embedding(0, 3)
    with pytest.raises(ValueError, match=r"Invalid value for argument `output_dim`.*Received output_dim=2.5"):
        layers.Embedding(3, 2.5)
    with pytest.raises(ValueError, match=r"expected lora_rank=None, received lora_rank=4"):
        layers.Embedding(3, 2, lora_rank=4)
    with pytest.warns(UserWarning, match="input_length"):
        layers.Embedding(3, 2, input_length=7)


def test_frozen_layer_gets_no_gradient_and_any_index_shape():
    e = layers.Embedding(5, 2, trainable=False)
    e(np.array([[1, 2]]), training=True)
    e.backward(np.ones((1, 2, 2), np.float32))
    assert e.embeddings.grad is None
    # Keras's Embedding has no input_spec: one layer serves sequences of any length and rank
    e2 = layers.Embedding(5, 2)
    a, b = Input((3,), dtype="int32"), Input((4, 2), dtype="int32")
    assert e2(a).shape == (None, 3, 2) and e2(b).shape == (None, 4, 2, 2)


def test_model_with_embedding_saves_and_loads(tmp_path):
    inp = Input((4,), dtype="int32")
    model = Model(inp, layers.Dense(2)(layers.Embedding(9, 3, mask_zero=True)(inp)))
    x = np.random.default_rng(0).integers(0, 9, (5, 4))
    model.save(tmp_path / "e.keras")
    loaded = faltung.load_model(tmp_path / "e.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.layers[1].mask_zero and loaded.inputs[0].dtype == "int32"


# -- models on embedded sequences ------------------------------------------------------------

def padded_tokens(rng, n, T, V, min_len=1):
    """(n, T) token ids in [1, V) followed by 0-padding; random lengths in [min_len, T]."""
    x = rng.integers(1, V, (n, T))
    lengths = rng.integers(min_len, T + 1, n)
    x[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return x


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# Dense on (batch, time, features) passes the Embedding's mask on (supports_masking, as
# Keras's Dense), so the loss counts only the unmasked steps.
def test_masked_sequence_loss_is_the_mean_over_unmasked_steps():
    rng = np.random.default_rng(7)
    V, T, D, C, n = 12, 6, 8, 4, 64
    inp = Input((T,), dtype="int32")
    dense = layers.Dense(C)
    model = Model(inp, dense(layers.Embedding(V, D, mask_zero=True)(inp)))
    model.compile(optimizer=faltung.optimizers.Adam(0.02),
                  loss=faltung.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = padded_tokens(rng, n, T, V)
    y = x % C
    y[x == 0] = rng.integers(0, C, int((x == 0).sum()))  # padded targets: noise the mask removes

    def by_hand():
        logits = model.predict(x, verbose=0).astype(np.float64)
        ce = -np.take_along_axis(log_softmax(logits), y[..., None], -1)[..., 0]
        keep = x != 0
        return (ce * keep).sum() / keep.sum()

    before = model.evaluate(x, y, batch_size=n, verbose=0)
    np.testing.assert_allclose(before, by_hand(), rtol=1e-5)
    pad_row = model.layers[1].embeddings.value[0].copy()
    model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    after = model.evaluate(x, y, batch_size=n, verbose=0)
    np.testing.assert_allclose(after, by_hand(), rtol=1e-5)
    assert after < 0.5 * before, (before, after)
    # padded steps weigh 0 in the loss, so the padding row of the table never gets a gradient
    np.testing.assert_array_equal(model.layers[1].embeddings.value[0], pad_row)


def test_embedding_average_pooling_classifier_learns_token_presence_and_ignores_padding():
    # label: does token 7 occur in the (unpadded part of the) sequence?
    rng = np.random.default_rng(8)
    V, T = 16, 10
    x = padded_tokens(rng, 1200, T, V, min_len=2)
    y = (x == 7).any(axis=1).astype(np.int32)
    inp = Input((None,), dtype="int32")
    emb = layers.Embedding(V, 8, mask_zero=True)
    out = layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling1D()(emb(inp)))
    model = Model(inp, out)
    model.compile(optimizer=faltung.optimizers.Adam(0.02), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:1000], y[:1000], batch_size=32, epochs=25, verbose=0)
    loss, acc = model.evaluate(x[1000:], y[1000:], verbose=0)
    assert acc > 0.93, (loss, acc)
    # the masked mean ignores padding: more padding leaves every prediction unchanged
    longer = np.concatenate([x[1000:], np.zeros((200, 5), x.dtype)], axis=1)
    np.testing.assert_allclose(model.predict(longer, verbose=0), model.predict(x[1000:], verbose=0),
                               rtol=1e-5, atol=1e-6)


# -- the same numbers as Keras (skipped when keras is not installed) ---------------------------

def test_embedding_matches_keras():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(9)
    x = padded_tokens(rng, 3, 5, 10).astype(np.int32)
    ours = layers.Embedding(10, 4, mask_zero=True)
    ours.build((None, 5))
    theirs = keras.layers.Embedding(10, 4, mask_zero=True)
    theirs.build((None, 5))
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-6)
    np.testing.assert_array_equal(ours.compute_mask(x), keras.ops.convert_to_numpy(theirs.compute_mask(x)))
    # float indices are truncated by both
    xf = x.astype(np.float32) + 0.5
    np.testing.assert_allclose(ours(xf), keras.ops.convert_to_numpy(theirs(xf)), rtol=1e-6)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    cfg = {k: v for k, v in theirs.get_config().items() if k not in ("dtype", "name")}
    ours_cfg = layers.Embedding(10, 4, mask_zero=True).get_config()
    for key in ("input_dim", "output_dim", "mask_zero", "embeddings_regularizer",
                "embeddings_constraint", "activity_regularizer"):
        assert ours_cfg[key] == cfg[key], key
    assert ours_cfg["embeddings_initializer"]["class_name"] == cfg["embeddings_initializer"]["class_name"]


def test_masked_sequence_models_match_keras():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(10)
    V, T, D, C = 9, 5, 6, 3
    x = padded_tokens(rng, 8, T, V).astype(np.int32)
    y = rng.integers(0, C, (8, T)).astype(np.int32)

    def pair(head_ours, head_theirs):
        i1 = Input((T,), dtype="int32")
        ours = Model(i1, head_ours(layers.Embedding(V, D, mask_zero=True)(i1)))
        i2 = keras.Input((T,), dtype="int32")
        theirs = keras.Model(i2, head_theirs(keras.layers.Embedding(V, D, mask_zero=True)(i2)))
        theirs.set_weights(ours.get_weights())
        return ours, theirs

    # masked average pooling, and max pooling that ignores the mask (both as Keras)
    for ours_pool, their_pool in ((layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling1D),
                                  (layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling1D)):
        ours, theirs = pair(lambda t: layers.Dense(C)(ours_pool()(t)),
                            lambda t: keras.layers.Dense(C)(their_pool()(t)))
        np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-6)

    # the mask weighs the loss of a time-distributed Dense (faltung's Dense needs the flag,
    # see test_masked_sequence_loss_is_the_mean_over_unmasked_steps)
    dense = layers.Dense(C)
    dense.supports_masking = True
    ours, theirs = pair(dense, keras.layers.Dense(C))
    ours.compile(loss=faltung.losses.SparseCategoricalCrossentropy(from_logits=True))
    theirs.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    np.testing.assert_allclose(ours.evaluate(x, y, batch_size=8, verbose=0),
                               theirs.evaluate(x, y, batch_size=8, verbose=0), rtol=1e-5)
