"""`Model`: the base of Sequential, functional and subclassed models.

A model is itself a Layer brick: `forward` runs its layers in order, `backward` runs their
`backward` in reverse (no autograd). Subclasses provide `_forward(x, training)`,
`_backward(dy, need_dx)` and `layers`; the training loop lives in models/trainer.py.
"""
import numpy as np

from faltung.layers.layer import Layer
from faltung.models.graph import GraphMixin
from faltung.models.trainer import Trainer
from faltung.models import summary as summary_utils


class Model(Trainer, GraphMixin, Layer):
    """Keras's `Model`. `Model(inputs, outputs)` builds a functional model (see
    faltung.models.functional); subclass it and define `call(x)` using layer calls to get
    a model whose graph is traced from `call` at build time (faltung-only: `call` must
    only call layers, since backward runs the traced graph)."""

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
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._metrics = []
        self._loss_weight = 1.0

    # -- layers and weights ----------------------------------------------------------
    @property
    def layers(self):
        """Subclassed models: the Layer attributes (before build) or the traced layers."""
        if getattr(self, "_nodes", None) is not None:
            return [n.layer for n in self._nodes]
        return [v for k, v in vars(self).items() if isinstance(v, Layer) and not k.startswith("_")]

    def _all_layers(self):
        """Layers that own weights, in Keras weight order."""
        return self.layers

    @property
    def trainable(self):
        return getattr(self, "_trainable", True)

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for layer in self._all_layers():
            layer.trainable = value

    @property
    def weights(self):
        return [w for layer in self._all_layers() for w in layer.weights]

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [w for layer in self._all_layers() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [w for layer in self._all_layers() for w in layer.non_trainable_weights]

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
            v.value[...] = w

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
        if index is not None:
            if len(self.layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[layer.name for layer in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    # -- subclassed models: graph traced from `call` ------------------------------------
    def build(self, input_shape):
        from faltung.layers.input_layer import Input
        if type(self).call is Layer.call:
            raise NotImplementedError(f"Model {self.name}: subclasses of `Model` must define "
                                      "`call(x)`, or use `Model(inputs, outputs)` / `Sequential`.")
        inp = Input(batch_shape=tuple(input_shape))
        try:
            out = self.call(inp)
        except TypeError as e:
            raise TypeError(f"Model {self.name}: faltung traces `call` once on a symbolic input, "
                            f"so `call` may only call layers (no array math on their outputs). "
                            f"Tracing failed with: {e}") from e
        self._set_graph(inp, out)

    def compute_output_shape(self, input_shape):
        if not self.built:
            self.build(input_shape)
        return self.output_shape

    def _forward(self, x, training):
        return self._graph_forward(x, training)

    def _backward(self, dy, need_dx):
        return self._graph_backward(dy, need_dx)

    # -- brick interface ---------------------------------------------------------------
    def forward(self, x, training=False):
        return self._forward(x, training)

    def backward(self, dy, need_dx=True):
        return self._backward(dy, need_dx)

    def __call__(self, x, training=False):
        return super().__call__(x, training=training)

    def _ensure_built(self, x):
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))

    def _check_data(self, x):
        """Runs the first layer's input check on the whole array before any batch."""
        first = next((l for l in self.layers if type(l).__name__ != "InputLayer"), None)
        if first is not None and first.built:
            first.check_input(x)

    # -- summary and saving ----------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print Keras 3's summary table (see faltung.models.summary)."""
        summary_utils.print_summary(self, line_length=line_length, positions=positions,
                                    print_fn=print_fn)

    def save_weights(self, filepath, overwrite=True):
        from faltung.models import saving
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        from faltung.models import saving
        saving.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def save(self, filepath, overwrite=True):
        from faltung.models import saving
        saving.save_model(self, filepath, overwrite=overwrite)

    def to_json(self, **kwargs):
        from faltung.models import saving
        return saving.model_to_json(self, **kwargs)

    def get_compile_config(self):
        if not self.compiled:
            return None
        from faltung.models.saving import serialize_object
        cfg = {"optimizer": serialize_object(self.optimizer),
               "loss": serialize_object(self.loss),
               "metrics": [m.name for m in self._metrics] or None,
               "loss_weights": None if self._loss_weight == 1.0 else self._loss_weight}
        return cfg
