"""Dilated 3x3 stride-1 convolutions through phase decomposition + Winograd
(faltung._core.conv2d_forward/backward with algorithm="phased") against the numpy reference,
faltung's reference algorithm and float64 central finite differences."""
import numpy as np
import pytest

from faltung import _core
from reference import conv as R
from reference.gradcheck import numeric_grad

# (N, H, W, C, K, (dh, dw), padding): padding "same", "valid" or explicit (pad_top, pad_left, OH, OW).
CASES = {
    "d2-same-7x9-C3-K5": (2, 7, 9, 3, 5, (2, 2), "same"),
    "d3-same-5x5-C1-K1-batch1": (1, 5, 5, 1, 1, (3, 3), "same"),
    "d2-valid-9x10-C4-K6": (2, 9, 10, 4, 6, (2, 2), "valid"),
    "d(2,1)-same-8x7-C8-K12": (2, 8, 7, 8, 12, (2, 1), "same"),
    "d(1,3)-valid-6x11-C5-K7": (2, 6, 11, 5, 7, (1, 3), "valid"),
    "d3-explicit-pads-10x9": (1, 10, 9, 3, 4, (3, 3), (1, 5, 7, 6)),
    "d2-full-pad-4x4": (2, 4, 4, 2, 3, (2, 2), (4, 4, 8, 8)),
    "d2-cropped-output-9x9": (1, 9, 9, 6, 5, (2, 2), (0, 3, 3, 4)),
    "d4-same-9x9-C9-K10": (2, 9, 9, 9, 10, (4, 4), "same"),
    "d5-same-3x4-output<dilation": (2, 3, 4, 2, 3, (5, 5), "same"),
    "d(3,2)-same-11x13-C16-K9-batch1": (1, 11, 13, 16, 9, (3, 2), "same"),
    "d2-same-16x16-C17-K20-threads": (3, 16, 16, 17, 20, (2, 2), "same"),
}


def geometry(case):
    """(pad_top, pad_left, OH, OW) and the reference's ((top, bottom), (left, right)) pads."""
    n, h, w, c, k, (dh, dw), padding = case
    if isinstance(padding, str):
        (pt, pb, oh), (pl, pr, ow) = R.pads_1d(h, 3, 1, dh, padding), R.pads_1d(w, 3, 1, dw, padding)
    else:
        pt, pl, oh, ow = padding
        pb, pr = oh - 1 + 2 * dh + 1 - h - pt, ow - 1 + 2 * dw + 1 - w - pl
    return (pt, pl, oh, ow), ((pt, pb), (pl, pr))


def make(case, dtype, seed=0):
    n, h, w, c, k, _, _ = case
    (_, _, oh, ow), _ = geometry(case)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    wt = rng.standard_normal((3, 3, c, k)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    dy = rng.standard_normal((n, oh, ow, k)).astype(dtype)
    return x, wt, b, dy


def forward(case, x, wt, b, algorithm="phased", relu=False):
    (pt, pl, oh, ow), _ = geometry(case)
    dh, dw = case[5]
    return _core.conv2d_forward(x, wt, b, 1, 1, pt, pl, oh, ow, dh, dw, 1, algorithm, relu)


def backward(case, dy, x, wt, algorithm="phased", need=(True, True, True)):
    (pt, pl, _, _), _ = geometry(case)
    dh, dw = case[5]
    return _core.conv2d_backward(dy, x, wt, 1, 1, pt, pl, dh, dw, 1, *need, algorithm)


def rel_err(got, ref):
    return np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)


TOL = {"float64": 1e-12, "float32": 2e-5}


@pytest.fixture(params=[2, 4, 0], ids=["F2", "F4", "auto"])
def tile(request):
    old = _core.winograd_get_tile()
    _core.winograd_set_tile(request.param)
    yield request.param
    _core.winograd_set_tile(old)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_forward_matches_reference(case, dtype, tile):
    x, wt, b, _ = make(case, dtype)
    _, pads = geometry(case)
    ref = R.conv2d(x, wt, b, (1, 1), pads, case[5])
    for bias in (None, b):
        for relu in (False, True):
            out, ran = forward(case, x, wt, bias, relu=relu)
            want = ref if bias is not None else ref - b
            want = np.maximum(want, 0) if relu else want
            assert ran == "phased" and out.dtype == np.dtype(dtype) and out.shape == want.shape
            assert rel_err(out, want) < TOL[dtype], (bias is not None, relu)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_backward_matches_reference_algorithm(case, dtype):
    x, wt, _, dy = make(case, dtype)
    want = backward(case, dy, x, wt, algorithm="reference")
    got = backward(case, dy, x, wt)
    for g, r, name in zip(got, want, ("dx", "dw", "db")):
        assert g.dtype == np.dtype(dtype) and g.shape == r.shape
        assert rel_err(g, r) < TOL[dtype], name
    # Each gradient alone (the combined path shares one gather of dout) gives the same, up to
    # rounding (GEMM results may depend on the buffers' alignment).
    dx, dw_none, db_none = backward(case, dy, x, wt, need=(True, False, False))
    dx_none, dw, _ = backward(case, dy, x, wt, need=(False, True, False))
    assert dw_none is None and db_none is None and dx_none is None
    assert rel_err(dx, want[0]) < TOL[dtype] and rel_err(dw, want[1]) < TOL[dtype]


@pytest.mark.parametrize("case", [CASES["d2-same-7x9-C3-K5"], CASES["d3-explicit-pads-10x9"],
                                  (1, 6, 7, 2, 3, (2, 3), "same")],
                         ids=["d2-same", "d3-explicit-pads", "d(2,3)-same"])
def test_backward_vs_central_differences(case):
    x, wt, b, _ = make(case, "float64", seed=1)
    x, r = x[:1], np.random.default_rng(2).standard_normal(forward(case, x[:1], wt, b)[0].shape)
    dx, dw, db = backward(case, r, x, wt)
    np.testing.assert_allclose(dx, numeric_grad(lambda a: forward(case, a, wt, b)[0], x, r), atol=1e-7)
    np.testing.assert_allclose(dw, numeric_grad(lambda a: forward(case, x, a, b)[0], wt, r), atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(lambda a: forward(case, x, wt, a)[0], b, r), atol=1e-7)


def test_auto_picks_phased_for_dilated_3x3():
    # 64->64 channels @32x32, dilation 2, "same": the case the phased path exists for.
    assert _core.conv2d_choose_algorithm(64, 32, 32, 64, 64, 3, 3, 32, 32, 1, 1, 2, 2, 2, 2, 1) == "phased"
    case = (2, 12, 10, 16, 16, (2, 2), "same")
    x, wt, b, _ = make(case, "float32")
    assert forward(case, x, wt, b, algorithm="auto")[1] == "phased"
    # Below 8 input channels the Winograd transforms do not pay: the direct kernel.
    assert _core.conv2d_choose_algorithm(2, 12, 10, 3, 16, 3, 3, 12, 10, 1, 1, 2, 2, 2, 2, 1) == "direct"
    # Dilation 1 stays plain Winograd; stride 2 and groups stay off the phased path.
    assert _core.conv2d_choose_algorithm(2, 12, 10, 16, 16, 3, 3, 12, 10, 1, 1, 1, 1, 1, 1, 1) == "winograd"
    assert _core.conv2d_choose_algorithm(2, 12, 10, 16, 16, 3, 3, 6, 5, 2, 2, 2, 2, 2, 2, 1) == "direct"


@pytest.mark.parametrize("args", [
    # (x shape, w shape, stride, pad_top/left, OH, OW, dilation, groups)
    ((1, 9, 9, 2), (3, 3, 2, 3), 2, 2, 5, 5, 2, 1),   # stride 2
    ((1, 9, 9, 2), (5, 5, 2, 3), 1, 4, 9, 9, 2, 1),   # 5x5 kernel
    ((1, 9, 9, 2), (3, 3, 2, 3), 1, 1, 9, 9, 1, 1),   # dilation 1: plain Winograd's job
    ((1, 9, 9, 4), (3, 3, 2, 4), 1, 2, 9, 9, 2, 2),   # groups 2
], ids=["stride2", "5x5", "dilation1", "groups2"])
def test_forcing_phased_on_inapplicable_shape_raises(args):
    xs, ws, st, pad, oh, ow, dil, groups = args
    x, w = np.ones(xs, np.float32), np.ones(ws, np.float32)
    with pytest.raises(ValueError, match="algorithm 'phased' cannot run"):
        _core.conv2d_forward(x, w, None, st, st, pad, pad, oh, ow, dil, dil, groups, "phased")
    dy = np.ones((xs[0], oh, ow, ws[-1]), np.float32)
    with pytest.raises(ValueError, match="algorithm 'phased' cannot run"):
        _core.conv2d_backward(dy, x, w, st, st, pad, pad, dil, dil, groups, True, True, True, "phased")


def test_unknown_algorithm_lists_phased():
    x, w = np.ones((1, 5, 5, 2), np.float32), np.ones((3, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="winograd, phased"):
        _core.conv2d_forward(x, w, None, 1, 1, 0, 0, 3, 3, 1, 1, 1, "fast")


def test_conv2d_layer_runs_phased_forward_and_backward():
    from faltung import layers
    rng = np.random.default_rng(3)
    c = layers.Conv2D(12, 3, padding="same", dilation_rate=(2, 3), activation="relu")
    x = rng.standard_normal((2, 9, 11, 8)).astype(np.float32)
    y = c(x, training=True)
    assert c.algorithm == "phased"
    z = R.conv(x, c.kernel.value, c.bias.value, 1, "same", (2, 3))
    np.testing.assert_allclose(y, np.maximum(z, 0), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = c.backward(dy)
    dz = (dy * (z > 0)).astype(np.float32)  # through the fused relu
    ref = backward((2, 9, 11, 8, 12, (2, 3), "same"), dz, x, c.kernel.value, algorithm="reference")
    np.testing.assert_allclose(dx, ref[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(c.kernel.grad, ref[1], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(c.bias.grad, ref[2], rtol=1e-4, atol=1e-3)
