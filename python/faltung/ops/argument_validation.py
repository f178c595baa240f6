"""Argument normalizers shared by every ops module (Keras: keras/src/utils/argument_validation.py),
so that every layer words the same mistake the same way."""
import numpy as np


def standardize_tuple(value, n, name, allow_zero=False):
    """Keras's argument_validation.standardize_tuple, with Keras's error wording. The message is
    only formatted on failure: every op call runs this, and formatting it eagerly was a tenth of
    a small conv's call time."""
    def error(detail=""):
        return ValueError(f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
                          + detail)

    if type(value) is int:  # the common cases without a generator (bool is not int here)
        value_tuple = (value,) * n
    elif type(value) is tuple and len(value) == n and all(type(v) is int for v in value):
        value_tuple = value
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value_tuple = (int(value),) * n
    else:
        try:
            value_tuple = tuple(value)
        except TypeError:
            raise error()
        if len(value_tuple) != n:
            raise error()
        for v in value_tuple:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise error(f"including element {v} of type {type(v)}")
        value_tuple = tuple(int(v) for v in value_tuple)
    if min(value_tuple, default=1) < (0 if allow_zero else 1):
        bad = {v for v in value_tuple if (v < 0 if allow_zero else v <= 0)}
        raise error(f", including values {bad} that do not satisfy `value {'>= 0' if allow_zero else '> 0'}`")
    return value_tuple


def standardize_padding(value, allow_causal=False, allow_full=False):
    """Keras's argument_validation.standardize_padding for a padding mode: "valid" or "same"
    (case-insensitive), "causal" with allow_causal (Conv1D), "full" with allow_full (faltung
    addition, conv only). Returns the lower-cased mode."""
    allowed = ("valid", "same")
    if allow_causal:
        allowed += ("causal",)
    if allow_full:
        allowed += ("full",)
    if not (isinstance(value, str) and value.lower() in allowed):
        raise ValueError(f"The `padding` argument must be one of {', '.join(map(repr, allowed))}. "
                         f"Received: padding={value}")
    return value.lower()


def standardize_data_format(data_format):
    """None -> "channels_last"; faltung supports channels_last only."""
    if data_format is None:
        return "channels_last"
    data_format = str(data_format).lower()
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError("The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
                         f"Received: data_format={data_format}")
    if data_format == "channels_first":
        raise ValueError("faltung supports only data_format='channels_last' (NHWC / (batch, steps, "
                         "features)). Received: data_format=channels_first; transpose the data and "
                         "use data_format='channels_last' only.")
    return data_format


MAX_SIZE = 2 ** 48  # elements; kMaxSize in cpp/include/faltung/common.hpp


def check_output_size(layer, output_shape):
    """ValueError naming the layer, and its large integer arguments, when one sample of its
    output would hold more than MAX_SIZE elements: refused at build, before any allocation
    (the C++ kernels refuse such sizes too, but cannot name the layer)."""
    from faltung.layers.node import is_shape
    shapes = [output_shape] if is_shape(output_shape) else list(output_shape)
    for shape in shapes:
        n = 1
        for d in tuple(shape)[1:]:
            n *= 1 if d is None else int(d)
        if n > MAX_SIZE:
            def large(v):
                vs = v if isinstance(v, (tuple, list)) else (v,)
                return any(type(x) is int and abs(x) > 2 ** 16 for x in vs)
            args = ", ".join(f"{k}={v}" for k, v in layer.get_config().items() if large(v))
            raise ValueError(f'Layer "{layer.name}" ({type(layer).__name__}): its output shape '
                             f"{tuple(shape)} holds {n} elements per sample, beyond what memory could "
                             f"hold (at most 2**48)" + (f"; received {args}" if args else ""))
