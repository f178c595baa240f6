"""The graph machinery behind functional and subclassed models: tracing KerasTensor
layer calls into topologically ordered nodes, then running forward through them and
backward in reverse (gradients of a tensor used by several layers are summed)."""
from faltung.layers.input_layer import InputLayer, KerasTensor


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


class GraphMixin:
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
            n.layer.release_cache()
            if not want_dx:
                continue
            for t, d in zip(n.inputs, dx if n.multi else [dx]):
                grads[id(t)] = d if id(t) not in grads else grads[id(t)] + d
        return grads.get(id(self._input_tensor)) if need_dx else None
