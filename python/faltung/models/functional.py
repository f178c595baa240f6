"""Functional models: `Model(inputs, outputs)` over the graph of KerasTensors that layer
calls on `Input(...)` tensors record.

Supported: one input tensor and one output tensor, with any DAG between them: a tensor may
feed several layers (their gradients are summed) and a layer may take a list of tensors
(merge layers: `forward` gets a list and `backward` returns a list). Each layer may be
called once per model (faltung-only limit: a brick caches one forward for its backward).
"""
from faltung.layers.input_layer import InputLayer, KerasTensor
from faltung.models.model import Model


class _Node:
    """One layer call: `layer(inputs) -> output`."""

    def __init__(self, layer, inputs, output, multi):
        self.layer, self.inputs, self.output, self.multi = layer, inputs, output, multi
        self.need_backward = False
        self.need_dx = False


def _single(t, what):
    if isinstance(t, (list, tuple)):
        if len(t) != 1:
            raise ValueError(f"faltung functional models take exactly one {what} tensor. "
                             f"Received {len(t)} {what} tensors.")
        t = t[0]
    if isinstance(t, dict):
        raise ValueError(f"faltung functional models take a single {what} tensor, not a dict.")
    if not isinstance(t, KerasTensor):
        raise ValueError(f"All `{what}s` values must be KerasTensors. Received: {what}s={t!r} "
                         f"including invalid value {t!r} of type {type(t)}")
    return t


def trace(inp, out):
    """Topologically ordered nodes from `inp` to `out`; ValueError if `out` does not
    depend on `inp` only."""
    order, state = [], {}

    def visit(t):
        if id(t) in state:
            if state[id(t)] == 1:
                raise ValueError("The functional graph has a cycle.")
            return
        state[id(t)] = 1
        if t.source is None:
            if t is not inp:
                raise ValueError(f"Graph disconnected: cannot find parent for tensor {t}. The "
                                 f"model's output depends on an Input that is not in `inputs`.")
        else:
            layer, ins = t.source
            multi = isinstance(ins, (list, tuple))
            ins = list(ins) if multi else [ins]
            for s in ins:
                visit(s)
            order.append(_Node(layer, ins, t, multi))
        state[id(t)] = 2

    visit(out)
    seen = set()
    for node in order:
        if id(node.layer) in seen:
            raise ValueError(f"Layer '{node.layer.name}' is called more than once in this model; "
                             "faltung does not support shared layers yet.")
        seen.add(id(node.layer))
    return order


class _GraphMixin:
    """Forward/backward over traced nodes; used by Functional and traced subclasses."""

    def _set_graph(self, inp, out):
        self._input_tensor, self._output_tensor = inp, out
        self._nodes = trace(inp, out)
        in_layer = getattr(inp, "layer", None) or InputLayer(batch_shape=inp.shape)
        self._layers = [in_layer] + [n.layer for n in self._nodes]
        self.input_shape, self.output_shape = tuple(inp.shape), tuple(out.shape)
        self.built = True
        self._mark_backward()

    def _mark_backward(self):
        producer = {id(n.output): n for n in self._nodes}
        for n in self._nodes:
            n.need_dx = any(producer.get(id(t)) is not None and producer[id(t)].need_backward
                            for t in n.inputs)
            n.need_backward = n.need_dx or bool(n.layer.trainable_weights)

    def _graph_forward(self, x, training):
        values = {id(self._input_tensor): x}
        for n in self._nodes:
            args = [values[id(t)] for t in n.inputs]
            values[id(n.output)] = n.layer.forward(args if n.multi else args[0], training=training)
        return values[id(self._output_tensor)]

    def _graph_backward(self, dy, need_dx):
        self._mark_backward()  # trainable flags may have changed since the last step
        grads = {id(self._output_tensor): dy}
        for n in reversed(self._nodes):
            if not (n.need_backward or need_dx):
                continue
            g = grads.pop(id(n.output), None)
            if g is None:
                continue
            want_dx = n.need_dx or need_dx
            dx = n.layer.backward(g, need_dx=want_dx)
            if not want_dx:
                continue
            for t, d in zip(n.inputs, dx if n.multi else [dx]):
                grads[id(t)] = d if id(t) not in grads else grads[id(t)] + d
        return grads.get(id(self._input_tensor)) if need_dx else None


class Functional(_GraphMixin, Model):
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

