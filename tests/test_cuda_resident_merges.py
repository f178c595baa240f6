"""Masks through the merge layers and Dot on the device (cpp/cuda/merge.cuh, dense.cuh's batched
Gemm, bind_resident_losses.hpp; faltung.models.resident_graph's _MergeOp and _DotOp), on the
test harness faltung._cuda_host (faltung._device._harness_device()):

- float64: the entry points (merge with masks, batch_matmul, l2_normalize) against the CPU
  layers (faltung.layers.merging: Multiply, Maximum, Minimum, Dot's l2_normalize) and numpy,
  forward and backward, on odd and broadcast shapes, masks on some or all inputs;
- float32: a resident fit equals the ordinary CPU fit (test_cuda_resident_graph.fit_alike) for
  models whose merges receive masks (Masking, Embedding(mask_zero=True)) and for Dot (every
  axes form, normalize=True), which holds forward and gradients to the CPU's; and in float64,
  the gradient one SGD step applies equals central differences of the device's own loss
  (test_cuda_resident_graph.step_is_the_gradient);
- bad masks raise ValueError naming the entry point and the shapes.
"""
import numpy as np
import pytest

from faltung import _device
from faltung.layers import (GRU, LSTM, Dense, Dot, Embedding, Flatten, Input, Masking, Maximum, Minimum, Multiply,
                            Reshape)
from faltung.layers.merging.dot import EPSILON, l2_normalize, l2_normalize_backward
from faltung.losses import SparseCategoricalCrossentropy
from faltung.models import Model
from faltung.optimizers import SGD, Adam
from test_cuda_resident_graph import compile_both, fit_alike, pair, step_is_the_gradient

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(41)
N, T, V = 10, 5, 7
LAYERS = {"multiply": Multiply, "maximum": Maximum, "minimum": Minimum}


def padded(n=N, t=T, f=3):
    """Float sequences with padded (all-zero) steps, a masked step inside one, one all padding."""
    x = RNG.standard_normal((n, t, f)).astype(np.float32)
    x[1, 3:], x[4, :], x[6, 1] = 0, 0, 0
    return x


def tokens(n=N, t=T):
    x = RNG.integers(1, V, (n, t)).astype(np.int32)
    for i, length in enumerate(RNG.integers(0, t + 1, n)):
        x[i, length:] = 0
    return x


SEQ_A, SEQ_B, TOKENS = padded(), padded(), tokens()
LABELS = RNG.integers(0, 3, N)


# ---- entry points -------------------------------------------------------------------------------

MASK_CASES = {  # input shapes (batch 4), which inputs have masks
    "two-all-masked": ([(4, 5, 3), (4, 5, 3)], [True, True]),
    "two-one-masked": ([(4, 5, 3), (4, 5, 3)], [True, False]),
    "three-broadcast": ([(4, 5, 3), (4, 1, 3), (4, 5, 1)], [True, False, True]),
    "three-all-masked-rank2": ([(4, 6), (4, 6), (4, 6)], [True, True, True]),
}


@pytest.mark.parametrize("case", list(MASK_CASES))
@pytest.mark.parametrize("name", list(LAYERS))
def test_masked_merge_entry_points_equal_the_cpu_layers_in_float64(name, case):
    shapes, has_mask = MASK_CASES[case]
    xs = [RNG.standard_normal(s) for s in shapes]
    if name != "multiply":
        xs[1][0, 0] = xs[0][0, 0]  # ties: the earlier input wins
    masks = [(RNG.random(s[:-1]) > 0.4) if m else None for s, m in zip(shapes, has_mask)]
    if masks[0] is not None:
        masks[0][1] = False
        if all(m is not None for m in masks):
            for m in masks:
                m[1] = False  # (a row no input keeps)
    layer = LAYERS[name]()
    want = layer.forward(xs, training=True, mask=masks)
    dy = RNG.standard_normal(want.shape)
    want_dx = layer.backward(dy)
    r, DA = host.resident, host.DeviceArray
    dmasks = [None if m is None else DA(m.astype(np.uint8)) for m in masks]
    y, win = r.merge(name, [DA(x) for x in xs], dmasks)
    np.testing.assert_array_equal(y.numpy(), want)
    got = r.merge_backward(name, DA(dy), [DA(x) for x in xs], win, dmasks)
    for g, w in zip(got, want_dx):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-13, atol=1e-15)


def test_batch_matmul_and_l2_normalize_equal_numpy_and_the_cpu_layer():
    r, DA = host.resident, host.DeviceArray
    for B, M, K, N_ in ((1, 1, 1, 1), (3, 17, 5, 19), (2, 4, 33, 2), (0, 3, 2, 3), (2, 3, 0, 4)):
        a, b = RNG.standard_normal((B, M, K)), RNG.standard_normal((B, K, N_))
        want = a @ b
        for ta in (False, True):
            for tb in (False, True):
                da = DA(np.ascontiguousarray(a.transpose(0, 2, 1)) if ta else a)
                db = DA(np.ascontiguousarray(b.transpose(0, 2, 1)) if tb else b)
                np.testing.assert_allclose(r.batch_matmul(da, db, ta, tb).numpy(), want, rtol=1e-12, atol=1e-12)
    x = RNG.standard_normal((3, 4, 6))
    x[0, 1] = 0  # the epsilon floor: no projection in the backward
    x[2, 3] = 1e-9
    x_hat, inv = r.l2_normalize(DA(x), EPSILON)
    want_hat, want_inv = l2_normalize(x, -1)
    np.testing.assert_allclose(x_hat.numpy(), want_hat, rtol=1e-13)
    np.testing.assert_allclose(inv.numpy(), want_inv[..., 0], rtol=1e-13)
    g = RNG.standard_normal(x.shape)
    np.testing.assert_allclose(r.l2_normalize_backward(DA(g), x_hat, inv, EPSILON).numpy(),
                               l2_normalize_backward(g, want_hat, want_inv, -1), rtol=1e-12, atol=1e-15)


def test_bad_masks_and_products_raise_naming_the_entry_point():
    r, DA = host.resident, host.DeviceArray
    x = DA(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"merge\(multiply\): expected `mask 1` of shape \(2, 3\)"):
        r.merge("multiply", [x, x], [None, DA(np.ones((2, 4), np.uint8))])
    with pytest.raises(ValueError, match=r"expected masks of dtype uint8"):
        r.merge("maximum", [x, x], [DA(np.ones((2, 3), np.float32)), None])
    with pytest.raises(ValueError, match="expected one mask \\(or None\\) per input, received 1 for 2"):
        r.merge("minimum", [x, x], [None])
    with pytest.raises(ValueError, match="masks are taken by multiply, maximum and minimum only"):
        r.merge("add", [x, x], [DA(np.ones((2, 3), np.uint8)), None])
    with pytest.raises(ValueError, match=r"batch_matmul: expected a and b of one dtype.*\(2, 3, 4\).*\(2, 3, 4\)"):
        r.batch_matmul(x, x)


# ---- fits against the CPU, and float64 gradients against central differences ------------------

def masked_merge_model(name, rnn=LSTM):
    def make():
        a, b = Input((T, 3)), Input((T, 3))
        ha, hb = Dense(4, activation="tanh")(Masking()(a)), Dense(4)(Masking()(b))
        return Model([a, b], Dense(3)(rnn(4)(LAYERS[name]()([ha, hb, ha]))))
    return make


@pytest.mark.parametrize("rnn", [LSTM, GRU], ids=["lstm", "gru"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_masked_merges_into_a_recurrent_layer_match_the_cpu_fit(name, rnn):
    """Both inputs masked (Masking): the merge uses the masks and passes their or to the LSTM."""
    cpu, dev = pair(masked_merge_model(name, rnn))
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    fit_alike(cpu, dev, [SEQ_A, SEQ_B], LABELS, batch_size=4)


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_merge_with_one_masked_input_matches_the_cpu_fit(name):
    """An Embedding mask on one input only: the merge uses it, its output has no mask."""
    def make():
        t, f = Input((T,), dtype="int32"), Input((T, 3))
        e = Embedding(V, 3, mask_zero=True)(t)
        return Model([t, f], Dense(3)(Flatten()(LAYERS[name]()([Dense(3)(f), e]))))
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: SGD(0.1, momentum=0.9), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, [TOKENS, SEQ_A], LABELS, batch_size=4)


DOTS = {  # input shapes (without the batch), Dot's axes
    "vectors": ((5,), (5,), 1),
    "vectors-negative": ((5,), (5,), -1),
    "sequences-last": ((4, 3), (6, 3), (2, 2)),
    "sequences-time": ((4, 3), (4, 2), (1, 1)),
    "mixed-ranks": ((4, 3), (3,), (2, 1)),
    "attention": ((4, 3), (3, 6), (2, 1)),
}


def dot_model(case, normalize):
    sa, sb, axes = DOTS[case]

    def make():
        x = Input((6,))
        a = Reshape(sa)(Dense(int(np.prod(sa)), activation="tanh")(x))
        b = Reshape(sb)(Dense(int(np.prod(sb)))(x))
        d = Dot(axes=axes, normalize=normalize)([a, b])
        return Model(x, Dense(3)(d if len(d.shape) == 2 else Flatten()(d)))
    return make


@pytest.mark.parametrize("normalize", [False, True], ids=["dot", "cosine"])
@pytest.mark.parametrize("case", list(DOTS))
def test_dot_matches_the_cpu_fit(case, normalize):
    cpu, dev = pair(dot_model(case, normalize))
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True))
    x = RNG.standard_normal((N, 6)).astype(np.float32)
    x[3] = 0  # an all-zero row: the normalization's epsilon floor
    fit_alike(cpu, dev, x, LABELS, batch_size=4)


@pytest.mark.parametrize("case", ["multiply", "maximum", "minimum", "dot-attention", "cosine-mixed-ranks"])
def test_float64_gradients_equal_central_differences_of_the_device_loss(case):
    scce = SparseCategoricalCrossentropy(from_logits=True)
    if case in LAYERS:
        step_is_the_gradient(masked_merge_model(case), [SEQ_A[:5], SEQ_B[:5]], LABELS[:5], scce)
    else:
        make = dot_model(case.split("-", 1)[1], case.startswith("cosine"))
        step_is_the_gradient(make, RNG.standard_normal((5, 6)), LABELS[:5], scce)


def test_dot_of_masked_sequences_ignores_the_masks_as_the_cpu():
    def make():
        a, b = Input((T, 3)), Input((T, 3))
        d = Dot(axes=(1, 1))([Dense(3)(Masking()(a)), Masking()(b)])  # (N, 3, 3), no mask
        return Model([a, b], Dense(3)(Flatten()(d)))
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, [SEQ_A, SEQ_B], LABELS, batch_size=4)


def test_a_dot_on_bad_shapes_raises_the_cpu_layer_s_error():
    with _device._harness_device():
        a, b = Input((4,)), Input((5,))
        with pytest.raises(ValueError, match="incompatible input shapes"):
            Model([a, b], Dot(axes=1)([a, b]))
