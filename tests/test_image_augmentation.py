"""The image-transform kernel (faltung.ops.image) against a numpy oracle and scipy, Keras's
ImageDataGenerator semantics (tests/data/keras_image_augmentation.npz, written by Keras 3 with
tests/data/make_keras_image_augmentation.py), and `fit` on iterators / datasets."""
import os
import sys
import warnings

import numpy as np
import pytest

import faltung
from faltung import layers
from faltung.ops.image import KERAS_FILL_MODES, SCIPY_FILL_MODES, affine_transform, keras_transforms_to_matrices
from faltung.preprocessing.image import ImageDataGenerator, apply_affine_transform
from faltung.utils.py_dataset import PyDataset
from reference.image_transform import affine_transform as reference_affine

KERAS = np.load(os.path.join(os.path.dirname(__file__), "data", "keras_image_augmentation.npz"))


def random_matrices(rng, n, scale=0.4, shift=3.0):
    m = np.zeros((n, 2, 3))
    m[:, :, :2] = np.eye(2) + rng.normal(scale=scale, size=(n, 2, 2))
    m[:, :, 2] = rng.normal(scale=shift, size=(n, 2))
    return m


SHAPES = [(3, 5, 7, 2), (1, 1, 4, 3), (2, 6, 1, 1), (1, 1, 1, 2), (2, 8, 8, 1)]


@pytest.mark.parametrize("mode", SCIPY_FILL_MODES)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-H{}-W{}-C{}".format(*s))
def test_affine_transform_matches_reference(shape, interpolation, mode):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape)
    m = random_matrices(rng, shape[0])
    want = reference_affine(x, m, 1 if interpolation == "bilinear" else 0, mode, -2.5)
    np.testing.assert_allclose(affine_transform(x, m, interpolation, mode, -2.5), want, atol=1e-12)
    got32 = affine_transform(x.astype(np.float32), m, interpolation, mode, -2.5)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, atol=1e-5)


@pytest.mark.parametrize("mode", SCIPY_FILL_MODES)
@pytest.mark.parametrize("order", [0, 1])
def test_affine_transform_matches_scipy(mode, order):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(order)
    x = rng.normal(size=(3, 6, 9, 2))
    m = random_matrices(rng, 3, scale=0.6, shift=6.0)
    want = np.stack([np.stack([ndimage.affine_transform(x[n, :, :, c], m[n, :, :2], m[n, :, 2], order=order,
                                                        mode=mode, cval=1.5) for c in range(2)], -1)
                     for n in range(3)])
    got = affine_transform(x, m, "bilinear" if order else "nearest", mode, 1.5)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_affine_transform_same_with_one_thread():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 9, 11, 3)).astype(np.float32)
    m = random_matrices(rng, 5)
    threads = faltung.get_num_threads()
    try:
        faltung.set_num_threads(1)
        one = affine_transform(x, m, fill_mode="reflect")
    finally:
        faltung.set_num_threads(threads)
    np.testing.assert_array_equal(affine_transform(x, m, fill_mode="reflect"), one)


def test_affine_transform_identity_and_one_matrix_for_all():
    x = np.random.default_rng(0).normal(size=(4, 5, 6, 3)).astype(np.float32)
    identity = np.array([[1.0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(affine_transform(x, identity), x)
    shift = np.array([[1.0, 0, 1], [0, 1, 0]])  # output row r reads input row r + 1
    np.testing.assert_array_equal(affine_transform(x, shift, fill_mode="nearest")[:, :-1], x[:, 1:])


@pytest.mark.parametrize("mode", ["constant", "nearest", "wrap", "mirror", "reflect"])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_keras_ops_affine_transform_semantics(mode, interpolation):
    m = keras_transforms_to_matrices(KERAS["ops_t"])
    got = affine_transform(KERAS["ops_x"], m, interpolation, KERAS_FILL_MODES[mode], -1.5)
    np.testing.assert_allclose(got, KERAS[f"ops_{mode}_{interpolation}"], atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(matrices=np.zeros((2, 2, 3))), r"affine_transform: expected `matrices` of shape \(3, 2, 3\), received shape \(2, 2, 3\)"),
    (dict(matrices=np.full((3, 2, 3), np.nan)), "`matrices` must be finite"),
    (dict(fill_mode="edge"), "Invalid value for argument `fill_mode`"),
    (dict(interpolation="bicubic"), "Invalid value for argument `interpolation`"),
])
def test_affine_transform_errors(kwargs, match):
    args = dict(images=np.zeros((3, 4, 4, 1), np.float32), matrices=np.zeros((3, 2, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        affine_transform(**args)
    with pytest.raises(ValueError, match=r"rank 4 \(N, H, W, C\), received shape \(4, 4\)"):
        affine_transform(np.zeros((4, 4)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="projective"):
        keras_transforms_to_matrices([1, 0, 0, 0, 1, 0, 0.1, 0])


# -- ImageDataGenerator ----------------------------------------------------------------------
def seeded_generator():
    return ImageDataGenerator(rotation_range=30, width_shift_range=0.2, height_shift_range=2, shear_range=10,
                              zoom_range=0.2, horizontal_flip=True, vertical_flip=True, fill_mode="reflect",
                              rescale=1 / 255.0, featurewise_center=True, featurewise_std_normalization=True)


def test_generator_matches_keras_batches_with_seed():
    assert faltung.preprocessing.image.ImageDataGenerator is ImageDataGenerator  # keras.preprocessing.image
    images = KERAS["gen_x"]
    gen = seeded_generator()
    gen.fit(images)
    np.testing.assert_allclose(gen.mean, KERAS["gen_mean"], rtol=1e-6)
    np.testing.assert_allclose(gen.std, KERAS["gen_std"], rtol=1e-6)
    it = gen.flow(images, np.arange(10), batch_size=4, seed=7)
    assert len(it) == 3
    for i in range(3):
        bx, by = it[i]
        np.testing.assert_allclose(bx, KERAS[f"gen_getitem_{i}_x"], atol=1e-5)
        np.testing.assert_array_equal(by, KERAS[f"gen_getitem_{i}_y"])
    it.on_epoch_end()  # a new permutation, as fit's epochs see
    bx, by = it[0]
    np.testing.assert_array_equal(by, KERAS["gen_epoch2_0_y"])
    np.testing.assert_allclose(bx, KERAS["gen_epoch2_0_x"], atol=1e-5)


@pytest.mark.parametrize("mode", ["constant", "nearest", "wrap"])
def test_generator_fill_modes_and_next_match_keras(mode):
    gen = ImageDataGenerator(rotation_range=40, width_shift_range=[1, 2], zoom_range=[0.7, 1.2], fill_mode=mode,
                             cval=3.0)
    it = gen.flow(KERAS["gen_x"][:5], batch_size=5, shuffle=False, seed=1)
    np.testing.assert_allclose(next(it), KERAS[f"gen_{mode}_next"], atol=1e-4)


def test_generator_flips_rescale_and_standardization():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(6, 4, 5, 3)).astype(np.float32)
    gen = ImageDataGenerator(horizontal_flip=True, rescale=0.5)
    bx = gen.flow(x, batch_size=6, shuffle=False, seed=3)[0]
    for got, img in zip(bx, x * 0.5):
        assert np.array_equal(got, img) or np.array_equal(got, img[:, ::-1])
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True, rescale=0.5)
    gen.fit(x)
    np.testing.assert_allclose(gen.mean.ravel(), (x * 0.5).mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(gen.std.ravel(), (x * 0.5).std(axis=(0, 1, 2)), rtol=1e-5)
    bx = gen.flow(x, batch_size=6, shuffle=False)[0]
    np.testing.assert_allclose(bx, (x * 0.5 - gen.mean) / (gen.std + 1e-6), rtol=1e-4, atol=1e-5)
    gen = ImageDataGenerator(samplewise_center=True, samplewise_std_normalization=True)
    bx = gen.flow(x, batch_size=6, shuffle=False)[0]
    np.testing.assert_allclose(bx.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(bx.std(axis=(1, 2, 3)), 1, atol=1e-4)


def test_flow_iterator_protocol():
    x = np.arange(7 * 2 * 2 * 1, dtype=np.float32).reshape(7, 2, 2, 1)
    y = np.arange(7)
    it = ImageDataGenerator().flow(x, y, batch_size=3, shuffle=False)
    assert len(it) == 3
    assert [list(it[i][1]) for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [list(next(it)[1]) for _ in range(4)] == [[0, 1, 2], [3, 4, 5], [6], [0, 1, 2]]
    assert it[2][0].shape == (1, 2, 2, 1)
    only_x = ImageDataGenerator().flow(x, batch_size=4, shuffle=False)[0]
    np.testing.assert_array_equal(only_x, x[:4])
    bx, by, bw = ImageDataGenerator().flow(x, y, sample_weight=np.ones(7), batch_size=4, shuffle=False)[1]
    assert bx.shape[0] == by.shape[0] == bw.shape[0] == 3
    a = ImageDataGenerator(rotation_range=20).flow(x, y, batch_size=3, seed=5)
    b = ImageDataGenerator(rotation_range=20).flow(x, y, batch_size=3, seed=5)
    for i in range(3):
        np.testing.assert_array_equal(a[i][0], b[i][0])
    val = ImageDataGenerator(validation_split=0.3).flow(x, y, batch_size=8, subset="validation",
                                                        shuffle=False, ignore_class_split=True)
    np.testing.assert_array_equal(val[0][1], [0, 1])
    with pytest.raises(ValueError, match="should have the same length"):
        ImageDataGenerator().flow(x, y[:3])
    with pytest.raises(ValueError, match="should have rank 4"):
        ImageDataGenerator().flow(x[:, :, :, 0], y)
    with pytest.raises(ValueError, match="length 3"):
        it[3]


def test_apply_transform_and_generator_errors():
    x = np.random.default_rng(2).normal(size=(5, 5, 2)).astype(np.float32)
    gen = ImageDataGenerator(fill_mode="constant")
    np.testing.assert_allclose(gen.apply_transform(x, {"theta": 90}),
                               apply_affine_transform(x, theta=90, fill_mode="constant"))
    np.testing.assert_allclose(apply_affine_transform(x, theta=90), np.rot90(x), atol=1e-5)  # counter-clockwise
    np.testing.assert_array_equal(apply_affine_transform(x), x)
    with pytest.raises(ValueError, match="`zoom_range` should be a float"):
        ImageDataGenerator(zoom_range=[1, 2, 3])
    with pytest.raises(ValueError, match="interpolation_order"):
        ImageDataGenerator(interpolation_order=3)
    with pytest.raises(ValueError, match="channels-last only"):
        ImageDataGenerator(data_format="channels_first")
    with pytest.raises(ValueError, match="brightness_range"):
        ImageDataGenerator(brightness_range=(0.5, 1.5, 2.0))
    with pytest.raises(ValueError, match="fill_mode"):
        ImageDataGenerator(fill_mode="edge")


def test_flow_from_directory(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(3)
    for cls, n in (("cat", 3), ("dog", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    it = ImageDataGenerator(rescale=1 / 255.0).flow_from_directory(
        str(tmp_path), target_size=(4, 5), batch_size=5, shuffle=False)
    assert it.class_indices == {"cat": 0, "dog": 1}
    assert it.filenames == [os.path.join("cat", "0.png"), os.path.join("cat", "1.png"),
                            os.path.join("cat", "2.png"), os.path.join("dog", "0.png"),
                            os.path.join("dog", "1.png")]
    bx, by = it[0]
    assert bx.shape == (5, 4, 5, 3) and bx.dtype == np.float32 and 0 <= bx.min() and bx.max() <= 1
    np.testing.assert_array_equal(by, [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]])
    gray = ImageDataGenerator().flow_from_directory(str(tmp_path), target_size=(6, 8), color_mode="grayscale",
                                                    class_mode="sparse", batch_size=2, shuffle=False)
    bx, by = gray[0]
    assert bx.shape == (2, 6, 8, 1)
    np.testing.assert_array_equal(by, [0, 0])


def test_flow_from_directory_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"requires Pillow.*pip install faltung\[image\]"):
        ImageDataGenerator().flow_from_directory(str(tmp_path))


# -- fit / evaluate / predict on iterators and datasets ------------------------------------------
def small_model():
    faltung.utils.set_random_seed(0)
    model = faltung.models.Sequential([layers.Input((6, 6, 1)), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def image_data(n=20):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(n, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, n)


def test_fit_accepts_image_data_generator_flow():
    x, y = image_data()
    model = small_model()
    it = ImageDataGenerator(rotation_range=10, horizontal_flip=True).flow(x, y, batch_size=8, seed=0)
    seen = []

    class Count(faltung.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    before = model.get_weights()[0].copy()
    hist = model.fit(it, epochs=2, validation_data=(x, y), verbose=0, callbacks=[Count()])
    assert seen == [0, 1, 2, 0, 1, 2]  # len(it) steps per epoch
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert not np.allclose(model.get_weights()[0], before)
    loss, acc = model.evaluate(ImageDataGenerator().flow(x, y, batch_size=6, shuffle=False), verbose=0)
    want_loss, want_acc = model.evaluate(x, y, batch_size=6, verbose=0)
    assert loss == pytest.approx(want_loss, rel=1e-6) and acc == pytest.approx(want_acc)
    pred = model.predict(ImageDataGenerator().flow(x, batch_size=6, shuffle=False), verbose=0)
    np.testing.assert_allclose(pred, model.predict(x, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError, match="`y` argument is not supported when using a dataset"):
        model.fit(it, y, verbose=0)


def test_fit_accepts_py_dataset_and_generators():
    x, y = image_data(12)

    class Batches(PyDataset):
        def __init__(self):
            super().__init__(workers=2)
            self.epochs_ended = 0

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]

        def on_epoch_end(self):
            self.epochs_ended += 1

    data = Batches()
    assert data.num_batches == 3 and data.workers == 2
    model = small_model()
    model.fit(data, epochs=2, verbose=0, validation_data=Batches())
    assert data.epochs_ended == 2

    class SequenceLike:  # keras.utils.Sequence's protocol without faltung's base class
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[6 * i:6 * i + 6], y[6 * i:6 * i + 6]

    assert model.evaluate(SequenceLike(), verbose=0)[0] == pytest.approx(
        model.evaluate(x, y, batch_size=6, verbose=0)[0], rel=1e-6)

    def endless():
        while True:
            for i in range(3):
                yield x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]

    steps = []

    class Count(faltung.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            steps.append(self.params["steps"])

    model.fit(endless(), steps_per_epoch=5, epochs=2, verbose=0, callbacks=[Count()])
    assert steps == [5, 5]
    finite = ((x[i:i + 6], y[i:i + 6]) for i in (0, 6))
    assert model.evaluate(finite, verbose=0)[0] == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-5)


def test_deprecated_generator_aliases():
    x, y = image_data(8)
    model = small_model()
    it = ImageDataGenerator().flow(x, y, batch_size=4, shuffle=False)
    with pytest.warns(UserWarning, match="`Model.fit_generator` is deprecated"):
        hist = model.fit_generator(it, epochs=1, verbose=0)
    assert len(hist.history["loss"]) == 1
    with pytest.warns(UserWarning, match="evaluate_generator"):
        loss = model.evaluate_generator(it)
    assert loss[0] == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-6)
    with pytest.warns(UserWarning, match="predict_generator"):
        pred = model.predict_generator(ImageDataGenerator().flow(x, batch_size=4, shuffle=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(pred, model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("workers", [1, 3])
def test_py_dataset_workers_read_ahead_in_order_on_threads(workers):
    """workers > 1: batches are read on a pool of threads, ahead of training, and arrive in
    order; training gives the same weights as one worker."""
    import threading
    import time
    x, y = image_data(24)

    class Slow(PyDataset):
        def __init__(self):
            super().__init__(workers=workers, max_queue_size=4)
            self.threads = set()

        def __len__(self):
            return 6

        def __getitem__(self, i):
            self.threads.add(threading.current_thread().name)
            time.sleep(0.01 * (6 - i))  # later batches finish first on a pool
            return x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]

    faltung.utils.set_random_seed(3)
    model = small_model()
    data = Slow()
    model.fit(data, epochs=2, verbose=0, shuffle=False)
    faltung.utils.set_random_seed(3)
    want = small_model()
    want.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), want.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    on_pool = {t for t in data.threads if t.startswith("faltung-data")}
    assert (len(on_pool) > 1) if workers > 1 else not on_pool
