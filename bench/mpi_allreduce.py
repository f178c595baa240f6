"""All-reduce cost and overlap of DataParallel's gradient buckets, for the seeds' CIFAR-10 CNN
(bench/dp_cost_model.py's `cifar_model`, 558,186 float32 weights = 2.23 MB of
gradients per step), on P MPI processes.

    mpiexec -n 2 python bench/mpi_allreduce.py [--batch-size 64] [--rounds 20] [--bucket-kib 1024]

(mpich's mpiexec needs no flag to run as root; Open MPI's needs --allow-run-as-root.) Each
process runs one OpenMP thread unless OMP_NUM_THREADS says otherwise. `--batch-size` is the
global batch (each rank computes its share). After 3 warm-up steps, every round times each
(the first two in alternating order) after an MPI barrier:

- "overlapped": one `train_on_batch` with DataParallel's bucketed non-blocking all-reduces
  (buckets of about --bucket-kib, each started when backward has finished its weights);
- "serial": the same step with one bucket holding every gradient, which can start only
  after the whole backward (no overlap);
- "blocking": the blocking MPI_Allreduce of buffers of the overlapped buckets' sizes, one
  after the other, alone (no computation): the all-reduce cost of one step.

Inside the overlapped step, timing wrappers (this script's; the library is unchanged) split
each rank's time into: backward compute (Graph.backward minus the MPI calls its main thread
made: packing and starting buckets, and MPI_Testall between layers when the poller thread
is off), and the exposed all-reduce: what the step spends on the gradients after backward
(MPI_Waitall, unpacking). A rank ahead of the other cannot finish a bucket the other has not
started, so the exposed time of a round is that of the last rank to reach the wait
(perf_counter is one clock for all processes of a machine), and so is the share of the
gradient bytes whose all-reduce had completed when that rank began to wait (a Test of each
request: the noise-free measure of overlap). hidden = 1 - exposed / blocking: the share of
the all-reduce that did not add to the step. `--no-poller` lets MPI progress between layers
only (DataParallel's fallback when MPI is not at MPI_THREAD_MULTIPLE), for comparison. Rank
0 prints the medians over the rounds (and quartiles).

On a shared machine the ranks are descheduled at random: a blocking all-reduce that takes
under 1 ms on a quiet machine then takes 5-20 ms (the other rank is not running), and the
times mean little; the share of bytes done before the wait holds. Run it quietly.
"""
import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # P ranks share the cores

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import faltung  # noqa: E402
from faltung.distribution import replica  # noqa: E402
from dp_cost_model import cifar_model  # noqa: E402  (bench/, the script's directory)

COMM = MPI.COMM_WORLD


class Clock:
    """Seconds per label, accumulated until `reset`; `inside` says whether the model's
    Graph.backward is running (MPI calls made from it overlap computation)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.t = {"backward": 0.0, "mpi_in_backward": 0.0, "exposed": 0.0, "polls": 0}
        self.inside = False

    def wrap(self, fn, label=None):
        def timed(*a, **kw):
            if threading.current_thread() is not threading.main_thread():
                self.t["polls"] += 1  # DataParallel's poller thread: runs beside the step
                return fn(*a, **kw)
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.perf_counter() - t0
                self.t[label or ("mpi_in_backward" if self.inside else "exposed")] += dt
        return timed

    def wrap_backward(self, fn):
        def timed(*a, **kw):
            self.inside = True
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.t["backward"] += time.perf_counter() - t0
                self.inside = False
        return timed


def instrument(model, clock):
    """Timing wrappers around the model's graph backward and DataParallel's MPI calls."""
    sg = replica.graph_of(model)
    sg.graph.backward = clock.wrap_backward(sg.graph.backward)
    sg.comm.test_all = clock.wrap(sg.comm.test_all)
    wait_all = sg.comm.wait_all

    def checked_wait_all(requests):
        """Which buckets' all-reduces had completed when the wait began (a Test of each:
        one more poke of MPI progress, like the library's own Testall just before)."""
        clock.t["wait_at"] = time.perf_counter()  # CLOCK_MONOTONIC: one clock for all ranks
        sizes = [bk.buf.nbytes for bk in sg.plan]
        clock.t["done_bytes"] = sum(n for n, r in zip(sizes, requests) if r.Test())
        clock.t["bytes"] = sum(sizes)
        return wait_all(requests)
    sg.comm.wait_all = clock.wrap(checked_wait_all)
    replica._Bucket.start = clock.wrap(replica._Bucket.start)
    replica._Bucket.finish = clock.wrap(replica._Bucket.finish)
    return sg


def timed_step(model, sg, clock, x, y, bucket_bytes):
    _plan(sg, bucket_bytes)  # the buckets for this size
    clock.reset()
    COMM.Barrier()
    t0 = time.perf_counter()
    model.train_on_batch(x, y)
    step = time.perf_counter() - t0
    t = clock.t
    return {"step": step, "compute": t["backward"] - t["mpi_in_backward"],
            "mpi_in_backward": t["mpi_in_backward"], "exposed": t["exposed"],
            "done": t["done_bytes"] / t["bytes"], "wait_at": t["wait_at"], "polls": t["polls"]}


def _plan(sg, bucket_bytes):
    replica.BUCKET_BYTES = bucket_bytes
    sg.plan_key = None
    return sg._buckets()


def blocking_allreduce(buffers):
    COMM.Barrier()
    t0 = time.perf_counter()
    for b in buffers:
        COMM.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=64, help="global batch")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--bucket-kib", type=int, default=replica.BUCKET_BYTES // 1024)
    p.add_argument("--no-poller", action="store_true",
                   help="let MPI progress between layers only (no poller thread)")
    args = p.parse_args()
    rank, size = COMM.Get_rank(), COMM.Get_size()
    faltung.distribution.set_distribution(faltung.distribution.DataParallel())
    faltung.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    model = cifar_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    bucket = args.bucket_kib * 1024
    for _ in range(3):
        model.train_on_batch(x, y)
    clock = Clock()
    sg = instrument(model, clock)
    sg.comm.threads_ok &= not args.no_poller
    buffers = None
    rows = []
    for i in range(args.rounds):
        if i % 2:  # odd rounds time the one-bucket step first
            serial = timed_step(model, sg, clock, x, y, 1 << 62)
        over = timed_step(model, sg, clock, x, y, bucket)
        if i % 2 == 0:
            serial = timed_step(model, sg, clock, x, y, 1 << 62)
        if buffers is None:
            buffers = [np.zeros(sum(v.value.size for v in bk.variables) + len(bk.variables),
                                np.float32) for bk in _plan(sg, bucket)]
        rows.append([over["step"], over["compute"], over["mpi_in_backward"], over["exposed"],
                     serial["step"], serial["exposed"], blocking_allreduce(buffers),
                     over["done"], over["wait_at"], serial["wait_at"], over["polls"]])
    local = np.array(rows, np.float64)
    gathered = np.empty((size,) + local.shape) if rank == 0 else None
    COMM.Gather(local, gathered, root=0)
    if rank == 0:
        report(args, gathered, model, buffers, size)


def report(args, g, model, buffers, size):
    """g: (ranks, rounds, 11): seconds, the share of bytes done before the wait, when each
    rank reached the wait (overlapped, one bucket), and the poller's MPI_Testall calls. The table of medians over rounds
    (and quartiles). Exposed time and share done are the last rank's to reach the wait:
    a rank ahead of the others cannot finish a bucket they have not started."""
    ms = 1e3
    (over_step, compute, mpi_in, exposed, serial_step, serial_exposed, blocking, done,
     wait_at, serial_wait_at, polls) = g.transpose(2, 0, 1)
    rounds = np.arange(g.shape[1])
    last, serial_last = wait_at.argmax(axis=0), serial_wait_at.argmax(axis=0)
    per_round = {
        "step, overlapped buckets": over_step.max(axis=0),
        "step, one bucket after backward": serial_step.max(axis=0),
        "step difference, overlapped - one bucket (same round)":
            over_step.max(axis=0) - serial_step.max(axis=0),
        "backward compute (mean of ranks)": compute.mean(axis=0),
        "MPI calls inside backward, main thread (mean of ranks)": mpi_in.mean(axis=0),
        "exposed all-reduce, overlapped (last rank)": exposed[last, rounds],
        "exposed all-reduce, one bucket (last rank)": serial_exposed[serial_last, rounds],
        "blocking all-reduce alone (mean of ranks)": blocking.mean(axis=0),
    }
    nbytes = sum(b.nbytes for b in buffers)
    print(f"CIFAR-10 CNN, {model.count_params():,} weights, {size} ranks, global batch "
          f"{args.batch_size}, {os.environ['OMP_NUM_THREADS']} OpenMP thread(s) per rank, "
          f"{len(buffers)} buckets of about {args.bucket_kib} KiB ({nbytes / 1e6:.2f} MB "
          f"per step), {args.rounds} rounds, poller thread "
          f"{'off' if args.no_poller else 'on'}; {MPI.Get_library_version().splitlines()[0]}; "
          f"MPIR_CVAR_ASYNC_PROGRESS={os.environ.get('MPIR_CVAR_ASYNC_PROGRESS', 'unset')}")
    print("| per step | median | quartiles |\n|---|---:|---:|")
    for label, v in per_round.items():
        q1, med, q3 = np.percentile(v * ms, [25, 50, 75])
        print(f"| {label}, ms | {med:.2f} | {q1:.2f}-{q3:.2f} |")
    hidden = 1 - per_round["exposed all-reduce, overlapped (last rank)"] / \
        per_round["blocking all-reduce alone (mean of ranks)"]
    for label, v in (("hidden = 1 - exposed / blocking", hidden),
                     ("share of the gradient bytes reduced before the wait (last rank)",
                      done[last, rounds]),
                     ("poller's MPI_Testall calls per step (mean of ranks)", polls.mean(axis=0))):
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        print(f"| {label} | {med:.2f} | {q1:.2f}-{q3:.2f} |")
    blocking_s = statistics.median(per_round["blocking all-reduce alone (mean of ranks)"])
    print(f"all-reduce bandwidth, blocking: {nbytes / blocking_s / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
