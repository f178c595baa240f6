"""Recurrent states in device-resident models (faltung.models.resident_ops._Recurrent, the
recurrent entry points of cpp/cuda/bind_resident_layers.hpp), on the test harness
faltung._cuda_host (faltung._device._harness_device()):

- float64: the entry points with initial states, their final states (LSTM's c_T too) and the
  gradients they take (dh_T, dc_T) and give (dh0, dc0), against the CPU ops (faltung.ops.rnn);
- float32: a resident fit equals the ordinary CPU fit (test_cuda_resident_graph.fit_alike) with
  return_state, initial_state (an encoder's states into a decoder, states computed by a Dense)
  and stateful layers (states carried across batches, read through RNN.states, reset_states());
  in float64, gradients through initial states equal central differences of the device's loss
  (constant initial states: test_cuda_resident_refusals).
"""
import numpy as np
import pytest

from faltung.layers import (GRU, LSTM, Bidirectional, Concatenate, Dense, Embedding, Flatten, Input, SimpleRNN,
                            TimeDistributed)
from faltung.losses import SparseCategoricalCrossentropy
from faltung.models import Model, Sequential
from faltung.ops import rnn as R
from faltung.optimizers import SGD, Adam
from test_cuda_resident_graph import compile_both, fit_alike, loose, pair, step_is_the_gradient

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(23)
N, T, F, V = 12, 5, 3, 7
SEQ, SEQ2 = RNG.standard_normal((N, T, F)).astype(np.float32), RNG.standard_normal((N, T, F)).astype(np.float32)
LABELS, SEQ_LABELS = RNG.integers(0, 3, N), RNG.integers(0, 3, (N, T))
TOKENS = RNG.integers(0, V, (N, T)).astype(np.int32)

RECURRENT = {"simple_rnn": SimpleRNN, "lstm": LSTM, "gru": GRU,
             "gru-reset-before": lambda *a, **k: GRU(*a, reset_after=False, **k)}
N_STATES = {"simple_rnn": 1, "lstm": 2, "gru": 1, "gru-reset-before": 1}


# ---- entry points -------------------------------------------------------------------------------

OPS = {  # device family, gates, bias shape of U, CPU forward, CPU backward (saved, dhs, dh_T, dc_T), options
    "simple_rnn": ("simple_rnn", 1, lambda u: (u,), R.simple_rnn_forward,
                   lambda s, dhs, dh, dc: R.simple_rnn_backward(s, dhs, dh), {}),
    "lstm": ("lstm", 4, lambda u: (4 * u,), R.lstm_forward, R.lstm_backward, {}),
    "gru": ("gru", 3, lambda u: (2, 3 * u), R.gru_forward, lambda s, dhs, dh, dc: R.gru_backward(s, dhs, dh),
            {"reset_after": True}),
    "gru-reset-before": ("gru", 3, lambda u: (3 * u,), R.gru_forward,
                         lambda s, dhs, dh, dc: R.gru_backward(s, dhs, dh), {"reset_after": False}),
}


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("name", list(OPS))
def test_entry_points_with_states_equal_the_cpu_ops_in_float64(name, masked):
    """Initial states in, final states out; gradients of the outputs and of the final states in,
    of the inputs, weights and initial states out."""
    family, gates, bias_shape, cpu_forward, cpu_backward, options = OPS[name]
    B, T_, F_, U = 3, 4, 2, 5
    x, W = RNG.standard_normal((B, T_, F_)), RNG.standard_normal((F_, gates * U)) * 0.5
    Rk, b = RNG.standard_normal((U, gates * U)) * 0.5, RNG.standard_normal(bias_shape(U))
    states = [RNG.standard_normal((B, U)) for _ in range(N_STATES[name])]
    mask = None
    if masked:
        mask = np.ones((B, T_), bool)
        mask[0, 2:], mask[1] = False, False  # sample 1: the initial states pass through
    out = cpu_forward(x, W, Rk, b, *states, mask=mask, training=True, **options)
    dhs, finals_grads = RNG.standard_normal((B, T_, U)), [RNG.standard_normal((B, U)) for _ in states]
    want = cpu_backward(out[-1], dhs, *(finals_grads + [None])[:2])
    r, DA = host.resident, host.DeviceArray
    opts = dict(options, mask=None if mask is None else DA(mask.astype(np.uint8)))
    got = getattr(r, family + "_forward")(DA(x), DA(W), DA(Rk), DA(b), training=True,
                                          initial_state=[DA(s) for s in states], **opts)
    assert len(got) == len(out)  # (hs, h_T, [c_T,] workspace), as the CPU op's
    for g, w in zip(got[:-1], out[:-1]):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-12, atol=1e-12)
    extra = {"dc_T": DA(finals_grads[1])} if family == "lstm" else {}
    grads = getattr(r, family + "_backward")(DA(x), DA(W), DA(Rk), DA(b), got[-1], DA(dhs), DA(finals_grads[0]),
                                             **extra, **opts)
    assert len(grads) == 4 + len(states)
    for g, w, what in zip(grads, want, ("dx", "dkernel", "drecurrent_kernel", "dbias", "dh0", "dc0")):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12, err_msg=what)


def test_bad_states_raise_naming_the_entry_point():
    r, DA = host.resident, host.DeviceArray
    x, k = DA(np.zeros((2, 3, 4), np.float32)), DA(np.zeros((4, 12), np.float32))
    rk, h = DA(np.zeros((3, 12), np.float32)), DA(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"lstm_forward: expected `initial_state` a list of 2 arrays"):
        r.lstm_forward(x, k, rk, None, initial_state=[h])
    with pytest.raises(ValueError, match=r"lstm_forward: expected `initial_state\[1\]` of shape \(2, 3\)"):
        r.lstm_forward(x, k, rk, None, initial_state=[h, DA(np.zeros((3, 3), np.float32))])
    ws = r.lstm_forward(x, k, rk, None, training=True)[-1]
    with pytest.raises(ValueError, match=r"lstm_backward: expected `dc_T` of shape \(2, 3\)"):
        r.lstm_backward(x, k, rk, None, ws, None, h, dc_T=DA(np.zeros((2, 4), np.float32)))


# ---- return_state and initial_state: fits against the CPU ---------------------------------------

@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("family", list(RECURRENT))
def test_return_state_matches_the_cpu_fit(family, return_sequences):
    """The output and the final states all feed the loss (the states' gradients reach the
    layer's backward alongside the output's)."""
    def make():
        x = Input((T, F))
        y, *states = RECURRENT[family](4, return_sequences=return_sequences, return_state=True)(x)
        y = Flatten()(y) if return_sequences else y
        return Model(x, Dense(3)(Concatenate()([y] + [Dense(2)(s) for s in states])))
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, SEQ, LABELS, batch_size=5)


def encoder_decoder(family):
    rnn = RECURRENT[family]

    def make():
        enc_in, dec_in = Input((T, F)), Input((T, F))
        _, *states = rnn(4, return_state=True, go_backwards=True)(enc_in)
        seq, *_ = rnn(4, return_sequences=True, return_state=True)(dec_in, initial_state=states)
        return Model([enc_in, dec_in], TimeDistributed(Dense(3))(seq))
    return make


@pytest.mark.parametrize("family", list(RECURRENT))
def test_an_encoder_s_states_start_a_decoder_as_on_the_cpu(family):
    """Sequence to sequence: the encoder's final states are the decoder's initial states (their
    gradients flow back into the encoder); the decoder's states also come out unused."""
    cpu, dev = pair(encoder_decoder(family))
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    fit_alike(cpu, dev, [SEQ, SEQ2], SEQ_LABELS, batch_size=5)


@pytest.mark.parametrize("family", ["simple_rnn", "lstm", "gru"])
def test_initial_states_computed_by_layers_and_a_masked_input_match_the_cpu_fit(family):
    """States from Dense layers on another input; the input masked (Embedding(mask_zero=True)):
    masked steps keep the given states; the output's mask reaches the loss, the states' none."""
    def make():
        tokens, ctx = Input((T,), dtype="int32"), Input((F,))
        states = [Dense(4, activation="tanh")(ctx) for _ in range(N_STATES[family])]
        seq, h, *_ = RECURRENT[family](4, return_sequences=True, return_state=True)(
            Embedding(V, 3, mask_zero=True)(tokens), initial_state=states)
        return Model([tokens, ctx], [Dense(3, name="tags")(seq), Dense(3, name="cls")(h)])
    cpu, dev = pair(make)
    scce = SparseCategoricalCrossentropy(from_logits=True)
    compile_both(cpu, dev, lambda: SGD(0.1, momentum=0.9), [scce, scce], metrics=[["accuracy"], ["accuracy"]])
    fit_alike(cpu, dev, [TOKENS, SEQ[:, 0]], [SEQ_LABELS, LABELS], batch_size=5)


@pytest.mark.parametrize("merge_mode", ["concat", "mul", None])
@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_bidirectional_states_match_the_cpu_fit(family, merge_mode):
    """A Bidirectional encoder's four (two) final states start a Bidirectional decoder (forward
    direction's first, as the CPU's), which reads a masked input and returns its states too."""
    rnn = RECURRENT[family]

    def make():
        enc_in, dec_in = Input((T, F)), Input((T,), dtype="int32")
        _, *states = Bidirectional(rnn(3, return_state=True))(enc_in)
        out = Bidirectional(rnn(3, return_sequences=True, return_state=True), merge_mode=merge_mode)(
            Embedding(V, 3, mask_zero=True)(dec_in), initial_state=states)
        n_out = 2 if merge_mode is None else 1
        seqs, finals = out[:n_out], out[n_out:]
        tags = TimeDistributed(Dense(3), name="tags")(seqs[0] if n_out == 1 else Concatenate()(seqs))
        return Model([enc_in, dec_in], [tags, Dense(3, name="cls")(Concatenate()(finals[::2]))])
    cpu, dev = pair(make)
    scce = SparseCategoricalCrossentropy(from_logits=True)
    compile_both(cpu, dev, lambda: Adam(0.01), [scce, scce])
    fit_alike(cpu, dev, [SEQ, TOKENS], [SEQ_LABELS, LABELS], batch_size=5)


@pytest.mark.parametrize("merge_mode", ["concat", None])
def test_bidirectional_with_a_backward_layer_of_another_kind_matches_the_cpu_fit(merge_mode):
    """An LSTM (2 states, 3 units) under a GRU backward_layer (1 state, 4 units): its initial
    states (from Dense layers) are the forward layer's 2 then the backward layer's 1, and its
    returned states come back in that order with their own widths, as on the CPU."""
    def make():
        seq_in, v_in = Input((T, F)), Input((F,))
        init = [Dense(3)(v_in), Dense(3)(v_in), Dense(4)(v_in)]
        bi = Bidirectional(LSTM(3, return_sequences=True, return_state=True), merge_mode=merge_mode,
                           backward_layer=GRU(4, return_sequences=True, return_state=True, go_backwards=True))
        out = bi(seq_in, initial_state=init)
        n_out = 2 if merge_mode is None else 1
        seqs, finals = out[:n_out], out[n_out:]
        tags = TimeDistributed(Dense(3), name="tags")(seqs[0] if n_out == 1 else Concatenate()(seqs))
        return Model([seq_in, v_in], [tags, Dense(3, name="cls")(Concatenate()(finals))])
    cpu, dev = pair(make)
    scce = SparseCategoricalCrossentropy(from_logits=True)
    compile_both(cpu, dev, lambda: Adam(0.01), [scce, scce])
    fit_alike(cpu, dev, [SEQ, SEQ2[:, 0]], [SEQ_LABELS, LABELS], batch_size=5)


@pytest.mark.parametrize("family", ["simple_rnn", "lstm", "gru-reset-before"])
def test_float64_gradients_through_states_equal_central_differences_of_the_device_loss(family):
    step_is_the_gradient(encoder_decoder(family), [SEQ[:5], SEQ2[:5]], SEQ_LABELS[:5],
                         SparseCategoricalCrossentropy(from_logits=True))


# ---- stateful ----------------------------------------------------------------------------------

B_STATEFUL = 4  # N = 3 batches


def stateful_model(family):
    return lambda: Sequential([Input((T, F), batch_size=B_STATEFUL),
                               RECURRENT[family](4, stateful=True, return_sequences=True),
                               RECURRENT[family](3, stateful=True, go_backwards=True), Dense(3)])


def test_a_stateful_bidirectional_layer_carries_both_directions_states_as_on_the_cpu():
    def make():
        return Sequential([Input((T, F), batch_size=B_STATEFUL), Bidirectional(LSTM(3, stateful=True)), Dense(3)])
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: SGD(0.1), SparseCategoricalCrossentropy(from_logits=True))
    kw = dict(batch_size=B_STATEFUL, verbose=0)
    hc, hd = (m.fit(SEQ, LABELS, epochs=2, shuffle=False, **kw).history for m in (cpu, dev))
    loose(hd["loss"], hc["loss"])
    loose(dev.predict(SEQ2, **kw), cpu.predict(SEQ2, **kw))
    for direction in ("forward_layer", "backward_layer"):
        for a, b in zip(getattr(dev.layers[0], direction).states, getattr(cpu.layers[0], direction).states):
            loose(a, b)
    for m in (cpu, dev):
        m.layers[0].reset_states()
    loose(dev.predict(SEQ2, **kw), cpu.predict(SEQ2, **kw))


@pytest.mark.parametrize("family", list(RECURRENT))
def test_stateful_layers_carry_their_states_as_on_the_cpu(family):
    """fit, evaluate and predict carry the states from batch to batch (and across them); the
    states read through RNN.states equal the CPU's; reset_states() starts again from zeros."""
    cpu, dev = pair(stateful_model(family))
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True))
    kw = dict(batch_size=B_STATEFUL, verbose=0)
    hc, hd = (m.fit(SEQ, LABELS, epochs=2, shuffle=False, **kw).history for m in (cpu, dev))
    loose(hd["loss"], hc["loss"])
    for a, b in zip(dev.get_weights() + dev.optimizer.get_weights(), cpu.get_weights() + cpu.optimizer.get_weights()):
        loose(a, b)
    loose(dev.evaluate(SEQ, LABELS, **kw), cpu.evaluate(SEQ, LABELS, **kw))
    loose(dev.predict(SEQ2, **kw), cpu.predict(SEQ2, **kw))
    for lc, ld in zip(cpu.layers[:2], dev.layers[:2]):
        for a, b in zip(ld.states, lc.states):
            assert a.dtype == np.float32 and np.any(a != 0)
            loose(a, b)
    for layer in cpu.layers[:2] + dev.layers[:2]:
        layer.reset_states()
    assert all(not np.any(s) for l in dev.layers[:2] for s in l.states)
    first = [m.predict(SEQ[:B_STATEFUL], batch_size=B_STATEFUL, verbose=0) for m in (cpu, dev)]
    again = [m.predict(SEQ[:B_STATEFUL], batch_size=B_STATEFUL, verbose=0) for m in (cpu, dev)]
    loose(first[1], first[0])
    loose(again[1], again[0])
    assert not np.allclose(again[0], first[0])  # the states moved on


def test_states_written_on_the_host_go_to_the_device():
    """reset_states(values) and writes into RNN.states arrays are what the next batch starts from."""
    cpu, dev = pair(stateful_model("lstm"))
    h, c = RNG.standard_normal((2, B_STATEFUL, 4)).astype(np.float32)
    for m in (cpu, dev):
        m.layers[0].reset_states([h, c])
        m.layers[1].states[0][...] = 0.5
    loose(dev.predict(SEQ[:B_STATEFUL], batch_size=B_STATEFUL, verbose=0),
          cpu.predict(SEQ[:B_STATEFUL], batch_size=B_STATEFUL, verbose=0))


def test_a_stateful_layer_on_the_cpu_keeps_numpy_states():
    layer = LSTM(2, stateful=True)
    model = Sequential([Input((T, F), batch_size=3), layer])
    assert model._resident is None and [s.shape for s in layer.states] == [(3, 2), (3, 2)]
    y = model.predict(SEQ[:3], batch_size=3, verbose=0)
    np.testing.assert_array_equal(layer.states[0], y)  # h_T
    layer.reset_states()
    assert not np.any(layer.states[0]) and not np.any(layer.states[1])


def test_a_stateful_batch_of_another_size_is_refused_as_on_the_cpu():
    cpu, dev = pair(stateful_model("gru"))
    errors = []
    for m in (cpu, dev):
        with pytest.raises(ValueError, match="batch size of the input sequences must be the same") as e:
            m.predict(SEQ[:3], batch_size=3, verbose=0)
        name = m.layers[0].name  # each model's own first layer, the rest in the same words
        assert str(e.value).startswith(f"Layer {name}: ")
        errors.append(str(e.value).removeprefix(f"Layer {name}: "))
    assert errors[0] == errors[1] and f"received shape {(3, T, F)}" in errors[0]
