"""The graph behind functional, Sequential and traced subclassed models.

`Graph(inputs, outputs)` walks the recorded layer calls (faltung.layers.node.Node) from
the output tensors back to the input tensors and orders them as Keras's `map_graph` does
(nodes by decreasing depth; `layers` by depth, ties in first-visit order, which fixes the
order of `model.layers`, `model.weights` and the weight-file paths). It then runs:

- forward: node by node, each call with its own `CallContext` (what its backward needs),
  masks passed from layer to layer as Keras propagates them, intermediate values dropped
  after their last consumer;
- backward: in reverse over the saved contexts; gradients of a tensor consumed by several
  calls are summed, and so are the weight gradients of a layer (or of weights) used by
  several calls. Calls with nothing trainable behind or inside them are skipped.
"""
import inspect

import numpy as np

from faltung.layers.layer import CallContext, Layer, run_backward, run_forward
from faltung.layers.node import KerasTensor, flatten, pack_like


def _describe(t):
    hist = t._keras_history
    return f"{t!r} (made by layer '{hist[0].name}')" if hist else repr(t)


def _check_tensors(struct, what):
    flat = flatten(struct)
    if not flat:
        raise ValueError(f"A model needs at least one {what} tensor. Received: {what}s={struct!r}")
    for t in flat:
        if not isinstance(t, KerasTensor):
            raise ValueError(f"All `{what}s` values must be KerasTensors. Received: "
                             f"{what}s={struct!r} including invalid value {t!r} of type "
                             f"{type(t).__name__}")
    return flat


def _map_graph(inputs, outputs):
    """Keras's map_graph: (non-input nodes in execution order, layers in Keras's order)."""
    input_ids = {id(t) for t in inputs}
    finished, in_progress, post_order, layer_index = set(), set(), [], {}

    def visit(t):
        node = t._node
        if id(node) in finished:
            return
        if id(node) in in_progress:
            raise ValueError(f"The functional graph has a cycle through layer '{node.layer.name}'.")
        layer_index.setdefault(id(node.layer), len(layer_index))
        in_progress.add(id(node))
        if not node.is_input and id(t) not in input_ids:
            for s in node.input_tensors:
                visit(s)
        finished.add(id(node))
        in_progress.discard(id(node))
        post_order.append(node)

    for t in outputs:
        visit(t)
    node_depth, layer_depth = {}, {}
    for node in reversed(post_order):
        depth = max(node_depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = node_depth[id(node)] = depth
        for parent in node.parent_nodes:
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    position = {id(n): i for i, n in enumerate(post_order)}
    for t in inputs:  # inputs that no output depends on still belong to the model
        node = t._node
        if id(node) not in node_depth:
            node_depth[id(node)] = layer_depth[id(node.layer)] = 0
            layer_index.setdefault(id(node.layer), len(layer_index))
            position[id(node)] = len(position)
            post_order.append(node)
    nodes = sorted(post_order, key=lambda n: (-node_depth[id(n)], position[id(n)]))
    layers = {}
    for node in post_order:
        layers[id(node.layer)] = node.layer
    ordered = sorted(layers.values(), key=lambda l: (-layer_depth[id(l)], layer_index[id(l)]))

    computable, seen = set(input_ids), []
    for node in nodes:
        if node.is_input:
            continue
        for t in node.input_tensors:
            if id(t) not in computable:
                raise ValueError(f"Graph disconnected: cannot find parent for tensor "
                                 f"{_describe(t)} at layer '{node.layer.name}'. The following "
                                 f"previous layers were accessed without issue: {seen}. Every "
                                 "tensor must be computed from the model's `inputs`.")
        computable.update(id(t) for t in node.output_tensors)
        seen.append(node.layer.name)
    for t in outputs:
        if id(t) not in computable:
            raise ValueError(f"Graph disconnected: the output {_describe(t)} does not depend on "
                             "the model's `inputs` only; add its Input to `inputs`.")
    return [n for n in nodes if not n.is_input], ordered


def _takes_mask(layer):
    cls = type(layer)
    cached = cls.__dict__.get("_faltung_takes_mask")
    if cached is None:
        cached = "mask" in inspect.signature(cls.forward).parameters
        setattr(cls, "_faltung_takes_mask", cached)
    return cached


class Graph:
    """The traced nodes between `inputs` and `outputs` (structures of KerasTensors)."""

    def __init__(self, inputs, outputs):
        self.inputs_struct, self.outputs_struct = inputs, outputs
        self.inputs = _check_tensors(inputs, "input")
        self.outputs = _check_tensors(outputs, "output")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError("The same tensor appears twice in the model's `inputs`.")
        self.nodes, self.layers = _map_graph(self.inputs, self.outputs)
        names = [l.name for l in self.layers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f'The name "{name}" is used {names.count(name)} times in the '
                                 "model. All layer names should be unique.")
        uses = {}
        for node in self.nodes:
            for v in node.layer.weights:
                uses[id(v)] = uses.get(id(v), 0) + 1
        self._shared = {k for k, n in uses.items() if n > 1}
        self._sharing_layers = {id(n.layer) for n in self.nodes
                                if any(id(v) in self._shared for v in n.layer.weights)}
        out_ids = {id(t) for t in self.outputs}
        self._last_use = {}
        for i, node in enumerate(self.nodes):
            for t in node.input_tensors:
                if id(t) not in out_ids:
                    self._last_use[id(t)] = i
        self._custom_mask = [type(n.layer).compute_mask is not Layer.compute_mask for n in self.nodes]
        self._single_arg = [isinstance(n.call_args, KerasTensor) for n in self.nodes]

    # -- forward -------------------------------------------------------------------------
    def forward(self, flat_inputs, training=False, input_masks=None, inference=False):
        """Values of the output tensors (flat), their masks (flat), and the per-node call
        contexts that backward needs (None unless training). A call recorded with
        training=False (and every call when `inference`) computes as at inference; in a
        training run it still saves for backward."""
        values = {id(t): v for t, v in zip(self.inputs, flat_inputs)}
        masks = {}
        if input_masks is not None:
            masks = {id(t): m for t, m in zip(self.inputs, input_masks) if m is not None}
        ctxs = [] if training else None
        last_use = self._last_use
        for i, node in enumerate(self.nodes):
            layer = node.layer
            if self._single_arg[i]:
                args = values[id(node.call_args)]
            else:
                args = pack_like(node.call_args, [values[id(t)] for t in node.args_tensors])
            kwargs = node.call_kwargs
            if kwargs:
                kwargs = pack_like(kwargs, [values[id(x)] if isinstance(x, KerasTensor) else x
                                            for x in flatten(kwargs)])
            node_training = kwargs.pop("training", None) if kwargs else None
            as_inference = inference or node_training is not None and not node_training
            in_mask = None
            if masks:
                flat_masks = [masks.get(id(t)) for t in node.args_tensors]
                if any(m is not None for m in flat_masks):
                    in_mask = pack_like(node.call_args, flat_masks)
                    if "mask" not in kwargs and _takes_mask(layer):
                        kwargs = dict(kwargs, mask=in_mask)
            if training:  # record for backward; compute as at inference if asked to
                ctx = CallContext(inference=as_inference)
                out = run_forward(layer, ctx, args, True, **kwargs)
            else:         # a call recorded with training=True (MC dropout) keeps it
                ctx = CallContext()
                out = run_forward(layer, ctx, args, bool(node_training), **kwargs)
            if training:
                ctxs.append(ctx)
            outs = [out] if isinstance(node.outputs, KerasTensor) else flatten(out)
            if len(outs) != len(node.output_tensors):
                raise ValueError(f"Layer '{layer.name}' returned {len(outs)} outputs; its "
                                 f"symbolic call made {len(node.output_tensors)}.")
            for t, v in zip(node.output_tensors, outs):
                values[id(t)] = v
            if in_mask is not None or self._custom_mask[i]:
                out_mask = layer.compute_mask(args, in_mask)
                if out_mask is not None:
                    out_masks = (flatten(out_mask) if isinstance(out_mask, (list, tuple))
                                 else [out_mask] * len(outs))
                    for t, m in zip(node.output_tensors, out_masks):
                        if m is not None:
                            masks[id(t)] = m
            for t in node.input_tensors:
                if last_use.get(id(t)) == i:
                    values.pop(id(t), None)
                    masks.pop(id(t), None)
        return ([values[id(t)] for t in self.outputs], [masks.get(id(t)) for t in self.outputs],
                ctxs)

    # -- backward ------------------------------------------------------------------------
    def _active(self, need_dx):
        """Per node: does it need a backward call, and does it need its input gradients."""
        req = {id(t): need_dx and t.dtype == "float32" for t in self.inputs}
        active, want_dx = [], []
        for node in self.nodes:
            wants = any(req.get(id(t), False) for t in node.input_tensors)
            a = wants or bool(node.layer.trainable_weights)
            for t in node.output_tensors:
                req[id(t)] = a and t.dtype == "float32"
            active.append(a)
            want_dx.append(wants)
        return active, want_dx, req

    def backward(self, ctxs, flat_dys, need_dx=True, after_node=None):
        """Gradients for the input tensors (flat; None where none flows) from the output
        gradients `flat_dys` (None for outputs without one); sets the weights' grads.
        `after_node(i)`, if given, is called when node i's backward has run (data
        parallelism starts reducing the gradients that are final by then)."""
        active, want_dx, req = self._active(need_dx)
        grads, owned = {}, set()

        def accumulate(key, g):
            """Sums the gradients of a tensor used more than once. The first is kept as given
            (it may be a view of another gradient, e.g. Concatenate's slices of its dy); the
            second makes one new array, which later ones are added into in place."""
            if key not in grads:
                grads[key] = g
            elif key in owned:
                np.add(grads[key], g, out=grads[key])
            else:
                grads[key] = grads[key] + g
                owned.add(key)

        for t, g in zip(self.outputs, flat_dys):
            if g is not None:
                accumulate(id(t), g)
        for i in range(len(self.nodes) - 1, -1, -1):
            node, ctx = self.nodes[i], ctxs[i]
            if isinstance(node.outputs, KerasTensor):
                dy = grads.pop(id(node.outputs), None)
                missing = dy is None
            else:
                dys = [grads.pop(id(t), None) for t in node.output_tensors]
                missing = all(d is None for d in dys)
                dy = pack_like(node.outputs, dys)
            if not active[i] or missing and ctx.outputs_spec is None:  # (an activity penalty at or under it)
                ctx.saved = None
                continue
            stash = ()
            if id(node.layer) in self._sharing_layers:
                stash = [(v, v.grad) for v in node.layer.trainable_weights if id(v) in self._shared]
                for v, _ in stash:
                    v.grad = None
            dx = run_backward(node.layer, ctx, dy, want_dx[i])
            for v, g in stash:
                if g is not None:
                    v.grad = g if v.grad is None else v.grad + g
            if after_node is not None:
                after_node(i)
            if not want_dx[i]:
                continue
            # (dx, {keyword: gradients}) for keyword arguments that take one (an RNN's
            # initial_state, constants too); a layer whose keyword tensors take no gradient
            # (a `mask=`) returns dx alone
            has_dkw = isinstance(dx, tuple) and len(dx) == 2 and isinstance(dx[1], dict)
            dx, dkw = dx if has_dkw else (dx, {})
            if node.kwargs_tensors:
                flat_dx = [dx] if self._single_arg[i] else flatten(dx)
                for key in sorted(node.call_kwargs):  # the tensors' gradients, not the constants'
                    kw, got = node.call_kwargs[key], dkw.get(key)  # (a constant may be a nested list)
                    n_t = sum(isinstance(t, KerasTensor) for t in flatten(kw))
                    if n_t and got is None:
                        flat_dx += [None] * n_t
                    elif n_t:
                        items = kw if isinstance(kw, (list, tuple)) else [kw]
                        got = got if isinstance(got, (list, tuple)) else [got]
                        flat_dx += [g for t, g in zip(items, got) if isinstance(t, KerasTensor)]
            else:
                flat_dx = [dx] if self._single_arg[i] else flatten(dx)
            for t, d in zip(node.input_tensors, flat_dx):
                if d is not None and req.get(id(t), False):
                    accumulate(id(t), d)
        return [grads.get(id(t)) for t in self.inputs]
