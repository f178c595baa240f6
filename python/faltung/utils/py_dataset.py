"""`PyDataset` (Keras 3's keras.utils.PyDataset): a dataset of batches that `fit`,
`evaluate` and `predict` index as `dataset[i]` for i in range(len(dataset))."""


class PyDataset:
    """Base class of batch datasets. Subclasses implement `__getitem__(index)`, returning a
    batch `x`, `(x, y)` or `(x, y, sample_weight)`, and `__len__` (the number of batches
    in an epoch); `on_epoch_begin` / `on_epoch_end` run around each epoch of `fit`.

    Args:
        workers, use_multiprocessing, max_queue_size: Keras 3's meaning and defaults. With
            workers > 1, `fit` / `evaluate` / `predict` read up to max_queue_size batches ahead
            on that many threads, in order, while the model trains (faltung's kernels release
            the GIL). use_multiprocessing=True also reads with threads: a process pool would
            pickle the dataset, which faltung never does.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    workers = property(lambda self: self._workers)
    use_multiprocessing = property(lambda self: self._use_multiprocessing)
    max_queue_size = property(lambda self: self._max_queue_size)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}.__getitem__")

    @property
    def num_batches(self):
        """len(self) when the dataset defines __len__, else None (an endless dataset)."""
        if type(self).__len__ is not PyDataset.__len__:
            return len(self)
        return None

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__}.__len__")

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass
