"""Resizing (Keras 3's keras.layers.Resizing)."""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.preprocessing.base import check_data_format, config_value
from faltung.ops.resampling import resize_bilinear, resize_bilinear_backward


def _nearest_index(out, size):
    """Half-pixel nearest neighbour (Keras / TF half_pixel_centers, torch 'nearest-exact')."""
    return np.minimum(np.floor((np.arange(out) + 0.5) * size / out).astype(np.int64), size - 1)


def aspect_box(h, w, height, width, pad):
    """Keras's centred crop (pad=False) or pad (pad=True) box to the target aspect ratio:
    (box height, box width, top, left); for a pad, top/left place the image in the box, which
    Keras makes h + 2*top by w + 2*left (the same margin on both sides)."""
    bh, bw = int(float(w * height) / width), int(float(h * width) / height)
    if pad:
        top, left = int(float(max(h, bh) - h) / 2), int(float(max(w, bw) - w) / 2)
        return h + 2 * top, w + 2 * left, top, left
    bh, bw = max(min(h, bh), 1), max(min(w, bw), 1)
    return bh, bw, int(float(h - bh) / 2), int(float(w - bw) / 2)


class Resizing(Layer):
    """Resizes images to (height, width), in training and at inference.

    Args:
        height, width: the output size.
        interpolation: "bilinear" (half-pixel centres, no antialiasing: Keras's default
            antialias=False) or "nearest" (half-pixel nearest).
        crop_to_aspect_ratio: first crop the largest centred window of the target's aspect
            ratio. pad_to_aspect_ratio: first pad, centred, with `fill_value`
            (fill_mode "constant", the only one Keras has).
        antialias: only False (faltung does not antialias downscaling).

    Input shape: (H, W, C) or (N, H, W, C). Output shape: (..., height, width, C).
    """

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, antialias=False,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, self.name)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"Layer {self.name}: faltung supports interpolation 'bilinear' or 'nearest'. "
                             f"Received: interpolation={interpolation}")
        if antialias:
            raise ValueError(f"Layer {self.name}: faltung does not implement antialias=True.")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError("Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be True.")
        if fill_mode != "constant":
            raise ValueError(f"Invalid value for argument `fill_mode`. Expected 'constant'. "
                             f"Received: fill_mode={fill_mode}")
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"Layer {self.name}: expected a positive output size, received "
                             f"height={height}, width={width}")
        self.interpolation, self.antialias = interpolation, antialias
        self.crop_to_aspect_ratio, self.pad_to_aspect_ratio = crop_to_aspect_ratio, pad_to_aspect_ratio
        self.fill_mode, self.fill_value = fill_mode, fill_value
        self.data_format = "channels_last"

    def _box(self, h, w):
        if self.crop_to_aspect_ratio or self.pad_to_aspect_ratio:
            return aspect_box(h, w, self.height, self.width, self.pad_to_aspect_ratio)
        return h, w, 0, 0

    def forward(self, x, training=False):
        if x.ndim not in (3, 4):
            raise ValueError(f"Layer {self.name}: expected images of rank 3 or 4, received shape {x.shape}")
        batch = x if x.ndim == 4 else x[None]
        n, h, w, c = batch.shape
        bh, bw, top, left = self._box(h, w)
        if self.pad_to_aspect_ratio:
            boxed = np.full((n, bh, bw, c), self.fill_value, batch.dtype)
            boxed[:, top:top + h, left:left + w] = batch
        else:
            boxed = batch[:, top:top + bh, left:left + bw]
        if self.interpolation == "bilinear":
            y = resize_bilinear(boxed, (self.height, self.width))
        else:
            y = boxed[:, _nearest_index(self.height, bh)][:, :, _nearest_index(self.width, bw)]
        if training:
            self.save_for_backward(x.shape, (bh, bw, top, left))
        return np.ascontiguousarray(y) if x.ndim == 4 else np.ascontiguousarray(y[0])

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        shape, (bh, bw, top, left) = self.saved_for_backward()
        batch = dy if dy.ndim == 4 else dy[None]
        n, c = batch.shape[0], batch.shape[3]
        if self.interpolation == "bilinear":
            dbox = resize_bilinear_backward(batch, (bh, bw))
        else:
            dbox = np.zeros((n, bh, bw, c), batch.dtype)
            rows, cols = _nearest_index(self.height, bh), _nearest_index(self.width, bw)
            np.add.at(dbox, (slice(None), rows[:, None], cols[None, :]), batch)
        h, w = shape[-3:-1]
        if self.pad_to_aspect_ratio:
            dx = dbox[:, top:top + h, left:left + w]
        else:
            dx = np.zeros((n, h, w, c), batch.dtype)
            dx[:, top:top + bh, left:left + bw] = dbox
        return np.ascontiguousarray(dx).reshape(shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + (self.height, self.width, input_shape[-1])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height=self.height, width=self.width, interpolation=self.interpolation,
                   crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                   pad_to_aspect_ratio=self.pad_to_aspect_ratio, fill_mode=self.fill_mode,
                   fill_value=config_value(self.fill_value), antialias=self.antialias,
                   data_format=self.data_format)
        return cfg
