"""Pooling: forward vs numpy reference, backward vs finite differences, ties, unpooling,
global pooling, errors."""
import numpy as np
import pytest

import faltung.layers as L
from faltung import _core
from faltung.ops import pooling as P
from tests.reference import pooling as ref
from tests.reference.gradcheck import numeric_grad

rng = np.random.default_rng(0)

# (N, H, W, C, pool, strides, padding)
CASES = [
    (2, 6, 6, 3, (2, 2), (2, 2), "valid"),
    (1, 7, 5, 4, (2, 2), (2, 2), "valid"),       # odd sizes, batch 1
    (2, 7, 5, 3, (2, 2), (2, 2), "same"),
    (2, 9, 8, 2, (2, 3), (3, 4), "valid"),       # stride > pool
    (2, 9, 8, 2, (2, 3), (3, 4), "same"),
    (3, 6, 7, 5, (3, 3), (1, 2), "same"),        # pool > stride (overlapping)
    (2, 6, 7, 5, (3, 2), (1, 1), "valid"),
    (1, 3, 3, 1, (5, 5), (1, 1), "same"),        # pool larger than input under same
    (2, 1, 9, 3, (1, 3), (1, 2), "same"),        # 1D as H = 1
    (2, 6, 5, 11, (2, 2), (2, 2), "valid"),      # C >= 8: argmax in registers, 3 channels left over
    (1, 5, 7, 16, (3, 3), (2, 2), "same"),       # C = 16 with border windows
    (2, 6, 7, 37, (3, 3), (2, 2), "same"),       # vectors of channels (2 at AVX-512, 4 at AVX2) and a tail
]
IDS = [f"N{c[0]}-H{c[1]}-W{c[2]}-C{c[3]}-k{c[4][0]}x{c[4][1]}-s{c[5][0]}x{c[5][1]}-{c[6]}" for c in CASES]


def distinct(shape):
    """Random values without ties."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape)).astype(np.float64)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("mode", ["max", "average"])
def test_forward_matches_reference(case, mode):
    n, h, w, c, pool, strides, padding = case
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    y_ref, arg_ref = ref.pool2d(x.astype(np.float64), pool, strides, padding, mode)
    if mode == "max":
        y, arg = P.max_pool(x, pool, strides, padding, return_argmax=True)
        np.testing.assert_array_equal(arg, arg_ref)
        np.testing.assert_array_equal(y, y_ref.astype(np.float32))
        y_naive, _ = _core.max_pool2d_f32(x, pool, strides, padding, True, True)
        np.testing.assert_array_equal(y, y_naive)
    else:
        y = P.average_pool(x, pool, strides, padding)
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y, _core.avg_pool2d_f32(x, pool, strides, padding, True), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES[:6] + CASES[8:], ids=IDS[:6] + IDS[8:])
@pytest.mark.parametrize("mode", ["max", "average"])
def test_backward_matches_finite_differences(case, mode):
    n, h, w, c, pool, strides, padding = case
    x = distinct((n, h, w, c))
    if mode == "max":
        y, arg = P.max_pool(x, pool, strides, padding, return_argmax=True)
        f = lambda v: P.max_pool(v, pool, strides, padding)
        r = rng.standard_normal(y.shape)
        dx = P.max_pool_backward(r, arg, x.shape, pool, strides, padding)
    else:
        y = P.average_pool(x, pool, strides, padding)
        f = lambda v: P.average_pool(v, pool, strides, padding)
        r = rng.standard_normal(y.shape)
        dx = P.average_pool_backward(r, x.shape, pool, strides, padding)
    assert y.dtype == np.float64
    np.testing.assert_allclose(dx, numeric_grad(f, x, r), rtol=1e-6, atol=1e-7)


def test_ties_go_to_first_maximum_with_many_channels():
    # 11 channels: 0-7 take the float32 register path, 8-10 the per-channel remainder.
    x = np.zeros((1, 2, 2, 11), np.float32)
    x[0, :, :, 3] = [[1.0, 3.0], [3.0, 3.0]]   # ties at (0,1), (1,0), (1,1): (0,1) wins
    x[0, :, :, 9] = [[2.0, 1.0], [2.0, 2.0]]   # ties at (0,0), (1,0), (1,1): (0,0) wins
    x[0, :, :, 5] = [[0.0, 0.0], [0.0, 4.0]]
    y, arg = P.max_pool(x, 2, return_argmax=True)
    want = [0] * 11
    want[3], want[5] = 1, 3
    assert arg[0, 0, 0].tolist() == want
    dx = P.max_pool_backward(np.ones_like(y), arg, x.shape, 2)
    assert dx[0, :, :, 3].tolist() == [[0, 1], [0, 0]]
    assert dx[0, :, :, 9].tolist() == [[1, 0], [0, 0]]


def test_ties_go_to_first_maximum_in_row_major_order():
    x = np.zeros((1, 2, 2, 2), np.float32)
    x[0, :, :, 1] = [[1.0, 3.0], [3.0, 3.0]]   # channel 1: ties at (0,1), (1,0), (1,1)
    y, arg = P.max_pool(x, 2, return_argmax=True)
    assert arg[0, 0, 0].tolist() == [0, 1]       # all-zero channel: (0,0); channel 1: (0,1)
    dx = P.max_pool_backward(np.ones_like(y), arg, x.shape, 2)
    assert dx[0, :, :, 0].tolist() == [[1, 0], [0, 0]]
    assert dx[0, :, :, 1].tolist() == [[0, 1], [0, 0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_propagates_nan_and_points_argmax_at_the_first_nan(dtype):
    # 11 channels: 0-7 take the float32 register path, 8-10 the per-channel remainder.
    # Window (row-major): 1, NaN, 5, NaN; found by the fuzzer (the NaN was dropped: 5).
    x = np.zeros((1, 2, 2, 11), dtype)
    x[0, :, :, [2, 9]] = [[1.0, np.nan], [5.0, np.nan]]
    x[0, :, :, [4, 10]] = [[np.nan, 7.0], [2.0, 1.0]]   # NaN first: later larger values do not replace it
    want_nan = np.isin(np.arange(11), [2, 9, 4, 10])
    for naive in (False, True):
        y, arg = _core.max_pool2d_f32(x, (2, 2), (2, 2), "valid", True, naive) if dtype == np.float32 else \
            _core.max_pool2d_f64(x, (2, 2), (2, 2), "valid", True, naive)
        assert np.array_equal(np.isnan(y[0, 0, 0]), want_nan)
        assert arg[0, 0, 0, [2, 9, 4, 10]].tolist() == [1, 1, 0, 0]
        assert y[0, 0, 0, 0] == 0
    assert np.array_equal(np.isnan(P.max_pool(x, 2)[0, 0, 0]), want_nan)  # without argmax


def test_same_padding_ignores_pad_for_max_and_counts_in_bounds_for_average():
    x = -np.ones((1, 3, 3, 1), np.float32)     # all negative: a zero pad would win max
    assert P.max_pool(x, 2, 2, "same").max() == -1.0
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    y = P.average_pool(x, 2, 2, "same")
    assert y[0, 1, 1, 0] == 8.0                  # 1 in-bounds element, not 8/4
    assert y[0, 0, 1, 0] == (2 + 5) / 2


def test_1d_layers_match_2d_reference():
    x = rng.standard_normal((2, 11, 3)).astype(np.float32)
    for layer, mode in [(L.MaxPooling1D(3, 2, "same"), "max"), (L.AveragePooling1D(3, 2, "same"), "average")]:
        y = layer(x, training=True)
        y_ref, _ = ref.pool2d(x[:, None].astype(np.float64), (1, 3), (1, 2), "same", mode)
        np.testing.assert_allclose(y, y_ref[:, 0], rtol=1e-6, atol=1e-6)
        assert layer.backward(np.ones_like(y)).shape == x.shape


def test_1d_max_backward_finite_differences():
    x = distinct((2, 9, 3))
    y, arg = P.max_pool(x, 3, 2, "valid", return_argmax=True)
    r = rng.standard_normal(y.shape)
    dx = P.max_pool_backward(r, arg, x.shape, 3, 2, "valid")
    np.testing.assert_allclose(dx, numeric_grad(lambda v: P.max_pool(v, 3, 2), x, r), atol=1e-7)


@pytest.mark.parametrize("cls,mode,nd", [(L.GlobalMaxPooling2D, "max", 2), (L.GlobalAveragePooling2D, "average", 2),
                                         (L.GlobalMaxPooling1D, "max", 1), (L.GlobalAveragePooling1D, "average", 1)])
def test_global_pooling(cls, mode, nd):
    shape = (3, 5, 4, 6) if nd == 2 else (3, 7, 6)
    x = distinct(shape).astype(np.float32)
    layer = cls()
    y = layer(x, training=True)
    axes = tuple(range(1, nd + 1))
    np.testing.assert_allclose(y, x.max(axis=axes) if mode == "max" else x.mean(axis=axes), rtol=1e-6)
    assert cls(keepdims=True)(x).shape == (3,) + (1,) * nd + (6,)
    r = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(r)
    if mode == "max":
        mask = x == x.max(axis=axes, keepdims=True)
        np.testing.assert_allclose(dx, mask * np.expand_dims(r, axes))
    else:
        np.testing.assert_allclose(dx, np.broadcast_to(np.expand_dims(r, axes), x.shape) / np.prod(shape[1:-1]),
                                   rtol=1e-6)


def test_layer_shapes_defaults_and_config():
    layer = L.MaxPooling2D()
    assert layer.pool_size == (2, 2) and layer.strides == (2, 2) and layer.padding == "valid"
    assert layer.compute_output_shape((None, 7, 5, 3)) == (None, 3, 2, 3)
    assert L.AveragePooling2D(3, 2, "same").compute_output_shape((None, 7, 5, 3)) == (None, 4, 3, 3)
    assert L.MaxPooling1D().compute_output_shape((None, 9, 4)) == (None, 4, 4)
    cfg = L.AveragePooling2D(pool_size=3, strides=(1, 2), padding="same").get_config()
    assert cfg["pool_size"] == (3, 3) and cfg["strides"] == (1, 2) and cfg["padding"] == "same"
    assert cfg["data_format"] == "channels_last"


def test_errors():
    with pytest.raises(ValueError, match=r"The `pool_size` argument must be a tuple of 2 integers"):
        L.MaxPooling2D(pool_size=0)
    with pytest.raises(ValueError, match=r"data_format='channels_last' only"):
        L.MaxPooling2D(data_format="channels_first")
    with pytest.raises(ValueError, match=r"The `padding` argument must be one of"):
        L.MaxPooling2D(padding="full")
    layer = L.MaxPooling2D(pool_size=(4, 4), name="pool_big")
    with pytest.raises(ValueError, match=r"Layer pool_big: computed output size would be non-positive.*\(None, 3, 5, 2\).*\(0, 1\)"):
        layer(np.zeros((1, 3, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r'layer "pool_rank".*expected ndim=4, found ndim=3'):
        L.MaxPooling2D(name="pool_rank")(np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"max_pool2d: pool size \(3, 3\) is larger than the input"):
        _core.max_pool2d_f32(np.zeros((1, 2, 2, 1), np.float32), (3, 3), (1, 1), "valid")
    with pytest.raises(ValueError, match=r"max_pool2d_scatter: expected `argmax` of shape \(1, 1, 1, 1\)"):
        _core.max_pool2d_scatter_f32(np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 2, 1, 1), np.int32),
                                     (2, 2), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match=r"outside \[0, H\*W=4\)"):
        _core.max_pool2d_scatter_f32(np.zeros((1, 1, 1, 1), np.float32), np.full((1, 1, 1, 1), 9, np.int32),
                                     (2, 2), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match=r"backward\(\) needs a preceding forward"):
        L.MaxPooling2D().backward(np.zeros((1, 1, 1, 1), np.float32))


# ---- unpooling (faltung additions) ------------------------------------------------------

def test_max_unpooling_places_values_at_argmax():
    x = distinct((2, 5, 6, 3)).astype(np.float32)
    pool = L.MaxPooling2D(pool_size=2, strides=2, padding="same")
    unpool = L.MaxUnpooling2D(pool)
    y = pool(x)
    up = unpool(y)
    assert up.shape == x.shape
    # Each pooled maximum sits where it came from; everything else is zero.
    np.testing.assert_array_equal(up[up != 0], x[up != 0])
    assert (up != 0).sum() == y.size
    np.testing.assert_array_equal(pool(up), y)


@pytest.mark.parametrize("pool_args", [dict(pool_size=2), dict(pool_size=3, strides=1, padding="same"),
                                       dict(pool_size=(2, 3), strides=(3, 2))], ids=["2x2", "3x3-s1-same", "2x3-s3x2"])
def test_max_unpooling_is_adjoint_of_pool_gradient_routing(pool_args):
    x = distinct((2, 7, 8, 3)).astype(np.float32)
    pool = L.MaxPooling2D(**pool_args)
    unpool = L.MaxUnpooling2D(pool)
    y = pool(x, training=True)
    a = rng.standard_normal(y.shape).astype(np.float32)
    up = unpool(a, training=True)
    np.testing.assert_allclose(up, pool.backward(a), rtol=0, atol=0)  # same routing
    b = rng.standard_normal(x.shape).astype(np.float32)
    # <unpool(a), b> == <a, unpool_backward(b)>
    np.testing.assert_allclose(np.sum(up * b), np.sum(a * unpool.backward(b)), rtol=1e-5)


def test_max_unpooling_without_partner_uses_top_left():
    x = rng.standard_normal((1, 2, 3, 2)).astype(np.float32)
    layer = L.MaxUnpooling2D(size=(2, 3))
    y = layer(x, training=True)
    assert y.shape == (1, 4, 9, 2)
    np.testing.assert_array_equal(y[:, ::2, ::3], x)
    assert np.count_nonzero(y) == np.count_nonzero(x)
    r = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(r), r[:, ::2, ::3])


def test_max_unpooling_errors():
    pool = L.MaxPooling2D(name="partner_pool")
    unpool = L.MaxUnpooling2D(pool, name="unpool_a")
    with pytest.raises(ValueError, match=r"partner pooling layer partner_pool must be built .*before"):
        unpool(np.zeros((1, 2, 2, 1), np.float32))
    pool.build((None, 4, 4, 1))
    with pytest.raises(ValueError, match=r"partner pooling layer partner_pool has not run forward yet"):
        unpool(np.zeros((1, 2, 2, 1), np.float32))
    pool(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"expected an input of shape \(1, 2, 2, 1\).*received shape \(1, 3, 2, 1\)"):
        unpool.forward(np.zeros((1, 3, 2, 1), np.float32))
    unpool.forward(np.zeros((1, 2, 2, 1), np.float32))
    with pytest.raises(ValueError, match=r"has not run forward since this layer's last call"):
        unpool.forward(np.zeros((1, 2, 2, 1), np.float32))
    with pytest.raises(ValueError, match=r"`pool` must be a MaxPooling2D layer instance"):
        L.MaxUnpooling2D(pool=L.AveragePooling2D())


def test_average_unpooling_spreads_evenly_and_is_adjoint_of_average_pooling():
    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    layer = L.AverageUnpooling2D(size=(2, 3))
    y = layer(x, training=True)
    np.testing.assert_allclose(y, np.repeat(np.repeat(x, 2, 1), 3, 2) / 6, rtol=1e-6)
    b = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(b), P.average_pool(b, (2, 3)), rtol=1e-6)
    np.testing.assert_allclose(np.sum(y * b), np.sum(x * P.average_pool(b, (2, 3))), rtol=1e-5)


def test_matches_torch_if_available():
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    np.testing.assert_allclose(P.max_pool(x, 3, 2), torch.nn.functional.max_pool2d(t, 3, 2).permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(P.average_pool(x, 3, 2), torch.nn.functional.avg_pool2d(t, 3, 2).permute(0, 2, 3, 1).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("bad", [-1, 16, 2**31 - 1])
def test_scatter_and_gather_reject_out_of_range_argmax(bad):
    from faltung import _core
    dy = np.ones((1, 2, 2, 3), np.float32)
    arg = np.zeros((1, 2, 2, 3), np.int32)
    arg[0, 1, 0, 2] = bad  # input is 4x4: valid indices are [0, 16)
    with pytest.raises(ValueError, match=rf"`argmax` holds index {bad} outside \[0, H\*W=16\)"):
        _core.max_pool2d_scatter_f32(dy, arg, (4, 4), (2, 2), (2, 2), "valid")
    with pytest.raises(ValueError, match=rf"`argmax` holds index {bad} outside \[0, H\*W=16\)"):
        _core.max_pool2d_gather_f32(np.ones((1, 4, 4, 3), np.float32), arg, (2, 2), (2, 2), "valid")
