"""Image ops: one affine map per image of an NHWC batch (C++, OpenMP over the batch).

`affine_transform` takes scipy's convention: `matrices` (N, 2, 3), the output pixel (r, c)
samples the input at (m[0] @ (r, c, 1), m[1] @ (r, c, 1)) (rows first), with scipy.ndimage's
fill modes ("constant", "grid-constant", "nearest", "reflect", "mirror", "wrap",
"grid-wrap"): `ImageDataGenerator` uses it as Keras's legacy code uses
scipy.ndimage.affine_transform. `keras_transforms_to_matrices` converts the 8-number
transforms of `keras.ops.image.affine_transform` (x = column first); `KERAS_FILL_MODES` maps
that op's fill modes (per-tap extension, as TensorFlow and Keras's backends compute) to
scipy's names. numpy in, numpy out; float64 stays float64, anything else runs in float32.
"""
import numpy as np

from faltung.ops._kernels import as_array, dtype_of, kernel_for

INTERPOLATION_ORDERS = {"nearest": 0, "bilinear": 1}
SCIPY_FILL_MODES = ("constant", "grid-constant", "nearest", "reflect", "mirror", "wrap", "grid-wrap")
# keras.ops.image.affine_transform's fill_mode -> the scipy mode that computes it
KERAS_FILL_MODES = {"constant": "grid-constant", "nearest": "nearest", "reflect": "reflect",
                    "mirror": "mirror", "wrap": "grid-wrap"}


def affine_transform(images, matrices, interpolation="bilinear", fill_mode="constant", fill_value=0.0):
    """images (N,H,W,C), matrices (N,2,3) (or one (2,3) for all) -> (N,H,W,C)."""
    if interpolation not in INTERPOLATION_ORDERS:
        raise ValueError("Invalid value for argument `interpolation`. Expected one of "
                         f"{tuple(INTERPOLATION_ORDERS)}. Received: interpolation={interpolation}")
    if fill_mode not in SCIPY_FILL_MODES:
        raise ValueError(f"Invalid value for argument `fill_mode`. Expected one of {SCIPY_FILL_MODES}. "
                         f"Received: fill_mode={fill_mode}")
    dtype = dtype_of(images)
    x = as_array(images, dtype)
    if x.ndim != 4:
        raise ValueError(f"affine_transform expects images of rank 4 (N, H, W, C), received shape {x.shape}")
    m = np.asarray(matrices, np.float64)
    if m.shape == (2, 3):
        m = np.broadcast_to(m, (x.shape[0], 2, 3))
    m = np.ascontiguousarray(m)
    return kernel_for("affine_transform", dtype)(x, m, INTERPOLATION_ORDERS[interpolation], fill_mode,
                                                 float(fill_value))


def keras_transforms_to_matrices(transforms):
    """(N, 8) Keras transforms [a0, a1, a2, b0, b1, b2, c0, c1] (output (x, y) = (col, row)
    samples the input at x' = a0 x + a1 y + a2, y' = b0 x + b1 y + b2; c0 = c1 = 0) ->
    (N, 2, 3) row-first matrices for `affine_transform`."""
    t = np.asarray(transforms, np.float64).reshape(-1, 8)
    if np.any(t[:, 6:] != 0):
        raise ValueError("keras_transforms_to_matrices: projective transforms (c0, c1 != 0) are not "
                         "supported, only affine ones")
    a0, a1, a2, b0, b1, b2 = t[:, :6].T
    return np.stack([np.stack([b1, b0, b2], 1), np.stack([a1, a0, a2], 1)], 1)
