"""SimpleRNN, LSTM, GRU and RNN(cell) as Keras layers: shapes and options, gradients through
return_state / initial_state / masks / go_backwards / stateful batches (finite differences),
Keras's weight layout, configs, errors, and training on real data. The kernels themselves
are checked against the float64 reference in tests/test_rnn_kernels.py."""
import numpy as np
import pytest

import faltung
from faltung import layers as L
from reference.gradcheck import central_difference
from reference import rnn as rnn_ref
from reference.rnn import _run, minimal_rnn_cell

CLASSES = [L.SimpleRNN, L.LSTM, L.GRU]
N_STATES = {L.SimpleRNN: 1, L.LSTM: 2, L.GRU: 1}


def _x(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("seq,state", [(False, False), (True, False), (False, True), (True, True)])
def test_output_shapes_match_symbolic_shapes(cls, seq, state):
    layer = cls(5, return_sequences=seq, return_state=state)
    inp = L.Input((7, 3))
    sym = layer(inp)
    out = layer(_x(2, 7, 3))
    sym, out = (sym, out) if state else ([sym], [out])
    assert len(out) == 1 + state * N_STATES[cls]
    for s, o in zip(sym, out):
        assert s.shape[1:] == o.shape[1:] and o.shape[0] == 2
    assert out[0].shape == ((2, 7, 5) if seq else (2, 5))


@pytest.mark.parametrize("cls", CLASSES)
def test_weights_have_keras_shapes_and_order(cls):
    layer = cls(4)
    layer(_x(1, 2, 3))
    n = {L.SimpleRNN: 1, L.LSTM: 4, L.GRU: 3}[cls]
    bias = (2, 12) if cls is L.GRU else (4 * n,)
    assert [w.shape for w in layer.get_weights()] == [(3, 4 * n), (4, 4 * n), bias]
    assert [w.name.split("/")[-1] for w in layer.weights] == ["kernel", "recurrent_kernel", "bias"]
    if cls is L.LSTM:  # unit_forget_bias: the forget gate's bias starts at 1
        assert np.array_equal(layer.cell.bias.value, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    assert L.GRU(4, reset_after=False).cell._bias_shape() == (12,)


def _last_and_states(model_out):
    return model_out if isinstance(model_out, list) else [model_out]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("opts", [dict(), dict(go_backwards=True), dict(return_sequences=True),
                                  dict(return_sequences=True, go_backwards=True)])
def test_gradients_through_return_state_and_initial_state(cls, opts):
    """A model x, h0(, c0) -> layer(x, initial_state) -> [output, states]: the input,
    initial-state and weight gradients against central differences (float32 layers)."""
    n = N_STATES[cls]
    x_in = L.Input((4, 3))
    s_in = [L.Input((5,)) for _ in range(n)]
    layer = cls(5, return_state=True, **opts)
    outs = layer(x_in, initial_state=s_in)
    model = faltung.Model([x_in] + s_in, outs)
    data = [_x(2, 4, 3, seed=2)] + [_x(2, 5, seed=3 + i) for i in range(n)]
    _fd_model(model, data, np.random.default_rng(1))


@pytest.mark.parametrize("cls", CLASSES)
def test_masked_padding_changes_nothing(cls):
    """Embedding(mask_zero) -> RNN: right-padded sequences give the outputs of the unpadded
    ones, and the padded steps get no gradient."""
    faltung.utils.set_random_seed(4)
    inp = L.Input((None,), dtype="int32")
    emb = L.Embedding(10, 4, mask_zero=True)
    rnn = cls(6)
    model = faltung.Model(inp, L.Dense(2)(rnn(emb(inp))))
    short = np.array([[3, 5, 2], [7, 1, 9]])
    padded = np.concatenate([short, np.zeros((2, 4), int)], axis=1)
    assert np.allclose(model.predict(short, verbose=0), model.predict(padded, verbose=0), atol=1e-6)
    seq = faltung.Model(inp, cls(6, return_sequences=True)(emb(inp)))
    out = seq.predict(padded, verbose=0)
    assert np.allclose(out[:, 3:], out[:, 2:3])  # masked steps repeat the last output (Keras)


@pytest.mark.parametrize("cls", CLASSES)
def test_go_backwards_equals_reversed_input(cls):
    fwd, bwd = cls(4, return_sequences=True), cls(4, return_sequences=True, go_backwards=True)
    x = _x(3, 6, 2)
    fwd(x)
    bwd(x)
    bwd.set_weights(fwd.get_weights())
    assert np.allclose(bwd(x), fwd(x[:, ::-1]), atol=1e-6)


@pytest.mark.parametrize("cls", CLASSES)
def test_stateful_batches_continue_the_sequence(cls):
    full = cls(4, return_sequences=True)
    part = cls(4, return_sequences=True, stateful=True)
    x = _x(2, 6, 3)
    full(x)
    faltung.Sequential([L.Input(batch_shape=(2, 3, 3)), part])
    part.set_weights(full.get_weights())
    whole = full(x)
    assert np.allclose(np.concatenate([part(x[:, :3]), part(x[:, 3:])], 1), whole, atol=1e-6)
    part.reset_states()
    assert np.allclose(part(x[:, :3]), whole[:, :3], atol=1e-6)
    with pytest.raises(ValueError, match=rf"Layer {part.name}: .*batch size of the input sequences "
                                         r"must be the same.* Expected an input of shape \(2, 3, 3\) "
                                         r"\(the carried states have shape \(2, 4\)\), received "
                                         r"shape \(1, 3, 3\)"):
        part(x[:1, :3])


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("seq", [False, True])
def test_stateful_gradients_over_two_batches(cls, seq):
    """Two consecutive stateful training batches: the second starts from the first's final
    states (carried), and its gradients (inputs and weights) treat those states as constants
    (Keras keeps them in variables: no gradient flows across batches). Central differences
    of each batch's sum(out * r) with the states it starts from held fixed."""
    layer = cls(3, return_sequences=seq, stateful=True)
    model = faltung.Sequential([L.Input(batch_shape=(2, 4, 3)), layer])
    xs = [_x(2, 4, 3, seed=30), _x(2, 4, 3, seed=31)]
    rng = np.random.default_rng(32)
    rs = [rng.normal(size=model.output_shape).astype(np.float32) for _ in xs]
    weights = model.trainable_weights
    starts, grads = [], []
    for x, r in zip(xs, rs):
        starts.append([s.copy() for s in layer.states])
        model.forward(x, training=True)
        grads.append([model.backward(r, need_dx=True)] + [v.grad.copy() for v in weights])
    assert np.any(starts[1][0])  # the second batch started where the first ended

    for x, r, start, g in zip(xs, rs, starts, grads):
        def f():
            layer.reset_states(start)
            return float((r.astype(np.float64) * model.forward(x)).sum())
        for arr, grad in zip([x] + [v.value for v in weights], g):
            for idx in [tuple(rng.integers(0, n) for n in arr.shape) for _ in range(3)]:
                assert grad[idx] == pytest.approx(central_difference(f, arr, idx, 1e-2),
                                                  rel=3e-2, abs=3e-3)

    def through_both():  # the second batch's loss if gradients did flow across the batches
        layer.reset_states(starts[0])
        model.forward(xs[0])
        return float((rs[1].astype(np.float64) * model.forward(xs[1])).sum())
    w = weights[1].value  # the recurrent kernel: the carried h feeds it at the first step
    full = np.array([central_difference(through_both, w, idx, 1e-2) for idx in np.ndindex(w.shape)])
    assert not np.allclose(full, grads[1][2].ravel(), rtol=3e-2, atol=3e-3)


def test_stateful_training_carries_state_and_reset_clears_it():
    model = faltung.Sequential([L.Input(batch_shape=(4, 5, 2)), L.LSTM(3, stateful=True),
                                L.Dense(1)])
    model.compile("sgd", "mse")
    x, y = _x(8, 5, 2), _x(8, 1, seed=1)
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert np.abs(model.layers[0].states[0]).sum() > 0
    model.layers[0].reset_states()
    assert np.abs(model.layers[0].states[0]).sum() == 0


@pytest.mark.parametrize("cls", CLASSES)
def test_dropout_only_in_training(cls):
    layer = cls(5, dropout=0.5, recurrent_dropout=0.3, seed=3)
    x = _x(4, 6, 3)
    a, b = layer(x), layer(x)
    assert np.array_equal(a, b)
    model = faltung.Sequential([L.Input((6, 3)), layer])
    model.forward(x, training=True)
    t = model.forward(x, training=True)
    assert not np.allclose(t, a)
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((4, 5), np.float32), verbose=0)  # backward through both masks


@pytest.mark.parametrize("dtype", [bool, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("make", [lambda: L.LSTM(3), lambda: L.GRU(3, return_sequences=True),
                                  lambda: L.SimpleRNN(3), lambda: L.Bidirectional(L.LSTM(2)),
                                  lambda: L.TimeDistributed(L.Dense(3))], ids=["lstm", "gru", "simple", "bi", "td"])
def test_bool_and_int_inputs_are_cast(make, dtype):
    layer = make()
    x = (np.random.default_rng(0).integers(0, 3, (2, 4, 5))).astype(dtype)
    y = layer(x)
    assert y.dtype == np.float32 and np.allclose(y, layer(x.astype(np.float32)))


def test_unroll_is_accepted_and_changes_nothing():
    x = _x(2, 4, 5)
    rolled, unrolled = L.LSTM(3, return_sequences=True), L.LSTM(3, return_sequences=True, unroll=True)
    rolled(x), unrolled(x)
    unrolled.set_weights(rolled.get_weights())
    assert unrolled.get_config()["unroll"] is True
    assert np.array_equal(rolled(x), unrolled(x))


def test_config_round_trip_and_keras_file(tmp_path):
    pytest.importorskip("h5py")
    inp = L.Input((5, 3))
    h, s1, s2 = L.LSTM(4, return_sequences=True, return_state=True, name="enc")(inp)
    out = L.GRU(4, reset_after=False, go_backwards=True, name="dec")(h, initial_state=s1)
    model = faltung.Model(inp, L.Dense(2)(L.Concatenate()([out, s2, L.SimpleRNN(2)(h)])))
    model.compile("adam", "mse")
    path = tmp_path / "rnn.keras"
    model.save(path)
    back = faltung.models.load_model(path)
    x = _x(3, 5, 3)
    assert np.allclose(model.predict(x, verbose=0), back.predict(x, verbose=0), atol=1e-6)
    cfg = model.get_layer("dec").get_config()
    assert cfg["reset_after"] is False and cfg["go_backwards"] is True and cfg["units"] == 4
    clone = L.GRU.from_config(cfg)
    assert clone.reset_after is False and clone.units == 4


class TwoStateCell:
    """A plain-object cell with two states: h' = tanh(x W + h U + c), c' = c / 2 + h'."""
    state_size = [3, 3]

    def __init__(self):
        rng = np.random.default_rng(7)
        self.w, self.u = rng.normal(size=(2, 3)) * 0.5, rng.normal(size=(3, 3)) * 0.5

    def call(self, inputs, states):
        h, c = states
        h = faltung.ops.tanh(faltung.ops.dot(inputs, self.w) + faltung.ops.dot(h, self.u) + c)
        return h, [h, c / 2 + h]


def _user_cell_reference(cell, x, states, mask, go_backwards):
    """The cell's step written again in float64 numpy, run by the reference's Keras loop."""
    if isinstance(cell, TwoStateCell):
        def step(x_t, b, s):
            h = np.tanh(x_t @ cell.w + s[0] @ cell.u + s[1])
            return h, s[1] / 2 + h
    else:
        W, U = (np.float64(v.value) for v in (cell.kernel, cell.recurrent_kernel))

        def step(x_t, b, s):
            return (x_t @ W + s[0] @ U,)
    return _run(step, np.float64(x), tuple(np.float64(s) for s in states), mask, go_backwards,
                False)


@pytest.mark.parametrize("two", [False, True], ids=["one_state", "two_states"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_user_cell_matches_a_numpy_loop(two, go_backwards, masked):
    """RNN(cell) over a user-written cell (Keras's protocol: states is a list even with one
    state): sequences, final states, masks and go_backwards against the reference loop."""
    cell = TwoStateCell() if two else minimal_rnn_cell(faltung, faltung.ops, 3)
    layer = L.RNN(cell, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = _x(2, 5, 2)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool) if masked else None
    states = [_x(2, 3, seed=1 + i) for i in range(1 + two)]
    out = layer(x, mask=mask, initial_state=states)
    hs, finals = _user_cell_reference(cell, x, states, mask, go_backwards)
    assert len(out) == 2 + two
    assert np.allclose(out[0], hs, atol=1e-5)
    for got, want in zip(out[1:], finals):
        assert np.allclose(got, want, atol=1e-5)
    last = L.RNN(cell, go_backwards=go_backwards)(x, mask=mask, initial_state=states)
    assert np.allclose(last, finals[0], atol=1e-5)  # the last output is the final h here


def test_user_cell_runs_in_a_model_and_refuses_training():
    cell = minimal_rnn_cell(faltung, faltung.ops, 3, name="minimal")
    inp = L.Input((None, 2))
    model = faltung.Model(inp, L.RNN(cell)(inp))
    x = _x(2, 4, 2)
    hs, (h,) = _user_cell_reference(cell, x, [np.zeros((2, 3))], None, False)
    assert np.allclose(model.predict(x, verbose=0), h, atol=1e-6)
    assert [w.path for w in model.weights] == ["minimal/kernel", "minimal/recurrent_kernel"]
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="cannot train through the user-written cell"):
        model.train_on_batch(x, np.zeros((2, 3), np.float32))


def test_user_cell_stateful_batches_continue_the_sequence():
    cell = TwoStateCell()
    part = L.RNN(cell, return_sequences=True, stateful=True)
    faltung.Sequential([L.Input(batch_shape=(2, 3, 2)), part])
    x = _x(2, 6, 2)
    hs, _ = _user_cell_reference(cell, x, [np.zeros((2, 3))] * 2, None, False)
    assert np.allclose(np.concatenate([part(x[:, :3]), part(x[:, 3:])], 1), hs, atol=1e-5)
    with pytest.raises(ValueError, match=rf"Layer {part.name}: .*received shape \(1, 3, 2\)"):
        part(x[:1, :3])


def test_rnn_of_builtin_cell_equals_the_layer():
    cell_layer = L.RNN(L.GRUCell(4), return_sequences=True)
    layer = L.GRU(4, return_sequences=True)
    x = _x(2, 5, 3)
    cell_layer(x)
    layer(x)
    cell_layer.set_weights(layer.get_weights())
    assert np.allclose(cell_layer(x), layer(x), atol=1e-6)
    h, states = layer.cell.call(x[:, 0], [np.zeros((2, 4), np.float32)])
    assert np.allclose(h, layer(x[:, :1])[:, 0], atol=1e-6)


def test_bad_input_names_the_layer_and_shapes():
    layer = L.LSTM(3, name="lstm_x")
    layer(_x(2, 4, 5))
    with pytest.raises(ValueError, match=r'layer "lstm_x" .*expected shape=\(None, 4, 5\), '
                                         r"found shape=\(2, 4, 6\)"):
        layer(_x(2, 4, 6))
    with pytest.raises(ValueError, match="expected ndim=3"):
        L.GRU(3)(_x(2, 4))
    with pytest.raises(ValueError, match=r"expects 2 initial state\(s\), received 1"):
        layer(_x(2, 4, 5), initial_state=[np.zeros((2, 3), np.float32)])
    with pytest.raises(ValueError, match=r"expected an initial state of shape \(2, 3\), received "
                                         r"shape \(2, 4\)"):
        layer(_x(2, 4, 5), initial_state=[np.zeros((2, 4), np.float32)] * 2)
    with pytest.raises(ValueError, match=r"expected a mask of shape \(2, 4\) \(batch, time\), "
                                         r"received shape \(2, 3\)"):
        layer(_x(2, 4, 5), mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="batch size must be static"):
        faltung.Sequential([L.Input((4, 5)), L.LSTM(3, stateful=True)])
    with pytest.raises(ValueError, match="`units`"):
        L.SimpleRNN(0)


ACTIVITY_CASES = {  # name -> (layer, the outputs its penalty covers, from its call's outputs)
    "SimpleRNN": lambda reg: L.SimpleRNN(3, activity_regularizer=reg),
    "LSTM-return_state": lambda reg: L.LSTM(3, return_state=True, activity_regularizer=reg),
    "GRU-sequences": lambda reg: L.GRU(3, return_sequences=True, activity_regularizer=reg),
    "Bidirectional-sum": lambda reg: L.Bidirectional(L.LSTM(3), merge_mode="sum",
                                                     activity_regularizer=reg),
    # the inner layers' own: the backward direction's output feeds no loss but its penalty
    "Bidirectional-None-inner": lambda reg: L.Bidirectional(L.LSTM(3, activity_regularizer=reg),
                                                            merge_mode=None),
}


@pytest.mark.parametrize("case", ACTIVITY_CASES)
def test_activity_regularizer_adds_to_the_loss_and_its_gradient(case):
    """Keras: the loss gains activity_regularizer(output) / batch size for every output of the
    layer (states too with return_state), in train and test steps; the gradient too."""
    from faltung.layers.layer import collect_activity_losses
    faltung.utils.set_random_seed(5)
    reg = faltung.regularizers.L1L2(l1=0.3, l2=0.7)
    layer = ACTIVITY_CASES[case](reg)
    inp = L.Input((4, 3))
    outs = layer(inp)
    head = outs[0] if isinstance(outs, list) else outs
    model = faltung.Model(inp, head)
    model.compile("sgd", "mse")
    x, y = _x(2, 4, 3, seed=40), _x(*((2, 4, 3) if "sequences" in case else (2, 3)), seed=41)
    values = layer(x)
    values = values if isinstance(values, list) else [values]
    penalty = sum(0.3 * np.abs(v).sum() / 2 + 0.7 * (np.float64(v) ** 2).sum() / 2 for v in values)
    mse = float(np.mean((np.float64(values[0]) - y) ** 2))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(mse + penalty, rel=1e-5)
    assert model.train_on_batch(x, y) == pytest.approx(mse + penalty, rel=1e-5)

    r = np.random.default_rng(42).normal(size=y.shape).astype(np.float32)
    with collect_activity_losses():
        model.forward(x, training=True)
    grads = [model.backward(r, need_dx=True)] + [v.grad.copy() for v in model.trainable_weights]

    def f():
        with collect_activity_losses() as activity:
            out = model.forward(x)
        return float((r.astype(np.float64) * out).sum()) + sum(activity)
    rng = np.random.default_rng(43)
    for arr, g in zip([x] + [v.value for v in model.trainable_weights], grads):
        for idx in [tuple(rng.integers(0, n) for n in arr.shape) for _ in range(3)]:
            assert g[idx] == pytest.approx(central_difference(f, arr, idx, 1e-3), rel=3e-2, abs=3e-3)


def test_dense_activity_regularizer_is_the_same_mechanism():
    dense = L.Dense(2, activity_regularizer=faltung.regularizers.L2(0.5))
    model = faltung.Sequential([L.Input((3,)), dense])
    model.compile("sgd", "mse")
    x, y = _x(4, 3), _x(4, 2, seed=1)
    out = np.float64(dense(x))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        np.mean((out - y) ** 2) + 0.5 * (out ** 2).sum() / 4, rel=1e-5)
    # an output that no loss reaches still takes its penalty's gradient: an SGD step
    inp = L.Input((3,))
    free = L.Dense(2, use_bias=False, activity_regularizer=faltung.regularizers.L2(0.5))
    model = faltung.Model(inp, [L.Dense(2)(inp), free(inp)])
    model.compile(faltung.optimizers.SGD(0.1), ["mse", None])
    w = free.kernel.value.copy()
    model.train_on_batch(x, [y, y])
    grad = np.float64(x).T @ (np.float64(x) @ w) / 4  # d(0.5 sum(out^2) / 4) / dW
    assert np.allclose(free.kernel.value, w - 0.1 * grad, atol=1e-6)


def test_activity_penalties_under_outputs_without_a_loss():
    """Only the first output has a loss: a nested model's Dense penalty and a Bidirectional's
    inner LSTM penalty still enter the loss and take their gradients (the calls above them run
    their backward with zeros for their outputs); TimeDistributed's inner layer adds none
    (Keras runs its `call`). The SGD step's change of every weight is its gradient against
    central differences of the evaluated loss."""
    faltung.utils.set_random_seed(8)
    ii, inp = L.Input((4, 3)), L.Input((4, 3))
    inner = faltung.Model(ii, L.Dense(2, activity_regularizer=faltung.regularizers.L2(0.4))(ii))
    td = L.TimeDistributed(L.Dense(2, activity_regularizer=faltung.regularizers.L1(0.3)))
    outs = [L.Dense(2)(L.Flatten()(inp)), inner(L.Dense(3)(inp)),
            L.Bidirectional(L.LSTM(2, activity_regularizer=faltung.regularizers.L2(1.0)))(inp), td(inp)]
    model = faltung.Model(inp, outs)
    model.compile(faltung.optimizers.SGD(1.0), ["mse", None, None, None])
    x, y = _x(2, 4, 3, seed=80), _x(2, 2, seed=81)
    ys = [y, y, y, np.zeros((2, 4, 2), np.float32)]
    head, nested, bi, _ = model.predict(x, verbose=0)
    lstm_f = model.layers[-2].forward_layer  # (the inner LSTM's penalty is each direction's)
    want = np.mean((np.float64(head) - y) ** 2) + 0.4 * (np.float64(nested) ** 2).sum() / 2
    loss = model.evaluate(x, ys, verbose=0)
    assert loss > want  # the two LSTM directions' penalties on top, TimeDistributed's not:
    f_out = lstm_f(x)
    b_out = model.layers[-2].backward_layer(x)
    want += 1.0 * ((np.float64(f_out) ** 2).sum() + (np.float64(b_out) ** 2).sum()) / 2
    assert loss == pytest.approx(want, rel=1e-5)

    before = [v.value.copy() for v in model.trainable_weights]
    model.train_on_batch(x, ys)
    grads = [b - v.value for b, v in zip(before, model.trainable_weights)]
    for v, b in zip(model.trainable_weights, before):
        v.value[...] = b

    def f():
        return model.evaluate(x, ys, verbose=0)
    rng = np.random.default_rng(82)
    for v, g in zip(model.trainable_weights, grads):
        for idx in [tuple(rng.integers(0, n) for n in v.value.shape) for _ in range(2)]:
            assert g[idx] == pytest.approx(central_difference(f, v.value, idx, 1e-2), rel=5e-2, abs=3e-3)


def test_activity_regularizer_is_refused_under_data_parallel(monkeypatch):
    """Each process would add only its own rows' penalty: a clear error on every rank."""
    from faltung.distribution import replica
    model = faltung.Sequential([L.Input((3,)), L.Dense(2, activity_regularizer="l2")])
    model.compile("sgd", "mse")
    monkeypatch.setattr(replica, "is_distributed", lambda: True)
    for step in (model.train_on_batch, model.test_on_batch):
        with pytest.raises(NotImplementedError, match="activity_regularizer.*DataParallel"):
            step(_x(4, 3), _x(4, 2))


def test_activity_regularizer_in_the_config_and_keras_file(tmp_path):
    pytest.importorskip("h5py")
    model = faltung.Sequential([L.Input((4, 3)), L.GRU(3, return_sequences=True, activity_regularizer="l2"),
                                L.Bidirectional(L.LSTM(2), activity_regularizer=faltung.regularizers.L1(0.2))])
    for layer in model.layers:
        cfg = layer.get_config()
        assert cfg["activity_regularizer"] == faltung.regularizers.serialize(layer.activity_regularizer)
        assert type(type(layer).from_config(cfg).activity_regularizer) is type(layer.activity_regularizer)
    model.compile("sgd", "mse")
    path = tmp_path / "act.keras"
    model.save(path)
    back = faltung.models.load_model(path)
    assert back.layers[1].activity_regularizer.l1 == pytest.approx(0.2)
    x, y = _x(2, 4, 3), _x(2, 4, seed=1)
    assert back.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)
    assert L.LSTM(2).get_config()["activity_regularizer"] is None


def test_lstm_learns_fashion_mnist_rows():
    try:
        (x, y), (xt, yt) = faltung.datasets.fashion_mnist.load_data()
    except (FileNotFoundError, RuntimeError) as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    faltung.utils.set_random_seed(0)
    x, xt = x[:3000].astype(np.float32) / 255, xt[:500].astype(np.float32) / 255
    model = faltung.Sequential([L.Input((28, 28)), L.LSTM(32), L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y[:3000], batch_size=32, epochs=2, verbose=0)
    assert model.evaluate(xt, yt[:500], verbose=0)[1] > 0.6


# -- Bidirectional and TimeDistributed ---------------------------------------------------------
def _fd_model(model, data, rng, tol=3e-2):
    ys = model.forward(data, training=True)
    ys = ys if isinstance(ys, list) else [ys]
    rs = [rng.normal(size=y.shape).astype(np.float32) for y in ys]
    grads = model.backward(rs if len(rs) > 1 else rs[0], need_dx=True)
    grads = grads if isinstance(grads, list) else [grads]

    def f():
        out = model.forward(data)
        out = out if isinstance(out, list) else [out]
        return sum(float((r.astype(np.float64) * y).sum()) for r, y in zip(rs, out))
    arrays = data if isinstance(data, list) else [data]
    checks = list(zip(arrays, grads)) + [(v.value, v.grad.copy()) for v in model.trainable_weights]
    for arr, g in checks:
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(3)]:
            assert g[idx] == pytest.approx(central_difference(f, arr, idx, 1e-2), rel=tol, abs=3e-3)


def test_constant_initial_states_in_a_graph_leave_the_gradients_to_the_tensors():
    """Constants in `initial_state` (arrays, nested lists) take no gradient: the layer before an
    RNN started from constants gets its dx (not the RNN's (dx, {...}) pair), and a tensor after a
    constant in the list gets its own gradient (not the constant's)."""
    x_in, v_in = L.Input((4, 3)), L.Input((2,))
    h = L.LSTM(3, return_sequences=True)(L.Dense(3)(x_in), initial_state=[_x(2, 3, seed=7), _x(2, 3, seed=8)])
    out = L.Bidirectional(L.GRU(2))(h, initial_state=[_x(2, 2, seed=9).tolist(), L.Dense(2)(v_in)])
    model = faltung.Model([x_in, v_in], out)
    _fd_model(model, [_x(2, 4, 3, seed=10), _x(2, 2, seed=11)], np.random.default_rng(12))


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("seq", [False, True])
def test_bidirectional_merge_modes_gradients(mode, seq):
    inp = L.Input((4, 3))
    outs = L.Bidirectional(L.GRU(3, return_sequences=seq, return_state=True), merge_mode=mode)(inp)
    model = faltung.Model(inp, outs)
    _fd_model(model, _x(2, 4, 3, seed=5), np.random.default_rng(6))


def test_bidirectional_equals_forward_and_reversed_backward_layers():
    x = _x(2, 6, 3)
    bi = L.Bidirectional(L.LSTM(4, return_sequences=True))
    y = bi(x)
    fwd = L.LSTM(4, return_sequences=True)
    bwd = L.LSTM(4, return_sequences=True, go_backwards=True)
    fwd(x)
    bwd(x)
    fwd.set_weights(bi.get_weights()[:3])
    bwd.set_weights(bi.get_weights()[3:])
    assert np.allclose(y, np.concatenate([fwd(x), bwd(x)[:, ::-1]], -1), atol=1e-6)
    assert bi.weights[0] is bi.forward_layer.cell.kernel


def _reference_direction(layer, x):
    """One direction of a Bidirectional by the float64 numpy reference on its own weights: the
    last output, or the sequence in input order (a go_backwards one flipped back)."""
    fn = {L.SimpleRNN: rnn_ref.simple_rnn, L.LSTM: rnn_ref.lstm, L.GRU: rnn_ref.gru}[type(layer)]
    kw = dict(reset_after=layer.reset_after) if isinstance(layer, L.GRU) else {}
    hs, h_last = fn(x, *layer.get_weights(), go_backwards=layer.go_backwards, **kw)[:2]
    if not layer.return_sequences:
        return h_last
    return hs[:, ::-1] if layer.go_backwards else hs


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("backward", ["copy", "GRU"])
def test_bidirectional_merge_modes_against_the_reference(mode, seq, backward):
    """Each merge mode of the two directions, computed from the float64 reference of each (the
    backward one on the reversed input): the default copy of the layer, or an explicit
    `backward_layer` of another kind (a GRU under an LSTM)."""
    back = L.GRU(3, return_sequences=seq, go_backwards=True) if backward == "GRU" else None
    bi = L.Bidirectional(L.LSTM(3, return_sequences=seq), merge_mode=mode, backward_layer=back)
    x = _x(2, 5, 4, seed=50)
    bi(x)
    rng = np.random.default_rng(51)
    bi.set_weights([rng.normal(size=w.shape) * 0.5 for w in bi.get_weights()])
    f = _reference_direction(bi.forward_layer, x)
    b = _reference_direction(bi.backward_layer, x)
    want = {"concat": [np.concatenate([f, b], -1)], "sum": [f + b], "mul": [f * b],
            "ave": [(f + b) / 2], None: [f, b]}[mode]
    got = bi(x)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.allclose(g, w, atol=1e-5)
    if backward == "GRU":
        assert isinstance(bi.backward_layer, L.GRU) and bi.backward_layer is back


def test_bidirectional_masks_and_initial_state_gradients():
    faltung.utils.set_random_seed(2)
    x_in = L.Input((5,), dtype="int32")
    s_in = [L.Input((3,)) for _ in range(4)]
    emb = L.Embedding(8, 3, mask_zero=True)(x_in)
    out = L.Bidirectional(L.LSTM(3, return_sequences=True))(emb, initial_state=s_in)
    model = faltung.Model([x_in] + s_in, L.Dense(2)(out))
    tokens = np.array([[1, 4, 2, 0, 0], [3, 3, 5, 6, 1]])
    states = [_x(2, 3, seed=10 + i) for i in range(4)]
    seq = faltung.Model([x_in] + s_in, out).predict([tokens] + states, verbose=0)
    assert np.array_equal(seq[0, 3:], np.zeros((2, 6)))  # masked steps output zeros (Keras)
    rng = np.random.default_rng(3)
    ys = model.forward([tokens] + states, training=True)
    r = rng.normal(size=ys.shape).astype(np.float32)
    grads = model.backward(r, need_dx=True)
    assert grads[0] is None and all(g.shape == (2, 3) for g in grads[1:])

    def f():
        return float((r.astype(np.float64) * model.forward([tokens] + states)).sum())
    for s, g in zip(states, grads[1:]):
        assert g[1, 2] == pytest.approx(central_difference(f, s, (1, 2), 1e-2), rel=3e-2, abs=3e-3)


@pytest.mark.parametrize("used", [0, 1])
def test_bidirectional_initial_state_gradients_when_one_direction_is_unused(used):
    # merge_mode=None and only one direction's output feeding the loss: the other direction
    # takes no gradient, and the initial-state gradients must still go to their own tensors
    # (the used direction's, not the first half of the list)
    x_in = L.Input((4, 3))
    s_in = [L.Input((2,)) for _ in range(4)]
    outs = L.Bidirectional(L.LSTM(2, return_sequences=True), merge_mode=None)(x_in, initial_state=s_in)
    model = faltung.Model([x_in] + s_in, outs[used])
    data = [_x(2, 4, 3, seed=20)] + [_x(2, 2, seed=21 + i) for i in range(4)]
    r = np.random.default_rng(4).normal(size=(2, 4, 2)).astype(np.float32)
    model.forward(data, training=True)
    grads = model.backward(r, need_dx=True)

    def f():
        return float((r.astype(np.float64) * model.forward(data)).sum())
    for i in range(1, 5):
        if (i - 1) // 2 != used:
            assert grads[i] is None or not np.any(grads[i])
        else:
            assert grads[i][1, 1] == pytest.approx(central_difference(f, data[i], (1, 1), 1e-2),
                                                   rel=3e-2, abs=3e-3)


def test_bidirectional_backward_layer_of_another_kind_keeps_its_own_states():
    """An LSTM (2 states, 2 units) under a GRU backward_layer (1 state, 5 units): initial_state is
    the forward layer's 2 states then the backward layer's 1, return_state gives them back in
    that order with their own shapes, the values equal each direction run alone, and every
    state's gradient reaches its own tensor (central differences). A wrong count of initial
    states, or sum over outputs of different widths, is a ValueError naming the layer."""
    x_in = L.Input((4, 3))
    s_in = [L.Input((2,)), L.Input((2,)), L.Input((5,))]
    bi = L.Bidirectional(L.LSTM(2, return_sequences=True, return_state=True),
                         backward_layer=L.GRU(5, return_sequences=True, return_state=True, go_backwards=True))
    outs = bi(x_in, initial_state=s_in)
    assert [tuple(o.shape) for o in outs] == [(None, 4, 7), (None, 2), (None, 2), (None, 5)]
    model = faltung.Model([x_in] + s_in, outs)
    data = [_x(2, 4, 3, seed=60), _x(2, 2, seed=61), _x(2, 2, seed=62), _x(2, 5, seed=63)]
    got = model.predict(data, verbose=0)
    f_seq, f_h, f_c = bi.forward_layer(data[0], initial_state=data[1:3])
    b_seq, b_h = bi.backward_layer(data[0], initial_state=data[3:])
    want = [np.concatenate([f_seq, b_seq[:, ::-1]], -1), f_h, f_c, b_h]
    assert all(g.shape == w.shape and np.allclose(g, w, atol=1e-6) for g, w in zip(got, want))
    _fd_model(model, data, np.random.default_rng(64))
    with pytest.raises(ValueError, match=r"Bidirectional\) expects 3 initial states \(2 for .*1 for .*received 4"):
        bi(data[0], initial_state=data[1:3] + data[1:3])
    for call in (lambda layer: layer(data[0]), lambda layer: layer(L.Input((4, 3)))):  # eager, symbolic
        wide = L.Bidirectional(L.LSTM(2), merge_mode="sum", backward_layer=L.GRU(5, go_backwards=True))
        with pytest.raises(ValueError, match=r"merge_mode='sum'.*, 2\).*, 5\)"):
            call(wide)


@pytest.mark.parametrize("make", [lambda: L.Bidirectional(L.Dense(3)),
                                  lambda: L.Bidirectional(L.LSTM(3), backward_layer=L.Dense(2))],
                         ids=["layer", "backward_layer"])
def test_bidirectional_refuses_a_layer_that_is_not_recurrent(make):
    with pytest.raises(ValueError, match=r"must be a recurrent layer .*received Dense"):
        make()


def test_bidirectional_config_and_keras_file(tmp_path):
    pytest.importorskip("h5py")
    model = faltung.Sequential([L.Input((6, 4)),
                                L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode="sum"),
                                L.Bidirectional(L.GRU(3)), L.Dense(2)])
    model.compile("adam", "mse")
    path = tmp_path / "bi.keras"
    model.save(path)
    back = faltung.models.load_model(path)
    x = _x(3, 6, 4)
    assert np.allclose(model.predict(x, verbose=0), back.predict(x, verbose=0), atol=1e-6)
    assert back.layers[0].merge_mode == "sum" and back.layers[0].backward_layer.go_backwards
    with pytest.raises(ValueError, match="Invalid merge mode"):
        L.Bidirectional(L.LSTM(2), merge_mode="max")


def test_time_distributed_dense_and_conv():
    x = _x(2, 5, 3)
    td = L.TimeDistributed(L.Dense(4))
    y = td(x)
    dense = L.Dense(4)
    dense(x)
    dense.set_weights(td.get_weights())
    assert np.allclose(y, dense(x), atol=1e-6)
    frames = _x(2, 3, 6, 6, 1)
    conv_td = L.TimeDistributed(L.Conv2D(2, 3))
    out = conv_td(frames)
    assert out.shape == (2, 3, 4, 4, 2)
    assert np.allclose(out[:, 1], conv_td.layer(frames[:, 1]), atol=1e-5)
    inp = L.Input((3, 6, 6, 1))
    model = faltung.Model(inp, L.TimeDistributed(L.Conv2D(2, 3, activation="tanh"))(inp))
    _fd_model(model, frames, np.random.default_rng(7))


def test_frozen_recurrent_layer_gets_no_weight_gradients():
    model = faltung.Sequential([L.Input((4, 3)), L.LSTM(3), L.Dense(1)])
    model.layers[0].trainable = False
    model.compile("sgd", "mse")
    before = model.layers[0].get_weights()
    model.fit(_x(8, 4, 3), _x(8, 1, seed=1), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.layers[0].get_weights()))
    assert all(w.grad is None for w in model.layers[0].weights)


@pytest.mark.parametrize("cls", CLASSES)
def test_nan_input_propagates(cls):
    # A NaN reaches every later output of its sample (nothing hides it from TerminateOnNaN)
    # and leaves the other samples alone.
    layer = cls(3, return_sequences=True)
    x = _x(2, 4, 2)
    layer(x)
    bad = x.copy()
    bad[0, 1, 0] = np.nan
    out = layer(bad)
    assert np.isnan(out[0, 1:]).all() and np.isfinite(out[0, :1]).all()
    assert np.allclose(out[1], layer(x)[1])


@pytest.mark.parametrize("cls", CLASSES)
def test_inf_input_saturates(cls):
    layer = cls(3, return_sequences=True)
    x = _x(2, 4, 2)
    layer(x)
    x[0, 1, 0] = np.inf
    assert np.isfinite(layer(x)).all()


def test_mask_argument_from_a_model_input_trains():
    """`LSTM(...)(h, mask=m)` with `m` a model input, after a Dense (so the LSTM's input
    gradient is wanted): the graph's backward takes the layer's plain dx (a mask takes no
    gradient; it failed to unpack it). Training on 5 steps with the last 2 masked equals
    training on the first 3 steps."""
    rng = np.random.default_rng(0)
    xs, ys = rng.random((6, 5, 3)).astype("float32"), rng.random((6, 2)).astype("float32")
    ms = np.ones((6, 5), bool)
    ms[:, 3:] = False

    def make(steps, with_mask):
        x = L.Input((steps, 3))
        m = L.Input((steps,), dtype="bool") if with_mask else None
        d = L.Dense(3)(x)
        h = L.LSTM(4)(d, mask=m) if with_mask else L.LSTM(4)(d)
        model = faltung.Model([x, m] if with_mask else x, L.Dense(2)(h))
        model.compile(faltung.optimizers.SGD(0.1), "mse")
        return model

    masked, short = make(5, True), make(3, False)
    short.set_weights(masked.get_weights())
    masked.fit([xs, ms], ys, batch_size=3, epochs=2, shuffle=False, verbose=0)
    short.fit(xs[:, :3], ys, batch_size=3, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(masked.get_weights(), short.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
