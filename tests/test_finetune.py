"""Fine-tuning: `trainable = False` on layers or on a nested model, re-compile, train.
Frozen weights and frozen BatchNormalization's moving statistics stay exactly where they
were (a frozen BN runs in inference mode, as in Keras 3), the other weights move."""
import numpy as np

import faltung
from faltung import layers as L


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 2)).astype(np.float32), rng.integers(0, 3, n)


def _base():
    return faltung.Sequential([L.Input((8, 8, 2)), L.Conv2D(4, 3, name="conv"),
                               L.BatchNormalization(name="bn"), L.MaxPooling2D(2)], name="base")


def _snapshot(layer):
    return [w.copy() for w in layer.get_weights()]


def _moved(before, layer):
    return [not np.array_equal(b, a) for b, a in zip(before, layer.get_weights())]


def test_frozen_layers_do_not_move_while_the_head_trains():
    x, y = _data()
    model = faltung.Sequential(_base().layers + [L.Flatten(), L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # BN statistics away from 0 / 1
    conv, bn, dense = model.get_layer("conv"), model.get_layer("bn"), model.layers[-1]
    for layer in (conv, bn):
        layer.trainable = False
    model.compile(faltung.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    before = {layer.name: _snapshot(layer) for layer in (conv, bn, dense)}
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert _moved(before["conv"], conv) == [False, False]
    assert _moved(before["bn"], bn) == [False] * 4  # gamma, beta, moving mean and variance
    assert _moved(before[dense.name], dense) == [True, True]
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 6


def test_frozen_batch_norm_runs_in_inference_mode():
    x, _ = _data(6)
    bn = L.BatchNormalization()
    bn.build(x.shape)
    bn.moving_mean.value[...] = [0.5, -1.0]
    bn.moving_variance.value[...] = [4.0, 0.25]
    bn.trainable = False
    expected = (x - bn.moving_mean.value) / np.sqrt(bn.moving_variance.value + bn.epsilon)
    np.testing.assert_allclose(bn(x, training=True), expected, rtol=1e-5, atol=1e-5)


def test_freezing_a_nested_model_then_unfreezing():
    x, y = _data(seed=1)
    base = _base()
    inp = L.Input((8, 8, 2))
    model = faltung.Model(inp, L.Dense(3, activation="softmax")(L.Flatten()(base(inp))))
    base.trainable = False
    model.compile(faltung.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    conv, bn = base.get_layer("conv"), base.get_layer("bn")
    before_conv, before_bn = _snapshot(conv), _snapshot(bn)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert not any(_moved(before_conv, conv)) and not any(_moved(before_bn, bn))
    assert not conv.trainable and not bn.trainable  # Keras: a model's flag reaches its layers
    base.trainable = True
    model.compile(faltung.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert all(_moved(before_conv, conv)) and all(_moved(before_bn, bn))


def test_trainable_flag_survives_saving(tmp_path):
    model = faltung.Sequential([L.Input((8, 8, 2))] + _base().layers + [L.Flatten(), L.Dense(3)])
    model.get_layer("conv").trainable = False
    model.save(tmp_path / "m.keras")
    restored = faltung.models.load_model(tmp_path / "m.keras")
    assert [layer.trainable for layer in restored.layers] == [layer.trainable for layer in model.layers]
