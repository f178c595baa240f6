"""faltung.applications.VGG16 against Keras's definition: names, topology, parameter count,
argument checks, and loading a local weights file in Keras's legacy HDF5 layout."""
import numpy as np
import pytest

import faltung
from faltung.applications import VGG16
from faltung.applications.vgg16 import preprocess_input


def test_vgg16_with_top_has_keras_names_and_parameter_count():
    model = VGG16(weights=None)
    assert model.name == "vgg16" and model.count_params() == 138_357_544
    names = [l.name for l in model.layers]
    assert names[:4] == ["input_layer", "block1_conv1", "block1_conv2", "block1_pool"]
    assert names[-5:] == ["block5_pool", "flatten", "fc1", "fc2", "predictions"]
    assert len(names) == 23 and model.output_shape == (None, 1000)
    assert model.get_layer("block3_conv3").kernel.shape == (3, 3, 256, 256)


def test_vgg16_without_top_pooling_and_feature_maps():
    model = VGG16(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    assert model.count_params() == 14_714_688 and model.output_shape == (None, 512)
    assert type(model.layers[-1]).__name__ == "GlobalAveragePooling2D"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    feats = faltung.Model(inputs=model.inputs,
                          outputs=[l.output for l in model.layers[1:4]])
    c1, c2, p1 = feats.predict(preprocess_input(x), verbose=0)
    assert c1.shape == (2, 32, 32, 64) and p1.shape == (2, 16, 16, 64)
    assert np.array_equal(p1, np.maximum.reduce([c2[:, i::2, j::2] for i in (0, 1) for j in (0, 1)]))
    assert VGG16(include_top=False, weights=None).output_shape == (None, None, None, 512)
    assert VGG16(include_top=False, weights=None, pooling="max").output_shape == (None, 512)


def test_vgg16_argument_errors_as_keras():
    with pytest.raises(ValueError, match="bundles no pretrained weights.*weights='/path/to"):
        VGG16()
    with pytest.raises(ValueError, match="`classes` should be 1000"):
        VGG16(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="should be either `None`"):
        VGG16(weights="/no/such/file.h5")
    with pytest.raises(ValueError, match="at least 32x32"):
        VGG16(include_top=False, weights=None, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="static `input_shape`"):
        VGG16(include_top=True, weights=None, input_shape=(None, None, 3))


def test_vgg16_loads_a_local_legacy_h5_weights_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    src = VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:  # Keras 2's layout: layer_names / weight_names attributes
        f.attrs["layer_names"] = [l.name.encode() for l in src.layers]
        for layer in src.layers:
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name.split('/')[-1]}:0".encode() for w in layer.weights]
            g.attrs["weight_names"] = names
            for n, w in zip(names, layer.weights):
                g.create_dataset(n.decode(), data=w.value)
    model = VGG16(include_top=False, weights=path, input_shape=(32, 32, 3))
    for a, b in zip(src.get_weights(), model.get_weights()):
        assert np.array_equal(a, b)
    small = faltung.Sequential([faltung.Input((8, 8, 3)), faltung.layers.Conv2D(64, 3)])
    with pytest.raises(ValueError, match="Layer count mismatch"):
        small.load_weights(path)


def test_preprocess_input_is_caffe_mode():
    x = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    assert np.allclose(preprocess_input(x), [[[[30 - 103.939, 20 - 116.779, 10 - 123.68]]]])
