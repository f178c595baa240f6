"""Embedding lookup and its backward (faltung's ops; Keras's `Embedding` calls
`keras.ops.take(embeddings, indices, axis=0)`, which `embedding` computes).

numpy in, numpy out. A float64 table (or dy) runs the float64 kernels (for gradient
checks); everything else runs in float32. Indices must lie in [0, input_dim): others raise
ValueError naming the index and input_dim.
"""
import numpy as np

from faltung.ops._kernels import as_array, dtype_of, kernel_for

__all__ = ["embedding", "embedding_backward", "as_indices"]


def as_indices(indices, input_dim, op="embedding"):
    """`indices` as a C-contiguous int32 array, converted as Keras's Embedding does: int32
    as is, other integer and bool types cast, floats truncated toward zero (Keras casts them
    to int32). Values outside [0, input_dim) in a non-int32 array raise ValueError here,
    before the cast could wrap them into range (int32 arrays are checked by the kernel)."""
    idx = np.asarray(indices)
    if idx.dtype == np.int32:
        return np.asarray(idx, order="C")  # a 0-d index stays 0-d: the result is then (D,)
    if idx.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected integer `indices`, received an array of dtype {idx.dtype}")
    if idx.dtype.kind == "f":
        idx = np.trunc(idx)
    bad = ~((idx >= 0) & (idx < input_dim))  # NaN compares False: bad
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        value = idx.reshape(-1)[pos]
        shown = int(value) if np.isfinite(value) else value
        raise ValueError(f"{op}: index {shown} at position {pos} of `indices` is outside "
                         f"[0, input_dim={input_dim})")
    return np.asarray(idx, dtype=np.int32, order="C")


def embedding(indices, table):
    """indices (...) integers, table (V, D) -> table[indices] of shape indices.shape + (D,)."""
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(f"embedding: expected `table` of rank 2, received shape {table.shape}")
    dtype = dtype_of(table)
    table = as_array(table, dtype)
    return kernel_for("embedding_forward", dtype)(as_indices(indices, table.shape[0]), table)


def embedding_backward(dy, indices, input_dim):
    """dy (..., D), indices (...) -> d table (input_dim, D): row v is the sum of the dy rows
    whose index is v (duplicated indices accumulate; rows never looked up are 0)."""
    dtype = dtype_of(dy)
    dy = as_array(dy, dtype)
    idx = as_indices(indices, input_dim, "embedding_backward")
    return kernel_for("embedding_backward", dtype)(dy, idx, int(input_dim))
