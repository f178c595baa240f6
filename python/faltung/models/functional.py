"""Functional models: `Model(inputs, outputs)` over the graph of layer calls recorded on
`Input(...)` tensors (Keras's functional API).

Any number of inputs and outputs (a tensor, a list, or a dict keyed by name); any DAG
between them: a tensor may feed several layers (gradients summed), a layer may take and
return several tensors (merge layers, `return_state`), the same layer may be called
several times (shared weights; gradients summed over the calls), and a model is itself a
layer that can be called inside another model.
"""
from faltung.layers.input_layer import InputLayer
from faltung.layers.node import KerasTensor, flatten
from faltung.models.model import Model


class Functional(Model):
    """A model defined by `Model(inputs, outputs)` (Keras's functional API).

    Example:
        >>> inp = Input((8,))
        >>> out = Dense(1)(Dense(4, activation="relu")(inp))
        >>> model = Model(inp, out)
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        super().__init__(name=name, trainable=trainable, **kwargs)
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(outputs, tuple):
            outputs = list(outputs)
        if isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], KerasTensor):
            inputs = inputs[0]  # Keras unwraps a one-element list of inputs
        self._set_graph(inputs, outputs)

    @property
    def layers(self):
        return self._all_layers()  # includes the InputLayers, as Keras's functional models

    def _all_layers(self):
        graph = self.__dict__.get("_graph")
        return list(graph.layers) if graph is not None else []

    def build(self, input_shape):
        self.built = True

    # -- config ------------------------------------------------------------------------
    def get_config(self):
        """Keras 3's functional config: layers with their inbound nodes, input and output
        layers as [layer_name, node_index, tensor_index]."""
        from faltung.models.saving import serialize_layer
        g = self._graph
        own_nodes = {id(n) for n in g.nodes} | {id(t._node) for t in g.inputs}

        def node_index(layer, node):
            return [n for n in layer._inbound_nodes if id(n) in own_nodes].index(node)

        def ref(t):
            layer = t._node.layer
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(t.shape), "dtype": t.dtype,
                               "keras_history": [layer.name, node_index(layer, t._node),
                                                 t._index]}}

        def tensors(struct):
            if isinstance(struct, KerasTensor):
                return ref(struct)
            if isinstance(struct, (list, tuple)):
                return [tensors(s) for s in struct]
            if isinstance(struct, dict):
                return {k: tensors(v) for k, v in struct.items()}
            return struct

        layers = []
        for layer in g.layers:
            nodes = [n for n in layer._inbound_nodes if id(n) in own_nodes and not n.is_input]
            constants = layer.call_constants() if hasattr(layer, "call_constants") else []
            inbound = [{"args": [tensors(n.call_args)] + constants,
                        "kwargs": tensors(n.call_kwargs)} for n in nodes]
            layers.append(dict(serialize_layer(layer), name=layer.name, inbound_nodes=inbound))

        def endpoints(struct):
            if isinstance(struct, dict):
                return {k: endpoints(v) for k, v in struct.items()}
            if isinstance(struct, (list, tuple)):
                return [endpoints(s) for s in struct]
            return ref(struct)["config"]["keras_history"]

        def top(struct):  # Keras writes a single tensor as a one-element list
            return [endpoints(struct)] if isinstance(struct, KerasTensor) else endpoints(struct)

        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": top(g.inputs_struct),
                "output_layers": top(g.outputs_struct)}

    @classmethod
    def from_config(cls, config):
        """Rebuild the graph: create every layer, then replay the inbound nodes in an order
        where each call's input tensors exist (Keras's process_node loop)."""
        from faltung.models.saving import deserialize_layer, resolve_layer_references
        made = {}        # layer name -> list of output structures, one per node
        pending = []     # (layer, node config list)
        for lc in config["layers"]:
            layer = deserialize_layer(lc)
            if isinstance(layer, InputLayer):
                made[layer.name] = [layer.output]
            else:
                made[layer.name] = []
                pending.append((layer, list(lc.get("inbound_nodes", []))))
        resolve_layer_references([layer for layer, _ in pending])

        def resolve(struct):
            if isinstance(struct, dict) and struct.get("class_name") == "__keras_tensor__":
                name, node_i, tensor_i = struct["config"]["keras_history"]
                outs = made.get(name, [])
                if node_i >= len(outs):
                    raise LookupError
                return flatten(outs[node_i])[tensor_i]
            if isinstance(struct, list):
                return [resolve(s) for s in struct]
            if isinstance(struct, dict):
                return {k: resolve(v) for k, v in struct.items()}
            return struct

        while any(nodes for _, nodes in pending):
            progress = False
            for layer, nodes in pending:
                while nodes:
                    try:
                        args = resolve(nodes[0]["args"])
                        kwargs = resolve(nodes[0].get("kwargs") or {})
                    except LookupError:
                        break
                    if len(args) > 1 and not hasattr(layer, "call_constants"):
                        raise ValueError(f"Layer '{layer.name}' is called with {len(args)} "
                                         "positional arguments in the saved config; faltung "
                                         "layers take one (a tensor or a list of tensors).")
                    made[layer.name].append(layer(*args, **kwargs))
                    nodes.pop(0)
                    progress = True
            if not progress:
                raise ValueError("Could not rebuild the functional model from its config: "
                                 "some layer inputs are never produced.")

        def endpoint(ref):
            if isinstance(ref, dict):
                return {k: endpoint(v) for k, v in ref.items()}
            if isinstance(ref, list) and ref and isinstance(ref[0], str):
                name, node_i, tensor_i = ref[:3]
                return flatten(made[name][node_i])[tensor_i]
            return [endpoint(r) for r in ref]

        inputs = endpoint(config["input_layers"])
        outputs = endpoint(config["output_layers"])
        if isinstance(inputs, list) and len(inputs) == 1:
            inputs = inputs[0]
        if isinstance(outputs, list) and len(outputs) == 1:
            outputs = outputs[0]
        return cls(inputs, outputs, name=config.get("name"),
                   trainable=config.get("trainable", True))
