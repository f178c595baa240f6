"""The LSTM inference forward with the batch in the vector lanes (cpp/src/rnn_lanes.cpp), at
every CPU level, one thread and two: against the float64 numpy reference and against the
packed-panel forward that training runs. It takes float32 LSTM calls without a mask that masks
a step, with Keras's activations, at the avx512 level, whose packed [W; R] exceeds the
row-split limit (lowered here, so small shapes reach it) and whose batch leaves under a quarter of
its vectors' 16 lanes idle; the other levels must keep the packed-panel forward. The cases cover
batches of 1, 2 and 3 vectors and ragged ones, units that are no multiple of the 3-unit tile or of a vector (a
thread with no units at all), no input features, one step, go_backwards, initial states, no
bias; the cell from 0 to saturation, NaN and infinity."""
import numpy as np
import pytest

import faltung
from faltung import _core
from test_dispatch_levels import level  # noqa: F401  (the fixture: each CPU level in turn)
# (threads: the fixture that restores the thread count)
from test_rnn_kernels import Case, check_keeps_nan_and_saturates, threads  # noqa: F401


def in_lanes(B, level):
    """The rule of lanes_forward_applies: AVX-512 (vectors of 16 floats) only, the batch in at
    least three quarters of its vectors' lanes."""
    padded = -(-B // 16) * 16
    return level == "avx512" and B >= 16 and 4 * (padded - B) <= padded


@pytest.fixture
def small_split_limit():
    """Every packed kernel counts as too large for the cache: small shapes take the lanes."""
    _core.rnn_set_row_split_bytes(1)
    yield
    _core.rnn_set_row_split_bytes(0)


CASES = [
    Case("lstm", 16, 3, 5, 7, seed=1),
    Case("lstm", 32, 4, 0, 5, seed=2),                                    # no input features
    Case("lstm", 48, 2, 3, 70, go_backwards=True, h0=True, seed=3),       # 3 vectors at avx512
    Case("lstm", 14, 5, 37, 1, h0=True, seed=4),                          # one unit: a thread idles
    Case("lstm", 64, 1, 17, 33, seed=5),                                  # one step
    Case("lstm", 30, 6, 9, 40, go_backwards=True, h0=True, seed=6),
    Case("lstm", 20, 3, 9, 40, seed=9),                                   # 12 of 32 lanes idle: panels
    Case("lstm", 16, 3, 1, 20, seed=10),                                  # a feature for one thread of 3
    Case("lstm", 30, 3, 130, 19, seed=7),                                 # features past 8 vectors
    Case("lstm", 24, 4, 6, 16, bias=False, h0=True, seed=8),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_forward_in_lanes_against_the_reference(case, level, threads, small_split_limit):  # noqa: F811
    expected = case.reference()
    assert _core.lstm_forward_in_lanes(case.B, case.T, case.F, case.U) == in_lanes(case.B, level)
    assert not _core.lstm_forward_in_lanes(case.B, case.T, case.F, case.U, training=True)
    assert not _core.lstm_forward_in_lanes(case.B, case.T, case.F, case.U, float32=False)
    results = []
    for n in (1, 2, 3):
        faltung.set_num_threads(n)
        got, saved = case.forward(np.float32)
        assert saved is None
        trained, _ = case.forward(np.float32, training=True)  # the packed-panel forward
        for name, e, g, t in zip(("hs", "h_T", "c_T"), expected, got, trained):
            assert g.shape == e.shape and g.dtype == np.float32
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4, err_msg=f"{name}, {n} threads, {level}")
            np.testing.assert_allclose(g, t, rtol=2e-5, atol=2e-5, err_msg=f"{name} vs training, {n} threads")
        results.append(got)
    for other in results[1:]:  # units split differently, the same sums per unit: bitwise
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("scale", [0.0, 1e-4, 0.05, 3.0, 200.0])
def test_lanes_cell_over_the_whole_range(scale, level, small_split_limit):  # noqa: F811
    """The vector cell (tanh by expm1, rcp14 reciprocals): preactivations from 0 through small
    values, where tanh must stay relatively exact, to saturation. At scale 200 the
    preactivations are sums of terms of about +-1000 that cancel to O(1) in some units: there
    float32 summation alone errs by ~1e-3 (the packed-panel forward by as much), so the
    tolerance follows the sums, not the cell."""
    if level != "avx512":
        pytest.skip("the lanes forward runs at the avx512 level only")
    case = Case("lstm", 32, 4, 5, 40, h0=True, seed=3, scale=scale)
    assert _core.lstm_forward_in_lanes(32, 4, 5, 40)
    expected = case.reference()
    got, _ = case.forward(np.float32)
    for name, e, g in zip(("hs", "h_T", "c_T"), expected, got):
        atol = 1e-2 if scale > 100 else 2e-5 * max(scale, 1e-3)
        np.testing.assert_allclose(g.astype(np.float64), e, rtol=2e-5, atol=atol, err_msg=f"{name}, {level}")


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_lanes_keep_nan_and_saturate_at_infinity(level, small_split_limit):  # noqa: F811
    if level != "avx512":
        pytest.skip("the lanes forward runs at the avx512 level only")
    assert _core.lstm_forward_in_lanes(32, 4, 2, 20)
    check_keeps_nan_and_saturates(32)


def test_a_nan_in_one_gate_reaches_what_keras_s_equations_reach(level, small_split_limit):  # noqa: F811
    """One NaN preactivation at a time (through the bias of one gate of one unit): the cell's
    single NaN check must give NaN exactly where c = f c + i g and h = o tanh(c) would (one
    step: the next one's recurrent product would spread it to every unit)."""
    if level != "avx512":
        pytest.skip("the lanes forward runs at the avx512 level only")
    U = 3
    for gate in range(4):
        case = Case("lstm", 16, 1, 2, U, seed=5)
        case.bias = case.bias.copy()
        case.bias[gate * U + 1] = np.nan
        hs, hT, cT = case.forward(np.float32)[0]
        c_nan = gate != 3  # i, f, g reach c; o only h
        assert np.isnan(cT[:, 1]).all() == c_nan and not np.isnan(cT[:, [0, 2]]).any()
        assert np.isnan(hs[:, :, 1]).all() and not np.isnan(hs[:, :, [0, 2]]).any()


def test_the_rule_follows_the_cache_limit():
    """At the default limit (half the L2) the lanes take an LSTM whose packed [W; R] exceeds it,
    the packed-panel forward the others."""
    if faltung.build_info()["cpu_level"] != "avx512":
        pytest.skip("the lanes forward runs at the avx512 level only")
    limit = _core.rnn_get_row_split_bytes()
    B = 32
    small = max(1, int((limit / 16) ** 0.5) // 2)  # 4 (U + U) U 4 bytes well below the limit
    large = int((limit / 16) ** 0.5) + 8           # ... above it
    assert not _core.lstm_forward_in_lanes(B, 3, small, small)
    assert _core.lstm_forward_in_lanes(B, 3, large, large)


def test_initial_h_without_c(level, small_split_limit):  # noqa: F811
    case = Case("lstm", 32, 3, 4, 24, h0=True, seed=11)
    case.c0 = None
    expected = case.reference()
    got, _ = case.forward(np.float32)
    for name, e, g in zip(("hs", "h_T", "c_T"), expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4, err_msg=f"{name}, {level}")


# Calls the lanes forward must leave to the packed panels even below the limit: a mask that masks
# steps, a recurrent (dropout) mask, other activations. Taken wrongly, the lanes forward would
# ignore them, so agreeing with the reference shows they were not.
EXCLUDED = [
    Case("lstm", 32, 4, 3, 20, mask="prefix", seed=12),
    Case("lstm", 32, 4, 3, 20, mask="arbitrary", zero_output=True, seed=13),
    Case("lstm", 32, 4, 3, 20, rmask=True, seed=14),
    Case("lstm", 32, 4, 3, 20, act="relu", seed=15),
    Case("lstm", 32, 4, 3, 20, rec_act="hard_sigmoid", seed=16),
]


@pytest.mark.parametrize("case", EXCLUDED, ids=[c.id for c in EXCLUDED])
def test_what_the_lanes_do_not_take(case, small_split_limit):
    expected = case.reference()
    got, _ = case.forward(np.float32)
    for name, e, g in zip(("hs", "h_T", "c_T"), expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4, err_msg=name)


def test_a_smaller_team_than_asked(tmp_path):
    """OpenMP may start fewer threads than asked (OMP_THREAD_LIMIT, OMP_DYNAMIC): the units are
    split over the team that runs."""
    if faltung.build_info()["cpu_level"] != "avx512":
        pytest.skip("the lanes forward runs at the avx512 level only")
    script = tmp_path / "team.py"
    script.write_text(
        "import numpy as np, faltung\n"
        "from faltung import _core, ops\n"
        "faltung.set_num_threads(2)\n"
        "_core.rnn_set_row_split_bytes(1)\n"
        "assert _core.lstm_forward_in_lanes(32, 5, 8, 64)\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((32, 5, 8))\n"
        "W, R, b = rng.standard_normal((8, 256)) * .3, rng.standard_normal((64, 256)) * .3, rng.standard_normal(256)\n"
        "f = ops.lstm_forward(*(a.astype(np.float32) for a in (x, W, R, b)))\n"
        "e = ops.lstm_forward(x, W, R, b, algorithm='reference')\n"
        "print(max(float(np.abs(p - q).max()) for p, q in zip(f[:3], e[:3])))\n")
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(__file__), timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 1e-4
