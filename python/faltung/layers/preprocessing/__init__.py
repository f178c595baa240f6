"""Keras 3's preprocessing layers for images: random augmentation active only in training
(RandomFlip, RandomTranslation, RandomRotation, RandomZoom, RandomCrop, RandomContrast,
RandomBrightness) and Rescaling, Normalization, Resizing, which always apply."""
from faltung.layers.preprocessing.normalization import Normalization
from faltung.layers.preprocessing.random_affine import RandomRotation, RandomTranslation, RandomZoom
from faltung.layers.preprocessing.random_color import RandomBrightness, RandomContrast
from faltung.layers.preprocessing.random_crop import RandomCrop
from faltung.layers.preprocessing.random_flip import RandomFlip
from faltung.layers.preprocessing.rescaling import Rescaling
from faltung.layers.preprocessing.resizing import Resizing

__all__ = ["Normalization", "RandomBrightness", "RandomContrast", "RandomCrop", "RandomFlip",
           "RandomRotation", "RandomTranslation", "RandomZoom", "Rescaling", "Resizing"]
