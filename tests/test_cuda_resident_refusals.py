"""What device-resident models used to refuse with NotImplementedError and the CPU runs
(faltung.models.resident_graph), on the test harness faltung._cuda_host
(faltung._device._harness_device()): each case's resident fit equals the ordinary CPU fit on the
same weights (test_cuda_resident_graph.fit_alike: losses, weights, optimizer slots, evaluate,
predict), and in float64 the gradient one SGD step applies equals central differences of the
device's own loss (test_cuda_resident_graph.step_is_the_gradient):

1. masks into Concatenate on an axis but the last (concatenated along it, an input without a
   mask counting as all kept, as Concatenate.compute_mask);
2. a nested model called with `mask=` (tensors, one per input of it: its graph takes them
   instead of its inputs' masks, as Model.forward; an Embedding first in it reads its tokens),
   a `mask=` a layer computes (nonzero = keep) or a model input that is also read as a value,
   and a nested model whose LSTM takes `initial_state` tensors computed in the outer graph;
3. constant `initial_state`s (numpy arrays, lists; mixed with tensors), checked as the CPU layer
   checks them;
4. masks into the elementwise merges whose inputs broadcast (the output's mask the inputs' or-ed
   as numpy broadcasts them, as Merge.compute_mask), masks of different ranks too (aligned on
   the last axis, as numpy; a ValueError where they do not broadcast, as on the CPU).
"""
import numpy as np
import pytest

from faltung import _device
from faltung.layers import (GRU, LSTM, Add, Average, Bidirectional, Concatenate, Dense, Embedding, Input, Masking,
                            Maximum, Minimum, Multiply, Reshape, SimpleRNN, Subtract)
from faltung.losses import SparseCategoricalCrossentropy
from faltung.models import Model, Sequential
from faltung.optimizers import Adam
from faltung.utils import set_random_seed
from test_cuda_resident_graph import compile_both, fit_alike, pair, step_is_the_gradient

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(1414)


@pytest.fixture(autouse=True)
def _seeded_weights():
    """The same initial weights in every run (the cases compare fits, not initializers)."""
    set_random_seed(14)
N, T, F = 10, 5, 3
SCCE = SparseCategoricalCrossentropy(from_logits=True)


def padded(n=N, t=T, f=F):
    """Float sequences with padded (all-zero) steps, a masked step inside one, one all padding."""
    x = RNG.standard_normal((n, t, f)).astype(np.float32)
    x[1, t // 2:], x[4, :], x[6, min(1, t - 1)] = 0, 0, 0
    return x


SEQ_A, SEQ_B, SEQ_C, STEP = padded(), padded(t=3), padded(), padded(t=1)
LABELS = RNG.integers(0, 3, N)


def fits_and_steps(make, x):
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: Adam(0.01), SCCE)
    fit_alike(cpu, dev, x, LABELS, batch_size=4)
    step_is_the_gradient(make, [a[:5] for a in x], LABELS[:5], SCCE)


# ---- 1. Concatenate on an axis but the last ------------------------------------------------------

def concat_time(axis=1, masked=(True, False, True)):
    """Three sequences concatenated along time (lengths 5, 3, 5), some masked, into an LSTM that
    reads the concatenated mask."""
    def make():
        a, b, c = Input((T, F), name="a"), Input((3, F), name="b"), Input((T, F), name="c")
        xs = [Masking()(t) if m else Dense(F)(t) for t, m in zip((a, b, c), masked)]
        h = LSTM(4, return_sequences=True)(Concatenate(axis=axis, name="cat")(xs))
        return Model([a, b, c], Dense(3)(LSTM(3)(h)))
    return make


@pytest.mark.parametrize("masked", [(True, False, True), (True, True, True), (False, True, False)],
                         ids=["some-masked", "all-masked", "one-masked"])
def test_masks_concatenated_along_time_match_the_cpu(masked):
    fits_and_steps(concat_time(1, masked), [SEQ_A, SEQ_B, SEQ_C])


def test_the_concatenated_mask_equals_the_cpu_mask():
    """The mask the device computes is the CPU layer's compute_mask (read through a masked LSTM)."""
    make = concat_time(1, (True, False, True))
    cpu, dev = pair(make)
    layer = dev.get_layer("cat")
    ma, mc = np.any(SEQ_A != 0, -1), np.any(SEQ_C != 0, -1)
    want = layer.compute_mask([SEQ_A, SEQ_B, SEQ_C], [ma, None, mc])
    np.testing.assert_array_equal(want, np.concatenate([ma, np.ones((N, 3), bool), mc], axis=1))
    res = dev._resident
    DA = host.DeviceArray
    got = res.graph._concat_masks(res, None, [DA(ma.astype(np.uint8)), None, DA(mc.astype(np.uint8))],
                                  [DA(SEQ_A), DA(SEQ_B), DA(SEQ_C)], 1)
    np.testing.assert_array_equal(got.numpy().astype(bool), want)
    for axis in (0, 2):  # the batch axis; the mask's last (that of a (B, T, 1, F) input)
        xs = [RNG.standard_normal((2, 3, 1, 2)), RNG.standard_normal((2, 3, 1, 2))]
        ms = [RNG.random((2, 3, 1)) > 0.5, None]
        got = res.graph._concat_masks(res, None, [DA(ms[0].astype(np.uint8)), None],
                                      [DA(x.astype(np.float32)) for x in xs], axis)
        np.testing.assert_array_equal(got.numpy().astype(bool), Concatenate(axis=axis).compute_mask(xs, ms))



def test_all_kept_masks_are_uploaded_once_per_batch(monkeypatch):
    """Concatenate along time of masked, unmasked and masked inputs, then on the last axis with
    an unmasked one: the all-ones arrays those masks are made of go up once per shape and dtype
    in a step (each batch's own, not the 3 + 1 calls')."""
    def make():
        a, b, c, d = Input((T, F)), Input((3, F)), Input((T, F)), Input((2 * T + 3, 2))
        h = Concatenate(axis=1)([Masking()(a), Dense(F)(b), Masking()(c)])
        return Model([a, b, c, d], Dense(3)(LSTM(3)(Concatenate()([h, d]))))
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: Adam(0.01), SCCE)
    x = [SEQ_A, SEQ_B, SEQ_C, RNG.standard_normal((N, 2 * T + 3, 2)).astype(np.float32)]
    fit_alike(cpu, dev, x, LABELS, batch_size=4)
    uploads = []
    monkeypatch.setattr(dev._resident, "DeviceArray",
                        lambda a, dtype=None: uploads.append((a.shape, a.dtype.str)) or host.DeviceArray(a, dtype))
    dev.train_on_batch([a[:4] for a in x], LABELS[:4])
    ones = [(4, T, 1), (4, 3, 1), (4, 2 * T + 3)]  # float (B, T, 1), (B, 3, 1); uint8: d's mask
    assert sorted(u for u in uploads if u[0] in ones) == sorted(zip(ones, ["<f4", "<f4", "|u1"]))


# ---- 4. masks into merges that broadcast ---------------------------------------------------------

def broadcast_merge(kind):
    """A masked (B, T, F) sequence merged with a masked (B, 1, F) one (masks (B, T) and (B, 1),
    or-ed as they broadcast) and an unmasked (B, T, 1) one, into an LSTM that reads the mask."""
    def make():
        a, p = Input((T, F), name="a"), Input((1, F), name="p")
        merged = kind(name="merge")([Masking()(a), Masking()(p)])
        h = LSTM(4)(merged)
        return Model([a, p], Dense(3)(h))
    return make


@pytest.mark.parametrize("kind", [Multiply, Maximum, Minimum, Add, Subtract, Average],
                         ids=lambda k: k.__name__.lower())
def test_masks_of_broadcast_merge_inputs_match_the_cpu(kind):
    fits_and_steps(broadcast_merge(kind), [SEQ_A, STEP])


def test_the_or_of_broadcast_masks_equals_the_cpu_mask():
    cpu, dev = pair(broadcast_merge(Multiply))
    ma, mp = np.any(SEQ_A != 0, -1), np.any(STEP != 0, -1)
    want = dev.get_layer("merge").compute_mask([SEQ_A, STEP], [ma, mp])
    DA = host.DeviceArray
    got = dev._resident.graph._or_masks(dev._resident, None, [DA(ma.astype(np.uint8)), DA(mp.astype(np.uint8))],
                                        want.shape)
    np.testing.assert_array_equal(got.numpy().astype(bool), want)


def ranks_merge():
    """(B, T) and (B,) masks into Multiply: the CPU or-s them as numpy broadcasts (aligned on the
    last axis, not the batch), which works when B is T (or 1) and raises otherwise."""
    def make():
        a, p = Input((T, F)), Input((F,))
        return Model([a, p], Dense(3)(LSTM(2)(Multiply(name="merge")([Masking()(a), Masking()(p)]))))
    return make


def test_masks_of_different_ranks_into_a_merge_match_the_cpu():
    x = [SEQ_A[:T], STEP[:T, 0]]  # batch T: the masks broadcast to (T, T) on the CPU
    cpu, dev = pair(ranks_merge())
    compile_both(cpu, dev, lambda: Adam(0.01), SCCE)
    fit_alike(cpu, dev, x, LABELS[:T], batch_size=T)
    step_is_the_gradient(ranks_merge(), x, LABELS[:T], SCCE)
    one = [SEQ_A[:1], STEP[:1, 0]]  # batch 1
    np.testing.assert_allclose(dev.predict(one, verbose=0), cpu.predict(one, verbose=0), rtol=2e-4, atol=2e-5)


def test_masks_of_different_ranks_that_do_not_broadcast_raise_as_on_the_cpu():
    cpu, dev = pair(ranks_merge())
    x = [SEQ_A[:4], STEP[:4, 0]]
    with pytest.raises(ValueError, match="broadcast"):
        cpu.predict(x, verbose=0)
    with pytest.raises(ValueError, match=r'"merge" \(Multiply\): the masks of its inputs, of shapes \(4, 5\), '
                                         r"\(4,\), do not broadcast"):
        dev.predict(x, verbose=0)


# ---- 2. a nested model called with tensor keyword arguments -------------------------------------

KEEP = (RNG.random((N, T)) > 0.3).astype(np.float32)  # a `mask=` model input (nonzero = keep)
KEEP[3] = 0  # one sample all masked


def nested_with_mask(masked_outer=False):
    """inner(x, mask=m): the inner LSTMs read m (instead of x's own Masking mask, with
    masked_outer), as the CPU's Model.forward gives its graph the argument's mask."""
    def make():
        x, m = Input((T, F), name="x"), Input((T,), name="m")
        inner = Sequential([Input((T, F)), LSTM(4, return_sequences=True), LSTM(3)], name="inner")
        h = inner(Masking()(x) if masked_outer else x, mask=m)
        return Model([x, m], Dense(3)(h))
    return make


def nested_two_inputs_with_masks():
    """inner([a, b], mask=[m, None]): the inner LSTM on a reads m; b enters without a mask (its
    Masking mask dropped, as on the CPU), so the Add after them has none (Merge.compute_mask) and
    the LSTM after it runs unmasked; outside, b's Masking mask still reaches another LSTM."""
    def make():
        a, b, m = Input((T, F), name="a"), Input((T, F), name="b"), Input((T,), name="m")
        p, q = Input((T, F)), Input((T, F))
        hp = LSTM(4, return_sequences=True)(p)
        inner = Model([p, q], LSTM(3)(Add()([hp, Dense(4)(q)])), name="inner2")
        return Model([a, b, m], Dense(3)(Concatenate()([inner([a, Masking()(b)], mask=[m, None]),
                                                        LSTM(2)(Masking()(b))])))
    return make


def nested_initial_state():
    """A nested model whose LSTM takes `initial_state` from its inputs, fed from the outer graph."""
    def make():
        x, v = Input((T, F), name="x"), Input((2,), name="v")
        s, h0, c0 = Input((T, F)), Input((4,)), Input((4,))
        inner = Model([s, h0, c0], LSTM(4)(s, initial_state=[h0, c0]), name="stateful_inner")
        return Model([x, v], Dense(3)(inner([x, Dense(4, activation="tanh")(v), Dense(4)(v)])))
    return make


VEC = RNG.standard_normal((N, 2)).astype(np.float32)


@pytest.mark.parametrize("masked_outer", [False, True], ids=["plain", "overriding-masking"])
def test_a_nested_model_called_with_a_mask_argument_matches_the_cpu(masked_outer):
    fits_and_steps(nested_with_mask(masked_outer), [SEQ_A, KEEP])


def test_a_nested_model_of_two_inputs_called_with_a_list_of_masks_matches_the_cpu():
    fits_and_steps(nested_two_inputs_with_masks(), [SEQ_A, SEQ_C, KEEP])


def test_a_nested_model_whose_lstm_takes_initial_states_from_the_outer_graph_matches_the_cpu():
    fits_and_steps(nested_initial_state(), [SEQ_A, VEC])



def computed_mask(nested):
    """A `mask=` a layer computes (a Reshape of a model input, which a Dense reads too): the
    LSTM, or the nested model's LSTMs, read it as nonzero = keep, as the CPU layers do."""
    def make():
        x, m = Input((T, F), name="x"), Input((T, 1), name="m")
        keep = Reshape((T,))(m)
        if nested:
            h = Sequential([Input((T, F)), LSTM(4, return_sequences=True), LSTM(3)], name="inner")(x, mask=keep)
        else:
            h = LSTM(3)(LSTM(4, return_sequences=True)(x, mask=keep))
        return Model([x, m], Dense(3)(Concatenate()([h, Dense(2)(keep)])))
    return make


@pytest.mark.parametrize("nested", [False, True], ids=["layer", "nested-model"])
def test_a_mask_argument_a_layer_computes_matches_the_cpu(nested):
    fits_and_steps(computed_mask(nested), [SEQ_A, KEEP[..., None] * 2.5])  # (nonzero, not 1: kept)


def mask_input_read_as_a_value(nested):
    """A model input that is a `mask=` (of a layer, or of a nested model) and a Dense's input."""
    def make():
        x, m = Input((T, F), name="x"), Input((T,), name="m")
        if nested:
            h = Sequential([Input((T, F)), LSTM(3)], name="inner")(x, mask=m)
        else:
            h = LSTM(3)(x, mask=m)
        return Model([x, m], Dense(3)(Concatenate()([h, Dense(2)(m)])))
    return make


@pytest.mark.parametrize("nested", [False, True], ids=["layer", "nested-model"])
def test_a_mask_input_also_read_as_a_value_matches_the_cpu(nested):
    fits_and_steps(mask_input_read_as_a_value(nested), [SEQ_A, KEEP * 2.5])


TOKENS = np.random.default_rng(15).integers(0, 4, (N, T)).astype(np.int32)  # zeros among them


def nested_embedding(mask_zero):
    """inner([tokens, x], mask=[None, m]): the Embedding first in it reads the tokens (a model
    input); with mask_zero its own mask reaches the LSTM after it, as the CPU's Embedding makes
    its mask whatever it receives; x enters with m."""
    def make():
        tok, x, m = Input((T,), dtype="int32", name="tok"), Input((T, F), name="x"), Input((T,), name="m")
        t_in, x_in = Input((T,), dtype="int32"), Input((T, F))
        h = Concatenate()([LSTM(3)(Embedding(4, 3, mask_zero=mask_zero)(t_in)), LSTM(2)(x_in)])
        inner = Model([t_in, x_in], h, name="inner")
        return Model([tok, x, m], Dense(3)(inner([tok, x], mask=[None, m])))
    return make


def nested_embedding_masked(mask_zero):
    """A Sequential that starts with an Embedding, called with `mask=` (which the Embedding
    drops, as on the CPU)."""
    def make():
        tok, m = Input((T,), dtype="int32", name="tok"), Input((T,), name="m")
        inner = Sequential([Input((T,), dtype="int32"), Embedding(4, 3, mask_zero=mask_zero), LSTM(4)], name="text")
        return Model([tok, m], Dense(3)(inner(tok, mask=m)))
    return make


@pytest.mark.parametrize("mask_zero", [False, True], ids=["no-mask-zero", "mask-zero"])
def test_an_embedding_first_in_a_nested_model_called_with_mask_matches_the_cpu(mask_zero):
    fits_and_steps(nested_embedding(mask_zero), [TOKENS, SEQ_A, KEEP])
    fits_and_steps(nested_embedding_masked(mask_zero), [TOKENS, KEEP])


def test_tokens_a_nested_embedding_reads_feed_embedding_layers_only():
    t_in = Input((T,), dtype="int32")
    inner = Model(t_in, Concatenate()([Embedding(4, 2)(t_in), Reshape((T, 1))(t_in)]), name="inner")  # (the CPU's)
    with _device._harness_device():
        tok, m = Input((T,), dtype="int32"), Input((T,))
        with pytest.raises(NotImplementedError, match=r"layer '.*' \(Reshape\) reads an input that an Embedding "
                                                      "also reads"):
            Model([tok, m], inner(tok, mask=m))


# ---- 3. constant `initial_state` ----------------------------------------------------------------

B = 5  # a constant state has the batch's size (the CPU layer's check): every batch has B samples
H0, C0 = RNG.standard_normal((2, B, 4)).astype(np.float32)
G0, S0 = RNG.standard_normal((B, 3)).astype(np.float32), RNG.standard_normal((B, 2))  # (float64: cast)


def constant_states(kind):
    def make():
        a, v = Input((T, F), batch_size=B, name="a"), Input((2,), batch_size=B, name="v")
        if kind == "lstm-mixed":  # a tensor h0 and a constant c0
            h = LSTM(4, name="rnn")(a, initial_state=[Dense(4, activation="tanh")(v), C0])
        elif kind == "lstm-constants":
            h = LSTM(4, return_sequences=True)(Masking()(a), initial_state=[H0, C0])
            h = GRU(3)(h, initial_state=G0)  # one array, not a list
        else:  # Bidirectional: the forward direction's state, then the backward's
            h = Bidirectional(SimpleRNN(2, name="srnn"), name="rnn")(a, initial_state=[S0.tolist(), Dense(2)(v)])  # a list
        return Model([a, v], Dense(3)(h))
    return make


@pytest.mark.parametrize("kind", ["lstm-mixed", "lstm-constants", "bidirectional"])
def test_constant_initial_states_match_the_cpu(kind):
    x = [SEQ_A[:B], VEC[:B]]
    cpu, dev = pair(constant_states(kind))
    compile_both(cpu, dev, lambda: Adam(0.01), SCCE)
    fit_alike(cpu, dev, x, LABELS[:B], batch_size=B)
    step_is_the_gradient(constant_states(kind), x, LABELS[:B], SCCE)


def test_a_constant_initial_state_of_another_batch_size_is_refused_as_on_the_cpu():
    for kind in ("lstm-mixed", "bidirectional"):
        cpu, dev = pair(constant_states(kind))
        errors = []
        for m in (cpu, dev):
            with pytest.raises(ValueError, match=r"expected an initial state of shape \(3, \d\), received shape") as e:
                m.predict([SEQ_A[:3], VEC[:3]], batch_size=3, verbose=0)
            errors.append(str(e.value))
        assert errors[0] == errors[1]
