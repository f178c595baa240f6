"""Dense kernels (faltung.ops.nn.dense / dense_backward) against numpy references."""
import numpy as np
import pytest

import faltung
from faltung.ops import nn
from reference import nn as ref

SHAPES = [  # (batch dims, IN, OUT)
    ((1,), 1, 1), ((1,), 7, 3), ((5,), 3, 11), ((33,), 17, 9), ((2, 3), 4, 5), ((130,), 64, 70),
]
IDS = [f"B{'x'.join(map(str, b))}-IN{i}-OUT{o}" for b, i, o in SHAPES]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead,IN,OUT", SHAPES, ids=IDS)
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
def test_dense_forward(lead, IN, OUT, dtype, use_bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(lead + (IN,)).astype(dtype)
    w = rng.standard_normal((IN, OUT)).astype(dtype)
    b = rng.standard_normal(OUT).astype(dtype) if use_bias else None
    out = nn.dense(x, w, b)
    assert out.dtype == dtype and out.shape == lead + (OUT,)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref.dense(x, w, b), rtol=tol, atol=tol * IN)


@pytest.mark.parametrize("lead,IN,OUT", SHAPES[:5], ids=IDS[:5])
def test_dense_backward_finite_differences(lead, IN, OUT):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(lead + (IN,))
    w = rng.standard_normal((IN, OUT))
    b = rng.standard_normal(OUT)
    R = rng.standard_normal(lead + (OUT,))
    dx, dw, db = nn.dense_backward(R, x, w)
    np.testing.assert_allclose(dx, ref.numeric_grad(lambda v: (nn.dense(v, w, b) * R).sum(), x), atol=1e-7)
    np.testing.assert_allclose(dw, ref.numeric_grad(lambda v: (nn.dense(x, v, b) * R).sum(), w), atol=1e-7)
    np.testing.assert_allclose(db, ref.numeric_grad(lambda v: (nn.dense(x, w, v) * R).sum(), b), atol=1e-7)


def test_dense_backward_float32_matches_numpy_and_skips():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 64)).astype(np.float32)  # big enough for the threaded path
    w = rng.standard_normal((64, 300)).astype(np.float32)
    dy = rng.standard_normal((300, 300)).astype(np.float32)
    dx, dw, db = nn.dense_backward(dy, x, w)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    np.testing.assert_allclose(dx, dy.astype(np.float64) @ w.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dw, x.T.astype(np.float64) @ dy, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(0), rtol=1e-4, atol=1e-3)
    dx2, dw2, db2 = nn.dense_backward(dy, x, w, need_dx=False, need_dbias=False)
    assert dx2 is None and db2 is None
    np.testing.assert_array_equal(dw2, dw)


def test_dense_threads_agree():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 128)).astype(np.float32)
    w = rng.standard_normal((128, 256)).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    n0 = faltung.get_num_threads()
    try:
        faltung.set_num_threads(1)
        one = nn.dense(x, w, b), nn.dense_backward(x @ w, x, w)[2]
        faltung.set_num_threads(2)
        two = nn.dense(x, w, b), nn.dense_backward(x @ w, x, w)[2]
    finally:
        faltung.set_num_threads(n0)
    np.testing.assert_allclose(one[0], two[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one[1], two[1], rtol=1e-5, atol=1e-4)


def test_dense_shape_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"dense: expected `weight` of shape \(3, 4\), received shape \(5, 4\)"):
        nn.dense(x, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"dense: expected `bias` of shape \(4,\), received shape \(3,\)"):
        nn.dense(x, np.zeros((3, 4), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"dense_backward: expected `dy` of shape \(2, 4\)"):
        nn.dense_backward(np.zeros((3, 4)), x, np.zeros((3, 4)))
