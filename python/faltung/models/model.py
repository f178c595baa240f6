"""`Model`: the training loop shared by Sequential and functional models.

A model is itself a Layer brick: `forward` runs its layers in order, `backward` runs their
`backward` in reverse (no autograd). Subclasses provide `_forward(x, training)`,
`_backward(dy, need_dx)` and `layers`.

Train step: y_pred = forward(x, training=True); (loss, dL/dy_pred) from the loss object;
regularization penalties added to the loss (value) and to each variable's grad (after
backward); optimizer.apply(trainable variables). Logged "loss" and metrics are running
means over the epoch (the loss weighted by batch size), as Keras shows them.
"""
import math

import numpy as np

from faltung import backend
from faltung.layers.layer import Layer
from faltung.models.graph import GraphMixin
from faltung.models import summary as summary_utils


def _as_labels(y, what="y"):
    """y as an ndarray: float data as float32, integer/bool labels as int32."""
    try:
        arr = np.asarray(y)
    except Exception as e:
        raise TypeError(f"Expected numeric data for `{what}`, received {type(y).__name__}") from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Expected numeric data for `{what}`, received an array of dtype {arr.dtype}")
    return arr.astype(np.int32) if arr.dtype.kind in "biu" else arr.astype(np.float32, copy=False)


def _batches(n, batch_size, shuffle):
    idx = np.random.permutation(n) if shuffle else np.arange(n)
    return [idx[i:i + batch_size] for i in range(0, n, batch_size)]


def _take(a, idx):
    return None if a is None else a[idx]


class Model(GraphMixin, Layer):
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

    # -- compile -----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Configure training. Strings or objects for optimizer, loss and metrics.
        run_eagerly/steps_per_execution/jit_compile are accepted and ignored (faltung
        always runs eagerly)."""
        from faltung import losses, metrics as metrics_mod, optimizers
        self.optimizer = optimizers.get(optimizer)
        if isinstance(loss, dict) and "class_name" not in loss:  # {output_name: loss}
            loss = list(loss.values())
        if isinstance(loss, (list, tuple)):
            if len(loss) != 1:
                raise ValueError("faltung models have one output; pass one loss. "
                                 f"Received: loss={loss}")
            loss = loss[0]
        self.loss = None if loss is None else losses.get(loss)
        if isinstance(metrics, dict):
            metrics = [m for ms in metrics.values() for m in (ms if isinstance(ms, (list, tuple)) else [ms])]
        if isinstance(loss_weights, (list, tuple)):
            if len(loss_weights) != 1:
                raise ValueError("faltung models have one output; `loss_weights` must hold one "
                                 f"value. Received: loss_weights={loss_weights}")
            loss_weights = loss_weights[0]
        if isinstance(loss_weights, dict):
            loss_weights = list(loss_weights.values())[0] if loss_weights else None
        self._loss_weight = 1.0 if loss_weights is None else float(loss_weights)
        self._metrics = []
        for m in list(metrics or []) + list(weighted_metrics or []):
            self._metrics.append(metrics_mod.get(m))  # a string metric is named by it
        self._compile_args = dict(optimizer=optimizer, loss=loss, metrics=metrics,
                                  loss_weights=loss_weights)
        self.compiled = True
        self.stop_training = False

    @property
    def metrics(self):
        return list(self._metrics)

    @property
    def metrics_names(self):
        return ["loss"] + [m.name for m in self._metrics]

    def reset_metrics(self):
        for m in self._metrics:
            m.reset_state()

    def _assert_compiled(self, method):
        if not self.compiled:
            raise ValueError(f"You must call `compile()` before calling `{method}()`.")

    # -- data handling -----------------------------------------------------------------
    def _prepare(self, x, y, sample_weight=None, class_weight=None):
        if x is None:
            raise ValueError("Unexpected value for `x`: None. Expected a NumPy array.")
        if len(self.layers) == 0:
            self._raise_empty()
        x = backend.as_float_array(x, "x")
        if x.ndim == 0:
            raise ValueError(f"Expected `x` with a batch dimension, received a scalar.")
        n = x.shape[0]
        if y is not None:
            y = _as_labels(y, "y")
            if y.ndim == 0 or y.shape[0] != n:
                ys = y.shape[0] if y.ndim else "scalar"
                raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain "
                                 f"the same number of samples. 'x' sizes: {n} 'y' sizes: {ys}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, np.float32)
            if sample_weight.shape[:1] != (n,):
                raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain "
                                 f"the same number of samples. 'x' sizes: {n} "
                                 f"'sample_weight' sizes: {sample_weight.shape[0] if sample_weight.ndim else 'scalar'}")
        if class_weight is not None and y is not None:
            cls = y.reshape(n, -1)
            cls = cls[:, 0] if cls.shape[1] == 1 else np.argmax(cls, axis=1)
            cw = np.array([class_weight.get(int(c), 1.0) for c in cls], np.float32)
            sample_weight = cw if sample_weight is None else sample_weight * cw
        return x, y, sample_weight

    def _raise_empty(self):
        raise ValueError(f"Model {self.name} cannot be built because it has no layers. "
                         "Call `model.add(layer)`.")

    # -- loss and steps ----------------------------------------------------------------
    @staticmethod
    def _regularizer_of(v):
        reg = getattr(v, "regularizer", None)
        if isinstance(reg, (str, dict)):  # a layer that stored the identifier itself
            from faltung import regularizers
            reg = v.regularizer = regularizers.get(reg)
        return reg

    def _regularization(self):
        total = 0.0
        for v in self.weights:
            reg = self._regularizer_of(v)
            if reg is not None:
                total += float(reg(v.value))
        return total

    def _add_regularization_grads(self):
        for v in self.trainable_weights:
            reg = self._regularizer_of(v)
            if reg is not None and hasattr(reg, "grad"):
                g = np.asarray(reg.grad(v.value), np.float32)
                v.grad = g if v.grad is None else v.grad + g

    def _require_loss(self):
        if self.loss is None:
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")

    def _train_batch(self, x, y, sw):
        self._require_loss()
        for v in self.trainable_weights:
            v.grad = None
        y_pred = self._forward(x, True)
        loss, dy = self.loss.value_and_grad(y, y_pred, sample_weight=sw)
        loss = float(loss) * self._loss_weight + self._regularization()
        dy = np.asarray(dy, np.float32)
        if self._loss_weight != 1.0:
            dy = dy * np.float32(self._loss_weight)
        if self.trainable_weights:
            self._backward(dy, False)
            self._add_regularization_grads()
            self.optimizer.apply(self.trainable_weights)
        for m in self._metrics:
            m.update_state(y, y_pred, sample_weight=sw)
        return loss

    def _test_batch(self, x, y, sw):
        self._require_loss()
        y_pred = self._forward(x, False)
        loss = float(self.loss(y, y_pred, sample_weight=sw)) * self._loss_weight
        loss += self._regularization()
        for m in self._metrics:
            m.update_state(y, y_pred, sample_weight=sw)
        return loss

    def _logs(self, loss_sum, count):
        logs = {"loss": loss_sum / max(count, 1)}
        logs.update({m.name: float(m.result()) for m in self._metrics})
        return dict(sorted(logs.items()))  # Keras sorts the log keys

    # -- public training API -------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train for `epochs` epochs; returns a `History`. validation_split takes the LAST
        fraction of the samples (before shuffling), as Keras does."""
        from faltung.callbacks import CallbackList
        self._assert_compiled("fit")
        self._require_loss()
        x, y, sample_weight = self._prepare(x, y, sample_weight, class_weight)
        if y is None:
            raise ValueError("`fit` needs targets: pass `y`.")
        batch_size = 32 if batch_size is None else int(batch_size)
        if validation_data is None and validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError("`validation_split` must be in [0, 1). "
                                 f"Received: validation_split={validation_split}")
            n = x.shape[0]
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"Training data contains {n} samples, which is not sufficient to "
                                 "split it into a validation and training set as specified by "
                                 f"`validation_split={validation_split}`. Either provide more data, "
                                 "or a different value for the `validation_split` argument.")
            val = (x[split:], y[split:], _take(sample_weight, slice(split, None)))
            x, y, sample_weight = x[:split], y[:split], _take(sample_weight, slice(None, split))
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("`validation_data` should be a tuple `(x_val, y_val)` or "
                                 f"`(x_val, y_val, val_sample_weight)`. Received: {validation_data!r}")
            val = self._prepare(*validation_data)
        else:
            val = None
        self._ensure_built(x)
        self._check_data(x)
        n = x.shape[0]
        steps = steps_per_epoch or max(1, math.ceil(n / batch_size))
        verbose = 1 if verbose == "auto" else verbose
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                           verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        cbs.on_train_begin()
        queue = []
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            loss_sum, count = 0.0, 0
            if steps_per_epoch is None:
                queue = _batches(n, batch_size, shuffle)
            for step in range(steps):
                if not queue:
                    queue = _batches(n, batch_size, shuffle)
                idx = queue.pop(0) if steps_per_epoch else queue[step]
                cbs.on_train_batch_begin(step)
                bl = self._train_batch(x[idx], y[idx], _take(sample_weight, idx))
                loss_sum += bl * len(idx)
                count += len(idx)
                logs = self._logs(loss_sum, count)
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            logs = self._logs(loss_sum, count)
            if val is not None and (epoch + 1) % validation_freq == 0:
                vl = self._evaluate(val, validation_batch_size or batch_size, cbs, validation_steps)
                logs.update({"val_" + k: v for k, v in vl.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        from faltung.callbacks import History
        hist = next((c for c in cbs.callbacks if isinstance(c, History)), self.history)
        hist.set_model(self)
        self.history = hist
        return hist

    def _evaluate(self, data, batch_size, cbs, steps=None):
        x, y, sw = data
        self.reset_metrics()
        batches = _batches(x.shape[0], batch_size, False)[:steps]
        cbs.on_test_begin()
        loss_sum, count = 0.0, 0
        for step, idx in enumerate(batches):
            cbs.on_test_batch_begin(step)
            loss_sum += self._test_batch(x[idx], y[idx], _take(sw, idx)) * len(idx)
            count += len(idx)
            logs = self._logs(loss_sum, count)
            cbs.on_test_batch_end(step, logs)
        logs = self._logs(loss_sum, count)
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) over the data: a scalar when there are no metrics, else
        [loss, metric1, ...] (a dict with return_dict=True)."""
        from faltung.callbacks import CallbackList
        self._assert_compiled("evaluate")
        self._require_loss()
        x, y, sample_weight = self._prepare(x, y, sample_weight)
        if y is None:
            raise ValueError("`evaluate` needs targets: pass `y`.")
        self._ensure_built(x)
        self._check_data(x)
        batch_size = 32 if batch_size is None else int(batch_size)
        n_steps = math.ceil(x.shape[0] / batch_size) if steps is None else steps
        verbose = 1 if verbose == "auto" else verbose
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=n_steps)
        logs = self._evaluate((x, y, sample_weight), batch_size, cbs, steps)
        if return_dict:
            return logs
        values = [logs["loss"]] + [logs[m.name] for m in self._metrics]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for x, computed in batches of `batch_size` (default 32)."""
        from faltung.callbacks import CallbackList
        x, _, _ = self._prepare(x, None)
        self._ensure_built(x)
        self._check_data(x)
        batch_size = 32 if batch_size is None else int(batch_size)
        batches = _batches(x.shape[0], batch_size, False)[:steps]
        verbose = 1 if verbose == "auto" else verbose
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=len(batches))
        cbs.on_predict_begin()
        outs = []
        for step, idx in enumerate(batches):
            cbs.on_predict_batch_begin(step)
            outs.append(self._forward(x[idx], False))
            cbs.on_predict_batch_end(step, {"outputs": outs[-1]})
        cbs.on_predict_end()
        if not outs:
            return np.zeros((0,) + tuple(self.output_shape[1:]), np.float32)
        return np.concatenate(outs, axis=0)

    def predict_on_batch(self, x):
        x, _, _ = self._prepare(x, None)
        self._ensure_built(x)
        self._check_data(x)
        return self._forward(x, False)

    def _batch_result(self, loss, return_dict):
        logs = self._logs(loss, 1)
        if return_dict:
            return logs
        values = [logs["loss"]] + [logs[m.name] for m in self._metrics]
        return values[0] if len(values) == 1 else values

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; loss, or [loss, metrics...]. Metrics
        accumulate across calls until `reset_metrics()` (as Keras)."""
        self._assert_compiled("train_on_batch")
        x, y, sw = self._prepare(x, y, sample_weight, class_weight)
        self._ensure_built(x)
        self._check_data(x)
        return self._batch_result(self._train_batch(x, y, sw), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("test_on_batch")
        x, y, sw = self._prepare(x, y, sample_weight)
        self._ensure_built(x)
        self._check_data(x)
        return self._batch_result(self._test_batch(x, y, sw), return_dict)

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

    def get_compile_config(self):
        if not self.compiled:
            return None
        from faltung.models.saving import serialize_object
        cfg = {"optimizer": serialize_object(self.optimizer),
               "loss": serialize_object(self.loss),
               "metrics": [m.name for m in self._metrics] or None,
               "loss_weights": None if self._loss_weight == 1.0 else self._loss_weight}
        return cfg
