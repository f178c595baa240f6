"""ImageDataGenerator's `brightness_range` and apply_brightness_shift: PIL's uint8 round trip
(ImageEnhance.Brightness = a blend with a black image, truncated to bytes, clipped when
brightening) reproduced in numpy; against hand-computed bytes here and against Keras itself
(with Pillow) when Keras is installed."""
import os

import numpy as np
import pytest

from faltung.preprocessing.image import ImageDataGenerator, apply_brightness_shift, random_brightness

os.environ.setdefault("KERAS_BACKEND", "torch")


def test_bytes_are_scaled_truncated_and_clipped_as_pil_does():
    x = np.array([0, 1, 99, 100, 200, 255], np.float32).reshape(1, 6, 1)
    # 0.5 * v truncated (PIL interpolates without clipping); 1.5 * v truncated, clipped at 255
    np.testing.assert_array_equal(apply_brightness_shift(x, 0.5, False)[0, :, 0], [0, 0, 49, 50, 100, 127])
    np.testing.assert_array_equal(apply_brightness_shift(x, 1.5, False)[0, :, 0], [0, 1, 148, 150, 255, 255])
    # fractional values are truncated to bytes first
    np.testing.assert_array_equal(apply_brightness_shift(np.full((1, 1, 1), 10.9, np.float32), 1.0, False), [[[10]]])


def test_out_of_range_images_are_scaled_to_bytes_and_back():
    x = np.array([-1.0, 0.0, 1.0], np.float32).reshape(1, 3, 1)  # min -1, max 1: outside [0, 255]
    got = apply_brightness_shift(x, 1.0, False)
    # bytes 0, 127 (127.5 truncated), 255, then back to [-1, 1]
    np.testing.assert_allclose(got[0, :, 0], [-1.0, 127 / 255 * 2 - 1, 1.0], rtol=1e-6)
    # scale=True keeps the [0, 255] bytes
    np.testing.assert_array_equal(apply_brightness_shift(x, 1.0, True)[0, :, 0], [0, 127, 255])


def test_alpha_channel_is_kept_and_channel_counts_checked():
    x = np.full((2, 2, 4), 200, np.float32)
    got = apply_brightness_shift(x, 0.5, False)
    np.testing.assert_array_equal(got[..., :3], 100)
    np.testing.assert_array_equal(got[..., 3], 200)
    with pytest.raises(ValueError, match="Unsupported channel number: 2"):
        apply_brightness_shift(np.zeros((2, 2, 2), np.float32), 0.5)
    with pytest.raises(ValueError, match="rank 3 \\(single image\\). Got array with shape: \\(2, 2\\)"):
        apply_brightness_shift(np.zeros((2, 2), np.float32), 0.5)
    with pytest.raises(ValueError, match="brightness_range should be tuple or list of two floats"):
        ImageDataGenerator(brightness_range=0.5)
    with pytest.raises(ValueError, match="brightness_range should be tuple or list of two floats"):
        random_brightness(x, (0.5,))


def test_generator_draws_brightness_last_and_applies_it():
    gen = ImageDataGenerator(brightness_range=(0.2, 0.4), horizontal_flip=True)
    params = gen.get_random_transform((4, 4, 3), seed=3)
    np.random.seed(3)
    np.random.random(), np.random.random()  # the two flip draws come first
    assert params["brightness"] == pytest.approx(np.random.uniform(0.2, 0.4))
    x = np.full((1, 4, 4, 3), 100, np.float32)
    out = next(gen.flow(x, batch_size=1, seed=3, shuffle=False))
    assert 20 <= out.min() and out.max() <= 40 and np.all(out == np.floor(out))


def test_against_keras():
    keras = pytest.importorskip("keras")
    pytest.importorskip("PIL")
    from keras.src.legacy.preprocessing import image as kimage
    rng = np.random.default_rng(0)
    for c in (1, 3, 4):
        for lo, hi in ((0, 255), (0, 1), (-3, 7), (0, 300)):
            x = rng.uniform(lo, hi, size=(5, 6, c)).astype(np.float32)
            for b in (0.0, 0.37, 1.0, 1.8):
                for scale in (False, True):
                    np.testing.assert_allclose(apply_brightness_shift(x, b, scale),
                                               kimage.apply_brightness_shift(x, b, scale), rtol=1e-6)
    x = rng.uniform(0, 255, size=(6, 8, 8, 3)).astype(np.float32)
    kw = dict(brightness_range=(0.3, 1.6), rotation_range=20, channel_shift_range=10.0, horizontal_flip=True)
    ours = next(ImageDataGenerator(**kw).flow(x, batch_size=6, seed=5, shuffle=False))
    theirs = next(kimage.ImageDataGenerator(**kw).flow(x, batch_size=6, seed=5, shuffle=False))
    np.testing.assert_array_equal(ours, theirs)  # measured: identical
