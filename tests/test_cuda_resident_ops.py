"""DeviceArray (cpp/cuda/device_array.hpp) and the `resident` entry points over it
(cpp/cuda/bind_resident.hpp): uploads and downloads, DLPack export, and each entry point equal
to the copying entry point of the same kernel family (bind_kernels.hpp, itself held to the CPU
kernels by test_cuda_kernels/_layers/_conv) on the same inputs.

`impl` is faltung._cuda_host (host memory standing in for device memory; every run) and, when a
GPU exists, faltung._cuda (skipped with the reason otherwise).
"""
import gc

import numpy as np
import pytest

from test_cuda_kernels import _backend, sfx

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


@pytest.fixture(params=["host", "device"])
def impl(request):
    return _backend(request.param)


@pytest.fixture
def host():
    return _backend("host")


def rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def dev(impl, a):
    return impl.DeviceArray(np.ascontiguousarray(a))


def same(got, want):
    """A DeviceArray (or None) holds exactly `want` (the same kernels ran)."""
    if want is None:
        assert got is None
        return
    np.testing.assert_array_equal(got.numpy(), want)


# ---- DeviceArray -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3), (1, 4, 3, 2)])
def test_upload_download_round_trip(impl, dtype, shape):
    a = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    d = impl.DeviceArray(a)
    assert d.shape == shape and d.dtype == np.dtype(dtype) and d.ndim == len(shape) and d.size == a.size
    back = d.numpy()
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, a)


def test_upload_takes_non_contiguous_arrays_and_a_dtype(impl):
    a = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(impl.DeviceArray(a.T).numpy(), a.T)
    d = impl.DeviceArray(a, np.float32)
    assert d.dtype == np.float32
    with pytest.raises(TypeError, match="float32, float64, int32 or uint8, received dtype int64"):
        impl.DeviceArray(np.arange(3))


def test_reshape_shares_memory(host):
    d = host.DeviceArray(np.arange(24.0).reshape(2, 3, 4))
    flat = d.reshape((2, -1))
    assert flat.shape == (2, 12)
    assert np.shares_memory(np.from_dlpack(d), np.from_dlpack(flat))
    with pytest.raises(ValueError, match=r"cannot reshape an array of shape \(2, 3, 4\) into shape \(5, -1\)"):
        d.reshape((5, -1))


def test_dlpack_device(impl):
    d = impl.DeviceArray(np.zeros(3, np.float32))
    if impl.__name__.endswith("_cuda_host"):
        assert d.__dlpack_device__() == (1, 0)  # kDLCPU
    else:
        assert d.__dlpack_device__()[0] == 2    # kDLCUDA
    assert "DeviceArray shape=(3,) dtype=float32" in repr(d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
def test_numpy_views_a_host_array_without_a_copy(host, dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    d = host.DeviceArray(a)
    view = np.from_dlpack(d)
    assert view.dtype == dtype and view.shape == (2, 3) and not view.flags.owndata
    np.testing.assert_array_equal(view, a)
    assert np.shares_memory(view, np.from_dlpack(d))


def test_a_view_sees_in_place_updates(host):
    w = host.DeviceArray(np.ones(4, np.float64))
    view = np.from_dlpack(w)
    host.resident.sgd_update(w, None, host.DeviceArray(np.arange(4.0)), lr=0.5, momentum=0.0, nesterov=False)
    np.testing.assert_array_equal(view, 1.0 - 0.5 * np.arange(4.0))


def test_a_view_outlives_the_array(host):
    view = np.from_dlpack(host.DeviceArray(np.arange(1000, dtype=np.float64)))
    gc.collect()
    filler = [host.DeviceArray(np.full(1000, 7.0)) for _ in range(10)]  # reuse freed memory, if any
    np.testing.assert_array_equal(view, np.arange(1000.0))
    del filler


def test_every_export_is_freed_once(host):
    live = host.DeviceArray._live_exports
    gc.collect()
    before = live()
    d = host.DeviceArray(np.zeros((3, 2), np.float32))
    cap = d.__dlpack__()  # never consumed: the capsule frees it
    assert "dltensor" in repr(cap) and live() == before + 1
    del cap
    assert live() == before
    views = [np.from_dlpack(d) for _ in range(3)]  # consumed: numpy calls the deleter
    assert live() == before + 3
    del d
    np.testing.assert_array_equal(views[2], np.zeros((3, 2)))
    del views
    gc.collect()
    assert live() == before


def test_dlpack_refuses_copies_and_other_devices(host):
    d = host.DeviceArray(np.zeros(2, np.float32))
    with pytest.raises(BufferError, match="copy=True"):
        d.__dlpack__(copy=True)
    with pytest.raises(BufferError, match="lives on device"):
        d.__dlpack__(dl_device=(2, 0))
    d.__dlpack__(stream=None, max_version=(1, 0), dl_device=(1, 0), copy=False)


# ---- entry points == the copying entry points ----------------------------------------------------

@DTYPES
@pytest.mark.parametrize("activation,params", [("linear", {}), ("relu", {}), ("tanh", {}),
                                               ("relu", {"negative_slope": 0.1, "max_value": 6.0})])
def test_dense_matches_the_copying_entry_point(impl, dtype, activation, params):
    rng = np.random.default_rng(1)
    x, W, b, dy = rand(rng, (5, 7), dtype), rand(rng, (7, 3), dtype), rand(rng, (3,), dtype), rand(rng, (5, 3), dtype)
    r = impl.resident
    y, z = r.dense_forward(dev(impl, x), dev(impl, W), dev(impl, b), activation, **params)
    y_ref, z_ref = getattr(impl, "dense_forward" + sfx(dtype))(x, W, b, activation, **params)
    same(y, y_ref)
    same(z, z_ref)
    got = r.dense_backward(dev(impl, dy), dev(impl, x), dev(impl, W), block=32)
    want = getattr(impl, "dense_backward" + sfx(dtype))(dy, x, W, True, True, True, 32)
    for g, w in zip(got, want):
        same(g, w)
    dx, dW, db = r.dense_backward(dev(impl, dy), dev(impl, x), dev(impl, W), need_dx=False, need_dbias=False)
    assert dx is None and db is None and dW is not None


@DTYPES
@pytest.mark.parametrize("name", ["relu", "sigmoid", "gelu"])
def test_activations_match(impl, dtype, name):
    rng = np.random.default_rng(2)
    x, dy = rand(rng, (4, 33), dtype), rand(rng, (4, 33), dtype)
    r = impl.resident
    y = r.activation(name, dev(impl, x), block=32)
    same(y, getattr(impl, "activation" + sfx(dtype))(name, x, block=32))
    y_np = y.numpy()
    dx = r.activation_backward(name, dev(impl, dy), dev(impl, x), y, block=32)
    same(dx, getattr(impl, "activation_backward" + sfx(dtype))(name, dy, x, y_np, block=32))


@DTYPES
def test_softmax_and_cross_entropy_match(impl, dtype):
    rng = np.random.default_rng(3)
    x, dy = rand(rng, (6, 5), dtype), rand(rng, (6, 5), dtype)
    labels = np.array([0, 4, 2, 2, 1, 3], np.int32)
    r = impl.resident
    for log in (False, True):
        name = "log_softmax" if log else "softmax"
        y = getattr(r, name)(dev(impl, x))
        same(y, getattr(impl, name + sfx(dtype))(x))
        same(getattr(r, name + "_backward")(dev(impl, dy), y),
             getattr(impl, name + "_backward" + sfx(dtype))(dy, y.numpy()))
    loss, grad = r.sparse_softmax_xent(dev(impl, x), labels, 1.0 / 6)
    loss_ref, grad_ref = getattr(impl, "sparse_softmax_xent" + sfx(dtype))(x, labels, 1.0 / 6, True)
    same(loss, loss_ref)
    same(grad, grad_ref)
    assert r.sparse_softmax_xent(dev(impl, x), labels, need_grad=False)[1] is None


@DTYPES
@pytest.mark.parametrize("stride,pad,groups", [(1, 0, 1), (2, 1, 1), (1, 1, 2)], ids=["s1", "s2-pad", "groups"])
def test_conv2d_matches(impl, dtype, stride, pad, groups):
    rng = np.random.default_rng(4)
    N, H, W, C, K, KH = 2, 7, 6, 4, 6, 3
    x, w, b = rand(rng, (N, H, W, C), dtype), rand(rng, (KH, KH, C // groups, K), dtype), rand(rng, (K,), dtype)
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KH) // stride + 1
    geom = dict(stride_h=stride, stride_w=stride, pad_top=pad, pad_left=pad, dil_h=1, dil_w=1, groups=groups)
    r = impl.resident
    y = r.conv2d_forward(dev(impl, x), dev(impl, w), dev(impl, b), OH=OH, OW=OW, relu=True, **geom)
    same(y, getattr(impl, "conv2d_forward" + sfx(dtype))(x, w, b, OH=OH, OW=OW, relu=True, **geom))
    dout = rand(rng, (N, OH, OW, K), dtype)
    got = r.conv2d_backward(dev(impl, dout), dev(impl, x), dev(impl, w), **geom)
    want = getattr(impl, "conv2d_backward" + sfx(dtype))(dout, x, w, **geom)
    for g, wnt in zip(got, want):
        same(g, wnt)


@DTYPES
@pytest.mark.parametrize("pool,strides,padding", [((2, 2), (2, 2), "valid"), ((3, 2), (1, 2), "same")])
def test_max_pool_matches(impl, dtype, pool, strides, padding):
    rng = np.random.default_rng(5)
    x = rand(rng, (2, 5, 7, 3), dtype)
    r = impl.resident
    y, arg = r.max_pool2d(dev(impl, x), pool, strides, padding)
    y_ref, arg_ref = getattr(impl, "max_pool2d" + sfx(dtype))(x, pool, strides, padding)
    same(y, y_ref)
    same(arg, arg_ref)
    dy = rand(rng, y_ref.shape, dtype)
    same(r.max_pool2d_backward(dev(impl, dy), arg, (5, 7), pool, strides, padding),
         getattr(impl, "max_pool2d_backward" + sfx(dtype))(dy, arg_ref, (5, 7), pool, strides, padding))


@DTYPES
@pytest.mark.parametrize("pool,strides,padding", [((2, 2), (2, 2), "valid"), ((3, 2), (1, 2), "same")])
def test_average_pool_matches(impl, dtype, pool, strides, padding):
    rng = np.random.default_rng(8)
    x = rand(rng, (2, 5, 7, 3), dtype)
    r = impl.resident
    y = r.avg_pool2d(dev(impl, x), pool, strides, padding)
    y_ref = getattr(impl, "avg_pool2d" + sfx(dtype))(x, pool, strides, padding)
    same(y, y_ref)
    dy = rand(rng, y_ref.shape, dtype)
    same(r.avg_pool2d_backward(dev(impl, dy), (5, 7), pool, strides, padding),
         getattr(impl, "avg_pool2d_backward" + sfx(dtype))(dy, (5, 7), pool, strides, padding))


@DTYPES
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches(impl, dtype, affine):
    rng = np.random.default_rng(11)
    x, dy = rand(rng, (3, 4, 37), dtype), rand(rng, (3, 4, 37), dtype)
    gamma, beta = (rand(rng, (37,), dtype) if affine else None for _ in range(2))
    mm, mv = rand(rng, (37,), dtype), np.abs(rand(rng, (37,), dtype)) + 0.5
    r, ref = impl.resident, (lambda name: getattr(impl, name + sfx(dtype)))
    opt_dev = (lambda a: None if a is None else dev(impl, a))
    dmm, dmv = dev(impl, mm), dev(impl, mv)
    y, mean, inv = r.batch_norm_train(dev(impl, x), opt_dev(gamma), opt_dev(beta), dmm, dmv, 1e-3, 0.9, block=32)
    y_ref, mean_ref, _, inv_ref, mm_ref, mv_ref = ref("batch_norm_train")(x, gamma, beta, mm, mv, 1e-3, 0.9, block=32)
    for got, want in ((y, y_ref), (mean, mean_ref), (inv, inv_ref), (dmm, mm_ref), (dmv, mv_ref)):
        same(got, want)
    got = r.batch_norm_backward(dev(impl, dy), dev(impl, x), mean, inv, opt_dev(gamma), False, need_dgamma=affine,
                                need_dbeta=affine, block=32)
    want = ref("batch_norm_backward")(dy, x, mean_ref, inv_ref, gamma, False, need_dgamma=affine, need_dbeta=affine,
                                      block=32)
    for g, w in zip(got, want):
        same(g, w)
    y, inv = r.batch_norm_inference(dev(impl, x), opt_dev(gamma), opt_dev(beta), dev(impl, mm), dev(impl, mv), 1e-3)
    y_ref, inv_ref = ref("batch_norm_inference")(x, gamma, beta, mm, mv, 1e-3)
    same(y, y_ref)
    same(inv, inv_ref)
    got = r.batch_norm_backward(dev(impl, dy), dev(impl, x), dev(impl, mm), inv, opt_dev(gamma), True)
    want = ref("batch_norm_backward")(dy, x, mm, inv_ref, gamma, True)
    for g, w in zip(got, want):
        same(g, w)


@DTYPES
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_dropout_matches(impl, dtype, rate):
    rng = np.random.default_rng(9)
    x, dy = rand(rng, (3, 41), dtype), rand(rng, (3, 41), dtype)
    y, mask = impl.resident.dropout(dev(impl, x), rate, 12345, block=32)
    y_ref, mask_ref = getattr(impl, "dropout" + sfx(dtype))(x, rate, 12345, block=32)
    same(y, y_ref)
    same(mask, mask_ref)
    assert mask.dtype == np.uint8
    same(impl.resident.dropout_backward(dev(impl, dy), mask, rate, block=32),
         getattr(impl, "dropout_backward" + sfx(dtype))(dy, mask_ref, rate, block=32))


@DTYPES
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_in_place_matches(impl, dtype, momentum, nesterov):
    rng = np.random.default_rng(6)
    w, m, g = rand(rng, (37,), dtype), rand(rng, (37,), dtype), rand(rng, (37,), dtype)
    dw, dm = dev(impl, w), dev(impl, m) if momentum else None
    impl.resident.sgd_update(dw, dm, dev(impl, g), 0.1, momentum, nesterov, block=32)
    w_ref, m_ref = getattr(impl, "optim_sgd" + sfx(dtype))(w, m if momentum else None, g, 0.1, momentum, nesterov,
                                                            block=32)
    same(dw, w_ref)
    if momentum:
        same(dm, m_ref)


@DTYPES
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_in_place_matches(impl, dtype, amsgrad):
    rng = np.random.default_rng(7)
    w, m, g = rand(rng, (2, 19), dtype), rand(rng, (2, 19), dtype), rand(rng, (2, 19), dtype)
    v, vhat = np.abs(rand(rng, (2, 19), dtype)), np.abs(rand(rng, (2, 19), dtype))
    d = [dev(impl, a) for a in (w, m, v)]
    dvh = dev(impl, vhat) if amsgrad else None
    impl.resident.adam_update(*d, dvh, dev(impl, g), 0.01, 0.9, 0.999, 1e-7)
    want = getattr(impl, "optim_adam" + sfx(dtype))(w, m, v, vhat if amsgrad else None, g, 0.01, 0.9, 0.999, 1e-7)
    for got, wnt in zip(d + [dvh], want):
        same(got, wnt)


@DTYPES
@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.5, True)])
def test_rmsprop_adagrad_and_weight_decay_in_place_match(impl, dtype, momentum, centered):
    rng = np.random.default_rng(10)
    w, g, mom, avg = (rand(rng, (23,), dtype) for _ in range(4))
    v = np.abs(rand(rng, (23,), dtype))
    d = [dev(impl, a) for a in (w, v)]
    dm, da = (dev(impl, mom) if momentum else None), (dev(impl, avg) if centered else None)
    impl.resident.rmsprop_update(*d, dm, da, dev(impl, g), 0.01, 0.9, momentum, 1e-7, block=32)
    want = getattr(impl, "optim_rmsprop" + sfx(dtype))(w, v, mom if momentum else None, avg if centered else None,
                                                       g, 0.01, 0.9, momentum, 1e-7, block=32)
    for got, wnt in zip(d + [dm, da], want):
        same(got, wnt)
    dw, dacc = dev(impl, w), dev(impl, v)
    impl.resident.adagrad_update(dw, dacc, dev(impl, g), 0.1, 1e-7)
    for got, wnt in zip((dw, dacc), getattr(impl, "optim_adagrad" + sfx(dtype))(w, v, g, 0.1, 1e-7)):
        same(got, wnt)
    dw = dev(impl, w)
    impl.resident.weight_decay(dw, 0.004, 0.5)
    same(dw, getattr(impl, "weight_decay" + sfx(dtype))(w, 0.004, 0.5))


def test_flatten_is_a_reshape(host):
    x = host.DeviceArray(np.arange(24.0).reshape(2, 2, 3, 2))
    y, _ = host.resident.dense_forward(x.reshape((2, -1)), host.DeviceArray(np.eye(12)), None)
    np.testing.assert_array_equal(y.numpy(), np.arange(24.0).reshape(2, 12))


# ---- errors ------------------------------------------------------------------------------------

def test_errors_name_the_op_and_shapes(host):
    r, D = host.resident, host.DeviceArray
    x, W = D(np.zeros((4, 3), np.float32)), D(np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"dense: expected `kernel` of shape \(3, units\), received \(5, 2\)"):
        r.dense_forward(x, W, None)
    with pytest.raises(TypeError, match="dense: expected `kernel` of dtype float32, received float64"):
        r.dense_forward(x, D(np.zeros((3, 2))), None)
    with pytest.raises(TypeError, match="expected float32 or float64 arrays, received dtype int32"):
        r.softmax(D(np.zeros((2, 2), np.int32)))
    with pytest.raises(ValueError, match=r"label 7 at index 1 is out of range \[0, 3\)"):
        r.sparse_softmax_xent(x, np.array([0, 7, 1, 2], np.int32))
    with pytest.raises(ValueError, match=r"SGD: expected `g` of shape \(4, 3\), received \(3,\)"):
        r.sgd_update(x, None, D(np.zeros(3, np.float32)), 0.1, 0.0, False)
    with pytest.raises(ValueError, match="conv2d_forward: expected `x` of rank 4"):
        r.conv2d_forward(x, W, None, 1, 1, 0, 0, 1, 1, 1, 1, 1)


def test_pool_backward_takes_only_its_own_argmax(host):
    r, D = host.resident, host.DeviceArray
    x = D(np.random.default_rng(0).standard_normal((1, 4, 4, 1)))
    y, arg = r.max_pool2d(x, (2, 2), (2, 2), "valid")
    forged = D(np.full((1, 2, 2, 1), 10 ** 6, np.int32))  # would index far outside dx
    with pytest.raises(ValueError, match=r"expected the `argmax` that max_pool2d returned for an input of height "
                                         r"and width \(4, 4\)"):
        r.max_pool2d_backward(y, forged, (4, 4), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match="argmax"):
        r.max_pool2d_backward(r.max_pool2d(D(np.zeros((1, 5, 4, 1))), (2, 2), (2, 2), "valid")[0], arg, (5, 4),
                              (2, 2), (2, 2), "valid")


# ---- the buffer pool (cpp/cuda/pooled_buf.hpp) --------------------------------------------------

def test_freed_blocks_are_reused_and_released_on_request(host):
    host.empty_cache()
    start = host.memory_stats()
    a = host.DeviceArray(np.zeros(1000, np.float32))  # 4000 bytes: the 4096-byte class
    s = host.memory_stats()
    assert s["in_use_bytes"] == start["in_use_bytes"] + 4096
    assert s["raw_allocations"] == start["raw_allocations"] + 1
    del a
    s = host.memory_stats()
    assert s["in_use_bytes"] == start["in_use_bytes"] and s["cached_bytes"] == 4096
    b = host.DeviceArray(np.ones(900, np.float32))  # the same class: the cached block, no allocation
    s = host.memory_stats()
    assert s["raw_allocations"] == start["raw_allocations"] + 1 and s["cached_bytes"] == 0
    np.testing.assert_array_equal(b.numpy(), np.ones(900))
    y = host.resident.activation("relu", b)  # a reused output block holds NaN until written
    np.testing.assert_array_equal(y.numpy(), np.ones(900))
    del b, y
    host.empty_cache()
    assert host.memory_stats()["cached_bytes"] == 0


def test_a_block_viewed_through_dlpack_is_not_reused(host):
    d = host.DeviceArray(np.arange(256, dtype=np.float64))
    view = np.from_dlpack(d)
    del d
    again = host.DeviceArray(np.full(256, -1.0))  # same class: must not get the viewed block
    assert not np.shares_memory(view, np.from_dlpack(again))
    np.testing.assert_array_equal(view, np.arange(256.0))
