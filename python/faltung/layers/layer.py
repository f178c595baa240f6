"""The brick every layer is: `build` creates weights, `forward` computes (and caches what
`backward` needs when `training=True`), `backward` turns dL/dy into dL/dx and stores the
weight gradients in each `Variable.grad`.

Keras has no `backward`; it is faltung's addition (the seeds' "Lego" bricks), which is why
faltung needs no autograd tape.
"""
import numpy as np

from faltung import backend


class Variable:
    """A weight: `value` (float32 ndarray), `grad` (set by the owning layer's backward),
    `trainable`. Mirrors the parts of `keras.Variable` that models use."""

    def __init__(self, value, name, trainable=True, regularizer=None, constraint=None):
        self.value = np.ascontiguousarray(value, dtype=np.float32)
        self.grad = None
        self.name = name
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    path = property(lambda self: self.name)

    def numpy(self):
        return self.value

    def assign(self, value):
        value = np.asarray(value, dtype=np.float32)
        if value.shape != self.value.shape:
            raise ValueError(f"Variable `{self.name}`: expected a value of shape {self.value.shape}, "
                             f"received shape {value.shape}")
        self.value[...] = value

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.name}, shape={self.shape}, dtype=float32>"


class Layer:
    """Base class of all layers.

    Args:
        name: layer name; default is the snake-cased class name made unique (`dense_1`).
        trainable: whether `fit` updates the weights.
        input_shape: Keras-2 style shape of one sample (without batch) given to the first
            layer of a `Sequential`. `batch_input_shape`/`input_dim` are accepted too.
    """

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None,
                 batch_input_shape=None, input_dim=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unrecognized keyword argument(s) "
                            f"{sorted(kwargs)}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"{type(self).__name__}: only dtype='float32' is supported, received dtype={dtype}")
        self.name = name or backend.unique_name(backend.to_snake_case(type(self).__name__))
        self.trainable = trainable
        self.built = False
        self._weights = []
        self.input_shape_arg = None  # (None, *sample_shape) when given at construction
        if batch_input_shape is not None:
            self.input_shape_arg = tuple(batch_input_shape)
        elif input_shape is not None:
            self.input_shape_arg = (None,) + tuple(input_shape)
        elif input_dim is not None:
            self.input_shape_arg = (None, int(input_dim))
        self.input_shape = None   # set by build
        self.output_shape = None  # set by build

    # -- weights ---------------------------------------------------------------------
    def add_weight(self, shape, initializer="zeros", name=None, trainable=True,
                   regularizer=None, constraint=None):
        from faltung import initializers
        shape = tuple(int(s) for s in shape)
        value = initializers.get(initializer)(shape)
        v = Variable(value, f"{self.name}/{name}", trainable, regularizer, constraint)
        self._weights.append(v)
        return v

    @property
    def weights(self):
        return list(self._weights)

    @property
    def trainable_weights(self):
        return [w for w in self._weights if w.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self):
        return [w for w in self._weights if not (w.trainable and self.trainable)]

    # Keras aliases
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights
    variables = weights

    def get_weights(self):
        return [w.value.copy() for w in self._weights]

    def set_weights(self, weights):
        if len(weights) != len(self._weights):
            raise ValueError(f"Layer {self.name}: expected a list of {len(self._weights)} weights, "
                             f"received {len(weights)}")
        for v, w in zip(self._weights, weights):
            w = np.asarray(w)
            if w.shape != v.shape:
                raise ValueError(f"Layer {self.name} weight shape {v.shape} is not compatible with "
                                 f"provided weight shape {w.shape}")
            v.value[...] = w

    def count_params(self):
        return int(sum(int(np.prod(w.shape)) for w in self._weights))

    # -- shape logic -----------------------------------------------------------------
    def build(self, input_shape):
        """Create weights for `input_shape` (with None for the batch). Subclasses call
        super().build(input_shape) at the end."""
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def check_input(self, x, min_rank=None, rank=None):
        """Compares x with the built input shape; ValueError names layer, expected and
        received shape (as Keras's input_spec check)."""
        exp = self.input_shape
        if exp is None:
            return
        if x.ndim != len(exp) or any(e is not None and e != s for e, s in zip(exp[1:], x.shape[1:])):
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: '
                             f"expected shape={exp}, found shape={tuple(x.shape)}")

    # -- computation -----------------------------------------------------------------
    def forward(self, x, training=False):
        """y = layer(x). With training=True, cache what backward needs."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy, need_dx=True):
        """dL/dy -> dL/dx (None if not need_dx); sets `grad` of this layer's weights.
        Uses what the last forward(training=True) cached."""
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def release_cache(self):
        """Drop what the last forward(training=True) kept for backward (faltung addition).
        Models call it right after a layer's backward, so a training step frees each layer's
        saved activations as the backward pass leaves it instead of at the next forward:
        the step's peak memory then holds the early layers' activations only."""
        self._cache = None

    def call(self, x, training=False):
        return self.forward(x, training=training)

    def __call__(self, x, training=False):
        from faltung.layers.input_layer import KerasTensor
        if isinstance(x, KerasTensor):  # symbolic call (functional API): shapes only
            if not self.built:
                self.build(x.shape)
            return KerasTensor(self.compute_output_shape(x.shape), source=(self, x))
        x = backend.as_float_array(x, f"{self.name} input")
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))
        return self.forward(x, training=training)

    # -- config ----------------------------------------------------------------------
    def get_config(self):
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        return cfg

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
