"""The graph of a device-resident model (faltung.models.resident): the layer calls of the
model's Graph (faltung.models.graph, Sequential and functional alike) as steps over
DeviceArrays, run forward in the graph's order and backward in reverse.

A step is one call of a layer: a chain of ops (faltung.models.resident_ops.ops_for: one input,
one output), or a merge op (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot:
several inputs) over cpp/cuda/bind_resident_losses.hpp's merge entry points. As the CPU graph
does: the gradients of a tensor read by several calls are summed, and so are the weight
gradients of a layer called several times (Resident.set_grad sums them); a call recorded with
training=False runs as at inference. A recurrent layer's `initial_state` tensors are inputs of
its step after the sequence (their gradients come out of its backward), its constants (numpy
arrays, lists) are uploaded when it runs (checked as the CPU layer checks them), and with
return_state its final states are outputs after its output (without a mask, as the CPU's
compute_mask); Bidirectional's likewise (and its two directions with merge_mode=None). Other
layers with several outputs or tensor keyword arguments raise NotImplementedError. A nested
model (a Model or Sequential called as a layer) is inlined: its layer calls become steps of this
graph (keyed apart per call of it), reading the tensors it is called on (with the masks of a
`mask=` argument instead of theirs when called with one, as the CPU's
Model.forward), its outputs leaving without a mask (as the CPU's Model.compute_mask), and the
`training=` of its call applying to the calls inside as the CPU's Model.forward applies it.

Masks travel as the CPU graph propagates them (Layer.compute_mask), as uint8 DeviceArrays (1 =
keep): Masking and Embedding(mask_zero=True) make one; SimpleRNN/LSTM/GRU and Bidirectional
consume it (and pass it on with return_sequences), GlobalAveragePooling1D consumes it;
TimeDistributed and the layers that support masking pass it on; others drop it. Which tensors
carry a mask is known when the graph is built: a mask reaching a layer the device cannot honour
it for (layers that make or take masks the device does not run with one) raises
NotImplementedError naming the layer then. A `mask=` argument (one tensor: a model input read
as a mask only, uploaded as uint8, or any other tensor, made one as nonzero = keep, as the CPU
layers read a mask) goes to a layer that takes a mask instead of its input's (as on the CPU; only the input's
passes on); other `mask=` arguments raise NotImplementedError. Multiply, Maximum and
Minimum use their inputs' masks in their values (merge.cuh), Add, Subtract, Average and Dot
ignore them; the elementwise merges or their inputs' masks (broadcast as numpy broadcasts them,
masks of different ranks aligned on the last axis, as Merge.compute_mask's np.logical_or; masks
that do not broadcast raise ValueError naming the layer), Concatenate
on the last axis or-s them and on another axis concatenates them along it (an input without a
mask counting as all kept), as the CPU layers' compute_mask, and Dot's output has none. The
model's outputs' masks come out of forward for the losses and metrics (faltung.models.resident).

Model inputs read by Embedding layers (also the first layers of a nested model called with
`mask=`) stay on the host until the Embedding checks and uploads them
(faltung.models.resident_seq.Indices); every other input is uploaded as a float array.
"""
import numpy as np

from faltung.layers.layer import Layer
from faltung.layers.node import KerasTensor
from faltung.models.graph import _takes_mask
from faltung.models.resident_ops import SoftmaxOp, ops_for
from faltung.models.resident_seq import Indices, _Embedding

MERGE_NAMES = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Average": "average",
               "Maximum": "maximum", "Minimum": "minimum"}


class _MergeOp:
    """An elementwise merge layer over n inputs (broadcast as the layer broadcasts); Multiply,
    Maximum and Minimum take their inputs' masks (uint8 DeviceArrays or None) as the CPU layers
    use them (merge.cuh), the others ignore them."""

    def __init__(self, name):
        self.name = name
        self.takes_masks = name in ("multiply", "maximum", "minimum")

    def forward(self, res, xs, training, masks=None):
        masks = masks if self.takes_masks and masks and any(m is not None for m in masks) else None
        y, win = res.r.merge(self.name, xs, masks)
        return y, (xs, win, masks)

    def backward(self, res, dy, saved, need_dx):
        xs, win, masks = saved
        return res.r.merge_backward(self.name, dy, xs, win, masks) if need_dx else None


class _DotOp:
    """Dot: x with its dot axis moved last (B, M, k), y likewise (B, N, k) (permute, a copy unless
    the axis is last already), L2-normalized along k with normalize=True, then one batched
    product x y^T (B, M, N), shaped as the layer's output. The masks are ignored, and the output
    has none (as the CPU layer's)."""
    takes_masks = False

    def __init__(self, layer):
        self.layer = layer

    @staticmethod
    def _rows(res, x, axis):
        shape = tuple(x.shape)
        perm = [a for a in range(len(shape)) if a != axis] + [axis]
        moved = tuple(shape[a] for a in perm)
        xp = x if perm == sorted(perm) else res.r.permute(x, perm)
        return xp.reshape((shape[0], int(np.prod(moved[1:-1])), shape[axis])), (perm, moved)

    @staticmethod
    def _back(res, d, layout):
        perm, moved = layout
        d = d.reshape(moved)
        return d if perm == sorted(perm) else res.r.permute(d, [int(a) for a in np.argsort(perm)])

    def forward(self, res, xs, training, masks=None):
        from faltung.layers.merging.dot import EPSILON
        x, y = xs
        shapes = [tuple(x.shape), tuple(y.shape)]
        a0, a1 = self.layer._axes(shapes)  # the CPU layer's checks and errors
        out_shape = self.layer.compute_output_shape(shapes)
        (xm, lx), (ym, ly) = self._rows(res, x, a0), self._rows(res, y, a1)
        inv = None
        if self.layer.normalize:
            (xm, ix), (ym, iy) = res.r.l2_normalize(xm, EPSILON), res.r.l2_normalize(ym, EPSILON)
            inv = (ix, iy)
        out = res.r.batch_matmul(xm, ym, False, True)
        return out.reshape(out_shape), (xm, ym, lx, ly, inv)

    def backward(self, res, dy, saved, need_dx):
        from faltung.layers.merging.dot import EPSILON
        if not need_dx:
            return None
        xm, ym, lx, ly, inv = saved
        g = dy.reshape((xm.shape[0], xm.shape[1], ym.shape[1]))
        dxm, dym = res.r.batch_matmul(g, ym), res.r.batch_matmul(g, xm, True, False)
        if inv is not None:
            dxm = res.r.l2_normalize_backward(dxm, xm, inv[0], EPSILON)
            dym = res.r.l2_normalize_backward(dym, ym, inv[1], EPSILON)
        return [self._back(res, dxm, lx), self._back(res, dym, ly)]


class _ConcatOp:
    def __init__(self, layer):
        self.layer = layer

    def forward(self, res, xs, training, masks=None):
        axis = self.layer.axis % len(xs[0].shape)
        return res.r.concatenate(xs, axis), (axis, [x.shape[axis] for x in xs])

    def backward(self, res, dy, saved, need_dx):
        axis, sizes = saved
        return res.r.concatenate_backward(dy, sizes, axis) if need_dx else None


class _Step:
    """One layer call: `ops` (a chain, one input) or `merge` (a list of inputs); the keys of its
    tensors (`key(t)`: id(t), or for the calls inside a nested model one of its own, see
    DeviceGraph._inline); `recorded`, the `training=` each enclosing nested model's call was
    recorded with, then this call's own."""

    def __init__(self, node, ops, merge, key=id, recorded=()):
        self.node, self.layer, self.ops, self.merge = node, node.layer, ops, merge
        self.inputs = [key(t) for t in node.input_tensors]
        self.outputs = [key(t) for t in node.output_tensors]  # several: return_state, merge_mode=None
        self.output = self.outputs[0]
        self.recorded = recorded + ((node.call_kwargs or {}).get("training"),)
        self.mask_in = False   # the input's mask goes to the first op (set by DeviceGraph)
        self.mask_arg = None   # the tensor of a `mask=` argument, which it takes instead
        self.mask_out = None   # the output's mask: "make" (the first op's), "pass" (the input's) or None
        self.masked = self.outputs  # the outputs a passed mask goes to (a recurrent layer's states: none)
        self.n_states = 0      # `initial_state` states, which the first op takes: tensors (inputs[1:])
        self.constants = {}    # and constants (numpy arrays and the like), by their place in the list

    def initial_state(self, res, values, batch):
        """The `initial_state` list for the first op: the tensors' values, the constants checked
        (the CPU layer's words) and uploaded in the model's float dtype."""
        layer = self.layer
        subs = [layer.forward_layer, layer.backward_layer] if hasattr(layer, "forward_layer") else [layer]
        sizes = [(sub.name, size) for sub in subs for size in sub.state_size]  # (Bidirectional: its layers)
        tensors, out = iter(self.inputs[1:]), []
        for i in range(self.n_states):
            if i not in self.constants:
                out.append(values[next(tensors)])
                continue
            a = np.asarray(self.constants[i], res.dtype)
            if len(sizes) == self.n_states and a.shape != (batch, sizes[i][1]):
                raise ValueError(f"Layer {sizes[i][0]}: expected an initial state of shape {(batch, sizes[i][1])}, "
                                 f"received shape {a.shape}")
            out.append(res.DeviceArray(a, res.dtype))
        return out

    def mode(self, training):
        """The training flag of this call, as the CPU graph chooses it: a call recorded with
        training=False computes as at inference in a training run (and so does everything inside
        it, a nested model's calls too); in an inference run, a call recorded with training=True
        runs as in training (and the calls inside it as in a training run)."""
        for recorded in self.recorded:
            if not training:
                training = bool(recorded)
            elif recorded is not None and not recorded:
                return False
        return training

    def softmax_last(self):
        return bool(self.ops) and isinstance(self.ops[-1], SoftmaxOp) and not self.ops[-1].log


def _n_outputs(layer):
    """How many outputs of a recurrent layer (SimpleRNN, LSTM, GRU, Bidirectional) carry its
    input's mask on (the others are final states, maskless as in the CPU's compute_mask); None
    for a layer of one output."""
    from faltung.layers import GRU, LSTM, Bidirectional, SimpleRNN
    if isinstance(layer, Bidirectional) and (layer.merge_mode is None or layer.return_state):
        return 2 if layer.merge_mode is None else 1
    return 1 if type(layer) in (SimpleRNN, LSTM, GRU) and layer.return_state else None


def _step_of(node, where, key=id, recorded=()):
    from faltung.layers import Concatenate, Dot
    from faltung.layers.merging.base_merge import Merge
    layer = node.layer
    what = f"{where}: layer '{layer.name}' ({type(layer).__name__})"
    if len(node.output_tensors) != 1 and _n_outputs(layer) is None:
        raise NotImplementedError(f"{what} returns {len(node.output_tensors)} tensors; layers with several "
                                  "outputs are not supported on the device yet")
    mask_arg = (node.call_kwargs or {}).get("mask")
    if mask_arg is not None:
        if not (isinstance(mask_arg, KerasTensor) and node.kwargs_tensors == [mask_arg] and
                len(node.args_tensors) == 1 and not isinstance(layer, Merge)):
            raise NotImplementedError(f"{what} is called with a `mask=` argument the device cannot take yet (it "
                                      "takes one tensor, for a layer that takes a mask)")
        step = _Step(node, ops_for(layer), None, key, recorded)
        if not getattr(step.ops[0] if step.ops else None, "takes_mask", False):
            raise NotImplementedError(f"{what} is called with a `mask=` argument, which it does not take on the "
                                      "device")
        step.mask_arg = key(mask_arg)
        return step
    init = (node.call_kwargs or {}).get("initial_state")
    if init is not None:
        states = list(init) if isinstance(init, (list, tuple)) else [init]
        step = _Step(node, ops_for(layer), None, key, recorded)
        if not (getattr(step.ops[0] if step.ops else None, "takes_initial_state", False) and
                node.kwargs_tensors == [t for t in states if isinstance(t, KerasTensor)] and
                len(node.args_tensors) == 1):
            raise NotImplementedError(f"{what} is called with an `initial_state` the device cannot take (it takes "
                                      "a list of tensors or constants, for SimpleRNN, LSTM, GRU and Bidirectional, "
                                      "and no other tensor keyword argument)")
        step.n_states = len(states)
        step.constants = {i: t for i, t in enumerate(states) if not isinstance(t, KerasTensor)}
        return step
    if node.kwargs_tensors:
        raise NotImplementedError(f"{what} is called with tensor keyword arguments, which are not supported on "
                                  "the device yet")
    if isinstance(layer, Merge):
        if type(layer) is Concatenate:
            return _Step(node, None, _ConcatOp(layer), key, recorded)
        if type(layer) is Dot:
            return _Step(node, None, _DotOp(layer), key, recorded)
        name = MERGE_NAMES.get(type(layer).__name__)
        if name is None:
            raise NotImplementedError(f"{what}: the merge layer {type(layer).__name__} is not supported on the "
                                      f"device yet; supported: {', '.join(MERGE_NAMES)}, Concatenate, Dot")
        return _Step(node, None, _MergeOp(name), key, recorded)
    if len(node.input_tensors) != 1:
        raise NotImplementedError(f"{what} takes {len(node.input_tensors)} tensors; only the merge layers take "
                                  "several on the device")
    return _Step(node, ops_for(layer), None, key, recorded)


class _Entry(_Step):
    """Where a nested model called with `mask=` takes an input: the value as it is (no op), its
    mask the argument's (`mask_arg`, DeviceGraph._mask_arg) or none, as the CPU's
    Model.forward gives its graph the `mask=` argument's masks instead of the inputs'."""

    def __init__(self, node, outer_key, mask_key, key, recorded):
        self.node, self.layer, self.ops, self.merge = node, node.layer, [], None
        self.inputs = [outer_key] + ([mask_key] if mask_key is not None else [])
        self.outputs = [key]
        self.output, self.recorded, self.constants = key, recorded, {}
        self.mask_in, self.mask_arg, self.mask_out, self.masked, self.n_states = False, mask_key, None, [], 0


class _Boundary(_Step):
    """Where a nested model's output leaves it: the value as it is (no op), and no mask, as the
    CPU's Model.compute_mask (Layer's, the model not supporting masking) drops it."""

    def __init__(self, node, inner_key, key, recorded):
        self.node, self.layer, self.ops, self.merge = node, node.layer, [], None
        self.inputs, self.outputs = [inner_key], [key]
        self.output, self.recorded, self.constants = key, recorded, {}
        self.mask_in, self.mask_arg, self.mask_out, self.masked, self.n_states = False, None, None, [], 0


def _mask_args(node, inner):
    """The `mask=` argument of a nested model's call, one tensor or None per input of `inner`
    ([] without one), or None for what the device cannot take (other tensor keyword arguments,
    another structure)."""
    mask = (node.call_kwargs or {}).get("mask")
    if mask is None:
        return None if node.kwargs_tensors else []
    masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
    tensors = [m for m in masks if m is not None]
    if inner is None or len(masks) != len(inner.inputs) or node.kwargs_tensors != tensors or \
            not all(isinstance(m, KerasTensor) for m in tensors):
        return None
    return masks


def _inline(graph, where, key=id, recorded=()):
    """The steps of `graph`'s layer calls, a nested model's (a Model or Sequential called as a
    layer) inlined: its calls keyed apart from those of its other calls ((the call's first output
    key, id(t))), its inputs the tensors it is called on, each output leaving by a _Boundary."""
    from faltung.models.model import Model
    steps = []
    for node in graph.nodes:
        model = node.layer
        if not isinstance(model, Model):
            steps.append(_step_of(node, where, key, recorded))
            continue
        inner = model._graph
        what = f"{where}: nested model '{model.name}' ({type(model).__name__})"
        masks = _mask_args(node, inner)
        if inner is None or masks is None or len(node.args_tensors) != len(inner.inputs) or \
                len(node.output_tensors) != len(inner.outputs):
            raise NotImplementedError(f"{what} is called with tensor keyword arguments (but `mask=`: tensors or "
                                      "None, one per input of it) or on a structure of inputs or outputs that "
                                      "is not its own; not supported on the device")
        call = key(node.output_tensors[0])
        rec = recorded + ((node.call_kwargs or {}).get("training"),)
        if masks:  # each input enters under a key of its own, with the `mask=` argument's mask
            alias = {id(t): (call, id(t)) for t in inner.inputs}
            steps += [_Entry(node, key(a), None if m is None else key(m), (call, id(t)), rec)
                      for t, a, m in zip(inner.inputs, node.args_tensors, masks)]
        else:
            alias = {id(t): key(a) for t, a in zip(inner.inputs, node.args_tensors)}

        def inner_key(t, alias=alias, call=call):
            return alias.get(id(t), (call, id(t)))
        steps += _inline(inner, what, inner_key, rec)
        steps += [_Boundary(node, inner_key(t), key(o), rec) for t, o in zip(inner.outputs, node.output_tensors)]
    return steps


class DeviceGraph:
    """The steps of `graph` (a faltung.models.graph.Graph), or NotImplementedError naming the
    first layer call the device cannot run."""

    def __init__(self, graph, where):
        self.inputs = [id(t) for t in graph.inputs]
        self.outputs = [id(t) for t in graph.outputs]
        self.steps = _inline(graph, where)
        self.nested = {id(s.layer): s.layer for s in self.steps if isinstance(s, _Boundary)}
        self._plan_masks(where)
        self._plan_indices(where)
        out_ids = set(self.outputs)
        self.last_use = {}
        self.readers = {}
        for i, step in enumerate(self.steps):
            for t in step.inputs:
                self.readers[t] = self.readers.get(t, 0) + 1
                if t not in out_ids:
                    self.last_use[t] = i
        self.producer = {t: step for step in self.steps for t in step.outputs}
        self._ones = {}

    def _plan_masks(self, where):
        """Which steps make, take and pass on masks (see the module's docstring)."""
        has = set()  # ids of the tensors that carry a mask
        for step in self.steps:
            if isinstance(step, _Entry) and step.mask_arg is not None:
                step.mask_out = "arg"
                has.add(step.output)
            if isinstance(step, (_Boundary, _Entry)):
                continue
            layer, node = step.layer, step.node
            what = f"{where}: layer '{layer.name}' ({type(layer).__name__})"
            first = step.ops[0] if step.ops else None
            if first is not None and hasattr(first, "mask_of"):
                if not isinstance(first, _Embedding) or layer.mask_zero:
                    step.mask_out = "make"
                    has.add(step.output)
                continue
            if step.mask_arg is not None:  # the argument's mask is taken; only the input's passes on
                self._check_takes_mask(step, first, what)
                if step.inputs[0] in has and first.passes_mask():
                    step.mask_out = "pass"
                    step.masked = step.outputs[:_n_outputs(layer) or 1]
                    has.update(step.masked)
                continue
            if not any(t in has for t in (step.inputs if step.merge is not None else step.inputs[:1])):
                continue  # (a recurrent layer's `initial_state` masks are not its input's)
            refused = NotImplementedError(f"{what} receives a mask, which the device cannot apply to it yet "
                                          "(the CPU can: build the model outside the device scope)")
            if step.merge is not None:
                kind = type(layer).__name__
                if kind == "Dot":  # values ignore the masks, the output has none
                    continue
                if kind in ("Add", "Subtract", "Average", "Multiply", "Maximum", "Minimum"):
                    step.mask_in = step.merge.takes_masks  # Multiply, Maximum, Minimum use them
                    if all(t in has for t in step.inputs):    # else no mask, as the CPU's compute_mask
                        step.mask_out = "or"
                        has.add(step.output)
                    continue
                if kind == "Concatenate":  # an input without a mask counts as all kept
                    rank = len(node.output_tensors[0].shape)
                    step.mask_out = "or" if layer.axis % rank == rank - 1 else "concat"
                    has.add(step.output)
                    continue
                raise refused
            if getattr(first, "takes_mask", False):
                self._check_takes_mask(step, first, what)
                passes = first.passes_mask()
            elif _takes_mask(layer) or type(layer).compute_mask is not Layer.compute_mask:
                raise refused
            else:
                passes = layer.supports_masking
            if passes:
                step.mask_out = "pass"
                step.masked = step.outputs[:_n_outputs(layer) or 1]
                has.update(step.masked)

    @staticmethod
    def _check_takes_mask(step, first, what):
        for op in (first.fwd, first.bwd) if hasattr(first, "fwd") else (first,):
            why = op.mask_unsupported() if hasattr(op, "mask_unsupported") else None
            if why:
                raise NotImplementedError(f"{what}: {why} is not supported on the device yet")
        step.mask_in = True

    def _plan_indices(self, where):
        """The model inputs Embedding layers read (kept on the host until they upload them), also
        through the entries of nested models called with `mask=`, and the `mask=` arguments that
        are model inputs read as masks only (uploaded as uint8 masks)."""
        entries = {step.output: step for step in self.steps if isinstance(step, _Entry)}

        def source(t):  # the tensor an entry passes on, through nested entries
            while t in entries:
                t = entries[t].inputs[0]
            return t
        self.index_inputs = set()
        for step in self.steps:
            if step.ops and isinstance(step.ops[0], _Embedding):
                if source(step.inputs[0]) not in self.inputs:
                    raise NotImplementedError(f"{where}: layer '{step.layer.name}' (Embedding) reads the output of "
                                              "another layer; on the device an Embedding reads a model input")
                self.index_inputs.add(source(step.inputs[0]))
        # (an input also read as a value, or an output, is uploaded as one; _mask_arg makes the mask)
        as_value = {t for step in self.steps for i, t in enumerate(step.inputs) if i == 0 or t != step.mask_arg}
        self.mask_inputs = {step.mask_arg for step in self.steps if step.mask_arg in self.inputs} - as_value - \
            set(self.outputs)
        for step in self.steps:  # (an entry passes an index input on to the Embedding inside)
            reads = [source(t) in self.index_inputs for t in step.inputs]
            feeds = isinstance(step, _Entry) or bool(step.ops) and isinstance(step.ops[0], _Embedding)
            if any(reads[1:]) or reads[0] and not feeds:
                raise NotImplementedError(f"{where}: layer '{step.layer.name}' ({type(step.layer).__name__}) reads "
                                          "an input that an Embedding also reads; on the device such an input "
                                          "feeds Embedding layers only")

    def _mask_arg(self, res, values, t):
        """The value of the `mask=` argument `t` as a uint8 mask: a model input read as a mask only
        comes uploaded as one; another tensor is made one, nonzero = keep, as the CPU layers read
        a mask."""
        v = values[t]
        return v if t in self.mask_inputs else res.r.masking_mask(v.reshape(tuple(v.shape) + (1,)), 0.0)

    def upload(self, res, xs):
        """The model's inputs for forward: Indices for those Embedding layers read, uint8 masks
        (nonzero = keep, as the CPU's) for `mask=` arguments, DeviceArrays (one upload each) of
        the model's float dtype for the others."""
        return [Indices(x) if t in self.index_inputs else
                res.DeviceArray(np.ascontiguousarray(np.asarray(x) != 0, dtype=np.uint8)) if t in self.mask_inputs else
                res.DeviceArray(x, res.dtype) for t, x in zip(self.inputs, xs)]

    def softmax_output(self, i):
        """Whether output i is a softmax that nothing else reads (its loss may read the logits)."""
        t = self.outputs[i]
        step = self.producer.get(t)
        return step is not None and step.softmax_last() and self.readers.get(t, 0) == 0 and \
            self.outputs.count(t) == 1

    def _chain(self, step, stop):
        return step.ops[:-1] if step.output in stop else step.ops

    def forward(self, res, xs, training, stop=frozenset()):
        """Output values (a list), what backward needs (when training) and the outputs' masks
        (uint8 DeviceArrays or None). Outputs in `stop` come out before their last op (the
        logits under a softmax)."""
        values = dict(zip(self.inputs, xs))
        masks = {}
        self._ones = {}  # the all-kept masks of this batch, by shape and dtype (_ones_of)
        saved = []
        for i, step in enumerate(self.steps):
            mode = step.mode(training)
            if step.merge is not None:
                taken = [masks.get(t) for t in step.inputs] if step.mask_in else None
                y, s = step.merge.forward(res, [values[t] for t in step.inputs], mode, masks=taken)
                if step.mask_out == "or":
                    masks[step.output] = self._or_masks(res, step, [masks.get(t) for t in step.inputs],
                                                        tuple(y.shape[:-1]))
                elif step.mask_out == "concat":
                    masks[step.output] = self._concat_masks(res, step, [masks.get(t) for t in step.inputs],
                                                            [values[t] for t in step.inputs], s[0])
            else:
                y, s = values[step.inputs[0]], []
                in_mask = masks.get(step.inputs[0])
                for j, op in enumerate(self._chain(step, stop)):
                    kw = {}
                    if j == 0 and step.mask_in:
                        kw["mask"] = in_mask if step.mask_arg is None else self._mask_arg(res, values, step.mask_arg)
                    if j == 0 and step.n_states:
                        kw["initial_state"] = step.initial_state(res, values, y.shape[0])
                    y, si = op.forward(res, y, mode, **kw)
                    if j == 0 and step.mask_out == "make":
                        masks[step.output] = op.mask_of(res, si)
                    s.append(si)
                if step.mask_out == "pass" and in_mask is not None:
                    masks.update((t, in_mask) for t in step.masked)
                elif step.mask_out == "arg":  # a nested model's input, its `mask=` argument's mask
                    masks[step.output] = self._mask_arg(res, values, step.mask_arg)
            if len(step.outputs) > 1:
                values.update(zip(step.outputs, y))
            else:
                values[step.output] = y
            if training:
                saved.append(s)
            for t in step.inputs:
                if self.last_use.get(t) == i:
                    values.pop(t, None)
                    masks.pop(t, None)
        return [values[t] for t in self.outputs], saved, [masks.get(t) for t in self.outputs]

    def _ones_of(self, res, shape, dtype):
        """An all-ones DeviceArray (an all-kept mask, uint8 or float), uploaded once per shape and
        dtype in a forward pass: constant in a batch, read but never written (so a forward in
        another thread may share them)."""
        key = (tuple(shape), np.dtype(dtype).str)
        if key not in self._ones:
            self._ones[key] = res.DeviceArray(np.ones(key[0], dtype))
        return self._ones[key]

    def _or_masks(self, res, step, ms, shape):
        """The output mask of a merge (the CPU's compute_mask): the inputs' masks or-ed,
        broadcast as numpy broadcasts them (ranks aligned on the last axis), an input without
        one counting as all kept (Concatenate on the last axis)."""
        if any(m is None for m in ms):
            return self._ones_of(res, shape, np.uint8)
        if all(tuple(m.shape) == tuple(ms[0].shape) for m in ms):
            out = ms[0]
            for m in ms[1:]:
                out = out if m is out else res.r.mask_or(out, m)  # one mask read twice: itself
            return out
        shapes = [tuple(m.shape) for m in ms]
        try:
            out = np.broadcast_shapes(*shapes)
        except ValueError:
            raise ValueError(f'Layer "{step.layer.name}" ({type(step.layer).__name__}): the masks of its inputs, of '
                             f"shapes {', '.join(map(str, shapes))}, do not broadcast together (the or of masks "
                             "broadcasts as numpy does, aligned on the last axis)") from None
        # broadcast: the masks as 0/1 floats added by the merge kernel (which broadcasts), then != 0;
        # numpy aligns masks of different ranks on the last axis: each gets leading 1-axes, and all
        # a leading 1-axis for the kernel's batch, which it does not broadcast
        fs = [self._float_mask(res, m, m.shape).reshape((1,) * (len(out) + 1 - len(sh)) + sh + (1,))
              for m, sh in zip(ms, shapes)]
        summed, _ = res.r.merge("add", fs, None)
        return res.r.masking_mask(summed, 0.0).reshape(out)

    def _concat_masks(self, res, step, ms, xs, axis):
        """The output mask of Concatenate on an axis but the last (the CPU's compute_mask): the
        inputs' masks concatenated along it, an input without one counting as all kept; each
        mask has its input's shape but the last axis."""
        for m, x in zip(ms, xs):
            if m is not None and tuple(m.shape) != tuple(x.shape[:-1]):
                raise NotImplementedError(f"Layer '{step.layer.name}' (Concatenate): a mask of shape {tuple(m.shape)} "
                                          f"for an input of shape {tuple(x.shape)} does not concatenate on the "
                                          "device yet (it takes masks of the input's shape but the last axis)")
        # as 0/1 floats of shape (..., 1): concatenated by the float kernel, then != 0 along the 1
        fs = [self._float_mask(res, m, tuple(x.shape[:-1])) for m, x in zip(ms, xs)]
        return res.r.masking_mask(res.r.concatenate(fs, axis), 0.0)

    def _float_mask(self, res, m, shape):
        """The uint8 mask `m` of `shape` (None: all kept) as 0/1 in the model's float dtype, of
        shape (*shape, 1)."""
        ones = self._ones_of(res, tuple(shape) + (1,), res.dtype)
        return ones if m is None else res.r.apply_mask(ones, m)

    def backward(self, res, saved, dys, stop=frozenset()):
        """From the output gradients `dys` (None where an output has no loss) to every trainable
        weight's (res.set_grad); the model's inputs get none."""
        want, active = {}, []
        for step in self.steps:
            wants = any(want.get(t, False) for t in step.inputs)
            a = wants or any(res.trains(v) for v in step.layer.trainable_weights)
            want.update((t, a) for t in step.outputs)
            active.append((a, wants))
        grads = {}

        def accumulate(t, g):
            grads[t] = g if t not in grads else res.r.add(grads[t], g)

        for t, g in zip(self.outputs, dys):
            if g is not None:
                accumulate(t, g)
        for i in range(len(self.steps) - 1, -1, -1):
            step = self.steps[i]
            dy = grads.pop(step.output, None)
            if len(step.outputs) > 1:  # a list with None where an output gets no gradient
                dy = [dy] + [grads.pop(t, None) for t in step.outputs[1:]]
                dy = None if all(d is None for d in dy) else dy
            is_active, need_dx = active[i]
            if dy is None or not is_active:
                continue
            if step.merge is not None:
                dxs = step.merge.backward(res, dy, saved[i], need_dx)
            else:
                chain = self._chain(step, stop)
                for j in range(len(chain) - 1, -1, -1):
                    dy = chain[j].backward(res, dy, saved[i][j], need_dx or j > 0)
                dxs = [dy]
                if step.n_states:  # (dx, the initial states' gradients; the constants' dropped)
                    dxs = [dy[0]] + [d for k, d in enumerate(dy[1]) if k not in step.constants]
            if need_dx:
                for t, d in zip(step.inputs, dxs):
                    if d is not None and want.get(t, False):
                        accumulate(t, d)
