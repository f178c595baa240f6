"""`.keras` files both ways with Keras 3 in the same process: faltung writes, Keras loads
(compiled and not) and predicts the same numbers; Keras writes, faltung loads. Skipped where
Keras is not installed (run in the benchmark venv with KERAS_BACKEND=torch)."""
import importlib.util
import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import faltung  # noqa: E402
from faltung import backend, layers as L  # noqa: E402
from faltung.models import load_model  # noqa: E402
from faltung.utils import set_random_seed  # noqa: E402

rng = np.random.default_rng(0)


def _fixture_script():
    """tests/fixtures/make_keras_fixtures.py: its builders take `keras` or `faltung`."""
    path = os.path.join(os.path.dirname(__file__), "fixtures", "make_keras_fixtures.py")
    spec = importlib.util.spec_from_file_location("make_keras_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _fixture_script()
BUILDERS = [m.__name__ for m in SCRIPT.MODELS]


def two_masks():
    """Embedding(mask_zero) and Masking masks in one functional model, two inputs."""
    words = L.Input((6,), dtype="int32", name="words")
    seq = L.LSTM(3, return_sequences=True)(L.Embedding(9, 4, mask_zero=True)(words))
    feats = L.Input((5, 2), name="feats")
    g = L.GRU(2)(L.Masking(0.0)(feats))
    m = faltung.Model([words, feats], L.Dense(2, activation="softmax")(
        L.Concatenate()([L.SimpleRNN(2)(seq), g])))
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.integers(1, 9, (8, 6)).astype(np.int32)
    x[::2, 3:] = 0
    f = rng.normal(size=(8, 5, 2)).astype(np.float32)
    f[1::2, 3:] = 0.0
    return m, [x, f], rng.integers(0, 2, 8)


def faltung_model(name):
    return two_masks() if name == "two_masks" else getattr(SCRIPT, name)(faltung)


def as_list(y):
    return y if isinstance(y, list) else [y]


def assert_same(a, b):
    for u, v in zip(as_list(a), as_list(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", BUILDERS + ["two_masks"])
@pytest.mark.parametrize("trained", [False, True])
def test_faltung_file_loads_in_keras(name, trained, tmp_path):
    backend.clear_session()
    set_random_seed(0)
    model, x, y = faltung_model(name)
    if trained:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    expected = model.predict(x, verbose=0)
    with warnings.catch_warnings():
        if trained:  # the optimizer state must load too (untrained, Keras itself warns)
            warnings.simplefilter("error")
        theirs = keras.models.load_model(tmp_path / "m.keras")
    assert_same(theirs.predict(x, verbose=0), expected)
    assert_same(keras.models.load_model(tmp_path / "m.keras", compile=False).predict(
        x, verbose=0), expected)
    assert type(theirs.optimizer).__name__ == type(model.optimizer).__name__
    assert float(theirs.optimizer.learning_rate) == pytest.approx(model.optimizer.learning_rate)
    if trained:
        assert int(theirs.optimizer.iterations) == model.optimizer.iterations > 0


@pytest.mark.parametrize("name", ["conv_misc", "text_conv1d", "rnn_masked", "rnn_time"])
def test_keras_continues_training_where_faltung_stopped(name, tmp_path):
    backend.clear_session()
    set_random_seed(0)
    model, x, y = faltung_model(name)  # no dropout: the next step must be deterministic
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    model.train_on_batch(x, y)
    theirs.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BUILDERS)
def test_keras_file_loads_in_faltung_and_back_in_keras(name, tmp_path):
    keras.utils.set_random_seed(0)
    theirs, x, y = getattr(SCRIPT, name)()
    theirs.fit(x, y, batch_size=4, epochs=1, verbose=0)
    theirs.save(tmp_path / "k.keras")
    expected = theirs.predict(x, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mine = load_model(tmp_path / "k.keras")
    assert mine.optimizer.iterations == int(theirs.optimizer.iterations)
    assert_same(mine.predict(x, verbose=0), expected)
    mine.save(tmp_path / "f.keras")  # and faltung's rewrite loads in Keras again
    assert_same(keras.models.load_model(tmp_path / "f.keras").predict(x, verbose=0), expected)


def test_keras_names_the_faltung_only_class_it_lacks(tmp_path):
    backend.clear_session()
    model = faltung.Sequential([L.Input((4,)), L.Highway(), L.Dense(2)])
    model.save(tmp_path / "m.keras")
    with pytest.raises(Exception, match="Could not locate class 'Highway'"):
        keras.models.load_model(tmp_path / "m.keras")


def test_faltung_only_list_is_exactly_what_keras_lacks():
    from faltung.models.saving import FALTUNG_ONLY
    lacking = {n for n in dir(L) if isinstance(getattr(L, n), type)
               and issubclass(getattr(L, n), L.Layer) and not hasattr(keras.layers, n)}
    lacking |= {n for n in dir(faltung.losses) if isinstance(getattr(faltung.losses, n), type)
                and not n.startswith("_") and not hasattr(keras.losses, n)}
    assert lacking == FALTUNG_ONLY


@pytest.mark.parametrize("optimizer", [("RMSprop", dict(momentum=0.5, centered=True)),
                                       ("Adam", dict(amsgrad=True)), ("Adamax", {}),
                                       ("Adagrad", {})], ids=lambda o: o[0])
def test_optimizer_slots_move_in_keras_order_both_ways(optimizer, tmp_path):
    """Equal-shaped weights, so slots in a wrong order would load without an error."""
    name, kwargs = optimizer
    x, y = SCRIPT.normal(8, 4), SCRIPT.normal(8, 4)
    backend.clear_session()
    set_random_seed(0)
    mine = faltung.Sequential([L.Input((4,)), L.Dense(4, activation="tanh"), L.Dense(4)])
    mine.compile(optimizer=getattr(faltung.optimizers, name)(0.05, **kwargs), loss="mse")
    mine.fit(x, y, batch_size=4, epochs=2, verbose=0)
    mine.save(tmp_path / "f.keras")
    theirs = keras.models.load_model(tmp_path / "f.keras")
    theirs.save(tmp_path / "k.keras")
    again = load_model(tmp_path / "k.keras")
    for model in (mine, theirs, again):
        model.train_on_batch(x, y)
    for a, b, c in zip(mine.get_weights(), theirs.get_weights(), again.get_weights()):
        np.testing.assert_allclose(np.asarray(b), a, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5)
