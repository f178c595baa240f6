"""Writes keras_image_augmentation.npz: what Keras 3 computes for the deterministic parts that
tests/test_image_augmentation.py and tests/test_preprocessing_layers.py pin (run with
Keras 3 + scipy installed: KERAS_BACKEND=torch python tests/data/make_keras_image_augmentation.py).
"""
import os

import numpy as np
from keras import ops
from keras.src.legacy.preprocessing.image import ImageDataGenerator

rng = np.random.default_rng(0)
out = {}
# keras.ops.image.affine_transform
x = rng.normal(size=(3, 5, 7, 2)).astype("float32")
t = np.zeros((3, 8), "float32")
t[:, [0, 4]] = 1 + rng.normal(scale=0.3, size=(3, 2))
t[:, [1, 3]] = rng.normal(scale=0.3, size=(3, 2))
t[:, [2, 5]] = rng.normal(scale=2.0, size=(3, 2))
out["ops_x"], out["ops_t"] = x, t
for mode in ("constant", "nearest", "wrap", "mirror", "reflect"):
    for interp in ("nearest", "bilinear"):
        out[f"ops_{mode}_{interp}"] = ops.convert_to_numpy(
            ops.image.affine_transform(x, t, interp, mode, fill_value=-1.5))
# ImageDataGenerator.flow with a seed: Keras's random draws, matrices and batch order
images = rng.uniform(0, 255, size=(10, 9, 8, 3)).astype("float32")
labels = np.arange(10)
out["gen_x"] = images
gen = ImageDataGenerator(rotation_range=30, width_shift_range=0.2, height_shift_range=2, shear_range=10,
                         zoom_range=0.2, horizontal_flip=True, vertical_flip=True, fill_mode="reflect",
                         rescale=1 / 255.0, featurewise_center=True, featurewise_std_normalization=True)
gen.fit(images)
out["gen_mean"], out["gen_std"] = gen.mean, gen.std
it = gen.flow(images, labels, batch_size=4, seed=7)
for i in range(len(it)):
    bx, by = it[i]
    out[f"gen_getitem_{i}_x"], out[f"gen_getitem_{i}_y"] = bx, by
it.on_epoch_end()
bx, by = it[0]
out["gen_epoch2_0_x"], out["gen_epoch2_0_y"] = bx, by
for mode in ("constant", "nearest", "wrap"):
    g = ImageDataGenerator(rotation_range=40, width_shift_range=[1, 2], zoom_range=[0.7, 1.2], fill_mode=mode,
                           cval=3.0)
    it = g.flow(images[:5], batch_size=5, shuffle=False, seed=1)
    out[f"gen_{mode}_next"] = next(it)
# preprocessing layers, deterministic cases (factor pairs with equal ends)
import keras  # noqa: E402

imgs = rng.uniform(0, 255, size=(2, 6, 7, 3)).astype("float32")
out["layers_x"] = imgs
for mode in ("reflect", "wrap", "constant", "nearest"):
    for interp in ("bilinear", "nearest"):
        kw = dict(fill_mode=mode, interpolation=interp, fill_value=5.0)
        out[f"translation_{mode}_{interp}"] = np.asarray(keras.layers.RandomTranslation(
            (0.2, 0.2), (-0.3, -0.3), **kw)(imgs, training=True))
        out[f"rotation_{mode}_{interp}"] = np.asarray(keras.layers.RandomRotation((0.1, 0.1), **kw)(
            imgs, training=True))
        out[f"zoom_{mode}_{interp}"] = np.asarray(keras.layers.RandomZoom((0.3, 0.3), (-0.2, -0.2), **kw)(
            imgs, training=True))
out["contrast"] = np.asarray(keras.layers.RandomContrast((-0.3, 0.3))(imgs, training=True))
out["brightness"] = np.asarray(keras.layers.RandomBrightness((0.2, 0.2))(imgs, training=True))
out["crop_small"] = np.asarray(keras.layers.RandomCrop(8, 5)(imgs, training=True))
out["rescaling"] = np.asarray(keras.layers.Rescaling(1 / 127.5, offset=-1)(imgs))
norm = keras.layers.Normalization()
norm.adapt(imgs)
out["norm_mean"], out["norm_variance"] = np.asarray(norm.mean), np.asarray(norm.variance)
out["norm"] = np.asarray(norm(imgs))
out["norm_axis12"] = np.asarray(keras.layers.Normalization(axis=(1, 2), mean=3.0, variance=4.0)(imgs))
for name, kw in (("bilinear_up", dict(height=9, width=11)), ("bilinear_down", dict(height=4, width=3)),
                 ("nearest_up", dict(height=9, width=11, interpolation="nearest")),
                 ("nearest_down", dict(height=4, width=3, interpolation="nearest")),
                 ("crop", dict(height=4, width=8, crop_to_aspect_ratio=True)),
                 ("pad", dict(height=4, width=8, pad_to_aspect_ratio=True, fill_value=2.0))):
    out[f"resize_{name}"] = np.asarray(keras.layers.Resizing(**kw)(imgs))
np.savez_compressed(os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_image_augmentation.npz"),
                    **out)
