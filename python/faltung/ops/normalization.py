"""Batch normalization ops over one channel axis (C++). numpy in, numpy out; float64
stays float64, everything else runs in float32. The kernels normalize over the last
axis; another `axis` is moved last and back (one copy each way).
"""
import numpy as np

from faltung.ops._kernels import as_array, dtype_of, kernel_for


def _opt(a, dtype):
    return None if a is None else as_array(a, dtype)


def _to_last(x, axis):
    return x if axis in (-1, x.ndim - 1) else np.moveaxis(x, axis, -1)


def _from_last(y, axis, ndim):
    return y if axis in (-1, ndim - 1) else np.moveaxis(y, -1, axis)


def batch_norm_train(x, gamma=None, beta=None, epsilon=1e-3, axis=-1):
    """Training-mode BN. -> (y, mean, variance, inv_std); variance is the biased batch
    variance (as Keras's ops.moments, which Keras also uses for the moving update)."""
    dtype = dtype_of(x)
    x = np.asarray(x)
    xl = as_array(_to_last(x, axis), dtype)
    y, mean, var, inv_std = kernel_for("batch_norm_train", dtype)(xl, _opt(gamma, dtype), _opt(beta, dtype),
                                                                   float(epsilon))
    return np.ascontiguousarray(_from_last(y, axis, x.ndim)), mean, var, inv_std


def batch_norm_train_backward(dy, x, mean, inv_std, gamma=None, axis=-1, need_dx=True,
                              need_dgamma=True, need_dbeta=True):
    """-> (dx, dgamma, dbeta), None for the ones not needed."""
    dtype = dtype_of(dy)
    ndim = np.ndim(x)
    dyl = as_array(_to_last(np.asarray(dy), axis), dtype)
    xl = as_array(_to_last(np.asarray(x), axis), dtype)
    dx, dg, db = kernel_for("batch_norm_backward", dtype)(dyl, xl, as_array(mean, dtype), as_array(inv_std, dtype),
                                                           _opt(gamma, dtype), need_dx, need_dgamma, need_dbeta)
    if dx is not None:
        dx = np.ascontiguousarray(_from_last(dx, axis, ndim))
    return dx, dg, db


def channel_affine(x, scale, shift=None, axis=-1):
    """x * scale + shift along `axis` (inference-mode BN; with shift=None its backward)."""
    dtype = dtype_of(x)
    x = np.asarray(x)
    y = kernel_for("channel_affine", dtype)(as_array(_to_last(x, axis), dtype), as_array(scale, dtype),
                                            _opt(shift, dtype))
    return np.ascontiguousarray(_from_last(y, axis, x.ndim))


def batch_normalization(x, mean, variance, axis=-1, offset=None, scale=None, epsilon=1e-3):
    """keras.ops.batch_normalization: (x - mean) / sqrt(variance + epsilon) * scale + offset."""
    dtype = dtype_of(x)
    inv = 1.0 / np.sqrt(np.asarray(variance, dtype) + dtype(epsilon))
    s = inv if scale is None else np.asarray(scale, dtype) * inv
    shift = -np.asarray(mean, dtype) * s + (0 if offset is None else np.asarray(offset, dtype))
    return channel_affine(x, s.astype(dtype), shift.astype(dtype), axis)
