"""Keras's `keras.applications`: reference architectures with Keras's layer names."""
from faltung.applications.vgg16 import VGG16

__all__ = ["VGG16"]
