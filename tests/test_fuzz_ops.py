"""Property-based fuzzing of every op family (issue 15): random shapes, strides, dilations,
paddings, dtypes, memory layouts (transposed storage, strided views) and NaN/inf inputs,
mostly valid and partly broken arguments. Each call either matches the float64 reference in
tests/reference/ or raises a ValueError/TypeError with a message; arguments the reference
accepts must not raise, and arguments it refuses must not be accepted.

The device-resident entry points (faltung._cuda_host's `resident`: the CUDA kernels over host
memory) are fuzzed the same way against the same references in the CUDA variant's run
(tools/check_cuda.sh: built with FALTUNG_CUDA); elsewhere they skip.

FALTUNG_FUZZ_EXAMPLES sets the examples per family (default 150; 10000 for the long run).
FALTUNG_FUZZ_REPORT=path appends the per-family counts (calls, matched, clear errors) as
JSON lines when the module finishes.
"""
import collections
import json
import math
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from faltung import _core, _device, ops  # noqa: E402
from faltung.ops import image  # noqa: E402
from faltung.ops import convolution, ctc, embedding, normalization, nn, pooling, resampling, rnn  # noqa: E402
from reference import conv as ref_conv  # noqa: E402
from reference import conv_transpose as ref_convt  # noqa: E402
from reference import ctc as ref_ctc  # noqa: E402
from reference import merging as ref_merge  # noqa: E402
from reference import image_transform as ref_image  # noqa: E402
from reference import nn as ref_nn  # noqa: E402
from reference import pooling as ref_pool  # noqa: E402
from reference import rnn as ref_rnn  # noqa: E402
from test_hardening_numerics import _expected as activation_expected  # noqa: E402

EXAMPLES = int(os.environ.get("FALTUNG_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
COUNTS = collections.defaultdict(collections.Counter)
DTYPES = st.sampled_from([np.float32, np.float32, np.float64, np.float64, np.float16, np.int32])
LAYOUTS = st.sampled_from(["contiguous", "contiguous", "transposed", "strided"])


def write_counts(module, key, counts):
    """Appends {module, key: name, examples, counts...} lines to $FALTUNG_FUZZ_REPORT, if set."""
    path = os.environ.get("FALTUNG_FUZZ_REPORT")
    if path:
        with open(path, "a") as f:
            for name, c in sorted(counts.items()):
                f.write(json.dumps({"module": module, key: name, "examples": EXAMPLES, **c}) + "\n")


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    write_counts("ops", "family", COUNTS)


# -- helpers ------------------------------------------------------------------------------

def kernel_dtype(x):
    """The dtype the kernels run in: float64 stays float64, everything else is float32."""
    return np.float64 if np.asarray(x).dtype == np.float64 else np.float32


def seen(a, dtype):
    """What the kernel sees: a rounded to its dtype, as float64 for the reference."""
    return np.asarray(a).astype(dtype).astype(np.float64)


def in_layout(x, layout):
    """x with the same values in another memory layout."""
    if layout == "transposed" and x.ndim >= 2:
        return np.ascontiguousarray(x.T).T  # Fortran-ordered storage
    if layout == "strided" and x.ndim >= 1:
        buf = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        buf[..., ::2] = x
        return buf[..., ::2]
    return x


@st.composite
def arrays(draw, shape, dtype=np.float64, special=True, scale=1.0):
    """A random array of shape in a random layout; with `special`, sometimes a few NaN/inf."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    x = rng.uniform(-scale, scale, shape)
    if np.dtype(dtype).kind == "i":
        x = np.round(x * 3)
    elif special and x.size and draw(st.integers(0, 4)) == 0:
        k = draw(st.integers(1, min(3, x.size)))
        x.flat[rng.choice(x.size, k, replace=False)] = rng.choice([np.nan, np.inf, -np.inf], k)
    return in_layout(x.astype(dtype), draw(LAYOUTS))


def attempt(family, valid, call):
    """Runs call(); a ValueError/TypeError is a clear error (it must carry a message, and the
    arguments must be ones the reference refuses); valid arguments must not raise. Returns the
    result, or None after a clear error."""
    COUNTS[family]["calls"] += 1
    try:
        result = call()
    except (ValueError, TypeError) as e:
        assert str(e).strip(), f"{family}: {type(e).__name__} without a message"
        if valid:
            raise AssertionError(f"{family}: valid arguments raised {type(e).__name__}: {e}") from e
        COUNTS[family]["clear errors"] += 1
        return None
    assert valid, f"{family}: invalid arguments were accepted and returned {type(result).__name__}"
    return result


def assert_close(family, got, want, bound, dtype, rtol=None, count=True, nan_strict=True):
    """got matches the float64 reference want: where want is finite within rtol * bound (the
    reference on |inputs|, the scale of the rounding error); where want is NaN got is NaN;
    where want is +-inf got is not finite (NaN can never be hidden). nan_strict=False when
    the reference's NaN may be an indeterminate form with a limit (relu(-inf) = 0 - 0 * inf)."""
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, f"{family}: shape {got.shape}, reference {want.shape}"
    rtol = rtol or (3e-4 if dtype == np.float32 else 1e-10)
    fin = np.isfinite(want)
    tol = rtol * (np.where(np.isfinite(bound), np.abs(bound), 0) + 1)
    with np.errstate(invalid="ignore"):
        bad = fin & ~(np.abs(got - want) <= tol)
    assert not bad.any(), (f"{family}: {bad.sum()} of {got.size} values differ, e.g. "
                           f"{got[bad][:4]} vs {want[bad][:4]}")
    assert not nan_strict or np.all(np.isnan(got[np.isnan(want)])), f"{family}: a NaN of the reference was hidden"
    assert not np.isfinite(got[np.isinf(want)]).any(), f"{family}: an inf of the reference was hidden"
    COUNTS[family]["matched"] += count


def assert_adjoint(family, lhs, rhs, scale, dtype):
    """<dy, f(x)> == <f^T(dy), x> for a linear f, within the rounding of `scale`."""
    rtol = 1e-3 if dtype == np.float32 else 1e-9
    assert abs(lhs - rhs) <= rtol * (scale + 1), f"{family}: adjoint {lhs} != {rhs}"
    COUNTS[family]["backward matched"] += 1


def finite(*arrays_):
    return all(np.all(np.isfinite(np.asarray(a, np.float64))) for a in arrays_)


def spatial_sizes(xshape, kshape, strides, dilation, padding, rank):
    """Output sizes under the reference's rules, or None when it refuses the arguments."""
    out = []
    for n, k, s, d in zip(xshape[1:1 + rank], kshape[:rank], strides, dilation):
        if padding == "valid" and n < (k - 1) * d + 1:
            return None
        out.append(ref_conv.pads_1d(n, k, s, d, padding)[2])
    return out if min(out) >= 1 else None


# -- convolution: conv (all algorithms), depthwise, separable ---------------------------

CONV_ALGOS = ["auto", "reference", "im2col", "gemm1x1", "depthwise", "winograd", "phased", "direct"]


@st.composite
def conv_case(draw):
    rank = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(1, 3))
    spatial = [draw(st.integers(1, 9)) for _ in range(rank)]
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    k = groups * draw(st.integers(1, 3))
    ksize = [draw(st.integers(1, 4)) for _ in range(rank)]
    strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.sampled_from([1, 1, 1, 2, 3])) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same", "full"] + (["causal"] if rank == 1 else [])))
    breaker = draw(st.sampled_from([None] * 6 + ["stride", "dilation", "channels", "padding", "rank",
                                                 "kernel_rank", "dtype", "strides_len", "filters"]))
    xshape, kshape = [n, *spatial, groups * cg], [*ksize, cg, k]
    if breaker == "stride":
        strides = (draw(st.integers(-2, 0)),) + strides[1:]
    elif breaker == "dilation":
        dilation = dilation[:-1] + (draw(st.integers(-1, 0)),)
    elif breaker == "channels":
        xshape[-1] = groups * cg + draw(st.integers(1, 2)) if cg > 1 else xshape[-1]
        kshape[-2] = cg if cg > 1 else 0
    elif breaker == "padding":
        padding = draw(st.sampled_from(["causal", "SAME ", "reflect", 3]))
    elif breaker == "rank":
        xshape = xshape + [1] if rank == 2 else xshape[1:]
    elif breaker == "kernel_rank":
        kshape = kshape[1:]
    elif breaker == "strides_len":
        strides = strides + (1,)
    elif breaker == "filters":
        kshape[-1] = 0
    dtype = np.complex64 if breaker == "dtype" else draw(DTYPES)
    x = draw(arrays(tuple(xshape), np.float64 if breaker == "dtype" else dtype)).astype(dtype, copy=False)
    w = draw(arrays(tuple(kshape), np.float64, special=False))
    algo = draw(st.sampled_from(CONV_ALGOS))
    return rank, x, w, strides, dilation, padding, algo


def conv_valid(rank, x, w, strides, dilation, padding):
    if x.dtype.kind == "c" or x.ndim != rank + 2 or w.ndim != rank + 2 or len(strides) != rank:
        return None
    if padding not in ("valid", "same", "full") + (("causal",) if rank == 1 else ()):
        return None
    if min(strides) < 1 or min(dilation) < 1 or w.shape[-2] < 1 or w.shape[-1] < 1:
        return None
    c, cg, k = x.shape[-1], w.shape[-2], w.shape[-1]
    if c % cg or k % (c // cg):
        return None
    return spatial_sizes(x.shape, w.shape, strides, dilation, padding, rank)


@FUZZ
@given(conv_case())
def test_fuzz_conv(case):
    rank, x, w, strides, dilation, padding, algo = case
    valid = conv_valid(rank, x, w, strides, dilation, padding) is not None
    if valid and algo not in ("auto", "reference", "im2col"):
        valid = None  # a forced special-purpose algorithm may refuse the geometry (clearly)
    family = "conv"
    COUNTS[family]["calls"] += 1
    try:
        got, _ = convolution.conv_forward(x, w, None, strides, padding, None, dilation, algorithm=algo)
    except (ValueError, TypeError) as e:
        assert str(e).strip()
        assert valid is not True, f"conv: valid arguments raised {e!r} ({algo})"
        COUNTS[family]["clear errors"] += 1
        return
    assert valid is not False and conv_valid(rank, x, w, strides, dilation, padding) is not None, \
        f"conv accepted invalid arguments ({algo})"
    dt = kernel_dtype(x)
    xs, ws = seen(x, dt), seen(w, dt)
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref_conv.conv(xs, ws, None, strides, padding, dilation)
        bound = ref_conv.conv(np.abs(xs), np.abs(ws), None, strides, padding, dilation)
    assert_close(family, got, want, bound, dt, rtol=1e-3 if algo == "winograd" and dt == np.float32 else None)
    if finite(xs):
        check_linear_gradients(family, convolution.conv_backward, x, w, xs, ws, want, bound, dt,
                               strides, padding, dilation)


@st.composite
def pointwise_case(draw):
    """A 1x1 conv (groups 1) with filter counts that take the one-pass backward (conv.cpp
    pointwise_backward: K a multiple of the level's vector width) at every level, 8, 12 and 24
    taking it only at the narrower levels; NaN/inf inputs and strided layouts from `arrays`."""
    rank = draw(st.sampled_from([1, 2]))
    shape = [draw(st.integers(1, 3))] + [draw(st.integers(1, 12)) for _ in range(rank)]
    c = draw(st.integers(1, 24))
    k = draw(st.sampled_from([16, 32, 48, 64, 8, 12, 24]))
    dtype = draw(DTYPES)
    x = draw(arrays(tuple(shape + [c]), dtype))
    w = draw(arrays((1,) * rank + (c, k), np.float64, special=False))
    b = draw(arrays((k,), np.float64, special=False)) if draw(st.booleans()) else None
    dy = draw(arrays(tuple(shape + [k]), dtype))
    return x, w, b, dy, draw(st.sampled_from(["valid", "same"])), draw(st.sampled_from(["auto", "gemm1x1"]))


@FUZZ
@given(pointwise_case())
def test_fuzz_pointwise_conv(case):
    """The 1x1 forward (bias in the register tile) and all three gradients, each element against
    float64 numpy products, NaN and inf where the reference has them."""
    x, w, b, dy, padding, algo = case
    family = "pointwise conv"
    COUNTS[family]["calls"] += 1
    got, ran = convolution.conv_forward(x, w, b, 1, padding, None, 1, algorithm=algo)
    assert ran == "gemm1x1"
    dt = kernel_dtype(x)
    c, k = w.shape[-2:]
    x2, w2, dy2 = seen(x, dt).reshape(-1, c), seen(w, dt).reshape(c, k), seen(dy, dt).reshape(-1, k)
    bs = seen(b, dt) if b is not None else np.zeros(k)
    dx, dw, db = convolution.conv_backward(dy, x, w, 1, padding, None, 1, algorithm=algo)
    with np.errstate(invalid="ignore", over="ignore"):
        checks = [(got, x2 @ w2 + bs, np.abs(x2) @ np.abs(w2) + np.abs(bs)),
                  (dx, dy2 @ w2.T, np.abs(dy2) @ np.abs(w2.T)),
                  (dw, x2.T @ dy2, np.abs(x2.T) @ np.abs(dy2)),
                  (db, dy2.sum(0), np.abs(dy2).sum(0))]
    for g, want, bound in checks:
        assert_close(family, np.asarray(g).reshape(want.shape), want, bound, dt)


def check_linear_gradients(family, backward, x, w, xs, ws, want, bound, dt, strides, padding, dilation):
    """A forward linear in x and in the kernel w: <dx, x> = <dw, w> = <dy, y> (the adjoint
    identities), and the bias gradient is dy summed over all but the channels."""
    dy = np.random.default_rng(x.size).uniform(-1, 1, want.shape)
    dx, dw, db = backward(dy.astype(dt), x, w, strides, padding, None, dilation)
    scale = float(np.sum(np.abs(dy) * bound))
    assert_adjoint(family, float(np.sum(dx * xs)), float(np.sum(dy * want)), scale, dt)
    assert_adjoint(family, float(np.sum(dw * ws)), float(np.sum(dy * want)), scale, dt)
    np.testing.assert_allclose(db, dy.reshape(-1, dy.shape[-1]).sum(0), rtol=1e-4, atol=1e-4)


def draw_geometry(draw, rank, max_size, max_kernel=4):
    """(spatial sizes, kernel sizes, strides, dilations) of `rank` spatial dims."""
    spatial = [draw(st.integers(1, max_size)) for _ in range(rank)]
    ksize = [draw(st.integers(1, max_kernel)) for _ in range(rank)]
    strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    return spatial, ksize, strides, dilation


@st.composite
def depthwise_case(draw):
    rank = draw(st.sampled_from([1, 2]))
    # channels past the widest vector (16 floats) reach the kernels' vector blocks and tails;
    # kernels up to 5 wide and "full"/"causal" padding, pads wider than the row
    n, c, m = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 3, 4, 17, 20])), draw(st.integers(1, 3))
    spatial, ksize, strides, dilation = draw_geometry(draw, rank, 8, max_kernel=5)
    if max(strides) > 1:
        dilation = (1,) * rank  # Keras: strides > 1 and dilation > 1 are exclusive for depthwise
    padding = draw(st.sampled_from(["valid", "same", "full"] + (["causal"] if rank == 1 else [])))
    breaker = draw(st.sampled_from([None] * 5 + ["channels", "stride", "pointwise"]))
    dshape = [*ksize, c, m]
    pshape = [1] * rank + [c * m, draw(st.integers(1, 4))]
    if breaker == "channels":
        dshape[-2] = c + 1
    elif breaker == "stride":
        strides = (0,) * rank
    elif breaker == "pointwise":
        pshape[-2] = c * m + 1
    dtype = draw(DTYPES)
    x = draw(arrays((n, *spatial, c), dtype))
    dw = draw(arrays(tuple(dshape), np.float64, special=False))
    pw = draw(arrays(tuple(pshape), np.float64, special=False))
    separable = draw(st.booleans())
    return rank, x, dw, pw, strides, dilation, padding, separable


@FUZZ
@given(depthwise_case())
def test_fuzz_depthwise_and_separable_conv(case):
    rank, x, dw, pw, strides, dilation, padding, separable = case
    valid = (dw.shape[-2] == x.shape[-1] and min(strides) >= 1
             and spatial_sizes(x.shape, dw.shape, strides, dilation, padding, rank) is not None
             and (not separable or pw.shape[-2] == dw.shape[-2] * dw.shape[-1]))
    family = "separable_conv" if separable else "depthwise_conv"
    if separable:
        got = attempt(family, valid, lambda: ops.separable_conv(x, dw, pw, strides, padding, None, dilation))
    else:
        got = attempt(family, valid, lambda: ops.depthwise_conv(x, dw, strides, padding, None, dilation))
    if got is None:
        return
    dt = kernel_dtype(x)
    xs, dws, pws = seen(x, dt), seen(dw, dt), seen(pw, dt)
    with np.errstate(invalid="ignore", over="ignore"):
        if separable:
            want = ref_conv.separable_conv(xs, dws, pws, None, strides, padding, dilation)
            bound = ref_conv.separable_conv(np.abs(xs), np.abs(dws), np.abs(pws), None, strides, padding, dilation)
        else:
            want = ref_conv.depthwise_conv(xs, dws, None, strides, padding, dilation)
            bound = ref_conv.depthwise_conv(np.abs(xs), np.abs(dws), None, strides, padding, dilation)
    assert_close(family, got, want, bound, dt)
    if not separable and finite(xs):
        check_linear_gradients(family, convolution.depthwise_conv_backward, x, dw, xs, dws, want, bound, dt,
                               strides, padding, dilation)


# -- transposed convolution -------------------------------------------------------------

@st.composite
def conv_transpose_case(draw):
    rank = draw(st.sampled_from([1, 2]))
    n, ci, f = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    spatial, ksize, strides, dilation = draw_geometry(draw, rank, 6)
    padding = draw(st.sampled_from(["valid", "same"]))
    output_padding = draw(st.one_of(st.none(), st.tuples(*[st.integers(0, 2)] * rank)))
    breaker = draw(st.sampled_from([None] * 5 + ["channels", "stride", "rank", "output_padding"]))
    kshape = [*ksize, f, ci]
    if breaker == "channels":
        kshape[-1] = ci + 1
    elif breaker == "stride":
        strides = (0,) + strides[1:]
    elif breaker == "rank":
        kshape = kshape[1:]
    elif breaker == "output_padding":
        output_padding = (-1,) * rank
    dtype = draw(DTYPES)
    x = draw(arrays((n, *spatial, ci), dtype))
    w = draw(arrays(tuple(kshape), np.float64, special=False))
    algo = draw(st.sampled_from(["auto", "phased", "gemm", "reference"]))
    return rank, x, w, strides, padding, output_padding, dilation, algo


def conv_transpose_valid(rank, x, w, strides, padding, output_padding, dilation):
    if w.ndim != x.ndim or w.shape[-1] != x.shape[-1] or min(strides) < 1:
        return False
    if output_padding is not None and min(output_padding) < 0:
        return False  # output_padding >= strides: the layers refuse it (as Keras), the op computes it
    ops_ = output_padding or (None,) * rank
    return all(ref_convt.conv_transpose_length(n, k, s, padding, o, d) >= 1
               for n, k, s, o, d in zip(x.shape[1:-1], w.shape[:rank], strides, ops_, dilation))


@FUZZ
@given(conv_transpose_case())
def test_fuzz_conv_transpose(case):
    rank, x, w, strides, padding, output_padding, dilation, algo = case
    valid = conv_transpose_valid(rank, x, w, strides, padding, output_padding, dilation)
    got = attempt("conv_transpose", valid, lambda: ops.conv_transpose(
        x, w, strides, padding, output_padding, None, dilation, algorithm=algo))
    if got is None:
        return
    dt = kernel_dtype(x)
    xs, ws = seen(x, dt), seen(w, dt)
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref_convt.conv_transpose(xs, ws, strides, padding, output_padding, dilation)
        bound = ref_convt.conv_transpose(np.abs(xs), np.abs(ws), strides, padding, output_padding, dilation)
    assert_close("conv_transpose", got, want, bound, dt)


# -- pooling ----------------------------------------------------------------------------

@st.composite
def pool_case(draw):
    rank = draw(st.sampled_from([1, 2]))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    spatial = [draw(st.integers(1, 9)) for _ in range(rank)]
    pool = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    strides = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * rank)))
    padding = draw(st.sampled_from(["valid", "same"]))
    breaker = draw(st.sampled_from([None] * 5 + ["pool", "stride", "rank", "padding"]))
    shape = (n, *spatial, c)
    if breaker == "pool":
        pool = (draw(st.integers(-1, 0)),) + pool[1:]
    elif breaker == "stride":
        strides = (0,) * rank
    elif breaker == "rank":
        shape = shape[1:] if rank == 1 else shape + (1, 1)
    elif breaker == "padding":
        padding = "causal"
    x = draw(arrays(shape, draw(DTYPES), scale=5.0))
    mode = draw(st.sampled_from(["max", "average"]))
    return rank, x, pool, strides, padding, mode


@FUZZ
@given(pool_case())
def test_fuzz_pooling(case):
    rank, x, pool, strides, padding, mode = case
    s = pool if strides is None else strides
    valid = (x.ndim == rank + 2 and min(pool) >= 1 and min(s) >= 1 and padding in ("valid", "same")
             and (padding == "same" or all(n >= p for n, p in zip(x.shape[1:-1], pool))))
    family = f"{mode}_pool"
    fn = ops.max_pool if mode == "max" else ops.average_pool
    got = attempt(family, valid, lambda: fn(x, pool, strides, padding))
    if got is None:
        return
    dt = kernel_dtype(x)
    xs = seen(x, dt)
    x4 = xs[:, None] if rank == 1 else xs
    p2, s2 = ((1,) + pool, (1,) + s) if rank == 1 else (pool, s)
    with np.errstate(invalid="ignore"):
        want, _ = ref_pool.pool2d(x4, p2, s2, padding, mode)
        bound, _ = ref_pool.pool2d(np.abs(x4), p2, s2, padding, "max")
    want = want[:, 0] if rank == 1 else want
    bound = bound[:, 0] if rank == 1 else bound
    assert_close(family, got, want, bound, dt, rtol=1e-6 if dt == np.float32 else 1e-12)
    if finite(xs):
        dy = np.random.default_rng(x.size).uniform(-1, 1, want.shape).astype(dt)
        if mode == "max":
            _, arg = ops.max_pool(x, pool, strides, padding, return_argmax=True)
            dx = ops.max_pool_backward(dy, arg, x.shape, pool, strides, padding)
        else:
            dx = ops.average_pool_backward(dy, x.shape, pool, strides, padding)
        assert_adjoint(family, float(np.sum(dx * xs)), float(np.sum(dy * want)),
                       float(np.sum(np.abs(dy) * bound)), dt)


# -- resampling -------------------------------------------------------------------------

@st.composite
def resample_case(draw):
    n, h, w, c = (draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)),
                  draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["nearest", "bilinear", "resize"]))
    size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    breaker = draw(st.sampled_from([None] * 5 + ["size", "rank", "interpolation"]))
    shape = (n, h, w, c)
    if breaker == "size":
        size = (draw(st.integers(-3, 0)), size[1])
    elif breaker == "rank":
        shape = shape[1:]
    elif breaker == "interpolation" and kind != "resize":
        kind = "bicubic"
    x = draw(arrays(shape, draw(DTYPES), scale=5.0))
    return x, kind, size


@FUZZ
@given(resample_case())
def test_fuzz_resampling(case):
    x, kind, size = case
    valid = x.ndim == 4 and min(size) >= 1 and kind != "bicubic"
    family = "resize_bilinear" if kind == "resize" else f"upsample_{kind}" if valid else "upsample"
    if kind == "resize":
        out_hw = (size[0] * 2 - 1, size[1] + 2) if min(size) >= 1 else size
        got = attempt(family, valid, lambda: resampling.resize_bilinear(x, out_hw))
    else:
        got = attempt(family, valid, lambda: resampling.upsample(x, size, kind))
    if got is None:
        return
    dt = kernel_dtype(x)
    xs = seen(x, dt)
    with np.errstate(invalid="ignore"):
        if kind == "nearest":
            want = np.repeat(np.repeat(xs, size[0], 1), size[1], 2)
            bound = np.abs(want)
        else:
            oh, ow = out_hw if kind == "resize" else (x.shape[1] * size[0], x.shape[2] * size[1])
            want = ref_pool.resize_bilinear(xs, oh, ow)
            bound = ref_pool.resize_bilinear(np.abs(xs), oh, ow)
    assert_close(family, got, want, bound, dt, rtol=1e-5 if dt == np.float32 else None)
    if finite(xs):
        dy = np.random.default_rng(x.size).uniform(-1, 1, want.shape).astype(dt)
        if kind == "resize":
            dx = resampling.resize_bilinear_backward(dy, x.shape[1:3])
        else:
            dx = resampling.upsample_backward(dy, size, kind)
        assert_adjoint(family, float(np.sum(dx * xs)), float(np.sum(dy * want)),
                       float(np.sum(np.abs(dy) * bound)), dt)


# -- normalization ----------------------------------------------------------------------

@st.composite
def norm_case(draw):
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    axis = draw(st.integers(-ndim, ndim - 1))
    c = shape[axis]
    breaker = draw(st.sampled_from([None] * 5 + ["gamma", "axis"]))
    gshape = (c + 1,) if breaker == "gamma" else (c,)
    if breaker == "axis":
        axis = ndim + draw(st.integers(0, 2))
    x = draw(arrays(shape, draw(DTYPES), scale=3.0))
    gamma = draw(arrays(gshape, np.float64, special=False))
    beta = draw(arrays((c,), np.float64, special=False))
    mean = draw(arrays((c,), np.float64, special=False))
    var = np.abs(draw(arrays((c,), np.float64, special=False)))
    eps = draw(st.sampled_from([1e-3, 1e-5, 0.5]))
    training = draw(st.booleans())
    return x, axis, gamma, beta, mean, var, eps, training


@FUZZ
@given(norm_case())
def test_fuzz_normalization(case):
    x, axis, gamma, beta, mean, var, eps, training = case
    valid = -x.ndim <= axis < x.ndim and gamma.shape == beta.shape
    family = "batch_norm_train" if training else "batch_normalization"
    if training:
        res = attempt(family, valid, lambda: normalization.batch_norm_train(x, gamma, beta, eps, axis))
    else:
        res = attempt(family, valid, lambda: ops.batch_normalization(x, mean, var, axis, beta, gamma, eps))
    if res is None:
        return
    dt = kernel_dtype(x)
    xs, g, b = seen(x, dt), seen(gamma, dt), seen(beta, dt)
    xl = np.moveaxis(xs, axis, -1)
    with np.errstate(invalid="ignore"):
        if training:
            want, m, v = ref_pool.batch_norm_train(xl, g, b, eps)
            got = np.moveaxis(res[0], axis, -1)
            assert_close(family, res[1], m, np.abs(xl).max(axis=tuple(range(xl.ndim - 1))), dt, count=False)
            assert_close(family, res[2], v, v + np.abs(m) ** 2, dt, rtol=1e-3 if dt == np.float32 else None,
                         count=False)
        else:
            want = (xl - seen(mean, dt)) / np.sqrt(seen(var, dt) + eps) * g + b
            got = np.moveaxis(res, axis, -1)
    bound = (np.abs(xl) + 3) * (np.abs(g) / math.sqrt(eps) + 1) + np.abs(b)
    assert_close(family, got, want, bound, dt, rtol=1e-3 if dt == np.float32 else 1e-8)


# -- dense ------------------------------------------------------------------------------

@st.composite
def dense_case(draw):
    lead = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 2))))
    fin, fout = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    breaker = draw(st.sampled_from([None] * 5 + ["kernel", "bias", "kernel_rank"]))
    kshape, bshape = (fin, fout), (fout,)
    if breaker == "kernel":
        kshape = (fin + 1, fout)
    elif breaker == "bias":
        bshape = (fout + 1,)
    elif breaker == "kernel_rank":
        kshape = (fin,)
    x = draw(arrays(lead + (fin,), draw(DTYPES), scale=3.0))
    w = draw(arrays(kshape, np.float64, special=False))
    b = draw(st.one_of(st.none(), arrays(bshape, np.float64, special=False)))
    return x, w, b


@FUZZ
@given(dense_case())
def test_fuzz_dense(case):
    x, w, b = case
    valid = w.ndim == 2 and w.shape[0] == x.shape[-1] and (b is None or b.shape == (w.shape[1],))
    got = attempt("dense", valid, lambda: ops.dense(x, w, b))
    if got is None:
        return
    dt = kernel_dtype(x)
    xs, ws = seen(x, dt), seen(w, dt)
    bs = None if b is None else seen(b, dt)
    with np.errstate(invalid="ignore"):
        want = ref_nn.dense(xs, ws, bs)
        bound = ref_nn.dense(np.abs(xs), np.abs(ws), None if bs is None else np.abs(bs))
    assert_close("dense", got, want, bound, dt)
    if finite(xs):
        dy = np.random.default_rng(x.size).uniform(-1, 1, want.shape).astype(dt)
        dx, dk, db = nn.dense_backward(dy, x, w)
        lin = want - (0 if bs is None else bs)
        scale = float(np.sum(np.abs(dy) * bound))
        assert_adjoint("dense", float(np.sum(dx * xs)), float(np.sum(dy * lin)), scale, dt)
        assert_adjoint("dense", float(np.sum(dk * ws)), float(np.sum(dy * lin)), scale, dt)


# -- activations, softmax ---------------------------------------------------------------

ACTIVATION_CASES = [(name, {}) for name in ref_nn.ELEMENTWISE] + [
    ("relu", {"negative_slope": 0.3}), ("relu", {"max_value": 6.0, "threshold": 0.5}),
    ("elu", {"alpha": 0.7})]
SMOOTH = {"sigmoid", "tanh", "softplus", "softsign", "gelu", "gelu_approximate", "silu", "exponential", "mish",
          "linear", "elu", "selu", "relu", "hard_sigmoid", "hard_silu"}
KINKS = np.array([0.0, 0.5, 6.0, -3.0, 3.0])


@st.composite
def activation_case(draw):
    shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 3))))
    scale = draw(st.sampled_from([1.0, 10.0, 100.0, 1e30]))
    x = draw(arrays(shape, draw(DTYPES), scale=scale))
    name, params = draw(st.sampled_from(ACTIVATION_CASES + [("swishy", {})]))
    return x, name, params


@FUZZ
@given(activation_case())
def test_fuzz_activations(case):
    x, name, params = case
    kname = "gelu" if name == "gelu_approximate" else name
    kparams = {"alpha": 0.0} if name == "gelu_approximate" else params  # alpha selects the tanh form
    valid = name in ref_nn.ELEMENTWISE
    if name.startswith("gelu"):
        fn = lambda: nn.gelu(x, approximate=name == "gelu_approximate")  # noqa: E731
    else:
        fn = lambda: nn.activation(kname, x, **kparams)  # noqa: E731
    got = attempt("activations", valid, fn)
    if got is None:
        return
    dt = kernel_dtype(x)
    with np.errstate(all="ignore"):
        want = activation_expected(name, params, np.asarray(x).astype(dt))
        want_dt = want.astype(dt).astype(np.float64)  # overflow to inf in the kernel's dtype
    tiny = 1e-30 if dt == np.float32 else 1e-300
    rtol = 1e-5 if dt == np.float32 else 1e-12
    got64 = np.asarray(got, np.float64)
    fin = np.isfinite(want_dt)
    # plus a few ulps of |x|: 0.5 x (1 + tanh(u)) cancels in the tail (gelu_approximate(-4.77)
    # in float32 is -1.137e-6 against -1.036e-6, as in Keras's own float32 formula)
    ulps = 4 * np.finfo(dt).eps * np.abs(np.where(np.isfinite(x), x, 0).astype(np.float64))
    ok = np.abs(got64 - want_dt) <= rtol * np.abs(want_dt) + tiny + ulps
    assert np.all(ok | ~fin), f"{name}{params}: {got64[~ok & fin][:4]} vs {want_dt[~ok & fin][:4]}"
    assert np.array_equal(np.isnan(got64), np.isnan(want_dt)), f"{name}{params}: NaN positions differ"
    assert np.array_equal(got64[np.isinf(want_dt)], want_dt[np.isinf(want_dt)]), f"{name}{params}: inf differs"
    COUNTS["activations"]["matched"] += 1
    if dt == np.float64 and name in SMOOTH:
        xs = np.asarray(x, np.float64)
        usable = np.isfinite(xs) & (np.abs(xs) < 50) & (np.min(np.abs(xs[..., None] - KINKS), -1) > 1e-3)
        h = 1e-6
        with np.errstate(all="ignore"):
            numeric = (activation_expected(name, params, xs + h) - activation_expected(name, params, xs - h)) / (2 * h)
        dy = np.ones_like(xs)
        if name.startswith("gelu"):
            dx = nn.gelu_backward(dy, xs, approximate=name == "gelu_approximate")
        else:
            dx = nn.activation_backward(kname, dy, xs, got, **kparams)
        np.testing.assert_allclose(dx[usable], numeric[usable], rtol=1e-5, atol=1e-6, err_msg=name)
        COUNTS["activations"]["backward matched"] += 1


@st.composite
def softmax_case(draw):
    shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 3))))
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    x = draw(arrays(shape, draw(DTYPES), scale=draw(st.sampled_from([1.0, 50.0, 1e30]))))
    return x, axis, draw(st.booleans())


@FUZZ
@given(softmax_case())
def test_fuzz_softmax(case):
    x, axis, log = case
    valid = -x.ndim <= axis < x.ndim
    family = "log_softmax" if log else "softmax"
    got = attempt(family, valid, lambda: (nn.log_softmax if log else nn.softmax)(x, axis))
    if got is None:
        return
    dt = kernel_dtype(x)
    with np.errstate(all="ignore"):
        want = (ref_nn.log_softmax if log else ref_nn.softmax)(seen(x, dt), axis)
        bound = np.abs(want) + (np.abs(np.max(np.where(np.isfinite(seen(x, dt)), np.abs(seen(x, dt)), 0), axis,
                                              keepdims=True)) if log else 0)
    # A row with +inf is indeterminate (inf - inf): the reference gives NaN for the whole row,
    # faltung the limit where there is one (log_softmax([1, inf]) = [-inf, NaN]). What must
    # hold: such a row is not all finite, and every other row matches.
    nan_rows = np.isnan(want).any(axis=axis, keepdims=True)
    assert not np.all(np.isfinite(got), axis=axis, keepdims=True)[nan_rows].any(), f"{family}: NaN row hidden"
    keep = np.broadcast_to(~nan_rows, want.shape)
    assert_close(family, np.where(keep, got, np.nan), np.where(keep, want, np.nan), bound, dt,
                 rtol=1e-5 if dt == np.float32 else 1e-12)


# -- embedding --------------------------------------------------------------------------

@st.composite
def embedding_case(draw):
    v, d = draw(st.integers(1, 8)), draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(0, 4)) for _ in range(draw(st.integers(0, 3))))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    idx = rng.integers(0, v, shape)
    breaker = draw(st.sampled_from([None] * 4 + ["high", "negative", "nan", "string", "huge"]))
    kind = draw(st.sampled_from(["int32", "int64", "uint8", "float32", "bool"]))
    if kind == "bool":
        idx = idx % 2
    if idx.size and breaker == "high":
        idx.flat[0] = v
    elif idx.size and breaker == "negative":
        idx.flat[-1] = -1
    elif breaker == "huge":
        idx = np.full(shape or (1,), 2 ** 32 + 1, np.int64)
        kind = "int64"
    idx = idx.astype(kind if kind != "uint8" or idx.min(initial=0) >= 0 else "int64")
    if breaker == "nan" and kind == "float32" and idx.size:
        idx.flat[0] = np.nan
    if breaker == "string":
        idx = idx.astype(str)
    table = draw(arrays((v, d), draw(DTYPES)))
    return in_layout(idx, draw(LAYOUTS)), table


@FUZZ
@given(embedding_case())
def test_fuzz_embedding(case):
    idx, table = case
    valid = idx.dtype.kind in "biuf" and (idx.size == 0 or (np.all(np.isfinite(idx))
                                                            and 0 <= idx.min() and np.trunc(idx.max()) < len(table)))
    got = attempt("embedding", valid, lambda: ops.embedding(idx, table))
    if got is None:
        return
    dt = kernel_dtype(table)
    want = seen(table, dt)[np.trunc(idx.astype(np.float64)).astype(np.int64)]
    assert got.shape == want.shape
    assert np.array_equal(np.asarray(got, np.float64), want, equal_nan=True)
    COUNTS["embedding"]["matched"] += 1


# -- image affine transform (ImageDataGenerator, RandomRotation/Translation/Zoom) ------------

@st.composite
def affine_case(draw):
    n, h, w, c = (draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)),
                  draw(st.integers(1, 3)))
    breaker = draw(st.sampled_from([None] * 6 + ["rank", "matrices", "nan", "interpolation", "fill"]))
    x = draw(arrays((n, h, w, c) if breaker != "rank" else (h, w, c), draw(DTYPES), scale=4.0))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    m = np.concatenate([rng.uniform(-1.5, 1.5, (n, 2, 2)), rng.uniform(-3, 3, (n, 2, 1))], axis=2)
    if breaker == "matrices":
        m = m[:, :, :2]
    elif breaker == "nan":
        m[0, 1, 2] = np.nan
    interpolation = "bicubic" if breaker == "interpolation" else draw(st.sampled_from(sorted(image.INTERPOLATION_ORDERS)))
    fill = "edge" if breaker == "fill" else draw(st.sampled_from(image.SCIPY_FILL_MODES))
    return x, m, interpolation, fill, draw(st.floats(-2, 2)), breaker


@FUZZ
@given(affine_case())
def test_fuzz_affine_transform(case):
    x, m, interpolation, fill, cval, breaker = case
    got = attempt("affine_transform", breaker is None,
                  lambda: image.affine_transform(x, m, interpolation, fill, cval))
    if got is None:
        return
    dt = kernel_dtype(x)
    want = ref_image.affine_transform(seen(x, dt), m, image.INTERPOLATION_ORDERS[interpolation], fill, cval)
    # a tap of weight 0 on an inf/NaN may make NaN in one and not the other (0 * inf)
    assert_close("affine_transform", got, want, np.max(np.abs(np.nan_to_num(seen(x, dt))), initial=0) + abs(cval),
                 dt, nan_strict=False)


# -- RNN: SimpleRNN, LSTM, GRU forward and backward -------------------------------------

RNN_ACTIVATIONS = ["tanh", "sigmoid", "relu", "softsign", "hard_sigmoid", "linear", "swish"]
SMOOTH_RNN = {"tanh", "sigmoid", "softsign", "linear", "swish"}
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


@st.composite
def rnn_case(draw, lanes=False):
    """lanes: LSTM calls that the lanes forward takes (cpp/src/rnn_lanes.cpp: batches of 16 to 40,
    mostly Keras's activations, no mask, float32) once the test lowers the row-split limit."""
    cell = "lstm" if lanes else draw(st.sampled_from(sorted(GATES)))
    b, t, f, u = (draw(st.integers(16, 40) if lanes else st.integers(1, 3)), draw(st.integers(1, 5)),
                  draw(st.integers(0 if lanes else 1, 4)), draw(st.integers(1, 20 if lanes else 4)))
    g = GATES[cell]
    reset_after = draw(st.booleans())
    bshape = (2, g * u) if cell == "gru" and reset_after else (g * u,)
    breaker = draw(st.sampled_from([None] * 6 + ["kernel", "recurrent", "bias", "mask", "activation", "rank"]))
    xshape, kshape, rshape, mshape = (b, t, f), (f, g * u), (u, g * u), (b, t)
    act = draw(st.sampled_from(["tanh"] * 6 + RNN_ACTIVATIONS if lanes else RNN_ACTIVATIONS))
    if breaker == "kernel":
        kshape = (f + 1, g * u)
    elif breaker == "recurrent":
        rshape = (u, g * u + 1)
    elif breaker == "bias":
        bshape = (g * u + 2,)
    elif breaker == "mask":
        mshape = (b, t + 1)
    elif breaker == "activation":
        act = "gelu_tanh_typo"
    elif breaker == "rank":
        xshape = (b, t)
    dtype = draw(st.sampled_from([np.float32] * 3 + [np.float64, np.float16]) if lanes else DTYPES)
    x = draw(arrays(xshape, dtype, special=draw(st.integers(0, 3)) == 0))
    kernel = draw(arrays(kshape, np.float64, special=False))
    rec = draw(arrays(rshape, np.float64, special=False))
    bias = draw(st.one_of(st.none(), arrays(bshape, np.float64, special=False)))
    h0 = draw(st.one_of(st.none(), arrays((b, u), np.float64, special=False)))
    c0 = draw(st.one_of(st.none(), arrays((b, u), np.float64, special=False))) if cell == "lstm" else None
    masks = [None] * (3 if lanes else 1) + [np.random.default_rng(x.size).random(mshape) < 0.7]
    mask = draw(st.sampled_from(masks))
    opts = dict(go_backwards=draw(st.booleans()), zero_output_for_mask=draw(st.booleans()), activation=act)
    if cell != "simple_rnn":
        opts["recurrent_activation"] = draw(st.sampled_from(["sigmoid"] * (6 if lanes else 1) + ["hard_sigmoid", "tanh"]))
    if cell == "gru":
        opts["reset_after"] = reset_after
    return cell, x, kernel, rec, bias, h0, c0, mask, opts


def rnn_valid(cell, x, kernel, rec, bias, mask, opts):
    g, u = GATES[cell], rec.shape[0]
    bshape = (2, g * u) if cell == "gru" and opts.get("reset_after") else (g * u,)
    return (x.ndim == 3 and kernel.shape == (x.shape[2], g * u) and rec.shape == (u, g * u)
            and (bias is None or bias.shape == bshape) and (mask is None or mask.shape == x.shape[:2])
            and opts["activation"] in RNN_ACTIVATIONS)


def rnn_call(cell, x, kernel, rec, bias, h0, c0, mask, opts, training=False):
    """-> (outputs tuple, saved): faltung's forward for `cell` in one signature."""
    fn = {"simple_rnn": rnn.simple_rnn_forward, "lstm": rnn.lstm_forward, "gru": rnn.gru_forward}[cell]
    extra = {"c0": c0} if cell == "lstm" else {}
    res = fn(x, kernel, rec, bias, h0=h0, mask=mask, training=training, **extra, **opts)
    return res[:-1], res[-1]


@FUZZ
@given(rnn_case())
def test_fuzz_rnn(case):
    check_rnn_case(case)


@FUZZ
@given(rnn_case(lanes=True))
def test_fuzz_lstm_lanes(case):
    """The same checks on batches for the lanes forward, with the row-split limit lowered so that
    small LSTMs take it (at the avx512 level; elsewhere the packed panels run these calls)."""
    cell, x, kernel, rec, bias, h0, c0, mask, opts = case
    _core.rnn_set_row_split_bytes(1)
    try:
        if x.ndim == 3 and x.dtype == np.float32 and mask is None and rec.ndim == 2 and \
                (opts["activation"], opts["recurrent_activation"]) == ("tanh", "sigmoid") and \
                _core.lstm_forward_in_lanes(*x.shape, rec.shape[0]):
            COUNTS[cell]["lanes forward"] += 1
        check_rnn_case(case)
    finally:
        _core.rnn_set_row_split_bytes(0)


def check_rnn_case(case):
    cell, x, kernel, rec, bias, h0, c0, mask, opts = case
    valid = rnn_valid(cell, x, kernel, rec, bias, mask, opts)
    res = attempt(cell, valid, lambda: rnn_call(cell, x, kernel, rec, bias, h0, c0, mask, opts)[0])
    if res is None:
        return
    dt = kernel_dtype(x)
    args = [seen(a, dt) if a is not None else None for a in (x, kernel, rec, bias, h0, c0)]
    ref_fn = {"simple_rnn": ref_rnn.simple_rnn, "lstm": ref_rnn.lstm, "gru": ref_rnn.gru}[cell]
    extra = {"c0": args[5]} if cell == "lstm" else {}
    with np.errstate(all="ignore"):
        want = ref_fn(*args[:4], h0=args[4], mask=mask, **extra, **opts)
    rtol = 1e-4 if dt == np.float32 else 1e-10
    # the reference's relu, swish and softsign are NaN at -inf or +-inf (0 * inf, inf / inf);
    # the kernels give the limit
    strict = finite(args[0]) or not {"relu", "swish", "softsign"} & {opts["activation"], opts.get("recurrent_activation")}
    for i, (got_i, want_i) in enumerate(zip(res, want)):
        bound = np.abs(want_i) + 10.0 * x.shape[1]  # errors grow with the steps
        assert_close(cell, got_i, want_i, bound, dt, rtol=rtol, count=i == 0, nan_strict=strict)
    if dt == np.float64 and finite(*args[:1]) and opts["activation"] in SMOOTH_RNN \
            and opts.get("recurrent_activation", "sigmoid") in ("sigmoid", "tanh"):
        check_rnn_backward(cell, x, kernel, rec, bias, h0, c0, mask, opts)


def check_rnn_backward(cell, x, kernel, rec, bias, h0, c0, mask, opts):
    """The directional derivative of L = sum(G_i * output_i) along a random direction, by
    central differences of the forward, equals <grads, direction> from the backward."""
    rng = np.random.default_rng(x.size + kernel.size)
    b, u = x.shape[0], rec.shape[0]
    h0 = np.zeros((b, u)) if h0 is None else h0
    c0 = (np.zeros((b, u)) if c0 is None else c0) if cell == "lstm" else None
    params = [x, kernel, rec, bias, h0, c0]
    outs, saved = rnn_call(cell, *params, mask, opts, training=True)
    weights = [rng.uniform(-1, 1, o.shape) for o in outs]
    grads = {"simple_rnn": rnn.simple_rnn_backward, "gru": rnn.gru_backward,
             "lstm": rnn.lstm_backward}[cell](saved, *weights)
    direction = [None if p is None else rng.uniform(-1, 1, p.shape) for p in params]

    def loss(eps):
        moved = [None if p is None else p + eps * d for p, d in zip(params, direction)]
        return sum(float(np.sum(w * o)) for w, o in zip(weights, rnn_call(cell, *moved, mask, opts)[0]))

    numeric = (loss(1e-6) - loss(-1e-6)) / 2e-6
    analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, direction) if g is not None and d is not None)
    assert abs(numeric - analytic) <= 1e-5 * (1 + abs(numeric)), f"{cell} backward: {analytic} vs {numeric}"
    COUNTS[cell]["backward matched"] += 1


# -- CTC loss and decoding --------------------------------------------------------------

@st.composite
def ctc_case(draw):
    b, t, c = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(2, 5))
    blank = draw(st.sampled_from([0, c - 1]))
    s = draw(st.integers(1, min(4, t)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    labels = rng.integers(0, c - 1, (b, s))
    labels = np.where(labels >= blank, labels + 1, labels) if blank == 0 else labels
    label_len = rng.integers(0, s + 1, b)
    out_len = rng.integers(0, t + 1, b)
    breaker = draw(st.sampled_from([None] * 5 + ["label", "label_len", "out_len", "rank", "float_len"]))
    if breaker == "label":
        labels[0, 0] = draw(st.sampled_from([c, -1]))
        label_len[0] = s
    elif breaker == "label_len":
        label_len[-1] = draw(st.sampled_from([s + 1, -1]))
    elif breaker == "out_len":
        out_len[0] = draw(st.sampled_from([t + 1, -2]))
    elif breaker == "float_len":
        out_len = out_len + 0.5
    shape = (b, t, c) if breaker != "rank" else (b, t)
    logits = draw(arrays(shape, draw(DTYPES), special=draw(st.integers(0, 3)) == 0, scale=4.0))
    return logits, labels, label_len, out_len, blank


@FUZZ
@given(ctc_case())
def test_fuzz_ctc_loss(case):
    logits, labels, label_len, out_len, blank = case
    t = logits.shape[1]
    valid = (logits.ndim == 3 and labels.min() >= 0 and labels.max() < logits.shape[-1]
             and np.all(out_len == np.round(out_len)) and 0 <= label_len.min() and label_len.max() <= labels.shape[1]
             and 0 <= out_len.min() and out_len.max() <= t
             and label_len.max() <= t)  # faltung refuses labels longer than the time axis
    got = attempt("ctc_loss", valid, lambda: ops.ctc_loss(labels, logits, label_len, out_len, blank))
    if got is None:
        return
    dt = kernel_dtype(logits)
    with np.errstate(all="ignore"):
        want = ref_ctc.ctc_loss(seen(logits, dt), labels, label_len, out_len, blank)
    assert_close("ctc_loss", got, want, np.abs(want) + 10, dt, rtol=1e-5 if dt == np.float32 else 1e-10)


@st.composite
def decode_case(draw):
    b, t, c = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(2, 3))
    lengths = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1))).integers(0, t + 1, b)
    breaker = draw(st.sampled_from([None] * 5 + ["length", "strategy", "rank"]))
    strategy = draw(st.sampled_from(["greedy", "beam_search"]))
    if breaker == "length":
        lengths[0] = t + 1
    elif breaker == "strategy":
        strategy = "beam"
    shape = (b, t, c) if breaker != "rank" else (b, t, c, 1)
    x = draw(arrays(shape, draw(DTYPES), special=False, scale=3.0))
    return x, lengths, strategy, draw(st.sampled_from([0, None])), draw(st.booleans())


@FUZZ
@given(decode_case())
def test_fuzz_ctc_decode(case):
    x, lengths, strategy, mask_index, merge = case
    valid = x.ndim == 3 and lengths.max() <= x.shape[1] and strategy in ("greedy", "beam_search")
    family = f"ctc_decode_{strategy}" if valid else "ctc_decode"
    res = attempt(family, valid, lambda: ops.ctc_decode(x, lengths, strategy, beam_width=100,
                                                      merge_repeated=merge, mask_index=mask_index))
    if res is None:
        return
    decoded, scores = res
    dt = kernel_dtype(x)
    xs = seen(x, dt)
    blank = x.shape[2] - 1 if mask_index is None else mask_index
    for i in range(x.shape[0]):
        n = int(lengths[i])
        if strategy == "greedy":
            path = np.argmax(xs[i, :n], -1)
            want = ref_ctc.collapse(path, blank) if merge else [int(k) for k in path if k != blank]
            want_score = -float(np.sum(np.max(xs[i, :n], -1)))
        else:
            if n == 0:
                continue
            want, want_score, probs = ref_ctc.best_path_search(ref_ctc.softmax(xs[i, :n]), blank, n)
            top = sorted(probs.values())
            if len(top) > 1 and top[-2] >= top[-1] * (1 - 1e-6):
                want = None  # a tie (integer inputs): either sequence is right; the score still is
        row = [int(k) for k in decoded[0, i] if k >= 0]
        assert want is None or row == list(want), f"{family}: {row} vs {want}"
        assert abs(float(scores[i, 0]) - want_score) <= (1e-4 if dt == np.float32 else 1e-9) * (1 + abs(want_score))
    COUNTS[family]["matched"] += 1


# -- device-resident entry points (the CUDA variant: tools/check_cuda.sh) ------------------------

try:
    from faltung import _cuda_host as HOST  # the CUDA kernels run on the CPU, over host memory
except ImportError:
    HOST = None
RESIDENT = pytest.mark.skipif(HOST is None or _device._cuda_module() is None,
                              reason="the CUDA variant only (built with FALTUNG_CUDA: tools/check_cuda.sh)")
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def on_device(a):
    """a uploaded as it is (any dtype, any layout: the upload checks and copies it)."""
    return None if a is None else HOST.DeviceArray(a)


def one_float_dtype(*arrays_):
    """Whether the arrays (None skipped) share one dtype the device kernels run in."""
    dts = {a.dtype for a in arrays_ if a is not None}
    return len(dts) == 1 and dts <= set(FLOATS)


@st.composite
def resident_dense_case(draw):
    b, fin, fout = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    breaker = draw(st.sampled_from([None] * 5 + ["kernel", "bias", "rank", "kernel_rank", "dtype"]))
    xshape, kshape, bshape = (b, fin), (fin, fout), (fout,)
    if breaker == "kernel":
        kshape = (fin + 1, fout)
    elif breaker == "bias":
        bshape = (fout + 1,)
    elif breaker == "rank":
        xshape = (b, 1, fin)
    elif breaker == "kernel_rank":
        kshape = (fin,)
    dt = draw(DTYPES)
    wdt = draw(st.sampled_from([np.float32, np.float64])) if breaker == "dtype" else dt
    x = draw(arrays(xshape, dt, scale=3.0))
    w = draw(arrays(kshape, np.float64, special=False)).astype(wdt)
    bias = draw(st.one_of(st.none(), arrays(bshape, np.float64, special=False)))
    return x, w, None if bias is None else bias.astype(wdt), draw(st.sampled_from(["linear", "relu"]))


@RESIDENT
@FUZZ
@given(resident_dense_case())
def test_fuzz_resident_dense(case):
    x, w, b, act = case
    valid = (x.ndim == 2 and w.ndim == 2 and w.shape[0] == x.shape[1] and (b is None or b.shape == (w.shape[1],))
             and one_float_dtype(x, w, b))
    got = attempt("resident_dense", valid,
                  lambda: HOST.resident.dense_forward(on_device(x), on_device(w), on_device(b), act))
    if got is None:
        return
    y, z = got
    dt = x.dtype
    xs, ws, bs = seen(x, dt), seen(w, dt), None if b is None else seen(b, dt)
    with np.errstate(invalid="ignore"):
        want = ref_nn.dense(xs, ws, bs)
        bound = ref_nn.dense(np.abs(xs), np.abs(ws), None if bs is None else np.abs(bs))
    assert (z is None) == (act == "linear")
    if z is not None:
        assert_close("resident_dense", z.numpy(), want, bound, dt, count=False)
        want = np.where(want < 0, 0.0, want)  # relu keeps NaN
    assert_close("resident_dense", y.numpy(), want, bound, dt)


@st.composite
def resident_conv_case(draw):
    """conv2d_forward's explicit geometry: valid paddings and output sizes are drawn from their
    whole range (the output may end before or past the input's end), then maybe broken."""
    n, h, w, groups = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(
        st.sampled_from([1, 1, 2]))
    cg, k = draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2]))
    pt, pl = draw(st.integers(0, (kh - 1) * dh)), draw(st.integers(0, (kw - 1) * dw))
    oh, ow = draw(st.integers(1, (h - 1 + pt) // sh + 1)), draw(st.integers(1, (w - 1 + pl) // sw + 1))
    xshape, kshape, bshape = [n, h, w, groups * cg], [kh, kw, cg, k], (k,)
    breaker = draw(st.sampled_from([None] * 6 + ["stride", "dilation", "groups", "channels", "pad", "out", "rank",
                                                 "kernel_rank", "bias", "dtype"]))
    if breaker == "stride":
        sh = draw(st.integers(-1, 0))
    elif breaker == "dilation":
        dw = draw(st.integers(-1, 0))
    elif breaker == "groups":
        groups = draw(st.sampled_from([0, -1, 3]))
    elif breaker == "channels":
        xshape[-1] += 1
    elif breaker == "pad":
        pt = draw(st.sampled_from([-1, (kh - 1) * dh + 1]))
    elif breaker == "out":
        oh = draw(st.sampled_from([0, (h - 1 + pt) // sh + 2]))
    elif breaker == "rank":
        xshape = xshape[1:]
    elif breaker == "kernel_rank":
        kshape = kshape[1:]
    elif breaker == "bias":
        bshape = (k + 1,)
    dt = draw(DTYPES)
    x = draw(arrays(tuple(xshape), dt))
    kern = draw(arrays(tuple(kshape), np.float64, special=False)).astype(
        draw(st.sampled_from([np.float32, np.float64])) if breaker == "dtype" else dt)
    b = draw(st.one_of(st.none(), arrays(bshape, np.float64, special=False)))
    return x, kern, None if b is None else b.astype(kern.dtype), (sh, sw, pt, pl, oh, ow, dh, dw, groups)


def resident_conv_valid(x, w, b, geom):
    """The device conv's rules (check_conv2d_shape's, as the CPU kernels')."""
    sh, sw, pt, pl, oh, ow, dh, dw, groups = geom
    if x.ndim != 4 or w.ndim != 4 or groups < 1 or not one_float_dtype(x, w, b):
        return False
    (_, h, wd, c), (kh, kw, cg, k) = x.shape, w.shape
    if cg * groups != c or k % groups or (b is not None and b.shape != (k,)):
        return False
    if min(sh, sw, dh, dw, oh, ow) < 1:
        return False
    return (0 <= pt <= (kh - 1) * dh and 0 <= pl <= (kw - 1) * dw and (oh - 1) * sh - pt <= h - 1
            and (ow - 1) * sw - pl <= wd - 1)


@RESIDENT
@FUZZ
@given(resident_conv_case())
def test_fuzz_resident_conv2d(case):
    x, w, b, geom = case
    sh, sw, pt, pl, oh, ow, dh, dw, groups = geom
    valid = resident_conv_valid(x, w, b, geom)
    got = attempt("resident_conv2d", valid, lambda: HOST.resident.conv2d_forward(
        on_device(x), on_device(w), on_device(b), sh, sw, pt, pl, oh, ow, dh, dw, groups))
    if got is None:
        return
    dt = x.dtype
    xs, ws = seen(x, dt), seen(w, dt)
    h, wd, kh, kw = x.shape[1], x.shape[2], w.shape[0], w.shape[1]
    pads = ((pt, (oh - 1) * sh + (kh - 1) * dh + 1 - h - pt), (pl, (ow - 1) * sw + (kw - 1) * dw + 1 - wd - pl))
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref_conv.conv2d(xs, ws, None if b is None else seen(b, dt), (sh, sw), pads, (dh, dw), groups)
        bound = ref_conv.conv2d(np.abs(xs), np.abs(ws), None if b is None else np.abs(seen(b, dt)), (sh, sw), pads,
                                (dh, dw), groups)
    assert_close("resident_conv2d", got.numpy(), want, bound, dt)
    if finite(xs):
        dy = np.random.default_rng(x.size).uniform(-1, 1, want.shape).astype(dt)
        dx, dk, db = HOST.resident.conv2d_backward(on_device(dy), on_device(x), on_device(w), sh, sw, pt, pl, dh, dw,
                                                   groups)
        lin = want - (0 if b is None else seen(b, dt))
        scale = float(np.sum(np.abs(dy) * bound))
        assert_adjoint("resident_conv2d", float(np.sum(dx.numpy() * xs)), float(np.sum(dy * lin)), scale, dt)
        assert_adjoint("resident_conv2d", float(np.sum(dk.numpy() * ws)), float(np.sum(dy * lin)), scale, dt)
        np.testing.assert_allclose(db.numpy(), dy.reshape(-1, dy.shape[-1]).sum(0), rtol=1e-4, atol=1e-4)


MERGES = {"add": ref_merge.add, "subtract": ref_merge.subtract, "multiply": ref_merge.multiply,
          "average": ref_merge.average, "maximum": ref_merge.maximum, "minimum": ref_merge.minimum}


@st.composite
def resident_merge_case(draw):
    """Several inputs of one batch, each of the full shape or of lower rank and some sizes 1
    (Keras's merge broadcasting), maybe broken."""
    b = draw(st.integers(1, 3))
    full = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 3)))]
    shapes = []
    for _ in range(draw(st.integers(1, 3))):
        rank = draw(st.integers(0, len(full)))
        shapes.append([b] + [draw(st.sampled_from([d, d, 1])) for d in full[:rank]])
    breaker = draw(st.sampled_from([None] * 5 + ["batch", "size", "scalar", "empty", "dtype"]))
    dts = [draw(DTYPES)] * len(shapes)
    if breaker == "batch":
        shapes[-1][0] += 1
    elif breaker == "size" and len(shapes[-1]) > 1:
        shapes[-1][-1] = 4
    elif breaker == "scalar":
        shapes[-1] = []
    elif breaker == "empty":
        shapes = []
    elif breaker == "dtype":
        dts[-1] = draw(st.sampled_from([np.float32, np.float64]))
    xs = [draw(arrays(tuple(s), dt)) for s, dt in zip(shapes, dts)]
    return xs, draw(st.sampled_from(sorted(MERGES)))


def keras_broadcast(shapes):
    """The merge's output shape (Keras's rule: size-1 axes after the batch, then numpy's), or
    None when the shapes do not merge."""
    if not shapes or min(len(s) for s in shapes) < 1 or len({s[0] for s in shapes}) != 1:
        return None
    rank = max(len(s) for s in shapes)
    try:
        return np.broadcast_shapes(*[s[:1] + (1,) * (rank - len(s)) + s[1:] for s in shapes])
    except ValueError:
        return None


@RESIDENT
@FUZZ
@given(resident_merge_case())
def test_fuzz_resident_merge(case):
    xs, name = case
    valid = keras_broadcast([x.shape for x in xs]) is not None and one_float_dtype(*xs) and (
        name != "subtract" or len(xs) == 2)
    got = attempt("resident_merge", valid, lambda: HOST.resident.merge(name, [on_device(x) for x in xs]))
    if got is None:
        return
    dt = xs[0].dtype
    seen_xs = [seen(x, dt) for x in xs]
    with np.errstate(invalid="ignore", over="ignore"):
        want = MERGES[name](seen_xs)
        bound = ref_merge.add([np.abs(x) for x in seen_xs]) if name != "multiply" else np.abs(want)
    assert_close("resident_merge", got[0].numpy(), want, bound, dt)


@st.composite
def resident_concat_case(draw):
    """Inputs of one shape but along `axis` (sizes 0 to 3 there), maybe broken."""
    full = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 4)))]
    axis = draw(st.integers(-len(full), len(full) - 1))
    shapes = [full[:axis % len(full)] + [draw(st.integers(0, 3))] + full[axis % len(full) + 1:]
              for _ in range(draw(st.integers(1, 3)))]
    breaker = draw(st.sampled_from([None] * 5 + ["axis", "rank", "size", "empty", "dtype"]))
    dts = [draw(DTYPES)] * len(shapes)
    if breaker == "axis":
        axis = draw(st.sampled_from([len(full), -len(full) - 1]))
    elif breaker == "rank":
        shapes[-1] = shapes[-1] + [1]
    elif breaker == "size" and len(full) > 1:
        shapes[-1][(axis + 1) % len(full)] += 1
    elif breaker == "empty":
        shapes = []
    elif breaker == "dtype":
        dts[-1] = draw(st.sampled_from([np.float32, np.float64]))
    return [draw(arrays(tuple(s), dt)) for s, dt in zip(shapes, dts)], axis


@RESIDENT
@FUZZ
@given(resident_concat_case())
def test_fuzz_resident_concatenate(case):
    xs, axis = case
    shapes = [x.shape for x in xs]
    rank = len(shapes[0]) if shapes else 0
    valid = (bool(xs) and -rank <= axis < rank and all(len(s) == rank for s in shapes)
             and all(s[:axis % rank] + s[axis % rank + 1:] == shapes[0][:axis % rank] + shapes[0][axis % rank + 1:]
                     for s in shapes) and one_float_dtype(*xs))
    got = attempt("resident_concatenate", valid, lambda: HOST.resident.concatenate([on_device(x) for x in xs], axis))
    if got is None:
        return
    want = np.concatenate([seen(x, xs[0].dtype) for x in xs], axis)
    assert_close("resident_concatenate", got.numpy(), want, np.abs(want), xs[0].dtype)
