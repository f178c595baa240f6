"""The input `dropout` of SimpleRNN/LSTM/GRU in device-resident models
(faltung.models.resident_ops._Recurrent), on the test harness faltung._cuda_host
(faltung._device._harness_device()):

- float32: a resident fit equals the ordinary CPU fit (losses, weights, predictions): the device
  draws the CPU layer's masks (the cell's seed, or faltung's generator) and applies them as the
  CPU layer does (x times a mask fixed across time), with go_backwards, masks, Bidirectional and
  GRU either reset_after;
- float64: one SGD(1) step is the gradient of the training loss under the same masks (central
  differences of the device's loss, the masks redrawn from the cells' seeds);
- recurrent_dropout still raises NotImplementedError naming the layer.
"""
import numpy as np
import pytest

import faltung
from faltung import _device
from faltung.layers import GRU, LSTM, Bidirectional, Dense, Input, Masking, SimpleRNN
from faltung.layers.rnn.rnn import RNN
from faltung.models import Sequential
from faltung.optimizers import SGD, Adam
from test_cuda_resident_graph import loose, pair

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(31)
N, T, F = 10, 5, 4
SEQ = RNG.standard_normal((N, T, F)).astype(np.float32)
SEQ[1, 3:] = 0.0  # masked steps where Masking reads them
SEQ[4, :2] = 0.0
TARGETS = RNG.standard_normal((N, 3)).astype(np.float32)

MODELS = {  # dropout on each recurrent layer; unseeded layers draw from faltung's generator
    "simple_rnn": lambda: Sequential([
        Input((T, F)), SimpleRNN(5, dropout=0.3, seed=3, return_sequences=True),
        SimpleRNN(4, dropout=0.2, go_backwards=True), Dense(3)]),
    "lstm-masked": lambda: Sequential([
        Input((T, F)), Masking(0.0), LSTM(5, dropout=0.4, seed=5, return_sequences=True),
        LSTM(4, dropout=0.25, go_backwards=True), Dense(3)]),
    "gru-bidirectional": lambda: Sequential([
        Input((T, F)), Bidirectional(GRU(3, dropout=0.25, seed=6, return_sequences=True)),
        GRU(4, reset_after=False, dropout=0.5, seed=8), Dense(3)]),
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
        model = Sequential([Input((T, F)), LSTM(4, dropout=rate, seed=5), Dense(3)])
        model.set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_weights()])
        model.compile(SGD(0.1), "mse")
        return model.fit(SEQ, TARGETS, batch_size=5, epochs=1, shuffle=False, verbose=0).history["loss"]
    assert not np.allclose(losses(0.4), losses(0.0))


GRAD_MODELS = {  # every layer seeded, so each evaluation redraws the same masks; a weight before
    # each dropout layer, so its dx (masked too) reaches a gradient
    "simple_rnn": lambda: Sequential([Input((T, F)), Dense(4, activation="tanh"),
                                      SimpleRNN(3, dropout=0.3, seed=2, go_backwards=True), Dense(3)]),
    "lstm": lambda: Sequential([Input((T, F)), Masking(0.0), LSTM(3, dropout=0.4, seed=4, return_sequences=True),
                                LSTM(2, dropout=0.3, seed=9), Dense(3)]),
    "gru": lambda: Sequential([Input((T, F)), Dense(4, activation="tanh"), GRU(3, dropout=0.3, seed=5), Dense(3)]),
    "gru-reset-before": lambda: Sequential([Input((T, F)), Dense(4, activation="tanh"),
                                            Bidirectional(GRU(3, reset_after=False, dropout=0.5, seed=7)),
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
    rng, h = np.random.default_rng(5), 1e-6
    for k, (v, w) in enumerate(zip(dev.weights, w0)):
        for idx in rng.choice(w.size, size=min(3, w.size), replace=False):
            up, down = [a.copy() for a in w0], [a.copy() for a in w0]
            up[k].flat[idx] += h
            down[k].flat[idx] -= h
            numeric = (train_loss(up) - train_loss(down)) / (2 * h)
            np.testing.assert_allclose(steps[k].flat[idx], numeric, rtol=1e-6, atol=1e-9, err_msg=v.name)


def test_recurrent_dropout_still_fails_at_build_naming_the_layer():
    with _device._harness_device():
        with pytest.raises(NotImplementedError, match="recurrent_dropout=0.5.*layer '.*' of type LSTM"):
            Sequential([Input((T, F)), LSTM(3, dropout=0.2, recurrent_dropout=0.5), Dense(2)])
