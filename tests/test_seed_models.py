"""The seeds' models run as written (only the import changed) and learn on real data."""
import io

import numpy as np
import pytest

import faltung
from faltung import layers
from faltung.layers import (Activation, Convolution2D, Dense, Flatten, MaxPooling2D)


def _summary_text(model):
    buf = io.StringIO()
    model.summary(print_fn=lambda s, *a, **k: buf.write(s + "\n"))
    return buf.getvalue()


def cifar_model():
    """The CIFAR-10 model of the CNN seminar paper (seed 002)."""
    m = faltung.Sequential()
    m.add(layers.Conv2D(32, (3, 3), padding="same", activation="relu", input_shape=(32, 32, 3)))
    m.add(layers.Conv2D(32, (3, 3), padding="same", activation="relu"))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.Conv2D(64, (3, 3), padding="same", activation="relu"))
    m.add(layers.Conv2D(64, (3, 3), padding="same", activation="relu"))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.Conv2D(128, (3, 3), padding="same", activation="relu"))
    m.add(layers.Conv2D(128, (3, 3), padding="same", activation="relu"))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.Flatten())
    m.add(layers.Dropout(0.5))
    m.add(layers.Dense(128, activation="relu"))
    m.add(layers.Dense(64, activation="relu"))
    m.add(layers.Dense(10, activation="softmax"))
    return m


def test_cifar_model_summary_matches_keras():
    faltung.backend.clear_session()
    m = cifar_model()
    assert m.count_params() == 558_186
    shapes = [l.output_shape for l in m.layers]
    assert shapes == [(None, 32, 32, 32), (None, 32, 32, 32), (None, 16, 16, 32),
                      (None, 16, 16, 64), (None, 16, 16, 64), (None, 8, 8, 64),
                      (None, 8, 8, 128), (None, 8, 8, 128), (None, 4, 4, 128),
                      (None, 2048), (None, 2048), (None, 128), (None, 64), (None, 10)]
    text = _summary_text(m)
    assert "conv2d_5 (Conv2D)" in text and "max_pooling2d_2" in text  # long names wrap, as in Keras
    assert "558,186" in text
    # Keras's per-layer counts
    assert [l.count_params() for l in m.layers if l.count_params()] == \
        [896, 9248, 18496, 36928, 73856, 147584, 262272, 8256, 650]


def test_cifar_model_trains_one_step():
    faltung.utils.set_random_seed(0)
    m = cifar_model()
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    first = m.train_on_batch(x, y)[0]
    for _ in range(15):
        last = m.train_on_batch(x, y)[0]
    assert np.isfinite(first) and last < first


def edge_images(n, p, rng):
    """Class 1: a bright horizontal or vertical line segment; class 0: as many bright
    pixels scattered at random (the lecture's 'edge lover' task)."""
    x = np.zeros((n, p, p, 1), np.float32)
    y = rng.integers(0, 2, n)
    for i in range(n):
        length = rng.integers(4, p - 2)
        if y[i] == 1:
            r, c = rng.integers(0, p), rng.integers(0, p - length)
            if rng.random() < 0.5:
                x[i, r, c:c + length, 0] = 1
            else:
                x[i, c:c + length, r, 0] = 1
        else:
            idx = rng.choice(p * p, size=length, replace=False)
            x[i].reshape(-1)[idx] = 1
    return x, y


def test_edge_lover_model_as_written():
    faltung.utils.set_random_seed(1)
    pixel = 16
    model = faltung.Sequential()
    model.add(Convolution2D(1, (5, 5),  # one 5x5 kernel
                            padding='same',  # zero-padding to preserve size
                            input_shape=(pixel, pixel, 1)))
    model.add(Activation('linear'))
    model.add(MaxPooling2D(pool_size=(pixel, pixel)))
    model.add(Flatten())
    model.add(Dense(2))
    model.add(Activation('softmax'))
    assert model.count_params() == 26 + 4
    assert model.layers[2].output_shape == (None, 1, 1, 1)
    rng = np.random.default_rng(2)
    x, y = edge_images(1200, pixel, rng)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    yc = faltung.utils.to_categorical(y, 2)
    model.fit(x[:1000], yc[:1000], batch_size=32, epochs=25, verbose=0)
    _, acc = model.evaluate(x[1000:], yc[1000:], verbose=0)
    assert acc > 0.9


@pytest.fixture(scope="module")
def fashion_subset():
    try:
        (x, y), (xt, yt) = faltung.datasets.fashion_mnist.load_data()
    except (FileNotFoundError, RuntimeError) as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    return (x[:3000, ..., None].astype(np.float32) / 255, y[:3000],
            xt[:1000, ..., None].astype(np.float32) / 255, yt[:1000])


def test_lenet5_style_learns_fashion_mnist(fashion_subset):
    x, y, xt, yt = fashion_subset
    faltung.utils.set_random_seed(3)
    model = faltung.Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(6, 5, padding="same", activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Conv2D(16, 5, activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(120, activation="tanh"),
        layers.Dense(84, activation="tanh"),
        layers.Dense(10, activation="softmax"),
    ])
    assert [l.output_shape for l in model.layers[:4]] == [
        (None, 28, 28, 6), (None, 14, 14, 6), (None, 10, 10, 16), (None, 5, 5, 16)]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    _, acc = model.evaluate(xt, yt, verbose=0)
    assert acc > 0.72


def test_encoder_decoder_trains(fashion_subset):
    x, _, xt, _ = fashion_subset
    faltung.utils.set_random_seed(4)
    model = faltung.Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),   # 14x14
        layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),   # 7x7
        layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),  # 14x14
        layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid"),  # 28x28
    ])
    assert model.output_shape == (None, 28, 28, 1)
    model.compile(optimizer="adam", loss="mse")
    before = model.evaluate(xt, xt, verbose=0)
    model.fit(x, x, batch_size=32, epochs=2, verbose=0)
    after = model.evaluate(xt, xt, verbose=0)
    assert after < 0.5 * before
