"""Convolution layers (Keras's `layers/convolutional` group)."""
from faltung.layers.convolutional.conv_transpose import (  # noqa: F401
    Conv1DTranspose, Conv2DTranspose, Convolution1DTranspose, Convolution2DTranspose)
