"""Sequential / functional models: construction, shapes, fit/evaluate/predict, freezing,
weights, regularization, bad input."""
import numpy as np
import pytest

import faltung
from faltung import backend, regularizers
from faltung.layers import Dense, Input, Layer
from faltung.models import Model, Sequential
from faltung.utils import set_random_seed


@pytest.fixture(autouse=True)
def _fresh():
    backend.clear_session()
    set_random_seed(0)


def blobs(n=256, d=4, seed=0):
    """Two linearly separable classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = rng.normal(size=(n, d)).astype(np.float32) + (2.0 * y - 1.0)[:, None] * 1.5
    return x, y


def mlp(d=4, units=8, out=2, act="softmax"):
    return Sequential([Input((d,)), Dense(units, activation="relu"), Dense(out, activation=act)])


# -- construction ------------------------------------------------------------------------
def test_sequential_with_input_is_built_and_hides_input_layer():
    model = mlp()
    assert model.built
    assert [l.name for l in model.layers] == ["dense", "dense_1"]
    assert model.input_shape == (None, 4) and model.output_shape == (None, 2)
    assert model.inputs[0].shape == (None, 4) and model.outputs[0].shape == (None, 2)
    assert model.count_params() == 4 * 8 + 8 + 8 * 2 + 2


def test_sequential_names_are_unique():
    assert Sequential().name == "sequential"
    assert Sequential().name == "sequential_1"
    assert Sequential(name="mine").name == "mine"


def test_keras2_input_shape_argument_builds_eagerly():
    model = Sequential([Dense(3, input_shape=(5,)), Dense(1)])
    assert model.built and model.output_shape == (None, 1)
    assert model.layers[0].kernel.shape == (5, 3)


def test_unbuilt_model_builds_on_first_call():
    model = Sequential([Dense(3), Dense(2)])
    assert not model.built
    with pytest.raises(ValueError, match="isn't built"):
        model.count_params()
    y = model(np.ones((4, 6), np.float32))
    assert y.shape == (4, 2) and model.built and model.input_shape == (None, 6)


def test_add_and_pop():
    model = Sequential()
    model.add(Input((3,)))
    model.add(Dense(4))
    assert model.output_shape == (None, 4)
    model.add(Dense(2))
    assert model.output_shape == (None, 2)
    popped = model.pop()
    assert popped.units == 2 and model.output_shape == (None, 4) and len(model.layers) == 1
    with pytest.raises(ValueError, match="Only instances of `keras.Layer`"):
        model.add("dense")
    with pytest.raises(ValueError, match="unique names"):
        model.add(Dense(2, name="dense"))


def test_get_layer():
    model = mlp()
    assert model.get_layer("dense_1") is model.layers[1]
    assert model.get_layer(index=0) is model.layers[0]
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="retrieve layer at index 5"):
        model.get_layer(index=5)


def test_summary_text_is_pinned():
    model = Sequential([Input((32,)), Dense(128, activation="relu"), Dense(10)])
    out = []
    model.summary(line_length=80, print_fn=out.append)
    text = out[0]
    lines = text.splitlines()
    assert lines[0] == 'Model: "sequential"'
    assert "Layer (type)" in lines[2] and "Output Shape" in lines[2] and "Param #" in lines[2]
    rows = [l for l in lines if l.startswith("│")]
    assert rows[0].split("│")[1:4] == [f" {'dense (Dense)':<30} ", f" {'(None, 128)':<26} ",
                                      f" {'4,224':>14} "]
    assert "dense_1 (Dense)" in rows[1] and "(None, 10)" in rows[1] and "1,290" in rows[1]
    assert all(len(l) == 80 for l in lines[1:-3])
    assert lines[-3:] == [" Total params: 5,514 (21.54 KB)",
                          " Trainable params: 5,514 (21.54 KB)",
                          " Non-trainable params: 0 (0.00 B)"]


def test_summary_of_unbuilt_model_and_frozen_counts(capsys):
    Sequential([Dense(3)]).summary()
    text = capsys.readouterr().out
    assert "?" in text and "0 (unbuilt)" in text
    model = mlp()
    model.layers[0].trainable = False
    out = []
    model.summary(print_fn=out.append)
    assert " Trainable params: 18 (72.00 B)" in out[0]
    assert " Non-trainable params: 40 (160.00 B)" in out[0]


# -- training ----------------------------------------------------------------------------
def test_fit_learns_separable_problem_and_history_keys():
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(x, y, verbose=0)
    hist = model.fit(x, y, epochs=8, batch_size=16, validation_split=0.25, verbose=0)
    assert sorted(hist.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert hist.epoch == list(range(8)) and model.history is hist
    assert hist.params == {"verbose": 0, "epochs": 8, "steps": 12}
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert loss < before[0] and acc > 0.95


def test_validation_split_takes_the_tail():
    x, y = blobs(100)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=1, validation_split=0.2, verbose=0)
    val = model.evaluate(x[80:], y[80:], verbose=0, return_dict=True)
    assert val["loss"] == pytest.approx(hist.history["val_loss"][0], rel=1e-6)
    assert val["accuracy"] == pytest.approx(hist.history["val_accuracy"][0])
    assert hist.params["steps"] == 3  # 80 training samples / 32


def test_validation_data_and_evaluate_return_forms():
    x, y = blobs(64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    hist = model.fit(x, y, validation_data=(x[:16], y[:16]), epochs=2, verbose=0)
    assert sorted(hist.history) == ["loss", "val_loss"]
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["acc"])
    res = model.evaluate(x, y, verbose=0)
    assert isinstance(res, list) and len(res) == 2
    assert sorted(model.evaluate(x, y, verbose=0, return_dict=True)) == ["acc", "loss"]


def test_loss_is_batch_size_weighted_mean():
    x, y = blobs(40)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    full = model.evaluate(x, y, batch_size=40, verbose=0)
    assert model.evaluate(x, y, batch_size=16, verbose=0) == pytest.approx(full, rel=1e-5)


def test_predict_batched_equals_one_shot():
    x, _ = blobs(50)
    model = mlp()
    one = model.predict_on_batch(x)
    assert np.allclose(model.predict(x, batch_size=7, verbose=0), one, atol=1e-6)
    assert np.allclose(model.predict(x, verbose=0), model(x), atol=1e-6)
    assert model.predict(x, verbose=0).shape == (50, 2)


def test_train_and_test_on_batch():
    x, y = blobs(32)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    l0 = model.test_on_batch(x, y)
    for _ in range(30):
        model.train_on_batch(x, y)
    assert isinstance(l0, float) and model.test_on_batch(x, y) < l0
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    out = model.train_on_batch(x, y)
    assert isinstance(out, list) and len(out) == 2
    assert set(model.test_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}


def test_frozen_layer_unchanged_but_passes_gradients():
    x, y = blobs(64)
    model = Sequential([Input((4,)), Dense(8, activation="tanh"), Dense(8, activation="tanh"),
                        Dense(2, activation="softmax")])
    model.layers[1].trainable = False
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 2
    before = model.get_weights()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    after = model.get_weights()
    assert np.array_equal(before[2], after[2]) and np.array_equal(before[3], after[3])
    assert not np.array_equal(before[0], after[0])  # layer below the frozen one still learns
    assert not np.array_equal(before[4], after[4])


def test_model_trainable_false_freezes_everything():
    x, y = blobs(64)
    model = mlp()
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 4
    before = model.get_weights()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_sample_weight_zero_means_no_update():
    x, y = blobs(64)
    model = mlp()
    before = model.get_weights()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, sample_weight=np.zeros(64), epochs=1, verbose=0, shuffle=False)
    assert all(np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    model.fit(x, y, class_weight={0: 1.0, 1: 2.0}, epochs=1, verbose=0)
    assert not all(np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def test_regularization_penalty_in_loss_and_gradient():
    x, y = blobs(32)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    plain = model.evaluate(x, y, verbose=0)
    kernel = model.layers[0].kernel
    kernel.regularizer = regularizers.L2(0.1)
    model.layers[1].bias.regularizer = None  # skipped gracefully
    penalty = 0.1 * float((kernel.value.astype(np.float64) ** 2).sum())
    assert model.evaluate(x, y, verbose=0) == pytest.approx(plain + penalty, rel=1e-5)
    # with lr=1 and a huge penalty the kernel shrinks by the penalty's gradient
    kernel.regularizer = regularizers.L2(10.0)
    model.compile(faltung.optimizers.SGD(learning_rate=1e-3), "sparse_categorical_crossentropy")
    w0 = kernel.value.copy()
    model.train_on_batch(x, y)
    assert np.linalg.norm(kernel.value) < 0.99 * np.linalg.norm(w0)


def test_weights_roundtrip_and_shape_errors():
    a, b = mlp(), mlp()
    b.set_weights(a.get_weights())
    x, _ = blobs(10)
    assert np.array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    assert [w.shape for w in a.get_weights()] == [(4, 8), (8,), (8, 2), (2,)]
    with pytest.raises(ValueError, match="weight list of length 1, but the layer was expecting 4"):
        a.set_weights(a.get_weights()[:1])
    bad = a.get_weights()
    bad[2] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"weight shape \(8, 2\) is not compatible with provided "
                                         r"weight shape \(3, 2\)"):
        a.set_weights(bad)


def test_nested_sequential_trains():
    x, y = blobs(64)
    inner = Sequential([Input((4,)), Dense(8, activation="relu")])
    model = Sequential([Input((4,)), inner, Dense(2, activation="softmax")])
    assert model.output_shape == (None, 2) and len(model.weights) == 4
    model.compile("adam", "sparse_categorical_crossentropy")
    w0 = inner.get_weights()[0].copy()
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(w0, inner.get_weights()[0])


# -- functional --------------------------------------------------------------------------
class AddTwo(Layer):
    """Test-only merge layer: y = a + b."""

    def compute_output_shape(self, input_shape):
        return input_shape[0] if isinstance(input_shape, list) else input_shape

    def forward(self, xs, training=False):
        return xs[0] + xs[1]

    def backward(self, dy, need_dx=True):
        return [dy, dy] if need_dx else None


def test_functional_chain_equals_sequential():
    inp = Input((4,))
    out = Dense(2, activation="softmax")(Dense(8, activation="relu")(inp))
    fmodel = Model(inp, out)
    assert type(fmodel).__name__ == "Functional" and fmodel.name == "functional"
    assert [type(l).__name__ for l in fmodel.layers] == ["InputLayer", "Dense", "Dense"]
    seq = mlp()
    seq.set_weights(fmodel.get_weights())
    x, y = blobs(64)
    assert np.allclose(fmodel.predict(x, verbose=0), seq.predict(x, verbose=0), atol=1e-6)
    for m in (fmodel, seq):
        m.compile(faltung.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        m.fit(x, y, epochs=1, shuffle=False, verbose=0)
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(fmodel.get_weights(), seq.get_weights()))


def test_functional_dag_gradients_match_finite_differences():
    inp = Input((3,))
    h = Dense(4, activation="tanh")(inp)
    out = AddTwo()([Dense(2)(h), Dense(2, activation="tanh")(h)])
    model = Model(inputs=inp, outputs=out)
    out_lines = []
    model.summary(print_fn=out_lines.append)
    assert "Connected to" in out_lines[0] and "dense[0][0]" in out_lines[0]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    r = rng.normal(size=(5, 2)).astype(np.float32)
    model.forward(x, training=True)
    dx = model.backward(r, need_dx=True)
    kernel = model.layers[1].kernel
    g = kernel.grad.copy()
    f = lambda: float((model.forward(x).astype(np.float64) * r).sum())  # noqa: E731
    eps = 1e-2
    for idx in [(0, 0), (2, 3), (1, 2)]:
        old = kernel.value[idx]
        kernel.value[idx] = old + eps
        up = f()
        kernel.value[idx] = old - eps
        down = f()
        kernel.value[idx] = old
        assert g[idx] == pytest.approx((up - down) / (2 * eps), rel=2e-2, abs=1e-3)
    xp = x.copy()
    xp[1, 2] += eps
    up = float((model.forward(xp).astype(np.float64) * r).sum())
    xp[1, 2] -= 2 * eps
    down = float((model.forward(xp).astype(np.float64) * r).sum())
    assert dx[1, 2] == pytest.approx((up - down) / (2 * eps), rel=2e-2, abs=1e-3)


def test_functional_errors():
    a, b = Input((3,)), Input((3,))
    with pytest.raises(ValueError, match="Graph disconnected"):
        Model(a, Dense(2)(b))
    with pytest.raises(ValueError, match="must be KerasTensors"):
        Model(a, np.zeros(3))


def test_subclassed_model_is_traced_from_call():
    class TwoLayer(Model):
        def __init__(self):
            super().__init__()
            self.hidden = Dense(8, activation="relu")
            self.head = Dense(2, activation="softmax")

        def call(self, x, training=False):
            return self.head(self.hidden(x))

    x, y = blobs(64)
    model = TwoLayer()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=5, verbose=0)
    assert model.built and model.output_shape == (None, 2) and len(model.weights) == 4
    assert hist.history["loss"][-1] < hist.history["loss"][0]


# -- bad input ---------------------------------------------------------------------------
def test_fit_before_compile():
    x, y = blobs(8)
    with pytest.raises(ValueError, match=r"You must call `compile\(\)` before calling `fit\(\)`"):
        mlp().fit(x, y)
    with pytest.raises(ValueError, match=r"You must call `compile\(\)` before calling `evaluate\(\)`"):
        mlp().evaluate(x, y)


def test_cardinality_mismatch():
    model = mlp()
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="Data cardinality is ambiguous.*'x' sizes: 10 'y' sizes: 9"):
        model.fit(np.zeros((10, 4)), np.zeros((9, 2)), verbose=0)


def test_wrong_input_shape_names_first_layer():
    model = mlp()
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r'Input 0 of layer "dense" is incompatible with the '
                                         r"layer: .*4.*\(10, 5\)"):
        model.fit(np.zeros((10, 5)), np.zeros((10, 2)), verbose=0)
    with pytest.raises(ValueError, match='layer "dense" is incompatible'):
        model.predict(np.zeros((3, 5)), verbose=0)


def test_unknown_identifiers():
    model = mlp()
    with pytest.raises(ValueError, match="optimizer identifier: nadamx"):
        model.compile(optimizer="nadamx", loss="mse")
    with pytest.raises(ValueError, match="loss identifier: msee"):
        model.compile(loss="msee")
    with pytest.raises(ValueError, match="metric identifier: accurcy"):
        model.compile(loss="mse", metrics=["accurcy"])


def test_non_numeric_data_and_missing_loss_and_empty_model():
    model = mlp()
    model.compile("adam", "mse")
    with pytest.raises(TypeError, match="numeric"):
        model.fit(np.array([["a"] * 4] * 3), np.zeros((3, 2)), verbose=0)
    with pytest.raises(TypeError, match="numeric"):
        model.fit(np.zeros((3, 4)), np.array(["a", "b", "c"]), verbose=0)
    model.compile("adam")
    with pytest.raises(ValueError, match="No loss to compute"):
        model.fit(np.zeros((3, 4)), np.zeros((3, 2)), verbose=0)
    empty = Sequential()
    empty.compile("adam", "mse")
    with pytest.raises(ValueError, match="cannot be built because it has no layers"):
        empty.fit(np.zeros((3, 4)), np.zeros((3, 2)), verbose=0)
    with pytest.raises(ValueError, match="cannot be built because it has no layers"):
        empty.predict(np.zeros((3, 4)), verbose=0)


def test_validation_split_too_small():
    model = mlp()
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="not sufficient to split it"):
        model.fit(np.zeros((1, 4)), np.zeros((1, 2)), validation_split=0.5, verbose=0)


def test_steps_per_epoch_continues_through_the_data():
    x, y = blobs(100)
    model = mlp()
    model.compile("sgd", ["sparse_categorical_crossentropy"])
    seen = []
    from faltung.callbacks import LambdaCallback
    hist = model.fit(x, y, batch_size=30, epochs=3, steps_per_epoch=2, shuffle=False, verbose=0,
                     callbacks=[LambdaCallback(on_train_batch_end=lambda b, l: seen.append(b))])
    assert hist.params["steps"] == 2 and seen == [0, 1] * 3
    assert model.optimizer.iterations == 6


def test_string_regularizer_on_a_variable_is_resolved():
    x, y = blobs(16)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    plain = model.evaluate(x, y, verbose=0)
    model.layers[1].kernel.regularizer = "l2"  # Keras's default l2=0.01
    k = model.layers[1].kernel.value.astype(np.float64)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(plain + 0.01 * (k ** 2).sum(), rel=1e-5)


def test_dense_kernel_regularizer_argument_reaches_the_loss():
    x, y = blobs(16)
    model = Sequential([Input((4,)), Dense(3, kernel_regularizer=regularizers.L2(0.5)),
                        Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    with_reg = model.evaluate(x, y, verbose=0)
    k = model.layers[0].kernel.value.astype(np.float64)
    model.layers[0].kernel.regularizer = None
    assert with_reg == pytest.approx(model.evaluate(x, y, verbose=0) + 0.5 * (k ** 2).sum(), rel=1e-5)


def test_training_step_releases_saved_activations(monkeypatch):
    # Each layer's saved activations are dropped as the backward pass leaves it (peak memory
    # of a step holds the early layers' activations only), for Sequential and functional.
    import faltung
    from faltung import layers as L
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 4)
    seq = faltung.Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                              L.SeparableConv2D(4, 3, padding="same"), L.MaxPooling2D(),
                              L.Flatten(), L.Dense(3, activation="softmax")])
    inp = faltung.Input((8, 8, 1))
    out = L.Dense(3, activation="softmax")(L.Flatten()(L.Conv2D(4, 3, activation="relu")(inp)))
    fun = faltung.Model(inp, out)
    import faltung.models.graph as G
    done, real = [], G.run_backward

    def spy(layer, ctx, dy, need_dx):
        # every call whose backward already ran has freed what it saved
        assert ctx.saved is not None and all(c.saved is None for c in done)
        out = real(layer, ctx, dy, need_dx)
        done.append(ctx)
        return out
    monkeypatch.setattr(G, "run_backward", spy)
    for model in (seq, fun):
        done.clear()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, y)
        assert len(done) == len(model._graph.nodes)
        assert all(c.saved is None for c in done)
        assert not any(l.has_saved() for l in model.layers)
        conv = next(l for l in model.layers if isinstance(l, L.Conv2D))
        with pytest.raises(ValueError, match="needs a preceding forward"):
            conv.backward(np.zeros((4, 6, 6, 4), np.float32))


def test_seeded_cnn_training_is_reproducible():
    # Same seed, same thread count: the same weights to the bit after two epochs, through conv
    # (direct first layer, Winograd 3x3, their filter gradients), batch norm, pooling, dropout
    # and Adam, with shuffling.
    from faltung import layers

    def train():
        set_random_seed(5)
        rng = np.random.default_rng(0)
        x = rng.random((192, 16, 16, 3), dtype=np.float32)
        y = rng.integers(0, 4, 192)
        model = Sequential([
            Input((16, 16, 3)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.BatchNormalization(),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(), layers.Dropout(0.3), Dense(4, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        return model.get_weights()

    before = faltung.get_num_threads()
    faltung.set_num_threads(2)
    try:
        a, b = train(), train()
    finally:
        faltung.set_num_threads(before)
    assert len(a) == len(b) == 10
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
