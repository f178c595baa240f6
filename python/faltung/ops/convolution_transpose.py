"""Transposed convolution (Keras: `keras.ops.conv_transpose`), 1D and 2D, channels_last.

numpy in, numpy out. float64 inputs run the float64 kernels (for gradient checks); all
other inputs run in float32. Semantics are Keras 3's: output length per spatial dim

    valid: (in - 1) * stride + k_eff + output_padding   (None: max(k_eff, stride) - k_eff)
    same:  in * stride                                   (output_padding None)
           (in - 1) * stride + k_eff % 2 + output_padding
    with k_eff = (kernel_size - 1) * dilation_rate + 1,

and the kernel layout (*kernel_size, out_channels, in_channels).
"""
import numpy as np

from faltung.ops._kernels import dtype_of, kernel_for
from faltung.ops.argument_validation import standardize_data_format, standardize_padding, standardize_tuple

__all__ = ["conv_transpose", "conv_transpose_backward", "compute_conv_transpose_output_shape",
           "conv_transpose_output_length"]


def conv_transpose_output_length(length, kernel_size, stride, padding, output_padding=None,
                                 dilation_rate=1):
    """Keras 3's output length of one spatial dim (None stays None)."""
    if length is None:
        return None
    ke = (kernel_size - 1) * dilation_rate + 1
    if padding == "valid":
        op = max(ke, stride) - ke if output_padding is None else output_padding
        return (length - 1) * stride + ke + op
    if output_padding is None:
        return length * stride
    return (length - 1) * stride + ke % 2 + output_padding


def compute_conv_transpose_output_shape(input_shape, kernel_size, filters, strides, padding,
                                        output_padding=None, data_format="channels_last",
                                        dilation_rate=1):
    """Keras's compute_conv_transpose_output_shape (channels_last)."""
    rank = len(input_shape) - 2
    kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
    strides = standardize_tuple(strides, rank, "strides")
    dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
    ops_ = (None,) * rank if output_padding is None else standardize_tuple(output_padding, rank,
                                                                "output_padding", allow_zero=True)
    spatial = [conv_transpose_output_length(n, k, s, standardize_padding(padding), o, d)
               for n, k, s, o, d in zip(input_shape[1:-1], kernel_size, strides, ops_, dilation_rate)]
    return (input_shape[0], *spatial, filters)


def _prepare(inputs, kernel, strides, padding, output_padding, data_format, dilation_rate):
    """Validates and maps 1D onto 2D: (x4, k4, strides2, padding, op2|None, dil2, rank, dtype)."""
    standardize_data_format(data_format)
    dtype = dtype_of(inputs)
    x = np.ascontiguousarray(inputs, dtype=dtype)
    k = np.ascontiguousarray(kernel, dtype=dtype)
    if x.ndim not in (3, 4):
        raise ValueError("conv_transpose: expected `inputs` of rank 3 (batch, steps, channels) or "
                         f"4 (batch, height, width, channels), received shape {x.shape}")
    if k.ndim != x.ndim:
        raise ValueError(f"conv_transpose: expected `kernel` of rank {x.ndim} for inputs of rank "
                         f"{x.ndim}, received kernel shape {k.shape}")
    if x.shape[-1] != k.shape[-1]:
        raise ValueError("The number of input channels must match the kernel's input channels. "
                         f"Received: input channels={x.shape[-1]}, kernel input channels="
                         f"{k.shape[-1]}, data_format='channels_last'.")
    rank = x.ndim - 2
    strides = standardize_tuple(strides, rank, "strides")
    dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
    if output_padding is not None:
        output_padding = standardize_tuple(output_padding, rank, "output_padding", allow_zero=True)
    if rank == 1:
        x, k = x[:, None], k[None]
        strides, dilation_rate = (1,) + strides, (1,) + dilation_rate
        if output_padding is not None:
            output_padding = (0,) + output_padding
    return x, k, strides, standardize_padding(padding), output_padding, dilation_rate, rank, dtype


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None,
                   data_format=None, dilation_rate=1, *, bias=None, algorithm="auto"):
    """Transposed convolution, as `keras.ops.conv_transpose`.

    Args:
        inputs: (batch, steps, in_channels) or (batch, height, width, in_channels).
        kernel: (*kernel_size, filters, in_channels) (Keras's Conv*DTranspose layout).
        strides, padding, output_padding, data_format, dilation_rate: as Keras.
        bias: (filters,) or None, added to the output (faltung-only argument: fused).
        algorithm: "auto" (phased with >= 8 filters, else gemm), "phased" (stride-1 direct convs per
            output phase; when kernel = 2 * stride and both channel counts are >= 8, all phases as
            one Winograd F(3x3, 2x2) conv), "gemm" (cache-blocked GEMM + scatter) or "reference"
            (naive loops);
            faltung-only; the backward runs one fast path for every name but "reference".

    Returns:
        (batch, new_steps, filters) or (batch, new_height, new_width, filters).
    """
    x, k, s, p, op, d, rank, dtype = _prepare(inputs, kernel, strides, padding, output_padding,
                                              data_format, dilation_rate)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    y = kernel_for("conv_transpose2d", dtype)(x, k, b, s, p, op, d, algorithm)
    return y[:, 0] if rank == 1 else y


def conv_transpose_backward(dy, inputs, kernel, strides=1, padding="valid", output_padding=None,
                            data_format=None, dilation_rate=1, *, need_dx=True, need_dkernel=True,
                            need_dbias=True, algorithm="auto"):
    """Gradients of `conv_transpose` (with bias) w.r.t. inputs, kernel and bias.

    Returns (dx, dkernel, dbias), each None when not requested; shapes as inputs, kernel
    and (filters,).
    """
    x, k, s, p, op, d, rank, dtype = _prepare(inputs, kernel, strides, padding, output_padding,
                                              data_format, dilation_rate)
    dy = np.ascontiguousarray(dy, dtype=dtype)
    if rank == 1:
        if dy.ndim != 3:
            raise ValueError(f"conv_transpose: expected `dy` of rank 3, received shape {dy.shape}")
        dy = dy[:, None]
    dx, dk, db = kernel_for("conv_transpose2d_backward", dtype)(dy, x, k, s, p, op, d, need_dx,
                                                                need_dkernel, need_dbias, algorithm)
    if rank == 1:
        dx = None if dx is None else dx[:, 0]
        dk = None if dk is None else dk[0]
    return dx, dk, db
