"""The CUDA kernel bodies of the layer families (cpp/cuda/dense.cuh, elementwise.cuh,
normalization.cuh, merge.cuh and the optimizers beyond SGD/Adam in optim.cuh) held to their
oracles: faltung._core's CPU kernels, and the Python layers/optimizers where no CPU kernel
exists (the merge layers, BatchNormalization's moving update, Adamax, weight decay).

`impl` is faltung._cuda_host (the bodies over their whole grid x block index space on the
CPU; every run) and, when a GPU exists, faltung._cuda (skipped with the reason otherwise).
Shapes are odd and not multiples of the GEMM tile (16) or of BN's 32-channel blocks; `block`
32 makes the elementwise bodies span several blocks.
"""
import numpy as np
import pytest

from faltung import _core
from faltung.layers import (Add, Average, BatchNormalization, Concatenate, Maximum, Minimum,
                            Multiply, Subtract)
from faltung.optimizers import Adamax
from test_cuda_kernels import WITH_BLAS, _impl, close, sfx

DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])


@pytest.fixture(params=["host", "device"])
def impl(request):
    yield from _impl(request)


def fn(mod, name, dtype):
    return getattr(mod, name + sfx(dtype))


def rand(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# ---- GEMM and Dense ----------------------------------------------------------------------------

GEMM_SHAPES = [(1, 1, 1), (1, 17, 5), (19, 1, 33), (37, 23, 17), (16, 16, 16), (33, 50, 40), (5, 7, 0)]


@WITH_BLAS
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@DTYPES
def test_gemm_matches_numpy(impl, M, N, K, ta, tb, dtype):
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    A = rand(rng, (K, M) if ta else (M, K), dtype)
    B = rand(rng, (N, K) if tb else (K, N), dtype)
    C = rand(rng, (M, N), dtype)
    opA = A.T.astype(np.float64) if ta else A.astype(np.float64)
    opB = B.T.astype(np.float64) if tb else B.astype(np.float64)
    got = fn(impl, "gemm", dtype)(A, B, None, ta, tb)
    close(got, opA @ opB, dtype)
    got = fn(impl, "gemm", dtype)(A, B, C, ta, tb, alpha=-0.5, beta=2.0)
    close(got, -0.5 * (opA @ opB) + 2.0 * C, dtype)


@WITH_BLAS
def test_gemm_beta_zero_never_reads_c(impl):
    A, B = np.ones((3, 2)), np.ones((2, 5))
    C = np.full((3, 5), np.nan)  # BLAS's rule: with beta 0, C may hold anything
    np.testing.assert_array_equal(impl.gemm_f64(A, B, C, beta=0.0), np.full((3, 5), 2.0))


DENSE_SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 9), (3, 9, 1), (17, 33, 19), (40, 20, 35)]


@WITH_BLAS
@pytest.mark.parametrize("B,IN,OUT", DENSE_SHAPES)
@pytest.mark.parametrize("activation,params", [("linear", {}), ("relu", {}), ("gelu", {}),
                                               ("sigmoid", {}), ("relu", {"max_value": 6.0, "negative_slope": 0.1})])
@DTYPES
def test_dense_forward_matches_cpu(impl, B, IN, OUT, activation, params, dtype):
    rng = np.random.default_rng(B + IN + OUT)
    x, W, b = rand(rng, (B, IN), dtype), rand(rng, (IN, OUT), dtype, 0.5), rand(rng, (OUT,), dtype)
    for bias in (b, None):
        y, z = fn(impl, "dense_forward", dtype)(x, W, bias, activation, **params)
        z_cpu = fn(_core, "dense_forward", dtype)(x, W, bias)
        y_cpu = fn(_core, "activation", dtype)(activation, z_cpu, params.get("negative_slope", 0.0), 0.0,
                                               params.get("max_value"), 1.0)
        close(y, y_cpu, dtype)
        if activation == "linear":
            assert z is None
        else:
            close(z, z_cpu, dtype)


@WITH_BLAS
@pytest.mark.parametrize("B,IN,OUT", DENSE_SHAPES + [(0, 4, 3)])
@DTYPES
def test_dense_backward_matches_cpu(impl, B, IN, OUT, dtype):
    rng = np.random.default_rng(7 * B + IN + OUT)
    x, W, dy = rand(rng, (B, IN), dtype), rand(rng, (IN, OUT), dtype), rand(rng, (B, OUT), dtype)
    got = fn(impl, "dense_backward", dtype)(dy, x, W, block=32)
    ref = fn(_core, "dense_backward", dtype)(dy, x, W)
    for g, r in zip(got, ref):
        close(g, r, dtype)
    dx, dW, db = fn(impl, "dense_backward", dtype)(dy, x, W, need_dx=False, need_dkernel=True, need_dbias=False)
    assert dx is None and db is None
    close(dW, ref[1], dtype)


@WITH_BLAS
def test_dense_chain_with_activation_gradient(impl):
    """Forward with a fused x-reading activation, then the activation's backward on z and the
    dense backward: the gradient the layer computes, against finite differences."""
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    dy = rng.standard_normal((4, 3))

    def loss(W_):
        return float((impl.dense_forward_f64(x, W_, b, "silu")[0] * dy).sum())

    y, z = impl.dense_forward_f64(x, W, b, "silu")
    dz = impl.activation_backward_f64("silu", dy, z, y)
    _, dW, _ = impl.dense_backward_f64(dz, x, W)
    num = np.zeros_like(W)
    for i in np.ndindex(W.shape):
        e = np.zeros_like(W)
        e[i] = 1e-6
        num[i] = (loss(W + e) - loss(W - e)) / 2e-6
    np.testing.assert_allclose(dW, num, rtol=1e-6, atol=1e-8)


def test_dense_rejects_bad_shapes(impl):
    x, W = np.ones((3, 4)), np.ones((5, 2))
    with pytest.raises(ValueError, match=r"dense: expected `kernel` of shape \(4, units\), received \(5, 2\)"):
        impl.dense_forward_f64(x, W)
    with pytest.raises(ValueError, match=r"dense: expected `bias` of shape \(2\), received \(3,\)"):
        impl.dense_forward_f64(np.ones((3, 5)), W, np.ones(3))
    with pytest.raises(ValueError, match="Unknown activation kernel 'swoosh'"):
        impl.dense_forward_f64(np.ones((3, 5)), W, None, "swoosh")
    with pytest.raises(ValueError, match=r"dense_backward: expected `dy` of shape \(3, 2\), received \(3, 3\)"):
        impl.dense_backward_f64(np.ones((3, 3)), np.ones((3, 5)), W)
    with pytest.raises(ValueError, match="gemm: inner sizes differ"):
        impl.gemm_f64(np.ones((3, 4)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="gemm: beta != 0 needs `c`"):
        impl.gemm_f64(np.ones((3, 4)), np.ones((4, 2)), beta=1.0)
    with pytest.raises(ValueError, match=r"gemm: expected `c` of shape \(3, 2\)"):
        impl.gemm_f64(np.ones((3, 4)), np.ones((4, 2)), np.ones((2, 3)), beta=1.0)


# ---- activations -------------------------------------------------------------------------------

ACT_CASES = [(name, {}) for name in _core.activation_names()] + [
    ("relu", {"negative_slope": 0.2}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"negative_slope": 0.1, "threshold": 0.5, "max_value": 2.0}),
    ("elu", {"alpha": 0.7}),
]


def act_args(p):
    return (p.get("negative_slope", 0.0), p.get("threshold", 0.0), p.get("max_value"), p.get("alpha", 1.0))


def act_inputs(rng, dtype):
    x = rng.standard_normal(203) * 4  # odd N: several blocks of 32 and a partial one
    special = [0.0, -0.0, 1e-8, -1e-8, 3.0, -3.0, 0.5, 30.0, -30.0, 200.0, -200.0, 1e20, -1e20,
               np.inf, -np.inf, np.nan]
    return np.concatenate([x, special]).astype(dtype).reshape(3, -1)


@pytest.mark.parametrize("name,params", ACT_CASES, ids=[n + ("-" + "-".join(p) if p else "") for n, p in ACT_CASES])
@DTYPES
def test_activation_matches_cpu(impl, name, params, dtype):
    rng = np.random.default_rng(len(name))
    x = act_inputs(rng, dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = fn(impl, "activation", dtype)(name, x, *act_args(params), block=32)
    y_cpu = fn(_core, "activation", dtype)(name, x, *act_args(params))
    # float: the CPU's vectorized exp/tanh/erf approximations are ~1 ulp (erf 1.5e-7 absolute);
    # where gelu cancels (x/2 (1 + tanh(u)) for x << 0) that is an absolute error of ~eps |x|,
    # hence the absolute tolerance.
    with np.errstate(invalid="ignore"):
        close(y, y_cpu, dtype, rtol32=1e-5, atol32=5e-6)
        dx = fn(impl, "activation_backward", dtype)(name, dy, x, y_cpu, *act_args(params), block=32)
        dx_cpu = fn(_core, "activation_backward", dtype)(name, dy, x, y_cpu, *act_args(params))
        close(dx, dx_cpu, dtype, rtol32=1e-5, atol32=5e-6)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 5, 33), (4, 0)])
@DTYPES
def test_log_softmax_matches_cpu(impl, shape, dtype):
    rng = np.random.default_rng(sum(shape))
    x = rand(rng, shape, dtype, 3.0)
    if x.size:
        x.reshape(-1)[0] = -np.inf  # a -inf logit: -inf out, no NaN in its row
    y = fn(impl, "log_softmax", dtype)(x, block=32)
    close(y, fn(_core, "log_softmax", dtype)(x), dtype)
    dy = rand(rng, shape, dtype)
    yf = fn(_core, "log_softmax", dtype)(x)
    close(fn(impl, "log_softmax_backward", dtype)(dy, yf, block=32),
          fn(_core, "log_softmax_backward", dtype)(dy, yf), dtype)


def test_activation_rejects_bad_arguments(impl):
    with pytest.raises(ValueError, match="Unknown activation kernel 'relu7'"):
        impl.activation_f32("relu7", np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"activation_backward\(gelu\): expected `x` of shape \(3,\), received \(4,\)"):
        impl.activation_backward_f32("gelu", np.ones(3, np.float32), np.ones(4, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"activation_backward\(tanh\): expected `y` of shape"):
        impl.activation_backward_f32("tanh", np.ones(3, np.float32), np.ones(3, np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="expected `block` a multiple of 32"):
        impl.activation_f32("relu", np.ones(3, np.float32), block=33)


# ---- BatchNormalization ------------------------------------------------------------------------

BN_SHAPES = [(1, 1), (1, 7), (2, 3, 5, 7), (5, 3, 3, 40), (300, 3), (4, 1, 1, 65)]


@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@DTYPES
def test_batch_norm_train_matches_cpu(impl, shape, affine, dtype):
    rng = np.random.default_rng(sum(shape))
    C = shape[-1]
    x = (rand(rng, shape, dtype, 2.0) + 5).astype(dtype)  # an offset: the shifted sums matter
    gamma, beta = (rand(rng, (C,), dtype), rand(rng, (C,), dtype)) if affine else (None, None)
    mm, mv = rand(rng, (C,), dtype), rng.uniform(0.5, 2, C).astype(dtype)
    eps, momentum = 1e-3, 0.9
    y, mean, var, inv, mm2, mv2 = fn(impl, "batch_norm_train", dtype)(x, gamma, beta, mm, mv, eps, momentum,
                                                                      block=32)
    y_c, mean_c, var_c, inv_c = fn(_core, "batch_norm_train", dtype)(x, gamma, beta, eps)
    for a, b in ((y, y_c), (mean, mean_c), (var, var_c), (inv, inv_c)):
        close(a, b, dtype)
    m = dtype(momentum)  # the layer's arithmetic in the weights' dtype (numpy's weak scalars)
    close(mm2, mm * m + mean_c * (dtype(1) - m), dtype)
    close(mv2, mv * m + var_c * (dtype(1) - m), dtype)
    _, _, _, _, none1, none2 = fn(impl, "batch_norm_train", dtype)(x, gamma, beta, None, None, eps, momentum)
    assert none1 is None and none2 is None

    dy = rand(rng, shape, dtype)
    got = fn(impl, "batch_norm_backward", dtype)(dy, x, mean_c, inv_c, gamma, block=32)
    ref = fn(_core, "batch_norm_backward", dtype)(dy, x, mean_c, inv_c, gamma)
    for g, r in zip(got, ref):
        close(g, r, dtype, rtol32=5e-4, atol32=5e-5)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "x".join(map(str, s)))
@DTYPES
def test_batch_norm_inference_matches_layer_arithmetic(impl, shape, dtype):
    rng = np.random.default_rng(sum(shape) + 1)
    C = shape[-1]
    x, gamma, beta = rand(rng, shape, dtype), rand(rng, (C,), dtype), rand(rng, (C,), dtype)
    mm, mv, eps = rand(rng, (C,), dtype), rng.uniform(0.5, 2, C).astype(dtype), 1e-3
    y, inv = fn(impl, "batch_norm_inference", dtype)(x, gamma, beta, mm, mv, eps, block=32)
    inv_l = dtype(1) / np.sqrt(mv + dtype(eps))  # the layer's inference scale and shift
    scale = gamma * inv_l
    shift = -mm * scale + beta
    close(inv, inv_l, dtype)
    close(y, fn(_core, "channel_affine", dtype)(x, scale, shift), dtype)
    dy = rand(rng, shape, dtype)
    dx, dg, db = fn(impl, "batch_norm_backward", dtype)(dy, x, mm, inv, gamma, inference=True, block=32)
    axes = tuple(range(len(shape) - 1))
    close(dx, dy * scale, dtype)
    close(dg, (dy.astype(np.float64) * ((x - mm) * inv_l)).sum(axis=axes), dtype, rtol32=5e-4, atol32=5e-5)
    close(db, dy.astype(np.float64).sum(axis=axes), dtype, rtol32=5e-4, atol32=5e-5)


def test_batch_norm_matches_the_layer(impl):
    """One training step and one inference call of faltung's BatchNormalization layer (float32,
    NHWC): outputs, the moving statistics after the update, and the backward."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32) * 3 + 1
    layer = BatchNormalization(momentum=0.8, epsilon=1e-3)
    layer.build(x.shape)
    g, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    layer.set_weights([g, b, np.zeros(6, np.float32), np.ones(6, np.float32)])
    mm0, mv0 = layer.moving_mean.value.copy(), layer.moving_variance.value.copy()
    y_l = layer.forward(x, training=True)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx_l = layer.backward(dy)
    y, mean, _, inv, mm, mv = impl.batch_norm_train_f32(x, g, b, mm0, mv0, 1e-3, 0.8)
    close(y, y_l, np.float32)
    close(mm, layer.moving_mean.value, np.float32)
    close(mv, layer.moving_variance.value, np.float32)
    dx, dg, db = impl.batch_norm_backward_f32(dy, x, mean, inv, g)
    close(dx, dx_l, np.float32, rtol32=5e-4, atol32=5e-5)
    close(dg, layer.gamma.grad, np.float32, rtol32=5e-4, atol32=5e-5)
    close(db, layer.beta.grad, np.float32, rtol32=5e-4, atol32=5e-5)
    y_inf, _ = impl.batch_norm_inference_f32(x, g, b, layer.moving_mean.value, layer.moving_variance.value, 1e-3)
    close(y_inf, layer.forward(x, training=False), np.float32)


def test_batch_norm_empty_batch(impl):
    y, mean, var, inv, _, _ = impl.batch_norm_train_f64(np.zeros((0, 3)), None, None, None, None, 1e-3, 0.9)
    assert y.shape == (0, 3)
    np.testing.assert_array_equal(mean, 0)
    np.testing.assert_array_equal(var, 0)


def test_batch_norm_rejects_bad_arguments(impl):
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"batch_norm_train: expected `gamma` of shape \(3\), received \(4,\)"):
        impl.batch_norm_train_f64(x, np.ones(4), None, None, None, 1e-3, 0.9)
    with pytest.raises(ValueError, match="batch_norm_train: expected epsilon > 0"):
        impl.batch_norm_train_f64(x, None, None, None, None, 0.0, 0.9)
    with pytest.raises(ValueError, match=r"batch_norm_inference: expected `moving_variance` of shape \(3\)"):
        impl.batch_norm_inference_f64(x, None, None, np.ones(3), np.ones(2), 1e-3)
    with pytest.raises(ValueError, match=r"batch_norm_backward: expected `dy` of shape \(4, 3\), received \(3, 4\)"):
        impl.batch_norm_backward_f64(np.ones((3, 4)), x, np.ones(3), np.ones(3), None)
    with pytest.raises(ValueError, match="batch_norm_train: expected `x` of rank >= 1 with channels"):
        impl.batch_norm_train_f64(np.ones((4, 0)), None, None, None, None, 1e-3, 0.9)


# ---- merge layers ------------------------------------------------------------------------------

MERGE_LAYERS = {"add": Add, "subtract": Subtract, "multiply": Multiply, "average": Average,
                "maximum": Maximum, "minimum": Minimum}


def merge_inputs(rng, n, shape, dtype, ties):
    if ties:  # small integers: many ties between inputs
        return [rng.integers(-2, 3, size=shape).astype(dtype) for _ in range(n)]
    return [rand(rng, shape, dtype) for _ in range(n)]


@pytest.mark.parametrize("op", MERGE_LAYERS)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("shape,ties", [((1, 1), False), ((3, 7), True), ((2, 5, 9), False), ((4, 3, 3, 5), True)])
@DTYPES
def test_merge_matches_layer(impl, op, n, shape, ties, dtype):
    if op == "subtract" and n != 2:
        pytest.skip("Subtract takes exactly 2 inputs (its rejection of others is tested below)")
    rng = np.random.default_rng(n * 100 + len(shape))
    xs = merge_inputs(rng, n, shape, dtype, ties)
    layer = MERGE_LAYERS[op]()
    y_l = layer.forward(xs, training=True)
    dy = rand(rng, y_l.shape, dtype)
    dxs_l = layer.backward(dy)
    y, win = fn(impl, "merge", dtype)(op, xs, block=32)
    np.testing.assert_array_equal(y, y_l)  # the layer's order of operations: equal to the bit
    dxs = fn(impl, "merge_backward", dtype)(op, dy, xs, win, block=32)
    assert len(dxs) == n
    for g, r in zip(dxs, dxs_l):
        np.testing.assert_array_equal(g, r)


BROADCAST_CASES = [  # the shapes Keras's Merge accepts: right-aligned, size 1 broadcasts
    [(4, 3, 5), (4, 5)],
    [(4, 3, 5), (4, 1, 5), (4, 3, 1)],
    [(2, 1), (2, 6), (2, 6)],
    [(3, 2, 1, 4), (3, 5, 1), (3, 1)],
    [(1, 7), (1, 1)],
]


@pytest.mark.parametrize("op", MERGE_LAYERS)
@pytest.mark.parametrize("shapes", BROADCAST_CASES, ids=lambda s: "-".join("x".join(map(str, t)) for t in s))
@DTYPES
def test_merge_broadcasts_as_the_layer(impl, op, shapes, dtype):
    if op == "subtract":
        shapes = shapes[:2]
    rng = np.random.default_rng(len(shapes) * 7 + len(shapes[0]))
    xs = [merge_inputs(rng, 1, s, dtype, op in ("maximum", "minimum"))[0] for s in shapes]
    layer = MERGE_LAYERS[op]()
    y_l = layer.forward(xs, training=True)
    dy = rand(rng, y_l.shape, dtype)
    dxs_l = layer.backward(dy)
    y, win = fn(impl, "merge", dtype)(op, xs, block=32)
    np.testing.assert_array_equal(y, y_l)
    dxs = fn(impl, "merge_backward", dtype)(op, dy, xs, win, block=32)
    for g, r, s in zip(dxs, dxs_l, shapes):
        assert g.shape == s
        close(g, r, dtype)  # broadcast sums: row-major here, pairwise in numpy


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_extreme_merge_with_nan_and_ties(impl, op):
    a = np.array([[1.0, np.nan, 2.0, 3.0, -1.0]])
    b = np.array([[1.0, 0.0, np.nan, 3.0, -1.0]])
    c = np.array([[1.0, 5.0, 5.0, np.nan, -1.0]])
    layer = MERGE_LAYERS[op]()
    y_l = layer.forward([a, b, c], training=True)
    y, win = impl.merge_f64(op, [a, b, c])
    np.testing.assert_array_equal(y, y_l)
    assert win[0, 0] == 0 and win[0, 4] == 0  # a three-way tie goes to the first input
    dy = np.arange(1.0, 6.0).reshape(1, 5)
    for g, r in zip(impl.merge_backward_f64(op, dy, [a, b, c], win), layer.backward(dy)):
        np.testing.assert_array_equal(g, r)


CONCAT_CASES = [  # shapes of the inputs, axis
    ([(1, 1), (1, 2)], -1),
    ([(2, 3), (2, 1), (2, 5)], 1),
    ([(2, 3), (1, 3), (4, 3)], 0),
    ([(3, 4, 5), (3, 2, 5)], 1),
    ([(3, 4, 5), (3, 4, 1), (3, 4, 7)], -1),
    ([(2, 3, 4, 5), (2, 3, 1, 5)], -2),
    ([(5, 2, 3), (1, 2, 3)], -3),
    ([(2, 3, 0), (2, 3, 4)], 2),
    ([(4, 6)], 1),
]


@pytest.mark.parametrize("shapes,axis", CONCAT_CASES)
@DTYPES
def test_concatenate_matches_layer(impl, shapes, axis, dtype):
    rng = np.random.default_rng(len(shapes) + axis + 10)
    xs = [rand(rng, s, dtype) for s in shapes]
    y = fn(impl, "concatenate", dtype)(xs, axis, block=32)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    layer = Concatenate(axis=axis)
    y_l = layer.forward(xs, training=True)
    np.testing.assert_array_equal(y, y_l)
    dy = rand(rng, y.shape, dtype)
    sizes = [s[axis] for s in shapes]
    dxs = fn(impl, "concatenate_backward", dtype)(dy, sizes, axis, block=32)
    for g, r, s in zip(dxs, layer.backward(dy), shapes):
        assert g.shape == s
        np.testing.assert_array_equal(g, r)


def test_merge_rejects_bad_arguments(impl):
    a, b = np.ones((2, 3)), np.ones((2, 4))
    with pytest.raises(ValueError, match=r"merge\(add\): inputs have incompatible shapes. Received shapes "
                                         r"\(2, 3\), \(2, 4\)"):
        impl.merge_f64("add", [a, b])
    with pytest.raises(ValueError, match="merge\\(add\\): cannot merge tensors with different batch sizes"):
        impl.merge_f64("add", [a, np.ones((1, 3))])
    with pytest.raises(ValueError, match=r"merge_backward\(add\): expected `dy` of shape \(2, 3\), received \(2, 4\)"):
        impl.merge_backward_f64("add", b, [a, a])
    with pytest.raises(ValueError, match=r"merge\(subtract\): expected exactly 2 inputs, received 3"):
        impl.merge_f64("subtract", [a, a, a])
    with pytest.raises(ValueError, match="merge: unknown op 'divide'"):
        impl.merge_f64("divide", [a, a])
    with pytest.raises(ValueError, match="expected a list of at least 1 input"):
        impl.merge_f64("add", [])
    with pytest.raises(ValueError, match=r"merge_backward\(maximum\): needs `win`"):
        impl.merge_backward_f64("maximum", a, [a, a])
    with pytest.raises(ValueError, match=r"win\[0\] = 2 is outside \[0, 2\)"):
        impl.merge_backward_f64("maximum", a, [a, a], np.full((2, 3), 2, np.int32))
    with pytest.raises(ValueError, match=r"concatenate: expected inputs of equal shapes except along axis 1"):
        impl.concatenate_f64([np.ones((2, 3)), np.ones((3, 3))], 1)
    with pytest.raises(ValueError, match="concatenate: axis 2 is out of bounds for inputs of rank 2"):
        impl.concatenate_f64([a, a], 2)
    with pytest.raises(ValueError, match=r"concatenate_backward: the sizes sum to 5, but `dy` has 3 along axis 1"):
        impl.concatenate_backward_f64(a, [2, 3], 1)


# ---- optimizers beyond SGD/Adam ----------------------------------------------------------------

OPT_N = [1, 37, 300]


@pytest.mark.parametrize("n", OPT_N)
@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.9, False), (0.0, True), (0.5, True)])
@DTYPES
def test_rmsprop_matches_cpu(impl, n, momentum, centered, dtype):
    rng = np.random.default_rng(n)
    w, v = rand(rng, n, dtype), rng.uniform(0, 1, n).astype(dtype)
    mom = rand(rng, n, dtype) if momentum else None
    avg = (0.1 * rand(rng, n, dtype)).astype(dtype) if centered else None
    ref = [a.copy() if a is not None else None for a in (w, v, mom, avg)]
    for step in range(3):  # the state carries over
        g = rand(rng, n, dtype)
        w, v, mom, avg = fn(impl, "optim_rmsprop", dtype)(w, v, mom, avg, g, 0.01, 0.9, momentum, 1e-7, block=32)
        fn(_core, "optim_rmsprop", dtype)(*ref, g, 0.01, 0.9, momentum, 1e-7)
        for a, r in zip((w, v, mom, avg), ref):
            if r is None:
                assert a is None
            else:
                close(a, r, dtype, rtol32=1e-5, atol32=1e-6)


@pytest.mark.parametrize("n", OPT_N)
@DTYPES
def test_adagrad_matches_cpu(impl, n, dtype):
    rng = np.random.default_rng(n + 1)
    w, acc = rand(rng, n, dtype), np.full(n, 0.1, dtype)
    ref = [w.copy(), acc.copy()]
    for step in range(3):
        g = rand(rng, n, dtype)
        w, acc = fn(impl, "optim_adagrad", dtype)(w, acc, g, 0.05, 1e-7, block=32)
        fn(_core, "optim_adagrad", dtype)(*ref, g, 0.05, 1e-7)
        close(w, ref[0], dtype, rtol32=1e-5, atol32=1e-6)
        close(acc, ref[1], dtype, rtol32=1e-5, atol32=1e-6)


@pytest.mark.parametrize("n", OPT_N)
@DTYPES
def test_adamax_matches_rule(impl, n, dtype):
    """Against Keras's formula in numpy with the operations in faltung's order (Adamax has no
    fused CPU kernel), and for float32 against faltung's Adamax optimizer itself."""
    rng = np.random.default_rng(n + 2)
    lr, b1, b2, eps = 0.002, 0.9, 0.999, 1e-7
    w, m, u = rand(rng, n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)
    rw, rm, ru = w.copy(), m.copy(), u.copy()
    opt = Adamax(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
    ow, slots = w.copy(), {"m": m.copy(), "norm": u.copy()}
    for t in range(1, 4):
        g = rand(rng, n, dtype)
        step = lr / (1.0 - b1 ** t)
        w, m, u = fn(impl, "optim_adamax", dtype)(w, m, u, g, step, b1, b2, eps, block=32)
        rm += (g - rm) * dtype(1 - b1)
        ru = np.maximum(ru * dtype(b2), np.abs(g))
        rw -= (rm / (ru + dtype(eps))) * dtype(step)
        for a, r in ((w, rw), (m, rm), (u, ru)):
            close(a, r, dtype)
        if dtype == np.float32:
            opt.iterations = t - 1
            opt._update(ow, g, slots, lr)
            close(w, ow, dtype)
            close(m, slots["m"], dtype)
            close(u, slots["norm"], dtype)


@DTYPES
def test_weight_decay_matches_optimizer(impl, dtype):
    rng = np.random.default_rng(5)
    w = rand(rng, 41, dtype)
    got = fn(impl, "weight_decay", dtype)(w, 0.004, 0.01, block=32)
    ref = w.copy()
    ref *= (1.0 - 0.004 * 0.01)  # optimizers/base.py's decoupled decay
    np.testing.assert_array_equal(got, ref)


def test_optimizers_reject_bad_shapes(impl):
    w = np.ones(5)
    with pytest.raises(ValueError, match=r"RMSprop: expected `avg` of shape \(5,\), received \(4,\)"):
        impl.optim_rmsprop_f64(w, w, None, np.ones(4), w, 0.1, 0.9, 0.0, 1e-7)
    with pytest.raises(ValueError, match=r"Adagrad: expected `g` of shape \(5,\), received \(6,\)"):
        impl.optim_adagrad_f64(w, w, np.ones(6), 0.1, 1e-7)
    with pytest.raises(ValueError, match=r"Adamax: expected `u` of shape \(5,\), received \(3,\)"):
        impl.optim_adamax_f64(w, w, np.ones(3), w, 0.1, 0.9, 0.999, 1e-7)
