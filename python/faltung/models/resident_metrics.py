"""What a device-resident model's batch sends out (faltung.models.resident): its losses and
compiled metrics reduced on the device into one small float64 vector (the backend's `stats` and
`row_stats`, cpp/cuda/bind_resident_io.hpp, metrics.cuh), downloaded once per batch, instead of
the per-sample losses and the predictions.

Each reduction gives two sums, sum v w and sum c w, over the rows of an output (per-row values v,
counts c, weights w): a loss's mean is the first over the number of rows (faltung.losses'
"sum_over_batch_size"); a metric adds them to its `total` and `count`, as its update_state on
the host would, so `result()`, `reset_state()`, the logs callbacks receive after each batch and
History are the CPU Trainer's.

Reduced on the device: "accuracy"/"acc" (binary, sparse or categorical, chosen from the shapes
as on the CPU), SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy (any threshold)
and the MeanSquaredError and MeanAbsoluteError metrics, by class, name or function, as
`metrics` or `weighted_metrics`, on outputs of rank >= 2. Any other metric (and a sample weight
these cannot take per row) reads that output's predictions, downloaded for it, through the CPU
metric's own update_state: the model still runs on the device, only the metric on the host.

Each distinct target array of an output (labels, dense targets, row weights) is uploaded once
per batch and shared by the loss and the metrics (`BatchTargets`).

The vector is read after every batch when the Trainer builds logs for the callbacks after every
batch. When none reads them (no progress bar drawn batch by batch, no callback with a batch-end
hook: trainer._reads_batch_logs), `EpochStats` sums the batches' vectors on the device and reads
them once, at the end of the epoch (of the validation, of evaluate): one synchronization there
instead of one per batch.
"""
import numpy as np

from faltung import losses as L
from faltung import metrics as M

_KINDS = {M.sparse_categorical_accuracy: "sparse_categorical_accuracy",
          M.categorical_accuracy: "categorical_accuracy", M.binary_accuracy: "binary_accuracy",
          L.mean_squared_error: "mean_squared_error", L.mean_absolute_error: "mean_absolute_error"}


def _like(shape):
    from faltung.models.resident_losses import _like as like
    return like(shape)


class BatchTargets:
    """One output's target arrays of one batch on the device: each distinct array uploaded once,
    or taken from `uploaded` ([(host array, DeviceArray)]: the batch's targets and weights that
    Resident.prefetch uploaded with its inputs) where one equals it."""

    def __init__(self, res, y, uploaded=()):
        self.res, self.y, self._up = res, y, list(uploaded)

    def upload(self, a):
        a = np.ascontiguousarray(a)
        for host, dev in self._up:
            if host.dtype == a.dtype and host.shape == a.shape and np.array_equal(host, a):
                return dev
        dev = self.res.DeviceArray(a)
        self._up.append((a, dev))
        return dev


def device_kind(metric, y, pred_shape):
    """(the row_stats kind, the threshold) when `metric` can be reduced on the device for
    predictions of `pred_shape`, else None."""
    if len(pred_shape) < 2 or not isinstance(metric, M.MeanMetricWrapper):
        return None
    if type(metric) is M._AutoAccuracy:
        metric._resolve(np.shape(y), tuple(pred_shape))
    elif type(metric).update_state is not M.MeanMetricWrapper.update_state:
        return None
    kind = _KINDS.get(metric._fn)
    kwargs = dict(metric._fn_kwargs)
    threshold = kwargs.pop("threshold", 0.5) if kind == "binary_accuracy" else 0.5
    if kind is None or kwargs:
        return None
    return kind, float(threshold)


def metric_inputs(kind, metric, targets, pred_shape, sample_weight):
    """(target, labels, row weights) on the device for one metric, with the CPU metric's shape
    checks and messages; None when its sample weights differ along the last axis of a binary
    accuracy (not per row: the host path). sample_weight: what this metric weighs by (the
    caller's choice, as the Trainer's _update_metrics: weighted metrics the sample weights,
    all of them an output's mask)."""
    res, y = targets.res, np.asarray(targets.y)
    shape = tuple(pred_shape)
    rows = shape[:-1]
    target = labels = None
    if kind == "sparse_categorical_accuracy":
        t = M._sparse_labels(kind, y, _like(shape))
        labels = targets.upload(t.astype(np.int64).astype(np.int32))
    elif kind == "categorical_accuracy":
        M._check_same(kind, y, _like(shape))
        target = targets.upload(y.astype(res.dtype))
    elif kind == "binary_accuracy":  # Keras's same-rank rule, then the metric's shape check
        t = y[..., None] if y.ndim == len(shape) - 1 and shape[-1] == 1 else \
            y[..., 0] if y.ndim == len(shape) + 1 and y.shape[-1] == 1 else y
        M._check_same(kind, t, _like(shape))
        target = targets.upload(t.astype(res.dtype))
    else:  # mean_squared_error, mean_absolute_error: the loss functions' rule and message
        target = targets.upload(L._same_rank(kind, y.astype(res.dtype), _like(shape)))
    w = None
    if sample_weight is not None:
        vshape = shape if kind == "binary_accuracy" else rows
        w = M._broadcast_weight(metric.name, sample_weight, vshape)
        if vshape != rows:
            if not np.all(w == w[..., :1]):
                return None
            w = w[..., 0]
        w = targets.upload(w.astype(res.dtype).reshape(-1))
    return target, labels, w


class BatchStats:
    """The slots of one batch's reductions: `add` queues one on the device, `read` downloads all."""

    def __init__(self, res, n):
        self.r = res.r
        self.out = res.r.stats(2 * n)
        self.n = 0
        self.values = None

    def add(self, kind, pred, target=None, labels=None, weight=None, threshold=0.5):
        slot = 2 * self.n
        self.n += 1
        self.r.row_stats(self.out, slot, kind, pred, target=target, labels=labels, weight=weight,
                         threshold=threshold)
        return slot

    def read(self):
        """One download of every slot (the batch's only one)."""
        self.values = self.out.numpy()
        return self.values


class EpochStats:
    """A fit epoch's batch vectors (BatchStats) summed on the device, read once by `read`: the
    Trainer's sums over the batches of size x each logged loss ([total, per output...]), and the
    device metrics' total and count. A batch's loss mean is its sum over its n rows, times its
    size in the Trainer's sums: the sums fold exactly while size / n, the loss weights and the
    slots stay the same (every batch of an ordinary fit); a batch that changes them folds what
    came before it first (one more read)."""

    def __init__(self, res, n_losses):
        self.r = res.r
        self.sums = [0.0] * (1 + n_losses)
        self.acc, self.key, self.metrics = None, None, []

    def add(self, stats, loss_slots, on_device, size):
        """One batch: its BatchStats (not read), [(rows n, slot, loss weight)], [(metric, slot)]."""
        key = (tuple((slot, w, size / n if n else 0.0) for n, slot, w in loss_slots),
               tuple((id(m), slot) for m, slot in on_device))
        if self.key is not None and key != self.key:
            self.read()
        self.acc = stats.out if self.acc is None else self.r.add(self.acc, stats.out)
        self.key, self.metrics = key, on_device

    def read(self):
        """Fold the sums so far into `sums` and the metrics (one download); returns `sums`."""
        if self.acc is not None:
            values = self.acc.numpy()
            losses = [float(values[slot]) * ratio for slot, _, ratio in self.key[0]]
            self.sums[0] += sum(w * v for (_, w, _), v in zip(self.key[0], losses))
            for i, v in enumerate(losses):
                self.sums[1 + i] += v
            for metric, slot in self.metrics:  # what Mean.update_state would add
                metric.total += float(values[slot])
                metric.count += float(values[slot + 1])
            self.acc, self.key, self.metrics = None, None, []
        return self.sums
