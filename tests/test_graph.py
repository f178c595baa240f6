"""The functional graph: gradients routed through fan-out, shared layers, several inputs
and outputs, multi-output layers, tensor keyword arguments and nested models, checked in
float64 against central differences with float64 test bricks (so the check sees the
graph's routing, not float32 rounding); then the same with faltung's real layers in float32,
errors, per-call contexts and threads."""
import threading

import numpy as np
import pytest

import faltung
from faltung import layers as L
from faltung.layers import Layer, Variable
from reference.gradcheck import central_difference


# -- float64 test bricks -------------------------------------------------------------------
class Lin(Layer):
    """y = tanh(x @ W + b) in float64."""

    def __init__(self, units, seed, **kw):
        super().__init__(**kw)
        self.units, self.seed = units, seed

    def build(self, shape):
        rng = np.random.default_rng(self.seed)
        self.w = Variable(rng.normal(size=(shape[-1], self.units)) * 0.7, f"{self.name}/w",
                          dtype=np.float64)
        self.b = Variable(rng.normal(size=self.units) * 0.3, f"{self.name}/b", dtype=np.float64)
        self._weights = [self.w, self.b]
        super().build(shape)

    def compute_output_shape(self, shape):
        return tuple(shape[:-1]) + (self.units,)

    def forward(self, x, training=False):
        y = np.tanh(x @ self.w.value + self.b.value)
        if training:
            self.save_for_backward(x, y)
        return y

    def backward(self, dy, need_dx=True):
        x, y = self.saved_for_backward()
        dz = dy * (1 - y * y)
        self.w.grad, self.b.grad = x.T @ dz, dz.sum(0)
        return dz @ self.w.value.T if need_dx else None


class Mul2(Layer):
    """y = a * b (two inputs)."""

    def compute_output_shape(self, shapes):
        return shapes[0]

    def forward(self, xs, training=False):
        if training:
            self.save_for_backward(*xs)
        return xs[0] * xs[1]

    def backward(self, dy, need_dx=True):
        a, b = self.saved_for_backward()
        return [dy * b, dy * a]


class Split(Layer):
    """Two outputs: the first k features and the rest, squared."""

    def __init__(self, k, **kw):
        super().__init__(**kw)
        self.k = k

    def compute_output_shape(self, shape):
        return [tuple(shape[:-1]) + (self.k,), tuple(shape[:-1]) + (shape[-1] - self.k,)]

    def forward(self, x, training=False):
        if training:
            self.save_for_backward(x)
        return [x[:, :self.k], x[:, self.k:] ** 2]

    def backward(self, dys, need_dx=True):
        (x,) = self.saved_for_backward()
        dx = np.zeros_like(x)
        if dys[0] is not None:
            dx[:, :self.k] = dys[0]
        if dys[1] is not None:
            dx[:, self.k:] = 2 * x[:, self.k:] * dys[1]
        return dx


class Shift(Layer):
    """y = x * state, with `state` a tensor keyword argument (as an RNN's initial_state)."""

    def forward(self, x, training=False, state=None):
        if training:
            self.save_for_backward(x, state)
        return x * state

    def backward(self, dy, need_dx=True):
        x, state = self.saved_for_backward()
        return dy * state, {"state": dy * x}


def _fd_check(model, xs, seed=0, eps=1e-6, tol=1e-6):
    """model.backward's input and weight gradients against central differences of
    sum(r_i * out_i) for random cotangents r, all in float64."""
    rng = np.random.default_rng(seed)
    single_in = not isinstance(xs, list)
    outs = model.forward(xs, training=True)
    multi_out = isinstance(outs, list)
    rs = [rng.normal(size=o.shape) for o in (outs if multi_out else [outs])]
    dxs = model.backward(rs if multi_out else rs[0], need_dx=True)

    def f():
        o = model.forward(xs)
        return sum(float((r * a).sum()) for r, a in zip(rs, o if multi_out else [o]))

    arrays = [xs] if single_in else xs
    grads = [dxs] if single_in else dxs
    for a, g in zip(arrays, grads):
        for idx in [tuple(rng.integers(0, s) for s in a.shape) for _ in range(4)]:
            assert g[idx] == pytest.approx(central_difference(f, a, idx, eps), rel=tol, abs=tol)
    weight_grads = [(v, v.grad.copy()) for v in model.trainable_weights]
    assert weight_grads and all(g is not None for _, g in weight_grads)
    for v, g in weight_grads:
        for idx in [tuple(rng.integers(0, s) for s in v.shape) for _ in range(3)]:
            assert g[idx] == pytest.approx(central_difference(f, v.value, idx, eps),
                                           rel=tol, abs=tol), v.name


def _x(*shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape)


def test_fan_out_sums_gradients():
    inp = L.Input((3,))
    h = Lin(4, 0)(inp)
    out = Mul2()([Lin(2, 1)(h), Lin(2, 2)(h)])   # h feeds two layers
    _fd_check(faltung.Model(inp, out), _x(5, 3))


@pytest.mark.parametrize("add_first", [True, False])
def test_fan_out_sums_never_write_into_a_gradient_another_tensor_shares(add_first):
    """Add's backward hands the same dy to both inputs and Concatenate hands out views of its
    dy: a sum of three or more contributions (accumulated in place after the second) must not
    write into such a shared array."""
    inp = L.Input((3,))
    h1, h2 = Lin(4, 20)(inp), Lin(4, 21)(inp)
    branches = [L.Add()([h1, h2]), Lin(4, 22)(h1), L.Concatenate()([h1, h2])]
    if not add_first:
        branches.reverse()
    a, b, c = (Lin(2, 23 + k)(t) for k, t in enumerate(branches))
    out = Mul2()([L.Add()([a, b]), c])
    _fd_check(faltung.Model(inp, out), _x(5, 3))


def test_shared_layer_in_series_and_in_parallel():
    inp = L.Input((4,))
    shared = Lin(4, 3)
    a = shared(shared(inp))                       # twice in a row
    b = shared(Lin(4, 4)(inp))                    # and a third time on another branch
    model = faltung.Model(inp, Mul2()([a, b]))
    assert len(shared._inbound_nodes) == 3
    assert len(model.trainable_weights) == 4      # shared weights counted once
    _fd_check(model, _x(3, 4))


def test_two_inputs_two_outputs_and_an_unused_output():
    a, b = L.Input((3,)), L.Input((5,))
    h = Mul2()([Lin(4, 5)(a), Lin(4, 6)(b)])
    first, second = Split(1)(h)
    _, unused = Split(2)(Lin(3, 7)(a))            # its second output feeds nothing
    del unused
    model = faltung.Model([a, b], [Lin(2, 8)(first), second, _])
    _fd_check(model, [_x(2, 3), _x(2, 5, seed=2)])


def test_tensor_keyword_argument_gets_its_gradient():
    x, s = L.Input((3,)), L.Input((3,))
    out = Shift()(Lin(3, 9)(x), state=Lin(3, 10)(s))
    _fd_check(faltung.Model([x, s], out), [_x(4, 3), _x(4, 3, seed=3)])


def test_nested_model_used_twice_and_sharing_a_layer_with_the_outer_model():
    shared = Lin(3, 11)
    i = L.Input((3,))
    inner = faltung.Model(i, Lin(3, 12)(shared(i)), name="inner")
    o = L.Input((3,))
    y = Mul2()([inner(o), inner(shared(o))])      # inner twice; `shared` inside and outside
    model = faltung.Model(o, y)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Lin", "Functional", "Mul2"]
    _fd_check(model, _x(2, 3))


def test_dict_inputs_and_outputs():
    a, b = L.Input((3,), name="a"), L.Input((2,), name="b")
    model = faltung.Model({"a": a, "b": b}, {"y": Lin(2, 13)(Mul2()([Lin(2, 14)(a), b]))})
    assert model.input_names == ["a", "b"] and model.output_names == ["y"]
    xa, xb = _x(4, 3).astype(np.float32), _x(4, 2, seed=2).astype(np.float32)
    p = model.predict({"b": xb, "a": xa}, verbose=0)
    assert set(p) == {"y"} and p["y"].shape == (4, 2)
    assert np.allclose(p["y"], model.predict([xa, xb], verbose=0)["y"])
    with pytest.raises(ValueError, match=r'Missing data for input "b". You passed a data '
                                         r"dictionary with keys \['a'\]"):
        model.predict({"a": xa}, verbose=0)


# -- real layers (float32) -----------------------------------------------------------------
def _two_head_model():
    x1, x2 = L.Input((3,), name="x1"), L.Input((5,), name="x2")
    shared = L.Dense(4, activation="tanh", name="shared")
    h1, h2 = shared(L.Dense(4, name="d1")(x1)), shared(L.Dense(4, name="d2")(x2))
    h = Mul2()([h1, h2])
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(1, name="reg")(h)
    return faltung.Model([x1, x2], [cls, reg])


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return ([rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 5)).astype(np.float32)],
            [rng.integers(0, 3, n), rng.normal(size=(n, 1)).astype(np.float32)])


def test_loss_weights_step_equals_finite_difference_of_weighted_loss():
    from faltung import losses
    model = _two_head_model()
    x, y = _data()
    model.compile(optimizer=faltung.optimizers.SGD(1.0),
                  loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.5})
    ce, mse = losses.SparseCategoricalCrossentropy(), losses.MeanSquaredError()

    def total():
        c, r = model.predict(x, verbose=0, batch_size=16)
        return float(ce(y[0], c)) + 0.5 * float(mse(y[1], r))

    before = [v.value.copy() for v in model.trainable_weights]
    fd = [central_difference(total, v.value, (0,) * v.value.ndim, 1e-2)
          for v in model.trainable_weights]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    c, r = model.predict(x, verbose=0)
    assert logs["reg_loss"] == pytest.approx(float(mse(y[1], r)), rel=1e-5)  # logged unweighted
    assert logs["loss"] == pytest.approx(float(ce(y[0], c)) + 0.5 * logs["reg_loss"], rel=1e-5)
    model.train_on_batch(x, y)
    for v, b, g in zip(model.trainable_weights, before, fd):
        idx = (0,) * v.value.ndim
        assert b[idx] - v.value[idx] == pytest.approx(g, rel=3e-2, abs=2e-3), v.name


def test_history_and_evaluate_names_for_several_outputs():
    model = _two_head_model()
    x, y = _data(32)
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], ["mae"]])
    hist = model.fit(x, y, epochs=2, batch_size=8, verbose=0, validation_split=0.25)
    assert list(hist.history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss", "reg_mae",
                                  "val_cls_accuracy", "val_cls_loss", "val_loss", "val_reg_loss",
                                  "val_reg_mae"]
    h = hist.history
    assert h["loss"][-1] == pytest.approx(h["cls_loss"][-1] + h["reg_loss"][-1], rel=1e-5)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    values = model.evaluate(x, y, verbose=0)
    # Keras 3.15 (checked): loss, the per-output losses in output order, then the rest sorted
    assert values == [logs[k] for k in ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]]
    # one loss for every output, a dict leaving an output without loss
    model.compile("adam", loss="mse")
    with pytest.raises(ValueError, match="cls"):
        model.train_on_batch(x, y)  # sparse labels vs 3 softmax outputs under mse
    model.compile("adam", loss={"reg": "mse"})
    model.fit(x, {"reg": y[1]}, epochs=1, verbose=0)
    assert model.evaluate(x, {"reg": y[1]}, verbose=0) == pytest.approx(
        float(np.mean((model.predict(x, verbose=0)[1] - y[1]) ** 2)), rel=1e-5)


def test_shared_layer_gradient_sums_over_calls_in_fit():
    # a Dense used twice gets the sum of both calls' gradients: an SGD step on the model
    # equals the step computed by a model where the two uses are separate layers with the
    # same weights and the update is the sum of their grads.
    inp = L.Input((4,))
    shared = L.Dense(4, activation="tanh")
    out = L.Dense(1)(shared(shared(inp)))
    model = faltung.Model(inp, out)
    model.compile(faltung.optimizers.SGD(0.1), "mse")
    x = _x(8, 4).astype(np.float32)
    y = _x(8, 1, seed=5).astype(np.float32)
    a, b, c = L.Dense(4, activation="tanh"), L.Dense(4, activation="tanh"), L.Dense(1)
    twin = faltung.Model(inp, c(b(a(inp))))
    w = model.get_weights()
    twin.set_weights(w[:2] + w[:2] + w[2:])
    twin.compile(faltung.optimizers.SGD(0.1), "mse")
    model.train_on_batch(x, y)
    before = [v.value.copy() for v in twin.trainable_weights]
    twin.train_on_batch(x, y)
    deltas = [v.value - b0 for v, b0 in zip(twin.trainable_weights, before)]
    expect_kernel = w[0] + deltas[0] + deltas[2]
    assert np.allclose(model.get_weights()[0], expect_kernel, atol=1e-6)


def test_sequential_layers_have_outputs_for_feature_map_models():
    model = faltung.Sequential([L.Input((8, 8, 1)), L.Conv2D(2, 3), L.MaxPooling2D(),
                                L.Flatten(), L.Dense(3)])
    feats = faltung.Model(inputs=model.inputs, outputs=[l.output for l in model.layers[:2]])
    x = _x(2, 8, 8, 1).astype(np.float32)
    conv, pool = feats.predict(x, verbose=0)
    assert conv.shape == (2, 6, 6, 2) and pool.shape == (2, 3, 3, 2)
    assert np.allclose(conv, model.layers[0](x), atol=1e-6)
    assert model.get_layer(model.layers[2].name) is model.layers[2]
    assert model.layers[1].input is model.layers[0].output
    model.add(L.Dense(2))                      # a rebuild keeps one call per layer
    assert len(model.layers[0]._inbound_nodes) == 1
    assert model.layers[-1].output.shape == (None, 2)


def test_single_output_values_keep_compile_order_and_metrics_ignore_sample_weight():
    model = faltung.Sequential([L.Input((3,)), L.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy", "accuracy"],
                  weighted_metrics=["accuracy"])
    x, y = _data()
    x, y = x[0], y[0]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert model.evaluate(x, y, verbose=0) == [logs[k] for k in
                                               ["loss", "sparse_categorical_accuracy", "accuracy",
                                                "weighted_accuracy"]]
    sw = np.linspace(0, 1, len(y)).astype(np.float32)
    w = model.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    assert w["accuracy"] == logs["accuracy"]            # Keras: `metrics` are unweighted
    hit = (np.argmax(model.predict(x, verbose=0), -1) == y).astype(np.float64)
    assert w["weighted_accuracy"] == pytest.approx((hit * sw).sum() / sw.sum(), rel=1e-6)


def test_one_output_in_a_list_predicts_an_array():
    inp = L.Input((3,))
    out = L.Dense(2)(inp)
    model = faltung.Model([inp], [out])
    assert isinstance(model.output, list) and isinstance(model.outputs, list)
    assert isinstance(model.predict(np.ones((2, 3), np.float32), verbose=0), np.ndarray)


def test_layer_without_calls_has_no_output():
    with pytest.raises(AttributeError, match="never been called"):
        L.Dense(2).output


# -- errors ------------------------------------------------------------------------------
def test_graph_errors_name_what_is_wrong():
    a, b = L.Input((3,)), L.Input((3,))
    with pytest.raises(ValueError, match="Graph disconnected"):
        faltung.Model(a, L.Dense(2)(b))               # a layer on another graph's tensor
    with pytest.raises(ValueError, match="Graph disconnected"):
        faltung.Model(a, b)                            # an output that ignores the inputs
    with pytest.raises(ValueError, match="must be KerasTensors"):
        faltung.Model(a, np.zeros(3))
    d = L.Dense(2, name="same")
    with pytest.raises(ValueError, match='"same" is used 2 times'):
        faltung.Model(a, Mul2()([d(a), L.Dense(2, name="same")(a)]))
    with pytest.raises(ValueError, match=r'Input of layer "dense_\w*" is incompatible.*'
                                         r"expected shape=\(None, 3\), found shape=\(None, 4\)"):
        shared = L.Dense(2)
        shared(a)
        shared(L.Input((4,)))
    with pytest.raises(ValueError, match="mix of symbolic tensors and arrays"):
        Mul2()([a, np.zeros((1, 3))])
    model = _two_head_model()
    x, y = _data()
    with pytest.raises(ValueError, match=r'expects 2 input\(s\), but it received 3'):
        model.predict(x + [x[0]], verbose=0)
    with pytest.raises(ValueError, match=r'expects 2 input\(s\), but it received 1'):
        model.predict(x[0], verbose=0)
    with pytest.raises(ValueError, match=r"key 'clss' does not correspond to any model output"):
        model.compile("adam", loss={"clss": "mse"})
    with pytest.raises(ValueError, match=r"`loss` given as a list must have 2 entries"):
        model.compile("adam", loss=["mse"])
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"])
    with pytest.raises(ValueError, match="Data cardinality is ambiguous"):
        model.fit([x[0], x[1][:5]], y, verbose=0)
    with pytest.raises(ValueError, match=r'layer "d2" is incompatible.* value 5, but received '
                                         r"input with shape \(16, 4\)"):
        model.predict([x[0], x[1][:, :4]], verbose=0)


def test_backward_without_training_forward_is_one_uniform_error():
    model = _two_head_model()
    x, _ = _data()
    model.forward(x, training=False)
    with pytest.raises(ValueError, match="needs a preceding forward"):
        model.backward([np.zeros((16, 3), np.float32), np.zeros((16, 1), np.float32)])
    for layer in (L.Dense(2), L.Conv2D(2, 3), L.MaxPooling2D(), L.BatchNormalization(),
                  L.Flatten(), L.Conv2DTranspose(2, 3)):
        x4 = np.ones((1, 4, 4, 2), np.float32)
        y = layer(x4)
        with pytest.raises(ValueError, match=f"Layer '{layer.name}': backward.. needs a "
                                             "preceding forward"):
            layer.backward(np.ones_like(y))


# -- per-call contexts and threads ----------------------------------------------------------
def test_a_layer_called_twice_keeps_both_calls_saved_values():
    dense = L.Dense(2)
    inp = L.Input((3,))
    model = faltung.Model(inp, Mul2()([dense(inp), dense(L.Dense(3)(inp))]))
    x = _x(4, 3).astype(np.float32)
    model.forward(x, training=True)
    (ctxs,) = model.saved_for_backward()
    saved = [c.saved for c, n in zip(ctxs, model._graph.nodes) if n.layer is dense]
    assert len(saved) == 2 and not np.array_equal(saved[0][0], saved[1][0])


def _bn_model():
    faltung.utils.set_random_seed(3)
    model = faltung.Sequential([L.Input((6, 6, 2)), L.Conv2D(4, 3, activation="relu"),
                                L.BatchNormalization(), L.Dropout(0.2), L.Flatten(),
                                L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_predict_in_another_thread_leaves_training_undisturbed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    quiet = _bn_model()
    faltung.utils.set_random_seed(9)
    quiet.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False)
    busy = _bn_model()
    stop, errors = threading.Event(), []

    def predict_loop():
        try:
            while not stop.is_set():
                busy.predict(x[:16], verbose=0)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    t = threading.Thread(target=predict_loop)
    t.start()
    try:
        faltung.utils.set_random_seed(9)
        busy.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False)
    finally:
        stop.set()
        t.join()
    assert not errors
    for a, b in zip(quiet.get_weights(), busy.get_weights()):
        assert np.array_equal(a, b)


def test_predict_from_several_threads_at_once_is_identical():
    model = _bn_model()
    x = np.random.default_rng(1).normal(size=(40, 6, 6, 2)).astype(np.float32)
    expect = model.predict(x, verbose=0)
    results = [None] * 4

    def run(i):
        results[i] = [model.predict(x, verbose=0, batch_size=8) for _ in range(5)]
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rs in results:
        for r in rs:
            assert np.array_equal(r, expect)


# -- config round trip ----------------------------------------------------------------------
def test_functional_config_round_trip_with_shared_layer_and_two_outputs(tmp_path):
    pytest.importorskip("h5py")
    x1, x2 = L.Input((3,), name="x1"), L.Input((5,), name="x2")
    shared = L.Dense(4, activation="tanh", name="shared")
    h = L.Concatenate()([shared(L.Dense(4, name="d1")(x1)), shared(L.Dense(4, name="d2")(x2))]) \
        if hasattr(L, "Concatenate") else shared(L.Dense(4, name="d1")(x1))
    model = faltung.Model([x1, x2], [L.Dense(3, name="cls")(h), L.Dense(1, name="reg")(h)])
    model.compile("adam", loss=["mse", "mse"], loss_weights=[1.0, 0.3])
    x, _ = _data()
    path = tmp_path / "m.keras"
    model.save(path)
    back = faltung.models.load_model(path)
    assert [l.name for l in back.layers] == [l.name for l in model.layers]
    assert back.output_names == ["cls", "reg"] and back.input_names == ["x1", "x2"]
    for a, b in zip(model.predict(x, verbose=0), back.predict(x, verbose=0)):
        assert np.allclose(a, b, atol=1e-6)
    assert len(back.get_layer("shared")._inbound_nodes) == len(shared._inbound_nodes)


def test_layer_order_is_keras_depth_order():
    # Keras 3.15 (run on this graph): ['input_layer', 'b1', 'a', 'b2', 'c', 'cat', 'head'];
    # the order fixes model.weights and the positional paths of weight files.
    inp = L.Input((8,))
    a = L.Dense(4, name="a")(inp)
    b2 = L.Dense(4, name="b2")(L.Dense(4, name="b1")(inp))
    c = L.Dense(4, name="c")(inp)
    model = faltung.Model(inp, L.Dense(2, name="head")(L.Concatenate(name="cat")([a, b2, c])))
    assert [l.name for l in model.layers][1:] == ["b1", "a", "b2", "c", "cat", "head"]
    assert [w.name for w in model.weights][:2] == ["b1/kernel", "b1/bias"]


def test_fine_tuning_a_base_called_with_training_false():
    # Keras's transfer-learning recipe: base(x, training=False) keeps the base's batch norm on
    # its moving statistics (and dropout off) even while fine-tuning trains the base's weights.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    base_in = L.Input((6, 6, 2))
    h = L.Dropout(0.5)(L.BatchNormalization()(L.Conv2D(4, 3)(base_in)))
    base = faltung.Model(base_in, L.Flatten()(h), name="base")
    inp = L.Input((6, 6, 2))
    model = faltung.Model(inp, L.Dense(3, activation="softmax")(base(inp, training=False)))
    model.compile(faltung.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    bn = base.layers[2]
    mean = bn.moving_mean.value.copy()
    kernel = base.layers[1].kernel.value.copy()
    model.train_on_batch(x, y)
    assert np.array_equal(bn.moving_mean.value, mean)          # inference statistics only
    assert not np.array_equal(base.layers[1].kernel.value, kernel)  # but the base trains
    # the step's gradient is the inference-mode network's: dropout off, moving statistics
    probe = faltung.Model(inp, model.layers[-1](base(inp, training=False)))
    assert np.allclose(probe.predict(x, verbose=0), model.predict(x, verbose=0))
    base.trainable = False
    model.compile(faltung.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    kernel = base.layers[1].kernel.value.copy()
    model.train_on_batch(x, y)
    assert np.array_equal(base.layers[1].kernel.value, kernel)


def test_batch_norm_in_inference_mode_inside_training_step_matches_finite_differences():
    # gamma and beta of a trainable BN called with training=False still get gradients
    # (of the inference-mode affine map), as in Keras.
    inp = L.Input((5, 3))
    bn = L.BatchNormalization()
    model = faltung.Model(inp, L.Dense(2)(bn(inp, training=False)))
    bn.moving_mean.value[...] = [0.3, -0.2, 0.1]
    bn.moving_variance.value[...] = [2.0, 0.5, 1.5]
    bn.gamma.value[...] = [1.2, 0.7, -0.4]
    x = _x(4, 5, 3).astype(np.float32)
    r = _x(4, 5, 2, seed=4).astype(np.float32)
    model.forward(x, training=True)
    model.backward(r, need_dx=False)
    f = lambda: float((model.forward(x).astype(np.float64) * r).sum())  # noqa: E731
    for v in (bn.gamma, bn.beta):
        g = v.grad.copy()
        for i in range(3):
            assert g[i] == pytest.approx(central_difference(f, v.value, i, 1e-2),
                                         rel=1e-3, abs=1e-3)


def test_a_training_step_leaves_no_reference_cycles():
    """A step's activations are freed when it ends, not when the cyclic garbage collector next
    runs: pack_like's closure that called itself was a cycle holding the merge layers' inputs
    (72 MB per step of a DenseNet block, 2.4 GB resident after 30 steps)."""
    import gc
    inp = faltung.Input((6, 6, 3))
    a = L.Conv2D(4, 3, padding="same")(inp)
    b = L.Conv2D(4, 1)(inp)
    x = L.Concatenate()([a, L.Add()([a, b])])
    model = faltung.Model(inp, L.Dense(2)(L.Flatten()(x)))
    model.compile(optimizer="adam", loss="mse")
    x_in = np.random.default_rng(0).standard_normal((5, 6, 6, 3)).astype(np.float32)
    y = np.zeros((5, 2), np.float32)
    model.train_on_batch(x_in, y)
    model.predict(x_in, verbose=0)
    gc.collect()
    gc.disable()
    try:
        model.train_on_batch(x_in, y)
        model.predict(x_in, verbose=0)
        assert gc.collect() == 0
    finally:
        gc.enable()
