"""The CUDA convolution and resampling bodies (cpp/cuda/conv.cuh, resample.cuh) held to the CPU
kernels of faltung._core, their oracles.

`impl` is faltung._cuda_host (the bodies run over their whole grid x block index space on the
CPU; every run) and, when a GPU exists, faltung._cuda (the same launches on the device; skipped
with the reason otherwise). Geometry (pads and output sizes of "valid"/"same"/"causal") comes
from faltung.ops.convolution.pad_and_size, as the layers compute it. `block` 32 gives many
blocks, so the grid's tail (threads past the last element) is exercised; the filter and bias
reductions split their rows into chunks once the output has more than 16 pixels, so both the
one-pass and the two-pass reductions run.
"""
import numpy as np
import pytest

from faltung import _core
from faltung.ops.convolution import pad_and_size

from test_cuda_kernels import WITH_BLAS, impl  # noqa: E402,F401  (the fixture: host harness, then device)


DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])


def sfx(dtype):
    return "_f32" if dtype == np.float32 else "_f64"


def close(a, b, dtype):
    """Equal up to the rounding of a different summation order, relative to the result's scale."""
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = 1.0 + float(np.abs(b).max(initial=0.0))
    if dtype == np.float32:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6 * scale)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13 * scale)


def geometry(H, W, KH, KW, strides, dilation, padding):
    """(pad_top, pad_left, OH, OW) as the ops layer computes them."""
    pt, OH = pad_and_size(H, KH, strides[0], dilation[0], padding)
    pl, OW = pad_and_size(W, KW, strides[1], dilation[1], padding)
    assert OH > 0 and OW > 0
    return pt, pl, OH, OW


# ---- Conv2D (and Conv1D as H = KH = 1), grouped ------------------------------------------------

CONV_CASES = {  # N, H, W, C, K, KH, KW, strides, dilation, padding, groups
    "N2-7x9-C3-K5-3x3-same": (2, 7, 9, 3, 5, 3, 3, (1, 1), (1, 1), "same", 1),
    "N1-8x7-C4-K6-3x2-s2-valid": (1, 8, 7, 4, 6, 3, 2, (2, 2), (1, 1), "valid", 1),
    "N3-9x9-C2-K3-2x2-s3-stride>kernel": (3, 9, 9, 2, 3, 2, 2, (3, 3), (1, 1), "valid", 1),
    "N2-8x11-C3-K4-3x3-s2-stride>kernel-same": (2, 8, 11, 3, 4, 1, 3, (3, 4), (1, 1), "same", 1),
    "N2-11x10-C3-K4-3x3-d2-same": (2, 11, 10, 3, 4, 3, 3, (1, 1), (2, 2), "same", 1),
    "N1-9x12-C2-K3-3x3-d2-valid": (1, 9, 12, 2, 3, 3, 3, (1, 1), (2, 2), "valid", 1),
    "N2-9x8-C5-K7-5x3-s2x3-d2x1-same": (2, 9, 8, 5, 7, 5, 3, (2, 3), (2, 1), "same", 1),
    "N3-5x6-C6-K8-1x1": (3, 5, 6, 6, 8, 1, 1, (1, 1), (1, 1), "valid", 1),
    "N1-5x7-C4-K5-1x1-s2": (1, 5, 7, 4, 5, 1, 1, (2, 2), (1, 1), "same", 1),
    "N2-6x7-C6-K9-3x3-groups3": (2, 6, 7, 6, 9, 3, 3, (1, 1), (1, 1), "same", 3),
    "N1-9x8-C4-K6-3x3-groups2-s2-d2-valid": (1, 9, 8, 4, 6, 3, 3, (2, 2), (2, 2), "valid", 2),
    "N0-5x5-C2-K3-empty-batch": (0, 5, 5, 2, 3, 3, 3, (1, 1), (1, 1), "same", 1),
    "N1-3x4-C2-K3-3x3-one-pass-reduction": (1, 3, 4, 2, 3, 3, 3, (1, 1), (1, 1), "same", 1),
    "N2-1x13-C3-K4-1x3-conv1d-s2": (2, 1, 13, 3, 4, 1, 3, (1, 2), (1, 1), "same", 1),
}


def conv_inputs(rng, N, H, W, C, K, KH, KW, groups, dtype):
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((KH, KW, C // groups, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b


@WITH_BLAS
@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
@DTYPES
@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
def test_conv2d_matches_cpu(impl, case, dtype, relu):
    N, H, W, C, K, KH, KW, strides, dilation, padding, groups = case
    rng = np.random.default_rng(H * 100 + W * 10 + C)
    x, w, b = conv_inputs(rng, N, H, W, C, K, KH, KW, groups, dtype)
    pt, pl, OH, OW = geometry(H, W, KH, KW, strides, dilation, padding)
    geo = (strides[0], strides[1], pt, pl)
    dil = (dilation[0], dilation[1], groups)
    y_cpu, _ = _core.conv2d_forward(x, w, b, *geo, OH, OW, *dil, "auto", relu)
    y = getattr(impl, "conv2d_forward" + sfx(dtype))(x, w, b, *geo, OH, OW, *dil, relu=relu, block=32)
    assert y.dtype == dtype
    close(y, y_cpu, dtype)
    y_nobias = getattr(impl, "conv2d_forward" + sfx(dtype))(x, w, None, *geo, OH, OW, *dil, block=64)
    close(y_nobias, _core.conv2d_forward(x, w, None, *geo, OH, OW, *dil)[0], dtype)

    dout = rng.standard_normal((N, OH, OW, K)).astype(dtype)
    dx, dw, db = getattr(impl, "conv2d_backward" + sfx(dtype))(dout, x, w, *geo, *dil, block=32)
    dx_c, dw_c, db_c = _core.conv2d_backward(dout, x, w, *geo, *dil)
    close(dx, dx_c, dtype)
    close(dw, dw_c, dtype)
    close(db, db_c, dtype)
    # each gradient alone is the same; skipped ones are None
    only_dw = getattr(impl, "conv2d_backward" + sfx(dtype))(dout, x, w, *geo, *dil, need_dx=False,
                                                            need_db=False, block=96)
    assert only_dw[0] is None and only_dw[2] is None
    close(only_dw[1], dw_c, dtype)


@WITH_BLAS
@pytest.mark.parametrize("padding,strides,dilation", [("causal", 1, 2), ("causal", 2, 1), ("valid", 3, 1)])
@DTYPES
def test_conv1d_routed_as_2d_matches_cpu(impl, padding, strides, dilation, dtype):
    """Conv1D as the layers run it: rank 3 viewed as H = KH = 1 (causal: left pad only)."""
    from faltung.ops import convolution as conv_ops
    rng = np.random.default_rng(7)
    N, L, C, K, KW = 2, 13, 3, 5, 3
    x = rng.standard_normal((N, L, C)).astype(dtype)
    w = rng.standard_normal((KW, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    pl, OW = pad_and_size(L, KW, strides, dilation, padding)
    y_cpu, _ = conv_ops.conv_forward(x, w, b, strides, padding, dilation_rate=dilation)
    run = getattr(impl, "conv2d_forward" + sfx(dtype))
    y = run(x[:, None], w[None], b, 1, strides, 0, pl, 1, OW, 1, dilation, 1, block=32)[:, 0]
    close(y, y_cpu, dtype)
    dout = rng.standard_normal(y.shape).astype(dtype)
    grads_cpu = conv_ops.conv_backward(dout, x, w, strides, padding, dilation_rate=dilation)
    dx, dw, db = getattr(impl, "conv2d_backward" + sfx(dtype))(dout[:, None], x[:, None], w[None], 1, strides, 0,
                                                              pl, 1, dilation, 1, block=32)
    for got, want in zip((dx[:, 0], dw[0], db), grads_cpu):
        close(got, want, dtype)


def test_conv2d_rejects_bad_arguments(impl):
    x = np.zeros((1, 5, 5, 4), np.float32)
    w = np.zeros((3, 3, 4, 6), np.float32)
    geo = (1, 1, 0, 0, 3, 3, 1, 1, 1)  # strides, pads, OH, OW, dilation, groups
    f, bwd = impl.conv2d_forward_f32, impl.conv2d_backward_f32
    with pytest.raises(ValueError, match=r"conv2d_forward: expected `x` of rank 4, received shape \(5, 5, 4\)"):
        f(x[0], w, None, *geo)
    with pytest.raises(ValueError, match="expects 8 input channels, but `x` of shape \\(1, 5, 5, 4\\) has 4"):
        f(x, w, None, 1, 1, 0, 0, 3, 3, 1, 1, 2)
    with pytest.raises(ValueError, match="not divisible by groups"):
        f(x, np.zeros((3, 3, 2, 5), np.float32), None, 1, 1, 0, 0, 3, 3, 1, 1, 2)
    with pytest.raises(ValueError, match="groups"):
        f(x, w, None, 1, 1, 0, 0, 3, 3, 1, 1, 0)
    with pytest.raises(ValueError, match="output too large"):
        f(x, w, None, 1, 1, 0, 0, 6, 3, 1, 1, 1)  # the 6th window would start past the 5 input rows
    with pytest.raises(ValueError, match="padding must be in"):
        f(x, w, None, 1, 1, 3, 0, 3, 3, 1, 1, 1)
    with pytest.raises(ValueError, match="strides must be positive"):
        f(x, w, None, 0, 1, 0, 0, 3, 3, 1, 1, 1)
    with pytest.raises(ValueError, match=r"expected `b` of shape \(6,\), received \(5,\)"):
        f(x, w, np.zeros(5, np.float32), *geo)
    with pytest.raises(ValueError, match="multiple of 32"):
        f(x, w, None, *geo, block=48)
    with pytest.raises(ValueError, match=r"conv2d_backward: expected `dout` of shape \(1, 3, 3, 6\), "
                                         r"received \(1, 3, 3, 5\)"):
        bwd(np.zeros((1, 3, 3, 5), np.float32), x, w, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="conv2d_backward: expected `dout` of rank 4"):
        bwd(np.zeros((3, 3, 6), np.float32), x, w, 1, 1, 0, 0, 1, 1, 1)


# ---- DepthwiseConv2D -------------------------------------------------------------------------

DEPTHWISE_CASES = {  # N, H, W, C, m, KH, KW, strides, dilation, padding
    "N2-7x8-C3-m1-3x3-same": (2, 7, 8, 3, 1, 3, 3, (1, 1), (1, 1), "same"),
    "N1-9x7-C4-m2-3x3-s2-valid": (1, 9, 7, 4, 2, 3, 3, (2, 2), (1, 1), "valid"),
    "N3-8x8-C2-m3-2x2-s3-stride>kernel": (3, 8, 8, 2, 3, 2, 2, (3, 3), (1, 1), "valid"),
    "N2-10x9-C5-m2-3x3-d2-same": (2, 10, 9, 5, 2, 3, 3, (1, 1), (2, 2), "same"),
    "N1-4x5-C3-m1-1x1": (1, 4, 5, 3, 1, 1, 1, (1, 1), (1, 1), "valid"),
}


@pytest.mark.parametrize("case", DEPTHWISE_CASES.values(), ids=DEPTHWISE_CASES.keys())
@DTYPES
def test_depthwise_conv2d_matches_cpu(impl, case, dtype):
    N, H, W, C, m, KH, KW, strides, dilation, padding = case
    rng = np.random.default_rng(C * 10 + m)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    k = rng.standard_normal((KH, KW, C, m)).astype(dtype)  # Keras's depthwise kernel
    b = rng.standard_normal(C * m).astype(dtype)
    pt, pl, OH, OW = geometry(H, W, KH, KW, strides, dilation, padding)
    geo = (strides[0], strides[1], pt, pl)
    kg = k.reshape(KH, KW, 1, C * m)  # the CPU runs it as a grouped conv, groups = C
    y_cpu, _ = _core.conv2d_forward(x, kg, b, *geo, OH, OW, dilation[0], dilation[1], C)
    y = getattr(impl, "depthwise_conv2d" + sfx(dtype))(x, k, b, *geo, OH, OW, *dilation, block=32)
    close(y, y_cpu, dtype)
    dout = rng.standard_normal(y.shape).astype(dtype)
    dx, dk, db = getattr(impl, "depthwise_conv2d_backward" + sfx(dtype))(dout, x, k, *geo, *dilation, block=32)
    dx_c, dk_c, db_c = _core.conv2d_backward(dout, x, kg, *geo, dilation[0], dilation[1], C)
    assert dk.shape == k.shape
    close(dx, dx_c, dtype)
    close(dk, dk_c.reshape(k.shape), dtype)
    close(db, db_c, dtype)


def test_depthwise_conv2d_rejects_bad_arguments(impl):
    x = np.zeros((1, 5, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"depthwise_conv2d: expected `kernel` of shape \(KH, KW, 3, "
                                         r"depth_multiplier\)"):
        impl.depthwise_conv2d_f32(x, np.zeros((3, 3, 4, 1), np.float32), None, 1, 1, 0, 0, 3, 3, 1, 1)
    with pytest.raises(ValueError, match=r"expected `b` of shape \(6,\)"):
        impl.depthwise_conv2d_f32(x, np.zeros((3, 3, 3, 2), np.float32), np.zeros(3, np.float32),
                                  1, 1, 0, 0, 3, 3, 1, 1)
    with pytest.raises(ValueError, match="depthwise_conv2d_backward: expected `dout` of shape"):
        impl.depthwise_conv2d_backward_f32(np.zeros((1, 3, 3, 3), np.float32), x,
                                           np.zeros((3, 3, 3, 2), np.float32), 1, 1, 0, 0, 1, 1)


# ---- Conv2DTranspose -------------------------------------------------------------------------

TRANSPOSE_CASES = {  # N, IH, IW, CI, F, KH, KW, strides, padding, output_padding, dilation
    "N2-4x5-CI3-F4-3x3-s2-same": (2, 4, 5, 3, 4, 3, 3, (2, 2), "same", None, (1, 1)),
    "N1-5x4-CI2-F3-3x2-s2-valid": (1, 5, 4, 2, 3, 3, 2, (2, 2), "valid", None, (1, 1)),
    "N3-3x4-CI4-F2-2x2-s3-stride>kernel": (3, 3, 4, 4, 2, 2, 2, (3, 3), "valid", None, (1, 1)),
    "N2-4x4-CI3-F5-4x4-s2-outpad1-same": (2, 4, 4, 3, 5, 4, 4, (2, 2), "same", (1, 1), (1, 1)),
    "N2-3x5-CI2-F3-3x3-s2x1-outpad-valid": (2, 3, 5, 2, 3, 3, 3, (2, 1), "valid", (1, 0), (1, 1)),
    "N1-5x6-CI3-F2-3x3-d2-same": (1, 5, 6, 3, 2, 3, 3, (1, 1), "same", None, (2, 2)),
    "N2-3x4-CI2-F3-3x3-s2-d2-valid": (2, 3, 4, 2, 3, 3, 3, (2, 2), "valid", None, (2, 2)),
    "N2-4x3-CI3-F2-2x2-s3-outpad2-same": (2, 4, 3, 3, 2, 2, 2, (3, 3), "same", (2, 1), (1, 1)),
    "N2-6x5-CI5-F4-1x1": (2, 6, 5, 5, 4, 1, 1, (1, 1), "valid", None, (1, 1)),
    "N2-1x7-CI3-F4-1x3-conv1d-s2": (2, 1, 7, 3, 4, 1, 3, (1, 2), "same", None, (1, 1)),
}


@WITH_BLAS
@pytest.mark.parametrize("case", TRANSPOSE_CASES.values(), ids=TRANSPOSE_CASES.keys())
@DTYPES
def test_conv_transpose2d_matches_cpu(impl, case, dtype):
    N, IH, IW, CI, F, KH, KW, strides, padding, output_padding, dilation = case
    rng = np.random.default_rng(IH * 10 + IW)
    x = rng.standard_normal((N, IH, IW, CI)).astype(dtype)
    k = rng.standard_normal((KH, KW, F, CI)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    geo = (strides, padding, output_padding, dilation)
    y_cpu = getattr(_core, "conv_transpose2d" + sfx(dtype))(x, k, b, *geo)
    y = getattr(impl, "conv_transpose2d" + sfx(dtype))(x, k, b, *geo, block=32)
    close(y, y_cpu, dtype)
    close(getattr(impl, "conv_transpose2d" + sfx(dtype))(x, k, None, *geo, block=64),
          getattr(_core, "conv_transpose2d" + sfx(dtype))(x, k, None, *geo), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = getattr(impl, "conv_transpose2d_backward" + sfx(dtype))(dy, x, k, *geo, block=32)
    want = getattr(_core, "conv_transpose2d_backward" + sfx(dtype))(dy, x, k, *geo, True, True, True)
    for g, w_ in zip(got, want):
        close(g, w_, dtype)
    only_db = getattr(impl, "conv_transpose2d_backward" + sfx(dtype))(dy, x, k, *geo, need_dx=False,
                                                                      need_dkernel=False, block=32)
    assert only_db[0] is None and only_db[1] is None
    close(only_db[2], want[2], dtype)


def test_conv_transpose2d_rejects_bad_arguments(impl):
    x = np.zeros((1, 3, 3, 2), np.float32)
    k = np.zeros((3, 3, 4, 2), np.float32)
    f, bwd = impl.conv_transpose2d_f32, impl.conv_transpose2d_backward_f32
    with pytest.raises(ValueError, match=r"expected `kernel` of shape \(3, 3, 4, 2\) \(last axis = input "
                                         r"channels\), received \(3, 3, 4, 5\)"):
        f(x, np.zeros((3, 3, 4, 5), np.float32), None, (1, 1), "valid", None, (1, 1))
    with pytest.raises(ValueError, match="expected padding 'valid' or 'same', received 'causal'"):
        f(x, k, None, (1, 1), "causal", None, (1, 1))
    with pytest.raises(ValueError, match="output_padding >= 0"):
        f(x, k, None, (2, 2), "valid", (-2, 0), (1, 1))
    with pytest.raises(ValueError):
        f(x, k, None, (0, 1), "valid", None, (1, 1))
    with pytest.raises(ValueError, match=r"expected `bias` of shape \(4,\)"):
        f(x, k, np.zeros(2, np.float32), (1, 1), "valid", None, (1, 1))
    with pytest.raises(ValueError, match=r"conv_transpose2d_backward: expected `dy` of shape \(1, 5, 5, 4\)"):
        bwd(np.zeros((1, 5, 5, 2), np.float32), x, k, (1, 1), "valid", None, (1, 1))
    with pytest.raises(ValueError, match="expected `inputs` of rank 4"):
        f(x[0], k, None, (1, 1), "valid", None, (1, 1))


# ---- UpSampling2D (nearest, bilinear) ----------------------------------------------------------

NEAREST_CASES = {  # N, H, W, C, size
    "N1-3x5-C2-2x2": (1, 3, 5, 2, (2, 2)),
    "N2-4x3-C3-3x1": (2, 4, 3, 3, (3, 1)),
    "N3-1x7-C1-1x4-1d": (3, 1, 7, 1, (1, 4)),
    "N2-5x5-C4-1x1": (2, 5, 5, 4, (1, 1)),
}


@pytest.mark.parametrize("case", NEAREST_CASES.values(), ids=NEAREST_CASES.keys())
@DTYPES
def test_upsample_nearest2d_matches_cpu(impl, case, dtype):
    N, H, W, C, size = case
    rng = np.random.default_rng(H * W + C)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    y = getattr(impl, "upsample_nearest2d" + sfx(dtype))(x, size, block=32)
    np.testing.assert_array_equal(y, getattr(_core, "upsample_nearest2d" + sfx(dtype))(x, size))
    dy = rng.standard_normal(y.shape).astype(dtype)
    close(getattr(impl, "upsample_nearest2d_backward" + sfx(dtype))(dy, size, block=32),
          getattr(_core, "upsample_nearest2d_backward" + sfx(dtype))(dy, size), dtype)


BILINEAR_CASES = {  # N, H, W, C, OH, OW
    "N1-3x5-C2-to-6x10": (1, 3, 5, 2, 6, 10),
    "N2-4x3-C3-to-12x3": (2, 4, 3, 3, 12, 3),
    "N2-5x7-C2-to-7x11-non-integer": (2, 5, 7, 2, 7, 11),
    "N1-9x8-C3-to-4x3-down": (1, 9, 8, 3, 4, 3),
    "N3-1x6-C1-to-1x12-1d": (3, 1, 6, 1, 1, 12),
    "N1-1x1-C2-to-3x4-single-pixel": (1, 1, 1, 2, 3, 4),
    "N2-6x5-C2-to-1x1": (2, 6, 5, 2, 1, 1),
}


@pytest.mark.parametrize("case", BILINEAR_CASES.values(), ids=BILINEAR_CASES.keys())
@DTYPES
def test_resize_bilinear2d_matches_cpu(impl, case, dtype):
    N, H, W, C, OH, OW = case
    rng = np.random.default_rng(OH * OW + C)
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    y = getattr(impl, "resize_bilinear2d" + sfx(dtype))(x, (OH, OW), block=32)
    close(y, getattr(_core, "resize_bilinear2d" + sfx(dtype))(x, (OH, OW)), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = getattr(impl, "resize_bilinear2d_backward" + sfx(dtype))(dy, (H, W), block=32)
    close(dx, getattr(_core, "resize_bilinear2d_backward" + sfx(dtype))(dy, (H, W)), dtype)
    # the adjoint identity <resize(x), dy> = <x, resize_backward(dy)> (independent of the CPU)
    np.testing.assert_allclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_resampling_rejects_bad_arguments(impl):
    x = np.zeros((1, 3, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"upsample_nearest2d: expected positive `size`, received \(0, 2\)"):
        impl.upsample_nearest2d_f32(x, (0, 2))
    with pytest.raises(ValueError, match=r"not a multiple of size \(2, 2\)"):
        impl.upsample_nearest2d_backward_f32(np.zeros((1, 5, 4, 2), np.float32), (2, 2))
    with pytest.raises(ValueError, match="upsample_nearest2d: expected `x` of rank 4"):
        impl.upsample_nearest2d_f32(x[0], (2, 2))
    with pytest.raises(ValueError, match=r"resize_bilinear2d: expected positive `out_hw`"):
        impl.resize_bilinear2d_f32(x, (3, 0))
    with pytest.raises(ValueError, match="resize_bilinear2d_backward: expected positive `in_hw`"):
        impl.resize_bilinear2d_backward_f32(x, (-1, 2))
    with pytest.raises(ValueError, match="multiple of 32"):
        impl.resize_bilinear2d_f32(x, (4, 4), block=1025)


# ---- global pooling (the pooling bodies with a whole-image window, as the layers run it) -------

GLOBAL_CASES = {"N1-7x5-C3": (1, 7, 5, 3), "N3-1x9-C2-1d": (3, 1, 9, 2), "N2-6x6-C1": (2, 6, 6, 1)}


@pytest.mark.parametrize("case", GLOBAL_CASES.values(), ids=GLOBAL_CASES.keys())
@DTYPES
def test_global_pooling_matches_cpu(impl, case, dtype):
    N, H, W, C = case
    rng = np.random.default_rng(H * W)
    geo = ((H, W), (H, W), "valid")
    x = rng.integers(-2, 3, size=(N, H, W, C)).astype(dtype)  # ties: the first maximum wins
    y_c, arg_c = getattr(_core, "max_pool2d" + sfx(dtype))(x, *geo, with_argmax=True)
    y, arg = getattr(impl, "max_pool2d" + sfx(dtype))(x, *geo, block=32)
    np.testing.assert_array_equal(y, y_c)
    np.testing.assert_array_equal(arg, arg_c)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(getattr(impl, "max_pool2d_backward" + sfx(dtype))(dy, arg, (H, W), *geo, block=32),
                                  getattr(_core, "max_pool2d_scatter" + sfx(dtype))(dy, arg_c, (H, W), *geo))
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    y = getattr(impl, "avg_pool2d" + sfx(dtype))(x, *geo, block=32)
    close(y, getattr(_core, "avg_pool2d" + sfx(dtype))(x, *geo), dtype)
    close(y[:, 0, 0], x.mean(axis=(1, 2)), dtype)
    close(getattr(impl, "avg_pool2d_backward" + sfx(dtype))(dy, (H, W), *geo, block=32),
          getattr(_core, "avg_pool2d_backward" + sfx(dtype))(dy, (H, W), *geo), dtype)


# ---- SeparableConv2D: the depthwise body then a 1x1 conv, as faltung.ops.separable_conv ---------

@WITH_BLAS
@DTYPES
def test_separable_conv2d_composes_to_cpu(impl, dtype):
    from faltung.ops import convolution as conv_ops
    rng = np.random.default_rng(5)
    N, H, W, C, m, K = 2, 9, 7, 3, 2, 5
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    dk = rng.standard_normal((3, 3, C, m)).astype(dtype)
    pk = rng.standard_normal((1, 1, C * m, K)).astype(dtype)
    pt, pl, OH, OW = geometry(H, W, 3, 3, (2, 2), (1, 1), "same")
    mid = getattr(impl, "depthwise_conv2d" + sfx(dtype))(x, dk, None, 2, 2, pt, pl, OH, OW, 1, 1, block=32)
    y = getattr(impl, "conv2d_forward" + sfx(dtype))(mid, pk, None, 1, 1, 0, 0, OH, OW, 1, 1, 1, block=32)
    close(y, conv_ops.separable_conv(x, dk, pk, strides=2, padding="same"), dtype)
