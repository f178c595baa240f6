"""`Input` and the symbolic tensor it returns."""
from faltung.layers.layer import Layer
from faltung.layers.node import KerasTensor, Node

_DTYPES = {None: "float32", "float32": "float32", "float": "float32", "int32": "int32",
           "int64": "int32", "int": "int32", "bool": "int32"}


class InputLayer(Layer):
    """Placeholder layer at the start of a model; `Input(shape)` returns its tensor.

    `dtype` "float32" (default) or an integer/bool type: integer inputs (token ids for an
    `Embedding`) are fed to the model as int32 and get no gradient.
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None,
                 sparse=False, ragged=False, **kwargs):
        if shape is None and batch_shape is None:
            raise ValueError("InputLayer: you must pass a `shape` argument, received shape=None")
        if sparse or ragged:
            raise ValueError("InputLayer: faltung has no sparse or ragged tensors; received "
                             f"sparse={sparse}, ragged={ragged}")
        dtype = getattr(dtype, "__name__", dtype)
        if dtype not in _DTYPES:
            raise ValueError(f"InputLayer: unsupported dtype={dtype}; expected float32 or an "
                             "integer type (int32, int64, bool)")
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
        self.input_dtype = _DTYPES[dtype]
        self.build(self.batch_shape)
        tensor = KerasTensor(self.batch_shape, self.input_dtype, name=self.name)
        Node(self, [], {}, tensor, is_input=True)

    def forward(self, x, training=False):
        return x

    def backward(self, dy, need_dx=True):
        return dy

    def get_config(self):
        return {"name": self.name, "batch_shape": self.batch_shape, "dtype": self.input_dtype,
                "sparse": False, "ragged": False}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None,
          name=None, tensor=None, optional=False):
    """Keras's `Input`: a symbolic tensor for a model's input (shape without the batch)."""
    if tensor is not None or optional:
        raise ValueError("Input: faltung does not support `tensor=` or `optional=True`.")
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name,
                      batch_shape=batch_shape, sparse=bool(sparse),
                      ragged=bool(ragged)).output
