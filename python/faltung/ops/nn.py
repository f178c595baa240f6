"""Dense, matmul/dot, activations, dropout and fused softmax cross-entropy (keras.ops names).

numpy in, numpy out. float64 inputs run the float64 kernels (for gradient checks);
everything else runs in float32. Backward functions are faltung's addition: each takes
dL/dy and what the forward saw, and returns dL/dx.
"""
import operator

import numpy as np

from faltung import _core
from faltung.ops._kernels import as_array, dtype_of, kernel_for

__all__ = [
    "matmul", "dot", "dense", "dense_backward", "activation", "activation_backward",
    "relu", "relu_backward", "relu6", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "gelu", "gelu_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "exponential", "exponential_backward", "softplus", "softplus_backward", "softsign",
    "softsign_backward", "selu", "selu_backward", "silu", "silu_backward", "hard_sigmoid",
    "hard_sigmoid_backward", "hard_silu", "hard_silu_backward", "mish", "mish_backward",
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "dropout", "dropout_backward", "softmax_cross_entropy_with_grad",
]


def _arr(x):
    """(C-contiguous float array, its dtype): float64 stays float64, else float32."""
    dtype = dtype_of(x)
    return as_array(x, dtype), dtype


# -- dense ------------------------------------------------------------------------------

def _product(name, fn, x1, x2):
    x1, x2 = np.asarray(x1), np.asarray(x2)
    try:
        return fn(x1, x2)
    except ValueError as e:  # numpy names only the mismatched axis
        raise ValueError(f"{name}: shapes {x1.shape} and {x2.shape} do not fit ({e})") from None


def matmul(x1, x2):
    """numpy's matmul (keras.ops.matmul), for user-written code such as a custom RNN cell."""
    return _product("matmul", np.matmul, x1, x2)


def dot(x1, x2):
    """numpy's dot (keras.ops.dot), for user-written code such as a custom RNN cell."""
    return _product("dot", np.dot, x1, x2)


def dense(x, kernel, bias=None):
    """x (..., IN) @ kernel (IN, OUT) + bias (OUT) -> (..., OUT)."""
    x, dtype = _arr(x)
    if x.ndim < 1:
        raise ValueError(f"dense: expected `x` of rank >= 1, received shape {x.shape}")
    kernel = as_array(kernel, dtype)
    bias = None if bias is None else as_array(bias, dtype)
    lead = x.shape[:-1]
    out = kernel_for("dense_forward", dtype)(x.reshape(-1, x.shape[-1]), kernel, bias)
    return out.reshape(lead + (kernel.shape[-1],))


def dense_backward(dy, x, kernel, need_dx=True, need_dkernel=True, need_dbias=True):
    """dy (..., OUT), x (..., IN), kernel (IN, OUT) -> (dx (..., IN), dkernel (IN, OUT),
    dbias (OUT)); each is None when not needed."""
    x, dtype = _arr(x)
    dy, kernel = as_array(dy, dtype), as_array(kernel, dtype)
    if dy.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"dense_backward: expected `dy` of shape {x.shape[:-1] + kernel.shape[-1:]}, "
                         f"received shape {dy.shape}")
    dx, dk, db = kernel_for("dense_backward", dtype)(
        dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1]), kernel,
        need_dx, need_dkernel, need_dbias)
    return (None if dx is None else dx.reshape(x.shape)), dk, db


# -- elementwise activations ------------------------------------------------------------

def activation(name, x, negative_slope=0.0, threshold=0.0, max_value=None, alpha=1.0):
    """Elementwise activation by kernel name (`_core.activation_names()`)."""
    x, dtype = _arr(x)
    return kernel_for("activation", dtype)(name, x, negative_slope, threshold, max_value, alpha)


def activation_backward(name, dy, x, y, negative_slope=0.0, threshold=0.0, max_value=None,
                        alpha=1.0):
    """dL/dy -> dL/dx for `activation(name, x) = y`. x or y may be None for kinds that
    do not read it (sigmoid, tanh, exponential read y; the others read x)."""
    dy, dtype = _arr(dy)
    x = dy if x is None else as_array(x, dtype)
    y = dy if y is None else as_array(y, dtype)
    return kernel_for("activation_backward", dtype)(name, dy, x, y, negative_slope, threshold, max_value,
                                                    alpha)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    return activation("relu", x, negative_slope, threshold, max_value)


def relu_backward(dy, x, negative_slope=0.0, max_value=None, threshold=0.0):
    return activation_backward("relu", dy, x, None, negative_slope, threshold, max_value)


def relu6(x):
    return activation("relu", x, max_value=6.0)


def leaky_relu(x, negative_slope=0.2):
    return activation("relu", x, negative_slope=negative_slope)


def leaky_relu_backward(dy, x, negative_slope=0.2):
    return activation_backward("relu", dy, x, None, negative_slope=negative_slope)


def elu(x, alpha=1.0):
    return activation("elu", x, alpha=alpha)


def elu_backward(dy, x, alpha=1.0):
    return activation_backward("elu", dy, x, None, alpha=alpha)


def gelu(x, approximate=True):
    """keras.ops.gelu: approximate=True (tanh form) by default, unlike
    keras.activations.gelu whose default is the exact erf form."""
    return activation("gelu_approximate" if approximate else "gelu", x)


def gelu_backward(dy, x, approximate=True):
    return activation_backward("gelu_approximate" if approximate else "gelu", dy, x, None)


def _simple(name, reads_y=False):
    def fwd(x):
        return activation(name, x)

    def bwd(dy, x, y=None):
        return activation_backward(name, dy, None if reads_y else x, y if reads_y else None)

    fwd.__name__, bwd.__name__ = name, name + "_backward"
    fwd.__doc__ = f"Elementwise {name} (keras.ops.{name})."
    bwd.__doc__ = f"dL/dy -> dL/dx of {name}; reads {'y' if reads_y else 'x'}."
    return fwd, bwd


sigmoid, _sigmoid_bwd = _simple("sigmoid", reads_y=True)
tanh, _tanh_bwd = _simple("tanh", reads_y=True)
exponential, _exp_bwd = _simple("exponential", reads_y=True)
softplus, softplus_backward = _simple("softplus")
softsign, softsign_backward = _simple("softsign")
selu, selu_backward = _simple("selu")
silu, silu_backward = _simple("silu")
hard_sigmoid, hard_sigmoid_backward = _simple("hard_sigmoid")
hard_silu, hard_silu_backward = _simple("hard_silu")
mish, mish_backward = _simple("mish")


def sigmoid_backward(dy, y):
    """dL/dy, y = sigmoid(x) -> dL/dx."""
    return _sigmoid_bwd(dy, None, y)


def tanh_backward(dy, y):
    """dL/dy, y = tanh(x) -> dL/dx."""
    return _tanh_bwd(dy, None, y)


def exponential_backward(dy, y):
    return _exp_bwd(dy, None, y)


# -- softmax family (any axis; the kernels work on the last one) --------------------------

def _axis(kernel, axis, ndim):
    """axis in [0, ndim), or ValueError (a wrapped-around axis would normalize the wrong one)."""
    if ndim == 0:
        raise ValueError(f"{kernel}: expected an array of rank >= 1, received a scalar")
    if not -ndim <= operator.index(axis) < ndim:
        raise ValueError(f"{kernel}: axis {axis} is out of bounds for an array of rank {ndim}")
    return axis % ndim


def _rowwise(kernel, x, axis):
    x, dtype = _arr(x)
    axis = _axis(kernel, axis, x.ndim)
    if axis == x.ndim - 1:
        return kernel_for(kernel, dtype)(x)
    y = kernel_for(kernel, dtype)(np.ascontiguousarray(np.moveaxis(x, axis, -1)))
    return np.moveaxis(y, -1, axis)


def _rowwise_backward(kernel, dy, y, axis):
    dy, dtype = _arr(dy)
    y = as_array(y, dtype)
    axis = _axis(kernel, axis, dy.ndim)
    if axis == dy.ndim - 1:
        return kernel_for(kernel, dtype)(dy, y)
    mv = lambda a: np.ascontiguousarray(np.moveaxis(a, axis, -1))  # noqa: E731
    return np.moveaxis(kernel_for(kernel, dtype)(mv(dy), mv(y)), -1, axis)


def softmax(x, axis=-1):
    return _rowwise("softmax", x, axis)


def softmax_backward(dy, y, axis=-1):
    """dL/dy, y = softmax(x) -> dL/dx = y * (dy - sum(dy * y))."""
    return _rowwise_backward("softmax_backward", dy, y, axis)


def log_softmax(x, axis=-1):
    return _rowwise("log_softmax", x, axis)


def log_softmax_backward(dy, y, axis=-1):
    """dL/dy, y = log_softmax(x) -> dL/dx = dy - exp(y) * sum(dy)."""
    return _rowwise_backward("log_softmax_backward", dy, y, axis)


# -- dropout ------------------------------------------------------------------------------

def dropout(x, rate, seed, noise_shape=None):
    """-> (y, mask). Keeps each element with probability 1 - rate and scales it by
    1 / (1 - rate). The mask (uint8, shape x.shape or noise_shape, broadcast against x)
    depends only on (seed, element index), never on the thread count."""
    x, dtype = _arr(x)
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    if noise_shape is None or tuple(noise_shape) == x.shape:
        return kernel_for("dropout", dtype)(x, float(rate), seed)
    mask = _core.dropout_mask([int(s) for s in noise_shape], float(rate), seed)
    scale = 0.0 if rate >= 1 else 1.0 / (1.0 - rate)
    return (x * (mask * x.dtype.type(scale))).astype(x.dtype, copy=False), mask


def dropout_backward(dy, mask, rate):
    """dL/dy and the mask from `dropout` -> dL/dx."""
    dy, dtype = _arr(dy)
    if mask.shape == dy.shape:
        return kernel_for("dropout_backward", dtype)(dy, mask, float(rate))
    scale = 0.0 if rate >= 1 else 1.0 / (1.0 - rate)
    return (dy * (mask * dy.dtype.type(scale))).astype(dy.dtype, copy=False)


# -- fused softmax cross-entropy ------------------------------------------------------------

def softmax_cross_entropy_with_grad(logits, labels, sparse, scale=1.0, need_grad=True):
    """Cross-entropy of softmax(logits) against labels, with its gradient, in one pass.

    Args:
        logits: (B, K).
        labels: if sparse, int class ids of shape (B,) (or (B, 1)); else one-hot or
            probability targets of shape (B, K).
        sparse: whether labels are class ids.
        scale: the gradient is multiplied by it (e.g. 1 / B for a mean over the batch).
    Returns:
        (per_sample_loss (B,), grad (B, K) = scale * (softmax(logits) * sum(target) - target),
        i.e. scale * (softmax - target) for targets that sum to 1; None if not need_grad).
    """
    logits, dtype = _arr(logits)
    if sparse:
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.dtype.kind == "f":
            if not np.all(labels == np.round(labels)):
                raise ValueError("sparse_softmax_cross_entropy: expected integer class ids in "
                                 "`labels`, received non-integer values")
        elif labels.dtype.kind not in "iub":
            raise ValueError(f"sparse_softmax_cross_entropy: expected integer `labels`, "
                             f"received dtype {labels.dtype}")
        if labels.size and labels.dtype.kind in "iuf" and not (
                -2 ** 31 <= labels.min() and labels.max() < 2 ** 31):  # the cast must not wrap
            bad = labels.max() if labels.max() >= 2 ** 31 else labels.min()
            raise ValueError(f"sparse_softmax_cross_entropy: received a label value of {bad}, which "
                             f"is outside the valid range of [0, {logits.shape[-1]})")
        labels = np.ascontiguousarray(labels, dtype=np.int32)
        return kernel_for("sparse_softmax_xent", dtype)(logits, labels, float(scale), need_grad)
    return kernel_for("softmax_xent", dtype)(logits, as_array(labels, dtype), float(scale), need_grad)
