"""What every ops module shares: the padding normalizer, the dtype rule and kernel lookup, and
module names that no exported function shadows."""
import importlib
import re

import numpy as np
import pytest

import faltung
from faltung import _core, ops
from faltung.ops import _kernels
from faltung.ops.argument_validation import standardize_padding


@pytest.mark.parametrize("value, kwargs, expected", [
    ("valid", {}, "valid"), ("SAME", {}, "same"), ("causal", dict(allow_causal=True), "causal"),
    ("Full", dict(allow_full=True), "full")])
def test_standardize_padding(value, kwargs, expected):
    assert standardize_padding(value, **kwargs) == expected


@pytest.mark.parametrize("value, kwargs, allowed", [
    ("causal", {}, "'valid', 'same'"), ("full", dict(allow_causal=True), "'valid', 'same', 'causal'"),
    ("causal", dict(allow_full=True), "'valid', 'same', 'full'"), ((1, 1), {}, "'valid', 'same'"),
    (None, {}, "'valid', 'same'")])
def test_standardize_padding_error_names_argument_expected_and_received(value, kwargs, allowed):
    msg = f"The `padding` argument must be one of {allowed}. Received: padding={value}"
    with pytest.raises(ValueError, match=re.escape(msg)):
        standardize_padding(value, **kwargs)


@pytest.mark.parametrize("call", [
    lambda: ops.conv(np.zeros((1, 4, 4, 1)), np.zeros((3, 3, 1, 1)), padding="causal"),
    lambda: ops.conv_transpose(np.zeros((1, 4, 4, 1)), np.zeros((3, 3, 1, 1)), padding="full"),
    lambda: ops.max_pool(np.zeros((1, 4, 4, 1)), 2, padding="full"),
    lambda: faltung.layers.Conv2D(1, 3, padding="causal"),
    lambda: faltung.layers.Conv2DTranspose(1, 3, padding="causal"),
    lambda: faltung.layers.MaxPooling2D(padding="causal")], ids=["conv", "conv_transpose", "max_pool",
                                                                  "Conv2D", "Conv2DTranspose", "MaxPooling2D"])
def test_every_family_words_a_bad_padding_the_same_way(call):
    with pytest.raises(ValueError, match=r"The `padding` argument must be one of 'valid', 'same'"):
        call()


def test_conv1d_takes_causal_conv2d_does_not():
    assert ops.conv(np.ones((1, 5, 1)), np.ones((3, 1, 1)), padding="causal").shape == (1, 5, 1)


@pytest.mark.parametrize("dtype, suffix", [(np.float32, "_f32"), (np.float64, "_f64"), (np.int64, "_f32"),
                                           (np.float16, "_f32")])
def test_dtype_rule_and_kernel_lookup(dtype, suffix):
    d = _kernels.dtype_of(np.zeros(2, dtype))
    assert d == (np.float64 if dtype == np.float64 else np.float32)
    assert _kernels.kernel_for("dense_forward", d) is getattr(_core, "dense_forward" + suffix)
    a = _kernels.as_array(np.zeros((2, 3), dtype).T, d)
    assert a.dtype == d and a.flags.c_contiguous


def test_modules_are_not_shadowed_by_functions():
    assert callable(ops.conv) and callable(ops.conv_transpose)
    for name in ("convolution", "convolution_transpose", "pooling", "normalization", "nn", "resampling"):
        module = importlib.import_module(f"faltung.ops.{name}")
        assert getattr(ops, name) is module
    assert ops.conv is ops.convolution.conv
    assert ops.conv_transpose is ops.convolution_transpose.conv_transpose


def test_matmul_and_dot_are_numpy_s_with_the_shapes_in_their_errors():
    rng = np.random.default_rng(0)
    a, b, batch = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=(5, 4, 2))
    assert np.array_equal(ops.matmul(a, b), a @ b) and np.array_equal(ops.dot(a, b), a.dot(b))
    assert np.array_equal(ops.matmul(batch, a), batch @ a)  # a batch of products
    assert np.array_equal(ops.matmul(a.tolist(), b), a @ b)  # lists, as keras.ops takes them
    for fn in (ops.matmul, ops.dot):
        with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(4, 3\) do not fit"):
            fn(a, b.T)
