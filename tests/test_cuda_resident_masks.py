"""Sequence layers and masks of device-resident models (faltung.models.resident_seq, the mask
plumbing of resident_graph, cpp/cuda/bind_resident_seq.hpp) on the test harness
faltung._cuda_host (faltung._device._harness_device()):

- the entry points against numpy and the CPU ops (Embedding's gather and scatter-add, the masks,
  RepeatVector, Permute), exactly;
- float32: a resident fit equals the ordinary CPU fit (losses, metrics, weights, predictions;
  loose) for Embedding, RepeatVector, Permute, masks from Masking and Embedding(mask_zero=True)
  into SimpleRNN/LSTM/GRU, Bidirectional and TimeDistributed, and masked losses and metrics;
- float64: the weight gradients of whole masked graphs against central differences of the
  device's own forward;
- bad inputs raise the CPU's errors; what the device cannot honour raises NotImplementedError
  naming the layer.
"""
import numpy as np
import pytest

from faltung import _device
from faltung.layers import (GRU, LSTM, Add, Average, Bidirectional, Concatenate, Conv1D, Dense, Embedding, Flatten,
                            GlobalAveragePooling1D, Input, Masking, Permute, RepeatVector, SimpleRNN,
                            Subtract, TimeDistributed)
from faltung.losses import SparseCategoricalCrossentropy
from faltung.models import Model, Sequential
from faltung.ops import rnn as R
from faltung.ops.embedding import embedding_backward
from faltung.optimizers import SGD, Adam
from test_cuda_resident_model import loose, pair

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(3)
N, T, V = 10, 5, 7


def padded_tokens(n=N, t=T, vocab=V):
    """Right-padded token ids (0 = padding), lengths 0..t: one sample is all padding."""
    x = RNG.integers(1, vocab, (n, t)).astype(np.int32)
    lengths = RNG.integers(1, t + 1, n)
    lengths[2] = 0
    for i, n_i in enumerate(lengths):
        x[i, n_i:] = 0
    return x


def padded_features(n=N, t=T, f=3):
    """Float sequences whose padded steps are all 0 (Masking's default mask_value)."""
    x = RNG.standard_normal((n, t, f)).astype(np.float32)
    x[1, 3:] = 0
    x[4, :] = 0
    x[6, 1] = 0  # a masked step inside a sequence
    return x


TOKENS, TOKENS2, FEATURES = padded_tokens(), padded_tokens(), padded_features()
LABELS, SEQ_LABELS = RNG.integers(0, 3, N), RNG.integers(0, 3, (N, T))


def fits_alike(make, x, y, batch_size=4, opt=lambda: Adam(0.01), metrics=("accuracy",)):
    """Both fit two epochs in order: logs (loss and metrics), weights, evaluate and predict agree."""
    cpu, dev = pair(make)
    for m in (cpu, dev):
        m.compile(opt(), SparseCategoricalCrossentropy(from_logits=True), metrics=list(metrics))
    hc = cpu.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0).history
    hd = dev.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0).history
    assert sorted(hd) == sorted(hc)
    for key in hc:
        loose(hd[key], hc[key])
    for a, b in zip(dev.get_weights(), cpu.get_weights()):
        loose(a, b)
    loose(dev.evaluate(x, y, verbose=0), cpu.evaluate(x, y, verbose=0))
    loose(dev.predict(x, batch_size=3, verbose=0), cpu.predict(x, batch_size=3, verbose=0))
    return hc, hd


# ---- the entry points ---------------------------------------------------------------------------

def test_embedding_entry_points_equal_numpy_and_the_cpu_kernel():
    r, DA = host.resident, host.DeviceArray
    idx = RNG.integers(0, V, (4, 6)).astype(np.int32)
    idx[0, :3] = 0  # a repeated index
    for dtype in (np.float32, np.float64):
        table = RNG.standard_normal((V, 3)).astype(dtype)
        d_idx, order, offsets = r.indices(idx, V)
        np.testing.assert_array_equal(r.embedding(d_idx, DA(table)).numpy(), table[idx])
        np.testing.assert_array_equal(order.numpy(), np.argsort(idx.reshape(-1), kind="stable"))
        np.testing.assert_array_equal(offsets.numpy(), np.concatenate([[0], np.cumsum(np.bincount(idx.reshape(-1),
                                                                                              minlength=V))]))
        dy = RNG.standard_normal((4, 6, 3)).astype(dtype)
        # the CPU kernel's serial sums, bit for bit
        np.testing.assert_array_equal(r.embedding_backward(DA(dy), order, offsets).numpy(),
                                      embedding_backward(dy, idx, V))
        np.testing.assert_array_equal(r.nonzero_mask(d_idx).numpy(), (idx != 0).astype(np.uint8))


def test_mask_repeat_and_permute_entry_points_equal_numpy():
    r, DA = host.resident, host.DeviceArray
    x = padded_features()
    keep = r.masking_mask(DA(x), 0.0)
    assert keep.dtype == np.uint8
    np.testing.assert_array_equal(keep.numpy(), np.any(x != 0, axis=-1))
    np.testing.assert_array_equal(r.masking_mask(DA(x + 1), 1.0).numpy(), np.any(x + 1 != 1, axis=-1))
    y = RNG.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(r.apply_mask(DA(y), keep).numpy(), y * np.any(x != 0, axis=-1)[..., None])
    np.testing.assert_array_equal(r.reverse_mask(keep).numpy(), keep.numpy()[:, ::-1])
    other = r.masking_mask(DA(np.roll(x, 1, axis=1)), 0.0)
    np.testing.assert_array_equal(r.mask_or(keep, other).numpy(), keep.numpy() | other.numpy())
    m = keep.numpy().astype(bool)[..., None]
    with np.errstate(invalid="ignore"):  # an all-masked sample: 0/0 = NaN, as the CPU layer and Keras
        mean = np.where(m, y, 0).sum(axis=1) / m.sum(axis=1)
    np.testing.assert_allclose(r.masked_mean_time(DA(y), keep).numpy(), mean, rtol=1e-6)
    g = RNG.standard_normal((N, 3)).astype(np.float32)
    np.testing.assert_allclose(r.masked_mean_time_backward(DA(g), keep).numpy(),
                               np.where(m, g[:, None] / np.maximum(m.sum(axis=1, keepdims=True), 1), 0), rtol=1e-6)
    v = RNG.standard_normal((3, 4))
    np.testing.assert_array_equal(r.repeat_vector(DA(v), 5).numpy(), np.repeat(v[:, None], 5, axis=1))
    assert r.repeat_vector(DA(v), 0).shape == (3, 0, 4)
    dy = RNG.standard_normal((3, 5, 4))
    np.testing.assert_allclose(r.repeat_vector_backward(DA(dy)).numpy(), dy.sum(axis=1), rtol=1e-15)
    for shape, perm in (((2, 3, 4), (0, 2, 1)), ((2, 3, 4, 5), (0, 3, 1, 2)), ((1, 2, 1, 3, 2), (0, 4, 2, 3, 1)),
                        ((3, 4), (0, 1))):
        a = RNG.standard_normal(shape)
        np.testing.assert_array_equal(r.permute(DA(a), list(perm)).numpy(), np.transpose(a, perm))


def test_bad_arguments_of_the_sequence_entry_points_name_them():
    r, DA = host.resident, host.DeviceArray
    with pytest.raises(ValueError, match=r"embedding: index 7 at position 3 of `indices` is outside \[0, input_dim=7"):
        r.indices(np.array([1, 2, 0, 7], np.int32), V)
    with pytest.raises(TypeError, match="embedding: expected `indices` of dtype int32"):
        r.indices(np.array([1, 2], np.int64), V)
    table = DA(np.zeros((V, 2), np.float32))
    with pytest.raises(ValueError, match="embedding: `indices` must come from `indices`"):
        r.embedding(DA(np.array([1, 2], np.int32)), table)
    d_idx, _, _ = r.indices(np.array([1, 2], np.int32), V)
    with pytest.raises(ValueError, match=r"`indices` must come from `indices` \(checked against the bound 3"):
        r.embedding(d_idx, DA(np.zeros((3, 2), np.float32)))
    with pytest.raises(ValueError, match=r"permute: expected `perm` a permutation of the 3 axes"):
        r.permute(DA(np.zeros((2, 3, 4), np.float32)), [0, 1, 1])
    with pytest.raises(ValueError, match=r"apply_mask: expected `mask` of shape \(2, 3\)"):
        r.apply_mask(DA(np.zeros((2, 3, 4), np.float32)), DA(np.ones((2, 4), np.uint8)))
    with pytest.raises(ValueError, match="apply_mask: expected `mask` of dtype uint8"):
        r.apply_mask(DA(np.zeros((2, 3, 4), np.float32)), DA(np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError, match=r"lstm_forward: expected `mask` of shape \(2, 3\)"):
        r.lstm_forward(DA(np.zeros((2, 3, 4), np.float32)), DA(np.zeros((4, 8), np.float32)),
                       DA(np.zeros((2, 8), np.float32)), None, mask=DA(np.ones((2, 4), np.uint8)))
    with pytest.raises(ValueError, match="gru_forward: expected `mask` of dtype uint8"):
        r.gru_forward(DA(np.zeros((2, 3, 4), np.float32)), DA(np.zeros((4, 6), np.float32)),
                      DA(np.zeros((2, 6), np.float32)), None, reset_after=False, mask=DA(np.ones((2, 3), np.int32)))


RECURRENT_OPS = {  # entry point family, gates, bias shape of U, CPU forward, CPU backward, options
    "simple_rnn": ("simple_rnn", 1, lambda u: (u,), R.simple_rnn_forward, R.simple_rnn_backward, {}),
    "lstm": ("lstm", 4, lambda u: (4 * u,), R.lstm_forward,
             lambda saved, dhs, dh_T: R.lstm_backward(saved, dhs, dh_T, None), {}),
    "gru": ("gru", 3, lambda u: (2, 3 * u), R.gru_forward, R.gru_backward, {"reset_after": True}),
    "gru-reset-before": ("gru", 3, lambda u: (3 * u,), R.gru_forward, R.gru_backward, {"reset_after": False}),
}


@pytest.mark.parametrize("zero_output", [False, True], ids=["carried", "zeros"])
@pytest.mark.parametrize("name", list(RECURRENT_OPS))
def test_masked_recurrent_entry_points_equal_the_cpu_ops_in_float64(name, zero_output):
    """Masked steps inside, at the ends of and covering whole sequences; gradients of every
    output (masked steps' too) and of the last state."""
    family, gates, bias_shape, cpu_forward, cpu_backward, options = RECURRENT_OPS[name]
    B, T_, F, U = 4, 5, 3, 4
    x, W = RNG.standard_normal((B, T_, F)), RNG.standard_normal((F, gates * U)) * 0.5
    Rk, b = RNG.standard_normal((U, gates * U)) * 0.5, RNG.standard_normal(bias_shape(U))
    mask = np.ones((B, T_), bool)
    mask[0, 3:], mask[1, :2], mask[2, 2], mask[3] = False, False, False, False
    dhs, dh_T = RNG.standard_normal((B, T_, U)), RNG.standard_normal((B, U))
    out = cpu_forward(x, W, Rk, b, mask=mask, zero_output_for_mask=zero_output, training=True, **options)
    want = cpu_backward(out[-1], dhs, dh_T)[:4]
    r, DA = host.resident, host.DeviceArray
    opts = dict(options, mask=DA(mask.astype(np.uint8)), zero_output_for_mask=zero_output)
    out_dev = getattr(r, family + "_forward")(DA(x), DA(W), DA(Rk), DA(b), training=True, **opts)
    hs, h_T, ws = out_dev[0], out_dev[1], out_dev[-1]
    np.testing.assert_allclose(hs.numpy(), out[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_T.numpy(), out[1], rtol=1e-12, atol=1e-12)
    got = getattr(r, family + "_backward")(DA(x), DA(W), DA(Rk), DA(b), ws, DA(dhs), DA(dh_T), **opts)
    for g, w, what in zip(got, want, ("dx", "dkernel", "drecurrent_kernel", "dbias")):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12, err_msg=what)


# ---- float32 fits against the CPU: priority 1 ---------------------------------------------------

def test_embedding_fit_matches_the_cpu():
    def make():
        return Sequential([Input((T,), dtype="int32"), Embedding(V, 4), Flatten(), Dense(3)])
    fits_alike(make, TOKENS, LABELS)


def test_embedding_with_float_indices_and_a_shared_input_matches_the_cpu():
    """Float indices are truncated as the CPU layer truncates them; two Embeddings of different
    vocabulary sizes read one input."""
    def make():
        a = Input((T,))
        e1, e2 = Embedding(V, 3)(a), Embedding(V + 2, 3)(a)
        return Model(a, Dense(3)(Flatten()(Add()([e1, e2]))))
    fits_alike(make, TOKENS.astype(np.float32) + 0.5, LABELS, opt=lambda: SGD(0.1, momentum=0.9))


def test_repeat_vector_and_permute_fit_matches_the_cpu():
    def make():
        return Sequential([Input((4,)), Dense(3, activation="tanh"), RepeatVector(T), Permute((2, 1)),
                           LSTM(4), Dense(3)])
    fits_alike(make, RNG.standard_normal((N, 4)).astype(np.float32), LABELS)


# ---- masks --------------------------------------------------------------------------------------

RECURRENT = {"simple_rnn": SimpleRNN, "lstm": LSTM, "gru": GRU,
             "gru-reset-before": lambda *a, **k: GRU(*a, reset_after=False, **k)}


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backwards"])
@pytest.mark.parametrize("family", list(RECURRENT))
def test_embedding_mask_zero_into_recurrent_layers_matches_the_cpu(family, go_backwards):
    rnn = RECURRENT[family]

    def make():
        return Sequential([Input((T,), dtype="int32"), Embedding(V, 4, mask_zero=True),
                           rnn(4, return_sequences=True, go_backwards=go_backwards), rnn(3), Dense(3)])
    fits_alike(make, TOKENS, LABELS)


@pytest.mark.parametrize("zero_output", [False, True], ids=["carried-output", "zero-output"])
@pytest.mark.parametrize("family", list(RECURRENT))
def test_masking_into_a_sequence_output_masks_the_loss_and_metrics_as_the_cpu(family, zero_output):
    """The mask reaches the output (return_sequences, then Dense and TimeDistributed pass it): the
    loss and the accuracy are the means over the unmasked steps, as the CPU Trainer's."""
    rnn = RECURRENT[family]

    def make():
        return Sequential([Input((T, 3)), Masking(), rnn(4, return_sequences=True, zero_output_for_mask=zero_output),
                           Dense(4, activation="relu"), TimeDistributed(Dense(3))])
    fits_alike(make, FEATURES, SEQ_LABELS)


def test_masked_loss_with_sample_weights_and_weighted_metrics_matches_the_cpu():
    """Per-sample weights times the mask (the CPU Trainer's _apply_mask), a weighted metric and
    a plain one, and validation on the same masked output."""
    def make():
        return Sequential([Input((T,), dtype="int32"), Embedding(V, 4, mask_zero=True),
                           GRU(4, return_sequences=True), Dense(3)])
    cpu, dev = pair(make)
    for m in (cpu, dev):
        m.compile(Adam(0.01), SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  weighted_metrics=["accuracy"])
    sw = RNG.uniform(0.5, 2.0, N).astype(np.float32)
    kw = dict(sample_weight=sw, validation_data=(TOKENS2, SEQ_LABELS), batch_size=4, epochs=2, shuffle=False,
              verbose=0)
    hc, hd = cpu.fit(TOKENS, SEQ_LABELS, **kw).history, dev.fit(TOKENS, SEQ_LABELS, **kw).history
    assert sorted(hd) == sorted(hc) and "val_weighted_accuracy" in hd
    for key in hc:
        loose(hd[key], hc[key])
    for a, b in zip(dev.get_weights(), cpu.get_weights()):
        loose(a, b)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
def test_bidirectional_with_a_mask_matches_the_cpu(merge_mode, return_sequences):
    def make():
        layers = [Input((T,), dtype="int32"), Embedding(V, 3, mask_zero=True),
                  Bidirectional(LSTM(3, return_sequences=return_sequences), merge_mode=merge_mode)]
        return Sequential(layers + ([TimeDistributed(Dense(3))] if return_sequences else [Dense(3)]))
    fits_alike(make, TOKENS, SEQ_LABELS if return_sequences else LABELS)


@pytest.mark.parametrize("keepdims", [False, True], ids=["flat", "keepdims"])
def test_embedding_mask_zero_into_global_average_pooling_matches_the_cpu(keepdims):
    """The classic text classifier: the mean over the unmasked tokens (no sample all padding:
    the CPU's NaN would propagate into both fits alike, but not comparably)."""
    x = TOKENS.copy()
    x[:, 0] = np.maximum(x[:, 0], 1)

    def make():
        layers = [Input((T,), dtype="int32"), Embedding(V, 4, mask_zero=True),
                  GlobalAveragePooling1D(keepdims=keepdims)]
        return Sequential(layers + [Flatten()] * keepdims + [Dense(3)])
    fits_alike(make, x, LABELS)


def test_bidirectional_gru_without_a_mask_and_time_distributed_conv_and_lstm_match_the_cpu():
    def make():
        a = Input((T, 4, 2))
        h = TimeDistributed(Conv1D(3, 2, activation="relu"))(a)  # (N, T, 3, 3)
        h = TimeDistributed(LSTM(3))(h)  # (N, T, 3)
        h = Bidirectional(GRU(3, return_sequences=True), merge_mode="sum")(h)
        return Model(a, Dense(3)(Flatten()(h)))
    fits_alike(make, RNG.standard_normal((N, T, 4, 2)).astype(np.float32), LABELS)


def test_masked_outputs_of_a_functional_model_match_the_cpu():
    """Two outputs: a masked sequence output and an unmasked one, with loss weights."""
    def make():
        a = Input((T,), dtype="int32")
        h = Embedding(V, 4, mask_zero=True)(a)
        seq = LSTM(4, return_sequences=True)(h)
        return Model(a, [Dense(3, name="tags")(seq), Dense(2, name="cls")(GRU(3)(seq))])
    cpu, dev = pair(make)
    for m in (cpu, dev):
        m.compile(Adam(0.01), [SparseCategoricalCrossentropy(from_logits=True), "mse"], loss_weights=[1.0, 0.5],
                  metrics=[["accuracy"], []])
    y = [SEQ_LABELS, RNG.standard_normal((N, 2)).astype(np.float32)]
    hc = cpu.fit(TOKENS, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    hd = dev.fit(TOKENS, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert sorted(hd) == sorted(hc)
    for key in hc:
        loose(hd[key], hc[key])
    for a, b in zip(dev.get_weights(), cpu.get_weights()):
        loose(a, b)


def fit_outputs_alike(make, x, y, losses, metrics=None):
    cpu, dev = pair(make)
    for m in (cpu, dev):
        m.compile(Adam(0.01), losses, metrics=metrics)
    hc = cpu.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    hd = dev.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert sorted(hd) == sorted(hc)
    for key in hc:
        loose(hd[key], hc[key])
    for a, b in zip(dev.get_weights(), cpu.get_weights()):
        loose(a, b)
    for a, b in zip(dev.predict(x, verbose=0), cpu.predict(x, verbose=0)):
        loose(a, b)
    return cpu, dev


@pytest.mark.parametrize("merge", ["add", "subtract", "average", "concatenate-one-unmasked"])
def test_masks_through_merges_match_the_cpu(merge):
    """A residual around a masked LSTM (one mask read twice), two masks or-ed, or a
    concatenation with an unmasked input (its mask then keeps every step), into a masked
    sequence output."""
    two = merge in ("average", "concatenate-one-unmasked")

    def make():
        a, b = Input((T,), dtype="int32"), Input((T,), dtype="int32")
        e = Embedding(V, 4, mask_zero=True)(a)
        h = LSTM(4, return_sequences=True)(e)
        if merge == "concatenate-one-unmasked":
            m = Concatenate()([h, Dense(2)(Embedding(V, 2)(b))])
        elif merge == "average":
            m = Average()([h, Embedding(V, 4, mask_zero=True)(b)])
        else:
            m = {"add": Add, "subtract": Subtract}[merge]()([h, e])
        return Model([a, b] if two else a, Dense(3)(GRU(3, return_sequences=True)(m)))
    fits_alike(make, [TOKENS, TOKENS2] if two else TOKENS, SEQ_LABELS)


def mask_argument_model(with_masking):
    """`layer(x, mask=m)` with m a model input: the layer takes m instead of its input's mask, and
    only the input's mask passes on (none without Masking)."""
    def make():
        x, m = Input((T, 3)), Input((T,), dtype="int32")
        h = Masking()(x) if with_masking else x
        h = LSTM(4, return_sequences=True)(h, mask=m)
        pooled = GlobalAveragePooling1D()(Bidirectional(GRU(3, return_sequences=True))(h, mask=m), mask=m)
        return Model([x, m], [Dense(3, name="tags")(h), Dense(3, name="cls")(pooled)])
    return make


STEPS = (RNG.random((N, T)) > 0.3).astype(np.int32)
STEPS[:, 0] = 1  # no sample all masked (the pooled mean would be NaN)


@pytest.mark.parametrize("with_masking", [False, True], ids=["argument-only", "argument-over-masking"])
def test_mask_arguments_that_are_model_inputs_evaluate_as_the_cpu(with_masking):
    """Forward, losses and metrics as the CPU's (whose graph cannot train through a `mask=`
    tensor argument yet: its backward expects input gradients for it)."""
    cpu, dev = pair(mask_argument_model(with_masking))
    for m in (cpu, dev):
        m.compile(Adam(0.01), [SparseCategoricalCrossentropy(from_logits=True)] * 2, metrics=[["accuracy"]] * 2)
    x, y = [FEATURES, STEPS], [SEQ_LABELS, LABELS]
    loose(dev.evaluate(x, y, batch_size=4, verbose=0), cpu.evaluate(x, y, batch_size=4, verbose=0))
    for a, b in zip(dev.predict(x, batch_size=3, verbose=0), cpu.predict(x, batch_size=3, verbose=0)):
        loose(a, b)
    dev.fit(x, y, batch_size=4, epochs=1, verbose=0)  # trains on the device


def test_float64_gradients_through_mask_arguments():
    graph_gradients_match_central_differences(mask_argument_model(True), [FEATURES[:4], STEPS[:4]])


def test_bidirectional_without_merge_returns_both_directions_as_the_cpu():
    """merge_mode=None: two outputs, each direction masked, reversed back, with its own loss."""
    def make():
        a = Input((T,), dtype="int32")
        f, b = Bidirectional(LSTM(3, return_sequences=True), merge_mode=None)(Embedding(V, 4, mask_zero=True)(a))
        return Model(a, [Dense(3, name="tags")(f), Dense(2, name="cls")(SimpleRNN(2)(b))])
    fit_outputs_alike(make, TOKENS, [SEQ_LABELS, RNG.standard_normal((N, 2)).astype(np.float32)],
                      [SparseCategoricalCrossentropy(from_logits=True), "mse"], metrics=[["accuracy"], []])


def test_bidirectional_direction_without_a_gradient_is_left_alone_as_on_the_cpu():
    """The backward direction feeds only an output without a loss: its weights stay as they were."""
    def make():
        a = Input((T, 3))
        f, b = Bidirectional(GRU(3), merge_mode=None)(a)
        return Model(a, [Dense(3)(f), b])
    cpu, dev = fit_outputs_alike(make, FEATURES, [LABELS, None], [SparseCategoricalCrossentropy(from_logits=True),
                                                                  None])
    for a, b in zip(dev.layers[1].backward_layer.get_weights(), cpu.layers[1].backward_layer.get_weights()):
        np.testing.assert_array_equal(a, b)  # both still the initial weights


# ---- float64: gradients of whole masked graphs ----------------------------------------------------

def graph_gradients_match_central_differences(make, x, k=4):
    """sum(out * R) over the outputs of the resident graph in float64 (x: the input, or a list of
    the inputs): every weight gradient the backward gives equals central differences of the
    forward, at sampled coordinates."""
    with _device._harness_device("float64"):
        model = make()
    res = model._resident
    res._trainable = {id(v) for v in model.trainable_weights}

    def out():
        return res.graph.forward(res, res._upload(x if isinstance(x, list) else [x])[0], True)

    y, saved, _ = out()
    Rs = [RNG.standard_normal(o.shape) for o in y]
    res.grads = {}
    res.graph.backward(res, saved, [res.DeviceArray(R, np.float64) for R in Rs])
    loss = lambda: sum(float(np.sum(o.numpy() * R)) for o, R in zip(out()[0], Rs))  # noqa: E731
    eps = 1e-6
    for v in model.trainable_weights:
        w, g = res.arrays[id(v)].numpy(), res.grads[id(v)].numpy()
        assert g.shape == w.shape, v.name
        for flat in RNG.choice(w.size, size=min(k, w.size), replace=False):
            idx = np.unravel_index(flat, w.shape)
            old, diffs = w[idx], []
            for step in (eps, -eps):
                w[idx] = old + step
                res.arrays[id(v)] = res.DeviceArray(w, np.float64)
                diffs.append(loss())
            w[idx] = old
            res.arrays[id(v)] = res.DeviceArray(w, np.float64)
            np.testing.assert_allclose(g[idx], (diffs[0] - diffs[1]) / (2 * eps), rtol=1e-6, atol=1e-8,
                                       err_msg=v.name)


def test_float64_gradients_of_embedding_masks_and_bidirectional():
    def make():
        a = Input((T,), dtype="int32")
        h = Embedding(V, 3, mask_zero=True)(a)
        h = Bidirectional(GRU(3, return_sequences=True, go_backwards=False), merge_mode="mul")(h)
        h = SimpleRNN(3, go_backwards=True, return_sequences=True)(h)
        pooled = GlobalAveragePooling1D()(TimeDistributed(Dense(2))(h))
        return Model(a, Dense(2)(pooled))
    x = TOKENS[:4].copy()
    x[:, 0] = np.maximum(x[:, 0], 1)  # no sample all padding (its mean would be NaN)
    graph_gradients_match_central_differences(make, x)


def test_float64_gradients_of_masking_repeat_and_permute():
    def make():
        a = Input((T, 3))
        h = LSTM(3, return_sequences=True, zero_output_for_mask=True)(Masking()(a))
        h = Bidirectional(SimpleRNN(2), merge_mode="concat")(Masking()(Permute((2, 1))(Dense(T)(h))))
        return Model(a, LSTM(2, return_sequences=True)(RepeatVector(3)(Dense(2)(h))))
    graph_gradients_match_central_differences(make, FEATURES[:4])


# ---- bad inputs, and what the device cannot honour ----------------------------------------------

def test_out_of_range_indices_raise_the_cpu_error():
    def make():
        return Sequential([Input((T,), dtype="int32"), Embedding(V, 3, name="emb"), Flatten(), Dense(3)])
    cpu, dev = pair(make)
    bad = TOKENS.copy()
    bad[1, 2] = V
    errors = []
    for m in (cpu, dev):
        with pytest.raises(ValueError, match=r'Layer "emb": embedding: index 7 at position 7') as e:
            m.predict(bad, verbose=0)
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    with pytest.raises(ValueError, match=r'Layer "emb": embedding: index -1 at position'):
        dev.predict(TOKENS - 1, verbose=0)


@pytest.mark.parametrize("build,match", [
    (lambda a: LSTM(2, zero_output_for_mask=True)(Masking()(a)), "zero_output_for_mask=True and return_sequences"),
    (lambda a: TimeDistributed(Masking())(a), "inner layer Masking of TimeDistributed"),
    (lambda a: TimeDistributed(Embedding(V, 2))(a), "inner layer Embedding"),
], ids=["zero-output-last",
        "time-distributed-masking", "time-distributed-embedding"])
def test_what_the_device_cannot_honour_fails_at_build_naming_the_layer(build, match):
    with _device._harness_device():
        a = Input((T, 3))
        with pytest.raises(NotImplementedError, match=match):
            Model(a, build(a))


def test_masks_without_a_device_leave_the_cpu_path_alone():
    """A model built outside the scope has no Resident, masks and all."""
    model = Sequential([Input((T,), dtype="int32"), Embedding(V, 3, mask_zero=True), LSTM(2)])
    assert model._resident is None


def test_device_module_has_the_sequence_entry_points():
    cuda = pytest.importorskip("faltung._cuda", reason="a CPU-only build (no faltung._cuda)")
    for name in ("indices", "embedding", "embedding_backward", "masking_mask", "nonzero_mask", "apply_mask",
                 "reverse_mask", "repeat_vector", "repeat_vector_backward", "permute"):
        assert hasattr(cuda.resident, name), name
