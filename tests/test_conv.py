"""conv ops and kernels: forward vs the numpy reference, every algorithm, backward vs
float64 central differences, error messages."""
import numpy as np
import pytest

from faltung import _core
from faltung.ops import convolution as C
from reference import conv as R
from test_dispatch_levels import level  # noqa: F401  (the fixture: each CPU level in turn)

rng = np.random.default_rng(1234)

# (id, input shape, kernel shape (Keras), strides, padding, dilation)
CASES = [
    ("N2-H7W9-C4K6-k3-valid", (2, 7, 9, 4), (3, 3, 4, 6), 1, "valid", 1),
    ("N1-H5W5-C3K2-k3-same", (1, 5, 5, 3), (3, 3, 3, 2), 1, "same", 1),
    ("N2-H8W6-k4x2-even-same", (2, 8, 6, 3), (4, 2, 3, 5), 1, "same", 1),
    ("N2-H9W9-k2-s3-stride>kernel", (2, 9, 9, 2), (2, 2, 2, 3), 3, "valid", 1),
    ("N2-H10W7-k3-s2-same", (2, 10, 7, 3), (3, 3, 3, 4), (2, 2), "same", 1),
    ("N1-H9W11-k3-d2-same", (1, 9, 11, 2), (3, 3, 2, 3), 1, "same", (2, 2)),
    ("N2-H6W7-k3-d(1,2)-valid", (2, 6, 7, 2), (3, 3, 2, 3), 1, "valid", (1, 2)),
    ("N2-H5W6-k3-full", (2, 5, 6, 3), (3, 3, 3, 2), 1, "full", 1),
    ("N1-H6W6-k3-s2-full", (1, 6, 6, 2), (3, 3, 2, 2), 2, "full", 1),
    ("N2-H6W5-groups2", (2, 6, 5, 4), (3, 3, 2, 6), 1, "same", 1),
    ("N2-H6W5-groups3-s2", (2, 6, 5, 6), (3, 2, 2, 3), 2, "valid", 1),
    ("N2-H6W7-depthwise-C20-s2", (2, 6, 7, 20), (3, 3, 1, 20), 2, "same", 1),
    ("N1-H7W6-depthwise-C16-d2", (1, 7, 6, 16), (3, 3, 1, 16), 1, "same", 2),
    ("N2-H5W5-depthwise-C10-m2", (2, 5, 5, 10), (3, 2, 1, 20), 1, "valid", 1),
    ("N3-H5W4-1x1", (3, 5, 4, 5), (1, 1, 5, 7), 1, "valid", 1),
    ("N2-H5W5-1x1-s2", (2, 5, 5, 3), (1, 1, 3, 4), 2, "same", 1),
    ("N1-W13-1d-k3-causal", (1, 13, 3), (3, 3, 4), 1, "causal", 1),
    ("N2-W12-1d-k3-d2-causal", (2, 12, 2), (3, 2, 3), 1, "causal", 2),
    ("N2-W11-1d-k4-s3-same", (2, 11, 2), (4, 2, 3), 3, "same", 1),
    ("N2-W9-1d-k2-full", (2, 9, 2), (2, 2, 3), 1, "full", 1),
]
IDS = [c[0] for c in CASES]


def _applicable(x_shape, w_shape, strides, padding, dilation):
    algos = ["reference", "im2col"]
    groups = x_shape[-1] // w_shape[-2]
    if groups == x_shape[-1]:
        algos.append("depthwise")
    if all(k == 1 for k in w_shape[:-2]) and strides == 1 and padding in ("valid", "same"):
        algos.append("gemm1x1")
    if groups == 1:
        algos.append("direct")
    if groups == 1 and len(w_shape) == 4 and w_shape[:2] == (3, 3) and strides == 1:
        algos.append("winograd" if dilation in (1, (1, 1)) else "phased")
    return algos


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference(case):
    _, xs, ws, st, pad, dil = case
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    expected = R.conv(x, w, None, st, pad, dil)
    out = C.conv(x, w, strides=st, padding=pad, dilation_rate=dil)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_algorithm_forward_and_backward(case):
    _, xs, ws, st, pad, dil = case
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[-1])
    expected = R.conv(x, w, b, st, pad, dil)
    dout = rng.standard_normal(expected.shape)
    ref_grads = C.conv_backward(dout, x, w, st, pad, None, dil, algorithm="reference")
    for algo in _applicable(xs, ws, st, pad, dil):
        for relu in (False, True):
            out, ran = C.conv_forward(x, w, b, st, pad, None, dil, relu=relu, algorithm=algo)
            assert ran == algo
            np.testing.assert_allclose(out, np.maximum(expected, 0) if relu else expected, atol=1e-10)
        grads = C.conv_backward(dout, x, w, st, pad, None, dil, algorithm=algo)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, atol=1e-10, err_msg=algo)


# The direct kernel's register blocks: 6 output pixels x 2 vectors of filters (16 float32 at
# AVX2; 4 vectors, 64 float32, at AVX-512 where that pads no more filters: K = 33 takes 64),
# 6 input channels x 16 filters for the filter gradient, and a gather data gradient for C <= 7.
# Shapes around those block sizes: K below, at and past a block, OW not a multiple of 6,
# C across the gather limit, windows crossing every border, strides and dilations.
DIRECT_CASES = [  # (input shape, kernel shape, strides, padding, dilation)
    ((2, 7, 13, 3), (3, 3, 3, 32), 1, "same", 1),
    ((1, 9, 8, 3), (3, 3, 3, 16), 2, "same", 1),
    ((2, 11, 11, 7), (5, 5, 7, 17), 2, "valid", 1),
    ((3, 8, 10, 8), (3, 3, 8, 33), 2, "same", 1),
    ((1, 12, 19, 16), (3, 3, 16, 24), 1, "same", (2, 3)),
    ((2, 6, 6, 1), (2, 2, 1, 9), 3, "valid", 1),
    ((1, 5, 17, 5), (1, 7, 5, 20), 1, "full", 1),
    ((2, 10, 9, 12), (4, 2, 12, 40), (3, 2), "same", 1),
    ((1, 3, 3, 2), (3, 3, 2, 8), 1, "valid", 1),
    ((2, 1, 23, 6), (1, 5, 6, 48), (1, 4), "valid", (1, 2)),
    ((2, 9, 30, 4), (3, 3, 4, 16), 1, "same", (2, 1)),    # dilated rows only; wide rows
    ((1, 11, 12, 8), (3, 3, 8, 16), 2, "valid", 2),      # stride and dilation, C >= 8
    ((2, 9, 9, 8), (2, 2, 8, 16), 3, "valid", 1),        # stride > kernel: phases without taps
    ((2, 13, 27, 9), (3, 3, 9, 20), 1, "same", 1),       # C >= 8 at stride 1, padded borders
    # kernel = 2 * stride with C, K >= 8: the data gradient is a transposed conv that runs its
    # stride phases as one Winograd F(3x3, 2x2) conv
    ((2, 10, 9, 8), (4, 4, 8, 12), 2, "same", 1),
    ((1, 7, 8, 9), (4, 2, 9, 8), (2, 1), "valid", 1),
    # forward blocks split into many chunks (at two threads), most starting mid-image and
    # mid-row: every window inside after the padded copy (3 channels, 1369 pixels: a tail
    # block per image), every window inside under "valid", and border blocks at stride 2
    ((3, 37, 37, 3), (3, 3, 3, 16), 1, "same", 1),
    ((2, 20, 21, 24), (3, 3, 24, 16), 1, "valid", 1),
    ((2, 16, 16, 32), (3, 3, 32, 32), 2, "same", 1),
    # every window inside with no padded copy: a wide output row (26, not a multiple of the
    # 6-pixel block) and outputs narrower than a block (5 and 1 columns)
    ((3, 12, 28, 8), (3, 3, 8, 16), 1, "valid", 1),
    ((16, 12, 7, 3), (3, 3, 3, 16), 1, "valid", 1),
    ((5, 9, 3, 9), (2, 3, 9, 8), (1, 2), "valid", 1),
    # the gather data gradient's blocks of pixels that read only outputs (no checks per pixel)
    # under a column dilation, for C 3 and 5 (4 pixels per block; 5 channels: 2 at AVX2)
    ((2, 8, 21, 3), (3, 3, 3, 16), 1, "same", (1, 3)),
    ((1, 6, 19, 5), (2, 3, 5, 24), 1, "valid", (2, 2)),
]


@pytest.mark.parametrize("case", DIRECT_CASES, ids=[str(i) for i in range(len(DIRECT_CASES))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_matches_reference(case, dtype):
    # two threads, whatever the machine has: the chunks of forward blocks that the cases
    # above are sized for depend on the thread count
    import faltung
    before = faltung.get_num_threads()
    faltung.set_num_threads(2)
    try:
        _check_direct_against_reference(case, dtype)
    finally:
        faltung.set_num_threads(before)


def _check_direct_against_reference(case, dtype):
    xs, ws, st, pad, dil = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[-1]).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for relu in (False, True):
        expected, _ = C.conv_forward(x, w, b, st, pad, None, dil, relu=relu, algorithm="reference")
        out, ran = C.conv_forward(x, w, b, st, pad, None, dil, relu=relu, algorithm="direct")
        assert ran == "direct" and out.dtype == dtype
        np.testing.assert_allclose(out, expected, **tol)
    dout = rng.standard_normal(expected.shape).astype(dtype)
    want = C.conv_backward(dout, x, w, st, pad, None, dil, algorithm="reference")
    got = C.conv_backward(dout, x, w, st, pad, None, dil, algorithm="direct")
    for name, g, r in zip(("dx", "dw", "db"), got, want):
        np.testing.assert_allclose(g, r, err_msg=name, **tol)


def test_direct_forward_random_shapes():
    # 120 random geometries (sizes 1-33 x 1-39, kernels 1-5, strides 1-3 or dilations 1-2,
    # valid/same/full, 1-24 channels, 1-33 filters, 1-3 threads) against the reference kernel:
    # the block set-up (flattened or per-row blocks, border and tail blocks, chunk starts)
    # depends on all of them at once.
    import faltung
    r = np.random.default_rng(7)
    before = faltung.get_num_threads()
    checked = 0
    try:
        while checked < 120:
            N, H, W = int(r.integers(1, 4)), int(r.integers(1, 34)), int(r.integers(1, 40))
            Ci, K = int(r.choice([1, 2, 3, 5, 7, 8, 9, 16, 24])), int(r.choice([1, 3, 8, 16, 17, 32, 33]))
            k = (int(r.integers(1, 6)), int(r.integers(1, 6)))
            st = (int(r.integers(1, 4)), int(r.integers(1, 4)))
            dil = (1, 1) if max(st) > 1 else (int(r.integers(1, 3)), int(r.integers(1, 3)))
            pad = str(r.choice(["valid", "same", "full"]))
            if pad == "valid" and (H < (k[0] - 1) * dil[0] + 1 or W < (k[1] - 1) * dil[1] + 1):
                continue
            faltung.set_num_threads(int(r.integers(1, 4)))
            x = r.standard_normal((N, H, W, Ci))
            w = r.standard_normal((*k, Ci, K))
            b = r.standard_normal(K)
            relu = bool(r.integers(0, 2))
            want, _ = C.conv_forward(x, w, b, st, pad, None, dil, relu=relu, algorithm="reference")
            for dt, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
                got, ran = C.conv_forward(x.astype(dt), w.astype(dt), b.astype(dt), st, pad, None, dil,
                                          relu=relu, algorithm="direct")
                assert ran == "direct"
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol,
                                           err_msg=f"{x.shape} {w.shape} {st} {pad} {dil} {dt.__name__}")
            checked += 1
    finally:
        faltung.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_direct_multithreaded_matches_reference(threads):
    # Above 1 MFLOP, so the kernels split rows over threads (partials of the filter gradient,
    # per-thread padded dout rows and window copies); batch 3 does not divide evenly.
    import faltung
    x = rng.standard_normal((3, 17, 19, 5))
    w = rng.standard_normal((3, 3, 5, 21))
    b = rng.standard_normal(21)
    args = ((2, 1), "same", None, 1)
    before = faltung.get_num_threads()
    faltung.set_num_threads(threads)
    try:
        out, ran = C.conv_forward(x, w, b, *args, algorithm="direct")
        got = C.conv_backward(out, x, w, *args, algorithm="direct")
    finally:
        faltung.set_num_threads(before)
    assert ran == "direct"
    np.testing.assert_allclose(out, C.conv_forward(x, w, b, *args, algorithm="reference")[0], atol=1e-10)
    for g, r in zip(got, C.conv_backward(out, x, w, *args, algorithm="reference")):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)


_ONE_THREAD_TEAM = """
import numpy as np, faltung
from faltung.ops import convolution as C
faltung.set_num_threads(3)  # three shares of chunks; OMP_THREAD_LIMIT=1 starts a team of one
r = np.random.default_rng(5)
for shape, st, pad in (((9, 16, 16, 8), (2, 2), "same"), ((7, 13, 11, 3), (1, 1), "same")):
    x = r.standard_normal(shape)
    w = r.standard_normal((3, 3, shape[-1], 32))
    b = r.standard_normal(32)
    got, ran = C.conv_forward(x, w, b, st, pad, None, 1, algorithm="direct")
    want, _ = C.conv_forward(x, w, b, st, pad, None, 1, algorithm="reference")
    assert ran == "direct"
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
print("ok")
"""


def test_direct_forward_team_smaller_than_its_shares():
    # The forward hands out its chunks per thread share (chunks.hpp's ChunkQueue); a team
    # smaller than the thread count it was split for must take the missing threads' shares
    # (from their ends), or those outputs stay unwritten. Both the general blocks (border
    # pixels, stride 2) and the inside-the-image blocks (3 channels: the padded copy).
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    out = subprocess.run([sys.executable, "-c", _ONE_THREAD_TEAM], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_strided_input_gradient_streamed_above_8mb(level):  # noqa: F811
    # A stride-2 conv's input gradient runs the transposed conv's phases (conv_transpose.cpp),
    # each writing every other pixel of dinp; above 8 MB, with pixels of whole 64-byte lines,
    # the phases' whole filter blocks go out with streaming stores. 65 x 32 x 32 x 32 float32:
    # 8.5 MB, 32 channels: one whole filter block at every level. Against the reference kernel.
    x = rng.standard_normal((65, 32, 32, 32)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 32, 16)) * 0.3).astype(np.float32)
    args = ((2, 2), "same", None, 1)
    out, _ = C.conv_forward(x, w, None, *args)
    gy = rng.standard_normal(out.shape).astype(np.float32)
    got = C.conv_backward(gy, x, w, *args, algorithm="direct")
    want = C.conv_backward(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), *args,
                           algorithm="reference")
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


def test_direct_backward_vs_central_differences():
    x = rng.standard_normal((1, 7, 8, 3))
    w = rng.standard_normal((3, 3, 3, 18))
    b = rng.standard_normal(18)
    args = ((2, 1), "same", None, 1)
    Rw = rng.standard_normal(C.conv(x, w, *args).shape)

    def loss():
        return float((C.conv_forward(x, w, b, *args, algorithm="direct")[0] * Rw).sum())

    dx, dw, db = C.conv_backward(Rw, x, w, *args, algorithm="direct")
    np.testing.assert_allclose(dx, _num_grad(loss, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw, _num_grad(loss, w), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db, _num_grad(loss, b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("x_shape,w_shape,strides,expected", [
    ((64, 32, 32, 3), (3, 3, 3, 32), 1, "direct"),      # first layer: few channels
    ((64, 32, 32, 32), (3, 3, 32, 32), 1, "winograd"),  # 3x3 stride 1
    ((64, 32, 32, 64), (3, 3, 64, 64), 2, "direct"),    # strided
    ((8, 28, 28, 1), (5, 5, 1, 1), 1, "im2col"),        # one filter: a block would be 1/16 used
])
def test_auto_algorithm_choice(x_shape, w_shape, strides, expected):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    out, ran = C.conv_forward(x, w, None, strides, "same")
    assert ran == expected
    n = 2  # the reference on two images is enough
    want = C.conv_forward(x[:n], w, None, strides, "same", algorithm="reference")[0]
    np.testing.assert_allclose(out[:n], want, rtol=1e-3, atol=1e-3)


def _num_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


GRAD_CASES = [c for c in CASES if c[0] in (
    "N1-H5W5-C3K2-k3-same", "N2-H9W9-k2-s3-stride>kernel", "N1-H9W11-k3-d2-same", "N2-H6W5-groups2",
    "N3-H5W4-1x1", "N1-W13-1d-k3-causal", "N1-H6W6-k3-s2-full")]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_backward_vs_central_differences(case):
    _, xs, ws, st, pad, dil = case
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    b = rng.standard_normal(ws[-1])
    Rw = rng.standard_normal(C.conv(x, w, st, pad, None, dil).shape)

    def loss():
        return float((C.conv_forward(x, w, b, st, pad, None, dil)[0] * Rw).sum())

    dx, dw, db = C.conv_backward(Rw, x, w, st, pad, None, dil)
    np.testing.assert_allclose(dx, _num_grad(loss, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw, _num_grad(loss, w), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(db, _num_grad(loss, b), rtol=1e-6, atol=1e-6)


def test_backward_skips_unrequested_gradients():
    x, w = rng.standard_normal((1, 5, 5, 2)), rng.standard_normal((3, 3, 2, 3))
    dout = rng.standard_normal((1, 3, 3, 3))
    dx, dw, db = C.conv_backward(dout, x, w, need_dx=False, need_db=False)
    assert dx is None and db is None and dw.shape == w.shape


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("rank", [1, 2])
def test_depthwise_and_separable(m, rank):
    xs = (2, 9, 3) if rank == 1 else (2, 7, 8, 3)
    ks = (3,) if rank == 1 else (3, 3)
    x = rng.standard_normal(xs)
    dk = rng.standard_normal(ks + (3, m))
    pk = rng.standard_normal((1,) * rank + (3 * m, 4))
    y, algo = C.depthwise_conv_forward(x, dk, None, 2, "same")
    assert algo == "depthwise"
    np.testing.assert_allclose(y, R.depthwise_conv(x, dk, None, 2, "same"), atol=1e-10)
    np.testing.assert_allclose(C.separable_conv(x, dk, pk, 1, "valid"), R.separable_conv(x, dk, pk), atol=1e-10)
    Rw = rng.standard_normal(y.shape)
    dx, dw, db = C.depthwise_conv_backward(Rw, x, dk, 2, "same")
    assert dw.shape == dk.shape
    loss = lambda: float((C.depthwise_conv(x, dk, 2, "same") * Rw).sum())  # noqa: E731
    np.testing.assert_allclose(dx, _num_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(dw, _num_grad(loss, dk), atol=1e-6)
    np.testing.assert_allclose(db, Rw.reshape(-1, 3 * m).sum(0), atol=1e-10)


# Depthwise with one filter per channel (m == 1) has its own row passes (cpp/src/conv_depthwise.cpp):
# window tiles at stride 1 / dilation 1 for kernel widths 3 and 5, pixel tiles of 8/4/2/1, edge
# pixels with checked taps, channel vectors then a scalar tail, stride phases in the input
# gradient, the bias gradient in the filter pass, bias and ReLU fused into the forward.
DW_M1 = [  # (id, (N, H, W, C), kernel (kh, kw), strides, dilation, padding)
    ("k3-window-tiles-tail", (2, 3, 37, 40), (3, 3), 1, 1, "same"),
    ("k5-window-odd-C", (1, 5, 21, 17), (5, 5), 1, 1, "same"),
    ("k3-valid-no-edges", (2, 4, 12, 16), (3, 3), 1, 1, "valid"),
    ("k2x4-even-asymmetric", (2, 6, 19, 24), (2, 4), 1, 1, "same"),
    ("k3-s2-phases", (2, 7, 23, 33), (3, 3), 2, 1, "same"),
    ("k3-s(1,2)", (1, 6, 22, 16), (3, 3), (1, 2), 1, "same"),
    ("k3-d2", (2, 6, 20, 16), (3, 3), 1, 2, "same"),
    ("k1x3-s3-stride>kernel", (2, 5, 9, 8), (1, 3), 3, 1, "valid"),
    ("W1-k3", (3, 2, 1, 5), (3, 3), 1, 1, "same"),
    ("k5-W3-window-wider-than-row", (1, 4, 3, 20), (5, 5), 1, 1, "same"),
    # padding wider than the row: no pixel has all its taps inside (the first version wrote
    # past the end of the output row here)
    ("k5-W1-padding-wider-than-row", (1, 3, 1, 8), (5, 5), 1, 1, "same"),
    ("k3x4-W1-input-grad", (1, 3, 1, 8), (3, 4), 1, 1, "same"),
    ("k3-d2-W1", (1, 4, 1, 8), (3, 3), 1, 2, "same"),
    ("k7-s2-W1", (1, 5, 1, 8), (7, 7), 2, 1, "same"),
    ("k3-full-OH>H", (2, 4, 6, 16), (3, 3), 1, 1, "full"),
    # the forward's rows, and rows whose end pixels are many, go in window tiles from pixel 0,
    # the end tiles checked (RowPass::win_row). At AVX-512 (tiles of 8, 4, 2, 1 pixels; two
    # channel vectors of 16 floats or 8 doubles, then one, then single channels): 16 = 8 + 8,
    # 21 = 8 + 8 + 4 + 1, 12 = 8 + a checked 4, 10 = 8 + a checked 2, 8 with ends of both kinds
    # in one tile; at avx2 (tiles of 4, 2, 1) 21 = 5 x 4 + 1, 10 = 2 x 4 + 2
    ("k5-W16-tiles-from-0-odd-C", (2, 6, 16, 19), (5, 5), 1, 1, "same"),
    ("k5-W21-tiles-from-0", (1, 5, 21, 32), (5, 5), 1, 1, "same"),
    ("k3-W8-tiles-from-0-C24", (2, 5, 8, 24), (3, 3), 1, 1, "same"),
    ("k3-W12-checked-4-C48", (1, 3, 12, 48), (3, 3), 1, 1, "same"),
    ("k3-W10-checked-2-C33", (1, 3, 10, 33), (3, 3), 1, 1, "same"),
    ("k5-W12-full", (1, 4, 12, 16), (5, 5), 1, 1, "full"),
    # the filter gradient of a 3x3 kernel's three rows at once (dot_window3x3) on rows whose
    # input rows are 2 apart: 13 interior pixels (4 steps of 3 and a single step), 11 (3 and
    # two single steps)
    ("k3-s(2,1)-rows-fused", (2, 7, 15, 16), (3, 3), (2, 1), 1, "same"),
    ("k3-d(2,1)-rows-fused", (2, 7, 13, 17), (3, 3), 1, (2, 1), "same"),
    # > 1 MFLOP: threads split the rows, the fused backward sums per-thread partials
    ("threads-k3", (4, 16, 16, 64), (3, 3), 1, 1, "same"),
    ("threads-k3-s2", (8, 24, 24, 64), (3, 3), 2, 1, "same"),
    # a float32 output over 8 MB: the forward's whole-vector stores stream (edge pixels too)
    ("streamed-output-over-8MB", (33, 32, 32, 64), (3, 3), 1, 1, "same"),
    ("streamed-k5-tiles-from-0", (65, 16, 16, 128), (5, 5), 1, 1, "same"),
    ("streamed-dinp-stride-2", (33, 32, 32, 64), (3, 3), 2, 1, "same"),  # phases of every other pixel
]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", DW_M1, ids=[c[0] for c in DW_M1])
def test_depthwise_one_filter_per_channel_matches_reference(case, dtype, relu):
    _, xs, ks, strides, dil, padding = case
    x = rng.standard_normal(xs).astype(dtype)
    dk = rng.standard_normal(ks + (xs[-1], 1)).astype(dtype)
    b = rng.standard_normal(xs[-1]).astype(dtype)
    args = (strides, padding, None, dil)
    y, algo = C.depthwise_conv_forward(x, dk, b, *args, relu=relu)
    assert algo == "depthwise"
    want = C.depthwise_conv_forward(x, dk, b, *args, relu=relu, algorithm="reference")[0]
    # float32: the filter gradient sums up to 1,152 products per weight (|sum| ~ 35); the
    # streamed case sums 33,792 (|sum| ~ 200), so the absolute tolerance of a sum that cancels
    # to near zero grows with the largest sum (float64: 1.2e-12 seen at 0.024)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(y, want, **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    for need in [(True, True, True), (True, False, False), (False, True, True), (False, True, False),
                 (False, False, True)]:
        got = C.depthwise_conv_backward(gy, x, dk, *args, *need)
        ref = C.depthwise_conv_backward(gy, x, dk, *args, *need, algorithm="reference")
        for g, r, wanted in zip(got, ref, need):
            assert (g is None) == (not wanted)
            if wanted:
                scale = max(1.0, float(np.abs(r).max()) / 35)
                np.testing.assert_allclose(g, r, rtol=tol["rtol"], atol=tol["atol"] * scale)


def test_depthwise_1d_causal_kernel_wider_than_the_input():
    x = rng.standard_normal((2, 2, 8))
    dk = rng.standard_normal((5, 8, 1))
    y, algo = C.depthwise_conv_forward(x, dk, None, 1, "causal")
    assert algo == "depthwise"
    np.testing.assert_allclose(y, C.depthwise_conv_forward(x, dk, None, 1, "causal", algorithm="reference")[0],
                               rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    for g, r in zip(C.depthwise_conv_backward(gy, x, dk, 1, "causal"),
                    C.depthwise_conv_backward(gy, x, dk, 1, "causal", algorithm="reference")):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def test_depthwise_window_gradients_are_central_differences():
    x = rng.standard_normal((1, 4, 11, 3))
    dk = rng.standard_normal((3, 5, 3, 1))
    Rw = rng.standard_normal((1, 4, 11, 3))
    loss = lambda: float((C.depthwise_conv(x, dk, 1, "same") * Rw).sum())  # noqa: E731
    dx, dw, db = C.depthwise_conv_backward(Rw, x, dk, 1, "same")
    np.testing.assert_allclose(dx, _num_grad(loss, x), atol=1e-6)
    np.testing.assert_allclose(dw, _num_grad(loss, dk), atol=1e-6)
    np.testing.assert_allclose(db, Rw.reshape(-1, 3).sum(0), atol=1e-10)


# 1x1 convolutions (groups 1) run the packed-panel register tiles (conv.cpp pointwise_gemm) for
# the forward and the input gradient while the inner size is at most 512 and the packed weight
# at most 2 MiB, OpenBLAS beyond; the bias gradient sums rows in registers
# (conv2d_bias_backward), or with the other two in one pass (test_pointwise_backward_in_one_pass). Row counts that are no multiple of the tile (12 / 6 rows) or of a
# chunk, output widths that end in a partial panel.
PW = [  # (id, (N, H, W, C), K)
    ("C64-K128-rows-ragged", (3, 7, 9, 64), 128),
    ("C1-K37-partial-panel", (2, 5, 13, 1), 37),
    ("C300-K5-chunk-of-tile-rows", (1, 11, 17, 300), 5),
    ("C513-K40-openblas-forward", (1, 6, 7, 513), 40),
    ("C24-K600-openblas-input-grad", (2, 3, 5, 24), 600),
    ("threads-C32-K160", (2, 16, 16, 32), 160),  # threaded tiles and bias-gradient partials
    ("C64-K8200-packed-over-2MiB", (1, 1, 3, 64), 8200),
    ("C16-K128-output-over-8MB-streamed", (4, 64, 65, 16), 128),  # streaming stores
    ("C16-K120-output-over-8MB", (4, 64, 65, 16), 120),  # float32 rows not whole lines: plain stores
]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", PW, ids=[c[0] for c in PW])
def test_pointwise_conv_matches_reference(case, dtype, relu):
    _, xs, K = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((1, 1, xs[-1], K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    y, algo = C.conv_forward(x, w, b, relu=relu)
    assert algo == "gemm1x1"
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    want = x.reshape(-1, xs[-1]).astype(np.float64) @ w.reshape(xs[-1], K).astype(np.float64) + b
    np.testing.assert_allclose(y.reshape(-1, K), np.maximum(want, 0) if relu else want, **tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = C.conv_backward(gy, x, w)
    g2 = gy.reshape(-1, K).astype(np.float64)
    np.testing.assert_allclose(dx.reshape(-1, xs[-1]), g2 @ w.reshape(xs[-1], K).T.astype(np.float64), **tol)
    np.testing.assert_allclose(dw.reshape(xs[-1], K), x.reshape(-1, xs[-1]).T.astype(np.float64) @ g2, **tol)
    np.testing.assert_allclose(db, g2.sum(0), **tol)


# The 1x1 backward with both the input and the filter gradient, K a multiple of the vector
# width and the filter at most 128 KB, runs one pass over dout (conv.cpp pointwise_backward):
# the filter-gradient tiles of 12 (avx512) or 6 channels (fewer at the end) x 2 or 1 vectors of K, per-thread
# partials summed at the end. Channel counts off the tile, K of one vector only, one pixel,
# rows across many chunks, 1 to 3 threads; the gradients asked one at a time take the separate
# passes, and must agree.
PW_FUSED = [  # (id, (N, H, W, C), K)
    # K an odd number of vectors, so a last one-vector tile: K 48 at avx512 float32, 24 at
    # avx2 float32 and avx512 float64, 12 at baseline float32 and avx2 float64, 6 at baseline
    # float64 (other K of these take the one pass where K is a multiple of the vector width)
    ("C13-K48-tile-tails", (3, 17, 19, 13), 48),
    ("C9-K24-tile-tails", (2, 15, 13, 9), 24),
    ("C20-K12-tile-tails", (3, 11, 13, 20), 12),
    ("C5-K6-tile-tails", (2, 9, 7, 5), 6),
    ("C1-K16-one-vector", (2, 9, 11, 1), 16),
    ("one-pixel-C7-K32", (1, 1, 1, 7), 32),
    ("C128-K256-at-the-128KB-limit-of-float32", (1, 12, 14, 128), 256),
    ("C128-K128-at-the-limit-of-float64", (2, 9, 10, 128), 128),
    ("C130-K256-over-the-limit", (1, 7, 9, 130), 256),
    ("C64-K64-many-chunks", (4, 30, 31, 64), 64),
    ("C64-K32-dinp-over-8MB-streamed", (33, 32, 32, 64), 32),  # float32 dinp 8.7 MB: streaming stores
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", PW_FUSED, ids=[c[0] for c in PW_FUSED])
def test_pointwise_backward_in_one_pass(case, dtype):
    import faltung
    _, xs, K = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((1, 1, xs[-1], K)).astype(dtype)
    gy = rng.standard_normal(xs[:-1] + (K,)).astype(dtype)
    x2, g2 = x.reshape(-1, xs[-1]).astype(np.float64), gy.reshape(-1, K).astype(np.float64)
    want = (g2 @ w.reshape(xs[-1], K).T.astype(np.float64), x2.T @ g2, g2.sum(0))
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    before = faltung.get_num_threads()
    try:
        for n in (1, 2, 3):
            faltung.set_num_threads(n)
            dx, dw, db = _core.conv2d_backward(gy, x, w, 1, 1, 0, 0, 1, 1, 1)
            for name, got, exp in zip(("dx", "dw", "db"), (dx, dw, db), want):
                assert got.dtype == dtype
                np.testing.assert_allclose(got.reshape(exp.shape), exp, **tol, err_msg=f"{name}, {n} threads")
            no_bias = _core.conv2d_backward(gy, x, w, 1, 1, 0, 0, 1, 1, 1, need_db=False)
            assert no_bias[2] is None
            np.testing.assert_array_equal(no_bias[0], dx)
            np.testing.assert_array_equal(no_bias[1], dw)
            alone = [_core.conv2d_backward(gy, x, w, 1, 1, 0, 0, 1, 1, 1, need_dx=i == 0, need_dw=i == 1,
                                           need_db=i == 2)[i] for i in range(3)]
            for name, got, exp in zip(("dx", "dw", "db"), alone, want):
                np.testing.assert_allclose(got.reshape(exp.shape), exp, **tol, err_msg=f"{name} alone")
    finally:
        faltung.set_num_threads(before)


def test_pointwise_non_finite_values_as_the_reference():
    """NaN and infinities through the 1x1 forward's fused bias and ReLU (against im2col, which
    adds them in a pass of its own: NaN -> 0 under ReLU) and through the one-pass backward
    (against float64 numpy): the same NaN and infinity positions, the same finite values."""
    x = rng.standard_normal((2, 6, 7, 16)).astype(np.float32)
    x[0, 1, 2, 3], x[1, 4, 5, 0], x[1, 0, 0, 7] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((1, 1, 16, 32)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    b[5] = np.nan

    def same(got, want, tol):
        for test in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(test(got), test(want))
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=tol, atol=tol)

    for relu in (False, True):
        got, algo = C.conv_forward(x, w, b, relu=relu, algorithm="gemm1x1")
        want, _ = C.conv_forward(x, w, b, relu=relu, algorithm="im2col")
        assert algo == "gemm1x1"
        same(got, want, 1e-5)
    gy = rng.standard_normal((2, 6, 7, 32)).astype(np.float32)
    gy[0, 2, 2, 4] = np.nan
    dx, dw, db = _core.conv2d_backward(gy, x, w, 1, 1, 0, 0, 1, 1, 1)
    x2, g2 = x.reshape(-1, 16).astype(np.float64), gy.reshape(-1, 32).astype(np.float64)
    with np.errstate(invalid="ignore"):
        want = (g2 @ w.reshape(16, 32).T.astype(np.float64), x2.T @ g2, g2.sum(0))
    for got, exp in zip((dx, dw, db), want):
        same(got.reshape(exp.shape).astype(np.float64), exp, 2e-4)


def test_auto_choice():
    x1 = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    assert C.conv_forward(x1, np.ones((1, 1, 3, 2), np.float32))[1] == "gemm1x1"
    assert C.conv_forward(x1, np.ones((3, 3, 3, 2), np.float32), strides=2)[1] == "im2col"
    assert C.conv_forward(x1, np.ones((3, 3, 1, 3), np.float32))[1] == "depthwise"


@pytest.mark.parametrize("N,H,W,stride", [(5, 13, 11, 1), (1, 24, 23, 1), (4, 25, 26, 2)])
def test_large_shapes_tiles_and_threads_match_reference(N, H, W, stride):
    # > 1 MFLOP so the passes run multi-threaded: several im2col tiles per thread, a ragged
    # last tile, N < threads (parallel_gemm branch of backward-data), both parallel schemes
    x = rng.standard_normal((N, H, W, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    args = (stride, "same", None, 1)
    ref = C.conv_forward(x, w, None, *args, algorithm="reference")[0]
    dout = rng.standard_normal(ref.shape).astype(np.float32)
    ref_g = C.conv_backward(dout, x, w, *args, algorithm="reference")
    try:
        for tile_rows, tile_parallel in [(7, True), (0, True), (5, False)]:
            _core.conv_set_im2col_tuning(tile_rows, tile_parallel)
            np.testing.assert_allclose(C.conv_forward(x, w, None, *args, algorithm="im2col")[0], ref, atol=1e-4)
            for g, r in zip(C.conv_backward(dout, x, w, *args, algorithm="im2col"), ref_g):
                np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)
    finally:
        _core.conv_set_im2col_tuning(0, True)
    dw_x = rng.standard_normal((N, H, W, 64)).astype(np.float32)
    dw_w = rng.standard_normal((3, 3, 64, 2)).astype(np.float32)
    y, algo = C.depthwise_conv_forward(dw_x, dw_w, None, *args)
    assert algo == "depthwise"
    np.testing.assert_allclose(y, R.depthwise_conv(dw_x, dw_w, None, stride, "same"), rtol=1e-4, atol=1e-4)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    got = C.depthwise_conv_backward(gy, dw_x, dw_w, *args)
    want = C.depthwise_conv_backward(gy, dw_x, dw_w, *args, algorithm="reference")
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)


def test_float64_in_float64_out():
    x = rng.standard_normal((1, 4, 4, 2))
    assert C.conv(x, rng.standard_normal((2, 2, 2, 1))).dtype == np.float64


# -- errors ------------------------------------------------------------------------------
def test_error_kernel_larger_than_input():
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        C.conv(np.ones((1, 3, 3, 1)), np.ones((5, 5, 1, 1)))


def test_error_channels_vs_kernel():
    with pytest.raises(ValueError, match=r"has 5 channels.*not a multiple of kernel.shape\[-2\]=2"):
        C.conv(np.ones((1, 6, 6, 5)), np.ones((3, 3, 2, 4)))
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        C.conv(np.ones((1, 6, 6, 4)), np.ones((3, 3, 2, 3)))


def test_error_rank_and_format():
    with pytest.raises(ValueError, match="expected `inputs` of rank 3"):
        C.conv(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="expected `kernel` of rank 4"):
        C.conv(np.ones((1, 5, 5, 2)), np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="channels_last"):
        C.conv(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), data_format="channels_first")
    with pytest.raises(ValueError, match="`padding` argument"):
        C.conv(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), padding="causal")


def test_error_nonpositive_sizes():
    with pytest.raises(ValueError, match="`strides` argument"):
        C.conv(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), strides=0)
    with pytest.raises(ValueError, match="`dilation_rate` argument"):
        C.conv(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), dilation_rate=(1, -1))
    with pytest.raises(ValueError, match="sizes must be positive"):
        C.conv(np.ones((1, 0, 5, 2)), np.ones((3, 3, 2, 2)))


def test_binding_errors():
    x, w = np.ones((1, 5, 5, 4), np.float32), np.ones((3, 3, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"expects 2 input channels, but `x` of shape \(1, 5, 5, 4\) has 4"):
        _core.conv2d_forward(x, w, None, 1, 1, 0, 0, 3, 3, 1, 1, 1)
    with pytest.raises(ValueError, match="output sizes must be positive"):
        _core.conv2d_forward(x, w, None, 1, 1, 0, 0, 0, 3, 1, 1, 2)
    with pytest.raises(ValueError, match="last window starts past the input"):
        _core.conv2d_forward(x, w, None, 1, 1, 0, 0, 9, 3, 1, 1, 2)
    with pytest.raises(ValueError, match="expected `b` of shape"):
        _core.conv2d_forward(x, w, np.ones(3, np.float32), 1, 1, 0, 0, 3, 3, 1, 1, 2)
    with pytest.raises(ValueError, match="algorithm 'gemm1x1' cannot run"):
        _core.conv2d_forward(x, w, None, 1, 1, 0, 0, 3, 3, 1, 1, 2, "gemm1x1")
    with pytest.raises(ValueError, match="unknown algorithm 'fast'"):
        _core.conv2d_forward(x, w, None, 1, 1, 0, 0, 3, 3, 1, 1, 2, "fast")
    with pytest.raises(ValueError, match="algorithm 'winograd' cannot run"):
        _core.conv2d_forward(x, w, None, 1, 1, 0, 0, 3, 3, 1, 1, 2, "winograd")
    with pytest.raises(ValueError, match="expected `dout` of shape"):
        _core.conv2d_backward(np.ones((1, 3, 3, 5), np.float32), x, w, 1, 1, 0, 0, 1, 1, 2, True, True, True)


def test_padding_modes_analytic_1d():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    w = np.array([1.0, 10.0]).reshape(2, 1, 1)
    out = lambda pad: C.conv(x, w, padding=pad).ravel().tolist()  # noqa: E731
    assert out("valid") == [21, 32, 43]
    assert out("same") == [21, 32, 43, 4]  # Keras/TF: the extra pad pixel goes at the end
    assert out("causal") == [10, 21, 32, 43]
    assert out("full") == [10, 21, 32, 43, 4]


@pytest.mark.parametrize("case", CASES[:11], ids=IDS[:11])
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    _, xs, ws, st, pad, dil = case
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    st2 = (st, st) if np.isscalar(st) else st
    dl2 = (dil, dil) if np.isscalar(dil) else dil
    pads = [R.pads_1d(xs[1 + i], ws[i], st2[i], dl2[i], pad) for i in range(2)]
    xt = torch.nn.functional.pad(torch.tensor(x).permute(0, 3, 1, 2),
                                 (pads[1][0], max(pads[1][1], 0), pads[0][0], max(pads[0][1], 0)))
    wt = torch.tensor(w).permute(3, 2, 0, 1)
    y = torch.nn.functional.conv2d(xt, wt, stride=st2, dilation=dl2, groups=xs[-1] // ws[-2])
    np.testing.assert_allclose(C.conv(x, w, st, pad, None, dil), y.permute(0, 2, 3, 1).numpy(), atol=1e-10)
