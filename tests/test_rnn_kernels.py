"""Recurrent kernels (faltung.ops.rnn): SimpleRNN, LSTM, GRU forward against the float64
numpy references of tests/reference/rnn.py, backward against central finite differences,
the fast kernels against the naive C++ oracle (algorithm="reference"), threads, errors."""
import numpy as np
import pytest

import faltung
from faltung import _core, ops
from reference import rnn as ref
from reference.nn import numeric_grad

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


# -- helpers ------------------------------------------------------------------------------

def make_mask(kind, B, T, rng):
    """(B, T) bool: right padding (prefix), left padding (suffix), arbitrary, or a right-padded
    batch with one sample fully masked."""
    if kind is None:
        return None
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    steps = np.arange(T)[None, :]
    if kind == "prefix":
        return steps < lengths[:, None]
    if kind == "suffix":
        return steps >= (T - lengths)[:, None]
    if kind == "arbitrary":
        m = rng.random((B, T)) < 0.6
        m[0, :] = True
        return m
    if kind == "allmasked":
        m = steps < lengths[:, None]
        m[-1, :] = False
        return m
    raise ValueError(kind)


class Case:
    """One call's arguments (float64), with a readable id."""

    def __init__(self, cell, B, T, F, U, seed=0, mask=None, go_backwards=False, zero_output=False,
                 h0=False, rmask=False, bias=True, reset_after=True, act="tanh", rec_act="sigmoid",
                 scale=0.5):
        rng = np.random.default_rng(seed)
        G = GATES[cell]
        self.cell, self.B, self.T, self.F, self.U = cell, B, T, F, U
        self.x = rng.standard_normal((B, T, F))
        self.kernel = rng.standard_normal((F, G * U)) * scale
        self.recurrent_kernel = rng.standard_normal((U, G * U)) * scale
        bias_shape = (2, G * U) if cell == "gru" and reset_after else (G * U,)
        self.bias = rng.standard_normal(bias_shape) * scale if bias else None
        self.h0 = rng.standard_normal((B, U)) * 0.5 if h0 else None
        self.c0 = rng.standard_normal((B, U)) * 0.5 if h0 and cell == "lstm" else None
        self.mask = make_mask(mask, B, T, rng)
        self.recurrent_mask = (rng.random((B, U)) < 0.7) / 0.7 if rmask else None
        self.go_backwards, self.zero_output, self.reset_after = go_backwards, zero_output, reset_after
        self.act, self.rec_act = act, rec_act
        self.id = (f"{cell}-B{B}-T{T}-F{F}-U{U}" + (f"-{mask}" if mask else "") +
                   ("-back" if go_backwards else "") + ("-zero" if zero_output else "") +
                   ("-h0" if h0 else "") + ("-rmask" if rmask else "") +
                   ("" if bias else "-nobias") +
                   ("-noreset" if cell == "gru" and not reset_after else "") +
                   ("" if (act, rec_act) == ("tanh", "sigmoid") else f"-{act}-{rec_act}"))

    def inputs(self):
        return dict(x=self.x, kernel=self.kernel, recurrent_kernel=self.recurrent_kernel,
                    bias=self.bias, h0=self.h0, c0=self.c0)

    def forward(self, dtype=np.float64, algorithm="fast", training=False, **override):
        """-> (outputs tuple (hs, h_T[, c_T]), saved)."""
        a = {k: (None if v is None else np.asarray(v, dtype)) for k, v in self.inputs().items()}
        a.update(override)
        rm = None if self.recurrent_mask is None else self.recurrent_mask.astype(dtype)
        common = dict(mask=self.mask, go_backwards=self.go_backwards, activation=self.act,
                      zero_output_for_mask=self.zero_output, recurrent_mask=rm,
                      training=training, algorithm=algorithm)
        if self.cell == "simple_rnn":
            hs, hT, saved = ops.simple_rnn_forward(a["x"], a["kernel"], a["recurrent_kernel"],
                                                   a["bias"], a["h0"], **common)
            return (hs, hT), saved
        if self.cell == "lstm":
            hs, hT, cT, saved = ops.lstm_forward(a["x"], a["kernel"], a["recurrent_kernel"], a["bias"],
                                                 a["h0"], a["c0"], recurrent_activation=self.rec_act,
                                                 **common)
            return (hs, hT, cT), saved
        hs, hT, saved = ops.gru_forward(a["x"], a["kernel"], a["recurrent_kernel"], a["bias"], a["h0"],
                                        reset_after=self.reset_after,
                                        recurrent_activation=self.rec_act, **common)
        return (hs, hT), saved

    def reference(self):
        common = dict(mask=self.mask, go_backwards=self.go_backwards, activation=self.act,
                      zero_output_for_mask=self.zero_output, recurrent_mask=self.recurrent_mask)
        if self.cell == "simple_rnn":
            return ref.simple_rnn(self.x, self.kernel, self.recurrent_kernel, self.bias, self.h0, **common)
        if self.cell == "lstm":
            return ref.lstm(self.x, self.kernel, self.recurrent_kernel, self.bias, self.h0, self.c0,
                            recurrent_activation=self.rec_act, **common)
        return ref.gru(self.x, self.kernel, self.recurrent_kernel, self.bias, self.h0,
                       reset_after=self.reset_after, recurrent_activation=self.rec_act, **common)

    def backward(self, saved, douts, need_dx=True, need_dweights=True):
        """-> dict of gradients by input name."""
        if self.cell == "simple_rnn":
            dx, dk, dr, db, dh0 = ops.simple_rnn_backward(saved, *douts, need_dx=need_dx,
                                                          need_dweights=need_dweights)
            dc0 = None
        elif self.cell == "lstm":
            dx, dk, dr, db, dh0, dc0 = ops.lstm_backward(saved, *douts, need_dx=need_dx,
                                                         need_dweights=need_dweights)
        else:
            dx, dk, dr, db, dh0 = ops.gru_backward(saved, *douts, need_dx=need_dx,
                                                   need_dweights=need_dweights)
            dc0 = None
        return dict(x=dx, kernel=dk, recurrent_kernel=dr, bias=db, h0=dh0, c0=dc0)

    def output_weights(self, seed=7):
        rng = np.random.default_rng(seed)
        shapes = [(self.B, self.T, self.U), (self.B, self.U)] + ([(self.B, self.U)] if self.cell == "lstm" else [])
        return [rng.standard_normal(s) for s in shapes]


def assert_close(actual, expected, tol, what=""):
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=what)


# -- forward against the numpy reference ------------------------------------------------------

FORWARD_CASES = []
for cell in ("simple_rnn", "lstm", "gru"):
    FORWARD_CASES += [
        Case(cell, 1, 1, 1, 1),
        Case(cell, 3, 5, 4, 6),
        Case(cell, 2, 7, 3, 5, h0=True, seed=1),
        Case(cell, 5, 6, 3, 4, mask="prefix", seed=2),
        Case(cell, 5, 6, 3, 4, mask="suffix", go_backwards=True, seed=3),
        Case(cell, 5, 6, 3, 4, mask="prefix", go_backwards=True, h0=True, seed=4),
        Case(cell, 5, 6, 3, 4, mask="suffix", h0=True, seed=5),
        Case(cell, 6, 7, 2, 3, mask="arbitrary", h0=True, seed=6),
        Case(cell, 6, 7, 2, 3, mask="arbitrary", zero_output=True, go_backwards=True, h0=True, seed=7),
        Case(cell, 4, 5, 3, 3, mask="allmasked", zero_output=True, h0=True, seed=8),
        Case(cell, 4, 5, 3, 3, mask="allmasked", h0=True, seed=9),
        Case(cell, 3, 4, 5, 7, rmask=True, h0=True, seed=10),
        Case(cell, 3, 4, 5, 7, rmask=True, mask="prefix", go_backwards=True, seed=11),
        Case(cell, 2, 3, 1, 2, bias=False, seed=12),
        Case(cell, 1, 9, 2, 1, mask="prefix", seed=13),
        Case(cell, 4, 3, 3, 5, act="relu", rec_act="hard_sigmoid", seed=14),
    ]
FORWARD_CASES += [
    Case("gru", 3, 5, 4, 6, reset_after=False),
    Case("gru", 5, 6, 3, 4, reset_after=False, mask="arbitrary", h0=True, rmask=True, seed=20),
    Case("gru", 5, 6, 3, 4, reset_after=False, mask="suffix", go_backwards=True, bias=False, seed=21),
    Case("gru", 4, 5, 3, 3, reset_after=False, mask="allmasked", zero_output=True, seed=22),
]


@pytest.mark.parametrize("case", FORWARD_CASES, ids=[c.id for c in FORWARD_CASES])
def test_forward_matches_numpy_reference(case):
    expected = case.reference()
    got64, _ = case.forward(np.float64)
    got32, _ = case.forward(np.float32)
    oracle, _ = case.forward(np.float64, algorithm="reference")
    for name, e, g64, g32, o in zip(("hs", "h_T", "c_T"), expected, got64, got32, oracle):
        assert g64.dtype == np.float64 and g32.dtype == np.float32
        assert_close(g64, e, 1e-12, name + " float64")
        assert_close(o, e, 1e-12, name + " C++ reference")
        assert_close(g32.astype(np.float64), e, 2e-5, name + " float32")


@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("scale", [0.0, 1e-4, 0.05, 3.0, 200.0])
def test_lstm_float32_cell_over_the_whole_range(scale):
    """The float32 LSTM cell (sigmoid and tanh fused, one division for four gates, the series
    near 0): preactivations from 0 through the series' edge at 0.2 to saturation, against the
    float64 reference, relatively where values are tiny. Wide enough (U 40) for full vectors
    and a remainder; the training path runs the same cell."""
    case = Case("lstm", 3, 4, 5, 40, h0=True, seed=3, scale=scale)
    expected = case.reference()
    for training in (False, True):
        got, _ = case.forward(np.float32, training=training)
        for name, e, g in zip(("hs", "h_T", "c_T"), expected, got):
            np.testing.assert_allclose(g.astype(np.float64), e, rtol=2e-5,
                                       atol=2e-5 * max(scale, 1e-3), err_msg=name)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_lstm_float32_cell_keeps_nan_and_saturates_at_infinity():
    check_keeps_nan_and_saturates(3)


def check_keeps_nan_and_saturates(B):
    """float32 LSTM forward of B >= 3 samples: one turns NaN, one saturates, one sees infinity
    (test_rnn_lanes.py runs it on the lanes forward)."""
    case = Case("lstm", B, 4, 2, 20, seed=4)
    x = case.x.astype(np.float32)
    x[0, 1, 0] = np.nan             # sample 0 turns NaN from step 1 on
    x[1, 2, :] = np.float32(1e30)   # sample 1 saturates: preactivations of about +-1e30
    x[2, 3, 0] = -np.inf            # sample 2: preactivations of +-inf
    hs, hT, cT = case.forward(np.float32, x=x)[0]
    assert np.isnan(hs[0, :1]).sum() == 0 and np.isnan(hs[0, 1:]).all() and np.isnan(cT[0]).all()
    assert np.isfinite(hs[1:]).all() and np.isfinite(cT[1:]).all()
    ref_hs, _, ref_cT = ref.lstm(x[1:].astype(np.float64), case.kernel, case.recurrent_kernel,
                                 case.bias)
    np.testing.assert_allclose(hs[1:], ref_hs, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(cT[1:], ref_cT, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("U", [5, 70])  # 70: more than one panel block
def test_forward_training_saves_and_gives_the_same_outputs(cell, U):
    """Inference folds the input projection into each step's product for LSTM and SimpleRNN
    ([x_t | h m] @ [W; R]); training keeps the projection apart: the same sums in another
    order, so equal to rounding (GRU: bitwise)."""
    case = Case(cell, 4, 6, 3, U, mask="arbitrary", h0=True, rmask=True)
    plain, saved0 = case.forward()
    trained, saved = case.forward(training=True)
    assert saved0 is None and saved is not None
    for a, b in zip(plain, trained):
        if cell == "gru":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    for a, b in zip(case.forward(np.float32)[0], case.forward(np.float32, training=True)[0]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_padded_steps_take_no_rows(cell):
    """A right-padded batch packs only its unmasked steps: the saved buffer shrinks with the
    number of real steps (the padded ones get no GEMM rows and no gate math)."""
    full = Case(cell, 4, 8, 3, 16)
    padded = Case(cell, 4, 8, 3, 16)
    padded.mask = np.arange(8)[None, :] < np.array([8, 2, 2, 2])[:, None]  # 14 of 32 steps
    _, s_full = full.forward(training=True)
    _, s_pad = padded.forward(training=True)
    assert s_pad[3].size < 0.5 * s_full[3].size


# -- activations -------------------------------------------------------------------------------

ACTIVATIONS = ["linear", "relu", "sigmoid", "hard_sigmoid", "tanh", "softsign", "softplus", "elu",
               "selu", "gelu", "silu", "swish", "exponential", "relu6", "leaky_relu", "hard_silu",
               "mish", None]


@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_activations(cell, act):
    """Each activation as `activation` (recurrent sigmoid) and as `recurrent_activation`
    (activation tanh): forward against numpy, backward against the C++ oracle."""
    pairs = [(act, "sigmoid")] + ([("tanh", act)] if cell != "simple_rnn" else [])
    for a, ra in pairs:
        case = Case(cell, 3, 4, 3, 4, act=a, rec_act=ra, mask="prefix", h0=True, scale=0.3,
                    seed=ACTIVATIONS.index(act))
        expected = case.reference()
        got, saved = case.forward(training=True)
        for e, g in zip(expected, got):
            assert_close(g, e, 1e-12, f"{a}, {ra}")
        douts = case.output_weights()
        fast = case.backward(saved, douts)
        _, saved_ref = case.forward(algorithm="reference", training=True)
        oracle = case.backward(saved_ref, douts)
        for name in fast:
            if fast[name] is not None:
                assert_close(fast[name], oracle[name], 1e-11, f"d{name}, {a}, {ra}")


def test_unknown_or_non_elementwise_activation():
    case = Case("lstm", 2, 3, 2, 2)
    for bad in ("softmax", "log_softmax", "nope"):
        with pytest.raises(ValueError, match=f"lstm_forward.*{bad}"):
            ops.lstm_forward(case.x, case.kernel, case.recurrent_kernel, case.bias, activation=bad)
        with pytest.raises(ValueError, match=f"gru_forward.*recurrent_activation.*{bad}"):
            c = Case("gru", 2, 3, 2, 2)
            ops.gru_forward(c.x, c.kernel, c.recurrent_kernel, c.bias, recurrent_activation=bad)


def test_activation_objects_and_functions():
    case = Case("simple_rnn", 2, 3, 2, 3)
    expected = ref.simple_rnn(case.x, case.kernel, case.recurrent_kernel, case.bias, activation="relu6")
    for act in (faltung.activations.relu6, faltung.activations.get("relu6")):
        hs, _, _ = ops.simple_rnn_forward(case.x, case.kernel, case.recurrent_kernel, case.bias,
                                          activation=act)
        assert_close(hs, expected[0], 1e-12)


# -- backward against finite differences -------------------------------------------------------

GRAD_CASES = []
for cell in ("simple_rnn", "lstm", "gru"):
    GRAD_CASES += [
        Case(cell, 2, 3, 2, 3, h0=True),
        Case(cell, 3, 4, 2, 2, mask="prefix", h0=True, seed=1),
        Case(cell, 3, 4, 2, 2, mask="suffix", go_backwards=True, h0=True, seed=2),
        Case(cell, 3, 4, 2, 2, mask="arbitrary", h0=True, rmask=True, seed=3),
        Case(cell, 3, 4, 2, 2, mask="allmasked", zero_output=True, go_backwards=True, h0=True, seed=4),
        Case(cell, 2, 3, 2, 2, bias=False, act="softplus", rec_act="silu", h0=True, seed=5),
        Case(cell, 1, 1, 1, 1, h0=True, seed=6),
    ]
GRAD_CASES += [
    Case("gru", 2, 3, 2, 3, reset_after=False, h0=True),
    Case("gru", 3, 4, 2, 2, reset_after=False, mask="arbitrary", h0=True, rmask=True, seed=3),
    Case("gru", 3, 4, 2, 2, reset_after=False, mask="prefix", go_backwards=True, zero_output=True,
         h0=True, seed=4),
    Case("gru", 2, 3, 2, 2, reset_after=False, act="elu", rec_act="softsign", h0=True, seed=5),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c.id for c in GRAD_CASES])
def test_backward_finite_differences(case):
    douts = case.output_weights()
    outs, saved = case.forward(training=True)
    grads = case.backward(saved, douts)
    oracle_saved = case.forward(algorithm="reference", training=True)[1]
    oracle = case.backward(oracle_saved, douts)
    for name, value in case.inputs().items():
        if value is None:
            assert grads[name] is None or name in ("h0", "c0")
            continue

        def loss(v, name=name):
            outs, _ = case.forward(**{name: v})
            return sum(float(np.sum(o * d)) for o, d in zip(outs, douts))

        expected = numeric_grad(loss, value)
        assert_close(grads[name], expected, 1e-7, name)
        assert_close(oracle[name], expected, 1e-7, name + " (C++ reference)")


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_backward_partial_output_gradients(cell):
    """dhs / dh_T / dc_T may each be None (zeros); need_* flags skip gradients."""
    case = Case(cell, 3, 4, 2, 3, mask="prefix", h0=True)
    douts = case.output_weights()
    _, saved = case.forward(training=True)
    for keep in range(len(douts)):
        partial = [d if i == keep else None for i, d in enumerate(douts)]
        zeros = [d if i == keep else np.zeros_like(d) for i, d in enumerate(douts)]
        a, b = case.backward(saved, partial), case.backward(saved, zeros)
        for name in a:
            if a[name] is not None:
                np.testing.assert_array_equal(a[name], b[name])
    g = case.backward(saved, douts, need_dx=False, need_dweights=False)
    assert g["x"] is None and g["kernel"] is None and g["recurrent_kernel"] is None and g["bias"] is None
    assert g["h0"] is not None
    full = case.backward(saved, douts)
    np.testing.assert_allclose(g["h0"], full["h0"], rtol=1e-13, atol=1e-13)
    g = case.backward(saved, douts, need_dx=True, need_dweights=False)
    np.testing.assert_allclose(g["x"], full["x"], rtol=1e-13, atol=1e-13)


def test_backward_float32():
    case = Case("lstm", 4, 6, 5, 8, mask="prefix", h0=True, rmask=True)
    douts = case.output_weights()
    _, saved = case.forward(training=True)
    g64 = case.backward(saved, douts)
    _, saved32 = case.forward(np.float32, training=True)
    g32 = case.backward(saved32, [d.astype(np.float32) for d in douts])
    for name in g64:
        assert g32[name].dtype == np.float32
        assert_close(g32[name].astype(np.float64), g64[name], 1e-4, name)


# -- threads: the fast kernels at sizes that use the team, against the oracle ------------------

# Sizes where the kernels use the team (2*B*U*G*U >= 1e5 flops per step).
THREAD_CASES = []
for cell in ("simple_rnn", "lstm", "gru"):
    THREAD_CASES += [
        Case(cell, 40, 9, 7, 40, h0=True),  # tall blocks: split by rows
        Case(cell, 4, 9, 7, 128, h0=True, seed=1),  # short blocks: split by units
        Case(cell, 37, 11, 5, 40, mask="prefix", go_backwards=True, rmask=True, seed=2),
        Case(cell, 37, 11, 5, 40, mask="suffix", h0=True, seed=3),
        Case(cell, 30, 8, 5, 48, mask="arbitrary", zero_output=True, h0=True, rmask=True, seed=4),
    ]
THREAD_CASES += [
    Case("gru", 40, 9, 7, 40, reset_after=False, h0=True),
    Case("gru", 4, 9, 7, 128, reset_after=False, mask="arbitrary", rmask=True, seed=1),
    Case("gru", 37, 11, 5, 40, reset_after=False, mask="prefix", go_backwards=True, seed=2),
    # 70 features: the per-step input gradient (rnn_backward.cpp input_grad) over several
    # panel blocks of columns at every level, split by units (short blocks) and by rows
    Case("lstm", 4, 6, 70, 24, seed=5),
    Case("simple_rnn", 3, 4, 70, 9, go_backwards=True, seed=6),
    Case("simple_rnn", 40, 6, 70, 24, mask="prefix", h0=True, seed=7),
    Case("lstm", 20, 5, 70, 40, mask="arbitrary", go_backwards=True, rmask=True, seed=8),
]


@pytest.fixture
def threads():
    before = faltung.get_num_threads()
    yield
    faltung.set_num_threads(before)


@pytest.fixture(params=[0, 1], ids=["default-split-limit", "1-byte-split-limit"])
def split_limit(request):
    """The row-split limit as set (0: half the L2) or 1 byte: every recurrent kernel split by
    units, and the LSTM and SimpleRNN input gradient as one GEMM after the loop instead of per
    step (rnn_kernels.hpp folded_input_grad)."""
    _core.rnn_set_row_split_bytes(request.param)
    yield request.param
    _core.rnn_set_row_split_bytes(0)


@pytest.mark.parametrize("case", THREAD_CASES, ids=[c.id for c in THREAD_CASES])
def test_threads_agree_with_the_oracle(case, threads, split_limit):
    douts = case.output_weights()
    _, saved_ref = case.forward(algorithm="reference", training=True)
    expected = case.forward(algorithm="reference")[0], case.backward(saved_ref, douts)
    results = {}
    for n in (1, 2):
        faltung.set_num_threads(n)
        for dtype in (np.float64, np.float32):
            outs, saved = case.forward(dtype, training=True)
            grads = case.backward(saved, [d.astype(dtype) for d in douts])
            results[n, dtype] = outs, grads
            tol = 1e-11 if dtype == np.float64 else 1e-3
            for o, e in zip(outs, expected[0]):
                assert_close(o.astype(np.float64), e, tol, f"{n} threads {dtype.__name__}")
            for name, g in grads.items():
                if g is not None:
                    scale = max(1.0, np.abs(expected[1][name]).max())
                    assert_close(g.astype(np.float64) / scale, expected[1][name] / scale, tol,
                                 f"d{name}, {n} threads {dtype.__name__}")
    # Thread counts change only how OpenBLAS blocks the GEMMs: float64 agrees to rounding;
    # float32 rounding differences (~1e-7) grow through the recurrence to ~1e-5 at most.
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-4)):
        (o1, g1), (o2, g2) = results[1, dtype], results[2, dtype]
        for a, b in zip(o1, o2):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        for name in g1:
            if g1[name] is not None:
                np.testing.assert_allclose(g1[name], g2[name], rtol=tol,
                                           atol=tol * max(1.0, np.abs(g1[name]).max()))


# -- edge sizes --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_zero_steps_and_empty_batch(cell):
    case = Case(cell, 3, 0, 2, 4, h0=True)
    outs, saved = case.forward(training=True)
    assert outs[0].shape == (3, 0, 4)
    np.testing.assert_array_equal(outs[1], case.h0)
    douts = case.output_weights()
    g = case.backward(saved, douts)
    np.testing.assert_array_equal(g["h0"], douts[1])
    assert g["x"].shape == (3, 0, 2)
    np.testing.assert_array_equal(g["kernel"], 0)
    np.testing.assert_array_equal(g["recurrent_kernel"], 0)
    empty = Case(cell, 0, 4, 2, 3)
    outs, saved = empty.forward(training=True)
    assert outs[0].shape == (0, 4, 3) and outs[1].shape == (0, 3)
    g = empty.backward(saved, empty.output_weights())
    np.testing.assert_array_equal(g["kernel"], 0)


def test_all_masked_batch():
    case = Case("lstm", 3, 4, 2, 3, h0=True)
    case.mask = np.zeros((3, 4), bool)
    outs, saved = case.forward(training=True)
    np.testing.assert_array_equal(outs[1], case.h0)
    np.testing.assert_array_equal(outs[0], np.repeat(case.h0[:, None], 4, axis=1))
    g = case.backward(saved, case.output_weights())
    np.testing.assert_array_equal(g["x"], 0)
    np.testing.assert_array_equal(g["kernel"], 0)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_zero_features(cell):
    """F = 0: the folded inference step and the joint [Xp | Hm] weight-gradient GEMM (LSTM,
    SimpleRNN) see only the recurrent side."""
    case = Case(cell, 2, 3, 0, 3, h0=True)
    for training in (False, True):
        outs, saved = case.forward(training=training)
        for o, e in zip(outs, case.reference()):
            assert_close(o, e, 1e-12)
    douts = case.output_weights()
    g = case.backward(saved, douts)
    assert g["x"].shape == (2, 3, 0) and g["kernel"].shape == (0, 3 * GATES[cell])
    for name in ("recurrent_kernel", "bias", "h0"):
        def loss(v, name=name):
            outs, _ = case.forward(**{name: v})
            return sum(float(np.sum(o * d)) for o, d in zip(outs, douts))
        assert_close(g[name], numeric_grad(loss, getattr(case, name)), 1e-7, name)


# -- errors -------------------------------------------------------------------------------------

def test_shape_errors():
    c = Case("lstm", 2, 3, 4, 5, h0=True)
    x, W, R, b = c.x, c.kernel, c.recurrent_kernel, c.bias
    f = ops.lstm_forward
    with pytest.raises(ValueError, match=r"lstm_forward: expected `x` of rank 3.*received shape \(2, 3\)"):
        f(x[:, :, 0], W, R, b)
    with pytest.raises(ValueError, match=r"lstm_forward: expected `kernel` of shape \(4, 20\), received shape \(3, 20\)"):
        f(x, W[:3], R, b)
    with pytest.raises(ValueError, match=r"lstm_forward: expected `recurrent_kernel` of shape \(units, 4\*units\).*received shape \(5, 15\)"):
        f(x, W, R[:, :15], b)
    with pytest.raises(ValueError, match=r"`recurrent_kernel`.*received shape \(20,\)"):
        f(x, W, R[0], b)
    with pytest.raises(ValueError, match=r"lstm_forward: expected `bias` of shape \(20,\), received shape \(2, 20\)"):
        f(x, W, R, np.stack([b, b]))
    with pytest.raises(ValueError, match=r"lstm_forward: expected `h0` of shape \(2, 5\), received shape \(3, 5\)"):
        f(x, W, R, b, h0=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"lstm_forward: expected `c0` of shape \(2, 5\), received shape \(2, 4\)"):
        f(x, W, R, b, c0=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"lstm_forward: expected `mask` of shape \(2, 3\), received shape \(2, 4\)"):
        f(x, W, R, b, mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"lstm_forward: expected `recurrent_mask` of shape \(2, 5\), received shape \(5,\)"):
        f(x, W, R, b, recurrent_mask=np.ones(5))
    g = Case("gru", 2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"gru_forward: expected `bias` of shape \(2, 15\), received shape \(15,\)"):
        ops.gru_forward(g.x, g.kernel, g.recurrent_kernel, g.bias[0])
    with pytest.raises(ValueError, match=r"gru_forward: expected `bias` of shape \(15,\), received shape \(2, 15\)"):
        ops.gru_forward(g.x, g.kernel, g.recurrent_kernel, g.bias, reset_after=False)
    s = Case("simple_rnn", 2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"simple_rnn_forward: expected `recurrent_kernel` of shape \(units, units\)"):
        ops.simple_rnn_forward(s.x, s.kernel, s.recurrent_kernel[:, :4], s.bias)
    with pytest.raises(ValueError, match=r"simple_rnn_forward: expected `kernel` of shape \(4, 5\)"):
        ops.simple_rnn_forward(s.x, s.kernel[:, :4], s.recurrent_kernel, s.bias)
    with pytest.raises(ValueError, match=r"units > 0"):
        ops.simple_rnn_forward(s.x, np.zeros((4, 0)), np.zeros((0, 0)), None)


def test_backward_errors():
    c = Case("lstm", 2, 3, 4, 5)
    _, saved = c.forward(training=True)
    with pytest.raises(ValueError, match=r"lstm_backward: expected `dhs` of shape \(2, 3, 5\), received shape \(2, 5\)"):
        ops.lstm_backward(saved, np.zeros((2, 5)), None, None)
    with pytest.raises(ValueError, match=r"lstm_backward: expected `dh_T` of shape \(2, 5\)"):
        ops.lstm_backward(saved, None, np.zeros((2, 3, 5)), None)
    with pytest.raises(ValueError, match=r"lstm_backward: expected `dc_T` of shape \(2, 5\)"):
        ops.lstm_backward(saved, None, None, np.zeros(5))
    with pytest.raises(ValueError, match=r"lstm_backward: expected the `saved` tuple"):
        ops.lstm_backward(None, None, None, None)
    g = Case("gru", 2, 3, 4, 5)
    _, gsaved = g.forward(training=True)
    with pytest.raises(ValueError, match=r"lstm_backward: expected the `saved` tuple of a lstm_forward"):
        ops.lstm_backward(gsaved, None, None, None)


# -- Keras (optional: only where keras is installed) --------------------------------------------

def _keras_layer(keras, case):
    common = dict(return_sequences=True, return_state=True, go_backwards=case.go_backwards,
                  activation=case.act, use_bias=case.bias is not None)
    if case.cell == "simple_rnn":
        return keras.layers.SimpleRNN(case.U, **common)
    if case.cell == "lstm":
        return keras.layers.LSTM(case.U, recurrent_activation=case.rec_act, **common)
    return keras.layers.GRU(case.U, recurrent_activation=case.rec_act, reset_after=case.reset_after,
                            **common)


KERAS_CASES = []
for cell in ("simple_rnn", "lstm", "gru"):
    KERAS_CASES += [
        Case(cell, 3, 5, 4, 6, h0=True),
        Case(cell, 4, 6, 3, 5, mask="prefix", h0=True, seed=1),
        Case(cell, 4, 6, 3, 5, mask="prefix", go_backwards=True, seed=2),
        Case(cell, 4, 6, 3, 5, mask="arbitrary", seed=3),
    ]
KERAS_CASES += [Case("gru", 4, 6, 3, 5, reset_after=False, mask="prefix", h0=True, seed=4)]


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c.id for c in KERAS_CASES])
def test_forward_matches_keras(case):
    keras = pytest.importorskip("keras")
    layer = _keras_layer(keras, case)
    x = case.x.astype(np.float32)
    layer.build(x.shape)
    layer.set_weights([w.astype(np.float32) for w in (case.kernel, case.recurrent_kernel, case.bias)
                       if w is not None])
    kwargs = {}
    if case.h0 is not None:
        kwargs["initial_state"] = ([case.h0.astype(np.float32), case.c0.astype(np.float32)]
                                   if case.cell == "lstm" else [case.h0.astype(np.float32)])
    if case.mask is not None:
        kwargs["mask"] = keras.ops.convert_to_tensor(case.mask)
    out = [keras.ops.convert_to_numpy(o) for o in layer(x, **kwargs)]
    ours, _ = case.forward(np.float32)
    # Keras returns (sequences, h[, c]); its sequences are in processing order, as ours
    for name, k, o in zip(("hs", "h_T", "c_T"), out, ours):
        assert_close(o, k, 2e-5, name)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_masked_output_before_the_first_step_vs_keras(cell):
    """With an initial state and masked first steps (left padding), faltung outputs the carried
    h0 there, as Keras's JAX and numpy backends do; its TensorFlow and PyTorch backends output
    zeros (their 'previous output' starts at zero). Everything else agrees."""
    keras = pytest.importorskip("keras")
    case = Case(cell, 4, 6, 3, 5, mask="suffix", h0=True, seed=5)
    layer = _keras_layer(keras, case)
    x = case.x.astype(np.float32)
    layer.build(x.shape)
    layer.set_weights([w.astype(np.float32) for w in (case.kernel, case.recurrent_kernel, case.bias)])
    state = [case.h0.astype(np.float32)] + ([case.c0.astype(np.float32)] if cell == "lstm" else [])
    out = [keras.ops.convert_to_numpy(o) for o in
           layer(x, initial_state=state, mask=keras.ops.convert_to_tensor(case.mask))]
    ours, _ = case.forward(np.float32)
    for k, o in zip(out[1:], ours[1:]):
        assert_close(o, k, 2e-5, "states")
    before_first = ~np.logical_or.accumulate(case.mask, axis=1)  # (B, T) leading masked steps
    assert before_first.any()
    hs = ours[0].copy()
    if keras.backend.backend() in ("tensorflow", "torch"):
        hs[before_first] = 0.0
    assert_close(hs, out[0], 2e-5, "hs")
