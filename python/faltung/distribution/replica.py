"""The trainer's hooks for a DataParallel distribution over P > 1 MPI processes.

With no distribution (or one process) every hook is the identity, so models/trainer.py
runs exactly as before. With DataParallel:

- `graph_of(model)` is a ShardedGraph around the model's graph. Its forward takes the
  global batch, runs the layers on this rank's rows (comm.shard_bounds: rank r of P takes
  a contiguous block, the first n % P ranks one row more) and all-gathers the outputs and
  their masks. Losses and metrics are then computed on the global batch, identically on
  every rank, so the logged values are the global ones and any loss reduction, mask or
  sample weight gives the one-process value. Its backward takes the global output
  gradients, back-propagates this rank's rows, and sums the weight gradients over the
  ranks: in buckets of about BUCKET_BYTES, each a non-blocking all-reduce started as soon
  as backward has finished its weights (the graph's `after_node` hook), so that it
  overlaps the backward of the layers below (a helper thread, _Poller, lets MPI progress
  them while the layers compute); the optimizer waits for them all. The sum
  of the per-rank gradients of the global loss is the one-process gradient, also for an
  uneven last batch (a rank with no rows runs a stand-in row with zero output
  gradients, so it contributes zeros). One more all-reduce averages the change of every
  float non-trainable weight (BatchNormalization's moving statistics, which each replica
  computes from its own rows, as Keras's default), so every rank holds identical weights
  after every step. The first training step of a model broadcasts rank 0's weights and
  optimizer state.
- `sum_over_replicas(values)`: the all-reduce that BatchNormalization(synchronized=True)
  calls in its forward and backward for the global batch's statistics.
- `same_order(permutation)`: rank 0's shuffle, so every rank walks the same global
  batches whatever its own random state (dropout draws differ per rank).
- `rank_callbacks(callbacks, verbose)` and `is_writer()`: the progress bar, CSVLogger,
  ModelCheckpoint and `model.save` act on rank 0 only.

Run the script with `mpiexec -n P python -m mpi4py script.py`: mpi4py's `-m` runner
aborts every rank when one raises, instead of leaving the others waiting in a collective.
"""
import threading
import time
import weakref

import numpy as np

from faltung.distribution.comm import shard_bounds

_sharded = weakref.WeakKeyDictionary()  # model -> its ShardedGraph
_current = {"stand_in": False}  # is this rank running a stand-in row (see forward)?
BUCKET_BYTES = 1 << 20  # gradient bytes per non-blocking all-reduce
POLL_SECONDS = 1e-3  # how often _Poller lets MPI progress the buckets during backward


def _active():
    """The DataParallel in use when it spans more than one process, else None."""
    from faltung import distribution
    d = distribution.distribution()
    return d if d is not None and d.comm.size > 1 else None


def graph_of(model):
    """What the trainer runs forward and backward: the model's graph, or its ShardedGraph."""
    d = _active()
    if d is None:
        return model._graph
    sg = _sharded.get(model)
    if sg is None or sg.graph is not model._graph or sg.comm is not d.comm:
        sg = _sharded[model] = ShardedGraph(model, d.comm)
    return sg


def is_distributed():
    """Whether a DataParallel over more than one process is in use."""
    return _active() is not None


def sum_over_replicas(values):
    """float64 `values` summed over the ranks (a stand-in row adds nothing); the values
    themselves in one process. For layers that reduce over the global batch
    (BatchNormalization(synchronized=True)); every rank must call it at the same point."""
    d = _active()
    values = np.array(values, np.float64)
    if d is None:
        return values
    if _current["stand_in"]:
        values[...] = 0.0
    return d.comm.allreduce_sum(values)


def is_stand_in():
    """Whether this rank is running a stand-in row (it has no rows of the batch)."""
    return _current["stand_in"]


def same_order(permutation):
    """Rank 0's `permutation` on every rank."""
    d = _active()
    if d is None:
        return permutation
    return d.comm.bcast(np.ascontiguousarray(permutation, np.int64))


def is_writer():
    """Whether this process writes files: rank 0, or the only process."""
    d = _active()
    return d is None or d.comm.rank == 0


def rank_callbacks(callbacks, verbose):
    """(callbacks, verbose) for this rank: on ranks other than 0 no progress bar and none
    of the callbacks that write files."""
    if is_writer():
        return callbacks, verbose
    from faltung.callbacks import CSVLogger, ModelCheckpoint, ProgbarLogger
    writers = (CSVLogger, ModelCheckpoint, ProgbarLogger)
    return [c for c in callbacks or [] if not isinstance(c, writers)], 0


def _unique(variables):
    seen = set()
    return [v for v in variables if not (id(v) in seen or seen.add(id(v)))]


class _Bucket:
    """Trainable weights whose gradients one non-blocking all-reduce sums: a flat float32
    buffer [grad of each weight, one has-grad flag per weight]."""

    def __init__(self, variables, ready_at):
        self.variables, self.ready_at = variables, ready_at
        self.buf = self.request = None  # while the all-reduce runs

    def start(self, comm):
        sizes = [v.value.size for v in self.variables]
        self.buf = buf = np.zeros(sum(sizes) + len(sizes), np.float32)
        off, flags = 0, sum(sizes)
        for i, (v, n) in enumerate(zip(self.variables, sizes)):
            if v.grad is not None:
                buf[off:off + n] = np.ravel(v.grad)
                buf[flags + i] = 1.0
            off += n
        self.request = comm.iallreduce_sum(buf)
        return self

    def finish(self):
        """After the request completed: every weight's grad is the sum over the ranks."""
        off, flags = 0, len(self.buf) - len(self.variables)
        for i, v in enumerate(self.variables):
            n = v.value.size
            v.grad = self.buf[off:off + n].reshape(v.value.shape) if self.buf[flags + i] else None
            off += n
        self.buf = self.request = None


class _Poller:
    """A helper thread that, while backward runs, calls MPI_Testall on the gradient buckets
    in flight every POLL_SECONDS (sleeping in between) until they are all done, then sleeps
    until `submit` hands it newly started ones. MPICH moves a non-blocking collective on
    only inside MPI calls: tested between layers alone, a bucket started a few layers
    before the end of backward had not finished when backward did (bench/mpi_allreduce.py);
    the layers' kernels release the GIL, so this thread polls during them. Used when MPI
    runs at MPI_THREAD_MULTIPLE (mpi4py's default). MPICH's own progress thread
    (MPIR_CVAR_ASYNC_PROGRESS=1) spins and, with one rank per core, halves the speed of
    the computation."""

    def __init__(self, comm):
        self.comm, self.requests, self.done = comm, [], False
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="faltung-mpi-poller", daemon=True)
        self.thread.start()

    def submit(self, requests):
        """Poll `requests` (all the buckets started so far) from now on."""
        self.requests = requests
        self.wake.set()

    def _run(self):
        while True:
            self.wake.wait()
            if self.done:
                return
            self.wake.clear()  # a submit from here on wakes the next wait
            while not self.done and not self.comm.test_all(self.requests):
                time.sleep(POLL_SECONDS)

    def stop(self):
        self.done = True
        self.wake.set()
        self.thread.join()


class ShardedGraph:
    """forward/backward of a model's graph with the batch split over the ranks (see the
    module docstring). Holds the rows of the last forward for the backward that follows."""

    def __init__(self, model, comm):
        self.model, self.graph, self.comm = model, model._graph, comm
        self.synced = False
        self.rows = (0, 0)
        self.base = []  # float non-trainable weights as of the last all-reduce
        self.plan, self.plan_key = [], None  # the gradient buckets (see _buckets)

    # -- forward -------------------------------------------------------------------------
    def forward(self, flat_inputs, training=False):
        """(global outputs, global masks, this rank's contexts) for the global batch. A rank
        without rows (a batch smaller than P) runs row 0 as a stand-in whose outputs are
        dropped and whose output gradients are zeros, so that every rank makes the same
        collective calls (synchronized BatchNormalization counts it as no row)."""
        if training and not self.synced:
            self._broadcast_state()
        comm = self.comm
        n = flat_inputs[0].shape[0]
        a, b = self.rows = shard_bounds(n, comm.size, comm.rank)
        rows = slice(a, b) if b > a else slice(0, 1)
        _current["stand_in"] = b == a
        try:
            outs, masks, ctxs = self.graph.forward([x[rows] for x in flat_inputs], training)
        finally:
            _current["stand_in"] = False
        full = [None if t is None else comm.allgather_rows(t[:b - a], n)
                for t in list(outs) + list(masks)]
        return full[:len(outs)], full[len(outs):], ctxs

    # -- backward ------------------------------------------------------------------------
    def backward(self, ctxs, flat_dys, need_dx=True):
        """Back-propagates this rank's rows of the global output gradients `flat_dys` and
        leaves in every trainable weight's grad its sum over the ranks (None where no rank
        has one). A bucket's non-blocking all-reduce starts as soon as backward has
        finished its weights' gradients; the rest of backward runs meanwhile, and MPI
        progresses them from _Poller's thread (or between layers, without one). Input
        gradients are not returned (None)."""
        a, b = self.rows
        buckets = self._buckets()
        started = []
        poller = _Poller(self.comm) if self.comm.threads_ok else None

        def after_node(i):  # node i's backward ran: the gradients of nodes >= i are final
            count = len(started)
            while len(started) < len(buckets) and buckets[len(started)].ready_at >= i:
                started.append(buckets[len(started)].start(self.comm))
            if poller is None:  # lets MPI progress them, between layers only
                self.comm.test_all([bk.request for bk in started])
            elif len(started) > count:
                poller.submit([bk.request for bk in started])

        _current["stand_in"] = b == a
        try:
            self.graph.backward(ctxs, [None if d is None else d[a:b] if b > a else
                                       np.zeros_like(d[:1]) for d in flat_dys], False,
                                after_node=after_node)
        finally:
            _current["stand_in"] = False
            if poller is not None:
                poller.stop()
        after_node(-1)
        self.comm.wait_all([bk.request for bk in buckets])
        for bk in buckets:
            bk.finish()
        self._average_moving()
        return [None] * len(self.graph.inputs)

    def _buckets(self):
        """The trainable weights in buckets of about BUCKET_BYTES, in the order backward
        finishes their gradients (the same plan on every rank; remade when the set of
        trainable weights changes)."""
        trainable = _unique(self.model.trainable_weights)
        key = [id(v) for v in trainable]
        if self.plan_key != key:
            ready = {}  # a weight's gradient is final after the first node that uses it
            for i, node in enumerate(self.graph.nodes):
                for v in node.layer.weights:
                    ready.setdefault(id(v), i)
            order = sorted(trainable, key=lambda v: -ready.get(id(v), -1))
            self.plan, group, size = [], [], 0
            for v in order:
                group.append(v)
                size += v.value.nbytes
                if size >= BUCKET_BYTES or v is order[-1]:
                    self.plan.append(_Bucket(group, min(ready.get(id(w), -1) for w in group)))
                    group, size = [], 0
            self.plan_key = key
        return self.plan

    def _average_moving(self):
        """Every float non-trainable weight (moving statistics) moves by the mean of its
        changes on the ranks since the last step."""
        moving = self._moving()
        if not moving:
            return
        delta = np.concatenate([(v.value - base).ravel() for v, base in zip(moving, self.base)])
        self.comm.allreduce_sum(delta / np.float32(self.comm.size))
        off = 0
        for v, base in zip(moving, self.base):
            v.value[...] = base + delta[off:off + v.value.size].reshape(base.shape)
            base[...] = v.value
            off += v.value.size

    def _moving(self):
        return [v for v in _unique(self.model.non_trainable_weights)
                if v.value.dtype == np.float32]

    # -- state ---------------------------------------------------------------------------
    def _broadcast_state(self):
        """Rank 0's weights and optimizer state on every rank (before the first step)."""
        comm = self.comm
        for v in _unique(self.model.weights):
            comm.bcast(v.value)
        self.base = [v.value.copy() for v in self._moving()]
        opt = self.model.optimizer
        state = opt.variables  # [iterations] + slot arrays (none before the first step)
        counts = comm.bcast(np.array([len(state)], np.int64))
        mismatch = comm.allreduce_sum(np.array([counts[0] != len(state)], np.float32))
        if mismatch[0]:
            raise ValueError(f"DataParallel: the optimizer holds {len(state)} state arrays on "
                             f"rank {comm.rank} and {counts[0]} on rank 0; build it the same "
                             "way on every rank.")
        opt.iterations = int(comm.bcast(np.array([opt.iterations], np.int64))[0])
        for slot in state[1:]:
            comm.bcast(slot)
        self.synced = True
