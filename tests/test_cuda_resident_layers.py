"""More layers of device-resident Sequential models (faltung.models.resident_ops, over the
`resident` entry points of cpp/cuda/bind_resident.hpp and bind_resident_layers.hpp), on the
test harness faltung._cuda_host (faltung._device._harness_device()):

- float32: a resident fit equals the ordinary CPU fit (losses, weights, predictions; loose, as
  the sums run in other orders), per layer and option: Conv1D, the depthwise, separable and
  transposed convolutions, 1D and global pooling, upsampling, zero padding, cropping, Reshape,
  SimpleRNN, LSTM and GRU (both reset_after); odd sizes, stride > kernel, batch 1, length-1 sequences;
- float64: each layer's resident ops, forward and backward, against central finite differences
  (every input and weight gradient the ops produce, on sampled coordinates), and the recurrent
  entry points (forward, then backward from the kept workspace) against the CPU's ops, tightly;
- what the device cannot run raises NotImplementedError naming the layer and the option.
"""
import importlib

import numpy as np
import pytest

from faltung import _device
from faltung.layers import (GRU, LSTM, AveragePooling1D, Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose,
                            Cropping1D, Cropping2D, Dense, DepthwiseConv1D, DepthwiseConv2D, Flatten,
                            GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                            Input, MaxPooling1D, Reshape, SeparableConv1D, SeparableConv2D, SimpleRNN, UpSampling1D,
                            UpSampling2D, ZeroPadding1D, ZeroPadding2D)
from faltung.models import Sequential
from faltung.models.resident_ops import ops_for
from faltung.ops import rnn as R
from faltung.optimizers import SGD
from test_cuda_resident_model import compile_both, fit_both_alike, pair

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(1)


def data(shape, n=10, classes=3):
    return RNG.standard_normal((n,) + shape).astype(np.float32), RNG.integers(0, classes, n)


def fits_alike(layers, input_shape, n=10, batch_size=4, opt=lambda: SGD(0.05)):
    """A Sequential of Input(input_shape), `layers` (a factory), Flatten and Dense(3): the
    resident fit (two epochs) equals the CPU fit, and so do the predictions. SGD: its steps
    are the gradients' size (Adam's barely change when a gradient is scaled)."""
    def make():
        return Sequential([Input(input_shape), *layers(), Flatten(), Dense(3)])
    x, y = data(input_shape, n)
    cpu, dev = pair(make)
    compile_both(cpu, dev, opt)
    fit_both_alike(cpu, dev, x, y, batch_size)


def ids(cases):
    return [",".join(f"{k}={v}" for k, v in c.items()) for c in cases]


# ---- priority 1: convolutions ------------------------------------------------------------------

CONV1D = [dict(kernel_size=3), dict(kernel_size=3, padding="same", strides=2),
          dict(kernel_size=3, padding="causal", dilation_rate=2, activation="relu"),
          dict(kernel_size=2, strides=3, use_bias=False, activation="tanh"),
          dict(kernel_size=3, groups=2, padding="full")]


@pytest.mark.parametrize("kw", CONV1D, ids=ids(CONV1D))
def test_conv1d_fit_matches_the_cpu(kw):
    fits_alike(lambda: [Conv1D(4, **kw)], (9, 4))


DEPTHWISE = [dict(kernel_size=3, depth_multiplier=2), dict(kernel_size=3, strides=2, padding="same", activation="relu"),
             dict(kernel_size=3, dilation_rate=2, use_bias=False),
             dict(kernel_size=2, strides=3, depth_multiplier=2, activation="tanh")]


@pytest.mark.parametrize("kw", DEPTHWISE, ids=ids(DEPTHWISE))
def test_depthwise_conv2d_fit_matches_the_cpu(kw):
    fits_alike(lambda: [DepthwiseConv2D(**kw)], (7, 6, 3))


SEPARABLE = [dict(kernel_size=3, depth_multiplier=2, padding="same", activation="relu"),
             dict(kernel_size=2, strides=3, use_bias=False),
             dict(kernel_size=(3, 2), dilation_rate=2, activation="elu")]


@pytest.mark.parametrize("kw", SEPARABLE, ids=ids(SEPARABLE))
def test_separable_conv2d_fit_matches_the_cpu(kw):
    fits_alike(lambda: [SeparableConv2D(4, **kw)], (7, 6, 3))


def test_depthwise_and_separable_conv1d_fit_matches_the_cpu():
    fits_alike(lambda: [DepthwiseConv1D(3, depth_multiplier=2, padding="causal", activation="relu"),
                        SeparableConv1D(3, 2, strides=2, padding="same")], (9, 2))


TRANSPOSE = [dict(kernel_size=3, strides=2), dict(kernel_size=3, strides=2, padding="same", output_padding=1,
                                                  activation="relu"),
             dict(kernel_size=2, strides=3, use_bias=False), dict(kernel_size=3, dilation_rate=2, padding="same"),
             dict(kernel_size=(2, 3), strides=(1, 2), activation="sigmoid")]


@pytest.mark.parametrize("kw", TRANSPOSE, ids=ids(TRANSPOSE))
def test_conv2d_transpose_fit_matches_the_cpu(kw):
    fits_alike(lambda: [Conv2DTranspose(2, **kw)], (4, 5, 3))


def test_conv1d_transpose_fit_matches_the_cpu():
    fits_alike(lambda: [Conv1DTranspose(3, 3, strides=2, padding="same", activation="relu"),
                        Conv1DTranspose(2, 2, strides=3)], (5, 2))


def test_convolutions_with_batch_1_match_the_cpu():
    fits_alike(lambda: [Conv1D(3, 2, strides=3), Conv1DTranspose(2, 3, strides=2)], (7, 2), n=3, batch_size=1,
               opt=lambda: SGD(0.1))
    fits_alike(lambda: [SeparableConv2D(3, 3, padding="same"), Conv2DTranspose(2, 2, strides=2)], (3, 5, 2), n=3,
               batch_size=1, opt=lambda: SGD(0.1))


# ---- priority 2: pooling, resampling, padding, reshaping ---------------------------------------

def test_1d_and_global_pooling_fit_matches_the_cpu():
    fits_alike(lambda: [Conv1D(3, 2), MaxPooling1D(2), AveragePooling1D(3, strides=1, padding="same"),
                        GlobalMaxPooling1D()], (9, 2))
    fits_alike(lambda: [Conv1D(3, 1), AveragePooling1D(2, strides=3), MaxPooling1D(2, padding="same"),
                        GlobalAveragePooling1D(keepdims=True)], (11, 2))


def test_global_pooling_2d_fit_matches_the_cpu():
    fits_alike(lambda: [Conv2D(3, 2), GlobalAveragePooling2D()], (5, 4, 2))
    fits_alike(lambda: [Conv2D(3, 2), GlobalMaxPooling2D(keepdims=True)], (5, 4, 2))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_padding_upsampling_cropping_2d_fit_matches_the_cpu(interpolation):
    fits_alike(lambda: [Conv2D(3, 1), ZeroPadding2D(((1, 0), (2, 1))), Conv2D(2, 3),
                        UpSampling2D((2, 3), interpolation=interpolation), Cropping2D(((1, 2), (0, 3)))], (5, 4, 2))


def test_padding_upsampling_cropping_1d_and_reshape_fit_matches_the_cpu():
    fits_alike(lambda: [Conv1D(4, 1), ZeroPadding1D((1, 2)), UpSampling1D(3), Cropping1D((2, 1)), Reshape((-1, 2)),
                        Conv1D(3, 3), Reshape((6, 2, -1)), GlobalMaxPooling2D()], (3, 2))


# ---- priority 3: recurrent layers --------------------------------------------------------------

RNNS = {"simple_rnn": lambda **kw: SimpleRNN(4, **kw), "lstm": lambda **kw: LSTM(4, **kw),
        "gru": lambda **kw: GRU(4, **kw), "gru-reset-before": lambda **kw: GRU(4, reset_after=False, **kw)}


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("family", list(RNNS))
def test_recurrent_fit_matches_the_cpu(family, return_sequences, go_backwards):
    fits_alike(lambda: [RNNS[family](return_sequences=return_sequences, go_backwards=go_backwards)], (5, 3))


@pytest.mark.parametrize("family", list(RNNS))
def test_recurrent_stacks_length_1_sequences_and_batch_1_match_the_cpu(family):
    fits_alike(lambda: [RNNS[family](return_sequences=True), RNNS[family](use_bias=False, go_backwards=True)], (1, 2))
    fits_alike(lambda: [Conv1D(3, 2), RNNS[family](return_sequences=True)], (4, 2), n=3, batch_size=1)


# ---- float64: the ops against finite differences -----------------------------------------------

class _Res:
    """What an op reads of faltung.models.resident.Resident: the harness's entry points, the
    weights as float64 DeviceArrays, which weights train, and where gradients go."""

    def __init__(self, model):
        self.r, self.DeviceArray = host.resident, host.DeviceArray
        self.arrays = {id(v): host.DeviceArray(v.value, np.float64) for v in model.weights}
        self.grads, self.host_stale = {}, False

    def array(self, var):
        return self.arrays[id(var)]

    def trains(self, var):
        return True

    def set_grad(self, var, grad):
        if var is not None and grad is not None:
            self.grads[id(var)] = grad.numpy()


def _sampled(shape, k=6):
    """Every coordinate of a small tensor (up to 48: one wrong gate of a small kernel shows),
    else k random ones."""
    size = int(np.prod(shape))
    flat = range(size) if size <= 48 else RNG.choice(size, size=k, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def check_gradients(layers, input_shape, batch=2):
    """sum(out * R) of the model's resident ops in float64: dx and every weight gradient equal
    central differences at sampled coordinates."""
    model = Sequential([Input(input_shape), *layers])
    ops = [op for layer in model.layers for op in ops_for(layer)]
    res = _Res(model)
    x = RNG.standard_normal((batch,) + input_shape)

    def run(xv):
        y, saved = res.DeviceArray(xv, np.float64), []
        for op in ops:
            y, s = op.forward(res, y, True)
            saved.append(s)
        return y, saved

    y, saved = run(x)
    R = RNG.standard_normal(y.shape)
    d = res.DeviceArray(R, np.float64)
    for i in reversed(range(len(ops))):
        d = ops[i].backward(res, d, saved[i], True)
    loss = lambda: float(np.sum(run(x)[0].numpy() * R))  # noqa: E731
    eps = 1e-6

    def central(a, idx, set_a):
        old = a[idx]
        a[idx] = old + eps
        set_a(a)
        up = loss()
        a[idx] = old - eps
        set_a(a)
        down = loss()
        a[idx] = old
        set_a(a)
        return (up - down) / (2 * eps)

    dx = d.numpy()
    for idx in _sampled(x.shape):
        np.testing.assert_allclose(dx[idx], central(x, idx, lambda a: None), rtol=1e-6, atol=1e-8)
    for v in model.weights:
        w = res.arrays[id(v)].numpy()
        g = res.grads[id(v)]
        assert g.shape == w.shape, v.name

        def set_w(a, v=v):
            res.arrays[id(v)] = res.DeviceArray(a, np.float64)
        for idx in _sampled(w.shape):
            np.testing.assert_allclose(g[idx], central(w, idx, set_w), rtol=1e-6, atol=1e-8, err_msg=v.name)


GRADIENT_CASES = {
    "conv1d-causal-dilated": (lambda: [Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu")], (7, 2)),
    "conv1d-groups-stride3": (lambda: [Conv1D(4, 2, strides=3, groups=2)], (8, 4)),
    "depthwise2d-same-s2": (lambda: [DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)], (5, 4, 2)),
    "depthwise1d": (lambda: [DepthwiseConv1D(2, dilation_rate=2, activation="tanh")], (6, 2)),
    "separable2d": (lambda: [SeparableConv2D(3, (3, 2), padding="same", depth_multiplier=2, activation="relu")],
                    (4, 5, 2)),
    "separable1d-s2": (lambda: [SeparableConv1D(3, 3, strides=2)], (7, 2)),
    "transpose2d-same-op1": (lambda: [Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1)],
                             (3, 2, 2)),
    "transpose2d-s3-k2": (lambda: [Conv2DTranspose(2, 2, strides=3, activation="tanh")], (2, 3, 2)),
    "transpose1d-dilated": (lambda: [Conv1DTranspose(2, 3, dilation_rate=2)], (4, 3)),
    "pool1d-global": (lambda: [Conv1D(2, 1), MaxPooling1D(2), AveragePooling1D(2, padding="same"),
                               GlobalMaxPooling1D()], (7, 2)),
    "global2d": (lambda: [Conv2D(2, 1), GlobalAveragePooling2D(keepdims=True)], (3, 4, 2)),
    "pad-upsample-crop": (lambda: [Conv2D(2, 1), ZeroPadding2D(((1, 0), (0, 2))), UpSampling2D((2, 1)),
                                   UpSampling2D(interpolation="bilinear"), Cropping2D(((1, 2), (3, 0)))], (3, 2, 2)),
    "pad-upsample-crop-1d-reshape": (lambda: [Conv1D(2, 1), ZeroPadding1D(1), UpSampling1D(2), Cropping1D((1, 2)),
                                              Reshape((-1, 1))], (3, 2)),
    "simple_rnn-backwards": (lambda: [SimpleRNN(3, go_backwards=True, return_sequences=True)], (4, 2)),
    "lstm-last": (lambda: [LSTM(3)], (3, 2)),
    "lstm-backwards-sequences": (lambda: [LSTM(3, go_backwards=True, return_sequences=True)], (3, 2)),
    "gru-last-length1": (lambda: [GRU(3, use_bias=False)], (1, 2)),
    "gru-backwards-sequences": (lambda: [GRU(3, go_backwards=True, return_sequences=True)], (3, 2)),
    "gru-reset-before-last": (lambda: [GRU(3, reset_after=False)], (3, 2)),
    "gru-reset-before-backwards-sequences": (lambda: [GRU(3, reset_after=False, go_backwards=True,
                                                          return_sequences=True, use_bias=False)], (4, 2)),
}


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
def test_float64_gradients_match_finite_differences(case):
    layers, input_shape = GRADIENT_CASES[case]
    check_gradients(layers(), input_shape)


RECURRENT_OPS = {  # (entry point family, gates, bias shape of U, CPU forward, CPU backward, options)
    "simple_rnn": ("simple_rnn", 1, lambda u: (u,), R.simple_rnn_forward, R.simple_rnn_backward, {}),
    "lstm": ("lstm", 4, lambda u: (4 * u,), R.lstm_forward,
             lambda saved, dhs, dh_T: R.lstm_backward(saved, dhs, dh_T, None), {}),
    "gru": ("gru", 3, lambda u: (2, 3 * u), R.gru_forward, R.gru_backward, {"reset_after": True}),
    "gru-reset-before": ("gru", 3, lambda u: (3 * u,), R.gru_forward, R.gru_backward, {"reset_after": False}),
}


@pytest.fixture(params=[False, True], ids=["bodies", "blas"])
def gemm_path(request):
    """The recurrent GEMMs on their bodies, or on the BLAS path (the host's reference GEMM)."""
    host.set_reference_blas(request.param)
    try:
        yield request.param
    finally:
        host.set_reference_blas(False)


@pytest.mark.parametrize("dhs_or_last", ["sequences", "last"])
@pytest.mark.parametrize("B,T", [(3, 4), (1, 1), (5, 2)], ids=["B3-T4", "B1-T1", "B5-T2"])
@pytest.mark.parametrize("name", list(RECURRENT_OPS))
def test_recurrent_entry_points_equal_the_cpu_ops_in_float64(name, B, T, dhs_or_last, gemm_path):
    family, gates, bias_shape, cpu_forward, cpu_backward, options = RECURRENT_OPS[name]
    F, U = 3, 5
    x, W = RNG.standard_normal((B, T, F)), RNG.standard_normal((F, gates * U)) * 0.5
    Rk, b = RNG.standard_normal((U, gates * U)) * 0.5, RNG.standard_normal(bias_shape(U))
    dy = RNG.standard_normal((B, T, U) if dhs_or_last == "sequences" else (B, U))
    dhs, dh_T = (dy, None) if dhs_or_last == "sequences" else (None, dy)
    out = cpu_forward(x, W, Rk, b, training=True, **options)
    hs, h_T, saved = out[0], out[1], out[-1]
    want = cpu_backward(saved, dhs, dh_T)[:4]
    r, DA = host.resident, host.DeviceArray
    got = getattr(r, family + "_forward")(DA(x), DA(W), DA(Rk), DA(b), training=True, **options)
    got_hs, got_h_T, ws = got[0], got[1], got[-1]  # (LSTM's c_T between, as the CPU op's)
    np.testing.assert_allclose(got_hs.numpy(), hs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_h_T.numpy(), h_T, rtol=1e-12, atol=1e-12)
    got = getattr(r, family + "_backward")(DA(x), DA(W), DA(Rk), DA(b), ws, None if dhs is None else DA(dhs),
                                           None if dh_T is None else DA(dh_T), **options)
    for g, w, what in zip(got, want, ("dx", "dkernel", "drecurrent_kernel", "dbias")):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12, err_msg=what)
    no_dx = getattr(r, family + "_backward")(DA(x), DA(W), DA(Rk), DA(b), ws, None if dhs is None else DA(dhs),
                                             None if dh_T is None else DA(dh_T), need_dx=False, **options)
    assert no_dx[0] is None
    for g, w in zip(no_dx[1:], got[1:]):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


# ---- what the device cannot run ----------------------------------------------------------------

@pytest.mark.parametrize("layer,input_shape,match", [
    (lambda: SimpleRNN(3, activation="relu"), (4, 2), "activation='relu'"),
    (lambda: LSTM(3, recurrent_activation="hard_sigmoid"), (4, 2), "recurrent_activation='hard_sigmoid'"),
    (lambda: Conv1D(2, 2, kernel_regularizer="l2"), (4, 2), "regularizer"),
], ids=["rnn-activation", "recurrent-activation", "conv1d-regularizer"])
def test_unsupported_options_fail_at_build_naming_the_layer(layer, input_shape, match):
    with _device._harness_device():
        with pytest.raises(NotImplementedError, match=f"{match}.*layer '.*' of type"):
            Sequential([Input(input_shape), layer(), Dense(2)])


def test_bad_arguments_of_the_layer_entry_points_name_them():
    r, DA = host.resident, host.DeviceArray
    x = DA(np.zeros((2, 3, 4), np.float32))
    k, rk = DA(np.zeros((4, 12), np.float32)), DA(np.zeros((3, 12), np.float32))
    hs, h_T, c_T, ws = r.lstm_forward(x, k, rk, None, training=True)
    assert hs.shape == (2, 3, 3) and h_T.shape == c_T.shape == (2, 3) and ws is not None
    assert r.lstm_forward(x, k, rk, None)[3] is None  # not training: no workspace kept
    with pytest.raises(ValueError, match="lstm_backward: expected the `workspace` the training forward returned"):
        r.lstm_backward(x, k, rk, None, DA(np.zeros(5, np.float32)), None, h_T)
    with pytest.raises(ValueError, match=r"gru_forward: expected `kernel` of shape \(4, 9\)"):
        r.gru_forward(x, k, DA(np.zeros((3, 9), np.float32)), None)
    with pytest.raises(ValueError, match=r"lstm_forward: expected `bias` of shape \(12,\)"):
        r.lstm_forward(x, k, rk, DA(np.zeros((2, 12), np.float32)))
    with pytest.raises(ValueError, match="shift2d: expected `x` of rank 4"):
        r.shift2d(x, (2, 2), 0, 0)
    with pytest.raises(ValueError, match="conv_transpose2d: expected `kernel` of shape"):
        r.conv_transpose2d(DA(np.zeros((1, 2, 2, 3), np.float32)), DA(np.zeros((2, 2, 1, 2), np.float32)), None,
                           (1, 1), "valid", None, (1, 1))
    with pytest.raises(ValueError, match="upsample_nearest2d_backward: `dy` of shape"):
        r.upsample_nearest2d_backward(DA(np.zeros((1, 3, 2, 1), np.float32)), (2, 2))


def test_reverse_time_and_shift_move_elements_as_numpy():
    r, DA = host.resident, host.DeviceArray
    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(r.reverse_time(DA(x)).numpy(), x[:, ::-1])
    img = RNG.standard_normal((2, 3, 4, 2))
    np.testing.assert_array_equal(r.shift2d(DA(img), (5, 5), 1, 0).numpy(),
                                  np.pad(img, ((0, 0), (1, 1), (0, 1), (0, 0))))
    np.testing.assert_array_equal(r.shift2d(DA(img), (1, 2), -1, -2).numpy(), img[:, 1:2, 2:4])


def test_device_module_has_the_layer_entry_points():
    try:
        cuda = importlib.import_module("faltung._cuda")
    except ImportError:
        pytest.skip("a CPU-only build (no faltung._cuda)")
    for name in ("conv_transpose2d", "upsample_nearest2d", "resize_bilinear2d", "shift2d", "reverse_time",
                 "lstm_forward", "gru_backward", "simple_rnn_backward"):
        assert hasattr(cuda.resident, name)


@pytest.mark.parametrize("family,gates,opts", [("simple_rnn", 1, {}), ("lstm", 4, {}),
                                               ("gru", 3, {"reset_after": True}),
                                               ("gru", 3, {"reset_after": False})])
def test_recurrent_backward_of_an_empty_batch_gives_zero_weight_gradients(family, gates, opts):
    """B = 0: the recurrent kernel's gradient is a sum over no samples, so zeros (fresh harness
    buffers start as NaN: a gradient nothing writes shows)."""
    host = pytest.importorskip("faltung._cuda_host")
    r, DA = host.resident, host.DeviceArray
    x = DA(np.ones((0, 3, 4), np.float32))
    k, rk = DA(np.ones((4, gates * 3), np.float32)), DA(np.ones((3, gates * 3), np.float32))
    ws = getattr(r, family + "_forward")(x, k, rk, None, training=True, **opts)[-1]
    dx, dk, drk, db = getattr(r, family + "_backward")(x, k, rk, None, ws, None, None, **opts)[:4]
    np.testing.assert_array_equal(dk.numpy(), 0)
    np.testing.assert_array_equal(drk.numpy(), 0)
