"""Convolution layers (Keras's layers/convolutional group)."""
from faltung.layers.convolutional.conv1d import Conv1D, Convolution1D
from faltung.layers.convolutional.conv2d import Conv2D, Convolution2D
from faltung.layers.convolutional.depthwise_conv import DepthwiseConv1D, DepthwiseConv2D
from faltung.layers.convolutional.separable_conv import (SeparableConv1D, SeparableConv2D,
                                                         SeparableConvolution1D, SeparableConvolution2D)

__all__ = ["Conv1D", "Conv2D", "Convolution1D", "Convolution2D", "DepthwiseConv1D", "DepthwiseConv2D",
           "SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D",
           "Conv1DTranspose", "Conv2DTranspose", "Convolution1DTranspose", "Convolution2DTranspose"]
from faltung.layers.convolutional.conv_transpose import (  # noqa: F401
    Conv1DTranspose, Conv2DTranspose, Convolution1DTranspose, Convolution2DTranspose)
