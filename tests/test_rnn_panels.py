"""The recurrent kernels' per-step product against the packed recurrent kernel
(cpp/src/rnn_gemm.hpp), at every CPU level: steps of 1 to 13 rows (every remainder of the
register tile: 12 rows at AVX-512, 6 below), units that are no multiple of any panel width
(2 vectors: 8..32 floats, 4..16 doubles), u = 1, batch 1, length 1, one thread and the team
(units split in whole panel blocks, or rows when there is a single block or the packed
kernel is at most half the L2, `_core.rnn_get_row_split_bytes()`). Forward against
the numpy float64 reference, backward against the naive C++ oracle (itself checked against
finite differences in test_rnn_kernels.py)."""
import numpy as np
import pytest

import ctypes
import sys

import faltung
from faltung import _core
from test_dispatch_levels import level  # noqa: F401  (the fixture: each CPU level in turn)
from test_rnn_kernels import Case, assert_close, threads  # noqa: F401  (restores the thread count)

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def team_features(cell, B, T, U):
    """Input features enough for the kernels to use the team on a step of a single block
    (their input projection then passes 2e6 flops)."""
    return int(2e6 / (2 * B * T * GATES[cell] * U)) + 1


def staircase(cell, **kw):
    """13 samples of lengths 13, 12, ..., 1: step s has 13 - s rows."""
    case = Case(cell, 13, 13, 3, 19, mask="prefix", h0=True, seed=7, **kw)
    case.mask = np.arange(13)[None, :] < np.arange(13, 0, -1)[:, None]
    case.id += "-staircase"
    return case


def cases():
    out = []
    for cell, reset_after in (("simple_rnn", True), ("lstm", True), ("gru", True), ("gru", False)):
        kw = dict(reset_after=reset_after)
        out += [
            Case(cell, 1, 1, 3, 1, **kw),                                    # batch 1, length 1, u = 1
            Case(cell, 13, 2, 3, 1, h0=True, seed=1, **kw),                  # a full tile + 1 row
            Case(cell, 11, 3, 2, 19, mask="prefix", seed=2, **kw),           # 11 rows: every tile short
            Case(cell, 25, 2, 4, 33, h0=True, rmask=True, seed=3, **kw),     # 2 tiles + 1; 33 units
            Case(cell, 1, 4, 3, 70, go_backwards=True, seed=4, **kw),        # batch 1, several blocks
            Case(cell, 5, 3, 4, 75, mask="arbitrary", h0=True, seed=5, **kw),  # team: units split
            Case(cell, 37, 3, team_features(cell, 37, 3, 5), 5, mask="suffix", h0=True, seed=6,
                 **kw),                                                      # team: rows split
            Case(cell, 37, 9, team_features(cell, 37, 9, 5), 5, h0=True, go_backwards=True,
                 seed=8, **kw),  # team: rows split, the same rows at every step: no barriers
            Case(cell, 25, 2, 3, 260, h0=True, seed=7, **kw),  # team: units split over several
                                                                # row tiles (kernel > the limit,
                                                                # set to 256 KB below)
            staircase(cell, **kw),
        ]
    return out


PANEL_CASES = cases()


@pytest.mark.parametrize("case", PANEL_CASES, ids=[c.id for c in PANEL_CASES])
def test_packed_recurrent_product_at_every_level(case, level, threads):  # noqa: F811
    expected = case.reference()
    douts = case.output_weights()
    _, saved_ref = case.forward(algorithm="reference", training=True)
    oracle = case.backward(saved_ref, douts)
    # the split rule's limit is half the L2, which varies between machines: fix it, so that
    # every machine runs the same splits
    _core.rnn_set_row_split_bytes(256 * 1024)
    try:
        check_threads(case, level, expected, douts, oracle)
    finally:
        _core.rnn_set_row_split_bytes(0)


def check_threads(case, level, expected, douts, oracle):
    for n in (1, 2):
        faltung.set_num_threads(n)
        got64, saved = case.forward(np.float64, training=True)
        infer64, _ = case.forward(np.float64)  # LSTM, SimpleRNN: folded where the kernel is small
        got32, _ = case.forward(np.float32)
        for name, e, g64, i64, g32 in zip(("hs", "h_T", "c_T"), expected, got64, infer64, got32):
            assert_close(g64, e, 1e-12, f"{name} float64, {n} threads, {level}")
            assert_close(i64, e, 1e-12, f"{name} float64 inference, {n} threads, {level}")
            assert_close(g32.astype(np.float64), e, 1e-4, f"{name} float32, {n} threads, {level}")
        grads = case.backward(saved, douts)
        for name, g in grads.items():
            if g is not None:
                scale = max(1.0, np.abs(oracle[name]).max())
                assert_close(g / scale, oracle[name] / scale, 1e-11, f"d{name}, {n} threads, {level}")


def test_row_split_limit_is_half_the_l2_by_default():
    # glibc's sysconf(_SC_LEVEL2_CACHE_SIZE) (191 in glibc's ABI; Python's os.sysconf lacks the name)
    l2 = ctypes.CDLL(None).sysconf(191) if sys.platform.startswith("linux") else 0
    want = l2 // 2 if l2 > 0 else 256 * 1024
    assert _core.rnn_get_row_split_bytes() == want
    _core.rnn_set_row_split_bytes(12345)
    try:
        assert _core.rnn_get_row_split_bytes() == 12345
    finally:
        _core.rnn_set_row_split_bytes(0)
    assert _core.rnn_get_row_split_bytes() == want
    with pytest.raises(ValueError, match="expected bytes >= 0"):
        _core.rnn_set_row_split_bytes(-1)


@pytest.mark.parametrize("cell,U", [("lstm", 256), ("gru", 256), ("simple_rnn", 768)])
def test_input_projection_streamed_above_8mb(cell, U, threads):  # noqa: F811
    """The input projection G (N, gates*U) = x W over all steps runs W packed in panels; above
    8 MB G is written with streaming stores (rnn.cpp, Forward::projection). 30 x 100 steps, 37
    features (a partial vector of the projection's inner size): G is 9.2-12.3 MB at float32,
    streamed (at float64 the same branch runs, with plain stores: simd::stream of doubles). The
    row split is fixed at 256 KB, so no case folds the projection into the steps whatever the
    L2. Training (the packed panels) and inference (LSTM float32: the lanes forward instead)
    against the numpy reference; one thread and two."""
    case = Case(cell, 30, 100, 37, U, h0=True, seed=9, scale=0.05 * (256 / U) ** 0.5)  # contracting:
    # the recurrence does not amplify rounding differences over the 100 steps
    expected = case.reference()
    _core.rnn_set_row_split_bytes(256 * 1024)
    try:
        for nt in (1, 2):
            faltung.set_num_threads(nt)
            for training in (True, False):
                for dtype, tol in ((np.float64, 1e-11), (np.float32, 5e-5)):
                    got, _ = case.forward(dtype, training=training)
                    for name, e, g in zip(("hs", "h_T", "c_T"), expected, got):
                        assert_close(g.astype(np.float64), e, tol, f"{name} {dtype.__name__} "
                                     f"training={training} threads={nt}")
    finally:
        _core.rnn_set_row_split_bytes(0)
