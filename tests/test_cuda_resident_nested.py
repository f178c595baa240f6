"""Nested models (a Sequential or functional Model called as a layer) in device-resident models:
faltung.models.resident_graph inlines their layer calls into the outer DeviceGraph. On the test
harness faltung._cuda_host (faltung._device._harness_device()), each case's resident fit equals
the ordinary CPU fit on the same weights (losses, metrics, weights and optimizer slots after
each step, evaluate, predict: test_cuda_resident_graph.fit_alike), which holds the forward and
the gradients of every inlined call to the CPU's nested-model bricks; in float64 the gradient
one SGD step applies equals central differences of the device's own loss.
"""
import numpy as np
import pytest

from faltung import _device
from faltung.layers import (LSTM, Add, BatchNormalization, Concatenate, Dense, Dropout, Embedding, Flatten, Input,
                            Masking, Multiply)
from faltung.losses import SparseCategoricalCrossentropy
from faltung.models import Model, Sequential
from faltung.optimizers import SGD, Adam
from test_cuda_resident_graph import compile_both, fit_alike, pair, step_is_the_gradient

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(14)
N, T, V = 12, 5, 7
XA, XB = RNG.standard_normal((N, 5)).astype(np.float32), RNG.standard_normal((N, 4)).astype(np.float32)
LABELS, REAL = RNG.integers(0, 3, N), RNG.standard_normal((N, 2)).astype(np.float32)
TOKENS = RNG.integers(0, V, (N, T)).astype(np.int32)
SEQ = RNG.standard_normal((N, T, 3)).astype(np.float32)
SEQ[2, 3:], SEQ[5] = 0, 0  # padded steps for Masking


def sequential_in_sequential():
    inner = Sequential([Input((5,)), Dense(6, activation="tanh"), Dense(4, activation="relu")], name="inner")
    return Sequential([Input((5,)), inner, Dense(3, name="out")])


def shared_encoder():
    """One functional model called on two inputs (its calls keyed apart), its output read twice."""
    a = Input((5,))
    enc = Model(a, Dense(4, activation="tanh", name="enc_dense")(a), name="encoder")
    x1, x2 = Input((5,), name="x1"), Input((5,), name="x2")
    e1, e2 = enc(x1), enc(x2)
    return Model([x1, x2], Dense(3, name="out")(Concatenate()([Add()([e1, e2]), Multiply()([e1, e1])])))


def deep_with_modes():
    """Three levels; the middle one called with training=False (its BatchNormalization and Dropout
    at inference while training, as the CPU's), the innermost with two inputs and two outputs."""
    p, q = Input((5,)), Input((4,))
    core = Model([p, q], [Dense(4, activation="tanh")(p), Dense(4)(q)], name="core")
    m = Input((5,))
    bn = BatchNormalization(moving_mean_initializer="random_normal")(Dense(4, use_bias=False)(m))  # (a bias
    # before a training BatchNormalization gets a gradient of rounding noise only, which Adam magnifies)
    middle = Sequential([Input((5,)), Dense(5, activation="relu"), Dropout(0.5), BatchNormalization()],
                        name="middle")
    a, b = Input((5,), name="a"), Input((4,), name="b")
    h1, h2 = core([middle(a, training=False), b])
    wrapped = Model(m, bn, name="wrapped")  # trains: its BatchNormalization's statistics move
    return Model([a, b], [Dense(3, name="cls")(Add()([h1, h2, wrapped(a)])), Dense(2, name="reg")(h2)])


def test_a_sequential_inside_a_sequential_matches_the_cpu_fit():
    cpu, dev = pair(sequential_in_sequential)
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    fit_alike(cpu, dev, XA, LABELS)


def test_a_functional_model_called_twice_matches_the_cpu_fit():
    cpu, dev = pair(shared_encoder)
    compile_both(cpu, dev, lambda: SGD(0.1, momentum=0.9), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, [XA, XA[::-1].copy()], LABELS)


def test_three_levels_with_recorded_training_flags_match_the_cpu_fit():
    cpu, dev = pair(deep_with_modes)
    compile_both(cpu, dev, lambda: Adam(0.01), [SparseCategoricalCrossentropy(from_logits=True), "mse"])
    fit_alike(cpu, dev, [XA, XB], [LABELS, REAL])


def test_masks_enter_a_nested_model_and_stop_at_its_output_as_on_the_cpu():
    """A Masking mask reaches the nested LSTM (masked steps carry the state); an Embedding mask
    made inside a nested model reaches its LSTM; neither leaves its model (Model.compute_mask)."""
    def make():
        tokens, feats = Input((T,), dtype="int32"), Input((T, 3))
        text = Sequential([Input((T,), dtype="int32"), Embedding(V, 3, mask_zero=True), LSTM(4)], name="text")
        seq = Sequential([Input((T, 3)), LSTM(4, return_sequences=True)], name="seq")
        h = Flatten()(seq(Masking()(feats)))  # Flatten would refuse a mask on the device
        return Model([tokens, feats], Dense(3)(Concatenate()([text(tokens), h])))
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, [TOKENS, SEQ], LABELS, batch_size=5)


def test_float64_gradients_through_nested_models_equal_central_differences_of_the_device_loss():
    scce = SparseCategoricalCrossentropy(from_logits=True)
    step_is_the_gradient(sequential_in_sequential, XA[:5], LABELS[:5], scce)
    step_is_the_gradient(shared_encoder, [XA[:5], XA[5:10]], LABELS[:5], scce)


def test_an_inner_model_built_on_the_device_hands_its_weights_to_the_outer_one():
    with _device._harness_device():
        inner = Sequential([Input((5,)), Dense(4, activation="tanh")], name="inner")
        assert inner._resident is not None
        outer = Sequential([Input((5,)), inner, Dense(3)])
    assert inner._resident is None and outer._resident is not None
    outer.compile(SGD(0.1), SparseCategoricalCrossentropy(from_logits=True))
    outer.fit(XA, LABELS, batch_size=4, epochs=1, verbose=0)
    w, b = inner.get_weights()  # the trained weights, from the outer model's device copy
    np.testing.assert_allclose(inner.predict(XA, verbose=0), np.tanh(XA @ w + b), rtol=1e-5, atol=1e-6)


def test_a_nested_model_called_with_a_mask_list_not_its_structure_names_it():
    """(a `mask=` tensor per input runs: test_cuda_resident_refusals)"""
    with _device._harness_device():
        x = Input((T, 3))
        inner = Sequential([Input((T, 3)), LSTM(2)], name="inner")
        with pytest.raises(NotImplementedError, match="nested model 'inner' .*tensor keyword arguments"):
            Model(x, inner(x, mask=[x, x]))
