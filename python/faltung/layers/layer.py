"""The brick every layer is: `build` creates weights, `forward` computes (and saves what
`backward` needs when `training=True`), `backward` turns dL/dy into dL/dx and stores the
weight gradients in each `Variable.grad`.

Keras has no `backward`; it is faltung's addition (the seeds' "Lego" bricks), which is why
faltung needs no autograd tape.

The brick contract:
- `forward(inputs, training=False, **kwargs) -> outputs`. `inputs` is one array, or a list
  for layers that take several (merge layers); `outputs` one array, or a list for layers
  that return several. Layers that take a mask accept `mask=`.
- During a training forward a layer calls `self.save_for_backward(*values)`; its backward
  reads them back with `self.saved_for_backward()`, which raises one uniform error when no
  training forward of the same call saved anything. Layers whose computation differs in
  training (dropout, batch norm) ask `self.behaves_as_training(training)`, which is False
  for a call made with training=False inside a training step: such a call computes as at
  inference and still saves for its backward.
- `backward(dy, need_dx=True) -> dx`: dy has the structure of the outputs (a list with None
  for outputs that received no gradient), dx the structure of the inputs. It sets the
  `grad` of the layer's weights (assigning, not adding: the graph sums the grads of a layer
  used several times). A layer called with tensors in keyword arguments (an RNN's
  `initial_state`) returns `(dx, {name: gradient structure})`.

Saved values belong to one call, not to the layer: the graph runner gives every layer call
(graph node) its own `CallContext` (`run_forward` / `run_backward`), so a layer used twice
keeps both calls' values and inference in another thread never disturbs training. A layer
called directly (`layer.forward(x, training=True)`, then `layer.backward(dy)`) saves into a
context of its own per thread, which the next direct training forward replaces.
"""
import contextlib
import threading

import numpy as np

from faltung import backend, constraints, regularizers
from faltung.ops.argument_validation import check_output_size

class _Active(threading.local):
    """Per thread: the layer call it is running (`layer`, `ctx`) and the activity penalties of
    the step being collected (`activity_losses`, collect_activity_losses; None elsewhere)."""
    layer = ctx = activity_losses = None


_active = _Active()


class CallContext:
    """What one call of a layer saved for its backward (`saved` is None until then).
    `inference` marks a call made with training=False inside a training step (Keras's
    `base(x, training=False)` for fine-tuning): the layer behaves as at inference (batch
    norm uses its moving statistics, dropout is off) but still saves for its backward.
    `activity`: the outputs whose activity penalty backward differentiates (the layer's own
    regularizer); `outputs_spec`: (shape, dtype) of each output when a penalty lies at or under
    this call, so that its backward runs with zeros for outputs no gradient reaches."""
    __slots__ = ("saved", "inference", "activity", "outputs_spec")

    def __init__(self, inference=False):
        self.saved = None
        self.inference = inference
        self.activity = None
        self.outputs_spec = None


@contextlib.contextmanager
def collect_activity_losses():
    """Within it, every layer call (run_forward) of a layer with an `activity_regularizer`
    appends to the yielded list, as Keras's Layer.__call__ adds to the layer's losses, the
    penalty of each float output divided by its batch size; a training call keeps its outputs
    so that its backward adds the penalty's gradient to dy, and marks the calls it runs under
    (a wrapper's, a nested model's), whose backward must then run even where no loss reaches
    their outputs. The training loop collects the losses of each step (train and test);
    elsewhere (predict, direct calls) none is computed."""
    prev = _active.activity_losses
    _active.activity_losses = losses = []
    try:
        yield losses
    finally:
        _active.activity_losses = prev


def _flat_outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _is_float(o):
    return isinstance(o, np.ndarray) and o.dtype.kind == "f"


def _batch(o):
    return o.shape[0] if o.ndim and o.shape[0] else 1


def _enter(layer, ctx):
    prev = (_active.layer, _active.ctx)
    _active.layer, _active.ctx = layer, ctx
    return prev


def run_forward(layer, ctx, inputs, training=False, own_activity=True, **kwargs):
    """layer.forward(inputs) with its saved values going to `ctx` (a CallContext). With
    own_activity=False the layer's activity_regularizer is not applied to this call
    (TimeDistributed, which Keras runs through the inner layer's `call`)."""
    ctx.outputs_spec = None  # (set by calls under this one that have a penalty)
    prev = _enter(layer, ctx)
    try:
        out = layer.forward(inputs, training=training, **kwargs)
    finally:
        _active.layer, _active.ctx = prev
    losses = _active.activity_losses
    if losses is None:
        return out
    reg = layer.activity_regularizer if own_activity else None
    if reg is not None:
        losses += [float(reg(o)) / _batch(o) for o in _flat_outputs(out) if _is_float(o)]
    if training and (reg is not None or ctx.outputs_spec is not None):
        ctx.activity = out if reg is not None else None
        ctx.outputs_spec = [(o.shape, o.dtype) if _is_float(o) else None for o in _flat_outputs(out)]
        if prev[1] is not None and prev[1].outputs_spec is None:
            prev[1].outputs_spec = []  # the enclosing call holds a penalty (its run_forward fills it)
    return out


def run_backward(layer, ctx, dy, need_dx=True):
    """layer.backward(dy) on what the forward of `ctx` saved; frees those values after. Where a
    penalty lies at or under the call, outputs without a gradient get zeros, and the layer's
    own penalty's gradient is added to dy."""
    spec = ctx.outputs_spec
    if spec is not None:
        dys = _flat_outputs(dy) if dy is not None else [None] * len(spec)
        dys = [np.zeros(*sd) if d is None and sd is not None else d for d, sd in zip(dys, spec)]
        if ctx.activity is not None:
            reg = layer.activity_regularizer
            dys = [d + np.asarray(reg.grad(o), o.dtype) / o.dtype.type(_batch(o)) if _is_float(o) else d
                   for d, o in zip(dys, _flat_outputs(ctx.activity))]
        ctx.activity = ctx.outputs_spec = None
        dy = dys if isinstance(dy, (list, tuple)) or len(dys) > 1 else dys[0]
    prev = _enter(layer, ctx)
    try:
        return layer.backward(dy, need_dx=need_dx)
    finally:
        _active.layer, _active.ctx = prev
        ctx.saved = None


class Variable:
    """A weight: `value` (a float32 ndarray; `dtype=np.float64` serves float64 test bricks),
    `grad` (set by the owning layer's backward), `trainable`. Mirrors the parts of
    `keras.Variable` that models use. `regularizer` and `constraint` are always resolved
    objects or None: whatever is set (a name, a config dict, an object) goes through
    `regularizers.get` / `constraints.get` once, when it is set.

    The weight of a device-resident model (faltung.models.resident) lives in device memory;
    `value` is then its host copy, refreshed when read after training steps; write it through
    `assign` (or set_weights), which uploads it."""

    _resident = None  # the Resident holding this weight on a device, if any

    def __init__(self, value, name, trainable=True, regularizer=None, constraint=None,
                 dtype=np.float32):
        self.value = np.asarray(value, dtype=dtype, order="C")  # a scalar weight stays 0-d
        self.grad = None
        self.name = name
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def regularizer(self):
        return self._regularizer

    @regularizer.setter
    def regularizer(self, identifier):
        self._regularizer = regularizers.get(identifier)

    @property
    def constraint(self):
        return self._constraint

    @constraint.setter
    def constraint(self, identifier):
        self._constraint = constraints.get(identifier)

    @property
    def value(self):
        if self._resident is not None and self._resident.host_stale:
            self._resident.pull()
        return self._value

    @value.setter
    def value(self, value):
        self._value = value
        if self._resident is not None:
            self._resident.push(self)

    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    path = property(lambda self: self.name)

    def numpy(self):
        return self.value

    def assign(self, value):
        value = np.asarray(value, dtype=self.value.dtype)
        if value.shape != self.value.shape:
            raise ValueError(f"Variable `{self.name}`: expected a value of shape {self.value.shape}, "
                             f"received shape {value.shape}")
        self.value[...] = value
        if self._resident is not None:
            self._resident.push(self)

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.name}, shape={self.shape}, dtype={self.value.dtype}>"


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
        self._inbound_nodes = []  # symbolic calls (faltung.layers.node.Node)

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
            v.assign(w)

    def count_params(self):
        return int(sum(int(np.prod(w.shape)) for w in self._weights))

    # -- shape logic -----------------------------------------------------------------
    def build(self, input_shape):
        """Create weights for `input_shape` (with None for the batch). Subclasses call
        super().build(input_shape) at the end."""
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        check_output_size(self, self.output_shape)
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

    # -- what backward needs (see the module docstring) ------------------------------
    def _context(self):
        if _active.layer is self:
            return _active.ctx
        local = self.__dict__.get("_direct")
        if local is None:
            local = self.__dict__.setdefault("_direct", threading.local())
        ctx = getattr(local, "ctx", None)
        if ctx is None:
            ctx = local.ctx = CallContext()
        return ctx

    def save_for_backward(self, *values):
        """Keep `values` for this call's backward (call it only when training)."""
        self._context().saved = values

    def saved_for_backward(self):
        """The tuple this call's training forward saved; ValueError if there is none."""
        saved = self._context().saved
        if saved is None:
            raise ValueError(f"Layer '{self.name}': backward() needs a preceding forward(x, "
                             "training=True) of the same call, and none saved anything (no "
                             "training forward, or a backward already used and freed it).")
        return saved

    def behaves_as_training(self, training):
        """Whether this call computes as in training (batch statistics, dropout): `training`,
        unless the call runs in inference mode inside a training step (CallContext)."""
        return bool(training) and not self._context().inference

    def has_saved(self):
        return self._context().saved is not None

    def release_cache(self):
        """Drop what the last direct forward(training=True) saved (faltung addition).
        Graph runs free each call's values right after its backward themselves, so a
        training step frees each layer's saved activations as the backward pass leaves it."""
        self._context().saved = None

    def call(self, x, training=False):
        return self.forward(x, training=training)

    # a regularizer of the layer's outputs (layers that take `activity_regularizer` set it):
    # run_forward adds its penalty to a training or test step's loss
    activity_regularizer = None

    # -- masks (Keras's protocol) ------------------------------------------------------
    supports_masking = False

    def compute_mask(self, inputs, mask=None):
        """The mask of this call's output: layers that support masking pass the input mask
        on (Keras's default), the others drop it. Layers that make or consume masks
        (Embedding, Masking, pooling over time) override it."""
        return mask if self.supports_masking else None

    # -- calling -----------------------------------------------------------------------
    output_dtype = "float32"  # dtype of the symbolic outputs

    def convert_input(self, x):
        """An array argument of an eager call as the dtype `forward` takes (float32)."""
        from faltung.layers.node import map_structure
        return map_structure(lambda a: backend.as_float_array(a, f"{self.name} input"), x)

    def __call__(self, inputs, training=None, mask=None, **kwargs):
        """On KerasTensors: records the call (functional API) and returns output tensors.
        On arrays: builds the layer if needed and returns forward(inputs)."""
        from faltung.layers import node as N
        if mask is not None:
            kwargs["mask"] = mask
        if any(isinstance(t, N.KerasTensor) for t in N.flatten((inputs, kwargs))):
            if training is not None:
                kwargs["training"] = training
            return N.symbolic_call(self, inputs, kwargs)
        x = self.convert_input(inputs)
        if not self.built:
            self.build(N.map_structure(lambda a: (None,) + tuple(a.shape[1:]), x))
        if "mask" in kwargs:
            from faltung.models.graph import _takes_mask
            if not _takes_mask(self):  # as Keras: a layer without a mask argument ignores it
                kwargs.pop("mask")
        return self.forward(x, training=bool(training), **kwargs)

    def check_input_shape(self, shapes):
        """A symbolic call of a built layer: rank and known sizes must match the shapes it
        was built for (Keras's input_spec check), else ValueError naming the layer."""
        from faltung.layers.node import is_shape
        built = self.input_shape
        if built is None:
            return
        exp = [built] if is_shape(built) else list(built)
        got = [shapes] if is_shape(shapes) else list(shapes)
        ok = len(exp) == len(got) and all(
            is_shape(e) and is_shape(g) and len(e) == len(g)
            and all(a is None or b is None or a == b for a, b in zip(e[1:], g[1:]))
            for e, g in zip(exp, got))
        if not ok:
            def shown(s):
                return tuple(s) if is_shape(s) else [tuple(x) for x in s]
            raise ValueError(f'Input of layer "{self.name}" is incompatible with the layer: '
                             f"expected shape={shown(built)}, found shape={shown(shapes)}")

    # -- symbolic history (Keras's layer.input / layer.output) ---------------------------
    def _node_attr(self, attr, what):
        nodes = self.__dict__.get("_inbound_nodes")
        if not nodes:
            raise AttributeError(f"The layer {self.name} has never been called and thus has "
                                 f"no defined {what}.")
        return getattr(nodes[0], attr)

    input = property(lambda self: self._node_attr("call_args", "input"),
                     doc="The symbolic input of the layer's first call.")
    output = property(lambda self: self._node_attr("outputs", "output"),
                      doc="The symbolic output of the layer's first call.")

    # -- config ----------------------------------------------------------------------
    def get_config(self):
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": "float32"}
        return cfg

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class Composite(Layer):
    """A layer whose weights live on inner layers (an RNN's cell, a wrapper's layers), listed
    by `_inner_layers()`; weights, grads and get/set_weights go through them in that order."""

    def _inner_layers(self):
        raise NotImplementedError

    @property
    def weights(self):
        return [w for l in self._inner_layers() for w in l.weights]

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [w for l in self._inner_layers() for w in l.trainable_weights]

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [w for l in self._inner_layers() for w in l.non_trainable_weights]

    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights
    variables = weights

    def get_weights(self):
        return [w.value.copy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self.weights):
            raise ValueError(f"Layer {self.name}: expected a list of {len(self.weights)} "
                             f"weights, received {len(weights)}")
        for layer in self._inner_layers():
            n = len(layer.weights)
            layer.set_weights(weights[:n])
            weights = weights[n:]

    def count_params(self):
        return int(sum(int(np.prod(w.shape)) for w in self.weights))
