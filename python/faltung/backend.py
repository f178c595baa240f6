"""Process-wide state: layer name counters and the float type.

faltung computes in float32 (Keras's default float type); labels and lengths are int32.
"""
import re
import numpy as np

floatx = "float32"
_name_counts = {}


def to_snake_case(name):
    """`Conv2DTranspose` -> `conv2d_transpose`, as Keras names layers."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


def unique_name(base):
    """`dense`, then `dense_1`, `dense_2`, ... like Keras's auto-naming."""
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def clear_session():
    """Reset layer-name counters (Keras: `keras.backend.clear_session()`)."""
    _name_counts.clear()


def as_float_array(x, what="input"):
    """x as a C-contiguous float32 array; TypeError for non-numeric data."""
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"Expected numeric data for `{what}`, received {type(x).__name__}") from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Expected numeric data for `{what}`, received an array of dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
