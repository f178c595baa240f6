"""Keras-mirroring layers, grouped as Keras groups them."""
from faltung.layers.layer import Layer, Variable
from faltung.layers.input_layer import Input, InputLayer, KerasTensor
from faltung.layers.core import *  # noqa: F401,F403
from faltung.layers.activations.relu import ELU, LeakyReLU, ReLU, Softmax
from faltung.layers.activations.prelu import PReLU
from faltung.layers.regularization.dropout import Dropout
from faltung.layers.reshaping.flatten import Flatten
from faltung.layers.reshaping.reshape import Reshape
