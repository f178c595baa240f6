"""The training loop of `Model` (compile, fit, evaluate, predict, *_on_batch).

Train step: y_pred = forward(x, training=True); (loss, dL/dy_pred) from the loss object;
regularization penalties (every Variable with a `.regularizer`) added to the loss value and,
after backward, to each variable's grad; optimizer.apply(trainable variables). Logged
"loss" and metrics are running means over the epoch (the loss weighted by batch size), with
sorted keys, as Keras logs them.
"""
import math

import numpy as np

from faltung import backend


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


class Trainer:
    """Mixin of Model: needs `_forward`, `_backward`, `layers`, `weights`, `build`."""

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
            raise ValueError("Expected `x` with a batch dimension, received a scalar.")
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
