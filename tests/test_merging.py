"""Merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

Layers compute in float32; forwards are compared with the float64 numpy references in
tests/reference/merging.py and every backward with float64 central differences of
sum(reference(xs) * R) for a random R, with float32 tolerances.
"""
import tracemalloc

import numpy as np
import pytest

from faltung import layers
from faltung.layers import Input
from reference import merging as ref
from reference.gradcheck import numeric_grad
from reference.merging import CONCAT, DOT, M1, M2, MASKED, SHAPES, X1, X2

ELEMENTWISE = {
    "Add": (layers.Add, ref.add),
    "Subtract": (layers.Subtract, ref.subtract),
    "Multiply": (layers.Multiply, ref.multiply),
    "Average": (layers.Average, ref.average),
    "Maximum": (layers.Maximum, ref.maximum),
    "Minimum": (layers.Minimum, ref.minimum),
}


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check_grads(layer, xs, ref_fn, rtol=1e-3, atol=1e-4, **kwargs):
    """Each input's gradient from layer.backward vs float64 central differences of
    sum(ref_fn(xs) * R)."""
    y = layer(xs, training=True, **kwargs)
    R = np.random.default_rng(7).standard_normal(y.shape)
    dxs = layer.backward(R.astype(np.float32))
    assert isinstance(dxs, list) and len(dxs) == len(xs)
    xs64 = [x.astype(np.float64) for x in xs]
    for i, x in enumerate(xs64):
        def f(v, i=i):
            return ref_fn(xs64[:i] + [v] + xs64[i + 1:])
        assert dxs[i].shape == x.shape and dxs[i].dtype == np.float32
        np.testing.assert_allclose(dxs[i], numeric_grad(f, x.copy(), R), rtol=rtol, atol=atol)
    return dxs


def cases():
    for name in ELEMENTWISE:
        for case, shapes in SHAPES.items():
            if name == "Subtract" and len(shapes) != 2:
                continue
            yield pytest.param(name, shapes, id=f"{name}-{case}")


# -- elementwise merges ------------------------------------------------------------------

@pytest.mark.parametrize("name,shapes", list(cases()))
def test_elementwise_forward_and_backward(name, shapes):
    cls, ref_fn = ELEMENTWISE[name]
    xs = [rand(s, i) for i, s in enumerate(shapes)]
    layer = cls()
    y = layer(xs)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref_fn(xs), rtol=1e-6, atol=1e-6)
    assert y.shape == layer.compute_output_shape(shapes)
    check_grads(layer, xs, ref_fn)


@pytest.mark.parametrize("name,shapes", list(cases()))
def test_elementwise_symbolic_shape(name, shapes):
    cls, _ = ELEMENTWISE[name]
    out = cls()([Input(s[1:]) for s in shapes])
    expected = np.broadcast_shapes(*(x.shape for x in ref.expand([np.zeros(s) for s in shapes])))
    assert out.shape == (None,) + expected[1:]


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE if n != "Subtract"])
def test_one_input_is_passed_through_as_a_copy(name):
    # Keras 3's Merge accepts a list of one input and returns it.
    x = rand((2, 3), 0)
    layer = ELEMENTWISE[name][0]()
    y = layer([x], training=True)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    dy = rand((2, 3), 1)
    (dx,) = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy)


@pytest.mark.parametrize("name", ["Add", "Average"])
def test_gradients_of_inputs_are_distinct_read_only_arrays(name):
    xs = [rand((2, 3), i) for i in range(3)]
    layer = ELEMENTWISE[name][0]()
    layer(xs, training=True)
    dxs = layer.backward(rand((2, 3), 5))
    assert len({id(d) for d in dxs}) == 3
    for d in dxs:
        assert not d.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            d += 1.0
    total = dxs[0] + dxs[1]  # what the graph does: a new array
    assert total.flags.writeable


def test_backward_without_need_dx_and_without_forward():
    layer = layers.Add()
    x = rand((2, 3), 0)
    layer([x, x], training=True)
    assert layer.backward(x, need_dx=False) is None
    fresh = layers.Multiply()
    fresh([x, x])  # inference: nothing saved
    with pytest.raises(ValueError, match="needs a preceding forward"):
        fresh.backward(x)


# -- Maximum / Minimum ties --------------------------------------------------------------

@pytest.mark.parametrize("name,better", [("Maximum", np.greater), ("Minimum", np.less)])
def test_extreme_ties_send_the_gradient_to_the_first_input(name, better):
    a = np.array([[1.0, 2.0, 3.0, 5.0]], np.float32)
    b = np.array([[1.0, 0.0, 3.0, 5.0]], np.float32)
    c = np.array([[1.0, 2.0, 9.0, -5.0]], np.float32)
    layer = ELEMENTWISE[name][0]()
    dy = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    layer([a, b, c], training=True)
    got = layer.backward(dy)
    want = ref.extreme_grads([a, b, c], dy.astype(np.float64), better)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    if name == "Maximum":  # columns: all tied; a = c; c largest; a = b
        np.testing.assert_array_equal(np.concatenate(got), [[1, 2, 0, 4], [0, 0, 0, 0],
                                                            [0, 0, 3, 0]])
    np.testing.assert_array_equal(sum(got), dy)  # each entry's gradient goes to one input


@pytest.mark.parametrize("name,better", [("Maximum", np.greater), ("Minimum", np.less)])
def test_extreme_ties_with_broadcasting_and_integers(name, better):
    rng = np.random.default_rng(3)
    shapes = [(2, 3, 4), (2, 4), (2, 3, 1)]
    xs = [rng.integers(-2, 3, size=s).astype(np.float32) for s in shapes]  # many ties
    dy = rng.standard_normal((2, 3, 4)).astype(np.float32)
    layer = ELEMENTWISE[name][0]()
    y = layer(xs, training=True)
    np.testing.assert_array_equal(y, ref.maximum(xs) if name == "Maximum" else ref.minimum(xs))
    for g, w in zip(layer.backward(dy), ref.extreme_grads(xs, dy.astype(np.float64), better)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


# -- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_incompatible_shapes_name_the_layer_and_shapes(name):
    layer = ELEMENTWISE[name][0](name=f"my_{name.lower()}")
    a, b = rand((2, 4, 5), 0), rand((2, 3, 5), 1)
    with pytest.raises(ValueError, match=rf'"my_{name.lower()}".*incompatible shapes.*'
                                         r"\(4, 5\) and \(3, 5\)"):
        layer([a, b])
    with pytest.raises(ValueError, match=rf'"my_{name.lower()}".*incompatible shapes'):
        layer.forward([a, b])  # a built layer checks every call
    with pytest.raises(ValueError, match="incompatible shapes"):
        ELEMENTWISE[name][0]()([Input((4, 5)), Input((3, 5))])
    with pytest.raises(ValueError, match=r"different batch sizes.*\(2, 5\), \(3, 5\)"):
        ELEMENTWISE[name][0]()([rand((2, 5), 0), rand((3, 5), 1)])


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_merge_needs_a_list(name):
    cls = ELEMENTWISE[name][0]
    with pytest.raises(ValueError, match="should be called on a list of inputs"):
        cls(name="m")(rand((2, 3), 0))
    with pytest.raises(ValueError, match="should be called on a list of inputs"):
        cls()(Input((3,)))
    with pytest.raises(ValueError, match=r'"m2".*should be called on a list of (at least 1|exactly 2)'):
        cls(name="m2").build([])


def test_subtract_takes_exactly_two_inputs():
    with pytest.raises(ValueError, match=r'"sub".*`Subtract` layer should be called on a list of '
                                         r"exactly 2 input.*Received 3 inputs"):
        layers.Subtract(name="sub")([Input((3,)), Input((3,)), Input((3,))])
    with pytest.raises(ValueError, match="exactly 2 input.*Received 1 inputs"):
        layers.Subtract()([rand((2, 3), 0)])
    with pytest.raises(ValueError, match="exactly 2 input"):
        layers.subtract([rand((2, 3), i) for i in range(3)])


def test_shared_merge_layer_accepts_other_shapes_later():
    # Keras's merge layers have no input spec: a second call may use other (mergeable) shapes
    layer = layers.Add()
    assert layer([Input((3,)), Input((3,))]).shape == (None, 3)
    assert layer([Input((4, 5)), Input((5,))]).shape == (None, 4, 5)
    assert layer([rand((2, 7), 0), rand((2, 7), 1)]).shape == (2, 7)


# -- masks -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MASKED))
def test_masked_values_as_keras(name):
    one_mask, both_masks = MASKED[name]
    layer = ELEMENTWISE[name][0]()
    np.testing.assert_allclose(layer([X1, X2], mask=[M1, None]), [one_mask])
    assert layer.compute_mask([X1, X2], [M1, None]) is None
    np.testing.assert_allclose(layer([X1, X2], mask=[M1, M2]), [both_masks])
    np.testing.assert_array_equal(layer.compute_mask([X1, X2], [M1, M2]), [[0, 1, 1, 1]])


def test_masked_maximum_as_keras():
    x1, x2 = -X1, -X2
    layer = layers.Maximum()
    np.testing.assert_allclose(layer([x1, x2], mask=[M1, None]),
                               [[[0, 0], [0, 0], [-1, -2], [-3, -4]]])
    np.testing.assert_allclose(layer([x1, x2], mask=[M1, M2]),
                               [[[0, 0], [-1, -2], [-1, -2], [-3, -4]]])


def _masked_ref(name, masks):
    """The float64 reference of a masked Multiply / Maximum / Minimum (Keras's rules)."""
    def fn(xs):
        ms = [None if m is None else np.broadcast_to(m[..., None], x.shape)
              for x, m in zip(xs, masks)]
        if name == "Multiply":
            out = ref.multiply([x if m is None else np.where(m, x, 1.0) for x, m in zip(xs, ms)])
            if all(m is not None for m in ms):
                out = np.where(np.logical_or.reduce(ms), out, 0.0)
            return out
        op = np.maximum if name == "Maximum" else np.minimum
        cur, cur_m = xs[0], ms[0]
        for x, m in zip(xs[1:], ms[1:]):
            if m is not None:
                x = np.where(m, x, cur)
            if cur_m is not None:
                cur = np.where(cur_m, cur, x)
            cur_m = None if m is None or cur_m is None else cur_m | m
            cur = op(cur, x)
        return cur
    return fn


@pytest.mark.parametrize("name", ["Multiply", "Maximum", "Minimum"])
@pytest.mark.parametrize("which", [(1, 1, 1), (1, 0, 1), (0, 1, 0)], ids=["all", "first-last", "middle"])
def test_masked_forward_and_backward(name, which):
    rng = np.random.default_rng(11)
    xs = [rand((3, 4, 2), i) for i in range(3)]
    masks = [rng.random((3, 4)) < 0.5 if w else None for w in which]
    layer = ELEMENTWISE[name][0]()
    fn = _masked_ref(name, masks)
    np.testing.assert_allclose(layer(xs, mask=masks), fn(xs), rtol=1e-6, atol=1e-6)
    check_grads(layer, xs, fn, mask=masks)


def test_compute_mask_errors_and_none():
    layer = layers.Add(name="adder")
    a, b = rand((2, 3, 4), 0), rand((2, 3, 4), 1)
    assert layer.compute_mask([a, b], None) is None
    assert layer.compute_mask([a, b], [None, None]) is None
    with pytest.raises(ValueError, match='"adder".*`mask` should be a list'):
        layer.compute_mask([a, b], M1)
    with pytest.raises(ValueError, match="`inputs` should be a list"):
        layer.compute_mask(a, [None, None])
    with pytest.raises(ValueError, match="should have the same length"):
        layer.compute_mask([a, b], [None])
    with pytest.raises(ValueError, match="mask of input 1 has shape"):
        layers.Multiply()([a, b], mask=[None, np.ones((2, 5), bool)])


# -- Concatenate -------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CONCAT))
def test_concatenate_forward_backward(case):
    shapes, axis = CONCAT[case]
    xs = [rand(s, i) for i, s in enumerate(shapes)]
    layer = layers.Concatenate(axis=axis)
    y = layer(xs)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))
    dxs = check_grads(layer, xs, lambda v: np.concatenate(v, axis=axis))
    dy = rand(y.shape, 9)
    layer(xs, training=True)
    dxs = layer.backward(dy)
    start = 0
    for x, d in zip(xs, dxs):  # views of dy, the slices in order
        assert np.shares_memory(d, dy) and d.base is dy
        np.testing.assert_array_equal(d, np.take(dy, range(start, start + x.shape[axis]), axis))
        start += x.shape[axis]


def test_concatenate_forward_allocates_only_the_output():
    xs = [rand((64, 100, 30), i) for i in range(3)]
    layer = layers.Concatenate(axis=1)
    layer(xs)  # build outside the measurement
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        y = layer(xs, training=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert y.nbytes == 3 * xs[0].nbytes
    assert y.nbytes <= peak - base < y.nbytes + 16 * 1024


def test_concatenate_symbolic_shapes_and_errors():
    assert layers.Concatenate()([Input((4, 5)), Input((4, 3))]).shape == (None, 4, 8)
    assert layers.Concatenate(axis=1)([Input((None, 5)), Input((3, 5))]).shape == (None, None, 5)
    assert layers.concatenate([Input((None, 5)), Input((3, 5))]).shape == (None, None, 10)
    with pytest.raises(ValueError, match=r'"cat".*matching shapes except for the concatenation '
                                         r"axis.*\(None, 4, 5\), \(None, 3, 5\)"):
        layers.Concatenate(name="cat")([Input((4, 5)), Input((3, 5))])
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        layers.Concatenate(axis=1)([rand((2, 3, 4), 0), rand((2, 3, 5), 1)])
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        layers.Concatenate()([rand((2, 3, 4), 0), rand((2, 4), 1)])  # ranks differ
    with pytest.raises(ValueError, match="matching shapes except"):
        layers.Concatenate()([rand((2, 3), 0), rand((3, 3), 1)])   # batch sizes differ
    with pytest.raises(ValueError, match=r'"cat3".*axis 3 is out of bounds.*rank 3'):
        layers.Concatenate(axis=3, name="cat3")([rand((2, 3, 4), 0), rand((2, 3, 4), 1)])
    with pytest.raises(ValueError, match="should be called on a list of inputs"):
        layers.Concatenate()(rand((2, 3), 0))
    with pytest.raises(ValueError, match="Invalid value for argument `axis`"):
        layers.Concatenate(axis="last")


def test_concatenate_compute_mask_as_keras():
    layer = layers.Concatenate(axis=1)
    np.testing.assert_array_equal(layer.compute_mask([X1, X2], [M1, None]),
                                  [[0, 1, 0, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(layers.Concatenate(axis=2).compute_mask([X1, X2], [M1, None]),
                                  [[1, 1, 1, 1]])
    np.testing.assert_array_equal(layers.Concatenate(axis=2).compute_mask([X1, X2], [M1, M2]),
                                  M1 | M2)
    assert layer.compute_mask([X1, X2], [None, None]) is None
    assert layer.compute_mask([X1, X2], None) is None
    with pytest.raises(ValueError, match="`mask` should be a list"):
        layer.compute_mask([X1, X2], M1)
    with pytest.raises(ValueError, match="same length"):
        layer.compute_mask([X1, X2], [M1])


# -- Dot ---------------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("case", list(DOT))
def test_dot_forward_backward(case, normalize):
    shapes, axes = DOT[case]
    xs = [rand(s, i) for i, s in enumerate(shapes)]
    layer = layers.Dot(axes=axes, normalize=normalize)
    y = layer(xs)
    want = ref.batch_dot(*[x.astype(np.float64) for x in xs], axes, normalize)
    assert y.shape == want.shape == layer.compute_output_shape(shapes)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    check_grads(layer, xs, lambda v: ref.batch_dot(v[0], v[1], axes, normalize))
    assert layer([Input(s[1:]) for s in shapes]).shape == (None,) + want.shape[1:]


def test_dot_keras_example_shape():
    # Keras's docstring: x (2, 3, 5), y (2, 10, 3), axes=(1, 2) -> (2, 5, 10)
    assert layers.Dot(axes=(1, 2))([rand((2, 3, 5), 0), rand((2, 10, 3), 1)]).shape == (2, 5, 10)
    a, b = Input(batch_shape=(1, 3, 2)), Input(batch_shape=(1, 1, 2, 3))
    assert layers.Dot(axes=(-2, -1))([a, b]).shape == (1, 2, 1, 2)


def test_dot_normalize_below_the_epsilon_floor_is_linear():
    # Keras divides by max(||x||, 1e-7): a sample with a smaller norm is scaled by 1e7
    x = np.array([[3e-9, 4e-9], [3.0, 4.0]], np.float32)
    y = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    layer = layers.Dot(axes=1, normalize=True)
    out = layer([x, y], training=True)
    np.testing.assert_allclose(out, [[3e-9 / 1e-7], [0.8]], rtol=1e-5)
    dx, _ = layer.backward(np.ones((2, 1), np.float32))
    np.testing.assert_allclose(dx[0], [1e7, 0.0], rtol=1e-5)           # d(x/eps) = 1/eps
    np.testing.assert_allclose(dx[1], [-0.8 * 0.6 / 5, 0.6 * 0.6 / 5], rtol=1e-5)
    out = layers.Dot(axes=1, normalize=True)([np.zeros((1, 2), np.float32), y[:1]])
    np.testing.assert_array_equal(out, [[0.0]])  # no NaN for a zero vector


def test_dot_errors():
    with pytest.raises(ValueError, match=r'"dd".*incompatible input shapes: axis values 4 \(at '
                                         r"axis 2\) != 3 \(at axis 2\).*\(None, 2, 4\), \(None, 2, 3\)"):
        layers.Dot(axes=-1, name="dd")([Input((2, 4)), Input((2, 3))])
    with pytest.raises(ValueError, match="axis values 4 .* != 5"):
        layers.Dot(axes=(1, 1))([rand((2, 4), 0), rand((2, 5), 1)])
    with pytest.raises(ValueError, match="batch_dot over axis 0"):
        layers.Dot(axes=0)([rand((2, 4), 0), rand((2, 4), 1)])
    with pytest.raises(ValueError, match="rank < 2"):
        layers.Dot(axes=-1)([rand((2,), 0), rand((2,), 1)])
    with pytest.raises(ValueError, match="out of bounds"):
        layers.Dot(axes=(1, 3))([rand((2, 4), 0), rand((2, 4), 1)])
    with pytest.raises(ValueError, match="different batch sizes"):
        layers.Dot(axes=1)([rand((2, 4), 0), rand((3, 4), 1)])
    with pytest.raises(ValueError, match=r"`Dot` layer should be called on a list of exactly 2"):
        layers.Dot(axes=1)([rand((2, 4), i) for i in range(3)])
    with pytest.raises(ValueError, match="exactly 2"):
        layers.Dot(axes=1)([rand((2, 4), 0)])
    with pytest.raises(TypeError, match="Invalid type for argument `axes`"):
        layers.Dot(axes="1")
    with pytest.raises(ValueError, match="should contain two elements"):
        layers.Dot(axes=(1, 2, 3))
    with pytest.raises(ValueError, match="list elements should be integers"):
        layers.Dot(axes=(1, 2.0))


def test_dot_has_no_mask():
    layer = layers.Dot(axes=-1)
    assert layer.compute_mask([X1, X2], [M1, M2]) is None
    np.testing.assert_allclose(layer([X1, X2], mask=[M1, M2]), ref.batch_dot(X1, X2, -1))


# -- functional interfaces and configs -----------------------------------------------------

def test_functional_interfaces():
    a, b = rand((2, 3), 0), rand((2, 3), 1)
    for fn, r in [(layers.add, ref.add), (layers.subtract, ref.subtract),
                  (layers.multiply, ref.multiply), (layers.average, ref.average),
                  (layers.maximum, ref.maximum), (layers.minimum, ref.minimum)]:
        np.testing.assert_allclose(fn([a, b]), r([a, b]), rtol=1e-6)
        t = fn([Input((3,)), Input((3,))], name=f"f_{fn.__name__}")
        assert t.shape == (None, 3) and t._keras_history[0].name == f"f_{fn.__name__}"
    np.testing.assert_array_equal(layers.concatenate([a, b], axis=0), np.concatenate([a, b]))
    np.testing.assert_allclose(layers.dot([a, b]), ref.batch_dot(a, b, -1), rtol=1e-6)
    np.testing.assert_allclose(layers.dot([a, b], axes=1, normalize=True),
                               ref.batch_dot(a, b, 1, True), rtol=1e-6)
    assert layers.dot([Input((3,)), Input((3,))], axes=1).shape == (None, 1)


@pytest.mark.parametrize("layer,extra", [
    (layers.Add(), {}), (layers.Subtract(), {}), (layers.Multiply(), {}),
    (layers.Average(), {}), (layers.Maximum(), {}), (layers.Minimum(), {}),
    (layers.Concatenate(axis=1), {"axis": 1}),
    (layers.Dot(axes=(1, 2), normalize=True), {"axes": (1, 2), "normalize": True}),
    (layers.Dot(axes=-1), {"axes": -1, "normalize": False}),
], ids=lambda v: type(v).__name__ if isinstance(v, layers.Layer) else "")
def test_get_config_has_keras_keys_and_round_trips(layer, extra):
    cfg = layer.get_config()
    assert set(cfg) == {"name", "trainable", "dtype"} | set(extra)
    assert {k: cfg[k] for k in extra} == extra
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
