"""The CUDA kernel bodies (cpp/cuda/*.cuh) held to the CPU kernels, their oracles.

`impl` is faltung._cuda_host (the bodies run over their whole grid x block index space on
the CPU; every run) and, when a GPU exists, faltung._cuda (the same launches on the device;
skipped with the reason otherwise). Each test runs the CPU kernel of faltung._core and the
CUDA family on the same random inputs. `block` 32 makes the per-sample CTC blocks stride
over extended labels longer than a warp.
"""
import numpy as np
import pytest

from faltung import _core, _device

BACKENDS = ["host", "device"]
# The GEMM-bound families also run as "host-blas": the host harness taking the path cuBLAS takes
# on a GPU (cpp/cuda/blas.hpp), each GEMM done by the column-major reference through the same
# argument mapping, its prologue and epilogue bodies around it.
WITH_BLAS = pytest.mark.parametrize("impl", ["host", "host-blas", "device"], indirect=True)


def _backend(name):
    if name in ("host", "host-blas"):
        return pytest.importorskip(
            "faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")
    info = _device.cuda_info()
    if not info["cuda"]:
        pytest.skip("device run: this build has no CUDA backend (built without FALTUNG_CUDA)")
    if info["cuda_devices"] == 0:
        pytest.skip(f"device run: no GPU ({info['cuda_error']})")
    return _device._cuda_module()


def _impl(request):
    mod = _backend(request.param)
    blas = request.param == "host-blas"
    if blas:
        mod.set_reference_blas(True)
    try:
        yield mod
    finally:
        if blas:
            mod.set_reference_blas(False)


@pytest.fixture(params=BACKENDS)
def impl(request):
    yield from _impl(request)


def sfx(dtype):
    return "_f32" if dtype == np.float32 else "_f64"


def close(a, b, dtype, rtol32=2e-4, atol32=2e-5):
    if dtype == np.float32:
        np.testing.assert_allclose(a, b, rtol=rtol32, atol=atol32)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---- CTC -------------------------------------------------------------------------------------

def ctc_inputs(rng, B, T, C, S, blank, infeasible=False, repeats=False, dtype=np.float64):
    x = rng.standard_normal((B, T, C)).astype(dtype)
    input_len = rng.integers(0, T + 1, size=B).astype(np.int32)
    input_len[0] = T
    labels = np.zeros((B, S), np.int32)
    label_len = np.zeros(B, np.int32)
    choices = [c for c in range(C) if c != blank]
    for b in range(B):
        n = int(rng.integers(0, min(S, T) + 1))
        lab = rng.choice(choices, size=n)
        if repeats and n >= 2:
            lab[1] = lab[0]  # a repeated label needs a blank between: one step more
        labels[b, :n] = lab
        labels[b, n:] = rng.integers(0, C, size=S - n)  # padding is ignored, whatever it holds
        label_len[b] = n
    if infeasible:  # sample 0: a full-length label in too few steps
        label_len[0] = min(S, T)
        labels[0, :label_len[0]] = rng.choice(choices, size=label_len[0])
        input_len[0] = max(label_len[0] - 1, 0)
    return x, labels, label_len, input_len


CTC_CASES = {  # B, T, C, S, blank, block, infeasible, repeats
    "B1-T1-C2-S1": (1, 1, 2, 1, 0, 128, False, False),
    "B3-T7-C5-S3": (3, 7, 5, 3, 0, 128, False, True),
    "B4-T9-C6-S4-blank-last": (4, 9, 6, 4, 5, 128, False, True),
    "B5-T13-C4-S5-infeasible": (5, 13, 4, 5, 0, 32, True, True),
    "B2-T50-C7-S20-stride": (2, 50, 7, 20, 2, 32, False, True),
    "B1-T6-C3-S0-empty": (1, 6, 3, 0, 1, 64, False, False),
}


@pytest.mark.parametrize("case", CTC_CASES.values(), ids=CTC_CASES.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("log_probs", [False, True], ids=["logits", "logprobs"])
def test_ctc_loss_matches_cpu(impl, case, dtype, log_probs):
    B, T, C, S, blank, block, infeasible, repeats = case
    rng = np.random.default_rng(B * 1000 + T * 10 + S)
    x, labels, label_len, input_len = ctc_inputs(rng, B, T, C, S, blank, infeasible, repeats, dtype)
    if log_probs:
        x = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(dtype)
    for zero_inf in (False, True):
        args = (x, labels, label_len, input_len, blank, log_probs, zero_inf, True)
        loss_cpu, grad_cpu = getattr(_core, "ctc_loss" + sfx(dtype))(*args)
        loss, grad = getattr(impl, "ctc_loss" + sfx(dtype))(*args, block=block)
        assert np.array_equal(np.isinf(loss), np.isinf(loss_cpu))
        close(loss, loss_cpu, dtype)
        close(grad, grad_cpu, dtype)
        assert np.isfinite(grad).all()
        loss_only, none = getattr(impl, "ctc_loss" + sfx(dtype))(*args[:-1], False, block=block)
        assert none is None
        np.testing.assert_array_equal(loss_only, loss)
        if infeasible:
            assert loss[0] == (0 if zero_inf else np.inf)


def test_ctc_gradient_finite_differences():
    """The host bodies' gradient against central differences of their own loss (float64)."""
    _cuda_host = pytest.importorskip(
        "faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")
    rng = np.random.default_rng(3)
    x, labels, label_len, input_len = ctc_inputs(rng, 2, 5, 4, 2, 0, repeats=True)
    weights = rng.standard_normal(2)

    def f(z):
        return float(weights @ _cuda_host.ctc_loss_f64(z, labels, label_len, input_len)[0])

    grad = _cuda_host.ctc_loss_f64(x, labels, label_len, input_len, need_grad=True)[1]
    num = np.zeros_like(x)
    h = 1e-6
    for i in np.ndindex(x.shape):
        zp, zm = x.copy(), x.copy()
        zp[i] += h
        zm[i] -= h
        num[i] = (f(zp) - f(zm)) / (2 * h)
    np.testing.assert_allclose(grad * weights[:, None, None], num, rtol=1e-6, atol=1e-8)


def test_ctc_rejects_what_the_cpu_rejects(impl):
    x = np.zeros((1, 4, 3), np.float32)
    with pytest.raises(ValueError, match="is not a label"):
        impl.ctc_loss_f32(x, np.array([[0]], np.int32), np.array([1], np.int32), np.array([4], np.int32))
    with pytest.raises(ValueError, match="`block` a multiple of 32"):
        impl.ctc_loss_f32(x, np.array([[1]], np.int32), np.array([1], np.int32), np.array([4], np.int32),
                          block=48)
    with pytest.raises(TypeError, match="dtype int32"):
        impl.ctc_loss_f32(x, np.array([[1]], np.int64), np.array([1], np.int32), np.array([4], np.int32))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("merge", [True, False], ids=["merge", "keep"])
@pytest.mark.parametrize("B,T,C,blank", [(1, 1, 2, 0), (3, 11, 5, 4), (6, 17, 3, 1)],
                         ids=["B1-T1", "B3-T11-blank-last", "B6-T17"])
def test_ctc_greedy_matches_cpu(impl, dtype, merge, B, T, C, blank):
    rng = np.random.default_rng(B + T)
    x = rng.integers(0, 3, size=(B, T, C)).astype(dtype)  # small integers: ties and repeats
    lengths = rng.integers(0, T + 1, size=B).astype(np.int32)
    dec_cpu, score_cpu = getattr(_core, "ctc_greedy_decode" + sfx(dtype))(x, lengths, blank, merge)
    dec, score = getattr(impl, "ctc_greedy_decode" + sfx(dtype))(x, lengths, blank, merge, block=32)
    np.testing.assert_array_equal(dec, dec_cpu)
    np.testing.assert_array_equal(score, score_cpu)


# ---- dropout, softmax, cross-entropy -----------------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 33, 7)], ids=["N1", "3x5", "2x33x7"])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_dropout_masks_equal_the_cpu(impl, shape, rate, dtype):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    for seed in (0, 12345, 2**63 + 17):
        y_cpu, m_cpu = getattr(_core, "dropout" + sfx(dtype))(x, rate, seed)
        y, m = getattr(impl, "dropout" + sfx(dtype))(x, rate, seed, block=64)
        np.testing.assert_array_equal(m, m_cpu)
        np.testing.assert_array_equal(y, y_cpu)
        dx_cpu = getattr(_core, "dropout_backward" + sfx(dtype))(dy, m_cpu, rate)
        dx = getattr(impl, "dropout_backward" + sfx(dtype))(dy, m, rate, block=64)
        np.testing.assert_array_equal(dx, dx_cpu)


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (2, 7, 129)], ids=["1x1", "5x3", "2x7x129"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_softmax_matches_cpu(impl, shape, dtype):
    rng = np.random.default_rng(shape[-1])
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y_cpu = getattr(_core, "softmax" + sfx(dtype))(x)
    y = getattr(impl, "softmax" + sfx(dtype))(x, block=32)
    close(y, y_cpu, dtype)
    close(getattr(impl, "softmax_backward" + sfx(dtype))(dy, y_cpu, block=32),
          getattr(_core, "softmax_backward" + sfx(dtype))(dy, y_cpu), dtype)


@pytest.mark.parametrize("B,K", [(1, 1), (7, 10), (33, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_sparse_xent_matches_cpu(impl, B, K, dtype):
    rng = np.random.default_rng(B * K)
    logits = (4 * rng.standard_normal((B, K))).astype(dtype)
    labels = rng.integers(0, K, size=B).astype(np.int32)
    loss_cpu, grad_cpu = getattr(_core, "sparse_softmax_xent" + sfx(dtype))(logits, labels, 0.5, True)
    loss, grad = getattr(impl, "sparse_softmax_xent" + sfx(dtype))(logits, labels, 0.5, True, block=32)
    close(loss, loss_cpu, dtype)
    close(grad, grad_cpu, dtype)
    with pytest.raises(ValueError, match="out of range"):
        getattr(impl, "sparse_softmax_xent" + sfx(dtype))(logits, labels + K, 0.5, True)


# ---- optimizers --------------------------------------------------------------------------------

@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)],
                         ids=["plain", "momentum", "nesterov"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_sgd_matches_cpu(impl, momentum, nesterov, dtype):
    rng = np.random.default_rng(7)
    w, m, g = (rng.standard_normal(37).astype(dtype) for _ in range(3))
    m_in = m if momentum else None
    w2, m2 = getattr(impl, "optim_sgd" + sfx(dtype))(w, m_in, g, 0.1, momentum, nesterov, block=32)
    w_cpu, m_cpu = w.copy(), (m.copy() if momentum else None)
    getattr(_core, "optim_sgd" + sfx(dtype))(w_cpu, m_cpu, g, 0.1, momentum, nesterov)
    close(w2, w_cpu, dtype)
    if momentum:
        close(m2, m_cpu, dtype)
    else:
        assert m2 is None


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_adam_matches_cpu(impl, amsgrad, dtype):
    rng = np.random.default_rng(8)
    w, m, g = (rng.standard_normal((5, 13)).astype(dtype) for _ in range(3))
    v, vhat = (rng.random((5, 13)).astype(dtype) for _ in range(2))
    vh_in = vhat if amsgrad else None
    out = getattr(impl, "optim_adam" + sfx(dtype))(w, m, v, vh_in, g, 0.01, 0.9, 0.999, 1e-7, block=64)
    ref = [a.copy() for a in (w, m, v, vhat)]
    getattr(_core, "optim_adam" + sfx(dtype))(ref[0], ref[1], ref[2], ref[3] if amsgrad else None, g,
                                               0.01, 0.9, 0.999, 1e-7)
    for got, want in zip(out[:3], ref[:3]):
        close(got, want, dtype)
    if amsgrad:
        close(out[3], ref[3], dtype)
    else:
        assert out[3] is None


# ---- LSTM, GRU, SimpleRNN ---------------------------------------------------------------------

RNN_CASES = {  # B, T, F, U, with bias/h0/c0, mask kind, zero_output_for_mask
    "B1-T1-F1-U1": (1, 1, 1, 1, False, None, False),
    "B3-T4-F1-U1-states": (3, 4, 1, 1, True, None, False),  # one feature, one unit, many rows
    "B6-T2-F3-U2-right-padded": (6, 2, 3, 2, True, "right", False),  # T < B: dR summed step by step
    "B3-T5-F4-U3-states": (3, 5, 4, 3, True, None, False),
    "B4-T7-F3-U5-right-padded": (4, 7, 3, 5, True, "right", False),
    "B2-T6-F2-U4-holes-zero-output": (2, 6, 2, 4, True, "random", True),
}


def rnn_inputs(case, gates, bias_shape, dtype):
    """x, W, R, bias, h0, c0, mask, dhs, dh_T, dc_T for a recurrent case (bias/h0/c0 None
    without `extras`)."""
    B, T, F, U, extras, mask_kind, _ = case
    rng = np.random.default_rng(B * 100 + T + gates)
    x = rng.standard_normal((B, T, F)).astype(dtype)
    W = (0.5 * rng.standard_normal((F, gates * U))).astype(dtype)
    R = (0.5 * rng.standard_normal((U, gates * U))).astype(dtype)
    bias, h0, c0 = ((0.3 * rng.standard_normal(s)).astype(dtype) if extras else None
                    for s in (bias_shape, (B, U), (B, U)))
    mask = None
    if mask_kind == "right":
        mask = np.arange(T)[None, :] < rng.integers(1, T + 1, size=B)[:, None]
    elif mask_kind == "random":
        mask = rng.random((B, T)) < 0.6
    dhs = rng.standard_normal((B, T, U)).astype(dtype)
    dh_T, dc_T = (rng.standard_normal((B, U)).astype(dtype) for _ in range(2))
    return x, W, R, bias, h0, c0, mask, dhs, dh_T, dc_T


def check_rnn(got, want, forward_only, n_states, dtype):
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            close(g, w, dtype, rtol32=1e-3, atol32=1e-4)
    np.testing.assert_array_equal(forward_only[0], got[0])
    assert all(g is None for g in forward_only[n_states:])


@WITH_BLAS
@pytest.mark.parametrize("case", RNN_CASES.values(), ids=RNN_CASES.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_lstm_matches_cpu(impl, case, dtype):
    from faltung import ops
    U, zero_out = case[3], case[6]
    x, W, R, bias, h0, c0, mask, dhs, dh_T, dc_T = rnn_inputs(case, 4, (4 * U,), dtype)
    hs_c, h_T_c, c_T_c, saved = ops.lstm_forward(x, W, R, bias, h0, c0, mask,
                                                 zero_output_for_mask=zero_out, training=True)
    grads_c = ops.lstm_backward(saved, dhs, dh_T, dc_T)
    run = getattr(impl, "lstm" + sfx(dtype))
    check_rnn(run(x, W, R, bias, h0, c0, mask, zero_out, dhs, dh_T, dc_T, True, block=32),
              (hs_c, h_T_c, c_T_c) + tuple(grads_c),
              run(x, W, R, bias, h0, c0, mask, zero_out, None, None, None, False, block=32), 3, dtype)


@WITH_BLAS
@pytest.mark.parametrize("case", RNN_CASES.values(), ids=RNN_CASES.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_gru_matches_cpu(impl, case, dtype):
    from faltung import ops
    U, zero_out = case[3], case[6]
    x, W, R, bias, h0, _, mask, dhs, dh_T, _ = rnn_inputs(case, 3, (2, 3 * U), dtype)
    hs_c, h_T_c, saved = ops.gru_forward(x, W, R, bias, h0, mask, zero_output_for_mask=zero_out,
                                         training=True)
    grads_c = ops.gru_backward(saved, dhs, dh_T)
    run = getattr(impl, "gru" + sfx(dtype))
    check_rnn(run(x, W, R, bias, h0, mask, zero_out, dhs, dh_T, True, block=32),
              (hs_c, h_T_c) + tuple(grads_c),
              run(x, W, R, bias, h0, mask, zero_out, None, None, False, block=32), 2, dtype)


def test_lstm_rejects_bad_shapes(impl):
    x = np.zeros((2, 3, 4), np.float32)
    R = np.zeros((5, 20), np.float32)
    with pytest.raises(ValueError, match="expected `kernel` \\(4, 4U\\)"):
        impl.lstm_f32(x, np.zeros((3, 20), np.float32), R, None, None, None, None, False, None, None, None,
                      False)
    with pytest.raises(ValueError, match="expected `h0` of shape \\(2, 5\\)"):
        impl.lstm_f32(x, np.zeros((4, 20), np.float32), R, None, np.zeros((5, 2), np.float32), None, None,
                      False, None, None, None, False)


@WITH_BLAS
@pytest.mark.parametrize("case", RNN_CASES.values(), ids=RNN_CASES.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_simple_rnn_matches_cpu(impl, case, dtype):
    from faltung import ops
    U, zero_out = case[3], case[6]
    x, W, R, bias, h0, _, mask, dhs, dh_T, _ = rnn_inputs(case, 1, (U,), dtype)
    hs_c, h_T_c, saved = ops.simple_rnn_forward(x, W, R, bias, h0, mask, zero_output_for_mask=zero_out,
                                                training=True)
    grads_c = ops.simple_rnn_backward(saved, dhs, dh_T)
    run = getattr(impl, "simple_rnn" + sfx(dtype))
    check_rnn(run(x, W, R, bias, h0, mask, zero_out, dhs, dh_T, True, block=32),
              (hs_c, h_T_c) + tuple(grads_c),
              run(x, W, R, bias, h0, mask, zero_out, None, None, False, block=32), 2, dtype)


# ---- pooling -----------------------------------------------------------------------------------

POOL_CASES = {  # N, H, W, C, pool, strides, padding
    "N1-5x7-C3-p2-s2-valid": (1, 5, 7, 3, (2, 2), (2, 2), "valid"),
    "N2-7x6-C5-p3-s2-same": (2, 7, 6, 5, (3, 3), (2, 2), "same"),
    "N3-9x9-C2-p2-s3-stride>pool": (3, 9, 9, 2, (2, 2), (3, 3), "valid"),
    "N2-6x5-C4-p3x2-s1-same": (2, 6, 5, 4, (3, 2), (1, 1), "same"),
    "N2-1x11-C3-1d": (2, 1, 11, 3, (1, 3), (1, 2), "same"),
    "N1-4x6-C2-global": (1, 4, 6, 2, (4, 6), (1, 1), "valid"),
}


@pytest.mark.parametrize("case", POOL_CASES.values(), ids=POOL_CASES.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_pooling_matches_cpu(impl, case, dtype):
    N, H, W, C, pool, strides, padding = case
    rng = np.random.default_rng(H * W)
    x = rng.integers(-3, 4, size=(N, H, W, C)).astype(dtype)  # small integers: ties in windows
    geo = (pool, strides, padding)
    y_cpu, arg_cpu = getattr(_core, "max_pool2d" + sfx(dtype))(x, *geo, with_argmax=True)
    y, arg = getattr(impl, "max_pool2d" + sfx(dtype))(x, *geo, block=32)
    np.testing.assert_array_equal(y, y_cpu)
    np.testing.assert_array_equal(arg, arg_cpu)
    dy = rng.standard_normal(y.shape).astype(dtype)
    close(getattr(impl, "max_pool2d_backward" + sfx(dtype))(dy, arg, (H, W), *geo, block=32),
          getattr(_core, "max_pool2d_scatter" + sfx(dtype))(dy, arg_cpu, (H, W), *geo), dtype)
    # max unpooling: forward = the scatter above, backward = the gather at the argmax
    full = rng.standard_normal((N, H, W, C)).astype(dtype)
    np.testing.assert_array_equal(getattr(impl, "max_pool2d_gather" + sfx(dtype))(full, arg, *geo, block=32),
                                  getattr(_core, "max_pool2d_gather" + sfx(dtype))(full, arg_cpu, *geo))
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    close(getattr(impl, "avg_pool2d" + sfx(dtype))(x, *geo, block=32),
          getattr(_core, "avg_pool2d" + sfx(dtype))(x, *geo), dtype)
    close(getattr(impl, "avg_pool2d_backward" + sfx(dtype))(dy, (H, W), *geo, block=32),
          getattr(_core, "avg_pool2d_backward" + sfx(dtype))(dy, (H, W), *geo), dtype)


def test_pooling_rejects_bad_arguments(impl):
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(ValueError):
        impl.max_pool2d_f32(x, (5, 5), (1, 1), "valid")
    dy = np.zeros((1, 2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="outside \\[0, H\\*W=16\\)"):
        impl.max_pool2d_backward_f32(dy, np.full(dy.shape, 16, np.int32), (4, 4), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match="outside \\[0, H\\*W=16\\)"):
        impl.max_pool2d_gather_f32(x, np.full(dy.shape, -1, np.int32), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match="expected `argmax` of shape \\(1, 2, 2, 2\\), received \\(1, 3, 2, 2\\)"):
        impl.max_pool2d_gather_f32(x, np.zeros((1, 3, 2, 2), np.int32), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match="expected `dy` of shape \\(1, 2, 2, 2\\)"):
        impl.avg_pool2d_backward_f32(np.zeros((1, 3, 2, 2), np.float32), (4, 4), (2, 2), (2, 2), "valid")
