"""The training loop of `Model` (compile, fit, evaluate, predict, *_on_batch).

Train step: the graph's forward with training=True; per output, (loss, dL/dy_pred) from
that output's loss object, times its loss weight (an output's mask, as Keras, weights its
loss and metrics); regularization penalties (every Variable with a `.regularizer`) added to
the loss value and, after backward, to each variable's grad; activity penalties (a layer's
`activity_regularizer` of its outputs, over the batch size, train and test steps) added to
the loss value, their gradients to the layer's dy (faltung.layers.layer.run_backward); optimizer.apply(trainable
variables). Logged "loss", per-output "<output>_loss" (when several outputs have a loss)
and metrics ("<output>_<metric>" when the model has several outputs) are running means over
the epoch, with sorted keys, as Keras logs them.

Data: `x` is an array, a list of arrays (one per input) or a dict keyed by input name; `y`
and `sample_weight` likewise per output (a dict may leave out outputs that have no loss).
"""
import copy
import math

import numpy as np

from faltung import backend
from faltung.distribution import replica
from faltung.layers.layer import collect_activity_losses


def _check_activity(activity):
    """Activity penalties are per batch: under DataParallel each process would add its own
    rows' penalty over its own row count (every rank raises alike, none waits for another)."""
    if activity and replica.is_distributed():
        raise NotImplementedError("activity_regularizer is not supported under DataParallel over several "
                                  "processes yet: each process would add the penalty of its own rows only. "
                                  "Train on one process, or regularize the weights instead.")


def _as_labels(y, what="y"):
    """y as an ndarray: float data as float32, integer/bool labels as int32."""
    try:
        arr = np.asarray(y)
    except Exception as e:
        raise TypeError(f"Expected numeric data for `{what}`, received {type(y).__name__}") from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Expected numeric data for `{what}`, received an array of dtype {arr.dtype}")
    if arr.dtype.kind in "iu" and arr.size and arr.dtype.itemsize >= 4:
        info = np.iinfo(np.int32)  # a label of 2**32 + 1 must not wrap around to class 1
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise ValueError(f"Received a label value of {hi if hi > info.max else lo} in `{what}`, "
                             "which is outside the range of int32 labels")
    return arr.astype(np.int32) if arr.dtype.kind in "biu" else arr.astype(np.float32, copy=False)


def _apply_mask(sample_weight, mask, reduction):
    """Keras's apply_mask: masked entries weigh 0; for mean reductions the others weigh
    total/valid, so the loss is the mean over the unmasked entries."""
    from faltung.losses import EPSILON
    m = np.asarray(mask, np.float32)
    if reduction in ("sum_over_batch_size", "mean"):
        m = m * (m.size / (m.sum() + EPSILON))
    if sample_weight is None:
        return m
    sw = np.asarray(sample_weight, np.float32)
    while sw.ndim < m.ndim:
        sw = sw[..., None]
    return m * sw


def _count(value, name, minimum=1, default=None):
    """A count argument (batch_size, epochs, steps) as an int, worded as Keras (its PyTorch
    data pipeline) words a bad one; None gives `default`."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} should be a {kind} integer value, but got {name}={value!r}")
    return int(value)


def _batches(n, batch_size, shuffle):
    idx = replica.same_order(np.random.permutation(n)) if shuffle else np.arange(n)
    return [idx[i:i + batch_size] for i in range(0, n, batch_size)]


_TRAIN_BATCH_END = ("on_train_batch_end", "on_batch_end")
_TEST_BATCH_END = ("on_test_batch_end",)


def _reads_batch_logs(cbs, verbose, hooks, in_fit=True):
    """Whether a callback reads the logs after each batch (`hooks`: the batch-end hooks of fit,
    _TRAIN_BATCH_END, or of evaluation, _TEST_BATCH_END): a progress bar drawn batch by batch
    (verbose 1; the one of fit draws none while validating), or any callback with its own hook
    (a method overridden, or a function set on the instance, as LambdaCallback does)."""
    from faltung.callbacks import Callback, ProgbarLogger

    def own(c, base):
        return any(getattr(getattr(c, h), "__func__", getattr(c, h)) is not getattr(base, h) for h in hooks)
    for c in cbs.callbacks:
        if isinstance(c, ProgbarLogger) and not own(c, ProgbarLogger):
            if verbose == 1 and (hooks is _TRAIN_BATCH_END or not in_fit):
                return True
        elif own(c, Callback):
            return True
    return False


def _take(arrays, idx):
    return [None if a is None else a[idx] for a in arrays]


def _as_list(value, n, what, names):
    """A per-output argument (one value for all, a list, or a dict by output name) as a
    list of n entries (None where a dict leaves an output out)."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"In the dict argument `{what}`, key '{unknown[0]}' does not "
                             f"correspond to any model output. Received: {what}={value}. The "
                             f"model's outputs are {names}.")
        return [value.get(k) for k in names]
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"For a model with {n} output(s), `{what}` given as a list must "
                             f"have {n} entries. Received: {what}={value}")
        return list(value)
    return [value] * n


class Trainer:
    """Mixin of Model: needs `_graph`, `_flat_data`, `_pack_outputs`, `weights`, `build`."""

    # -- compile -----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Configure training. Strings or objects for optimizer, loss and metrics; `loss`,
        `loss_weights` and `metrics` may be given per output (list or dict by output name).
        run_eagerly/steps_per_execution/jit_compile are accepted and ignored (faltung
        always runs eagerly)."""
        from faltung import optimizers
        self.optimizer = optimizers.get(optimizer)
        self._compile_args = dict(optimizer=optimizer, loss=loss, metrics=metrics,
                                  weighted_metrics=weighted_metrics, loss_weights=loss_weights)
        self.loss = loss
        self._per_output = None
        self.compiled = True
        self.stop_training = False
        if self.built and self._graph is not None:
            self._resolve_compile()
            if self._resident is not None:
                self._resident.check_compile()  # NotImplementedError naming what the device lacks

    def _resolve_compile(self):
        """Per-output losses, weights and metrics, once the outputs are known."""
        from faltung import losses, metrics as metrics_mod
        if self._per_output is not None:
            return self._per_output
        a = self._compile_args
        names = self.output_names
        n = len(names)
        loss = a["loss"]
        if isinstance(loss, dict) and "class_name" in loss:  # one serialized loss
            loss = losses.get(loss)
        per_loss = [None if l is None else losses.get(l) for l in _as_list(loss, n, "loss", names)]
        lw = a["loss_weights"]
        weights = _as_list(lw, n, "loss_weights", names)
        weights = [1.0 if w is None else float(w) for w in weights]

        def metric_lists(spec, what):
            """[[metrics of output 0], [metrics of output 1], ...]"""
            if spec is None:
                per = [None] * n
            elif isinstance(spec, dict) and "class_name" not in spec or \
                    isinstance(spec, (list, tuple)) and n > 1:
                per = _as_list(spec, n, what, names)
            else:  # one output: a metric or the list of its metrics
                per = [spec]
            return [[] if m is None else list(m) if isinstance(m, (list, tuple)) else [m]
                    for m in per]

        plain = metric_lists(a["metrics"], "metrics")
        weighted = metric_lists(a["weighted_metrics"], "weighted_metrics")
        out_metrics, seen = [], set()
        for i in range(n):
            objs = []
            for specs, is_weighted in ((plain[i], False), (weighted[i], True)):
                for m in specs:
                    obj = metrics_mod.get(m)
                    if id(obj) in seen:  # one metric object given for several outputs
                        obj = copy.deepcopy(obj)
                    seen.add(id(obj))
                    name = obj.name
                    if is_weighted and any(o.name == name for o in objs):
                        name = "weighted_" + name  # Keras makes the name unique this way
                    obj._log_name = f"{names[i]}_{name}" if n > 1 else name
                    obj._weighted = is_weighted
                    objs.append(obj)
            out_metrics.append(objs)
        self._per_output = (per_loss, weights, out_metrics)
        self._metrics = [m for ms in out_metrics for m in ms]
        self._loss_names = [f"{names[i]}_loss" for i in range(n) if per_loss[i] is not None]
        if sum(l is not None for l in per_loss) < 2:
            self._loss_names = []
        return self._per_output

    @property
    def metrics(self):
        return list(self._metrics)

    @property
    def metrics_names(self):
        return ["loss"] + list(getattr(self, "_loss_names", [])) + \
            [getattr(m, "_log_name", m.name) for m in self._metrics]

    def reset_metrics(self):
        for m in self._metrics:
            m.reset_state()

    def _assert_compiled(self, method):
        if not self.compiled:
            raise ValueError(f"You must call `compile()` before calling `{method}()`.")

    # -- data handling -----------------------------------------------------------------
    def _prepare(self, x, y=None, sample_weight=None, class_weight=None):
        """(xs, ys, sws): flat lists aligned with the inputs and outputs, one sample count."""
        if x is None:
            raise ValueError("Unexpected value for `x`: None. Expected a NumPy array.")
        if not self.built:
            self._ensure_built(x if not isinstance(x, dict) else list(x.values()))
        xs = self._flat_data(x)
        for a in xs:
            if a.ndim == 0:
                raise ValueError("Expected `x` with a batch dimension, received a scalar.")
        n = xs[0].shape[0]
        if n == 0:
            raise ValueError("num_samples should be a positive integer value, but got num_samples=0")
        counts = {f"x[{i}]" if len(xs) > 1 else "x": a.shape[0] for i, a in enumerate(xs)}
        names = self.output_names
        n_out = len(names)
        ys = [None] * n_out
        if y is not None:
            if isinstance(y, dict):
                ys = _as_list(y, n_out, "y", names)
            elif isinstance(y, (list, tuple)) and n_out > 1:
                ys = _as_list(list(y), n_out, "y", names)
            else:
                if n_out > 1:
                    raise ValueError(f"Model '{self.name}' has {n_out} outputs {names}; pass `y` "
                                     "as a list or a dict with one array per output.")
                ys = [y]
            ys = [None if t is None else _as_labels(t, "y") for t in ys]
            for i, t in enumerate(ys):
                if t is not None:
                    if t.ndim == 0:
                        raise ValueError("Expected `y` with a batch dimension, received a scalar.")
                    counts["y" if n_out == 1 else f"y[{names[i]}]"] = t.shape[0]
        sws = [None] * n_out
        if sample_weight is not None:
            if isinstance(sample_weight, (dict, list, tuple)) and n_out > 1:
                sws = _as_list(sample_weight if isinstance(sample_weight, dict)
                               else list(sample_weight), n_out, "sample_weight", names)
            else:
                sws = [sample_weight] * n_out
            sws = [None if w is None else np.asarray(w, np.float32) for w in sws]
            for w in sws:
                if w is not None:
                    counts["sample_weight"] = w.shape[0] if w.ndim else "scalar"
        if class_weight is not None and y is not None:
            if n_out > 1:
                raise ValueError("`class_weight` is only supported for models with a single "
                                 "output.")
            cls = ys[0].reshape(n, -1)
            cls = cls[:, 0] if cls.shape[1] == 1 else np.argmax(cls, axis=1)
            n_classes = max(2, int(self._graph.outputs[0].shape[-1] or 2))
            if not isinstance(class_weight, dict) or any(
                    isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n_classes
                    for k in class_weight):
                raise ValueError("Expected `class_weight` to be a dict with keys from 0 to one less "
                                 f"than the number of classes, found {class_weight}")
            cw = np.array([class_weight.get(int(c), 1.0) for c in cls], np.float32)
            sws = [cw if sws[0] is None else sws[0] * cw]
        if len(set(counts.values())) > 1:
            sizes = " ".join(f"'{k}' sizes: {v}" for k, v in counts.items())
            raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain the "
                             f"same number of samples. {sizes}")
        return xs, ys, sws

    def _raise_empty(self):
        raise ValueError(f"Model {self.name} cannot be built because it has no layers. "
                         "Call `model.add(layer)`.")

    # -- loss and steps ----------------------------------------------------------------
    def _regularization(self):
        total = 0.0
        for v in self.weights:
            reg = v.regularizer
            if reg is not None:
                total += float(reg(v.value))
        return total

    def _add_regularization_grads(self):
        for v in self.trainable_weights:
            reg = v.regularizer
            if reg is not None and hasattr(reg, "grad"):
                g = np.asarray(reg.grad(v.value), np.float32)
                v.grad = g if v.grad is None else v.grad + g

    def _require_loss(self):
        per_loss = self._resolve_compile()[0]
        if all(l is None for l in per_loss):
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")

    def _losses(self, ys, preds, masks, sws, need_grad):
        """Total loss, per-output logged losses and the output gradients."""
        per_loss, weights, _ = self._resolve_compile()
        total, logged, dys = 0.0, [], []
        names = self.output_names
        for i, (loss, w, y, p, m, sw) in enumerate(zip(per_loss, weights, ys, preds, masks, sws)):
            if loss is None:
                dys.append(None)
                continue
            if y is None:
                raise ValueError(f"Model '{self.name}': output '{names[i]}' has a loss but "
                                 "received no target in `y`.")
            kw = {"sample_weight": sw}
            if m is not None:
                if loss.takes_output_mask:  # CTC: the mask gives per-sample lengths
                    kw["mask"] = m
                else:
                    kw["sample_weight"] = _apply_mask(sw, m, loss.reduction)
            try:
                if need_grad:
                    value, dy = loss.value_and_grad(y, p, **kw)
                else:
                    value = loss(y, p, **kw)
            except ValueError as e:
                if len(names) == 1:
                    raise
                raise ValueError(f"Output '{names[i]}' of model '{self.name}': {e}") from e
            if need_grad:
                dy = np.asarray(dy, np.float32)
                dys.append(dy if w == 1.0 else dy * np.float32(w))
            value = float(value)
            total += value * w
            logged.append(value)  # Keras logs each output's loss unweighted
        return total, logged, dys

    def _update_metrics(self, ys, preds, masks, sws):
        """Keras: `metrics` see only the output's mask, `weighted_metrics` also the
        sample weights."""
        for ms, y, p, m, sw in zip(self._per_output[2], ys, preds, masks, sws):
            masked = None if m is None else _apply_mask(None, m, "sum")
            weighted = sw if m is None else _apply_mask(sw, m, "sum")
            for metric in ms:
                metric.update_state(y, p, sample_weight=weighted if metric._weighted else masked)

    def _train_batch(self, xs, ys, sws, epoch_stats=None):
        """[total loss, per-output losses...] of one step; None when a device-resident model
        adds them to `epoch_stats` (fit's deferred logs) instead."""
        self._require_loss()
        if self._resident is not None:  # device-resident (faltung.models.resident)
            return self._resident.train_batch(xs, ys, sws, epoch_stats)
        trainable = self.trainable_weights
        graph = replica.graph_of(self)  # with DataParallel: this rank's rows, gathered
        for v in trainable:
            v.grad = None
        with collect_activity_losses() as activity:
            preds, masks, ctxs = graph.forward(xs, True)
        _check_activity(activity)
        loss, logged, dys = self._losses(ys, preds, masks, sws, True)
        loss += self._regularization() + sum(activity)
        if trainable:
            graph.backward(ctxs, dys, False)
            self._add_regularization_grads()
            self.optimizer.apply(trainable)
        else:
            for c in ctxs:
                c.saved = None
        self._update_metrics(ys, preds, masks, sws)
        return [loss] + logged

    def _test_batch(self, xs, ys, sws, epoch_stats=None):
        self._require_loss()
        if self._resident is not None:
            return self._resident.test_batch(xs, ys, sws, epoch_stats)
        with collect_activity_losses() as activity:
            preds, masks, _ = replica.graph_of(self).forward(xs, False)
        _check_activity(activity)
        loss, logged, _ = self._losses(ys, preds, masks, sws, False)
        self._update_metrics(ys, preds, masks, sws)
        return [loss + self._regularization() + sum(activity)] + logged

    def _logs(self, loss_sums, count):
        count = max(count, 1)
        logs = {"loss": loss_sums[0] / count}
        logs.update({k: v / count for k, v in zip(self._loss_names, loss_sums[1:])})
        for m in self._metrics:  # per-class results (F1Score(average=None)) stay arrays
            r = m.result()
            logs[m._log_name] = float(r) if np.ndim(r) == 0 else np.asarray(r, np.float32)
        return dict(sorted(logs.items()))  # Keras sorts the log keys

    def _values(self, logs):
        """Keras's _flatten_metrics_in_order: "loss", the per-output losses in output order,
        the metrics whose log name is their own name (one output) in compile order, then
        every other key sorted."""
        first = ["loss"] + self._loss_names + [m._log_name for m in self._metrics
                                               if m._log_name == m.name]
        first = [k for k in first if k in logs]
        values = [logs[k] for k in first] + [v for k, v in sorted(logs.items()) if k not in first]
        return values[0] if len(values) == 1 else values

    # -- public training API -------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train for `epochs` epochs; returns a `History`. validation_split takes the LAST
        fraction of the samples (before shuffling), as Keras does. `x` may be a dataset of
        batches (a `PyDataset`, the iterator of `ImageDataGenerator.flow`, a generator; see
        faltung.models.data_adapters); `validation_data` too."""
        from faltung.callbacks import CallbackList
        from faltung.models import data_adapters
        self._assert_compiled("fit")
        if data_adapters.is_dataset(x):
            data_adapters.check_dataset_arguments(y, sample_weight, "fit")
            if validation_split:
                raise ValueError("`validation_split` is only supported for array inputs, not for a "
                                 "dataset `x`.")
            xs = None
        else:
            xs, ys, sws = self._prepare(x, y, sample_weight, class_weight)
        self._require_loss()
        if xs is not None and y is None:
            raise ValueError("`fit` needs targets: pass `y`.")
        batch_size = _count(batch_size, "batch_size", default=32)
        epochs = _count(epochs, "epochs", minimum=0)
        initial_epoch = _count(initial_epoch, "initial_epoch", minimum=0)
        steps_per_epoch = _count(steps_per_epoch, "steps_per_epoch")
        validation_steps = _count(validation_steps, "validation_steps")
        validation_batch_size = _count(validation_batch_size, "validation_batch_size")
        validation_freq = _count(validation_freq, "validation_freq")
        if xs is None:
            train = data_adapters.DatasetBatches(
                x, lambda bx, by, bsw: self._prepare(bx, by, bsw, class_weight), steps_per_epoch)
        val = None
        if xs is not None and validation_data is None and validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError("`validation_split` must be in [0, 1). "
                                 f"Received: validation_split={validation_split}")
            n = xs[0].shape[0]
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"Training data contains {n} samples, which is not sufficient to "
                                 "split it into a validation and training set as specified by "
                                 f"`validation_split={validation_split}`. Either provide more data, "
                                 "or a different value for the `validation_split` argument.")
            tail, head = slice(split, None), slice(None, split)
            val = (_take(xs, tail), _take(ys, tail), _take(sws, tail))
            xs, ys, sws = _take(xs, head), _take(ys, head), _take(sws, head)
        if xs is not None:
            train = data_adapters.ArrayBatches(xs, ys, sws, batch_size, shuffle, steps_per_epoch)
        if data_adapters.is_dataset(validation_data):
            val = data_adapters.DatasetBatches(validation_data, self._prepare, validation_steps)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("`validation_data` should be a tuple `(x_val, y_val)` or "
                                 f"`(x_val, y_val, val_sample_weight)`. Received: {validation_data!r}")
            val = self._prepare(*validation_data)
        steps = train.steps
        verbose = 1 if verbose == "auto" else verbose
        callbacks, verbose = replica.rank_callbacks(callbacks, verbose)
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                           verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        # A device-resident model whose batch logs nobody reads sums its losses and metrics on
        # the device and reads them once per epoch (resident_metrics.EpochStats).
        deferred = self._resident is not None and not _reads_batch_logs(cbs, verbose, _TRAIN_BATCH_END)
        cbs.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            sums, count = None, 0
            epoch_stats = self._resident.epoch_stats() if deferred else None
            for step, (bxs, bys, bsws) in enumerate(self._prefetching(train.epoch())):
                cbs.on_train_batch_begin(step)
                size = bxs[0].shape[0]
                count += size
                values = self._train_batch(bxs, bys, bsws, epoch_stats)
                if values is not None:
                    sums = [v * size + (sums[i] if sums else 0.0) for i, v in enumerate(values)]
                logs = self._logs(sums, count) if values is not None else {}
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            if epoch_stats is not None:
                sums = epoch_stats.read()
            logs = self._logs(sums or [0.0] * (1 + len(self._loss_names)), count)
            if val is not None and (epoch + 1) % validation_freq == 0:
                vl = self._evaluate(val, validation_batch_size or batch_size, cbs, validation_steps,
                                    deferred=self._resident is not None
                                    and not _reads_batch_logs(cbs, verbose, _TEST_BATCH_END))
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

    def _prefetching(self, batches):
        """The batches; a device-resident model gets each batch (inputs, targets, sample
        weights) one batch ahead (before the step of the one before it), so that its upload
        overlaps that step (faltung.models.resident). Reads one batch ahead of the step it
        yields."""
        if self._resident is None:
            yield from batches
            return
        it = iter(batches)
        batch = next(it, None)
        if batch is not None:
            self._resident.prefetch(*batch)
        while batch is not None:
            after = next(it, None)
            if after is not None:
                self._resident.prefetch(*after)
            yield batch
            batch = after

    def _evaluate(self, data, batch_size, cbs, steps=None, deferred=False):
        """data: prepared (xs, ys, sws) arrays or a DatasetBatches. `deferred` (a device-resident
        model whose batch logs no callback reads): the losses and metrics are summed on the
        device and read once, at the end."""
        from faltung.models import data_adapters
        if isinstance(data, tuple):
            data = data_adapters.ArrayBatches(*data, batch_size, False)
        self.reset_metrics()
        cbs.on_test_begin()
        sums, count = [0.0] * (1 + len(self._loss_names)), 0
        epoch_stats = self._resident.epoch_stats() if deferred else None
        for step, (bxs, bys, bsws) in enumerate(self._prefetching(data.epoch(steps))):
            cbs.on_test_batch_begin(step)
            values = self._test_batch(bxs, bys, bsws, epoch_stats)
            size = bxs[0].shape[0]
            count += size
            if values is not None:
                sums = [s + v * size for s, v in zip(sums, values)]
            cbs.on_test_batch_end(step, self._logs(sums, count) if values is not None else {})
        if epoch_stats is not None:
            sums = epoch_stats.read()
        logs = self._logs(sums, count)
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) over the data: a scalar when there is nothing else, else
        [loss, others...] in Keras's order (a dict with return_dict=True)."""
        from faltung.callbacks import CallbackList
        from faltung.models import data_adapters
        self._assert_compiled("evaluate")
        if data_adapters.is_dataset(x):
            data_adapters.check_dataset_arguments(y, sample_weight, "evaluate")
            data = None
        else:
            data = self._prepare(x, y, sample_weight)
        self._require_loss()
        if data is not None and y is None:
            raise ValueError("`evaluate` needs targets: pass `y`.")
        batch_size = _count(batch_size, "batch_size", default=32)
        steps = _count(steps, "steps")
        if data is None:
            data = data_adapters.DatasetBatches(x, self._prepare, steps)
            n_steps = data.steps
        else:
            n_steps = math.ceil(data[0][0].shape[0] / batch_size) if steps is None else steps
        verbose = 1 if verbose == "auto" else verbose
        callbacks, verbose = replica.rank_callbacks(callbacks, verbose)
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=n_steps)
        deferred = self._resident is not None and not _reads_batch_logs(cbs, verbose, _TEST_BATCH_END,
                                                                         in_fit=False)
        logs = self._evaluate(data, batch_size, cbs, steps, deferred)
        return logs if return_dict else self._values(logs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for x, computed in batches of `batch_size` (default 32): an array, or a
        list/dict of arrays for a model with several outputs."""
        from faltung.callbacks import CallbackList
        from faltung.models import data_adapters
        prepared = None if data_adapters.is_dataset(x) else self._prepare(x)
        batch_size = _count(batch_size, "batch_size", default=32)
        steps = _count(steps, "steps")
        if prepared is None:  # a dataset: a batch's targets, if any, are ignored
            source = data_adapters.DatasetBatches(x, lambda bx, by, bsw: self._prepare(bx), steps)
        else:
            source = data_adapters.ArrayBatches(*prepared, batch_size, False)
        n_steps = source.steps if steps is None or source.steps is None else min(steps, source.steps)
        verbose = 1 if verbose == "auto" else verbose
        callbacks, verbose = replica.rank_callbacks(callbacks, verbose)
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=1, steps=n_steps)
        cbs.on_predict_begin()
        outs = []
        for step, (bxs, _, _) in enumerate(self._prefetching(source.epoch(steps))):
            cbs.on_predict_batch_begin(step)
            outs.append(self._predict_batch(bxs))
            cbs.on_predict_batch_end(step, {"outputs": self._pack_outputs(outs[-1])})
        cbs.on_predict_end()
        if not outs:
            flat = [np.zeros((0,) + tuple(t.shape[1:]), np.float32) for t in self._graph.outputs]
        else:
            flat = [np.concatenate(parts, axis=0) for parts in zip(*outs)]
        return self._predicted(flat)

    def _predicted(self, flat):
        """Keras's predict returns an array, never a one-element list (dicts stay dicts)."""
        if len(flat) == 1 and not isinstance(self._graph.outputs_struct, dict):
            return flat[0]
        return self._pack_outputs(flat)

    def _predict_batch(self, xs):
        """The outputs (a list of arrays) for one batch of prepared inputs."""
        if self._resident is not None:
            return self._resident.predict_batch(xs)
        return replica.graph_of(self).forward(xs, False)[0]

    def predict_on_batch(self, x):
        xs, _, _ = self._prepare(x)
        return self._predicted(self._predict_batch(xs))

    def _batch_result(self, values, return_dict):
        logs = self._logs(values, 1)
        return logs if return_dict else self._values(logs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; loss, or [loss, metrics...]. Metrics
        accumulate across calls until `reset_metrics()` (as Keras)."""
        self._assert_compiled("train_on_batch")
        xs, ys, sws = self._prepare(x, y, sample_weight, class_weight)
        return self._batch_result(self._train_batch(xs, ys, sws), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("test_on_batch")
        xs, ys, sws = self._prepare(x, y, sample_weight)
        return self._batch_result(self._test_batch(xs, ys, sws), return_dict)

    # -- Keras 2 names, kept because older code calls them ---------------------------------
    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose=1, callbacks=None,
                      validation_data=None, validation_steps=None, validation_freq=1,
                      class_weight=None, max_queue_size=10, workers=1, use_multiprocessing=False,
                      shuffle=True, initial_epoch=0):
        """Deprecated: `fit` takes generators and datasets itself."""
        _deprecated("fit_generator", "fit")
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=verbose,
                        callbacks=callbacks, validation_data=validation_data,
                        validation_steps=validation_steps, validation_freq=validation_freq,
                        class_weight=class_weight, initial_epoch=initial_epoch)

    def evaluate_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                           use_multiprocessing=False, verbose=0):
        """Deprecated: `evaluate` takes generators and datasets itself."""
        _deprecated("evaluate_generator", "evaluate")
        return self.evaluate(generator, steps=steps, callbacks=callbacks, verbose=verbose)

    def predict_generator(self, generator, steps=None, callbacks=None, max_queue_size=10, workers=1,
                          use_multiprocessing=False, verbose=0):
        """Deprecated: `predict` takes generators and datasets itself."""
        _deprecated("predict_generator", "predict")
        return self.predict(generator, steps=steps, callbacks=callbacks, verbose=verbose)


def _deprecated(old, new):
    import warnings
    warnings.warn(f"`Model.{old}` is deprecated and will be removed in a future version. Please use "
                  f"`Model.{new}`, which supports generators.", stacklevel=3)
