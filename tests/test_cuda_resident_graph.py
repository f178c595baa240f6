"""Device-resident functional models (faltung.models.resident_graph), the losses
(resident_losses), sample and class weights and gradient clipping on the test harness
faltung._cuda_host (faltung._device._harness_device(): the path of faltung.device("gpu:0")
without cudaMalloc/cudaMemcpy).

Held to the ordinary CPU fit in float32 (loose: sums run in other orders), and in float64 to
central differences of the device's own loss (tight): the gradient one SGD step applies is
the derivative of the loss the device evaluates.
"""
import importlib

import numpy as np
import pytest

from faltung import _device
from faltung.layers import (Activation, Add, Average, BatchNormalization, Concatenate, Dense, Embedding,
                            Flatten, Input, Masking, Maximum, Minimum, Multiply, Subtract)
from faltung.losses import (BinaryCrossentropy, CategoricalCrossentropy, Hinge, Huber, MeanAbsoluteError,
                            MeanSquaredError, SparseCategoricalCrossentropy)
from faltung.models import Model, Sequential, load_model
from faltung.optimizers import SGD, Adam, RMSprop

host = pytest.importorskip("faltung._cuda_host", reason="built with -DFALTUNG_CUDA_HOST_HARNESS=OFF")

RNG = np.random.default_rng(1)
N = 16
XA, XB = RNG.standard_normal((N, 5)).astype(np.float32), RNG.standard_normal((N, 4)).astype(np.float32)
X3 = RNG.standard_normal((N, 3, 4)).astype(np.float32)
LABELS, REAL = RNG.integers(0, 3, N), RNG.standard_normal((N, 2)).astype(np.float32)


def two_by_two():
    """Two inputs, two outputs; every merge layer; `ha` read by five layers; broadcasting Add."""
    a, b, s = Input((5,), name="a"), Input((4,), name="b"), Input((3, 4), name="s")
    ha = Dense(6, activation="tanh", name="ha")(a)
    hb = Dense(6, activation="sigmoid", name="hb")(b)
    m = Multiply(name="mul")([Add(name="add")([ha, hb]), Subtract(name="sub")([ha, hb])])
    cat = Concatenate(name="cat")([Average(name="avg")([ha, hb, m]), Maximum(name="max")([ha, m]),
                                   Minimum(name="min")([hb, m])])
    seq = Flatten(name="flat")(Add(name="bcast")([s, Dense(4, name="hs")(ha)]))  # (N,3,4) + (N,4)
    cls = Dense(3, name="cls")(Concatenate(name="cat2")([cat, seq]))
    reg = Dense(2, name="reg")(Concatenate(name="cat3", axis=1)([m, b]))
    return Model([a, b, s], [cls, reg])


def shared():
    """A layer called on two inputs, a layer called on its own output, a tensor read twice, a
    call recorded with training=False (the normalization at inference while training) and a
    layer without ops (a linear activation)."""
    a, b = Input((5,), name="a"), Input((5,), name="b")
    enc, again = Dense(4, activation="tanh", name="enc"), Dense(4, activation="tanh", name="again")
    ea, eb = enc(a), enc(b)
    h = Dense(4, activation="relu", name="h")(ea)
    h = BatchNormalization(moving_mean_initializer="random_normal", name="bn")(h, training=False)
    merged = Activation("linear", name="linear")(Add(name="add")([h, eb, ea, again(again(eb))]))
    return Model([a, b], Dense(3, name="out")(merged))


def pair(make, dtype="float32"):
    """(CPU model, resident model) with the same initial weights."""
    cpu = make()
    with _device._harness_device(dtype):
        dev = make()
    assert dev._resident is not None and cpu._resident is None
    dev.set_weights(cpu.get_weights())
    return cpu, dev


def loose(a, b):
    assert np.all(np.isfinite(b)), "the CPU reference is not finite"
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def fit_alike(cpu, dev, x, y, batch_size=6, **kw):
    """Both fit two epochs in order: logs, weights, optimizer slots, evaluate and predict agree."""
    hc = cpu.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0, **kw).history
    hd = dev.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0, **kw).history
    assert sorted(hd) == sorted(hc)
    for key in hc:
        loose(hd[key], hc[key])
    for a, b in zip(dev.get_weights() + dev.optimizer.get_weights(), cpu.get_weights() + cpu.optimizer.get_weights()):
        loose(a, b)
    sw = kw.get("sample_weight")
    loose(dev.evaluate(x, y, sample_weight=sw, verbose=0), cpu.evaluate(x, y, sample_weight=sw, verbose=0))
    pd, pc = dev.predict(x, batch_size=5, verbose=0), cpu.predict(x, batch_size=5, verbose=0)
    for a, b in zip(pd if isinstance(pd, list) else [pd], pc if isinstance(pc, list) else [pc]):
        assert a.dtype == np.float32
        loose(a, b)
    return hc, hd


def compile_both(cpu, dev, make_opt, loss, **kw):
    for m in (cpu, dev):
        m.compile(make_opt(), loss, **kw)


# ---- graphs -----------------------------------------------------------------------------------

def test_two_inputs_two_outputs_with_merges_match_the_cpu_fit():
    cpu, dev = pair(two_by_two)
    compile_both(cpu, dev, lambda: Adam(0.01), {"cls": SparseCategoricalCrossentropy(from_logits=True),
                                                "reg": "mse"},
                 loss_weights={"cls": 1.0, "reg": 0.5}, metrics={"cls": ["accuracy"]})
    hc, hd = fit_alike(cpu, dev, [XA, XB, X3], {"cls": LABELS, "reg": REAL})
    assert {"loss", "cls_loss", "reg_loss", "cls_accuracy"} <= set(hd)
    for a, b in zip(dev([XA[:3], XB[:3], X3[:3]]), cpu([XA[:3], XB[:3], X3[:3]])):
        loose(a, b)


def test_shared_layers_and_fan_out_match_the_cpu_fit():
    cpu, dev = pair(shared)
    compile_both(cpu, dev, lambda: SGD(0.1, momentum=0.9), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, [XA, XA[::-1].copy()], LABELS)


def test_sequential_through_the_graph_and_an_output_without_loss():
    """An output with no loss gets no gradient; Sequential models run on the same graph path."""
    cpu, dev = pair(two_by_two)
    compile_both(cpu, dev, lambda: Adam(0.01), [None, "mae"])
    fit_alike(cpu, dev, [XA, XB, X3], [None, REAL])


def test_a_saved_functional_model_loads_resident_and_a_subclassed_model_trains(tmp_path):
    cpu, dev = pair(two_by_two)
    compile_both(cpu, dev, lambda: Adam(0.01), [SparseCategoricalCrossentropy(from_logits=True), "mse"])
    fit_alike(cpu, dev, [XA, XB, X3], [LABELS, REAL])
    dev.save(tmp_path / "m.keras")
    with _device._harness_device():
        again = load_model(tmp_path / "m.keras")
    assert again._resident is not None
    for a, b in zip(again.predict([XA, XB, X3], verbose=0), cpu.predict([XA, XB, X3], verbose=0)):
        loose(a, b)

    class Sub(Model):  # traced from `call` when first built: inside the scope, resident
        def __init__(self, **kw):
            super().__init__(**kw)
            self.hidden, self.out = Dense(4, activation="relu", name="hidden"), Dense(3, name="out")

        def call(self, x):
            return self.out(self.hidden(x))

    cpu, dev = Sub(name="sub"), Sub(name="sub")
    cpu.build((None, 5))
    with _device._harness_device():
        dev.build((None, 5))
    assert dev._resident is not None
    dev.set_weights(cpu.get_weights())
    compile_both(cpu, dev, lambda: SGD(0.1), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, XA, LABELS)


FD_CASES = {
    "merges-two-outputs": (two_by_two, lambda n: ([XA[:n], XB[:n], X3[:n]], [LABELS[:n], REAL[:n]]),
                           [SparseCategoricalCrossentropy(from_logits=True), Huber(delta=0.3)], [0.7, 1.3]),
    "shared-layers": (shared, lambda n: ([XA[:n], XA[n:2 * n]], ONEHOT[:n]),
                      CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), None),
}


@pytest.mark.parametrize("case", list(FD_CASES))
def test_float64_gradients_equal_central_differences_of_the_device_loss(case):
    make, data, loss, loss_weights = FD_CASES[case]
    x, y = data(5)
    sw = RNG.uniform(0.5, 2, 5)
    step_is_the_gradient(make, x, y, loss, loss_weights, [sw, None] if isinstance(y, list) else sw)


def step_is_the_gradient(make, x, y, loss, loss_weights=None, sw=None):
    """One SGD(1) step subtracts the gradient; it equals d(loss)/d(w) of test_on_batch, in float64
    (three entries of each trainable weight)."""
    _, dev = pair(make, "float64")
    dev.compile(SGD(1.0), loss, loss_weights=loss_weights)
    res = dev._resident
    w0 = res.get_weights()
    dev.train_on_batch(x, y, sample_weight=sw)
    steps = [a - b for a, b in zip(w0, res.get_weights())]
    variables, trainable = dev.weights, {id(v) for v in dev.trainable_weights}

    def loss_at(weights):  # the total loss (test_on_batch gives [total, per-output...] for two outputs)
        for v, w in zip(variables, weights):
            res.arrays[id(v)] = host.DeviceArray(w, np.float64)
        return np.atleast_1d(dev.test_on_batch(x, y, sample_weight=sw))[0]

    steps_are_central_differences(steps, w0, loss_at, variables, RNG, trainable)


def steps_are_central_differences(steps, w0, loss_at, variables, rng, trainable=None):
    """Each SGD(1) step's entries (three per weight; only the ids in `trainable` if given) equal
    the central difference of loss_at(weights) at w0, in float64."""
    h = 1e-6
    for k, (v, w) in enumerate(zip(variables, w0)):
        if trainable is not None and id(v) not in trainable:
            continue
        for idx in rng.choice(w.size, size=min(3, w.size), replace=False):
            up, down = [a.copy() for a in w0], [a.copy() for a in w0]
            up[k].flat[idx] += h
            down[k].flat[idx] -= h
            numeric = (loss_at(up) - loss_at(down)) / (2 * h)
            np.testing.assert_allclose(steps[k].flat[idx], numeric, rtol=1e-6, atol=1e-9, err_msg=v.name)


# ---- losses -----------------------------------------------------------------------------------

ONEHOT = np.eye(3, dtype=np.float32)[LABELS]
SOFT = RNG.dirichlet(np.ones(3), N).astype(np.float32)
BINARY = (RNG.random((N, 3)) > 0.5).astype(np.float32)
TARGETS3 = RNG.standard_normal((N, 3)).astype(np.float32)

LOSSES = {
    "cce-logits-smoothing": (lambda: CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), None, SOFT),
    "cce-softmax-output": (lambda: CategoricalCrossentropy(), "softmax", ONEHOT),
    "cce-probabilities": (lambda: CategoricalCrossentropy(label_smoothing=0.2), "sigmoid", ONEHOT),
    "scce-probabilities": (lambda: SparseCategoricalCrossentropy(), "sigmoid", LABELS),
    "bce-logits-smoothing": (lambda: BinaryCrossentropy(from_logits=True, label_smoothing=0.1), None, BINARY),
    "bce-probabilities": (lambda: BinaryCrossentropy(), "sigmoid", BINARY),
    "bce-string": (lambda: "binary_crossentropy", "sigmoid", BINARY),
    "mse": (lambda: MeanSquaredError(), None, TARGETS3),
    "mae": (lambda: MeanAbsoluteError(), None, TARGETS3),
    "huber": (lambda: Huber(delta=0.5), None, TARGETS3),
}


@pytest.mark.parametrize("loss", [
    CategoricalCrossentropy(from_logits=True, label_smoothing=0.3), CategoricalCrossentropy(label_smoothing=0.1),
    SparseCategoricalCrossentropy(from_logits=True), SparseCategoricalCrossentropy(),
    BinaryCrossentropy(from_logits=True, label_smoothing=0.2), BinaryCrossentropy(), MeanSquaredError(),
    MeanAbsoluteError(), Huber(delta=0.4)], ids=lambda l: f"{l.name}-{getattr(l, 'from_logits', '')}")
def test_each_loss_kernel_equals_the_cpu_loss_in_float64(loss):
    """Values and gradients with sample weights, probabilities clipped at 0 and 1 included."""
    from types import SimpleNamespace
    from faltung.models.resident_losses import DeviceLoss
    p = RNG.uniform(0.05, 1, (7, 4))
    if not getattr(loss, "from_logits", True):
        p[0, 1], p[1, 2] = 0.0, 1.0  # outside the clip [1e-7, 1 - 1e-7]
    else:
        p = RNG.standard_normal((7, 4)) * 3
    if isinstance(loss, SparseCategoricalCrossentropy):
        t = RNG.integers(0, 4, 7)
    elif isinstance(loss, BinaryCrossentropy):
        t = (RNG.random((7, 4)) > 0.5).astype(np.float64)
    else:
        t = RNG.dirichlet(np.ones(4), 7)
    w = RNG.uniform(0, 2, 7)
    value, grad = loss.value_and_grad(t, p, sample_weight=w)
    from faltung.models.resident_metrics import BatchStats, BatchTargets
    dev = DeviceLoss(loss, 2, False, "test")
    res = SimpleNamespace(r=host.resident, dtype=np.float64, DeviceArray=host.DeviceArray)
    stats = BatchStats(res, 1)
    n, slot, dgrad = dev(res, host.DeviceArray(p), BatchTargets(res, t), w, 1.0, True, stats)
    got = stats.read()[slot] / n
    np.testing.assert_allclose(got, value, rtol=1e-13)
    np.testing.assert_allclose(dgrad.numpy(), grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(LOSSES))
def test_each_loss_matches_the_cpu_fit(name):
    make_loss, activation, target = LOSSES[name]

    def make():
        a = Input((5,))
        return Model(a, Dense(3, activation=activation, name="out")(Dense(6, activation="tanh")(a)))
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: Adam(0.02), make_loss())
    fit_alike(cpu, dev, XA, target)


def test_sequence_output_with_per_position_weights_matches_the_cpu_fit():
    def make():
        return Sequential([Input((3, 4)), Dense(5, activation="tanh"), Dense(3)])
    cpu, dev = pair(make)
    compile_both(cpu, dev, lambda: Adam(0.02), SparseCategoricalCrossentropy(from_logits=True))
    labels = RNG.integers(0, 3, (N, 3))
    fit_alike(cpu, dev, X3, labels, sample_weight=RNG.uniform(0, 2, (N, 3)).astype(np.float32))


# ---- sample and class weights -----------------------------------------------------------------

def dense_model():
    return Sequential([Input((5,)), Dense(6, activation="relu"), Dense(3)])


def test_sample_weights_match_the_cpu_fit_and_evaluate():
    cpu, dev = pair(dense_model)
    compile_both(cpu, dev, lambda: SGD(0.1), SparseCategoricalCrossentropy(from_logits=True),
                 weighted_metrics=["accuracy"])
    fit_alike(cpu, dev, XA, LABELS, sample_weight=RNG.uniform(0, 2, N).astype(np.float32))


def test_class_weights_match_the_cpu_fit():
    cpu, dev = pair(dense_model)
    compile_both(cpu, dev, lambda: Adam(0.01), SparseCategoricalCrossentropy(from_logits=True))
    fit_alike(cpu, dev, XA, LABELS, class_weight={0: 0.5, 1: 2.0, 2: 1.0})


def test_per_output_sample_weights_match_the_cpu_fit():
    cpu, dev = pair(two_by_two)
    compile_both(cpu, dev, lambda: Adam(0.01), [SparseCategoricalCrossentropy(from_logits=True), "mse"])
    fit_alike(cpu, dev, [XA, XB, X3], [LABELS, REAL], sample_weight={"cls": RNG.uniform(0, 2, N), "reg": None})


# ---- gradient clipping ------------------------------------------------------------------------

@pytest.mark.parametrize("make_opt", [
    lambda: SGD(0.1, clipnorm=0.05),
    lambda: SGD(0.1, global_clipnorm=0.1),
    lambda: SGD(0.1, momentum=0.9, clipvalue=0.01),
    lambda: RMSprop(0.01, clipnorm=0.02),
], ids=["sgd-clipnorm", "sgd-global-clipnorm", "sgd-momentum-clipvalue", "rmsprop-clipnorm"])
def test_gradient_clipping_matches_the_cpu_fit(make_opt):
    """The clipping binds: these gradients' norms exceed the limits (SGD's steps show it)."""
    cpu, dev = pair(two_by_two)
    compile_both(cpu, dev, make_opt, [SparseCategoricalCrossentropy(from_logits=True), "mse"])
    fit_alike(cpu, dev, [XA, XB, X3], [LABELS, REAL])


def test_clipping_entry_points_are_the_optimizer_s_rule():
    r, D = host.resident, host.DeviceArray
    gs = [RNG.standard_normal((4, 3)), RNG.standard_normal(5) * 10]
    opts = {"clip_by_norm": SGD(clipnorm=1.5), "clip_by_global_norm": SGD(global_clipnorm=2.0),
            "clip_by_value": SGD(clipvalue=0.3)}
    for fn, opt in opts.items():
        dev = [D(g, np.float64) for g in gs]
        getattr(r, fn)(dev, opt.clipnorm or opt.global_clipnorm or opt.clipvalue)
        for a, b in zip(dev, opt._clip([g.copy() for g in gs])):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-13)
    dev = [D(np.array([np.inf, 1.0]))]
    r.clip_by_global_norm(dev, 1.0)  # a non-finite global norm: NaN, as the CPU's
    assert np.isnan(dev[0].numpy()).all()
    with pytest.raises(ValueError, match="clip_by_norm: expected a clipping value > 0"):
        r.clip_by_norm(dev, 0.0)
    with pytest.raises(ValueError, match="expected gradients of one dtype"):
        r.clip_by_value([D(gs[0], np.float64), D(gs[1], np.float32)], 1.0)


# ---- what goes in and out of a step -----------------------------------------------------------

def test_a_step_uploads_each_input_once_and_downloads_only_the_losses(monkeypatch):
    with _device._harness_device():
        model = two_by_two()
    model.compile(Adam(), [SparseCategoricalCrossentropy(from_logits=True), "mse"])
    res = model._resident
    model.fit([XA, XB, X3], [LABELS, REAL], batch_size=N, verbose=0)
    uploads, downloads = [], []
    real_numpy = host.DeviceArray.numpy
    monkeypatch.setattr(res, "DeviceArray", lambda a, dtype=None: uploads.append(a.shape) or host.DeviceArray(a, dtype))
    monkeypatch.setattr(host.DeviceArray, "numpy", lambda self: downloads.append(self.shape) or real_numpy(self))
    model.fit([XA, XB, X3], [LABELS, REAL], batch_size=8, epochs=1, verbose=0)
    assert uploads == []  # the inputs and each output's targets come through the prefetcher
    assert downloads == [(4,)]  # the epoch's loss sums, two per output, read once (resident_metrics.EpochStats)


# ---- what is not supported, and bad inputs ----------------------------------------------------

@pytest.mark.parametrize("build,match", [
    (lambda a: Dense(2)(Embedding(10, 5)(Dense(3)(a))), "Embedding.*reads the output of another layer"),
], ids=["embedding-after-dense"])
def test_unsupported_graphs_fail_at_build(build, match):
    with _device._harness_device():
        a = Input((5,))
        with pytest.raises(NotImplementedError, match=match):
            Model(a, build(a))


@pytest.mark.parametrize("loss,match", [
    (Hinge(), r"output 'out'.*loss Hinge \('hinge'"),
    (MeanSquaredError(reduction="sum"), "reduction 'sum'"),
    (CategoricalCrossentropy(axis=0), "axis=0"),
], ids=["hinge", "reduction-sum", "axis"])
def test_unsupported_losses_fail_at_compile(loss, match):
    with _device._harness_device():
        a = Input((5,))
        model = Model(a, Dense(3, name="out")(a))
    with pytest.raises(NotImplementedError, match=match):
        model.compile(SGD(), loss)


def test_bad_targets_and_weights_raise_value_errors():
    with _device._harness_device():
        model = two_by_two()
    model.compile(SGD(), {"cls": CategoricalCrossentropy(), "reg": "mse"})
    x = [XA, XB, X3]
    with pytest.raises(ValueError, match="Output 'cls' of model .*must have the same shape"):
        model.fit(x, {"cls": np.zeros((N, 4)), "reg": REAL}, verbose=0)
    with pytest.raises(ValueError, match="output 'reg' has a loss but received no target"):
        model.fit(x, {"cls": ONEHOT}, verbose=0)
    with pytest.raises(ValueError, match="`sample_weight` of shape \\(6, 2\\) cannot be broadcast"):
        model.fit(x, {"cls": ONEHOT, "reg": REAL}, sample_weight={"cls": np.ones((N, 2))}, batch_size=6,
                  verbose=0)
    model.compile(SGD(), [SparseCategoricalCrossentropy(), "mse"])
    with pytest.raises(ValueError, match=r"label 3 at index 1 is out of range \[0, 3\)"):
        model.fit([a[:2] for a in x], [np.array([0, 3]), REAL[:2]], shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="labels must be integers"):
        model.fit([a[:2] for a in x], [np.array([0.5, 1]), REAL[:2]], verbose=0)


def test_merge_entry_points_check_their_inputs():
    r, D = host.resident, host.DeviceArray
    x, z = D(np.ones((2, 3), np.float32)), D(np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="different batch sizes"):
        r.merge("add", [x, z])
    with pytest.raises(ValueError, match="incompatible shapes"):
        r.merge("add", [x, D(np.ones((2, 2), np.float32))])
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        r.merge("subtract", [x, x, x])
    with pytest.raises(ValueError, match="unknown op 'mean'"):
        r.merge("mean", [x])
    with pytest.raises(ValueError, match="needs `win`"):
        r.merge_backward("maximum", x, [x, x], None)
    with pytest.raises(ValueError, match="equal shapes except along axis 1"):
        r.concatenate([x, D(np.ones((3, 1), np.float32))], 1)
    with pytest.raises(ValueError, match="the sizes sum to 4"):
        r.concatenate_backward(x, [2, 2], 1)
    with pytest.raises(ValueError, match="expected exactly one of `target` and `labels`"):
        r.loss("mse", x)
    with pytest.raises(ValueError, match=r"loss\(mse\): expected `target` of shape \(2, 3\), received \(2, 2\)"):
        r.loss("mse", x, target=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"expected `row_scale` of shape \(2,\), received \(3,\)"):
        r.loss("mse", x, target=np.zeros((2, 3)), row_scale=np.ones(3))
    with pytest.raises(ValueError, match="unknown kind 'hinge'"):
        r.loss("hinge", x, target=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"add: expected `b` of shape \(2, 3\), received \(3, 3\)"):
        r.add(x, z)
