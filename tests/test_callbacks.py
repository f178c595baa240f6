"""Callbacks: hook order, History, progress output, EarlyStopping, ReduceLROnPlateau,
LearningRateScheduler, ModelCheckpoint, TerminateOnNaN, LambdaCallback, CSVLogger."""
import io
import os

import numpy as np
import pytest

from faltung import backend, callbacks, optimizers
from faltung.layers import Dense, Input
from faltung.models import Sequential
from faltung.utils import set_random_seed
from faltung.utils.progbar import Progbar


@pytest.fixture(autouse=True)
def _fresh():
    backend.clear_session()
    set_random_seed(0)


def data(n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    return x, y


def model(lr=0.05, metrics=None):
    m = Sequential([Input((3,)), Dense(1)])
    m.compile(optimizers.SGD(learning_rate=lr), "mse", metrics=metrics)
    return m


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            calls = object.__getattribute__(self, "calls")
            return lambda *a, **k: calls.append((name,) + tuple(x for x in a if isinstance(x, int)))
        return object.__getattribute__(self, name)


def test_hook_order_in_fit():
    x, y = data(40)
    rec = Recorder()
    model().fit(x, y, batch_size=20, epochs=2, validation_data=(x[:10], y[:10]),
                callbacks=[rec], verbose=0)
    epoch = [("on_train_batch_begin", 0), ("on_train_batch_end", 0),
             ("on_train_batch_begin", 1), ("on_train_batch_end", 1),
             ("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
             ("on_test_end",)]
    assert rec.calls == ([("on_train_begin",), ("on_epoch_begin", 0)] + epoch + [("on_epoch_end", 0)]
                         + [("on_epoch_begin", 1)] + epoch + [("on_epoch_end", 1), ("on_train_end",)])
    assert rec.model is not None and rec.params == {"verbose": 0, "epochs": 2, "steps": 2}


def test_predict_and_evaluate_hooks():
    x, y = data(10)
    m = model()
    rec = Recorder()
    m.predict(x, batch_size=5, callbacks=[rec], verbose=0)
    assert rec.calls == [("on_predict_begin",), ("on_predict_batch_begin", 0),
                         ("on_predict_batch_end", 0), ("on_predict_batch_begin", 1),
                         ("on_predict_batch_end", 1), ("on_predict_end",)]
    rec.calls.clear()
    m.evaluate(x, y, batch_size=10, callbacks=[rec], verbose=0)
    assert rec.calls == [("on_test_begin",), ("on_test_batch_begin", 0),
                         ("on_test_batch_end", 0), ("on_test_end",)]


def test_batch_logs_are_running_means():
    x, y = data(40)
    seen = []
    cb = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(dict(logs)))
    hist = model(lr=0.0, metrics=["mae"]).fit(x, y, batch_size=10, epochs=1, shuffle=False,
                                              callbacks=[cb], verbose=0)
    assert list(seen[0]) == ["loss", "mae"]  # sorted keys, as Keras
    assert seen[-1]["loss"] == pytest.approx(hist.history["loss"][0])


def test_progress_output_verbose_1_and_2(capsys):
    x, y = data(40)
    model(metrics=["mae"]).fit(x, y, batch_size=10, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2\n" in out and "Epoch 2/2\n" in out
    lines = [l for l in out.splitlines() if l.startswith("4/4")]
    assert len(lines) == 2  # not a tty: one final line per epoch
    assert lines[0].startswith("4/4 " + "━" * 20 + " 0s ")
    assert "/step - loss: " in lines[0] and " - mae: " in lines[0]
    model().fit(x, y, batch_size=10, epochs=1, verbose=2)
    out = capsys.readouterr().out
    assert out.startswith("4/4 - 0s - ") and "/step - loss: " in out and "Epoch" not in out
    model().fit(x, y, epochs=3, verbose=0)
    model().predict(x, verbose=0)
    assert capsys.readouterr().out == ""
    model().evaluate(x, y, batch_size=10)
    assert capsys.readouterr().out.startswith("4/4 " + "━" * 20)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progbar_throttles_redraws_on_a_tty():
    stream = FakeTTY()
    bar = Progbar(10000, stream=stream, interval=10.0)
    for i in range(1, 10001):
        bar.update(i, [("loss", 1.0 / i)])
    text = stream.getvalue()
    assert text.count("\r") == 2  # first update and the final one
    assert text.endswith("\n") and "10000/10000" in text and "loss: 1.0000e-04" in text


def test_progbar_eta_and_unknown_target():
    stream = FakeTTY()
    bar = Progbar(100, stream=stream, interval=0.0)
    bar.update(50, [("loss", 0.5)])
    assert " 0s" in stream.getvalue() and "50/100" in stream.getvalue()
    stream = FakeTTY()
    Progbar(None, stream=stream, interval=0.0).update(7)
    assert "      7/Unknown" in stream.getvalue()


def _scores(values, key="score"):
    """A callback that writes values[epoch] into logs[key] (placed before the tested one)."""
    def put(epoch, logs):
        logs[key] = values[epoch]
    return callbacks.LambdaCallback(on_epoch_end=put)


def test_early_stopping_stops_and_restores_best():
    x, y = data()
    m = model()
    es = callbacks.EarlyStopping(monitor="score", mode="min", patience=2, restore_best_weights=True)
    seen = []
    grab = callbacks.LambdaCallback(on_epoch_end=lambda e, l: seen.append(m.get_weights()))
    hist = m.fit(x, y, epochs=20, verbose=0,
                 callbacks=[_scores([5, 3, 4, 4, 1, 0] + [0] * 14), grab, es])
    assert hist.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3 and es.best_epoch == 1
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), seen[1]))


def test_early_stopping_mode_min_delta_baseline_start_from_epoch():
    x, y = data()
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.1)
    hist = model(metrics=["accuracy"]).fit(x, y, epochs=10, verbose=0,
                       callbacks=[_scores([0.5, 0.55, 0.58, 0.9] + [1] * 6, "val_accuracy"), es])
    assert hist.epoch == [0, 1]  # +0.05 is below min_delta
    flat = [3.0] * 10
    es = callbacks.EarlyStopping(monitor="score", mode="min", patience=2)
    assert model().fit(x, y, epochs=10, verbose=0, callbacks=[_scores(flat), es]).epoch == [0, 1, 2]
    es = callbacks.EarlyStopping(monitor="score", mode="min", patience=2, baseline=1.0)
    hist = model().fit(x, y, epochs=10, verbose=0, callbacks=[_scores(flat), es])
    assert hist.epoch == [0, 1]  # the first epoch did not beat the baseline: wait not reset
    es = callbacks.EarlyStopping(monitor="score", mode="min", patience=0, start_from_epoch=3)
    hist = model().fit(x, y, epochs=10, verbose=0, callbacks=[_scores([9, 9, 9, 9, 9, 9] + [9] * 4), es])
    assert hist.epoch == [0, 1, 2, 3, 4]


def test_stop_training_flag_from_a_batch():
    x, y = data(40)
    m = model()

    def stop(batch, logs):
        if batch == 1:
            m.stop_training = True
    rec = Recorder()
    hist = m.fit(x, y, batch_size=10, epochs=5, verbose=0,
                 callbacks=[callbacks.LambdaCallback(on_train_batch_end=stop), rec])
    assert hist.epoch == [0]
    assert [c for c in rec.calls if c[0] == "on_train_batch_end"] == [
        ("on_train_batch_end", 0), ("on_train_batch_end", 1)]


def test_reduce_lr_on_plateau_halves_lr():
    x, y = data()
    m = model(lr=0.1)
    cb = callbacks.ReduceLROnPlateau(monitor="score", mode="min", factor=0.5, patience=2, min_lr=0.02)
    hist = m.fit(x, y, epochs=7, verbose=0, callbacks=[_scores([1.0] * 7), cb])
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert m.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="factor >= 1.0"):
        callbacks.ReduceLROnPlateau(factor=2.0)


def test_learning_rate_scheduler():
    x, y = data()
    m = model(lr=0.1)
    hist = m.fit(x, y, epochs=3, verbose=0,
                 callbacks=[callbacks.LearningRateScheduler(lambda e, lr: lr * 0.1 if e else lr)])
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.01, 0.001])
    m.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.LearningRateScheduler(lambda e: 0.5)])
    assert m.optimizer.learning_rate == pytest.approx(0.5)


def test_model_checkpoint_best_only(tmp_path):
    x, y = data()
    path = str(tmp_path / "ckpt-{epoch:02d}.weights.h5")
    cb = callbacks.ModelCheckpoint(path, monitor="score", mode="min", save_best_only=True,
                                   save_weights_only=True)
    model().fit(x, y, epochs=4, verbose=0, callbacks=[_scores([3, 4, 2, 2]), cb])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.weights.h5", "ckpt-03.weights.h5"]
    full = str(tmp_path / "model.keras")
    model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(full, monitor="loss")])
    assert os.path.exists(full)
    with pytest.raises(ValueError, match="must end in `.weights.h5`"):
        callbacks.ModelCheckpoint(str(tmp_path / "w.h5"), save_weights_only=True)


def test_terminate_on_nan(capsys):
    x, y = data(40)
    x[:] = np.nan
    hist = model().fit(x, y, batch_size=10, epochs=3, verbose=0,
                       callbacks=[callbacks.TerminateOnNaN()])
    assert hist.epoch == [0] and np.isnan(hist.history["loss"][0])
    assert "Batch 0: Invalid loss, terminating training" in capsys.readouterr().out


def test_csv_logger(tmp_path):
    x, y = data()
    path = tmp_path / "log.csv"
    model(metrics=["mae"]).fit(x, y, epochs=3, verbose=0, validation_split=0.25,
                               callbacks=[callbacks.CSVLogger(path)])
    rows = path.read_text().splitlines()
    assert rows[0] == "epoch,loss,mae,val_loss,val_mae" and len(rows) == 4
    assert rows[1].startswith("0,") and rows[3].startswith("2,")


def test_callback_type_errors():
    with pytest.raises(TypeError, match="Callback"):
        callbacks.CallbackList([object()])
    with pytest.raises(TypeError, match="unknown hook"):
        callbacks.LambdaCallback(on_epoch_middle=print)


def test_progress_bar_on_a_terminal(monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr("sys.stdout", tty)
    x, y = data(40)
    model().fit(x, y, batch_size=10, epochs=1, verbose=1)
    text = tty.getvalue()
    assert text.startswith("\r1/4 \x1b[32m")  # first step drawn at once, with ETA
    assert "\r4/4 \x1b[32m" + "━" * 20 in text and text.endswith("\n")
    assert "Epoch" not in text  # single epoch: no header, as Keras


def test_fit_with_no_epoch_to_run_returns_empty_history():
    x, y = data()
    hist = model().fit(x, y, epochs=2, initial_epoch=2, verbose=0)
    assert hist.history == {} and hist.epoch == []
    hist = model().fit(x, y, epochs=3, initial_epoch=1, verbose=0)
    assert hist.epoch == [1, 2]


def test_on_batch_end_alias_is_called_for_train_batches():
    class Old(callbacks.Callback):
        n = 0

        def on_batch_end(self, batch, logs=None):
            Old.n += 1
    x, y = data(40)
    model().fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[Old()])
    assert Old.n == 8


def test_auto_mode_follows_the_compiled_metric_direction_as_keras():
    """mode="auto" (Keras 3's MonitorCallback): the loss falls, compiled metrics go their
    `_direction`, a name without one raises ValueError at the first epoch end."""
    x, y = data()
    metrics = ["mae", "accuracy", "AUC", "TruePositives"]
    for monitor, want in [("loss", "min"), ("val_loss", "min"), ("mae", "min"),
                          ("val_accuracy", "max"), ("AUC", "max")]:
        for cb in (callbacks.EarlyStopping(monitor=monitor),
                   callbacks.ReduceLROnPlateau(monitor=monitor)):
            model(metrics=metrics).fit(x, y, validation_data=(x, y), epochs=1, verbose=0,
                                      callbacks=[cb])
            assert cb.mode == "auto" and cb._direction_mode() == want, (monitor, cb)
    for monitor in ("TruePositives", "score"):
        with pytest.raises(ValueError, match=f"monitor={monitor}.*mode='max'"):
            model(metrics=metrics).fit(x, y, epochs=1, verbose=0,
                                      callbacks=[callbacks.EarlyStopping(monitor=monitor)])
    # beyond Keras: a multi-output model's per-output names
    from faltung import Model
    inp = Input((3,))
    two = Model(inp, [Dense(1, name="cls")(inp), Dense(1, name="reg")(inp)])
    two.compile("sgd", ["mse", "mse"], metrics=[["mae"], ["accuracy"]])
    for monitor, want in [("val_cls_loss", "min"), ("cls_mae", "min"), ("val_reg_accuracy", "max")]:
        cb = callbacks.EarlyStopping(monitor=monitor)
        two.fit(x, [y, y], validation_data=(x, [y, y]), epochs=1, verbose=0, callbacks=[cb])
        assert cb._direction_mode() == want, monitor
    with pytest.warns(UserWarning, match="mode sideways is unknown, fallback to auto"):
        assert callbacks.EarlyStopping(mode="sideways").mode == "auto"


def test_auto_mode_rising_metric_keeps_training_while_it_rises():
    """val_accuracy rising by more than min_delta every epoch: EarlyStopping in auto mode
    never stops (with the old name-based guess for a metric named like a loss it would)."""
    x, y = data()
    es = callbacks.EarlyStopping(monitor="val_acc_custom", patience=0)
    m = model()
    m.compile(optimizers.SGD(learning_rate=0.05), "mse",
              metrics=[callbacks_metric("acc_custom", "up")])
    hist = m.fit(x, y, epochs=4, verbose=0, validation_data=(x, y),
                 callbacks=[_scores([0.1, 0.2, 0.3, 0.4], "val_acc_custom"), es])
    assert hist.epoch == [0, 1, 2, 3]


def callbacks_metric(name, direction):
    from faltung import metrics
    m = metrics.MeanMetricWrapper(lambda t, p: np.abs(t - p).mean(-1), name=name)
    m._direction = direction
    return m


@pytest.mark.parametrize("monitor", ["loss", "val_loss", "mae", "val_accuracy", "AUC",
                                     "TruePositives", "binary_crossentropy", "score"])
def test_auto_mode_agrees_with_keras(monitor):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    x, y = data(16)
    y = (y > 0).astype(np.float32)
    metrics = ["mae", "accuracy", "AUC", "TruePositives", "binary_crossentropy"]

    def direction(lib, m):
        m.compile("sgd", "binary_crossentropy", metrics=metrics)
        m.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
        cb = lib.callbacks.EarlyStopping(monitor=monitor)
        cb.set_model(m)
        try:
            if lib is keras:
                cb._set_monitor_op()
                return "min" if cb.monitor_op is keras.ops.less else "max"
            return cb._direction_mode()
        except ValueError:
            return "ValueError"

    k_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    f_model = Sequential([Input((3,)), Dense(1, activation="sigmoid")])
    import faltung
    assert direction(faltung, f_model) == direction(keras, k_model)
