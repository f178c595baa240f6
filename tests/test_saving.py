"""save_weights/load_weights (.weights.h5, Keras 3 layout), save/load_model (.keras zip),
atomic writes, missing h5py."""
import json
import os
import sys
import zipfile

import numpy as np
import pytest

import faltung
from faltung import backend, optimizers
from faltung.layers import Dense, Input
from faltung.models import Model, Sequential, load_model
from faltung.utils import set_random_seed

h5py = pytest.importorskip("h5py")


@pytest.fixture(autouse=True)
def _fresh():
    backend.clear_session()
    set_random_seed(0)


def mlp():
    return Sequential([Input((4,)), Dense(6, activation="relu"), Dense(3, activation="softmax")])


def xs(n=20):
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


def test_weights_h5_layout_is_keras3(tmp_path):
    m = mlp()
    path = str(tmp_path / "m.weights.h5")
    m.save_weights(path)
    with h5py.File(path, "r") as f:
        names = []
        f.visit(names.append)
        assert np.array_equal(f["layers/dense/vars/0"][()], m.layers[0].kernel.value)
        assert np.array_equal(f["layers/dense/vars/1"][()], m.layers[0].bias.value)
        assert f["layers/dense_1/vars/0"].shape == (6, 3)
    assert {"vars", "layers/dense/vars", "layers/dense_1/vars/1"} <= set(names)
    assert os.listdir(tmp_path) == ["m.weights.h5"]  # no temp file left


def test_save_load_weights_roundtrip(tmp_path):
    a, b = mlp(), mlp()
    assert not np.array_equal(a.predict(xs(), verbose=0), b.predict(xs(), verbose=0))
    a.save_weights(tmp_path / "a.weights.h5")
    b.load_weights(tmp_path / "a.weights.h5")
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))
    assert np.array_equal(a.predict(xs(), verbose=0), b.predict(xs(), verbose=0))


def test_weight_file_errors(tmp_path):
    m = mlp()
    with pytest.raises(ValueError, match="must end in `.weights.h5`"):
        m.save_weights(tmp_path / "m.h5")
    m.save_weights(tmp_path / "m.weights.h5")
    other = Sequential([Input((4,)), Dense(5), Dense(3)])
    with pytest.raises(ValueError, match=r"weight shape \(4, 5\) is not compatible with provided "
                                         r"weight shape \(4, 6\)"):
        other.load_weights(tmp_path / "m.weights.h5")
    with pytest.raises(FileExistsError):
        m.save_weights(tmp_path / "m.weights.h5", overwrite=False)


def test_keras_file_roundtrip_sequential(tmp_path):
    m = mlp()
    m.compile(optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    y = np.arange(20) % 3
    m.fit(xs(), y, epochs=2, verbose=0)
    path = str(tmp_path / "m.keras")
    m.save(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        cfg = json.loads(zf.read("config.json"))
        meta = json.loads(zf.read("metadata.json"))
    assert cfg["class_name"] == "Sequential" and "keras_version" in meta
    assert [l["class_name"] for l in cfg["config"]["layers"]] == ["InputLayer", "Dense", "Dense"]
    assert cfg["config"]["layers"][1]["config"]["units"] == 6
    m2 = load_model(path)
    assert isinstance(m2, Sequential) and [l.name for l in m2.layers] == ["dense", "dense_1"]
    assert np.array_equal(m2.predict(xs(), verbose=0), m.predict(xs(), verbose=0))
    assert m2.compiled and m2.optimizer.learning_rate == pytest.approx(0.01)
    assert m2.metrics_names == ["loss", "accuracy"]
    m2.fit(xs(), y, epochs=1, verbose=0)  # usable for training right away
    assert faltung.saving.load_model is load_model


def test_keras_file_roundtrip_functional(tmp_path):
    inp = Input((4,))
    out = Dense(2)(Dense(5, activation="tanh")(inp))
    m = Model(inp, out, name="net")
    m.save(tmp_path / "f.keras")
    m2 = load_model(tmp_path / "f.keras")
    assert type(m2).__name__ == "Functional" and m2.name == "net" and not m2.compiled
    assert np.array_equal(m2.predict(xs(), verbose=0), m.predict(xs(), verbose=0))
    b = Model(inp2 := Input((4,)), Dense(2)(Dense(5, activation="tanh")(inp2)))
    b.load_weights(tmp_path / "f.keras")  # weights straight from a .keras archive
    assert np.array_equal(b.predict(xs(), verbose=0), m.predict(xs(), verbose=0))


def test_unknown_class_and_bad_extension(tmp_path):
    m = mlp()
    m.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(files["config.json"])
    cfg["config"]["layers"][1]["class_name"] = "FancyLayer"
    files["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as zf:
        for n, b in files.items():
            zf.writestr(n, b)
    with pytest.raises(ValueError, match="Could not locate class 'FancyLayer'"):
        load_model(tmp_path / "bad.keras")
    with pytest.raises(ValueError, match="Invalid filepath extension for saving"):
        m.save(tmp_path / "m.h5")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.keras")


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    m = mlp()
    path = tmp_path / "m.weights.h5"
    m.save_weights(path)
    before = path.read_bytes()
    m.layers[0].kernel.value += 1.0

    def boom(self, *a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(OSError, match="disk full"):
        m.save_weights(path)
    with pytest.raises(OSError, match="disk full"):
        m.save(tmp_path / "m.keras")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.weights.h5"]


def test_missing_h5py_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        mlp().save_weights(tmp_path / "m.weights.h5")
    assert os.listdir(tmp_path) == []


def test_optimizer_state_is_restored_so_training_resumes_identically(tmp_path):
    m = mlp()
    m.compile(optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy")
    x, y = xs(), np.arange(20) % 3
    m.fit(x, y, epochs=2, batch_size=5, verbose=0)
    m.save(tmp_path / "m.keras")
    m2 = load_model(tmp_path / "m.keras")
    assert m2.optimizer.iterations == m.optimizer.iterations == 8
    m.train_on_batch(x, y)
    m2.train_on_batch(x, y)
    assert all(np.allclose(a, b, atol=1e-7) for a, b in zip(m.get_weights(), m2.get_weights()))
    out = []
    m.summary(print_fn=out.append)
    n = m.count_params()
    assert f" Optimizer params: {2 * n + 1:,} " in out[0]  # iterations + Adam's m and v
    assert f" Total params: {3 * n + 1:,} " in out[0]


def test_json_and_clone_model():
    from faltung.models import clone_model, model_from_json
    m = mlp()
    m2 = model_from_json(m.to_json())
    c = clone_model(m)
    for other in (m2, c):
        assert [l.name for l in other.layers] == [l.name for l in m.layers]
        assert [w.shape for w in other.get_weights()] == [w.shape for w in m.get_weights()]
        assert other.layers[0].kernel is not m.layers[0].kernel
    assert not np.array_equal(c.get_weights()[0], m.get_weights()[0])  # fresh initialization


def test_reads_keras3_style_config_keys():
    from faltung.models.saving import deserialize_layer
    cfg = {"module": "keras", "class_name": "Sequential", "config": {
        "name": "sequential", "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}},
        "layers": [
            {"module": "keras.layers", "class_name": "InputLayer",
             "config": {"batch_shape": [None, 8], "dtype": "float32", "sparse": False,
                        "ragged": False, "name": "input_layer"}},
            {"module": "keras.layers", "class_name": "Dense",
             "config": {"name": "dense", "trainable": True, "dtype": {
                 "module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}},
                 "units": 3, "activation": "relu", "use_bias": True,
                 "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                        "config": {"seed": None}, "registered_name": None},
                 "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                                      "config": {}, "registered_name": None},
                 "kernel_regularizer": None, "bias_regularizer": None,
                 "kernel_constraint": None, "bias_constraint": None, "lora_rank": None},
             "build_config": {"input_shape": [None, 8]}}]}}
    m = deserialize_layer(cfg)
    assert isinstance(m, Sequential) and m.output_shape == (None, 3)
    assert m.layers[0].kernel.shape == (8, 3)


def test_subclassed_model_weights_use_attribute_paths(tmp_path):
    class Net(Model):
        def __init__(self):
            super().__init__()
            self.body = [Dense(5, activation="relu"), Dense(4, activation="relu")]
            self.head = Dense(2)

        def call(self, x, training=False):
            return self.head(self.body[1](self.body[0](x)))

    a, b = Net(), Net()
    x = xs()
    ya = a.predict(x, verbose=0)
    b.predict(x, verbose=0)
    a.save_weights(tmp_path / "n.weights.h5")
    with h5py.File(tmp_path / "n.weights.h5", "r") as f:
        assert f["head/vars/0"].shape == (4, 2) and f["body/dense_1/vars/0"].shape == (5, 4)
    b.load_weights(tmp_path / "n.weights.h5")
    assert np.array_equal(b.predict(x, verbose=0), ya)


def test_sequential_weights_have_no_input_layer_group(tmp_path):
    mlp().save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "r") as f:
        assert sorted(f["layers"]) == ["dense", "dense_1"]


def test_nested_model_roundtrip(tmp_path):
    inner = Sequential([Input((4,)), Dense(5, activation="relu")], name="inner")
    m = Sequential([Input((4,)), inner, Dense(2)])
    m.save(tmp_path / "n.keras")
    with zipfile.ZipFile(tmp_path / "n.keras") as zf, zf.open("model.weights.h5") as fh:
        import io
        with h5py.File(io.BytesIO(fh.read()), "r") as f:
            assert f["layers/sequential/layers/dense/vars/0"].shape == (4, 5)
            assert f["layers/dense/vars/0"].shape == (5, 2)
    m2 = load_model(tmp_path / "n.keras")
    assert m2.layers[0].name == "inner" and isinstance(m2.layers[0], Sequential)
    assert np.array_equal(m2.predict(xs(), verbose=0), m.predict(xs(), verbose=0))
