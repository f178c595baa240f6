"""What goes in and out of a device-resident training step (issue 14), on the test harness
faltung._cuda_host (faltung._device._harness_device()): the compiled metrics and loss means
reduced on the device (faltung.models.resident_metrics, cpp/cuda/metrics.cuh) held to the CPU
Trainer's logs batch by batch, one download per step, and the pinned double-buffered uploads
(Prefetcher, cpp/cuda/bind_resident_io.hpp): the same results, and no allocation per step
after the first.
"""
import copy
import gc

import numpy as np
import pytest

from faltung import _device
from faltung import metrics as M
from faltung.callbacks import Callback
from faltung.layers import Add, Dense, Input
from faltung.losses import BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy
from faltung.models import Model, Sequential
from faltung.optimizers import SGD, Adam

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(3)
N = 20
X = RNG.standard_normal((N, 5)).astype(np.float32)
LABELS = RNG.integers(0, 3, N)
ONEHOT = np.eye(3, dtype=np.float32)[LABELS]
BITS = (RNG.random((N, 3)) > 0.5).astype(np.float32)
SW = RNG.random(N).astype(np.float32) + 0.5


class BatchLogs(Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


def model_of(units, activation):
    return Sequential([Input((5,)), Dense(7, activation="tanh"), Dense(units, activation=activation)])


def pair(units, activation):
    cpu = model_of(units, activation)
    with _device._harness_device():
        dev = model_of(units, activation)
    dev.set_weights(cpu.get_weights())
    return cpu, dev


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


CASES = {
    "sparse-softmax": (3, "softmax", SparseCategoricalCrossentropy(), LABELS,
                       ["accuracy", "sparse_categorical_accuracy"], ["accuracy"]),
    "onehot-logits": (3, None, CategoricalCrossentropy(from_logits=True), ONEHOT,
                      ["acc", M.CategoricalAccuracy(), "mse", "mae"], [M.CategoricalAccuracy()]),
    "binary-one-unit": (1, "sigmoid", BinaryCrossentropy(), LABELS % 2,
                        ["accuracy", M.BinaryAccuracy(threshold=0.3), "mae"], ["binary_accuracy"]),
    "binary-three-units": (3, None, BinaryCrossentropy(from_logits=True), BITS,
                           [M.BinaryAccuracy(threshold=0.0), "mse"], [M.BinaryAccuracy(threshold=0.0)]),
    "with-a-host-metric": (3, "softmax", SparseCategoricalCrossentropy(), LABELS,
                           ["accuracy", M.SparseTopKCategoricalAccuracy(k=2)], []),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_device_metrics_match_the_cpu_logs_batch_by_batch(case):
    units, act, loss, y, metrics, weighted = CASES[case]
    cpu, dev = pair(units, act)
    logs = []
    for m in (cpu, dev):
        m.compile(Adam(0.01), loss, metrics=copy.deepcopy(metrics), weighted_metrics=copy.deepcopy(weighted))
        cb = BatchLogs()
        hist = m.fit(X, y, batch_size=6, epochs=2, shuffle=False, sample_weight=SW, verbose=0, callbacks=[cb])
        logs.append((hist.history, cb.logs, m.evaluate(X, y, sample_weight=SW, return_dict=True, verbose=0)))
    (hc, bc, ec), (hd, bd, ed) = logs
    assert sorted(hd) == sorted(hc) and len(bd) == len(bc) == 8
    for key in hc:
        close(hd[key], hc[key])
    for a, b in zip(bd, bc):
        assert sorted(a) == sorted(b)
        for key in a:
            close(a[key], b[key])
    for key in ec:
        close(ed[key], ec[key])


X3 = RNG.standard_normal((N, 3, 4)).astype(np.float32)


@pytest.mark.parametrize("units,loss,y,sw", [
    (3, SparseCategoricalCrossentropy(from_logits=True), RNG.integers(0, 3, (N, 3)), SW),
    (3, SparseCategoricalCrossentropy(from_logits=True), RNG.integers(0, 3, (N, 3)), RNG.random((N, 3)) + 0.1),
    (1, BinaryCrossentropy(from_logits=True), RNG.integers(0, 2, (N, 3)), RNG.random((N, 3)) + 0.1),
], ids=["sparse-per-sample-weights", "sparse-per-position-weights", "binary-per-position-weights"])
def test_device_metrics_of_sequence_outputs_match_the_cpu(units, loss, y, sw):
    def make():
        return Sequential([Input((3, 4)), Dense(5, activation="tanh"), Dense(units)])
    cpu = make()
    with _device._harness_device():
        dev = make()
    dev.set_weights(cpu.get_weights())
    hist = []
    for m in (cpu, dev):
        m.compile(Adam(0.01), loss, metrics=["accuracy"], weighted_metrics=["accuracy"])
        hist.append(m.fit(X3, y, batch_size=6, epochs=2, shuffle=False, sample_weight=sw.astype(np.float32),
                          verbose=0).history)
    for key in hist[0]:
        close(hist[1][key], hist[0][key])


def counting(monkeypatch, res):
    uploads, downloads = [], []
    real_numpy = host.DeviceArray.numpy
    monkeypatch.setattr(res, "DeviceArray", lambda a, dtype=None: uploads.append(a.shape) or host.DeviceArray(a, dtype))
    monkeypatch.setattr(host.DeviceArray, "numpy", lambda self: downloads.append(self.shape) or real_numpy(self))
    return uploads, downloads


def test_a_step_downloads_one_vector_of_loss_and_metric_sums(monkeypatch):
    with _device._harness_device():
        model = model_of(3, "softmax")
    model.compile(SGD(), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy"])
    model.fit(X, LABELS, batch_size=10, verbose=0)
    uploads, downloads = counting(monkeypatch, model._resident)
    model.fit(X, LABELS, batch_size=10, epochs=1, sample_weight=SW, verbose=0, callbacks=[BatchLogs()])
    assert downloads == [(6,)] * 2  # the loss and two metrics: (sum v w, sum c w) each
    assert uploads == []  # x, the labels and the sample weights come in through the prefetcher
    model.train_on_batch(X[:10], LABELS[:10], sample_weight=SW[:10])
    assert uploads == [(10, 5), (10,), (10,)]  # no prefetch: x, then the labels and the sample weights, each
    # uploaded once (shared by the loss and the metrics)
    uploads.clear()
    downloads.clear()
    model.fit(X, LABELS, batch_size=10, epochs=2, sample_weight=SW, verbose=0)
    assert downloads == [(6,)] * 2  # no batch logs read: the epoch's sums, once per epoch
    model.compile(SGD(), "sparse_categorical_crossentropy", metrics=[M.SparseTopKCategoricalAccuracy(k=2)])
    model.fit(X, LABELS, batch_size=10, epochs=1, verbose=0)  # a new optimizer: the old one's slots come out
    downloads.clear()
    model.fit(X, LABELS, batch_size=10, epochs=1, verbose=0)
    assert downloads == [(10, 3), (10, 3), (4,)]  # a host metric reads the predictions; the loss once


def test_the_step_checks_targets_as_the_cpu_metric_does():
    with _device._harness_device():
        model = model_of(3, None)
    model.compile(SGD(), CategoricalCrossentropy(from_logits=True), metrics=["sparse_categorical_accuracy"])
    with pytest.raises(ValueError, match="sparse_categorical_accuracy: y_true must have shape"):
        model.fit(X, ONEHOT, verbose=0)


def test_row_stats_is_the_metrics_sums_in_float64():
    p = RNG.standard_normal((7, 4))
    t = RNG.standard_normal((7, 4))
    lab = RNG.integers(0, 4, 7).astype(np.int32)
    w = RNG.random(7)
    D = host.DeviceArray
    out = host.resident.stats(12)
    r = host.resident
    r.row_stats(out, 0, "sparse_categorical_accuracy", D(p), labels=D(lab), weight=D(w))
    r.row_stats(out, 2, "mean_squared_error", D(p), target=D(t))
    r.row_stats(out, 4, "binary_accuracy", D(p), target=D((t > 0).astype(np.float64)), threshold=0.1, weight=D(w))
    r.row_stats(out, 6, "value", D(p[:, 0]), weight=D(w))
    r.row_stats(out, 8, "categorical_accuracy", D(p), target=D(t))
    r.row_stats(out, 10, "mean_absolute_error", D(p), target=D(t), weight=D(w))
    s = out.numpy()
    np.testing.assert_allclose(s[0:2], [((p.argmax(1) == lab) * w).sum(), w.sum()])
    np.testing.assert_allclose(s[2:4], [((p - t) ** 2).mean(1).sum(), 7])
    np.testing.assert_allclose(s[4:6], [(((p > 0.1) == (t > 0)).sum(1) * w).sum(), 4 * w.sum()])
    np.testing.assert_allclose(s[6:8], [(p[:, 0] * w).sum(), w.sum()])
    np.testing.assert_allclose(s[8:10], [(p.argmax(1) == t.argmax(1)).sum(), 7])
    np.testing.assert_allclose(s[10:12], [(np.abs(p - t).mean(1) * w).sum(), w.sum()])


def test_row_stats_checks_its_arguments():
    D, r = host.DeviceArray, host.resident
    out, p = r.stats(2), D(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="unknown kind 'auc'"):
        r.row_stats(out, 0, "auc", p)
    with pytest.raises(ValueError, match="slot 1 is out of range"):
        r.row_stats(out, 1, "mean_squared_error", p, target=p)
    with pytest.raises(ValueError, match="expected `labels` and no `target`"):
        r.row_stats(out, 0, "sparse_categorical_accuracy", p, target=p)
    with pytest.raises(ValueError, match=r"expected `target` of shape \(3, 2\)"):
        r.row_stats(out, 0, "mean_absolute_error", p, target=D(np.zeros((2, 3), np.float32)))
    with pytest.raises(TypeError, match="`out` of dtype float64"):
        r.row_stats(D(np.zeros(2, np.float32)), 0, "mean_absolute_error", p, target=p)


# ---- pinned double-buffered uploads -------------------------------------------------------------

def pinned():
    s = host.memory_stats()
    return {"pinned_bytes": s["pinned_bytes"], "pinned_allocations": s["pinned_allocations"]}


def test_prefetcher_uploads_every_dtype_and_reuses_its_pinned_buffers():
    gc.collect()  # earlier tests' garbage (models in reference cycles) frees its pinned buffers now, not below
    pf = host.resident.Prefetcher(2)
    before = pinned()
    arrays = [RNG.standard_normal((4, 3)).astype(np.float32), np.arange(5, dtype=np.int32),
              RNG.standard_normal(6), np.arange(7, dtype=np.uint8), np.asfortranarray(np.ones((3, 2), np.float32))]
    for _ in range(3):
        for a, d in zip(arrays, pf.upload(arrays)):
            assert d.dtype == a.dtype and d.shape == a.shape
            np.testing.assert_array_equal(d.numpy(), a)
    after = pinned()
    assert after["pinned_allocations"] - before["pinned_allocations"] == 2 * len(arrays)  # per slot, once
    pf.upload([np.zeros((100, 100), np.float32)])  # a larger array grows that block only
    assert pinned()["pinned_allocations"] == after["pinned_allocations"] + 1
    with pytest.raises(TypeError, match="received dtype int64"):
        pf.upload([np.zeros(2, np.int64)])
    with pytest.raises(ValueError, match="slots >= 1"):
        host.resident.Prefetcher(0)
    del pf
    assert pinned()["pinned_bytes"] == before["pinned_bytes"]


def test_fit_with_prefetching_equals_fit_without_and_allocates_nothing_after_the_first_steps(monkeypatch):
    a, b = (RNG.standard_normal((N, 5)).astype(np.float32) for _ in range(2))

    def make():
        with _device._harness_device():
            xa, xb = Input((5,)), Input((5,))
            m = Model([xa, xb], Dense(3)(Add()([Dense(4, activation="relu")(xa), Dense(4)(xb)])))
        m.compile(Adam(), SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return m

    m1, m2 = make(), make()
    m2.set_weights(m1.get_weights())
    monkeypatch.setattr(m2._resident, "prefetch", lambda *batch: None)
    taken, res = [], m1._resident
    real_upload = res._upload
    monkeypatch.setattr(res, "_upload", lambda xs: taken.append(len(res._prefetched)) or real_upload(xs))
    for m in (m1, m2, m1, m2):  # both warm (they share the pool)
        m.fit([a, b], LABELS, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert taken == [2, 2, 2, 1] * 2  # every step found its inputs prefetched (and the next batch's)
    gc.collect()  # earlier tests' models (and their prefetchers) freed now, not during the fits
    stats, pins = host.memory_stats(), pinned()
    h1 = m1.fit([a, b], LABELS, batch_size=6, epochs=3, shuffle=False, verbose=0).history
    h2 = m2.fit([a, b], LABELS, batch_size=6, epochs=3, shuffle=False, verbose=0).history
    assert host.memory_stats()["raw_allocations"] == stats["raw_allocations"]
    # no pinned allocation; what is held may only shrink (the cyclic collector may still free
    # another test's prefetcher meanwhile)
    now = pinned()
    assert now["pinned_allocations"] == pins["pinned_allocations"] and pins["pinned_bytes"] > 0
    assert now["pinned_bytes"] <= pins["pinned_bytes"]
    assert h1 == h2
    for w1, w2 in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    taken.clear()
    p1, p2 = (m.predict([a, b], batch_size=8, verbose=0) for m in (m1, m2))
    np.testing.assert_array_equal(p1, p2)
    e1, e2 = (m.evaluate([a, b], LABELS, batch_size=8, verbose=0) for m in (m1, m2))
    assert e1 == e2
    assert taken == [2, 2, 1] * 2  # predict and evaluate prefetch too


# ---- logs read once per epoch (resident_metrics.EpochStats) -------------------------------------

def two_output_model():
    x = Input((5,))
    h = Dense(6, activation="tanh")(x)
    return Model(x, [Dense(3, name="cls")(h), Dense(2, name="reg")(h)])


DEFERRED = {  # make, loss, y, metrics, loss_weights
    **{k: (lambda c=c: model_of(c[0], c[1]), c[2], c[3], c[4], None) for k, c in CASES.items()},
    "two-outputs-weighted": (two_output_model, [SparseCategoricalCrossentropy(from_logits=True), "mse"],
                             [LABELS, X[:, :2]], [["accuracy"], ["mae"]], [0.7, 2.0]),
}


class AllBatchLogs(BatchLogs):
    def on_test_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


@pytest.mark.parametrize("case", list(DEFERRED), ids=list(DEFERRED))
def test_logs_read_once_per_epoch_equal_the_per_batch_path(case, monkeypatch):
    """verbose 0 and no batch-end callback: the losses and device metrics are summed on the device
    and read once per epoch (and once per validation, and per evaluate); the History, the weights
    and evaluate's results equal those of a fit whose callback reads every batch's logs (float64,
    to tight tolerances)."""
    from faltung.models import resident_metrics
    make, loss, y, metrics, loss_weights = DEFERRED[case]
    reads = {"batch": 0, "epoch": 0}
    for cls, key in ((resident_metrics.BatchStats, "batch"), (resident_metrics.EpochStats, "epoch")):
        def counted(self, _read=cls.read, _key=key):
            reads[_key] += 1
            return _read(self)
        monkeypatch.setattr(cls, "read", counted)
    results = []
    sw = SW if loss_weights is None else None
    for callbacks in ([], [AllBatchLogs()]):
        with _device._harness_device("float64"):
            m = make()
        m.set_weights([np.random.default_rng(i).uniform(-0.5, 0.5, w.shape) for i, w in enumerate(m.get_weights())])
        m.compile(SGD(0.05, momentum=0.5), loss, loss_weights=loss_weights, metrics=copy.deepcopy(metrics))
        reads.update(batch=0, epoch=0)
        val = (X[:14], y[:14] if loss_weights is None else [t[:14] for t in y])
        hist = m.fit(X, y, batch_size=6, epochs=3, shuffle=False, verbose=0, callbacks=callbacks,
                     sample_weight=sw, validation_data=val)
        fit_reads = dict(reads)
        ev = m.evaluate(X, y, batch_size=7, sample_weight=sw, verbose=0, callbacks=callbacks, return_dict=True)
        results.append((hist.history, m._resident.get_weights(), fit_reads, ev, dict(reads)))
    (hd, wd, rd, ed, rd2), (hb, wb, rb, eb, rb2) = results
    # 3 epochs of 4 batches, each validated over 3 batches, then evaluate over 3 batches
    assert rd == {"batch": 0, "epoch": 6} and rb == {"batch": 21, "epoch": 0}
    assert rd2 == {"batch": 0, "epoch": 7} and rb2 == {"batch": 24, "epoch": 0}
    assert sorted(hd) == sorted(hb) and any(k.startswith("val_") for k in hd)
    for key in hb:
        np.testing.assert_allclose(hd[key], hb[key], rtol=1e-12, atol=1e-14)
    for key in eb:
        np.testing.assert_allclose(ed[key], eb[key], rtol=1e-12, atol=1e-14)
    for a, b in zip(wd, wb):
        np.testing.assert_array_equal(a, b)


def test_a_progress_bar_or_a_batch_callback_reads_every_batch(monkeypatch, capsys):
    from faltung.callbacks import LambdaCallback, TerminateOnNaN
    from faltung.models import resident_metrics
    reads = []
    monkeypatch.setattr(resident_metrics.EpochStats, "read", lambda self: reads.append(1) or self.sums)
    with _device._harness_device():
        m = model_of(3, None)
    m.compile(SGD(0.01), SparseCategoricalCrossentropy(from_logits=True))
    for verbose, callbacks in ((1, []), (0, [TerminateOnNaN()]), (0, [LambdaCallback(on_batch_end=print)])):
        m.fit(X, LABELS, batch_size=6, epochs=1, verbose=verbose, callbacks=callbacks)
    m.evaluate(X, LABELS, batch_size=6, verbose=1)
    assert reads == []
    capsys.readouterr()
    m.fit(X, LABELS, batch_size=6, epochs=2, verbose=2)
    assert reads == [1, 1] and capsys.readouterr().out.count("loss:") == 2
