"""plot_history, plot_feature_maps (matplotlib, Agg backend: the files are written and hold
one panel per quantity / channel) and the text plot_model."""
import numpy as np
import pytest

import faltung
from faltung import layers as L
from faltung.utils import plot_feature_maps, plot_history, plot_model

PNG = b"\x89PNG\r\n\x1a\n"


def _model():
    inp = L.Input((8, 8, 1), name="image")
    a = L.Conv2D(3, 3, padding="same", name="conv_a")(inp)
    b = L.Conv2D(3, 1, name="conv_b")(inp)
    merged = L.Add(name="add")([a, b])
    out = L.Dense(2, activation="softmax", name="head")(L.Flatten(name="flat")(merged))
    return faltung.Model(inp, out, name="two_branches")


def test_plot_model_text_lists_layers_with_their_inbound_layers(tmp_path):
    text = plot_model(_model(), to_file=str(tmp_path / "graph.txt"), show_shapes=True)
    lines = text.splitlines()
    assert lines[0] == 'Model: "two_branches"'
    add = next(line for line in lines if line.startswith("add (Add)"))
    assert "(None, 8, 8, 3)" in add and add.endswith("<- conv_a[0][0], conv_b[0][0]")
    assert next(line for line in lines if line.startswith("head (Dense)")).endswith("<- flat[0][0]")
    assert (tmp_path / "graph.txt").read_text() == text


def test_plot_model_sequential_chain():
    model = faltung.Sequential([L.Input((4,)), L.Dense(3, name="d1"), L.Dense(2, name="d2")],
                               name="chain")
    lines = plot_model(model, to_file=None, show_trainable=True).splitlines()
    assert lines[1].split() == ["d1", "(Dense)", "trainable"]
    assert lines[2].endswith("<- d1")
    with pytest.raises(TypeError, match="unrecognized keyword"):
        plot_model(model, to_file=None, colour=True)


def test_missing_matplotlib_raises_a_clear_import_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"plot_history needs matplotlib.*faltung\[plot\]"):
        plot_history({"loss": [1.0, 0.5]})
    with pytest.raises(ImportError, match="plot_feature_maps needs matplotlib"):
        plot_feature_maps(np.zeros((4, 4, 2)))


def test_plot_history_errors():
    with pytest.raises(ValueError, match="expected a History"):
        plot_history({})
    with pytest.raises(ValueError, match="unknown keys"):
        plot_history({"loss": [1.0]}, keys=["accuracy"])


@pytest.fixture
def plt():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    yield plt
    plt.close("all")


def test_plot_history_writes_one_panel_per_quantity(plt, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8, 8, 1)).astype(np.float32), rng.integers(0, 2, 32)
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0)
    fig = plot_history(history, path=str(tmp_path / "history.png"))
    assert (tmp_path / "history.png").read_bytes()[:8] == PNG
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["loss", "accuracy"]
    loss_ax = fig.axes[titles.index("loss")]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train", "validation"]
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), history.history["val_loss"])


def test_plot_feature_maps_from_a_model_layer(plt, tmp_path):
    model = _model()
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype(np.float32)
    fig = plot_feature_maps(model, x, layer="conv_a", path=str(tmp_path / "maps.png"), cols=2)
    assert (tmp_path / "maps.png").read_bytes()[:8] == PNG
    images = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert len(images) == 3  # one per channel
    probe = faltung.Model(model.inputs, model.get_layer("conv_a").output)
    np.testing.assert_allclose(images[2], probe.predict(x, verbose=0)[0, ..., 2], rtol=1e-6)


def test_plot_feature_maps_from_activations(plt, tmp_path):
    maps = np.arange(5 * 5 * 40, dtype=np.float32).reshape(5, 5, 40)
    fig = plot_feature_maps(maps, max_maps=10, cols=4)
    assert sum(1 for ax in fig.axes if ax.get_images()) == 10
    with pytest.raises(ValueError, match=r"Received \(5, 40\)"):
        plot_feature_maps(maps[0])
    with pytest.raises(ValueError, match="outside the batch"):
        plot_feature_maps(maps[None], sample=3)


def test_plot_model_image(plt, tmp_path):
    plot_model(_model(), to_file=str(tmp_path / "model.png"))
    assert (tmp_path / "model.png").read_bytes()[:8] == PNG
