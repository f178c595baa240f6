"""Keras 3's image preprocessing layers: Keras's numbers for deterministic cases
(tests/data/keras_image_augmentation.npz, written by Keras 3.15), identity at inference,
seeds, finite-difference backward, errors, configs, and training a model with them."""
import os

import numpy as np
import pytest

import faltung
from faltung import layers
from reference.gradcheck import numeric_grad

KERAS = np.load(os.path.join(os.path.dirname(__file__), "data", "keras_image_augmentation.npz"))
X = KERAS["layers_x"]  # (2, 6, 7, 3) in [0, 255)

RANDOM_LAYERS = [
    lambda: layers.RandomFlip(seed=0),
    lambda: layers.RandomTranslation(0.2, 0.3, seed=1),
    lambda: layers.RandomRotation(0.2, seed=1),
    lambda: layers.RandomZoom(0.3, seed=1),
    lambda: layers.RandomCrop(4, 5, seed=1),
    lambda: layers.RandomContrast(0.5, seed=1),
    lambda: layers.RandomBrightness(0.3, seed=1),
]
RANDOM_IDS = ["flip", "translation", "rotation", "zoom", "crop", "contrast", "brightness"]


@pytest.mark.parametrize("make", RANDOM_LAYERS, ids=RANDOM_IDS)
def test_random_layers_are_identity_at_inference_and_seeded_in_training(make):
    layer = make()
    np.testing.assert_array_equal(layer(X), X)
    np.testing.assert_array_equal(layer(X, training=False), X)
    a, b = make()(X, training=True), make()(X, training=True)
    np.testing.assert_array_equal(a, b)  # same seed, same augmentation
    assert a.dtype == np.float32 and not np.array_equal(a, X[:, :a.shape[1], :a.shape[2]])
    single = make()(X[0], training=True)  # rank 3: one image
    assert single.shape == a.shape[1:]


@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_geometric_layers_match_keras(mode, interpolation):
    kw = dict(fill_mode=mode, interpolation=interpolation, fill_value=5.0)
    cases = {"translation": layers.RandomTranslation((0.2, 0.2), (-0.3, -0.3), **kw),
             "rotation": layers.RandomRotation((0.1, 0.1), **kw),
             "zoom": layers.RandomZoom((0.3, 0.3), (-0.2, -0.2), **kw)}
    for name, layer in cases.items():
        np.testing.assert_allclose(layer(X, training=True), KERAS[f"{name}_{mode}_{interpolation}"],
                                   atol=2e-3, err_msg=name)


def test_value_and_crop_layers_match_keras():
    np.testing.assert_allclose(layers.RandomContrast((-0.3, 0.3))(X, training=True), KERAS["contrast"],
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(layers.RandomBrightness((0.2, 0.2))(X, training=True), KERAS["brightness"],
                               rtol=1e-6)
    np.testing.assert_allclose(layers.RandomCrop(8, 5)(X, training=True), KERAS["crop_small"], rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(layers.Rescaling(1 / 127.5, offset=-1)(X), KERAS["rescaling"], rtol=1e-6)


@pytest.mark.parametrize("kw", [{"scale": None}, {"scale": 1.0, "offset": None}, {"scale": "x"}])
def test_rescaling_refuses_non_numbers(kw):
    # found by the API fuzzer: Rescaling(None) made every output NaN
    with pytest.raises(TypeError, match="Rescaling: expected a number or an array of numbers"):
        layers.Rescaling(**kw)


def test_normalization_adapt_and_given_statistics_match_keras():
    norm = layers.Normalization()
    norm.adapt(X)
    np.testing.assert_allclose(norm.get_weights()[0], KERAS["norm_mean"].ravel(), rtol=1e-5)
    np.testing.assert_allclose(norm.get_weights()[1], KERAS["norm_variance"].ravel(), rtol=1e-4)
    assert [w.shape for w in norm.weights] == [(3,), (3,), ()] and norm.weights[2].dtype == np.int32
    np.testing.assert_allclose(norm(X), KERAS["norm"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layers.Normalization(axis=(1, 2), mean=3.0, variance=4.0)(X),
                               KERAS["norm_axis12"], rtol=1e-6)
    inverse = layers.Normalization(mean=KERAS["norm_mean"].ravel(), variance=KERAS["norm_variance"].ravel(),
                                   invert=True)
    np.testing.assert_allclose(inverse(norm(X)), X, rtol=1e-4)
    batches = layers.Normalization(axis=None)
    batches.adapt(iter([X[:1], X[1:]]))
    np.testing.assert_allclose(batches.get_weights()[0], X.mean(), rtol=1e-5)
    from faltung.preprocessing.image import ImageDataGenerator
    flow = layers.Normalization()
    flow.adapt(ImageDataGenerator().flow(X, np.arange(2), batch_size=1, shuffle=False))
    np.testing.assert_allclose(flow.get_weights()[1], KERAS["norm_variance"].ravel(), rtol=1e-4)


@pytest.mark.parametrize("name, kwargs", [
    ("bilinear_up", dict(height=9, width=11)), ("bilinear_down", dict(height=4, width=3)),
    ("nearest_up", dict(height=9, width=11, interpolation="nearest")),
    ("nearest_down", dict(height=4, width=3, interpolation="nearest")),
    ("crop", dict(height=4, width=8, crop_to_aspect_ratio=True)),
    ("pad", dict(height=4, width=8, pad_to_aspect_ratio=True, fill_value=2.0))])
def test_resizing_matches_keras(name, kwargs):
    layer = layers.Resizing(**kwargs)
    np.testing.assert_allclose(layer(X), KERAS[f"resize_{name}"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(layer(X[1]), KERAS[f"resize_{name}"][1], rtol=1e-5, atol=1e-3)


def test_random_flip_modes():
    x = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2, 1)
    both = layers.RandomFlip(seed=0)(x, training=True)
    for got, img in zip(both, x):
        assert np.array_equal(got, img) or np.array_equal(got, img[::-1, ::-1])
    horizontal = layers.RandomFlip("horizontal", seed=3)(x, training=True)
    for got, img in zip(horizontal, x):
        assert np.array_equal(got, img) or np.array_equal(got, img[:, ::-1])


def check_backward(layer, x, training=True):
    """dL/dx of the layer against central differences of sum(layer(x) * r), float64. The layer
    is re-seeded before every forward so that each sees the same random draw."""
    seed = getattr(layer, "seed", None)

    def run(v):
        if seed is not None:
            layer._rng = np.random.default_rng(seed)
        return layer.forward(v, training=training)

    y = run(x)
    r = np.random.default_rng(5).normal(size=y.shape)
    dx = layer.backward(r)
    np.testing.assert_allclose(dx, numeric_grad(run, x.copy(), r), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [
    lambda: layers.Rescaling(0.5, offset=-1.0),
    lambda: layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.25]),
    lambda: layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.25], invert=True),
    lambda: layers.Resizing(4, 6),
    lambda: layers.Resizing(2, 3, interpolation="nearest"),
    lambda: layers.Resizing(4, 6, crop_to_aspect_ratio=True),
    lambda: layers.Resizing(4, 6, pad_to_aspect_ratio=True, interpolation="nearest"),
    lambda: layers.RandomFlip(seed=2),
    lambda: layers.RandomCrop(2, 3, seed=2),
    lambda: layers.RandomCrop(7, 4, seed=2),
    lambda: layers.RandomContrast((0.2, 0.6), value_range=(-1, 1), seed=2),
    lambda: layers.RandomBrightness(0.4, value_range=(-1, 1), seed=2),
], ids=["rescaling", "normalization", "normalization-invert", "resize-bilinear", "resize-nearest",
        "resize-crop", "resize-pad", "flip", "crop", "crop-resize", "contrast", "brightness"])
def test_backward_matches_finite_differences(make):
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 5, 3, 2))
    layer = make()
    layer.build((None, 5, 3, 2))
    check_backward(layer, x)


def test_inference_call_in_training_passes_gradient_through():
    layer = layers.RandomRotation(0.3, seed=0)
    x = np.ones((1, 4, 4, 1), np.float32)
    assert layer.forward(x, training=False) is x
    layer.forward(x, training=True)
    with pytest.raises(ValueError, match="no gradient with respect to its input in training"):
        layer.backward(np.ones_like(x))
    assert layer.backward(np.ones_like(x), need_dx=False) is None


def test_model_with_augmentation_layers_trains_and_predicts_deterministically():
    faltung.utils.set_random_seed(0)
    model = faltung.models.Sequential([
        layers.Input((8, 8, 1)), layers.RandomFlip("horizontal"), layers.RandomRotation(0.1),
        layers.RandomZoom(0.1), layers.RandomTranslation(0.1, 0.1), layers.Rescaling(1 / 255.0),
        layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (16, 8, 8, 1)).astype(np.float32), rng.integers(0, 2, 16)
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(model.get_weights()[0], before[0])
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("make, match", [
    (lambda: layers.RandomFlip("diagonal"), "unknown mode argument diagonal"),
    (lambda: layers.RandomRotation(1.5), r"`factor` argument should be a number .* Received: factor=1.5"),
    (lambda: layers.RandomTranslation(0.1, [0.1, 0.2, 0.3]), "width_factor"),
    (lambda: layers.RandomZoom(-2.0), r"height_factor=-2.0"),
    (lambda: layers.RandomContrast(0.5, value_range=3), "value_range"),
    (lambda: layers.Resizing(3, 3, antialias=True), "antialias"),
    (lambda: layers.Resizing(3, 3, interpolation="bicubic"), "interpolation"),
    (lambda: layers.RandomFlip(data_format="channels_first"), "channels-last only"),
    (lambda: layers.Normalization(mean=1.0), "both `mean` and `variance`"),
])
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
    with pytest.raises(NotImplementedError, match="Unknown `fill_mode` edge"):
        layers.RandomRotation(0.1, fill_mode="edge")
    with pytest.raises(ValueError, match=r"rank 3 \(single image\) or 4"):
        layers.RandomFlip()(np.zeros((2, 3), np.float32), training=True)


@pytest.mark.parametrize("layer", [
    layers.RandomFlip("vertical", seed=4), layers.RandomTranslation(0.1, (-0.2, 0.3), fill_mode="wrap"),
    layers.RandomRotation((-0.1, 0.2), interpolation="nearest"), layers.RandomZoom(0.2, 0.1, fill_value=1.0),
    layers.RandomCrop(3, 4, seed=1), layers.RandomContrast(0.3, value_range=(0, 1)),
    layers.RandomBrightness((-0.1, 0.2)), layers.Rescaling([1.0, 0.5, 0.25], offset=1.0),
    layers.Normalization(axis=-1, mean=[1.0, 2.0], variance=[1.0, 3.0]),
    layers.Resizing(5, 4, interpolation="nearest", pad_to_aspect_ratio=True)],
    ids=lambda l: type(l).__name__)
def test_config_round_trip(layer):
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg


@pytest.mark.parametrize("height, width", [(0, 4), (4, 0), (-1, 2)])
def test_resizing_refuses_a_size_below_one(height, width):
    with pytest.raises(ValueError, match=r"positive output size.*height=.*width="):
        faltung.layers.Resizing(height, width)
