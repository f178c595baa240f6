"""Data preprocessing (Keras: keras.preprocessing): `image.ImageDataGenerator`."""
from faltung.preprocessing import image  # noqa: F401
