"""Callbacks with Keras 3's names, arguments and hooks (keras.callbacks).

`fit` calls, in order: on_train_begin; per epoch on_epoch_begin, per batch
on_train_batch_begin/end, then (with validation data) on_test_begin, on_test_batch_*,
on_test_end, then on_epoch_end(epoch, logs); finally on_train_end. `logs` hold running
means over the epoch ("loss", metric names) and, at epoch end, "val_" entries.
"""
import csv
import os
import sys
import warnings

import numpy as np


class Callback:
    """Base class: override any hook. `self.model` and `self.params` are set by fit."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)  # Keras: the old names alias the train hooks

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass

    # Keras aliases
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass


_HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
          "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
          "on_predict_batch_begin", "on_predict_batch_end"]


class CallbackList(Callback):
    """Calls each hook on every callback in order. With add_history/add_progbar it
    appends a History / prepends a ProgbarLogger when the user did not pass one."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Expected a `keras.callbacks.Callback` instance, received "
                                f"{cb!r} (of type {type(cb).__name__})")
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.insert(0, ProgbarLogger())
        if add_history and not any(isinstance(c, History) for c in self.callbacks):
            self.callbacks.append(History())
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, cb):
        self.callbacks.append(cb)

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def __iter__(self):
        return iter(self.callbacks)


def _make_dispatch(hook):
    def dispatch(self, *args, **kwargs):
        for cb in self.callbacks:
            getattr(cb, hook)(*args, **kwargs)
    dispatch.__name__ = hook
    return dispatch


for _h in _HOOKS:
    setattr(CallbackList, _h, _make_dispatch(_h))


class History(Callback):
    """Records epoch logs: `history.history` maps each key to a list, `history.epoch`
    lists the epoch indices. `fit` returns it (and sets `model.history`)."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        self.model.history = self


class ProgbarLogger(Callback):
    """Prints "Epoch i/N" and a progress bar per epoch (verbose=1) or one line per epoch
    (verbose=2). fit/evaluate/predict add it themselves when verbose != 0."""

    def __init__(self, count_mode=None):
        super().__init__()
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self.progbar = None
        self._in_fit = False

    def set_params(self, params):
        super().set_params(params)
        self.verbose = params.get("verbose", 1)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _new_bar(self):
        from faltung.utils.progbar import Progbar
        self.progbar = Progbar(self.target, verbose=self.verbose, unit_name="step")
        self._seen = 0

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._new_bar()
        if self.verbose and self.epochs > 1:
            sys.stdout.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            sys.stdout.flush()

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self.progbar.update(batch + 1, list((logs or {}).items()), finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        self.progbar.update(self._seen if self.target is None else self.target,
                            list((logs or {}).items()), finalize=True)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self.target = self.params.get("steps")
            self._new_bar()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._seen = batch + 1
            self.progbar.update(batch + 1, list((logs or {}).items()), finalize=False)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self.progbar.update(self._seen, list((logs or {}).items()), finalize=True)

    def on_predict_begin(self, logs=None):
        self.target = self.params.get("steps")
        self._new_bar()

    def on_predict_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self.progbar.update(batch + 1, finalize=False)

    def on_predict_end(self, logs=None):
        self.progbar.update(self._seen, finalize=True)


def _check_mode(mode, name):
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{name} mode {mode} is unknown, fallback to auto mode.", stacklevel=3)
        return "auto"
    return mode


class _MonitorCallback(Callback):
    """Whether `monitor` should fall or rise (Keras 3's MonitorCallback). mode "min" / "max"
    say so; "auto" is settled at the first epoch end, once the model's metrics exist: the loss
    ("loss", "val_loss") falls, a compiled metric of that name goes its `_direction` ("up" for
    accuracies, AUC, precision, recall, F-scores; "down" for errors and crossentropies), and
    any other name raises ValueError, as in Keras. Beyond Keras, which refuses them, the names
    of a multi-output model's logs ("cls_loss", "cls_mae") resolve too."""

    def _direction_mode(self):
        if self._mode is None:
            self._mode = self.mode if self.mode != "auto" else self._auto_mode()
        return self._mode

    def _auto_mode(self):
        name = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if name == "loss":
            return "min"
        for m in getattr(self.model, "metrics", None) or []:
            direction = getattr(m, "_direction", None)
            if direction and name in (m.name, getattr(m, "_log_name", None)):
                return "max" if direction == "up" else "min"
        if name.endswith("_loss") and name[:-5] in (getattr(self.model, "output_names", None) or []):
            return "min"
        raise ValueError(
            f"{type(self).__name__} callback received monitor={self.monitor}, but faltung isn't "
            "able to automatically determine whether that metric should be maximized or "
            "minimized. Pass `mode='max'` in order to monitor based on the highest metric value, "
            "or pass `mode='min'` in order to use the lowest value.")

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self._direction_mode() == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference


class EarlyStopping(_MonitorCallback):
    """Stop training when `monitor` has stopped improving (Keras semantics: `wait` counts
    epochs since the last improvement by more than `min_delta`; stops once it reaches
    `patience`; with `restore_best_weights` the best epoch's weights are restored at the
    end of training)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.min_delta = abs(min_delta)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.mode, self._mode = _check_mode(mode, "EarlyStopping"), None
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        self._direction_mode()
        current = (logs or {}).get(self.monitor)
        if current is None:
            sys.stderr.write(f"Early stopping conditioned on metric `{self.monitor}` which is "
                             f"not available. Available metrics are: {','.join(logs or {})}\n")
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(_MonitorCallback):
    """Multiply the learning rate by `factor` after `patience` epochs without improvement
    of `monitor` (e.g. factor=0.5: halve it on a plateau). Adds "learning_rate" to logs."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.mode, self._mode = _check_mode(mode, "ReduceLROnPlateau"), None
        self._reset()

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        self._direction_mode()
        logs = logs if logs is not None else {}
        opt = self.model.optimizer
        logs["learning_rate"] = float(opt.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            sys.stderr.write(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                             f"which is not available. Available metrics are: {','.join(logs)}\n")
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(opt.learning_rate)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    opt.learning_rate = new
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch begin to `schedule(epoch, lr)` (or
    `schedule(epoch)`)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(opt.learning_rate))
        except TypeError:
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, int, np.floating, np.integer)):
            raise ValueError(f'The output of the "schedule" function should be a float. Got: {lr}')
        opt.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ModelCheckpoint(_MonitorCallback):
    """Save the model (`.keras`) or its weights (`.weights.h5`) after each epoch.
    `filepath` may hold format fields: "ckpt-{epoch:02d}-{val_loss:.2f}.weights.h5".
    With save_best_only, only when `monitor` improved."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        if save_freq != "epoch":
            raise ValueError("faltung's ModelCheckpoint supports save_freq='epoch' only. "
                             f"Received save_freq={save_freq}")
        self.mode, self._mode = _check_mode(mode, "ModelCheckpoint"), None
        self.min_delta = 0
        self.best = initial_value_threshold
        if save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the "
                             "filepath provided must end in `.weights.h5` (Keras weights format). "
                             f"Received: filepath={self.filepath}")
        if not save_weights_only and not self.filepath.endswith((".keras", ".weights.h5")):
            raise ValueError("The filepath provided must end in `.keras` (Keras model format). "
                             f"Received: filepath={self.filepath}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                sys.stderr.write(f"Can save best model only with {self.monitor} available.\n")
                return
            if not self._is_improvement(current, self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                prev = "inf" if self.best is None else f"{self.best:.5f}"
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {prev} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if path.endswith(".weights.h5"):
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """Callback from plain functions: on_epoch_begin(epoch, logs), on_epoch_end(epoch, logs),
    on_train_begin(logs), on_train_end(logs), on_train_batch_begin/end(batch, logs)
    (also on_batch_begin/end)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 on_batch_begin=None, on_batch_end=None, **kwargs):
        super().__init__()
        fns = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                   on_train_begin=on_train_begin, on_train_end=on_train_end,
                   on_train_batch_begin=on_train_batch_begin or on_batch_begin,
                   on_train_batch_end=on_train_batch_end or on_batch_end, **kwargs)
        for hook, fn in fns.items():
            if fn is not None:
                if hook not in _HOOKS:
                    raise TypeError(f"LambdaCallback: unknown hook `{hook}`")
                setattr(self, hook, fn)


class CSVLogger(Callback):
    """Streams epoch results to a CSV file: columns `epoch` then the sorted log keys."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename)
        self._header_done = bool(exists)
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys,
                                          delimiter=self.sep)
            if not self._header_done:
                self._writer.writeheader()
        row = {"epoch": epoch}
        row.update({k: logs.get(k, "NA") for k in self.keys})
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
