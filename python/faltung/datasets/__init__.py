"""Dataset loaders with Keras's `load_data()` interface (no pickle anywhere)."""
from faltung.datasets import cifar10, fashion_mnist, mnist

__all__ = ["mnist", "fashion_mnist", "cifar10"]
