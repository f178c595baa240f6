"""CTC against Keras 3 itself (skipped where keras is not installed: run where keras and torch
are, with KERAS_BACKEND=torch): ctc_loss, the CTC loss class, greedy and beam-search decoding."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import faltung  # noqa: E402
from faltung import ops  # noqa: E402


def _case(seed, B=5, T=12, C=6, S=4):
    r = np.random.default_rng(seed)
    x = r.normal(size=(B, T, C)).astype(np.float32) * 2
    labels = r.integers(1, C, size=(B, S)).astype(np.int32)
    ll = r.integers(1, S + 1, size=B).astype(np.int32)
    il = r.integers(S * 2, T + 1, size=B).astype(np.int32)
    return x, labels, ll, il


@pytest.mark.parametrize("seed", range(3))
def test_ctc_loss_matches_keras(seed):
    x, labels, ll, il = _case(seed)
    want = keras.ops.convert_to_numpy(keras.ops.ctc_loss(labels, x, ll, il, mask_index=0))
    np.testing.assert_allclose(ops.ctc_loss(labels, x, ll, il), want, rtol=1e-5)


def test_ctc_loss_class_matches_keras():
    x, labels, _, _ = _case(3)
    labels[:, 3] = 0  # Keras counts the non-zero labels
    for reduction in ("sum_over_batch_size", "sum", None):
        want = keras.ops.convert_to_numpy(keras.losses.CTC(reduction=reduction)(labels, x))
        got = faltung.losses.CTC(reduction=reduction)(labels, x)
        np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("merge_repeated", [True, False])
@pytest.mark.parametrize("mask_index", [0, None])
def test_greedy_decode_matches_keras(merge_repeated, mask_index):
    x, _, _, il = _case(4, C=4)
    want = keras.ops.ctc_decode(x, il, strategy="greedy", merge_repeated=merge_repeated,
                                mask_index=mask_index)
    got = ops.ctc_decode(x, il, strategy="greedy", merge_repeated=merge_repeated,
                         mask_index=mask_index)
    np.testing.assert_array_equal(got[0], keras.ops.convert_to_numpy(want[0]))
    np.testing.assert_allclose(got[1], keras.ops.convert_to_numpy(want[1]), rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_beam_search_matches_keras(seed):
    x, _, _, il = _case(10 + seed, B=3, T=10, C=5)
    want = keras.ops.ctc_decode(x, il, strategy="beam_search", beam_width=8, top_paths=3)
    got = ops.ctc_decode(x, il, strategy="beam_search", beam_width=8, top_paths=3)
    np.testing.assert_array_equal(got[0], keras.ops.convert_to_numpy(want[0]))
    np.testing.assert_allclose(got[1], keras.ops.convert_to_numpy(want[1]), rtol=1e-5)
