"""Keras-mirroring layers, grouped as Keras groups them."""
from faltung.layers.layer import Layer, Variable
from faltung.layers.input_layer import Input, InputLayer, KerasTensor
from faltung.layers.core import *  # noqa: F401,F403
from faltung.layers.convolutional import *  # noqa: F401,F403
