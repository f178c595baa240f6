"""`dropout` and `recurrent_dropout` of SimpleRNN/LSTM/GRU in device-resident models
(faltung.models.resident_ops._Recurrent; the recurrent mask in cpp/cuda/rnn_common.cuh and the
families' kernels), on the test harness faltung._cuda_host (faltung._device._harness_device()):

- float64: the entry points with a `recurrent_mask` equal the CPU ops (faltung.ops.rnn) forward
  and backward, with and without a time mask;
- float32: a resident fit equals the ordinary CPU fit (losses, weights, predictions): the device
  draws the CPU layer's masks (the cell's seed, or faltung's generator) and applies them as the
  CPU layer does (x times a mask fixed across time, h_{t-1} times one in the recurrent product),
  with go_backwards, masks, Bidirectional and GRU either reset_after;
- float64: one SGD(1) step is the gradient of the training loss under the same masks (central
  differences of the device's loss, the masks redrawn from the cells' seeds);
"""
import numpy as np
import pytest

import faltung
from faltung.layers import GRU, LSTM, Bidirectional, Dense, Input, Masking, SimpleRNN
from faltung.layers.rnn.rnn import RNN
from faltung.models import Sequential
from faltung.ops import rnn as R
from faltung.optimizers import SGD, Adam
from test_cuda_resident_graph import loose, pair, steps_are_central_differences

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(31)
N, T, F = 10, 5, 4
SEQ = RNG.standard_normal((N, T, F)).astype(np.float32)
SEQ[1, 3:] = 0.0  # masked steps where Masking reads them
SEQ[4, :2] = 0.0
TARGETS = RNG.standard_normal((N, 3)).astype(np.float32)

OPS = {  # device family, gates, bias shape of U, CPU forward, CPU backward (saved, dhs, dh_T), options
    "simple_rnn": ("simple_rnn", 1, lambda u: (u,), R.simple_rnn_forward, R.simple_rnn_backward, {}),
    "lstm": ("lstm", 4, lambda u: (4 * u,), R.lstm_forward, lambda s, dhs, dh: R.lstm_backward(s, dhs, dh, None),
             {}),
    "gru": ("gru", 3, lambda u: (2, 3 * u), R.gru_forward, R.gru_backward, {"reset_after": True}),
    "gru-reset-before": ("gru", 3, lambda u: (3 * u,), R.gru_forward, R.gru_backward, {"reset_after": False}),
}


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("name", list(OPS))
def test_entry_points_with_a_recurrent_mask_equal_the_cpu_ops_in_float64(name, masked):
    family, gates, bias_shape, cpu_forward, cpu_backward, options = OPS[name]
    B, T_, F_, U = 3, 4, 2, 5
    x, W = RNG.standard_normal((B, T_, F_)), RNG.standard_normal((F_, gates * U)) * 0.5
    Rk, b = RNG.standard_normal((U, gates * U)) * 0.5, RNG.standard_normal(bias_shape(U))
    h0 = RNG.standard_normal((B, U))
    rmask = (RNG.random((B, U)) >= 0.4) / 0.6
    mask = None
    if masked:
        mask = np.ones((B, T_), bool)
        mask[0, 2:], mask[2, :1] = False, False
    out = cpu_forward(x, W, Rk, b, h0, mask=mask, recurrent_mask=rmask, training=True, **options)
    dhs, dh_T = RNG.standard_normal((B, T_, U)), RNG.standard_normal((B, U))
    want = cpu_backward(out[-1], dhs, dh_T)
    r, DA = host.resident, host.DeviceArray
    opts = dict(options, mask=None if mask is None else DA(mask.astype(np.uint8)), recurrent_mask=DA(rmask))
    got = getattr(r, family + "_forward")(DA(x), DA(W), DA(Rk), DA(b), training=True, initial_state=[DA(h0)] +
                                          ([DA(np.zeros((B, U)))] if family == "lstm" else []), **opts)
    for g, w in zip(got[:-1], out[:-1]):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-12, atol=1e-12)
    grads = getattr(r, family + "_backward")(DA(x), DA(W), DA(Rk), DA(b), got[-1], DA(dhs), DA(dh_T), **opts)
    for g, w, what in zip(grads, want, ("dx", "dkernel", "drecurrent_kernel", "dbias", "dh0")):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12, err_msg=what)
    plain = getattr(r, family + "_forward")(DA(x), DA(W), DA(Rk), DA(b), initial_state=[DA(h0)] +
                                            ([DA(np.zeros((B, U)))] if family == "lstm" else []),
                                            **dict(opts, recurrent_mask=None))
    assert not np.allclose(plain[0].numpy(), got[0].numpy())  # the mask is not idle


def test_the_recurrent_mask_entry_points_name_bad_arguments():
    r, DA = host.resident, host.DeviceArray
    x, W, Rk = DA(np.zeros((2, 3, 4), np.float32)), DA(np.zeros((4, 9), np.float32)), DA(np.zeros((3, 9), np.float32))
    with pytest.raises(ValueError, match=r"gru_forward: expected `recurrent_mask` of shape \(2, 3\)"):
        r.gru_forward(x, W, Rk, None, recurrent_mask=DA(np.ones((2, 4), np.float32)))


MODELS = {  # dropout on each recurrent layer; unseeded layers draw from faltung's generator
    "simple_rnn": lambda: Sequential([
        Input((T, F)), SimpleRNN(5, dropout=0.3, recurrent_dropout=0.4, seed=3, return_sequences=True),
        SimpleRNN(4, dropout=0.2, recurrent_dropout=0.3, go_backwards=True), Dense(3)]),
    "lstm-masked": lambda: Sequential([
        Input((T, F)), Masking(0.0), LSTM(5, dropout=0.4, recurrent_dropout=0.3, seed=5, return_sequences=True),
        LSTM(4, recurrent_dropout=0.25, go_backwards=True), Dense(3)]),
    "gru-bidirectional": lambda: Sequential([
        Input((T, F)), Bidirectional(GRU(3, dropout=0.25, recurrent_dropout=0.5, seed=6, return_sequences=True)),
        GRU(4, reset_after=False, dropout=0.5, recurrent_dropout=0.3, seed=8), Dense(3)]),
}


def rnn_layers(model):
    for layer in model.layers:
        if isinstance(layer, Bidirectional):
            yield layer.forward_layer
            yield layer.backward_layer
        elif isinstance(layer, RNN):
            yield layer


@pytest.mark.parametrize("name", list(MODELS))
def test_dropout_masks_and_training_match_the_cpu_fit(name):
    cpu, dev = pair(MODELS[name])
    for m in (cpu, dev):
        m.compile(Adam(0.02), "mse")
    histories = []
    for m in (cpu, dev):
        faltung.utils.set_random_seed(11)  # the unseeded layers draw from the global generator
        histories.append(m.fit(SEQ, TARGETS, batch_size=4, epochs=2, shuffle=False, verbose=0).history)
    loose(histories[1]["loss"], histories[0]["loss"])
    for a, b in zip(dev.get_weights() + dev.optimizer.get_weights(), cpu.get_weights() + cpu.optimizer.get_weights()):
        loose(a, b)
    loose(dev.predict(SEQ, verbose=0), cpu.predict(SEQ, verbose=0))  # inference: no dropout
    loose(dev.evaluate(SEQ, TARGETS, verbose=0), cpu.evaluate(SEQ, TARGETS, verbose=0))


def test_the_dropout_masks_change_the_fit():
    """The dropout above is not idle: without it the CPU fit differs."""
    def losses(rate):
        model = Sequential([Input((T, F)), LSTM(4, dropout=rate, recurrent_dropout=rate, seed=5), Dense(3)])
        model.set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_weights()])
        model.compile(SGD(0.1), "mse")
        return model.fit(SEQ, TARGETS, batch_size=5, epochs=1, shuffle=False, verbose=0).history["loss"]
    assert not np.allclose(losses(0.4), losses(0.0))


GRAD_MODELS = {  # every layer seeded, so each evaluation redraws the same masks; a weight before
    # each dropout layer, so its dx (masked too) reaches a gradient
    "simple_rnn": lambda: Sequential([Input((T, F)), Dense(4, activation="tanh"),
                                      SimpleRNN(3, dropout=0.3, recurrent_dropout=0.4, seed=2, go_backwards=True),
                                      Dense(3)]),
    "lstm": lambda: Sequential([Input((T, F)), Masking(0.0),
                                LSTM(3, dropout=0.4, recurrent_dropout=0.3, seed=4, return_sequences=True),
                                LSTM(2, dropout=0.3, recurrent_dropout=0.5, seed=9), Dense(3)]),
    "gru": lambda: Sequential([Input((T, F)), Dense(4, activation="tanh"),
                               GRU(3, dropout=0.3, recurrent_dropout=0.4, seed=5), Dense(3)]),
    "gru-reset-before": lambda: Sequential([Input((T, F)), Dense(4, activation="tanh"),
                                            Bidirectional(GRU(3, reset_after=False, dropout=0.5,
                                                              recurrent_dropout=0.4, seed=7)),
                                            Dense(3)]),
}


@pytest.mark.parametrize("name", list(GRAD_MODELS))
def test_float64_step_is_the_gradient_of_the_training_loss_under_the_same_masks(name):
    _, dev = pair(GRAD_MODELS[name], "float64")
    dev.compile(SGD(1.0), "mse")
    res, x, y = dev._resident, SEQ.astype(np.float64), TARGETS.astype(np.float64)
    layers = list(rnn_layers(dev))

    def train_loss(weights):  # the training loss before this batch's update, the masks redrawn alike
        for v, w in zip(dev.weights, weights):
            res.arrays[id(v)] = host.DeviceArray(w, np.float64)
        for layer in layers:
            layer._rng = None  # RNN._dropout_mask reseeds it from the cell's seed
        return float(np.atleast_1d(dev.train_on_batch(x, y))[0])

    w0 = res.get_weights()
    train_loss(w0)
    steps = [a - b for a, b in zip(w0, res.get_weights())]
    steps_are_central_differences(steps, w0, train_loss, dev.weights, np.random.default_rng(5))
