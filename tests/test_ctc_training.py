"""faltung.losses.CTC in compile / fit: Keras's definition, the gradient the trainer starts
from, a small sequence model that learns to read, and per-sample lengths from a mask."""
import numpy as np
import pytest

import faltung as keras
from faltung import layers, ops
from reference.gradcheck import numeric_grad


def make_sequences(n, T=14, n_symbols=4, seed=0):
    """Inputs (n, T, n_symbols + 1): each of 1-4 symbols shown for 2-3 steps, with noise
    steps (feature 0) between; labels (n, 4) padded with 0, and the true lengths."""
    r = np.random.default_rng(seed)
    x = np.zeros((n, T, n_symbols + 1), np.float32)
    y = np.zeros((n, 4), np.int32)
    for i in range(n):
        k = r.integers(1, 5)
        y[i, :k] = r.integers(1, n_symbols + 1, size=k)
        t = 0
        for sym in y[i, :k]:
            t += r.integers(0, 2)
            d = r.integers(2, 4)
            x[i, t:t + d, sym] = 1
            t += d
        x[i, t:, 0] = 1
        x[i, x[i].sum(1) == 0, 0] = 1
    return x + r.normal(scale=0.1, size=x.shape).astype(np.float32), y


def test_ctc_loss_object_matches_ops_and_keras_definition():
    r = np.random.default_rng(0)
    y_pred = r.normal(size=(3, 6, 5)).astype(np.float32)
    y_true = np.array([[1, 2, 0], [3, 3, 0], [4, 0, 0]])
    want = ops.ctc_loss(y_true, y_pred, [2, 2, 1], [6, 6, 6])
    loss = keras.losses.CTC()
    np.testing.assert_allclose(loss(y_true, y_pred), want.mean(), rtol=1e-6)
    np.testing.assert_allclose(keras.losses.ctc(y_true, y_pred), want, rtol=1e-6)
    np.testing.assert_allclose(keras.losses.get("ctc")(y_true, y_pred, sample_weight=[1, 0, 2]),
                               (want[0] + 2 * want[2]) / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="y_true.shape"):
        loss(y_true[:, :, None], y_pred)
    with pytest.raises(ValueError, match="y_pred.shape"):
        loss(y_true, y_pred[0])


def test_ctc_value_and_grad_is_the_gradient_of_the_reduced_loss():
    r = np.random.default_rng(1)
    y_pred = r.normal(size=(3, 5, 4))
    y_true = np.array([[1, 2], [3, 0], [2, 2]])
    sw = np.array([0.5, 1.0, 2.0])
    for reduction in ("sum_over_batch_size", "sum"):
        loss = keras.losses.CTC(reduction=reduction)
        _, g = loss.value_and_grad(y_true, y_pred, sample_weight=sw)
        want = numeric_grad(lambda p: np.asarray(loss(y_true, p, sample_weight=sw)), y_pred,
                            np.ones(()))
        np.testing.assert_allclose(g, want, atol=1e-7)


def test_a_recurrent_ctc_model_learns_to_read_symbols():
    keras.utils.set_random_seed(0)
    x, y = make_sequences(768)
    model = keras.Sequential([
        layers.Input((14, 5)),
        layers.Bidirectional(layers.GRU(24, return_sequences=True)),
        layers.Dense(5),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="ctc")
    hist = model.fit(x[:640], y[:640], batch_size=32, epochs=8, verbose=0)
    assert hist.history["loss"][-1] < 0.25 * hist.history["loss"][0]
    logits = model.predict(x[640:], verbose=0)
    decoded, _ = ops.ctc_decode(logits, np.full(128, 14))
    got = [list(r[r >= 0]) for r in decoded[0]]
    truth = [list(r[r > 0]) for r in y[640:]]
    accuracy = np.mean([g == t for g, t in zip(got, truth)])
    assert accuracy > 0.9, accuracy


def test_masked_outputs_give_per_sample_logit_lengths():
    """faltung-only: a right-padded mask on the output is each sample's logit length."""
    keras.utils.set_random_seed(1)
    x, y = make_sequences(8)
    lengths = np.array([14, 10, 9, 14, 12, 11, 14, 13])
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0  # padding the Masking layer masks
    model = keras.Sequential([layers.Input((14, 5)), layers.Masking(0.0),
                              layers.LSTM(6, return_sequences=True), layers.Dense(5)])
    model.compile(optimizer="sgd", loss=keras.losses.CTC())
    logits = model.predict(x, verbose=0)
    label_len = np.count_nonzero(y, axis=1)
    want = ops.ctc_loss(y, logits, label_len, lengths)
    want = np.where(np.isfinite(want), want, 0.0)
    assert np.all(np.isfinite(want))
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), want.mean(), rtol=1e-5)
    # the padded steps' logits do not change the loss
    logits2 = logits.copy()
    logits2[1, 10:] += 3.0
    np.testing.assert_allclose(ops.ctc_loss(y, logits2, label_len, lengths), want, rtol=1e-6)
    # the function form (LossFunctionWrapper) reads the mask too
    model.compile(optimizer="sgd", loss=keras.losses.ctc)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), want.mean(), rtol=1e-5)
    # training runs on the masked model
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    # a loss that does not read masks refuses one instead of ignoring it
    with pytest.raises(ValueError, match="does not read an output mask"):
        keras.losses.MeanSquaredError()(logits, logits, mask=np.ones((8, 14), bool))
