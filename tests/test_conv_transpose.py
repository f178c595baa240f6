"""Transposed convolution: ops (C++ fast path and naive reference kernel) and the
Conv1DTranspose / Conv2DTranspose layers, against tests/reference/conv_transpose.py."""

import numpy as np
import pytest

import faltung

from faltung import _core
from faltung.ops.convolution_transpose import (compute_conv_transpose_output_shape, conv_transpose,
                                               conv_transpose_backward)
from reference import conv_transpose as ref

# (N, spatial, CI, F, kernel, strides, padding, output_padding, dilation)
CASES = {
    "N2-5x7-k3-s2-same": (2, (5, 7), 3, 4, 3, 2, "same", None, 1),
    "N2-5x7-k3-s2-same-op0": (2, (5, 7), 3, 4, 3, 2, "same", 0, 1),
    "N2-5x7-k3-s2-same-op1": (2, (5, 7), 3, 4, 3, 2, "same", 1, 1),
    "N1-16x16-k4-s2-same-decoder": (1, (16, 16), 8, 5, 4, 2, "same", None, 1),
    "N2-6x6-k4-s2-valid": (2, (6, 6), 3, 2, 4, 2, "valid", None, 1),
    "N1-3x5-k2-s3-valid-stride>kernel": (1, (3, 5), 2, 3, 2, 3, "valid", None, 1),
    "N2-4x3-k2-s3-same-stride>kernel": (2, (4, 3), 2, 3, 2, 3, "same", None, 1),
    "N3-5x5-k3-s2-valid-op1": (3, (5, 5), 3, 2, 3, 2, "valid", 1, 1),
    "N2-5x6-k3-d2-same": (2, (5, 6), 3, 4, 3, 1, "same", None, 2),
    "N2-5x6-k3-d2-valid": (2, (5, 6), 2, 3, 3, 1, "valid", None, 2),
    "N2-4x4-k4-s2-same-op1": (2, (4, 4), 3, 3, 4, 2, "same", 1, 1),
    "N1-1x1-k1-s1-valid": (1, (1, 1), 2, 3, 1, 1, "valid", None, 1),
    "N2-3x4-k(2,3)-s(1,2)-same": (2, (3, 4), 3, 2, (2, 3), (1, 2), "same", None, 1),
    "N2-L9-k3-s2-same-1D": (2, (9,), 3, 4, 3, 2, "same", None, 1),
    "N2-L7-k4-s2-valid-op1-1D": (2, (7,), 2, 3, 4, 2, "valid", 1, 1),
    "N1-L6-k5-d2-same-1D": (1, (6,), 2, 2, 5, 1, "same", None, 2),
    # >= 8 filters: "auto" runs the phased forward (register blocks of 16 filters)
    "N2-8x8-k4-s2-same-F12": (2, (8, 8), 5, 12, 4, 2, "same", None, 1),
    "N1-5x7-k3-s2-valid-op1-F17": (1, (5, 7), 3, 17, 3, 2, "valid", 1, 1),
    "N2-3x4-k2-s3-same-F8-stride>kernel": (2, (3, 4), 4, 8, 2, 3, "same", None, 1),
    "N1-6x5-k3-d2-same-F9": (1, (6, 5), 3, 9, 3, 1, "same", None, 2),
    "N2-L11-k5-s3-valid-F16-1D": (2, (11,), 3, 16, 5, 3, "valid", None, 1),
    # kernel = 2 * stride with >= 8 channels each way: "auto"/"phased" run every phase through
    # one Winograd F(3x3, 2x2) conv (phases shifted against each other, partial tiles)
    "N2-8x8-k4-s2-same-CI9-F12-wino": (2, (8, 8), 9, 12, 4, 2, "same", None, 1),
    "N1-5x7-k4-s2-valid-CI8-F10-wino": (1, (5, 7), 8, 10, 4, 2, "valid", None, 1),
    "N2-5x6-k4-s2-same-op1-CI8-F9-wino": (2, (5, 6), 8, 9, 4, 2, "same", 1, 1),
    "N2-6x5-k2-s1-same-CI10-F8-wino": (2, (6, 5), 10, 8, 2, 1, "same", None, 1),
    "N1-4x5-k2-s1-valid-CI8-F17-wino": (1, (4, 5), 8, 17, 2, 1, "valid", None, 1),
    "N1-4x5-k6-s3-same-CI8-F8-wino": (1, (4, 5), 8, 8, 6, 3, "same", None, 1),
    "N1-5x6-k(4,2)-s(2,1)-same-CI8-F9-wino": (1, (5, 6), 8, 9, (4, 2), (2, 1), "same", None, 1),
    "N1-1x1-k4-s2-valid-CI8-F8-wino": (1, (1, 1), 8, 8, 4, 2, "valid", None, 1),
    "N2-L9-k4-s2-same-CI8-F8-1D-direct": (2, (9,), 8, 8, 4, 2, "same", None, 1),
    # kernel = stride: each phase is a 1x1 conv with every window inside the input, over a
    # 28-wide row (wider than 24 pixels and not a multiple of the 6-pixel block)
    "N2-3x28-k2-s2-valid-CI8-F12-wide": (2, (3, 28), 8, 12, 2, 2, "valid", None, 1),
    # stride and dilation > 1: a phase's padding exceeds its kernel, so some of its output rows
    # have every window above the input (the direct kernel's row range must stay empty there)
    "N2-3x3-k3-s3-d4-CI16-F16": (2, (3, 3), 16, 16, 3, 3, "valid", None, 4),
}


def make(case, dtype=np.float64, seed=0):
    N, spatial, CI, F, k, s, padding, op, d = case
    rank = len(spatial)
    ks = (k,) * rank if isinstance(k, int) else k
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, *spatial, CI)).astype(dtype)
    w = rng.standard_normal((*ks, F, CI)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    args = dict(strides=s, padding=padding, output_padding=op, dilation_rate=d)
    return x, w, b, args


@pytest.mark.parametrize("algorithm", ["auto", "reference", "gemm", "phased"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_forward_matches_reference(case, algorithm):
    x, w, b, args = make(case)
    expected = ref.conv_transpose(x, w, bias=b, **args)
    y64 = conv_transpose(x, w, bias=b, algorithm=algorithm, **args)
    assert y64.dtype == np.float64 and y64.shape == expected.shape
    np.testing.assert_allclose(y64, expected, rtol=1e-10, atol=1e-10)
    y32 = conv_transpose(x.astype(np.float32), w.astype(np.float32), bias=b, algorithm=algorithm,
                         **args)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, rtol=1e-4, atol=1e-4)
    # the Keras output-shape formula agrees with what the kernel produced
    ks = w.shape[:-2]
    assert tuple(compute_conv_transpose_output_shape(x.shape, ks, w.shape[-2], **args)) == y64.shape


def numerical_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


GRAD_CASES = {k: CASES[k] for k in [
    "N2-5x7-k3-s2-same-op1", "N2-6x6-k4-s2-valid", "N1-3x5-k2-s3-valid-stride>kernel",
    "N2-5x6-k3-d2-same", "N2-4x4-k4-s2-same-op1", "N2-L7-k4-s2-valid-op1-1D",
    "N2-3x4-k(2,3)-s(1,2)-same"]}


@pytest.mark.parametrize("algorithm", ["auto", "reference"])
@pytest.mark.parametrize("case", GRAD_CASES.values(), ids=GRAD_CASES.keys())
def test_backward_matches_finite_differences(case, algorithm):
    x, w, b, args = make(case, seed=1)
    R = np.random.default_rng(2).standard_normal(conv_transpose(x, w, bias=b, **args).shape)

    def loss():
        return float(np.sum(conv_transpose(x, w, bias=b, **args) * R))

    dx, dw, db = conv_transpose_backward(R, x, w, algorithm=algorithm, **args)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_backward_fast_matches_reference_kernel_and_skips(case):
    x, w, b, args = make(case, dtype=np.float32, seed=3)
    dy = np.random.default_rng(4).standard_normal(conv_transpose(x, w, **args).shape)
    fast = conv_transpose_backward(dy, x, w, **args)
    slow = conv_transpose_backward(dy, x, w, algorithm="reference", **args)
    for f, s in zip(fast, slow):
        assert f.dtype == np.float32
        np.testing.assert_allclose(f, s, rtol=1e-4, atol=1e-4)
    dx, dw, db = conv_transpose_backward(dy, x, w, need_dx=False, need_dbias=False, **args)
    assert dx is None and db is None
    np.testing.assert_allclose(dw, fast[1], rtol=1e-6, atol=1e-6)


def test_backward_accumulates_over_batch_chunks():
    # 40 images of 16x16 with a k4/C32 column buffer: several images per thread, so the
    # per-thread dkernel/dbias partials each sum many images before they are combined.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 16, 16, 4))
    w = rng.standard_normal((4, 4, 32, 4))
    args = dict(strides=2, padding="same")
    dy = rng.standard_normal((40, 32, 32, 32))
    np.testing.assert_allclose(conv_transpose(x, w, **args),
                               conv_transpose(x, w, algorithm="reference", **args), atol=1e-9)
    for f, s in zip(conv_transpose_backward(dy, x, w, **args),
                    conv_transpose_backward(dy, x, w, algorithm="reference", **args)):
        np.testing.assert_allclose(f, s, rtol=1e-9, atol=1e-8)


# (length, kernel, stride, padding, output_padding, dilation) -> Keras 3 output length
KERAS_LENGTHS = [
    (5, 3, 1, "valid", None, 1, 7), (5, 3, 2, "valid", None, 1, 11),
    (5, 2, 3, "valid", None, 1, 15), (5, 3, 2, "valid", 1, 1, 12),
    (5, 3, 2, "same", None, 1, 10), (5, 3, 2, "same", 0, 1, 9), (5, 3, 2, "same", 1, 1, 10),
    (5, 4, 2, "same", None, 1, 10), (5, 4, 2, "same", 1, 1, 9), (16, 4, 2, "same", None, 1, 32),
    (16, 4, 2, "valid", None, 1, 34), (5, 3, 1, "same", None, 2, 5), (5, 3, 1, "valid", None, 2, 9),
    (5, 3, 1, "same", 0, 2, 5), (1, 1, 1, "valid", None, 1, 1), (7, 1, 3, "valid", None, 1, 21),
    (4, 5, 2, "same", 1, 1, 8), (3, 2, 2, "valid", 0, 1, 6), (3, 2, 2, "valid", None, 1, 6),
]


@pytest.mark.parametrize("n,k,s,padding,op,d,expected", KERAS_LENGTHS,
                         ids=[f"in{c[0]}-k{c[1]}-s{c[2]}-{c[3]}-op{c[4]}-d{c[5]}" for c in KERAS_LENGTHS])
def test_keras_output_lengths(n, k, s, padding, op, d, expected):
    assert ref.conv_transpose_length(n, k, s, padding, op, d) == expected
    assert _core.conv_transpose_output_length(n, k, s, d, padding, op) == expected
    shape = compute_conv_transpose_output_shape((None, n, 3), (k,), 7, s, padding, op, dilation_rate=d)
    assert tuple(shape) == (None, expected, 7)
    x = np.ones((1, n, n, 2), np.float32)
    w = np.ones((k, k, 3, 2), np.float32)
    y = conv_transpose(x, w, strides=s, padding=padding, output_padding=op, dilation_rate=d)
    assert y.shape == (1, expected, expected, 3)


# The one conv used by the adjointness test: faltung's own conv, to hold both families to each other.
def conv_for_adjoint(x, kernel, strides, padding, dilation_rate):
    """faltung's own C++ convolution (float64), so the test ties the two kernel families."""
    return faltung.ops.conv(x, kernel, strides=strides, padding=padding, dilation_rate=dilation_rate)


ADJOINT_CASES = [(sp, k, s, p, d) for sp, k, s, p, d in [
    ((5, 6), 3, 2, "same", 1), ((5, 6), 3, 2, "valid", 1), ((4, 4), 4, 2, "same", 1),
    ((4, 3), 4, 2, "valid", 1), ((3, 4), 2, 3, "same", 1), ((3, 4), 2, 3, "valid", 1),
    ((5, 5), 3, 1, "same", 2), ((5, 5), 3, 1, "valid", 2), ((4, 5), (2, 3), (2, 1), "same", 1),
    ((7,), 4, 2, "same", 1), ((7,), 3, 3, "valid", 1), ((6,), 5, 1, "same", 2)]]


@pytest.mark.parametrize("spatial,k,s,padding,d", ADJOINT_CASES,
                         ids=[f"{c[0]}-k{c[1]}-s{c[2]}-{c[3]}-d{c[4]}" for c in ADJOINT_CASES])
def test_adjoint_of_conv(spatial, k, s, padding, d):
    # <conv(y, W), x> == <y, conv_transpose(x, W)> with the same Keras-layout W:
    # conv kernel (kh, kw, in=F, out=CI) is the transposed conv's (kh, kw, filters, in).
    rng = np.random.default_rng(6)
    rank = len(spatial)
    ks = (k,) * rank if isinstance(k, int) else k
    w = rng.standard_normal((*ks, 3, 2))  # F=3 filters, CI=2
    x = rng.standard_normal((2, *spatial, 2))
    t = conv_transpose(x, w, strides=s, padding=padding, dilation_rate=d)
    y = rng.standard_normal(t.shape)
    c = conv_for_adjoint(y, w, s, padding, d)
    assert c.shape == x.shape
    lhs, rhs = float(np.sum(c * x)), float(np.sum(y * t))
    assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs))
    rhs_ref = float(np.sum(y * ref.conv_transpose(x, w, s, padding, None, d)))
    assert abs(lhs - rhs_ref) <= 1e-9 * max(1.0, abs(lhs))


@pytest.mark.parametrize("case", [CASES[k] for k in ["N2-5x7-k3-s2-same-op1", "N2-6x6-k4-s2-valid",
                                                     "N2-5x6-k3-d2-same", "N2-4x4-k4-s2-same-op1"]])
def test_against_torch(case):
    torch = pytest.importorskip("torch")
    x, w, b, args = make(case)
    s, d = (args["strides"],) * 2, (args["dilation_rate"],) * 2
    full = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(w).permute(3, 2, 0, 1),
        stride=s, dilation=d).permute(0, 2, 3, 1).numpy()
    y = conv_transpose(x, w, **args)
    # Keras's output is a window of torch's full output (zeros beyond its end).
    ks = w.shape[:2]
    win = []
    for axis in (1, 2):
        ke = (ks[axis - 1] - 1) * d[axis - 1] + 1
        left, _ = ref.conv_transpose_pads(ks[axis - 1], s[axis - 1], args["padding"],
                                          args["output_padding"], d[axis - 1])
        win.append(ke - 1 - left)
    padded = np.pad(full, [(0, 0), (0, y.shape[1]), (0, y.shape[2]), (0, 0)])
    expected = padded[:, win[0]:win[0] + y.shape[1], win[1]:win[1] + y.shape[2]]
    np.testing.assert_allclose(y, expected, rtol=1e-9, atol=1e-9)


# The fast path splits work into (image, band) items: a whole image per item when the batch
# is large against the thread count, else nt bands of rows per image; each item goes over
# blocks of input rows whose column buffer is ~256 KB. These cases hit batch 1, a batch
# smaller than (or not a multiple of) the thread count, several blocks with a partial last
# one, stride > kernel and dilation, under 1..4 threads.
BLOCK_CASES = {
    "N1-16x16-k4-s2-same": (1, (16, 16), 8, 5, 4, 2, "same", None, 1),
    "N3-7x5-k3-s2-valid-op1": (3, (7, 5), 3, 4, 3, 2, "valid", 1, 1),
    "N5-9x40-k5-s2-same-blocks": (5, (9, 40), 3, 16, 5, 2, "same", None, 1),
    "N2-5x4-k2-s3-same-stride>kernel": (2, (5, 4), 2, 3, 2, 3, "same", None, 1),
    "N1-6x7-k3-d2-valid": (1, (6, 7), 2, 3, 3, 1, "valid", None, 2),
    "N1-L11-k4-s2-same-1D": (1, (11,), 3, 2, 4, 2, "same", None, 1),
}


@pytest.fixture
def restore_threads():
    n0 = faltung.get_num_threads()
    yield
    faltung.set_num_threads(n0)


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("case", BLOCK_CASES.values(), ids=BLOCK_CASES.keys())
def test_fast_path_work_split_matches_reference_kernel(case, threads, restore_threads):
    faltung.set_num_threads(threads)
    for dtype, tol in [(np.float64, 1e-10), (np.float32, 1e-4)]:
        x, w, b, args = make(case, dtype=dtype, seed=7)
        y = conv_transpose(x, w, bias=b, **args)
        np.testing.assert_allclose(y, conv_transpose(x, w, bias=b, algorithm="reference", **args),
                                   rtol=tol, atol=tol)
        dy = np.random.default_rng(8).standard_normal(y.shape).astype(dtype)
        fast = conv_transpose_backward(dy, x, w, **args)
        slow = conv_transpose_backward(dy, x, w, algorithm="reference", **args)
        for f, r in zip(fast, slow):
            assert f.dtype == dtype
            np.testing.assert_allclose(f, r, rtol=tol, atol=tol * 10)
        # each gradient alone (the others skipped) is the same
        for i in range(3):
            need = [j == i for j in range(3)]
            alone = conv_transpose_backward(dy, x, w, need_dx=need[0], need_dkernel=need[1],
                                            need_dbias=need[2], **args)
            assert all((a is None) == (not nd) for a, nd in zip(alone, need))
            np.testing.assert_allclose(alone[i], fast[i], rtol=tol, atol=tol)


@pytest.mark.parametrize("case", [BLOCK_CASES["N1-6x7-k3-d2-valid"], (1, (5, 4), 2, 3, 3, 2, "same", 1, 1)],
                         ids=["N1-d2-valid", "N1-5x4-k3-s2-same-op1"])
def test_banded_backward_matches_finite_differences(case, restore_threads):
    faltung.set_num_threads(2)  # batch 1 on 2 threads: each image is cut into bands
    x, w, b, args = make(case, seed=9)
    R = np.random.default_rng(10).standard_normal(conv_transpose(x, w, bias=b, **args).shape)

    def loss():
        return float(np.sum(conv_transpose(x, w, bias=b, **args) * R))

    dx, dw, db = conv_transpose_backward(R, x, w, **args)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-7)
