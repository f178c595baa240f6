"""Convolution ops (keras.ops names): `conv`, `depthwise_conv`, `separable_conv`, their
`*_backward`, and the geometry helpers the layers share.

Inputs are channels-last: rank 3 (batch, width, channels) or rank 4 (batch, height, width,
channels); kernels are Keras's: conv (kw, C/groups, K) or (kh, kw, C/groups, K) where groups
= C / kernel.shape[-2]; depthwise (kh, kw, C, depth_multiplier). Computation is float64
when `inputs` is float64, float32 otherwise. Rank 3 runs as rank 4 with height 1.

Padding modes (per spatial dim of size n, kernel k, stride s, dilation d, ek = (k-1)*d+1):
- "valid": no padding, out = floor((n - ek) / s) + 1 (must be > 0).
- "same":  out = ceil(n / s), total pad max((out-1)*s + ek - n, 0), the odd pixel at the
  end (bottom/right), as Keras/TensorFlow.
- "causal" (rank 3 only): left pad ek - 1, out = ceil(n / s).
- "full" (faltung addition, not in Keras): pad ek - 1 on both sides,
  out = floor((n + ek - 2) / s) + 1, i.e. n + ek - 1 for stride 1.
"""

import numpy as np

from faltung import _core
from faltung.ops._kernels import dtype_of
from faltung.ops.argument_validation import standardize_data_format, standardize_padding, standardize_tuple


def pad_and_size(n, k, stride, dilation, padding):
    """(pad_before, out_size) of one spatial dim; out_size may be <= 0 under "valid"."""
    ek = (k - 1) * dilation + 1
    if padding == "valid":
        return 0, (n - ek) // stride + 1
    if padding == "same":
        out = -(-n // stride)
        return max((out - 1) * stride + ek - n, 0) // 2, out
    if padding == "causal":
        return ek - 1, -(-n // stride)
    if padding == "full":
        return ek - 1, (n + ek - 2) // stride + 1
    raise ValueError(f"Unknown padding {padding!r}")


def compute_conv_output_shape(input_shape, filters, kernel_size, strides=1, padding="valid",
                              dilation_rate=1):
    """Keras's compute_conv_output_shape for channels_last (None dims stay None); raises
    Keras's "Computed output size would be zero or negative" under "valid"."""
    rank = len(input_shape) - 2
    kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
    strides = standardize_tuple(strides, rank, "strides")
    dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
    out = []
    for n, k, s, d in zip(input_shape[1:-1], kernel_size, strides, dilation_rate):
        if n is None:
            out.append(None)
            continue
        o = pad_and_size(n, k, s, d, padding)[1]
        if o <= 0:
            kernel_shape = kernel_size + (input_shape[-1], filters)
            raise ValueError("Computed output size would be zero or negative. Received "
                             f"`inputs shape={tuple(input_shape)}`, `kernel shape={kernel_shape}`, "
                             f"`dilation_rate={list(dilation_rate)}`, `strides={list(strides)}`, "
                             f"`padding={padding}`.")
        out.append(o)
    return (input_shape[0],) + tuple(out) + (filters,)


def _as_array(x, dtype, what):
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"conv: expected numeric data for `{what}`, received dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


def _prepare(inputs, kernel, strides, padding, data_format, dilation_rate, op="conv"):
    """Arrays viewed as rank 4 plus the binding's geometry arguments."""
    standardize_data_format(data_format)
    x0 = np.asarray(inputs)
    dtype = dtype_of(x0)
    x = _as_array(x0, dtype, "inputs")
    w = _as_array(kernel, dtype, "kernel")
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected `inputs` of rank 3 (batch, width, channels) or 4 (batch, height, "
                         f"width, channels), received shape {x.shape}")
    if w.ndim != x.ndim:
        raise ValueError(f"{op}: expected `kernel` of rank {x.ndim} for inputs of shape {x.shape}, "
                         f"received kernel of shape {w.shape}")
    rank = x.ndim - 2
    strides = standardize_tuple(strides, rank, "strides")
    dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
    padding = standardize_padding(padding, allow_causal=rank == 1, allow_full=True)
    C, Cg, K = x.shape[-1], w.shape[-2], w.shape[-1]
    if min(x.shape[1:]) <= 0 or min(w.shape) <= 0:
        raise ValueError(f"{op}: sizes must be positive, received inputs of shape {x.shape} and kernel of "
                         f"shape {w.shape}")
    if C % Cg:
        raise ValueError(f"{op}: the input has {C} channels (inputs shape {x.shape}), which is not a "
                         f"multiple of kernel.shape[-2]={Cg} (kernel shape {w.shape})")
    groups = C // Cg
    if K % groups:
        raise ValueError(f"{op}: the number of filters kernel.shape[-1]={K} is not divisible by "
                         f"groups={groups} (inputs shape {x.shape}, kernel shape {w.shape})")
    compute_conv_output_shape(x.shape, K, w.shape[:-2], strides, padding, dilation_rate)
    if rank == 1:
        x, w = x[:, None], w[None]
        strides, dilation_rate = (1,) + strides, (1,) + dilation_rate
        geo_h = (0, 1)
    else:
        geo_h = pad_and_size(x.shape[1], w.shape[0], strides[0], dilation_rate[0], padding)
    geo_w = pad_and_size(x.shape[2], w.shape[1], strides[1], dilation_rate[1], padding)
    geom = dict(stride_h=strides[0], stride_w=strides[1], pad_top=geo_h[0], pad_left=geo_w[0],
                dil_h=dilation_rate[0], dil_w=dilation_rate[1], groups=groups)
    return x, w, rank, geom, (geo_h[1], geo_w[1])


def conv_forward(inputs, kernel, bias=None, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 relu=False, algorithm="auto"):
    """(output, algorithm name). bias (K,) added and relu applied in the output pass."""
    x, w, rank, geom, (OH, OW) = _prepare(inputs, kernel, strides, padding, data_format, dilation_rate)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    out, algo = _core.conv2d_forward(x, w, b, geom["stride_h"], geom["stride_w"], geom["pad_top"],
                                     geom["pad_left"], OH, OW, geom["dil_h"], geom["dil_w"], geom["groups"],
                                     algorithm, relu)
    return (out[:, 0] if rank == 1 else out), algo


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """keras.ops.conv: N-D (1 or 2 spatial dims) cross-correlation; groups = C / kernel.shape[-2].

    Args:
        inputs: (batch, width, C) or (batch, height, width, C).
        kernel: (kw, C/groups, K) or (kh, kw, C/groups, K).
        strides, dilation_rate: int or tuple, one per spatial dim.
        padding: "valid", "same", "causal" (rank 3), or "full" (faltung addition).
        data_format: None or "channels_last".
    Returns:
        (batch, [out_h,] out_w, K).
    """
    return conv_forward(inputs, kernel, None, strides, padding, data_format, dilation_rate)[0]


def conv_backward(dout, inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1,
                  need_dx=True, need_dw=True, need_db=True, algorithm="auto"):
    """Gradients of conv (+ bias): (d_inputs|None, d_kernel|None, d_bias|None) for the
    upstream gradient `dout` of the conv output (faltung addition)."""
    x, w, rank, geom, (OH, OW) = _prepare(inputs, kernel, strides, padding, data_format, dilation_rate,
                                          "conv_backward")
    d = np.ascontiguousarray(dout, dtype=x.dtype)
    if rank == 1:
        d = d[:, None] if d.ndim == 3 else d
    dx, dw, db = _core.conv2d_backward(d, x, w, geom["stride_h"], geom["stride_w"], geom["pad_top"],
                                       geom["pad_left"], geom["dil_h"], geom["dil_w"], geom["groups"],
                                       need_dx, need_dw, need_db, algorithm)
    if rank == 1:
        dx = None if dx is None else dx[:, 0]
        dw = None if dw is None else dw[0]
    return dx, dw, db


def _depthwise_kernel(inputs, kernel):
    """Keras depthwise kernel (..., C, m) -> grouped conv kernel (..., 1, C*m)."""
    k = np.asarray(kernel)
    x_ch = np.shape(inputs)[-1]
    if k.ndim < 3 or k.shape[-2] != x_ch:
        raise ValueError(f"depthwise_conv: expected a kernel of shape (..., {x_ch}, depth_multiplier) for inputs "
                         f"of shape {np.shape(inputs)}, received kernel of shape {k.shape}")
    return k.reshape(k.shape[:-2] + (1, k.shape[-2] * k.shape[-1]))


def depthwise_conv_forward(inputs, kernel, bias=None, strides=1, padding="valid", data_format=None,
                           dilation_rate=1, relu=False, algorithm="auto"):
    """(output, algorithm name); output channel c*m + j comes from input channel c."""
    return conv_forward(inputs, _depthwise_kernel(inputs, kernel), bias, strides, padding, data_format,
                        dilation_rate, relu, algorithm)


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """keras.ops.depthwise_conv: kernel (kh, kw, C, m) (or (kw, C, m)) -> C*m channels."""
    return depthwise_conv_forward(inputs, kernel, None, strides, padding, data_format, dilation_rate)[0]


def depthwise_conv_backward(dout, inputs, kernel, strides=1, padding="valid", data_format=None,
                            dilation_rate=1, need_dx=True, need_dw=True, need_db=True, algorithm="auto"):
    """(d_inputs|None, d_kernel (kh, kw, C, m)|None, d_bias|None) (faltung addition)."""
    k = np.asarray(kernel)
    dx, dw, db = conv_backward(dout, inputs, _depthwise_kernel(inputs, k), strides, padding, data_format,
                               dilation_rate, need_dx, need_dw, need_db, algorithm)
    return dx, (None if dw is None else dw.reshape(k.shape)), db


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """keras.ops.separable_conv: depthwise_conv (strides, padding, dilation) then a 1x1 conv."""
    y = depthwise_conv(inputs, depthwise_kernel, strides, padding, data_format, dilation_rate)
    return conv(y, pointwise_kernel, 1, "valid", data_format, 1)
