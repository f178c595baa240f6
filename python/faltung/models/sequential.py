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
        if isinstance(layer, KerasTensor) and layer._node is not None and layer._node.is_input:
            layer = layer._node.layer
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
        self.built, self._graph = False, None
        if rebuild:
            self._maybe_build()

    def pop(self, rebuild=True):
        """Remove and return the last layer."""
        if not self.layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        self.built, self._graph = False, None
        if rebuild:
            self._maybe_build()
        return layer

    def _maybe_build(self):
        if self.input_layer is not None and self.layers:
            self.build(self.input_layer.batch_shape)

    def build(self, input_shape=None):
        """Calls the layers in order on the InputLayer's tensor, as Keras does, so every
        layer has `input`/`output` tensors and the model runs on faltung's graph."""
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
        for node in self.__dict__.get("_own_nodes", []):  # the graph of an earlier build
            if node in node.layer._inbound_nodes:
                node.layer._inbound_nodes.remove(node)
        x = self.input_layer.output
        before = {id(n) for n in self._nodes_of_layers()}
        for layer in self.layers:
            x = layer(x)
            if not isinstance(x, KerasTensor):
                raise ValueError(f"Sequential model {self.name}: layer '{layer.name}' returns "
                                 "several tensors; only single-output layers can be stacked. "
                                 "Use the functional API for them.")
        self._own_nodes = [n for n in self._nodes_of_layers() if id(n) not in before]
        self._set_graph(self.input_layer.output, x)

    def _nodes_of_layers(self):
        return [n for l in self.layers for n in l._inbound_nodes]

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def _raise_empty(self):
        raise ValueError(f"Sequential model {self.name} cannot be built because it has no "
                         "layers. Call `model.add(layer)`.")

    def get_config(self):
        from faltung.models.saving import serialize_layer
        return {"name": self.name, "trainable": self.trainable, "dtype": "float32",
                "layers": [serialize_layer(l) for l in self._layers]}

    @classmethod
    def from_config(cls, config):
        from faltung.models.saving import deserialize_layer, resolve_layer_references
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for lc in config["layers"]:
            model.add(deserialize_layer(lc), rebuild=False)
        resolve_layer_references(model.layers)
        model._maybe_build()
        return model
