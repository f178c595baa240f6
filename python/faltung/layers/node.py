"""Symbolic tensors and the nodes that record layer calls (Keras's KerasTensor and Node).

Calling a layer on `KerasTensor`s computes no numbers: it builds the layer for the input
shapes, makes output tensors of `compute_output_shape`'s shapes and records the call as a
`Node` in `layer._inbound_nodes`. Models trace these nodes from their outputs back to their
inputs (faltung.models.graph). Nested structures (a tensor, a list/tuple, a dict) are
flattened with dict keys in sorted order, as Keras's `tree` does.
"""


def flatten(struct):
    """The leaves of a nested list/tuple/dict, dict values by sorted key."""
    if isinstance(struct, (list, tuple)):
        return [leaf for s in struct for leaf in flatten(s)]
    if isinstance(struct, dict):
        return [leaf for k in sorted(struct) for leaf in flatten(struct[k])]
    return [struct]


def pack_like(struct, leaves):
    """`leaves` (from flatten of a structure like `struct`) put back into that structure."""
    return _build(struct, iter(leaves))


# A module-level function, not a closure that calls itself: such a closure is a reference
# cycle (function -> cell -> function) that kept `leaves` (a training step's activations,
# 72 MB per step of a DenseNet block) alive until the cyclic garbage collector ran, so every
# step faulted in fresh memory (283 -> 430 ms per step, 2.4 GB resident after 30 steps).
def _build(s, it):
    if isinstance(s, (list, tuple)):
        return type(s)(_build(x, it) for x in s) if isinstance(s, tuple) else [_build(x, it) for x in s]
    if isinstance(s, dict):
        out = {k: _build(s[k], it) for k in sorted(s)}
        return {k: out[k] for k in s}
    return next(it)


def map_structure(fn, struct):
    return pack_like(struct, [fn(x) for x in flatten(struct)])


def is_shape(s):
    """A shape: a tuple/list of ints and Nones (not a list of shapes)."""
    return isinstance(s, (tuple, list)) and all(d is None or isinstance(d, int) for d in s)


def map_shapes(fn, shapes):
    """fn applied to each shape of a (nested) structure of shapes."""
    if is_shape(shapes):
        return fn(tuple(shapes))
    if isinstance(shapes, dict):
        return {k: map_shapes(fn, v) for k, v in shapes.items()}
    return [map_shapes(fn, s) for s in shapes]


class KerasTensor:
    """A symbolic tensor: a shape with None for the batch, a dtype, and the layer call
    (node) that made it. `_keras_history` is (layer, node_index, tensor_index), as Keras's."""

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = tuple(shape)
        self.dtype = str(dtype)
        self.name = name
        self.ndim = len(self.shape)
        self._node = None   # the Node whose output this is
        self._index = 0     # which of that node's outputs

    @property
    def _keras_history(self):
        if self._node is None:
            return None
        layer = self._node.layer
        return layer, layer._inbound_nodes.index(self._node), self._index

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __len__(self):
        raise TypeError("A symbolic KerasTensor has no length; it stands for a batch of any size.")

    def __iter__(self):
        raise TypeError("A symbolic KerasTensor cannot be iterated: call a layer on it (faltung "
                        "models run only layers, so array math on KerasTensors is not traced).")


class Node:
    """One call of `layer`: `call_args` (the `inputs` argument: a tensor or a structure of
    tensors) and `call_kwargs` (may hold tensors, e.g. `initial_state`) -> `outputs`."""

    def __init__(self, layer, call_args, call_kwargs, outputs, is_input=False):
        self.layer = layer
        self.call_args = call_args
        self.call_kwargs = dict(call_kwargs)
        self.outputs = outputs
        self.is_input = is_input
        self.args_tensors = [t for t in flatten(call_args) if isinstance(t, KerasTensor)]
        self.kwargs_tensors = [t for t in flatten(self.call_kwargs) if isinstance(t, KerasTensor)]
        self.input_tensors = self.args_tensors + self.kwargs_tensors
        self.output_tensors = flatten(outputs)
        layer._inbound_nodes.append(self)
        for i, t in enumerate(self.output_tensors):
            t._node, t._index = self, i

    @property
    def parent_nodes(self):
        return [t._node for t in self.input_tensors if t._node is not None]

    def __repr__(self):
        return f"<Node {self.layer.name} {len(self.input_tensors)} -> {len(self.output_tensors)}>"


def symbolic_call(layer, inputs, kwargs):
    """Record `layer(inputs, **kwargs)` on KerasTensors; return the output tensors."""
    for t in flatten(inputs):
        if not isinstance(t, KerasTensor):
            raise ValueError(f"Layer '{layer.name}' was called on a mix of symbolic tensors and "
                             f"arrays. Received: {t!r} of type {type(t).__name__}. Pass an "
                             "`Input(...)` tensor, or call the layer on arrays only.")
    shapes = map_structure(lambda t: t.shape, inputs)
    if not layer.built:
        layer.build(shapes)
    else:
        layer.check_input_shape(shapes)
    out_shapes = layer.compute_output_shape(shapes)
    outputs = map_shapes(lambda s: KerasTensor(s, layer.output_dtype), out_shapes)
    Node(layer, inputs, kwargs, outputs)
    return outputs
