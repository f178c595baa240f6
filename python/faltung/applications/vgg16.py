"""VGG16 (Simonyan & Zisserman, 2014) with Keras's layer names, topology and argument checks,
so `model.summary()`, `get_layer("block3_conv2")` and feature-map models read as in Keras.

No weights are bundled and nothing is downloaded: `weights="imagenet"` raises an error that
says how to load a local weights file (Keras's `vgg16_weights_tf_dim_ordering_tf_kernels.h5`
or a `.weights.h5` file saved by Keras 3 or faltung) with `weights=<path>`.
"""
import os

import numpy as np

from faltung import layers
from faltung.models.functional import Functional

_IMAGENET_HINT = (
    "faltung bundles no pretrained weights and does not download any. Download Keras's file "
    "(https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5, or ..._notop.h5 for include_top=False) on a "
    "machine with internet access and pass its path: VGG16(weights='/path/to/file.h5'). A "
    "`.weights.h5` file saved by Keras 3 or faltung for the same architecture works too; "
    "weights=None gives a randomly initialized model.")


def _input_shape(input_shape, include_top, weights, default=224, min_size=32):
    """Keras's imagenet_utils.obtain_input_shape for channels_last."""
    if weights != "imagenet" and input_shape and len(input_shape) == 3:
        default_shape = (default, default, input_shape[-1])
    else:
        default_shape = (default, default, 3)
    if weights == "imagenet" and include_top:
        if input_shape is not None and tuple(input_shape) != default_shape:
            raise ValueError("When setting `include_top=True` and loading `imagenet` weights, "
                             f"`input_shape` should be {default_shape}.  Received: "
                             f"input_shape={tuple(input_shape)}")
        return default_shape
    if input_shape:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError("`input_shape` must be a tuple of three integers.")
        if input_shape[-1] != 3 and weights == "imagenet":
            raise ValueError(f"The input must have 3 channels; Received `input_shape={input_shape}`")
        if any(s is not None and s < min_size for s in input_shape[:2]):
            raise ValueError(f"Input size must be at least {min_size}x{min_size}; Received: "
                             f"input_shape={input_shape}")
    else:
        input_shape = default_shape if include_top else (None, None, 3)
    if include_top and None in input_shape:
        raise ValueError("If `include_top` is True, you should specify a static `input_shape`. "
                         f"Received: input_shape={input_shape}")
    return input_shape


def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg16"):
    """Keras's `keras.applications.VGG16`.

    Args:
        include_top: whether to include the 3 fully-connected layers at the top.
        weights: None (random initialization), "imagenet" (not available offline: raises a
            ValueError saying how to load a local file), or the path to a weights file
            (Keras's legacy `.h5` or a Keras 3 `.weights.h5`).
        input_tensor: optional `Input(...)` tensor to use as image input.
        input_shape: (height, width, channels), only when include_top is False (else it
            must be (224, 224, 3)); height and width at least 32.
        pooling: for include_top=False: None (4-D output of the last block), "avg" or "max"
            (global pooling to a 2-D output).
        classes: number of classes when include_top is True.
        classifier_activation: activation of the "predictions" layer.
        name: model name.

    Returns: a functional `Model` (138,357,544 parameters with the top and 1000 classes).
    """
    if not (weights in ("imagenet", None) or (isinstance(weights, (str, os.PathLike))
                                               and os.path.exists(weights))):
        raise ValueError("The `weights` argument should be either `None` (random "
                         "initialization), 'imagenet' (pre-training on ImageNet), or the path "
                         f"to the weights file to be loaded.  Received: weights={weights}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError("If using `weights='imagenet'` with `include_top=True`, `classes` "
                         f"should be 1000.  Received classes={classes}")
    if weights == "imagenet":
        raise ValueError("VGG16(weights='imagenet'): " + _IMAGENET_HINT)
    shape = _input_shape(input_shape, include_top, weights)
    img_input = layers.Input(shape=shape) if input_tensor is None else input_tensor
    x = img_input
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same",
                              name=f"block{block}_conv{i}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D()(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D()(x)
    model = Functional(img_input, x, name=name)
    if weights is not None:
        model.load_weights(os.fspath(weights))
    return model


def preprocess_input(x, data_format=None):
    """Keras's VGG16 preprocessing ("caffe" mode): RGB -> BGR, then the ImageNet channel
    means (103.939, 116.779, 123.68) subtracted; no scaling. Returns a new float32 array."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess_input: expected 3 channels last, received shape {x.shape}")
    return x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
