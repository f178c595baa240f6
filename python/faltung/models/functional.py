"""Functional models: `Model(inputs, outputs)` over the graph of KerasTensors that layer
calls on `Input(...)` tensors record.

Supported: one input tensor and one output tensor, with any DAG between them: a tensor may
feed several layers (their gradients are summed) and a layer may take a list of tensors
(merge layers: `forward` gets a list and `backward` returns a list). Each layer may be
called once per model (faltung-only limit: a brick caches one forward for its backward).
"""
from faltung.layers.input_layer import InputLayer
from faltung.models.graph import _single
from faltung.models.model import Model


class Functional(Model):
    """A model defined by `Model(inputs, outputs)` (Keras's functional API).

    Example:
        >>> inp = Input((8,))
        >>> out = Dense(1)(Dense(4, activation="relu")(inp))
        >>> model = Model(inp, out)
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        self._layers = []
        super().__init__(name=name, trainable=trainable, **kwargs)
        self._set_graph(_single(inputs, "input"), _single(outputs, "output"))

    @property
    def layers(self):
        return list(self._layers)  # includes the InputLayer, as Keras's functional models

    def _all_layers(self):
        return self._layers

    @property
    def inputs(self):
        return [self._input_tensor]

    @property
    def outputs(self):
        return [self._output_tensor]

    input = property(lambda self: self._input_tensor)
    output = property(lambda self: self._output_tensor)

    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.output_shape

    def _forward(self, x, training):
        return self._graph_forward(x, training)

    def _backward(self, dy, need_dx):
        return self._graph_backward(dy, need_dx)

    def get_config(self):
        from faltung.models.saving import serialize_layer
        producer = {id(n.output): n.layer.name for n in self._nodes}
        producer[id(self._input_tensor)] = self._layers[0].name

        def ref(t):
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(t.shape), "dtype": "float32",
                               "keras_history": [producer[id(t)], 0, 0]}}

        layers = [dict(serialize_layer(self._layers[0]), name=self._layers[0].name,
                       inbound_nodes=[])]
        for n in self._nodes:
            args = [ref(t) for t in n.inputs]
            layers.append(dict(serialize_layer(n.layer), name=n.layer.name,
                               inbound_nodes=[{"args": [args if n.multi else args[0]],
                                               "kwargs": {}}]))
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": [[self._layers[0].name, 0, 0]],
                "output_layers": [[producer[id(self._output_tensor)], 0, 0]]}

    @classmethod
    def from_config(cls, config):
        from faltung.models.saving import deserialize_layer
        tensors = {}
        for lc in config["layers"]:
            layer = deserialize_layer(lc)
            if isinstance(layer, InputLayer):
                tensors[layer.name] = layer.output
                continue
            arg = lc["inbound_nodes"][0]["args"][0]
            if isinstance(arg, list):
                x = [tensors[a["config"]["keras_history"][0]] for a in arg]
            else:
                x = tensors[arg["config"]["keras_history"][0]]
            tensors[layer.name] = layer(x)
        inp = tensors[config["input_layers"][0][0]]
        out = tensors[config["output_layers"][0][0]]
        return cls(inp, out, name=config.get("name"), trainable=config.get("trainable", True))

