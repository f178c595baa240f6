"""Winograd 3x3 stride-1 convolution kernels (faltung._core.conv2d_winograd_*) against the
plain numpy reference, for both tile sizes F(2x2,3x3) and F(4x4,3x3)."""
import numpy as np
import pytest

from faltung import _core
from reference.conv_winograd import (conv3x3_backward_data, conv3x3_backward_filter,
                                     conv3x3_forward)

# (N, H, W, C, K, pad_top, pad_left, OH, OW)
SHAPES = {
    "same_5x7_c3_k5": (2, 5, 7, 3, 5, 1, 1, 5, 7),
    "valid_5x7_c3_k5": (2, 5, 7, 3, 5, 0, 0, 3, 5),
    "1x1_input_pad1_c17": (1, 1, 1, 17, 3, 1, 1, 1, 1),
    "2x3_same_batch1": (1, 2, 3, 5, 17, 1, 1, 2, 3),
    "valid_9x10_c17_k20": (2, 9, 10, 17, 20, 0, 0, 7, 8),
    "same_8x8_c32_k32": (2, 8, 8, 32, 32, 1, 1, 8, 8),
    "pad_top0_left1_uneven": (3, 6, 7, 5, 9, 0, 1, 4, 7),
    "same_13x11_c8_k16": (1, 13, 11, 8, 16, 1, 1, 13, 11),
    "full_pad2_4x5": (2, 4, 5, 3, 4, 2, 2, 6, 7),
    "cropped_output_9x9": (1, 9, 9, 9, 10, 1, 0, 5, 3),
    # K past one weight panel (16 columns at AVX2, 32 at AVX-512 for float32) and not a multiple
    # of it, many tiles (several tile blocks): products on OpenBLAS (U[p] under 64 KB)
    "same_10x12_c40_k70": (2, 10, 12, 40, 70, 1, 1, 10, 12),
    "same_20x20_c24_k33": (3, 20, 20, 24, 33, 1, 1, 20, 20),
    # U[p] of 64 KB and more: products on U packed in panels (conv_winograd.cpp's ULayout), the
    # last panel partial (250 = 7 x 32 + 26 = 15 x 16 + 10); and blocks of 64 tiles over C = 160,
    # more rows than panel_product's L1 chunk holds (48 in float32, 24 in float64)
    "c128_k250_panels": (1, 6, 7, 128, 250, 1, 1, 6, 7),
    "c160_k128_row_chunks": (4, 32, 32, 160, 128, 1, 1, 32, 32),
}
# Relative error bound (max abs error / max abs reference).
TOL = {("float64", 2): 1e-13, ("float64", 4): 1e-12, ("float32", 2): 2e-6, ("float32", 4): 2e-5}
TOL.update({("float64", 0): TOL["float64", 4], ("float32", 0): TOL["float32", 4]})


@pytest.fixture(params=[2, 4, 0], ids=["F2", "F4", "auto"])
def tile(request):
    old = _core.winograd_get_tile()
    _core.winograd_set_tile(request.param)
    yield request.param
    _core.winograd_set_tile(old)


def rel_err(got, ref):
    return np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)


def make(shape, dtype, seed=0):
    n, h, w, c, k, pt, pl, oh, ow = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    wt = rng.standard_normal((3, 3, c, k)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    dy = rng.standard_normal((n, oh, ow, k)).astype(dtype)
    return x, wt, b, dy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_forward(shape, dtype, tile):
    n, h, w, c, k, pt, pl, oh, ow = shape
    x, wt, b, _ = make(shape, dtype)
    y = _core.conv2d_winograd_forward(x, wt, b, pt, pl, oh, ow)
    assert y.dtype == np.dtype(dtype) and y.shape == (n, oh, ow, k)
    assert rel_err(y, conv3x3_forward(x, wt, b, pt, pl, oh, ow)) < TOL[dtype, tile]
    y0 = _core.conv2d_winograd_forward(x, wt, None, pt, pl, oh, ow)
    assert rel_err(y0, conv3x3_forward(x, wt, None, pt, pl, oh, ow)) < TOL[dtype, tile]
    yr = _core.conv2d_winograd_forward(x, wt, b, pt, pl, oh, ow, relu=True)
    assert np.array_equal(yr, np.maximum(y, 0))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_backward_data(shape, dtype, tile):
    n, h, w, c, k, pt, pl, oh, ow = shape
    _, wt, _, dy = make(shape, dtype)
    dx = _core.conv2d_winograd_backward_data(dy, wt, h, w, pt, pl)
    assert dx.dtype == np.dtype(dtype) and dx.shape == (n, h, w, c)
    assert rel_err(dx, conv3x3_backward_data(dy, wt, h, w, pt, pl)) < TOL[dtype, tile]


@pytest.mark.parametrize("algo", [0, 1], ids=["winograd", "im2col"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_backward_filter(shape, dtype, algo, tile):
    n, h, w, c, k, pt, pl, oh, ow = shape
    x, _, _, dy = make(shape, dtype)
    old = _core.winograd_get_filter_algo()
    _core.winograd_set_filter_algo(algo)
    try:
        dw = _core.conv2d_winograd_backward_filter(dy, x, pt, pl)
    finally:
        _core.winograd_set_filter_algo(old)
    assert dw.dtype == np.dtype(dtype) and dw.shape == (3, 3, c, k)
    assert rel_err(dw, conv3x3_backward_filter(dy, x, pt, pl)) < TOL[dtype, tile]


def test_float32_f4_accuracy_wide_channels(tile):
    # Many channels and all-positive (post-ReLU-like) inputs: the harder case for F(4x4,3x3).
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal((2, 12, 12, 96))).astype(np.float32)
    wt = (rng.standard_normal((3, 3, 96, 64)) * 0.05).astype(np.float32)
    y = _core.conv2d_winograd_forward(x, wt, None, 1, 1, 12, 12)
    assert rel_err(y, conv3x3_forward(x, wt, None, 1, 1, 12, 12)) < TOL["float32", tile]
    dy = rng.standard_normal((2, 12, 12, 64)).astype(np.float32)
    dw = _core.conv2d_winograd_backward_filter(dy, x, 1, 1)
    assert rel_err(dw, conv3x3_backward_filter(dy, x, 1, 1)) < 5 * TOL["float32", tile]


def test_backward_matches_finite_differences(tile):
    # d/dtheta sum(out * R), central differences in float64.
    shape = (2, 5, 6, 3, 4, 1, 0, 4, 6)
    n, h, w, c, k, pt, pl, oh, ow = shape
    x, wt, b, r = make(shape, "float64", seed=3)
    loss = lambda x_, w_: np.sum(_core.conv2d_winograd_forward(x_, w_, b, pt, pl, oh, ow) * r)
    dx = _core.conv2d_winograd_backward_data(r, wt, h, w, pt, pl)
    dw = _core.conv2d_winograd_backward_filter(r, x, pt, pl)
    eps, rng = 1e-6, np.random.default_rng(4)
    for _ in range(6):
        i = tuple(rng.integers(0, s) for s in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        assert abs((loss(xp, wt) - loss(xm, wt)) / (2 * eps) - dx[i]) < 1e-6
        j = tuple(rng.integers(0, s) for s in wt.shape)
        wp, wm = wt.copy(), wt.copy()
        wp[j] += eps
        wm[j] -= eps
        assert abs((loss(x, wp) - loss(x, wm)) / (2 * eps) - dw[j]) < 1e-6


def test_empty_output_and_batch():
    x = np.ones((0, 4, 4, 3), np.float32)
    w = np.ones((3, 3, 3, 2), np.float32)
    assert _core.conv2d_winograd_forward(x, w, None, 1, 1, 4, 4).shape == (0, 4, 4, 2)
    dy = np.ones((1, 0, 0, 2), np.float32)
    dx = _core.conv2d_winograd_backward_data(dy, w, 2, 2, 0, 0)
    assert dx.shape == (1, 2, 2, 3) and not dx.any()
    dw = _core.conv2d_winograd_backward_filter(dy, np.ones((1, 2, 2, 3), np.float32), 0, 0)
    assert dw.shape == (3, 3, 3, 2) and not dw.any()


def test_errors():
    x = np.zeros((1, 4, 4, 3), np.float32)
    w = np.zeros((3, 3, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"conv2d_winograd_forward: expected `w` of shape \(3, 3, 3, 2\), received shape \(3, 3, 4, 2\)"):
        _core.conv2d_winograd_forward(x, np.zeros((3, 3, 4, 2), np.float32), None, 1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"expected `b` of shape \(2,\), received shape \(3,\)"):
        _core.conv2d_winograd_forward(x, w, np.zeros(3, np.float32), 1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"expected `x` of rank 4, received shape \(4, 4, 3\)"):
        _core.conv2d_winograd_forward(x[0], w, None, 1, 1, 4, 4)
    with pytest.raises(ValueError, match="expected non-negative `OH` and `OW`"):
        _core.conv2d_winograd_forward(x, w, None, 1, 1, -1, 4)
    with pytest.raises(ValueError, match=r"conv2d_winograd_backward_data: expected `w` of shape \(3, 3, 3, 5\)"):
        _core.conv2d_winograd_backward_data(np.zeros((1, 4, 4, 5), np.float32), w, 4, 4, 1, 1)
    with pytest.raises(ValueError, match=r"conv2d_winograd_backward_filter: expected `dout` of shape \(1, 4, 4, 2\)"):
        _core.conv2d_winograd_backward_filter(np.zeros((2, 4, 4, 2), np.float32), x, 1, 1)
    with pytest.raises(ValueError, match=r"winograd_set_tile: expected m of 0 \(auto\), 2 or 4, received 3"):
        _core.winograd_set_tile(3)


@pytest.mark.parametrize("algo", [0, 1], ids=["winograd", "im2col"])
def test_backward_filter_same_on_every_run(algo):
    # Two threads sum per-thread partials over many blocks of tiles (rows); each thread sums a
    # fixed range of them, so repeated calls agree to the bit (seeded training is reproducible).
    import faltung
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 20, 20, 16)).astype(np.float32)
    dy = rng.standard_normal((32, 20, 20, 24)).astype(np.float32)
    before, old = faltung.get_num_threads(), _core.winograd_get_filter_algo()
    faltung.set_num_threads(2)
    _core.winograd_set_filter_algo(algo)
    try:
        first = _core.conv2d_winograd_backward_filter(dy, x, 1, 1)
        for _ in range(8):
            assert np.array_equal(_core.conv2d_winograd_backward_filter(dy, x, 1, 1), first)
    finally:
        faltung.set_num_threads(before)
        _core.winograd_set_filter_algo(old)
