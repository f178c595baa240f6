"""cuBLAS opened at run time (cpp/cuda/blas.hpp): its search order, the row- to column-major
mapping of every GEMM, and the families' BLAS path held to their own GEMM bodies.

Without a GPU: the search runs on stub libraries (a libcublas.so.13 built here by g++ with the
entry points faltung resolves) through faltung._cuda_host.blas_probe, which searches from
scratch, whatever the process opened; the mapping runs through the column-major reference GEMM
(blas_row_gemm) against numpy; the families' BLAS path (faltung._cuda_host.set_reference_blas:
the reference GEMM where cuBLAS would run, the same prologue and epilogue bodies around it)
against their GEMM bodies, down to whole resident fits. The real wheel's library is checked
where nvidia-cublas is installed (tools/check_cuda.sh installs it); GPU runs skip with a reason.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from faltung import _device

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

STUB = r"""
extern "C" {
int cublasCreate_v2(void** h) { *h = nullptr; return 0; }
int cublasDestroy_v2(void*) { return 0; }
int cublasSetStream_v2(void*, void*) { return 0; }
int cublasGetVersion_v2(void*, int* v) { *v = 130000 + MINOR * 100; return 0; }
int cublasGetProperty(int type, int* v) { *v = type == 0 ? 13 : type == 1 ? MINOR : 7; return 0; }
int cublasSgemm_v2() { return 0; }
#ifndef NO_DGEMM
int cublasDgemm_v2() { return 0; }
#endif
int cublasSgemmStridedBatched() { return 0; }
int cublasDgemmStridedBatched() { return 0; }
}
"""


def build_stub(directory, minor=9, defines=()):
    """A libcublas.so.13 with the entry points blas.hpp resolves (version 13.<minor>.7)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("needs g++ to build the stub libcublas.so.13")
    os.makedirs(directory, exist_ok=True)
    src = os.path.join(directory, "stub.cpp")
    with open(src, "w") as f:
        f.write(STUB)
    out = os.path.join(directory, "libcublas.so.13")
    flags = [f"-DMINOR={minor}"] + [f"-D{d}" for d in defines]
    subprocess.run([gxx, "-shared", "-fPIC", *flags, src, "-o", out], check=True)
    return out


# ---- the search order --------------------------------------------------------------------------

def test_env_path_is_opened_and_its_version_read(tmp_path):
    stub = build_stub(str(tmp_path))
    info = host.blas_probe(stub, [])
    assert info == {"found": True, "path": stub, "version": "13.9.7", "error": ""}


def test_env_path_wins_over_the_directories(tmp_path):
    env = build_stub(str(tmp_path / "env"), minor=1)
    other = os.path.dirname(build_stub(str(tmp_path / "dir"), minor=2))
    assert host.blas_probe(env, [other])["version"] == "13.1.7"
    assert host.blas_probe(None, [other])["version"] == "13.2.7"


def test_directories_are_searched_in_order(tmp_path):
    first = os.path.dirname(build_stub(str(tmp_path / "a"), minor=3))
    second = os.path.dirname(build_stub(str(tmp_path / "b"), minor=4))
    empty = str(tmp_path / "empty")
    info = host.blas_probe(None, [empty, first, second])
    assert info["found"] and info["version"] == "13.3.7"
    assert info["path"] == os.path.join(first, "libcublas.so.13")
    assert host.blas_probe(None, [empty, second, first])["version"] == "13.4.7"


def test_missing_env_path_is_a_clear_error_and_no_fallback_search(tmp_path):
    missing = str(tmp_path / "nowhere" / "libcublas.so.13")
    other = os.path.dirname(build_stub(str(tmp_path / "dir")))
    info = host.blas_probe(missing, [other])  # FALTUNG_CUBLAS names the one file to use
    assert not info["found"] and info["path"] == "" and info["version"] == ""
    assert info["error"].startswith(f"FALTUNG_CUBLAS={missing}: ") and "No such file" in info["error"]


def test_nothing_found_names_the_wheel_and_every_place_tried(tmp_path):
    empty = str(tmp_path / "empty")
    info = host.blas_probe(None, [empty])
    if info["found"]:  # the system's (LD_LIBRARY_PATH, ldconfig, /usr/local/cuda), or the one this process
        # opened already (faltung._cuda's), which the loader gives for the bare name
        pytest.skip(f"libcublas.so.13 is reachable without the directories: {info['path']}")
    err = info["error"]
    assert err.startswith("libcublas.so.13 not found (pip install \"nvidia-cublas>=13,<14\"")
    assert os.path.join(empty, "libcublas.so.13") in err and "/usr/local/cuda/lib64/libcublas.so.13" in err


def test_a_library_lacking_an_entry_point_is_refused(tmp_path):
    stub = build_stub(str(tmp_path), defines=["NO_DGEMM"])
    info = host.blas_probe(stub, [])
    assert not info["found"] and info["error"] == f"FALTUNG_CUBLAS={stub}: {stub} lacks cublasDgemm_v2"


def test_zero_turns_cublas_off():
    info = host.blas_probe("0", [])
    assert not info["found"] and info["error"] == "cuBLAS turned off by FALTUNG_CUBLAS=0"


def test_the_wheel_directories_come_from_sys_path(tmp_path, monkeypatch):
    for sub in ("nvidia/cu13/lib", "nvidia/cublas/lib"):
        (tmp_path / sub).mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "absent"), str(tmp_path)])
    assert _device.cublas_dirs() == [str(tmp_path / "nvidia/cu13/lib"), str(tmp_path / "nvidia/cublas/lib")]


def test_the_installed_wheel_is_found():
    dirs = _device.cublas_dirs()
    if not any(os.path.exists(os.path.join(d, "libcublas.so.13")) for d in dirs):
        pytest.skip("nvidia-cublas is not installed here (tools/check_cuda.sh installs it)")
    info = host.blas_probe(None, dirs)
    assert info["found"], info["error"]
    assert info["version"].startswith("13.") and "/nvidia/" in info["path"]


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full, cwd=os.path.dirname(__file__))


def test_build_info_reports_cublas(tmp_path):
    """In a fresh process (the process's cuBLAS is opened once): a missing FALTUNG_CUBLAS path is
    reported with its error, and the CUDA build still imports and runs on its own kernels; a stub
    is reported with its path and version."""
    missing = str(tmp_path / "missing.so")
    code = """
        import faltung
        i = faltung.build_info()
        print(i["cuda"], i["cublas"], repr(i["cublas_path"]), repr(i["cublas_version"]), repr(i["cublas_error"]))
    """
    got = _run(code, FALTUNG_CUBLAS=missing)
    assert got.returncode == 0, got.stderr
    cuda, found, path, version, error = got.stdout.split(" ", 4)
    assert found == "False" and path == "''" and version == "''"
    if cuda == "True":
        assert error.strip() == repr(f"FALTUNG_CUBLAS={missing}: {missing}: cannot open shared object file: "
                                     "No such file or directory")
        stub = build_stub(str(tmp_path / "stub"))
        got = _run(code, FALTUNG_CUBLAS=stub)
        assert got.returncode == 0, got.stderr
        assert got.stdout.split(" ", 4)[1:4] == ["True", repr(stub), repr("13.9.7")]
    else:
        assert error.strip() == repr("built without CUDA")


# ---- the row-major -> column-major mapping ---------------------------------------------------------

SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 4), (3, 4, 1), (7, 5, 9), (13, 11, 2)]


@pytest.mark.parametrize("M,N,K", SHAPES, ids=[f"M{m}-N{n}-K{k}" for m, n, k in SHAPES])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["NN", "TN", "NT", "TT"])
@pytest.mark.parametrize("pad", [0, 3], ids=["tight", "ld+3"])
def test_row_major_gemm_through_the_column_major_call(M, N, K, ta, tb, pad):
    rng = np.random.default_rng(M * 100 + N * 10 + K)
    a_rows, a_cols = (K, M) if ta else (M, K)
    b_rows, b_cols = (N, K) if tb else (K, N)
    # storage rows longer than the matrices (leading dimensions past the columns: views of wider arrays)
    a = rng.standard_normal((a_rows, a_cols + pad))
    b = rng.standard_normal((b_rows, b_cols + pad))
    c = rng.standard_normal((M, N + pad))
    opa = a[:, :a_cols].T if ta else a[:, :a_cols]
    opb = b[:, :b_cols].T if tb else b[:, :b_cols]
    got, args = host.blas_row_gemm(a, b, c, M, N, K, ta, tb, 0.5, -2.0)
    np.testing.assert_allclose(got[:, :N], 0.5 * opa @ opb - 2.0 * c[:, :N], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[:, N:], c[:, N:])  # past the columns: untouched
    # C^T = op(B)^T op(A)^T: B first, the transposes and M <-> N swapped
    assert args == {"transa": tb, "transb": ta, "m": N, "n": M, "k": K, "lda": b.shape[1], "ldb": a.shape[1],
                    "ldc": c.shape[1], "a_is_b": True}


def test_beta_zero_never_reads_c():
    a, b = np.ones((2, 3)), np.ones((3, 4))
    got, _ = host.blas_row_gemm(a, b, np.full((2, 4), np.nan), 2, 4, 3, False, False, 1.0, 0.0)
    np.testing.assert_array_equal(got, np.full((2, 4), 3.0))


def test_a_leading_dimension_blas_refuses_is_an_error():
    a, b, c = np.ones((2, 3)), np.ones((3, 4)), np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"column-major gemm: lda < max\(1, rows of A as stored\)"):
        host.blas_row_gemm(a, b[:, :2], c, 2, 4, 3, False, False, 1.0, 0.0)  # B's rows shorter than N
    with pytest.raises(ValueError, match=r"ldc < max\(1, m\)"):
        host.blas_row_gemm(a, b, c[:, :3], 2, 4, 3, False, False, 1.0, 0.0)


# ---- the families' BLAS path on the host -------------------------------------------------------

@pytest.fixture
def reference_blas():
    """The families' BLAS path (cuBLAS's on a GPU) with the column-major reference GEMM."""
    host.set_reference_blas(True)
    try:
        yield
    finally:
        host.set_reference_blas(False)


@pytest.fixture
def small_col_budget():
    """im2col in chunks of a few output pixels: chunks that end inside an image."""
    old = host.set_col_budget(40)
    try:
        yield
    finally:
        host.set_col_budget(old)


def both_paths(run, gemms=None):
    """run() on the GEMM bodies, then on the BLAS path (which ran `gemms` GEMMs, or some)."""
    plain = run()
    host.set_reference_blas(True)
    try:
        before = host.reference_blas_calls()
        blas = run()
        ran = host.reference_blas_calls() - before
        assert ran == gemms if gemms is not None else ran > 0
        return plain, blas
    finally:
        host.set_reference_blas(False)


CONV = {  # N, H, W, C, K, KH, KW, stride, dilation, pad (top, left), OH, OW
    "N2-H7-W6-C3-K4-k3-same": (2, 7, 6, 3, 4, 3, 3, 1, 1, (1, 1), 7, 6),
    "N3-H9-W5-C2-K5-k2-s3": (3, 9, 5, 2, 5, 2, 2, 3, 1, (0, 0), 3, 2),
    "N1-H8-W8-C1-K2-k3-d2": (1, 8, 8, 1, 2, 3, 3, 1, 2, (0, 0), 4, 4),
    "N2-H3-W4-C5-K3-pointwise": (2, 3, 4, 5, 3, 1, 1, 1, 1, (0, 0), 3, 4),  # the GEMM on the input itself
    "N2-H5-W5-C3-K2-k1-s2": (2, 5, 5, 3, 2, 1, 1, 2, 1, (0, 0), 3, 3),
}


@pytest.mark.parametrize("case", CONV.values(), ids=CONV.keys())
def test_conv_im2col_in_chunks_matches_the_implicit_gemm(case, small_col_budget):
    N, H, W, C, K, KH, KW, s, d, (pt, pl), OH, OW = case
    rng = np.random.default_rng(N + H + K)
    x, w = rng.standard_normal((N, H, W, C)), rng.standard_normal((KH, KW, C, K))
    bias, dout = rng.standard_normal(K), rng.standard_normal((N, OH, OW, K))

    def run():
        y = host.conv2d_forward_f64(x, w, bias, s, s, pt, pl, OH, OW, d, d, 1, relu=True, block=32)
        return [y, *host.conv2d_backward_f64(dout, x, w, s, s, pt, pl, d, d, 1, True, True, True, block=32)]
    pointwise = KH == KW == s == 1
    for a, b in zip(*both_paths(run, 3 if pointwise else None)):  # pointwise: one GEMM each, no im2col
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ksize,strides", [(3, 2), (1, 1)], ids=["k3-s2", "pointwise"])
def test_conv_transpose_im2col_matches_the_implicit_gemm(small_col_budget, ksize, strides):
    rng = np.random.default_rng(5)
    x, k, bias = (rng.standard_normal((2, 4, 3, 3)), rng.standard_normal((ksize, ksize, 2, 3)),
                  rng.standard_normal(2))
    st = (strides, strides)

    def run():
        y = host.conv_transpose2d_f64(x, k, bias, st, "same", None, (1, 1), block=32)
        dy = np.linspace(-1, 1, y.size).reshape(y.shape)
        return [y, *host.conv_transpose2d_backward_f64(dy, x, k, st, "same", None, (1, 1), True, True, True,
                                                       block=32)]
    for a, b in zip(*both_paths(run)):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_resident_fit_on_the_blas_path_equals_the_gemm_bodies():
    """A device-resident model (Dense, LSTM, GRU, Conv1D/2D, Conv2DTranspose) trained on the
    harness: the BLAS path gives the weights and losses of the GEMM bodies (float64)."""
    from faltung.layers import (GRU, LSTM, Conv1D, Conv2D, Conv2DTranspose, Dense, Flatten, Input, Reshape,
                                SimpleRNN)
    from faltung.models import Sequential
    from faltung.optimizers import Adam
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 6, 6, 2)), rng.standard_normal((10, 3))

    def run():
        with _device._harness_device("float64"):
            m = Sequential([Input((6, 6, 2)), Conv2D(3, 3, padding="same", activation="relu"),
                            Conv2DTranspose(2, 3, strides=2, padding="same"), Conv2D(2, 3, strides=2),
                            Reshape((25, 2)), Conv1D(3, 3, strides=2), LSTM(4, return_sequences=True),
                            GRU(3, return_sequences=True), SimpleRNN(3), Flatten(), Dense(3)])
        m.set_weights([np.random.default_rng(i).uniform(-0.4, 0.4, w.shape)
                       for i, w in enumerate(m.get_weights())])
        m.compile(Adam(0.01), "mse")
        h = m.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
        return [h.history["loss"], *m._resident.get_weights()]
    plain, blas = both_paths(run)
    for a, b in zip(plain, blas):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


# ---- on a GPU --------------------------------------------------------------------------------

def needs_gpu():
    info = _device.cuda_info()
    if not info["cuda"]:
        pytest.skip("this build has no CUDA backend (built without FALTUNG_CUDA)")
    if info["cuda_devices"] == 0:
        pytest.skip(f"needs a GPU ({info['cuda_error']})")
    return info


def test_device_gemm_runs_on_cublas_and_matches_numpy():
    info = needs_gpu()
    if not info["cublas"]:
        pytest.skip(f"cuBLAS not found: {info['cublas_error']}")
    mod = _device._cuda_module()
    rng = np.random.default_rng(3)
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((9, 7) if ta else (7, 9)).astype(np.float32)
            b = rng.standard_normal((5, 9) if tb else (9, 5)).astype(np.float32)
            want = (a.T if ta else a) @ (b.T if tb else b)
            np.testing.assert_allclose(mod.gemm_f32(a, b, None, ta, tb, 1.0, 0.0), want, rtol=1e-4, atol=1e-5)


def test_device_without_cublas_runs_its_own_kernels():
    """FALTUNG_CUBLAS=0 in a fresh process: the same device GEMM, Dense and conv on the bodies."""
    needs_gpu()
    got = _run("""
        import numpy as np, faltung
        from faltung import _device
        assert not faltung.build_info()["cublas"]
        mod = _device._cuda_module()
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((7, 9)).astype(np.float32), rng.standard_normal((9, 5)).astype(np.float32)
        np.testing.assert_allclose(mod.gemm_f32(a, b, None, False, False, 1.0, 0.0), a @ b, rtol=1e-4, atol=1e-5)
        x, w = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((3, 3, 3, 4))
        y = mod.conv2d_forward_f64(x, w, None, 1, 1, 1, 1, 5, 5, 1, 1, 1)
        want = faltung._core.conv2d_forward(x, w, None, 1, 1, 1, 1, 5, 5, 1, 1, 1)[0]
        np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
        print("ok")
    """, FALTUNG_CUBLAS="0")
    assert got.returncode == 0 and got.stdout.strip() == "ok", got.stderr
