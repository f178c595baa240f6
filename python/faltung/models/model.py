"""`Model`: the base of Sequential, functional and subclassed models.

A model is itself a Layer brick: `forward` runs its graph (faltung.models.graph.Graph) and
saves each layer call's context, `backward` runs the calls' `backward` in reverse (no
autograd). Subclasses set `self._graph`; the training loop lives in models/trainer.py.
"""
import warnings

import numpy as np

from faltung import backend
from faltung.layers.layer import Layer
from faltung.layers.node import flatten, pack_like
from faltung.models.trainer import Trainer
from faltung.distribution import replica
from faltung.models import summary as summary_utils


class Model(Trainer, Layer):
    """Keras's `Model`. `Model(inputs, outputs)` builds a functional model (see
    faltung.models.functional); subclass it and define `call(x)` using layer calls to get
    a model whose graph is traced from `call` at build time (faltung-only: `call` must
    only call layers, since backward runs the traced graph)."""

    _resident = None  # set per model in __init__ / _set_graph

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from faltung.models.functional import Functional
            return Functional.__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        if args:
            raise TypeError(f"{type(self).__name__}: unexpected positional arguments {args}")
        kwargs.pop("inputs", None), kwargs.pop("outputs", None)
        super().__init__(**kwargs)
        self._graph = None
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._metrics = []
        self._resident = None  # device state when built inside faltung.device("gpu:N") (models/resident.py)

    # -- layers and weights ----------------------------------------------------------
    @property
    def layers(self):
        """Subclassed models: the Layer attributes (before build) or the traced layers."""
        if self.__dict__.get("_graph") is not None:
            return [l for l in self._graph.layers if type(l).__name__ != "InputLayer"]
        return [v for k, v in vars(self).items() if isinstance(v, Layer) and not k.startswith("_")]

    def _all_layers(self):
        """Layers that own weights, in Keras weight order (each layer once)."""
        return self.layers

    @property
    def trainable(self):
        return getattr(self, "_trainable", True)

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for layer in self._all_layers():
            layer.trainable = value

    def _unique(self, weights):
        seen = set()
        return [w for w in weights if not (id(w) in seen or seen.add(id(w)))]

    @property
    def weights(self):
        return self._unique(w for layer in self._all_layers() for w in layer.weights)

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return self._unique(w for layer in self._all_layers() for w in layer.trainable_weights)

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return self._unique(w for layer in self._all_layers() for w in layer.non_trainable_weights)

    variables = weights
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    def get_weights(self):
        return [w.value.copy() for w in self.weights]

    def set_weights(self, weights):
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(f"You called `set_weights(weights)` on layer '{self.name}' with a "
                             f"weight list of length {len(weights)}, but the layer was expecting "
                             f"{len(mine)} weights.")
        values = [np.asarray(w) for w in weights]
        for v, w in zip(mine, values):  # check all before assigning any
            if tuple(w.shape) != tuple(v.shape):
                raise ValueError(f"Layer {v.name.split('/')[0]} weight shape {v.shape} is not "
                                 f"compatible with provided weight shape {w.shape}.")
        for v, w in zip(mine, values):
            v.assign(w)

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', but the "
                             "layer isn't built. You can build it manually via: "
                             "`layer.build(input_shape)`.")
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    def get_layer(self, name=None, index=None):
        if index is not None and name is not None:
            raise ValueError("Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        layers = self.layers
        if index is not None:
            if len(layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(layers)} layers.")
            return layers[index]
        if name is not None:
            for layer in layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[layer.name for layer in layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    # -- the graph's tensors ---------------------------------------------------------------
    def _require_graph(self, what):
        if self._graph is None:
            raise AttributeError(f"Model '{self.name}' has no defined {what} yet: build it "
                                 "(give it an input shape, or call it on data) first.")
        return self._graph

    @property
    def inputs(self):
        return list(self._require_graph("inputs").inputs)

    @property
    def outputs(self):
        return list(self._require_graph("outputs").outputs)

    input = property(lambda self: self._require_graph("input").inputs_struct)
    output = property(lambda self: self._require_graph("output").outputs_struct)

    @property
    def input_names(self):
        g = self._require_graph("inputs")
        if isinstance(g.inputs_struct, dict):
            return sorted(g.inputs_struct)
        return [t._node.layer.name for t in g.inputs]

    @property
    def output_names(self):
        """Keras's output names: the dict keys when outputs were given as a dict, else the
        names of the layers that made them."""
        g = self._require_graph("outputs")
        if isinstance(g.outputs_struct, dict):
            return sorted(g.outputs_struct)
        return [t._node.layer.name for t in g.outputs]

    def _set_graph(self, inputs, outputs):
        from faltung.models.graph import Graph
        self._graph = Graph(inputs, outputs)
        ins, outs = self._graph.inputs, self._graph.outputs
        self.input_shape = ins[0].shape if len(ins) == 1 else [t.shape for t in ins]
        self.output_shape = outs[0].shape if len(outs) == 1 else [t.shape for t in outs]
        self.built = True
        from faltung.models import resident
        resident.attach(self)  # inside a device scope: weights to the device

    # -- subclassed models: graph traced from `call` ------------------------------------
    def build(self, input_shape):
        from faltung.layers.input_layer import Input
        if type(self).call is Layer.call:
            raise NotImplementedError(f"Model {self.name}: subclasses of `Model` must define "
                                      "`call(x)`, or use `Model(inputs, outputs)` / `Sequential`.")
        from faltung.layers.node import is_shape
        inp = (Input(batch_shape=tuple(input_shape)) if is_shape(input_shape)
               else [Input(batch_shape=tuple(s)) for s in input_shape])
        try:
            out = self.call(inp)
        except TypeError as e:
            raise TypeError(f"Model {self.name}: faltung traces `call` once on a symbolic input, "
                            f"so `call` may only call layers (no array math on their outputs). "
                            f"Tracing failed with: {e}") from e
        self._set_graph(inp, out)

    def compute_output_shape(self, input_shape):
        from faltung.layers.node import is_shape
        if not self.built:
            self.build(input_shape)
        batch = input_shape[0] if is_shape(input_shape) and input_shape else None
        return self._pack_outputs([(batch,) + tuple(t.shape[1:]) for t in self._graph.outputs])

    # -- data in the model's structure ---------------------------------------------------
    def _flat_data(self, data, what="x"):
        """User data (an array, a list/tuple, a dict keyed by input name) as a flat list
        aligned with `self.inputs`, each converted to its input's dtype."""
        g = self._graph
        names = self.input_names
        n = len(g.inputs)
        if isinstance(data, dict):
            missing = [k for k in names if k not in data]
            if missing:
                raise ValueError(f'Missing data for input "{missing[0]}". You passed a data '
                                 f"dictionary with keys {sorted(data)}. Expected the following "
                                 f"keys: {names}")
            extra = sorted(set(data) - set(names))
            if extra:
                warnings.warn(f"Model '{self.name}': ignoring the data for unknown input(s) "
                              f"{extra}; the inputs are {names}.")
            flat = [data[k] for k in names]
        elif isinstance(data, (list, tuple)) and (n > 1 or data and hasattr(data[0], "shape")):
            flat = list(data)
        else:
            flat = [data]
        if len(flat) != n:
            if isinstance(g.inputs_struct, dict):
                raise ValueError(f'Layer "{self.name}" expects {n} named input(s) with keys '
                                 f"{names}, but it received {len(flat)} input tensors. Pass "
                                 "inputs as a dict, e.g. `layer({" +
                                 ", ".join(f"'{k}': ..." for k in names) + "})`.")
            raise ValueError(f'Layer "{self.name}" expects {n} input(s), but it received '
                             f"{len(flat)} input tensors. Inputs received: "
                             f"{[getattr(a, 'shape', type(a).__name__) for a in flat]}")
        out = []
        for t, a, name in zip(g.inputs, flat, names):
            if t.dtype == "float32":
                a = backend.as_float_array(a, f"{what} ({name})")
            else:
                a = np.asarray(a)
                if a.dtype.kind not in "biu":
                    raise TypeError(f"Model '{self.name}': input '{name}' takes integers, "
                                    f"received dtype {a.dtype}")
                a = np.ascontiguousarray(a, dtype=np.int32)
            if a.ndim != len(t.shape) or any(e is not None and e != s
                                             for e, s in zip(t.shape[1:], a.shape[1:])):
                for node in g.nodes:  # the first layer's own check names it (as Keras)
                    if node.args_tensors == [t] and node.layer.built:
                        node.layer.check_input(a)
                raise ValueError(f'Input "{name}" of model "{self.name}" is incompatible with '
                                 f"the model: expected shape={t.shape}, found shape={a.shape}")
            out.append(a)
        return out

    # -- brick interface ---------------------------------------------------------------
    def forward(self, inputs, training=False, mask=None):
        g = self._graph
        flat = flatten(inputs) if len(g.inputs) > 1 or isinstance(inputs, dict) else [inputs]
        masks = None if mask is None else (flatten(mask) if len(g.inputs) > 1 else [mask])
        inference = bool(training) and self._context().inference  # called with training=False
        outs, _, ctxs = g.forward(flat, training, masks, inference)
        if training:
            self.save_for_backward(ctxs)
        return self._pack_outputs(outs)

    def _pack_outputs(self, flat):
        struct = self._graph.outputs_struct
        return flat[0] if not isinstance(struct, (list, tuple, dict)) else pack_like(struct, flat)

    def backward(self, dy, need_dx=True):
        (ctxs,) = self.saved_for_backward()
        g = self._graph
        flat_dy = [dy] if not isinstance(g.outputs_struct, (list, tuple, dict)) else flatten(dy)
        dx = g.backward(ctxs, flat_dy, need_dx)
        if not need_dx:
            return None
        return dx[0] if not isinstance(g.inputs_struct, (list, tuple, dict)) else \
            pack_like(g.inputs_struct, dx)

    def __call__(self, inputs, training=None, mask=None, **kwargs):
        from faltung.layers import node as N
        if not any(isinstance(t, N.KerasTensor) for t in N.flatten(inputs)) and self.built:
            flat = self._flat_data(inputs)
            if self._resident is not None:
                if training:
                    raise NotImplementedError(f"Model '{self.name}' is device-resident: train it with fit or "
                                              "train_on_batch, not model(x, training=True)")
                return self._pack_outputs(self._resident.predict_batch(flat))
            return self.forward(flat[0] if len(flat) == 1 else flat, training=bool(training),
                                mask=mask)
        return super().__call__(inputs, training=training, mask=mask, **kwargs)

    def _ensure_built(self, x):
        if not self.built:
            shapes = [(None,) + tuple(np.shape(a)[1:]) for a in flatten(x)]
            self.build(shapes[0] if len(shapes) == 1 else shapes)

    # -- summary and saving ----------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print Keras 3's summary table (see faltung.models.summary)."""
        summary_utils.print_summary(self, line_length=line_length, positions=positions,
                                    print_fn=print_fn)

    def save_weights(self, filepath, overwrite=True):
        from faltung.models import saving
        if not replica.is_writer():  # DataParallel: rank 0 writes
            return
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        from faltung.models import saving
        saving.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def save(self, filepath, overwrite=True):
        from faltung.models import saving
        if not replica.is_writer():  # DataParallel: rank 0 writes
            return
        saving.save_model(self, filepath, overwrite=overwrite)

    def to_json(self, **kwargs):
        from faltung.models import saving
        return saving.model_to_json(self, **kwargs)

    def get_compile_config(self):
        if not self.compiled:
            return None
        from faltung.models.saving import serialize_object

        def spec(v):  # strings stay strings, objects become Keras configs
            if v is None or isinstance(v, (str, int, float)):
                return v
            if isinstance(v, (list, tuple)):
                return [spec(x) for x in v]
            if isinstance(v, dict) and "class_name" not in v:
                return {k: spec(x) for k, x in v.items()}
            return v if isinstance(v, dict) else serialize_object(v)

        a = self._compile_args
        return {"optimizer": serialize_object(self.optimizer), "loss": spec(a["loss"]),
                "metrics": spec(a["metrics"]), "loss_weights": spec(a["loss_weights"]),
                "weighted_metrics": spec(a["weighted_metrics"])}
