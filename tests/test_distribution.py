"""faltung.distribution: DataParallel over MPI processes (mpi4py).

The 2-process tests start `mpiexec -n 2 python -m mpi4py tests/distributed_scripts/
train_compare.py` once and check what its rank 0 reports; they are skipped when mpi4py or
mpiexec is missing (`pip install 'faltung[mpi]'` provides both).
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from faltung import distribution
from faltung.distribution.comm import shard_bounds

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_scripts", "train_compare.py")
MODELS = ["mlp", "cnn", "cnn_bn", "lstm"]  # cnn_bn: BatchNormalization(synchronized=True)


def _mpiexec():
    """mpiexec next to this Python (PyPI's mpich wheel installs it there), else on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else shutil.which("mpiexec")


def _run(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # 2 ranks on 2 cores: one thread each
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {}
    files = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            results[r["model"]] = r
        elif line.startswith("FILES "):
            files = json.loads(line[6:])
    return results, files


def _two_ranks_cmd(script, runner=("-m", "mpi4py")):
    """mpiexec -n 2 python -m mpi4py script, or a skip saying what is missing."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'faltung[mpi]')")
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip("mpiexec not found (pip install mpich, or apt install mpich)")
    return [mpiexec, "-n", "2", sys.executable, *runner, script]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpi")
    return _run(_two_ranks_cmd(SCRIPT) + [str(tmp)], tmp)


@pytest.mark.parametrize("kind", MODELS)
def test_two_ranks_train_as_one_process(two_ranks, kind):
    r = two_ranks[0][kind]
    assert r["steps"] == r["ref_steps"] == 10  # 2 epochs of ceil(33 / 8) global batches
    assert r["ranks"] == 0.0                   # identical weights on every rank, every step
    assert r["moved"] > 1e-2                   # training did change the weights
    assert r["weights"] < 2e-5, r
    assert r["loss"] < 1e-5 and r["accuracy"] < 1e-6 and r["val_loss"] < 1e-5, r


@pytest.mark.parametrize("kind", MODELS)
def test_two_ranks_evaluate_and_predict_gather(two_ranks, kind):
    r = two_ranks[0][kind]
    assert r["predict_shape"] == [33, 3]
    assert r["evaluate"] < 1e-6 and r["predict"] < 1e-6, r


def test_only_rank0_writes(two_ranks):
    files = two_ranks[1]
    for kind in MODELS:
        for what in ("log", "ckpt", "model"):
            ext = "csv" if what == "log" else "keras"
            assert f"{kind}_{what}_rank0.{ext}" in files
    assert not [f for f in files if "rank1" in f], files


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_failure_on_one_rank_stops_every_rank(tmp_path, how):
    """Rank 1 raises (plain `python script.py`: DataParallel's excepthook aborts) or is
    killed mid-epoch; rank 0 must not hang in its next all-reduce (timeout = failure)."""
    script = os.path.join(os.path.dirname(SCRIPT), "fail_on_one_rank.py")
    proc = subprocess.run(_two_ranks_cmd(script, runner=()) + [how], cwd=tmp_path,
                          capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=60)
    assert proc.returncode != 0
    if how == "raise":
        assert "ValueError: deliberate failure on rank 1" in proc.stderr


def test_same_script_runs_in_one_process(tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'faltung[mpi]')")
    results, files = _run([sys.executable, SCRIPT, str(tmp_path), "mlp"], tmp_path)
    r = results["mlp"]
    assert r["steps"] == 10 and r["ranks"] == 0.0
    assert r["weights"] == 0.0 and r["loss"] == 0.0 and r["evaluate"] == 0.0
    assert "mlp_model_rank0.keras" in files


def test_data_parallel_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # `import mpi4py` now fails
    with pytest.raises(ImportError, match=r"pip install 'faltung\[mpi\]'.*mpi4py.*mpich"):
        distribution.DataParallel()
    assert distribution.list_devices() == ["cpu:0"]
    assert distribution.get_device_count() == 1
    assert (distribution.num_processes(), distribution.process_id()) == (1, 0)


def test_set_distribution_rejects_other_objects():
    with pytest.raises(TypeError, match="DataParallel or None. Received: 'auto'"):
        distribution.set_distribution("auto")
    distribution.set_distribution(None)
    assert distribution.get_distribution() is None and distribution.distribution() is None


def test_list_devices_rejects_gpu():
    with pytest.raises(ValueError, match="`device_type` must be None or 'cpu'. Received: "
                                         "device_type='gpu'"):
        distribution.list_devices("gpu")


@pytest.mark.parametrize("n,size", [(1, 2), (2, 2), (7, 2), (33, 4), (3, 5), (0, 3)])
def test_shard_bounds_split_like_array_split(n, size):
    expected = np.array_split(np.arange(n), size)  # oracle: the first n % size get one more
    for rank in range(size):
        a, b = shard_bounds(n, size, rank)
        np.testing.assert_array_equal(np.arange(n)[a:b], expected[rank])


@pytest.mark.parametrize("shape,axis,affine", [((6, 5, 5, 3), -1, True), ((1, 4), -1, True),
                                               ((4, 3, 5), 1, False)],
                         ids=["img-6x5x5x3", "batch1-dense", "seq-axis1-no-affine"])
def test_synchronized_batch_norm_in_one_process_matches_the_kernel(monkeypatch, shape, axis,
                                                                   affine):
    """The synchronized path (global sums; here over one process) against the C++ batch
    norm, whose backward tests/test_batch_normalization.py checks by finite differences."""
    from faltung import layers
    from faltung.distribution import replica
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    for synchronized in (False, True):
        monkeypatch.setattr(replica, "is_distributed", lambda: synchronized)
        bn = layers.BatchNormalization(axis=axis, momentum=0.5, center=affine, scale=affine,
                                       synchronized=True)
        bn.build(shape)
        if affine:
            bn.gamma.value[...] = rng.uniform(0.5, 2, bn.gamma.value.shape) if not results \
                else results[0][4]
        y = bn.forward(x, training=True)
        dx = bn.backward(dy)
        grads = [] if not affine else [bn.gamma.grad, bn.beta.grad]
        results.append((y, dx, bn.moving_mean.value.copy(), bn.moving_variance.value.copy(),
                        bn.gamma.value.copy() if affine else None, grads))
    (y0, dx0, mm0, mv0, _, g0), (y1, dx1, mm1, mv1, _, g1) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mm1, mm0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mv1, mv0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


class _OneRankComm:
    """The Comm interface over one rank, logging when gradient all-reduces start (and, with
    threads_ok, which thread tests them)."""
    rank, size, threads_ok = 0, 1, False

    def __init__(self, log):
        self.log = log

    def allgather_rows(self, local, n):
        return np.array(local)

    def bcast(self, arr):
        return arr

    allreduce_sum = bcast

    def iallreduce_sum(self, buf):
        self.log.append(("all-reduce", buf.size))
        return f"request {buf.size}"

    def test_all(self, requests):
        if self.threads_ok:
            self.log.append(("test", threading.current_thread().name, tuple(requests)))

    def wait_all(self, requests):
        pass


def _two_dense_layers(monkeypatch, log, sleep=0.0):
    """A Dense -> Dense model whose layers log their backward (sleeping `sleep` seconds in
    it, GIL released, as a kernel), buckets of one weight each, and the weight gradients of
    the plain graph for x, dy."""
    import faltung as keras
    from faltung import layers
    from faltung.distribution import replica
    monkeypatch.setattr(replica, "BUCKET_BYTES", 1)
    model = keras.Sequential([layers.Input((5,)), layers.Dense(4, name="first"),
                              layers.Dense(2, name="last")])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    dy = np.ones((3, 2), np.float32)
    _, _, ctxs = model._graph.forward([x], True)
    model._graph.backward(ctxs, [dy], False)
    expected = [v.grad.copy() for v in model.trainable_weights]
    for layer in model.layers:
        def logged(dy, need_dx=True, layer=layer, inner=layer.backward):
            log.append(("backward", layer.name))
            time.sleep(sleep)
            log.append(("backward done", layer.name))
            return inner(dy, need_dx=need_dx)
        monkeypatch.setattr(layer, "backward", logged)
    return model, x, dy, expected


def test_gradient_buckets_start_while_backward_runs(monkeypatch):
    """With buckets of one weight each, the last layer's gradients are on their way before
    the first layer's backward runs; the gradients are those of the plain graph."""
    from faltung.distribution import replica
    log = []
    model, x, dy, expected = _two_dense_layers(monkeypatch, log)
    sharded = replica.ShardedGraph(model, _OneRankComm(log))
    sharded.synced = True
    _, _, ctxs = sharded.forward([x], True)
    sharded.backward(ctxs, [dy])
    log = [e for e in log if e[0] != "backward done"]
    # each bucket: the weight's values and one has-grad flag (kernel, then bias)
    assert log == [("backward", "last"), ("all-reduce", 4 * 2 + 1), ("all-reduce", 2 + 1),
                   ("backward", "first"), ("all-reduce", 5 * 4 + 1), ("all-reduce", 4 + 1)]
    for v, g in zip(model.trainable_weights, expected):
        np.testing.assert_array_equal(v.grad, g)


def test_poller_thread_tests_the_buckets_while_a_layer_computes(monkeypatch):
    """With MPI_THREAD_MULTIPLE, a helper thread calls MPI_Testall on the buckets in flight
    while a layer's backward runs (MPICH moves a non-blocking all-reduce on only inside MPI
    calls), and is gone when backward returns; the main thread tests nothing itself."""
    from faltung.distribution import replica
    log = []
    model, x, dy, expected = _two_dense_layers(monkeypatch, log, sleep=0.05)
    comm = _OneRankComm(log)
    comm.threads_ok = True
    sharded = replica.ShardedGraph(model, comm)
    sharded.synced = True
    _, _, ctxs = sharded.forward([x], True)
    sharded.backward(ctxs, [dy])
    during_first = log[log.index(("backward", "first")):log.index(("backward done", "first"))]
    last_layer = ("request 9", "request 3")  # the last layer's kernel and bias buckets
    assert ("test", "faltung-mpi-poller", last_layer) in during_first, log
    assert all(e[1] == "faltung-mpi-poller" for e in log if e[0] == "test")
    assert "faltung-mpi-poller" not in [t.name for t in threading.enumerate()]
    for v, g in zip(model.trainable_weights, expected):
        np.testing.assert_array_equal(v.grad, g)
