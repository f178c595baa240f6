"""Pooling ops (keras.ops names: `max_pool`, `average_pool`) and their backward passes,
plus faltung's unpooling ops. numpy in, numpy out; float64 inputs stay float64 (for
gradient checks), everything else runs in float32.

Layouts are channels-last: 1D inputs (N, W, C), 2D inputs (N, H, W, C). 1D pooling runs
the 2D kernel with H = 1. `argmax` arrays (int32, same shape as the pooled output) hold
the flat spatial index h * W + w of each window's maximum; ties go to the FIRST maximum in
row-major window order.
"""
import numpy as np

from faltung.ops._kernels import as_array, dtype_of, kernel_for
from faltung.ops.argument_validation import standardize_data_format, standardize_padding, standardize_tuple


def pool_output_size(size, pool, stride, padding):
    """One spatial output size (None stays None); may be <= 0 under "valid"."""
    if size is None:
        return None
    if padding == "valid":
        return (size - pool) // stride + 1 if size >= pool else 0
    return (size + stride - 1) // stride


def _geometry(x, pool_size, strides, padding, data_format):
    """-> (x as (N,H,W,C), pool, strides, padding, is_1d)."""
    standardize_data_format(data_format)
    padding = standardize_padding(padding)
    if x.ndim == 3:
        n = 1
    elif x.ndim == 4:
        n = 2
    else:
        raise ValueError(f"Pooling expects inputs of rank 3 (N, W, C) or 4 (N, H, W, C), received shape {x.shape}")
    pool = standardize_tuple(pool_size, n, "pool_size")
    strides = pool if strides is None else standardize_tuple(strides, n, "strides")
    if n == 1:
        return x[:, None], (1,) + pool, (1,) + strides, padding, True
    return x, pool, strides, padding, False


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None, return_argmax=False):
    """Max pooling (keras.ops.max_pool). inputs (N,W,C) or (N,H,W,C). With
    return_argmax=True (faltung addition) also returns the int32 argmax array that
    `max_pool_backward` and `max_unpool` take."""
    dtype = dtype_of(inputs)
    x, pool, strides, padding, is_1d = _geometry(as_array(inputs, dtype), pool_size, strides, padding, data_format)
    res = kernel_for("max_pool2d", dtype)(x, pool, strides, padding, return_argmax)
    y, arg = res if return_argmax else (res, None)
    if is_1d:
        y = y[:, 0]
        arg = None if arg is None else arg[:, 0]
    return (y, arg) if return_argmax else y


def max_pool_backward(dy, argmax, input_shape, pool_size, strides=None, padding="valid"):
    """dL/dy -> dL/dx of max_pool: each dy element goes to its window's argmax (scatter-add)."""
    dtype = dtype_of(dy)
    dy = as_array(dy, dtype)
    x_stub = np.empty((0,) * len(input_shape))  # only its rank matters to _geometry
    _, pool, strides, padding, is_1d = _geometry(x_stub, pool_size, strides, padding, None)
    hw = (1, input_shape[1]) if is_1d else tuple(input_shape[1:3])
    if is_1d:
        dy, argmax = dy[:, None], np.asarray(argmax)[:, None]
    dx = kernel_for("max_pool2d_scatter", dtype)(dy, argmax, hw, pool, strides, padding)
    return dx[:, 0] if is_1d else dx


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Average pooling (keras.ops.average_pool); under "same" each window is divided by
    its number of in-bounds elements (Keras/TF behaviour)."""
    dtype = dtype_of(inputs)
    x, pool, strides, padding, is_1d = _geometry(as_array(inputs, dtype), pool_size, strides, padding, data_format)
    y = kernel_for("avg_pool2d", dtype)(x, pool, strides, padding)
    return y[:, 0] if is_1d else y


def average_pool_backward(dy, input_shape, pool_size, strides=None, padding="valid"):
    """dL/dy -> dL/dx of average_pool."""
    dtype = dtype_of(dy)
    dy = as_array(dy, dtype)
    x_stub = np.empty((0,) * len(input_shape))
    _, pool, strides, padding, is_1d = _geometry(x_stub, pool_size, strides, padding, None)
    hw = (1, input_shape[1]) if is_1d else tuple(input_shape[1:3])
    dx = kernel_for("avg_pool2d_backward", dtype)(dy[:, None] if is_1d else dy, hw, pool, strides, padding)
    return dx[:, 0] if is_1d else dx


def max_unpool(inputs, argmax, output_shape, pool_size, strides=None, padding="valid"):
    """faltung addition. Places each value of inputs (N,OH,OW,C) at its argmax in a zero
    array of output_shape (N,H,W,C) (values of overlapping windows that share an argmax
    add up). The same kernel as max_pool_backward: unpooling is the adjoint of the
    pooling's gradient routing."""
    return max_pool_backward(inputs, argmax, output_shape, pool_size, strides, padding)


def max_unpool_backward(dy, argmax, pool_size, strides=None, padding="valid"):
    """faltung addition. dL/dy (N,H,W,C) -> dL/dx (N,OH,OW,C): dy read at each argmax."""
    dtype = dtype_of(dy)
    dy = as_array(dy, dtype)
    standardize_padding(padding)
    pool = standardize_tuple(pool_size, 2, "pool_size")
    strides = pool if strides is None else standardize_tuple(strides, 2, "strides")
    return kernel_for("max_pool2d_gather", dtype)(dy, argmax, pool, strides, standardize_padding(padding))


def top_left_argmax(pooled_shape, size):
    """faltung addition. The argmax array (int32, shape pooled_shape = (N,OH,OW,C)) that
    points every window of a (size, size)-strided valid pooling of an
    (N, OH*kh, OW*kw, C) image at its top-left pixel."""
    n, oh, ow, c = pooled_shape
    kh, kw = size
    rows = (np.arange(oh) * kh)[:, None] * (ow * kw) + (np.arange(ow) * kw)[None, :]
    return np.ascontiguousarray(np.broadcast_to(rows[None, :, :, None], (n, oh, ow, c)), dtype=np.int32)


def average_unpool(inputs, size=(2, 2)):
    """faltung addition. inputs (N,H,W,C) -> (N,H*kh,W*kw,C): each value spread evenly over
    its kh x kw block (value / (kh*kw)), the adjoint of a size-strided average pooling."""
    dtype = dtype_of(inputs)
    x = as_array(inputs, dtype)
    size = standardize_tuple(size, 2, "size")
    if x.ndim != 4:
        raise ValueError(f"average_unpool expects inputs of rank 4 (N, H, W, C), received shape {x.shape}")
    hw = (x.shape[1] * size[0], x.shape[2] * size[1])
    return kernel_for("avg_pool2d_backward", dtype)(x, hw, size, size, "valid")


def average_unpool_backward(dy, size=(2, 2)):
    """faltung addition. dL/dy (N,H*kh,W*kw,C) -> dL/dx (N,H,W,C): block means."""
    size = standardize_tuple(size, 2, "size")
    return average_pool(dy, size, size, "valid")
