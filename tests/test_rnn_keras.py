"""SimpleRNN / LSTM / GRU / Bidirectional against Keras 3 itself, on the same weights (skipped
where keras is not installed: run in the benchmark venv with KERAS_BACKEND=torch)."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import faltung  # noqa: E402
from faltung import layers as L  # noqa: E402
from reference.rnn import minimal_rnn_cell  # noqa: E402


def _pair(name, **kw):
    return getattr(L, name)(4, **kw), getattr(keras.layers, name)(4, **kw)


CASES = [dict(), dict(return_sequences=True), dict(go_backwards=True, return_sequences=True),
         dict(return_state=True), dict(activation="relu"), dict(use_bias=False)]


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", CASES)
def test_layer_matches_keras(name, kw):
    x = np.random.default_rng(0).normal(size=(3, 6, 5)).astype(np.float32)
    mine, theirs = _pair(name, **kw)
    ref = theirs(x)
    mine(x)
    assert [w.shape for w in mine.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    mine.set_weights(theirs.get_weights())
    out = mine(x)
    ref = ref if isinstance(ref, (list, tuple)) else [ref]
    out = out if isinstance(out, list) else [out]
    for a, b in zip(out, ref):
        assert np.allclose(a, keras.ops.convert_to_numpy(b), atol=1e-5)


def test_gru_reset_before_matches_keras():
    x = np.random.default_rng(1).normal(size=(2, 4, 3)).astype(np.float32)
    mine, theirs = _pair("GRU", reset_after=False, return_sequences=True)
    ref = keras.ops.convert_to_numpy(theirs(x))
    mine(x)
    mine.set_weights(theirs.get_weights())
    assert np.allclose(mine(x), ref, atol=1e-5)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_masked_sequences_match_keras(name):
    tokens = np.array([[3, 1, 4, 0, 0], [5, 9, 2, 6, 5]])

    def build(lib):
        inp = lib.Input((5,), dtype="int32")
        emb = lib.layers.Embedding(10, 3, mask_zero=True)
        rnn = getattr(lib.layers, name)(4, return_sequences=True)
        return lib.Model(inp, rnn(emb(inp)))
    theirs, mine = build(keras), build(faltung)
    mine.set_weights([keras.ops.convert_to_numpy(w) for w in theirs.get_weights()])
    assert np.allclose(mine.predict(tokens, verbose=0), theirs.predict(tokens, verbose=0), atol=1e-5)


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
def test_bidirectional_matches_keras(mode):
    x = np.random.default_rng(2).normal(size=(2, 5, 3)).astype(np.float32)
    mine = L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode=mode)
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True),
                                        merge_mode=mode)
    ref = keras.ops.convert_to_numpy(theirs(x))
    mine(x)
    mine.set_weights([keras.ops.convert_to_numpy(w) for w in theirs.get_weights()])
    assert np.allclose(mine(x), ref, atol=1e-5)

@pytest.mark.parametrize("go_backwards", [False, True])
def test_user_cell_matches_keras(go_backwards):
    x = np.random.default_rng(3).normal(size=(2, 5, 3)).astype(np.float32)
    kw = dict(return_sequences=True, return_state=True, go_backwards=go_backwards)
    theirs = keras.layers.RNN(minimal_rnn_cell(keras, keras.ops, 4), **kw)
    mine = L.RNN(minimal_rnn_cell(faltung, faltung.ops, 4), **kw)
    ref = [keras.ops.convert_to_numpy(r) for r in theirs(x)]
    mine(x)
    mine.set_weights([keras.ops.convert_to_numpy(w) for w in theirs.get_weights()])
    for a, b in zip(mine(x), ref):
        assert np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("layer", ["LSTM", "Bidirectional"])
def test_activity_regularizer_matches_keras_losses(layer):
    from faltung.layers.layer import CallContext, collect_activity_losses, run_forward
    x = np.random.default_rng(4).normal(size=(3, 5, 2)).astype(np.float32)

    def make(lib):
        reg = lib.regularizers.L1L2(l1=0.1, l2=0.4)
        if layer == "LSTM":
            return lib.layers.LSTM(4, return_state=True, activity_regularizer=reg)
        return lib.layers.Bidirectional(lib.layers.GRU(4, activity_regularizer=reg), merge_mode="ave",
                                        activity_regularizer=reg)
    theirs, mine = make(keras), make(faltung)
    theirs(x)
    mine(x)
    mine.set_weights([keras.ops.convert_to_numpy(w) for w in theirs.get_weights()])
    with collect_activity_losses() as got:
        run_forward(mine, CallContext(), x)  # as a model's layer call
    want = sorted(float(keras.ops.convert_to_numpy(v)) for v in theirs.losses)
    assert np.allclose(sorted(got), want, rtol=1e-5)


def test_activity_penalties_under_outputs_without_a_loss_train_as_keras():
    """One SGD step of a model whose loss reaches only its first output: the penalties of layers
    under the others (a Bidirectional's inner LSTM, a nested model's Dense) still take their
    gradients, and TimeDistributed's inner layer adds none (Keras runs its `call`); weights and
    loss after the step equal Keras's."""
    def make(lib):
        ll, reg = lib.layers, lib.regularizers
        inp, ii = lib.Input((5, 3)), lib.Input((5, 3))
        inner = lib.Model(ii, ll.Dense(2, activity_regularizer=reg.L2(0.4), name="reg")(ii), name="inner")
        outs = [ll.Dense(2, name="head")(ll.Flatten()(inp)),
                ll.Bidirectional(ll.LSTM(2, activity_regularizer=reg.L2(1.0)), name="bi")(inp),
                ll.TimeDistributed(ll.Dense(2, activity_regularizer=reg.L1(0.3)), name="td")(inp),
                inner(ll.Dense(3, name="pre")(inp))]
        model = lib.Model(inp, outs)
        model.compile(loss=["mse", None, None, None], optimizer=lib.optimizers.SGD(0.1))
        return model
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(4, 5, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    theirs, mine = make(keras), make(faltung)
    weights = [rng.normal(size=np.shape(w)).astype(np.float32) * 0.5 for w in theirs.get_weights()]
    theirs.set_weights(weights)
    mine.set_weights(weights)
    ys = [y, y, np.zeros((4, 5, 2), np.float32), np.zeros((4, 5, 2), np.float32)]
    want = float(np.ravel(theirs.train_on_batch(x, ys))[0])
    got = float(np.ravel(mine.train_on_batch(x, ys))[0])
    assert got == pytest.approx(want, rel=1e-5)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        assert np.allclose(a, keras.ops.convert_to_numpy(b), atol=1e-5)
