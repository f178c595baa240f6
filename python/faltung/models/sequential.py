"""`Sequential`: a plain stack of layers, each with one input and one output."""
from faltung.layers.input_layer import InputLayer, KerasTensor
from faltung.layers.layer import Layer
from faltung.models.model import Model


class Sequential(Model):
    """A linear stack of layers (Keras's `keras.Sequential`).

    Args:
        layers: list of layers; the first may be `faltung.layers.Input(shape)` (or an
            `InputLayer`), or a layer given `input_shape=` (Keras 2 style).
        name: model name; default "sequential", "sequential_1", ...

    The model is built as soon as the input shape is known (so `summary()` works right after
    construction); otherwise on the first call / fit / predict. `model.layers` excludes the
    InputLayer, as in Keras.

    Example:
        >>> model = Sequential([Input((8,)), Dense(4, activation="relu"), Dense(1)])
        >>> model.output_shape
        (None, 1)
    """

    def __init__(self, layers=None, trainable=True, name=None):
        self._layers = []
        super().__init__(trainable=trainable, name=name)
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build()

    @property
    def layers(self):
        return [l for l in self._layers if not isinstance(l, InputLayer)]

    def _all_layers(self):
        return self.layers

    @property
    def input_layer(self):
        return self._layers[0] if self._layers and isinstance(self._layers[0], InputLayer) else None

    def add(self, layer, rebuild=True):
        """Append a layer (or an `Input(...)` tensor as first element)."""
        if isinstance(layer, KerasTensor) and getattr(layer, "layer", None) is not None:
            layer = layer.layer
        if not isinstance(layer, Layer):
            raise ValueError("Only instances of `keras.Layer` can be added to a Sequential "
                             f"model. Received: {layer} (of type {type(layer)})")
        if isinstance(layer, InputLayer):
            if self.input_layer is not None:
                raise ValueError(f"Sequential model '{self.name}' has already been configured to "
                                 f"use input shape {self.input_layer.batch_shape}. You cannot add "
                                 "a different Input layer to it.")
            if self._layers:
                raise ValueError(f"Sequential model '{self.name}': an InputLayer can only be "
                                 "the first layer.")
        if any(l.name == layer.name for l in self._layers):
            raise ValueError("All layers added to a Sequential model should have unique names. "
                             f"Name '{layer.name}' is already the name of a layer in this model. "
                             "Update the `name` argument to pass a unique name.")
        if not self._layers and not isinstance(layer, InputLayer) and layer.input_shape_arg:
            self._layers.append(InputLayer(batch_shape=layer.input_shape_arg))
        self._layers.append(layer)
        if not layer.trainable or not self.trainable:
            layer.trainable = layer.trainable and self.trainable
        self.built = False
        if rebuild:
            self._maybe_build()

    def pop(self, rebuild=True):
        """Remove and return the last layer."""
        if not self.layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        self.built = False
        if rebuild:
            self._maybe_build()
        return layer

    def _maybe_build(self):
        if self.input_layer is not None and self.layers:
            self.build(self.input_layer.batch_shape)

    def build(self, input_shape=None):
        if input_shape is None:
            if self.input_layer is None:
                raise ValueError(f"Sequential model {self.name}: you must provide an "
                                 "`input_shape` argument.")
            input_shape = self.input_layer.batch_shape
        if not self.layers:
            self._raise_empty()
        input_shape = tuple(input_shape)
        if self.input_layer is None:
            self._layers.insert(0, InputLayer(batch_shape=input_shape))
        shape = input_shape
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self.input_shape = input_shape
        self.output_shape = shape
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    @property
    def inputs(self):
        return [KerasTensor(self.input_shape)] if self.built else None

    @property
    def outputs(self):
        return [KerasTensor(self.output_shape)] if self.built else None

    input = property(lambda self: self.inputs[0] if self.built else None)
    output = property(lambda self: self.outputs[0] if self.built else None)

    def _raise_empty(self):
        raise ValueError(f"Sequential model {self.name} cannot be built because it has no "
                         "layers. Call `model.add(layer)`.")

    def _forward(self, x, training):
        if not self.layers:
            self._raise_empty()
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def _backward(self, dy, need_dx):
        layers = self.layers
        # Layers before the first one with trainable weights need no backward at all,
        # unless the caller needs dL/dx.
        first = 0
        if not need_dx:
            first = next((i for i, l in enumerate(layers) if l.trainable_weights), len(layers))
        for i in range(len(layers) - 1, first - 1, -1):
            dy = layers[i].backward(dy, need_dx=need_dx or i > first)
            layers[i].release_cache()
        return dy if need_dx else None

    def get_config(self):
        from faltung.models.saving import serialize_layer
        return {"name": self.name, "trainable": self.trainable, "dtype": "float32",
                "layers": [serialize_layer(l) for l in self._layers]}

    @classmethod
    def from_config(cls, config):
        from faltung.models.saving import deserialize_layer
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for lc in config["layers"]:
            model.add(deserialize_layer(lc), rebuild=False)
        model._maybe_build()
        return model
