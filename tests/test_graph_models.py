"""The seeds' graph-shaped networks, built with the functional API and trained on real data
(Fashion-MNIST from Debian's dataset-fashion-mnist): an Inception block (1x1, 3x3 and 5x5
branches with 1x1 bottlenecks and a pooled branch, concatenated), a DenseNet block (every
layer sees the concatenation of all earlier feature maps) and a small U-Net (Conv2DTranspose
upsampling joined with skip connections) segmenting the garments from the background."""
import numpy as np
import pytest

import faltung
from faltung import layers as L


@pytest.fixture(scope="module")
def fashion():
    try:
        (x, y), (xt, yt) = faltung.datasets.fashion_mnist.load_data()
    except (FileNotFoundError, RuntimeError) as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    return (x[:2000, ..., None].astype(np.float32) / 255, y[:2000],
            xt[:500, ..., None].astype(np.float32) / 255, yt[:500])


def inception_block(x, f1, f3r, f3, f5r, f5, fp):
    """GoogLeNet's module: four branches concatenated on the channel axis."""
    b1 = L.Conv2D(f1, 1, padding="same", activation="relu")(x)
    b3 = L.Conv2D(f3r, 1, padding="same", activation="relu")(x)
    b3 = L.Conv2D(f3, 3, padding="same", activation="relu")(b3)
    b5 = L.Conv2D(f5r, 1, padding="same", activation="relu")(x)
    b5 = L.Conv2D(f5, 5, padding="same", activation="relu")(b5)
    bp = L.MaxPooling2D(3, strides=1, padding="same")(x)
    bp = L.Conv2D(fp, 1, padding="same", activation="relu")(bp)
    return L.Concatenate()([b1, b3, b5, bp])


def dense_block(x, layers, growth):
    """DenseNet: each BN-ReLU-Conv3x3 layer reads the concatenation of all earlier maps."""
    for _ in range(layers):
        h = L.BatchNormalization()(x)
        h = L.Activation("relu")(h)
        h = L.Conv2D(growth, 3, padding="same")(h)
        x = L.Concatenate()([x, h])
    return x


def _classifier(body):
    inp = L.Input((28, 28, 1))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D()(x)                                   # 14x14
    x = body(x)
    x = L.Flatten()(L.MaxPooling2D()(x))                      # 7x7
    return faltung.Model(inp, L.Dense(10, activation="softmax")(x))


def _train_and_check(model, fashion, epochs, min_acc):
    x, y, xt, yt = fashion
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(xt, yt, verbose=0)[0]
    hist = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    loss, acc = model.evaluate(xt, yt, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] and loss < 0.7 * before
    assert acc > min_acc


def test_inception_block_trains_on_fashion_mnist(fashion):
    faltung.utils.set_random_seed(1)
    model = _classifier(lambda x: inception_block(x, 8, 8, 12, 4, 6, 6))
    cat = next(l for l in model.layers if isinstance(l, L.Concatenate))
    assert cat.output.shape == (None, 14, 14, 8 + 12 + 6 + 6)
    assert len(cat.input) == 4
    _train_and_check(model, fashion, epochs=3, min_acc=0.6)


def test_dense_block_trains_on_fashion_mnist(fashion):
    faltung.utils.set_random_seed(2)
    model = _classifier(lambda x: dense_block(x, 3, 8))
    cats = [l for l in model.layers if isinstance(l, L.Concatenate)]
    assert [c.output.shape[-1] for c in cats] == [24, 32, 40]
    _train_and_check(model, fashion, epochs=3, min_acc=0.6)


def test_unet_segments_fashion_mnist(fashion):
    """Foreground (pixel > 0.1) segmentation: sigmoid per pixel, binary cross-entropy."""
    x, _, xt, _ = fashion
    m, mt = (x > 0.1).astype(np.float32), (xt > 0.1).astype(np.float32)
    faltung.utils.set_random_seed(3)
    inp = L.Input((28, 28, 1))
    c1 = L.Conv2D(8, 3, padding="same", activation="relu")(inp)        # 28x28x8
    p1 = L.MaxPooling2D()(c1)                                          # 14x14
    c2 = L.Conv2D(16, 3, padding="same", activation="relu")(p1)        # 14x14x16
    p2 = L.MaxPooling2D()(c2)                                          # 7x7
    b = L.Conv2D(32, 3, padding="same", activation="relu")(p2)         # 7x7x32
    u2 = L.Conv2DTranspose(16, 2, strides=2)(b)                        # 14x14x16
    d2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.Concatenate()([u2, c2]))
    u1 = L.Conv2DTranspose(8, 2, strides=2)(d2)                        # 28x28x8
    d1 = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([u1, c1]))
    out = L.Conv2D(1, 1, activation="sigmoid")(d1)
    model = faltung.Model(inp, out)
    assert model.output_shape == (None, 28, 28, 1)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["binary_accuracy"])
    before = model.evaluate(xt, mt, verbose=0)[0]
    hist = model.fit(x, m, batch_size=32, epochs=2, verbose=0)
    loss, acc = model.evaluate(xt, mt, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] and loss < 0.5 * before
    assert acc > 0.9
