"""What device-resident models used to refuse with NotImplementedError and the CPU runs
(faltung.models.resident_graph), on the test harness faltung._cuda_host
(faltung._device._harness_device()): each case's resident fit equals the ordinary CPU fit on the
same weights (test_cuda_resident_graph.fit_alike: losses, weights, optimizer slots, evaluate,
predict), and in float64 the gradient one SGD step applies equals central differences of the
device's own loss (test_cuda_resident_graph.step_is_the_gradient):

- masks into Concatenate on an axis but the last (concatenated along it, an input without a
  mask counting as all kept, as Concatenate.compute_mask);
- masks into the elementwise merges whose inputs broadcast (the output's mask the inputs' or-ed
  as numpy broadcasts them, as Merge.compute_mask).
"""
import numpy as np
import pytest

from faltung import _device
from faltung.layers import LSTM, Add, Concatenate, Dense, Input, Masking, Maximum, Minimum, Multiply, Subtract
from faltung.losses import SparseCategoricalCrossentropy
from faltung.models import Model
from faltung.optimizers import Adam
from test_cuda_resident_graph import compile_both, fit_alike, pair, step_is_the_gradient

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(1414)
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
    from faltung.models.resident_graph import DeviceGraph
    res = dev._resident
    DA = host.DeviceArray
    got = DeviceGraph._concat_masks(res, None, [DA(ma.astype(np.uint8)), None, DA(mc.astype(np.uint8))],
                                    [DA(SEQ_A), DA(SEQ_B), DA(SEQ_C)], 1)
    np.testing.assert_array_equal(got.numpy().astype(bool), want)
    for axis in (0, 2):  # the batch axis; the mask's last (that of a (B, T, 1, F) input)
        xs = [RNG.standard_normal((2, 3, 1, 2)), RNG.standard_normal((2, 3, 1, 2))]
        ms = [RNG.random((2, 3, 1)) > 0.5, None]
        got = DeviceGraph._concat_masks(res, None, [DA(ms[0].astype(np.uint8)), None],
                                        [DA(x.astype(np.float32)) for x in xs], axis)
        np.testing.assert_array_equal(got.numpy().astype(bool), Concatenate(axis=axis).compute_mask(xs, ms))


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


@pytest.mark.parametrize("kind", [Multiply, Maximum, Minimum, Add, Subtract],
                         ids=lambda k: k.__name__.lower())
def test_masks_of_broadcast_merge_inputs_match_the_cpu(kind):
    fits_and_steps(broadcast_merge(kind), [SEQ_A, STEP])


def test_the_or_of_broadcast_masks_equals_the_cpu_mask():
    cpu, dev = pair(broadcast_merge(Multiply))
    ma, mp = np.any(SEQ_A != 0, -1), np.any(STEP != 0, -1)
    want = dev.get_layer("merge").compute_mask([SEQ_A, STEP], [ma, mp])
    from faltung.models.resident_graph import DeviceGraph
    DA = host.DeviceArray
    got = DeviceGraph._or_masks(dev._resident, None, [DA(ma.astype(np.uint8)), DA(mp.astype(np.uint8))], want.shape)
    np.testing.assert_array_equal(got.numpy().astype(bool), want)
