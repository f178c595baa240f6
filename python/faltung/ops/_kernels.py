"""How every ops module reaches the C++ kernels: one dtype rule and one name lookup.

float64 inputs run the float64 kernels (for gradient checks); everything else runs in float32.
A kernel family binds `<name>_f32` and `<name>_f64` in `faltung._core`.
"""
import numpy as np

from faltung import _core


def dtype_of(x):
    """np.float64 for float64 data, np.float32 for anything else."""
    return np.float64 if np.asarray(x).dtype == np.float64 else np.float32


def as_array(x, dtype):
    """x as a C-contiguous array of dtype (the same array when it already is one); a scalar
    stays 0-d (np.ascontiguousarray would make it shape (1,))."""
    return np.asarray(x, dtype=dtype, order="C")


def kernel_for(name, dtype):
    """The `_core` function `<name>_f32` or `<name>_f64` for dtype."""
    return getattr(_core, f"{name}_{'f64' if dtype == np.float64 else 'f32'}")
