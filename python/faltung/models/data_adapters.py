"""Where `fit` / `evaluate` / `predict` take their batches from: arrays (split into batches
here) or a dataset of batches (Keras 3's data adapters, reduced to what faltung needs).

A dataset is a `faltung.utils.PyDataset` or anything shaped like one (`__getitem__` and
`__len__`, e.g. keras.utils.Sequence, the iterators of `ImageDataGenerator.flow`), read as
`data[i]` for i in range(len(data)) with `on_epoch_begin`/`on_epoch_end` around each epoch; or
a Python generator / iterator, read with `next()`. A batch is `x`, `(x,)`, `(x, y)` or
`(x, y, sample_weight)`, as Keras unpacks it.
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from faltung.models.trainer import _batches, _take
from faltung.utils.py_dataset import PyDataset


def is_dataset(x):
    """Whether `x` is a dataset of batches rather than array data."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict)) or hasattr(x, "shape"):
        return False
    return isinstance(x, PyDataset) or hasattr(x, "__next__") or (
        hasattr(x, "__getitem__") and hasattr(x, "__len__"))


def is_indexed(data):
    """A dataset read as data[i] (a PyDataset / Sequence: __getitem__ and __len__), rather than
    with next() (ImageDataGenerator's iterators have both and are read by index, as in Keras)."""
    return isinstance(data, PyDataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__"))


def unpack(batch):
    """(x, y, sample_weight) of one batch, with None for what it leaves out."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError("Data is expected to be in format `x`, `(x,)`, `(x, y)`, or `(x, y, "
                             f"sample_weight)`, found a tuple of {len(batch)} elements")
        return tuple(batch) + (None,) * (3 - len(batch))
    return batch, None, None


class ArrayBatches:
    """Batches of prepared arrays (xs, ys, sws: flat lists). Without `steps_per_epoch`
    an epoch is one pass (reshuffled when `shuffle`); with it, epochs take that many batches
    from passes that continue across epochs, as Keras."""

    def __init__(self, xs, ys, sws, batch_size, shuffle, steps_per_epoch=None):
        self.data = (xs, ys, sws)
        self.n = xs[0].shape[0]
        self.batch_size, self.shuffle, self.steps_per_epoch = batch_size, shuffle, steps_per_epoch
        self.steps = steps_per_epoch or -(-self.n // batch_size)
        self._queue = []

    def epoch(self, limit=None):
        """Yields (xs, ys, sws) of each batch of one epoch (at most `limit` batches)."""
        xs, ys, sws = self.data
        if self.steps_per_epoch is None:
            self._queue = _batches(self.n, self.batch_size, self.shuffle)
        steps = self.steps if limit is None else min(self.steps, limit)
        for step in range(steps):
            if not self._queue:
                self._queue = _batches(self.n, self.batch_size, self.shuffle)
            idx = self._queue.pop(0) if self.steps_per_epoch else self._queue[step]
            yield _take(xs, idx), _take(ys, idx), _take(sws, idx)


class DatasetBatches:
    """Batches of a dataset, each turned into (xs, ys, sws) by `prepare(x, y, sw)`. Steps per
    epoch: `steps`, else len(data) (a generator without `steps` runs until it is exhausted).
    With more steps than batches, an indexed dataset starts over from batch 0."""

    def __init__(self, data, prepare, steps=None):
        self.data, self.prepare = data, prepare
        self.indexed = is_indexed(data)
        if steps is None and self.indexed:
            steps = len(data)
        self.steps = steps
        if steps is not None and int(steps) < 1:
            raise ValueError(f"Expected a positive number of steps per epoch, received {steps}")

    def epoch(self, limit=None):
        data = self.data
        steps = self.steps if limit is None else limit if self.steps is None else min(self.steps, limit)
        if self.indexed and hasattr(data, "on_epoch_begin"):
            data.on_epoch_begin()
        if self.indexed:
            for batch in _indexed_batches(data, steps):
                yield self.prepare(*unpack(batch))
            if hasattr(data, "on_epoch_end"):
                data.on_epoch_end()
            return
        step = 0
        while steps is None or step < steps:
            try:
                batch = next(data)
            except StopIteration:
                break
            yield self.prepare(*unpack(batch))
            step += 1


def _indexed_batches(data, steps):
    """data[0], data[1], ... (wrapping around) for `steps` steps, in order. With `workers` > 1
    (a PyDataset's argument, Keras 3's meaning) a pool of that many threads reads up to
    `max_queue_size` batches ahead while the model trains, as Keras's thread pool does; faltung's
    kernels release the GIL, so loading and training overlap. use_multiprocessing=True reads
    with threads as well (a process pool would have to pickle the dataset and its arrays)."""
    n = len(data)
    workers = int(getattr(data, "workers", 1) or 1)
    if workers <= 1:
        for step in range(steps):
            yield data[step % n]
        return
    ahead = max(int(getattr(data, "max_queue_size", 10) or 1), workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faltung-data") as pool:
        pending, submitted = deque(), 0
        try:
            while submitted < steps or pending:
                while submitted < steps and len(pending) < ahead:
                    pending.append(pool.submit(data.__getitem__, submitted % n))
                    submitted += 1
                yield pending.popleft().result()
        finally:  # an epoch stopped early (stop_training) drops what was read ahead
            for f in pending:
                f.cancel()


def check_dataset_arguments(y, sample_weight, what):
    """Keras: with a dataset `x`, targets and weights come from its batches."""
    if y is not None:
        raise ValueError(f"`y` argument is not supported when using a dataset as input to `{what}`: "
                         "its batches carry the targets.")
    if sample_weight is not None:
        raise ValueError("`sample_weight` argument is not supported when using a dataset as input to "
                         f"`{what}`: its batches carry the sample weights.")
