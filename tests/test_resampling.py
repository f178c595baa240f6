"""UpSampling, ZeroPadding, Cropping: forward vs references, backward as adjoint, errors."""
import numpy as np
import pytest

import faltung.layers as L
from faltung.ops import resampling as R
from tests.reference import pooling as ref
from tests.reference.gradcheck import numeric_grad

rng = np.random.default_rng(1)


@pytest.mark.parametrize("shape,size", [((2, 3, 4, 2), (2, 2)), ((1, 5, 3, 3), (3, 2)), ((2, 1, 1, 4), (2, 3))],
                         ids=["N2-3x4-s2x2", "N1-5x3-s3x2", "N2-1x1-s2x3"])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling2d_forward_and_adjoint(shape, size, interpolation):
    x = rng.standard_normal(shape).astype(np.float32)
    layer = L.UpSampling2D(size=size, interpolation=interpolation)
    y = layer(x, training=True)
    assert y.shape == (shape[0], shape[1] * size[0], shape[2] * size[1], shape[3])
    if interpolation == "nearest":
        expected = np.repeat(np.repeat(x, size[0], 1), size[1], 2)
    else:
        expected = ref.resize_bilinear(x.astype(np.float64), *y.shape[1:3])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    b = rng.standard_normal(y.shape).astype(np.float32)
    # <up(x), b> == <x, up_backward(b)>
    np.testing.assert_allclose(np.sum(y.astype(np.float64) * b), np.sum(x.astype(np.float64) * layer.backward(b)),
                               rtol=1e-5)


def test_bilinear_known_values_half_pixel_centres():
    x = np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1)
    y = L.UpSampling2D(size=(1, 2), interpolation="bilinear")(x)
    # Output centres at 0.25-0.5 ... : src = (o + .5)/2 - .5 = -0.25, 0.25, 0.75, 1.25 -> clamped.
    np.testing.assert_allclose(y[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0])


def test_bilinear_backward_finite_differences():
    x = rng.standard_normal((1, 3, 2, 2))
    r = rng.standard_normal((1, 6, 6, 2))
    dx = R.upsample_backward(r, (2, 3), "bilinear")
    np.testing.assert_allclose(dx, numeric_grad(lambda v: R.upsample(v, (2, 3), "bilinear"), x, r), atol=1e-7)


def test_upsampling1d():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    layer = L.UpSampling1D(size=3)
    y = layer(x, training=True)
    np.testing.assert_array_equal(y, np.repeat(x, 3, axis=1))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy), dy.reshape(2, 3, 3, 4).sum(2), rtol=1e-6)
    assert layer.compute_output_shape((None, None, 4)) == (None, None, 4)


@pytest.mark.parametrize("padding,expected", [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))),
                                              (((1, 2), (3, 0)), ((1, 2), (3, 0)))], ids=["int", "pair", "pairs"])
def test_zero_padding2d_forms(padding, expected):
    x = rng.standard_normal((2, 3, 4, 2)).astype(np.float32)
    layer = L.ZeroPadding2D(padding)
    assert layer.padding == expected
    y = layer(x, training=True)
    (t, b), (l, r) = expected
    assert y.shape == (2, 3 + t + b, 4 + l + r, 2)
    np.testing.assert_array_equal(y[:, t:t + 3, l:l + 4], x)
    assert np.count_nonzero(y) == np.count_nonzero(x)
    np.testing.assert_array_equal(layer.backward(y), x)


@pytest.mark.parametrize("cropping,expected", [(1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))),
                                               (((0, 1), (2, 1)), ((0, 1), (2, 1)))], ids=["int", "pair", "pairs"])
def test_cropping2d_forms(cropping, expected):
    x = rng.standard_normal((2, 6, 5, 2)).astype(np.float32)
    layer = L.Cropping2D(cropping)
    assert layer.cropping == expected
    y = layer(x, training=True)
    (t, b), (l, r) = expected
    np.testing.assert_array_equal(y, x[:, t:6 - b, l:5 - r])
    dx = layer.backward(y)
    assert dx.shape == x.shape and np.sum(dx) == pytest.approx(np.sum(y))


def test_1d_padding_and_cropping():
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y = L.ZeroPadding1D((1, 2))(x)
    assert y.shape == (2, 8, 3) and np.all(y[:, :1] == 0) and np.all(y[:, 6:] == 0)
    c = L.Cropping1D((1, 2))
    z = c(x, training=True)
    np.testing.assert_array_equal(z, x[:, 1:3])
    assert c.backward(z).shape == x.shape
    assert L.ZeroPadding1D().padding == (1, 1) and L.Cropping1D(2).cropping == (2, 2)


def test_errors():
    with pytest.raises(ValueError, match=r"Argument `size` should be a positive integer. Received: size=0"):
        L.UpSampling1D(size=0)
    with pytest.raises(ValueError, match=r"interpolation='bicubic' is not implemented in faltung"):
        L.UpSampling2D(interpolation="bicubic")
    with pytest.raises(ValueError, match=r"The `size` argument must be a tuple of 2 integers"):
        L.UpSampling2D(size=(2, 2, 2))
    with pytest.raises(ValueError, match=r"`padding` should have two elements. Received: padding=\(1, 2, 3\)"):
        L.ZeroPadding2D((1, 2, 3))
    with pytest.raises(ValueError, match=r"The `padding` argument must be a tuple of 2 integers"):
        L.ZeroPadding1D((1, 2, 3))
    # found by the API fuzzer: a negative int reached np.pad ("index can't contain negative values")
    with pytest.raises(ValueError, match=r"Received padding=-1, including values \{-1\} that do not satisfy `value >= 0`"):
        L.ZeroPadding2D(-1)
    with pytest.raises(ValueError, match=r"`cropping` cannot be negative. Received: cropping=-1"):
        L.Cropping2D(-1)
    with pytest.raises(ValueError, match=r"Values in `cropping` argument should be smaller than the corresponding"):
        L.Cropping2D(((2, 2), (0, 0)))(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"`cropping` parameter of `Cropping1D` layer must be smaller than the input"):
        L.Cropping1D((3, 3))(np.zeros((1, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r'layer "up_rank".*expected ndim=4, found ndim=3'):
        L.UpSampling2D(name="up_rank")(np.zeros((1, 4, 2), np.float32))


def test_bilinear_matches_torch_if_available():
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    y = R.upsample(x, (2, 3), "bilinear")
    t = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), scale_factor=(2, 3),
                                        mode="bilinear", align_corners=False)
    np.testing.assert_allclose(y, t.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)
