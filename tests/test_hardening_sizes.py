"""Sizes beyond what memory could hold are refused with a ValueError naming the layer or op
and the argument, before anything is allocated, instead of wrapping int64 (issue 15)."""
import numpy as np
import pytest

from faltung import layers
from faltung.ops.convolution_transpose import conv_transpose
from faltung.ops.pooling import max_pool
from faltung.ops.resampling import upsample

X = np.ones((1, 2, 2, 3), np.float32)


def test_upsampling_layer_refuses_a_huge_size():
    with pytest.raises(ValueError, match=r'Layer "up" \(UpSampling2D\).*beyond what memory could hold'
                                         r".*size=\(4611686018427387904, 4611686018427387904\)"):
        layers.UpSampling2D(2 ** 62, name="up")(X)


def test_conv_transpose_layer_refuses_a_huge_dilation():
    with pytest.raises(ValueError, match=r"\(Conv2DTranspose\).*beyond what memory could hold"
                                         r".*dilation_rate=\(4611686018427387904,"):
        layers.Conv2DTranspose(4, 3, dilation_rate=2 ** 62)(X)


def test_upsample_op_refuses_an_int64_overflow():
    # 2 * 2**62 wraps int64 to a negative size; today's answer was shape (1, 0, 0, 3)
    with pytest.raises(ValueError, match=r"upsample_nearest2d: output height H \* size\[0\] = "
                                         r"2 \* 4611686018427387904 is beyond what memory could hold"):
        upsample(X, (2 ** 62, 1))


def test_upsample_op_refuses_an_output_memory_cannot_hold():
    with pytest.raises(ValueError, match=r"allocation: the result's element count .* beyond"):
        upsample(X, (2 ** 23, 2 ** 23))


def test_conv_transpose_op_refuses_a_huge_dilation():
    k = np.ones((3, 3, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv_transpose: \(kernel_size - 1\) \* dilation_rate = "
                                         r"2 \* 4611686018427387904 is beyond"):
        conv_transpose(X, k, dilation_rate=2 ** 62)


def test_pooling_with_a_huge_pool_size_and_same_padding():
    # ceil(H / stride) and the padding no longer overflow: one window covers the image
    y = max_pool(X, pool_size=2 ** 62, strides=2 ** 62, padding="same")
    np.testing.assert_array_equal(y, np.ones((1, 1, 1, 3), np.float32))


def test_sizes_that_fit_still_work():
    assert layers.UpSampling2D(3)(X).shape == (1, 6, 6, 3)
    assert layers.Conv2DTranspose(4, 3, dilation_rate=2)(X).shape == (1, 6, 6, 4)
