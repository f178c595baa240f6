"""faltung.release_workspaces(): the kernels' scratch buffers are freed, and every kernel that
uses them gives the same result after a release as before."""
import threading
import time

import numpy as np
import pytest

import faltung
from faltung import _core, ops
from faltung.ops import convolution as conv_ops
from faltung.ops import normalization as norm_ops


rng = np.random.default_rng(0)


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# (id, x shape, kernel shape, conv kwargs): each case runs a kernel family that takes workspaces.
CONV_CASES = [
    ("im2col", (2, 9, 9, 5), (3, 3, 5, 6), dict(algorithm="im2col", padding="same")),
    ("winograd", (2, 10, 10, 16), (3, 3, 16, 16), dict(algorithm="winograd", padding="same")),
    ("phased", (2, 12, 12, 8), (3, 3, 8, 8), dict(algorithm="phased", padding="same", dilation_rate=2)),
    ("direct", (2, 11, 11, 3), (3, 3, 3, 16), dict(algorithm="direct", strides=2)),
    ("direct-data-via-transpose", (2, 11, 11, 8), (3, 3, 8, 16), dict(algorithm="direct", strides=2)),
    ("depthwise", (2, 9, 9, 4), (3, 3, 1, 8), dict(algorithm="depthwise", padding="same")),
]


def run_conv(x, k, kw):
    y, _ = conv_ops.conv_forward(x, k, np.linspace(-1, 1, k.shape[-1]), **kw)
    dy = np.ascontiguousarray(np.cos(y))
    return (y,) + conv_ops.conv_backward(dy, x, k, **kw)


def run_conv_transpose(x, k, strides):
    y = ops.conv_transpose(x, k, strides=strides, padding="same")
    return (y,) + ops.conv_transpose_backward(np.ascontiguousarray(np.cos(y)), x, k, strides=strides, padding="same")


@pytest.fixture
def restore_threads():
    n = faltung.get_num_threads()
    yield
    faltung.set_num_threads(n)


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_same_result_after_release(case):
    _, xs, ks, kw = case
    x, k = rand(*xs), rand(*ks)
    before = run_conv(x, k, kw)
    assert _core.workspace_bytes() > 0
    faltung.release_workspaces()
    assert _core.workspace_bytes() == 0
    after = run_conv(x, k, kw)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    ref = run_conv(x, k, dict(kw, algorithm="reference"))
    for r, a in zip(ref, after):  # Winograd rounds differently: a tolerance on the scale of r
        np.testing.assert_allclose(a, r, rtol=1e-3, atol=1e-3 * np.abs(r).max())


@pytest.mark.parametrize("kernel_size", [3, 4], ids=["direct-phases", "winograd-phases"])
def test_conv_transpose_same_result_after_release(kernel_size):
    x, k = rand(2, 6, 6, 8), rand(kernel_size, kernel_size, 8, 8)
    before = run_conv_transpose(x, k, 2)
    faltung.release_workspaces()
    assert _core.workspace_bytes() == 0
    for b, a in zip(before, run_conv_transpose(x, k, 2)):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_same_result_after_release():
    x = rand(64, 5)
    before = norm_ops.batch_norm_train(x)
    faltung.release_workspaces()
    assert _core.workspace_bytes() == 0
    for b, a in zip(before, norm_ops.batch_norm_train(x)):
        np.testing.assert_array_equal(a, b)


def test_release_reaches_threads_of_a_larger_earlier_team(restore_threads):
    faltung.set_num_threads(2)
    x, k = rand(8, 16, 16, 16), rand(3, 3, 16, 16)  # large enough to run on 2 threads
    run_conv(x, k, dict(algorithm="im2col"))
    faltung.set_num_threads(1)
    faltung.release_workspaces()
    assert _core.workspace_bytes() == 0


def test_release_while_another_thread_runs_kernels(restore_threads):
    # Each thread frees only its own buffers: a release here never frees a buffer in use there.
    faltung.set_num_threads(1)
    x, k = rand(2, 10, 10, 16), rand(3, 3, 16, 16)
    expected = run_conv(x, k, dict(algorithm="winograd"))
    results, stop = [], threading.Event()

    def worker():
        faltung.set_num_threads(1)  # the thread count is per thread (OpenMP's nthreads-var)
        while not stop.is_set():
            results.append(run_conv(x, k, dict(algorithm="winograd")))

    t = threading.Thread(target=worker)
    t.start()
    deadline = time.monotonic() + 30
    try:
        while len(results) < 20 and time.monotonic() < deadline:  # releases while kernels run there
            faltung.release_workspaces()
    finally:
        stop.set()
        t.join()
    assert len(results) >= 20
    for got in results:
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g, e)
