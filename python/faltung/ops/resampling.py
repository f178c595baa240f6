"""Resampling ops: nearest / bilinear upsampling of NHWC images (C++) and their backward
passes; zero padding and cropping (plain numpy slicing, no kernel needed). numpy in,
numpy out; float64 stays float64, everything else runs in float32.

Bilinear matches Keras 3's `ops.image.resize(..., interpolation="bilinear")` when
upscaling: half-pixel centres, edge pixels clamped, no antialiasing.
"""
import numpy as np

from faltung.ops._kernels import as_array, dtype_of, kernel_for
from faltung.ops.argument_validation import standardize_tuple

INTERPOLATIONS = ("nearest", "bilinear")


def _rank4(x, op):
    if x.ndim != 4:
        raise ValueError(f"{op} expects inputs of rank 4 (N, H, W, C), received shape {x.shape}")


def upsample(inputs, size=(2, 2), interpolation="nearest"):
    """inputs (N,H,W,C) -> (N,H*sh,W*sw,C) by nearest repetition or bilinear resize."""
    dtype = dtype_of(inputs)
    x = as_array(inputs, dtype)
    _rank4(x, "upsample")
    size = standardize_tuple(size, 2, "size")
    if interpolation == "nearest":
        return kernel_for("upsample_nearest2d", dtype)(x, size)
    if interpolation == "bilinear":
        return kernel_for("resize_bilinear2d", dtype)(x, (x.shape[1] * size[0], x.shape[2] * size[1]))
    raise ValueError(f"faltung supports interpolation in {INTERPOLATIONS}, received interpolation={interpolation}")


def upsample_backward(dy, size=(2, 2), interpolation="nearest"):
    """dL/dy (N,H*sh,W*sw,C) -> dL/dx (N,H,W,C), the adjoint of `upsample`."""
    dtype = dtype_of(dy)
    dy = as_array(dy, dtype)
    _rank4(dy, "upsample_backward")
    size = standardize_tuple(size, 2, "size")
    if interpolation == "nearest":
        return kernel_for("upsample_nearest2d_backward", dtype)(dy, size)
    if interpolation == "bilinear":
        if dy.shape[1] % size[0] or dy.shape[2] % size[1]:
            raise ValueError(f"upsample_backward: dy spatial size {dy.shape[1:3]} is not a multiple of size {size}")
        return kernel_for("resize_bilinear2d_backward", dtype)(dy, (dy.shape[1] // size[0], dy.shape[2] // size[1]))
    raise ValueError(f"faltung supports interpolation in {INTERPOLATIONS}, received interpolation={interpolation}")


def resize_bilinear(inputs, out_hw):
    """inputs (N,H,W,C) -> (N,OH,OW,C), bilinear with half-pixel centres (upscaling only
    matches Keras exactly: Keras antialiases when downscaling, this does not)."""
    dtype = dtype_of(inputs)
    x = as_array(inputs, dtype)
    _rank4(x, "resize_bilinear")
    return kernel_for("resize_bilinear2d", dtype)(x, tuple(int(v) for v in out_hw))


def resize_bilinear_backward(dy, in_hw):
    dtype = dtype_of(dy)
    dy = as_array(dy, dtype)
    _rank4(dy, "resize_bilinear_backward")
    return kernel_for("resize_bilinear2d_backward", dtype)(dy, tuple(int(v) for v in in_hw))


def zero_pad(inputs, padding):
    """padding: ((before, after), ...) for each spatial axis (axes 1..ndim-2)."""
    x = np.asarray(inputs)
    return np.pad(x, ((0, 0), *padding, (0, 0)))


def crop(inputs, cropping):
    """cropping: ((before, after), ...) for each spatial axis (axes 1..ndim-2)."""
    x = np.asarray(inputs)
    idx = (slice(None),) + tuple(slice(b, x.shape[i + 1] - a) for i, (b, a) in enumerate(cropping))
    return np.ascontiguousarray(x[idx])


# The backward of zero padding is cropping by the same amounts, and vice versa.
zero_pad_backward = crop
crop_backward = zero_pad
