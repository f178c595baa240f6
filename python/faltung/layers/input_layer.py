"""`Input` and the symbolic tensor it returns."""
from faltung.layers.layer import Layer


class KerasTensor:
    """A symbolic tensor: a shape with None for the batch, and the layer call that made it."""

    def __init__(self, shape, source=None, name=None):
        self.shape = tuple(shape)
        self.source = source  # (layer, input KerasTensor) or None for an Input
        self.name = name
        self.dtype = "float32"
        self.ndim = len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype=float32, name={self.name}>"


class InputLayer(Layer):
    """Placeholder layer at the start of a model; `Input(shape)` returns its tensor."""

    def __init__(self, shape=None, batch_size=None, name=None, batch_shape=None, **kwargs):
        if shape is None and batch_shape is None:
            raise ValueError("InputLayer: you must pass a `shape` argument, received shape=None")
        super().__init__(name=name, **kwargs)
        if batch_shape is None:
            if isinstance(shape, int):
                shape = (shape,)
            batch_shape = (batch_size,) + tuple(shape)
        for s in batch_shape[1:]:
            if s is not None and (not isinstance(s, int) or s <= 0):
                raise ValueError(f"InputLayer {self.name}: expected a shape of positive ints or None, "
                                 f"received shape={tuple(batch_shape[1:])}")
        self.batch_shape = tuple(batch_shape)
        self.build(self.batch_shape)
        self.output = KerasTensor(self.batch_shape, source=None, name=self.name)
        self.output.layer = self

    def forward(self, x, training=False):
        return x

    def backward(self, dy, need_dx=True):
        return dy

    def get_config(self):
        return {"name": self.name, "batch_shape": self.batch_shape, "dtype": "float32"}


def Input(shape=None, batch_size=None, name=None, batch_shape=None, dtype=None):
    """Keras's `Input`: a symbolic tensor for a model's input (shape without the batch)."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, batch_shape=batch_shape,
                      dtype=dtype).output
