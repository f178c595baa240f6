import numpy as np
import pytest

from faltung import optimizers
from faltung.layers.layer import Variable
from faltung.optimizers import rules, schedules
from tests.reference import optimizers as ref

RNG = np.random.default_rng(1)
W0 = RNG.normal(size=(3, 4)).astype(np.float32)
GRADS = [RNG.normal(size=(3, 4)).astype(np.float32) for _ in range(5)]


def run(opt, grads=GRADS, w0=W0):
    v = Variable(w0.copy(), "w")
    for g in grads:
        v.grad = g
        opt.apply([v])
    return v.value


CASES = [
    ("sgd", lambda: optimizers.SGD(), lambda w, g: ref.sgd(w, g)),
    ("sgd-momentum", lambda: optimizers.SGD(0.1, momentum=0.9), lambda w, g: ref.sgd(w, g, 0.1, 0.9)),
    ("sgd-nesterov", lambda: optimizers.SGD(0.1, momentum=0.5, nesterov=True),
     lambda w, g: ref.sgd(w, g, 0.1, 0.5, True)),
    ("adam", lambda: optimizers.Adam(), lambda w, g: ref.adam(w, g)),
    ("adam-lr0.1-amsgrad", lambda: optimizers.Adam(0.1, amsgrad=True), lambda w, g: ref.adam(w, g, 0.1, amsgrad=True)),
    ("adamw", lambda: optimizers.AdamW(0.01), lambda w, g: ref.adam(w, g, 0.01, wd=0.004)),
    ("rmsprop", lambda: optimizers.RMSprop(), lambda w, g: ref.rmsprop(w, g)),
    ("rmsprop-centered-momentum", lambda: optimizers.RMSprop(0.01, momentum=0.9, centered=True),
     lambda w, g: ref.rmsprop(w, g, 0.01, momentum=0.9, centered=True)),
    ("adagrad", lambda: optimizers.Adagrad(0.1), lambda w, g: ref.adagrad(w, g, 0.1)),
    ("adamax", lambda: optimizers.Adamax(0.01), lambda w, g: ref.adamax(w, g, 0.01)),
]


PATHS = [pytest.param(False, id="numpy"),
         pytest.param(True, id="fused", marks=pytest.mark.skipif(
             not rules.FUSED, reason="bind_optim not registered in faltung._core"))]


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_steps_match_keras_rules(case, fused):
    _, make, reference = case
    opt = make()
    if hasattr(opt, "fused"):
        opt.fused = fused
    elif fused:
        pytest.skip("no fused kernel for this optimizer")
    out = run(opt)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(W0, GRADS), rtol=2e-5, atol=2e-6)
    assert opt.iterations == len(GRADS)


def test_keras_defaults():
    assert optimizers.SGD().get_config()["learning_rate"] == 0.01
    adam = optimizers.get("adam")
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) == (0.001, 0.9, 0.999, 1e-7, False)
    rms = optimizers.get("rmsprop")
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    ada = optimizers.get("Adagrad")
    assert (ada.learning_rate, ada.initial_accumulator_value, ada.epsilon) == (0.001, 0.1, 1e-7)
    assert optimizers.get("adamw").weight_decay == 0.004
    assert [o.name for o in map(optimizers.get, ["sgd", "adam", "rmsprop"])] == ["SGD", "adam", "rmsprop"]


def test_keras_rmsprop_docstring_number():
    # keras docstring: RMSprop(0.1) on loss var**2 / 2 from var=10 -> 9.683772
    v = Variable(np.array([10.0]), "v")
    v.grad = np.array([10.0], np.float32)
    optimizers.RMSprop(learning_rate=0.1).apply([v])
    assert float(v.value[0]) == pytest.approx(9.683772, abs=1e-5)


def test_apply_forms_and_skipping():
    a, b, frozen = Variable(np.ones(2), "a"), Variable(np.ones(2), "b"), Variable(np.ones(2), "f", trainable=False)
    a.grad, b.grad, frozen.grad = np.ones(2, np.float32), None, np.ones(2, np.float32)
    opt = optimizers.SGD(0.5)
    opt.apply([a, b, frozen])
    np.testing.assert_allclose(a.value, 0.5)
    np.testing.assert_allclose(b.value, 1.0)
    np.testing.assert_allclose(frozen.value, 1.0)
    opt.apply_gradients([(np.ones(2, np.float32), b)])
    np.testing.assert_allclose(b.value, 0.5)
    opt.apply([np.ones(2, np.float32)], [a])  # Keras form apply(grads, variables)
    np.testing.assert_allclose(a.value, 0.0)
    assert opt.iterations == 3
    with pytest.raises(ValueError, match=r"gradient of variable `a` has shape \(3,\), expected .*\(2,\)"):
        opt.apply_gradients([(np.ones(3, np.float32), a)])


def test_state_is_per_variable_and_exposed():
    a, b = Variable(np.zeros(2), "a"), Variable(np.zeros(3), "b")
    opt = optimizers.Adam()
    a.grad, b.grad = np.ones(2, np.float32), -np.ones(3, np.float32)
    opt.apply([a, b])
    assert len(opt.variables) == 1 + 2 * 2
    assert [v.shape for v in opt.variables[1:]] == [(2,), (2,), (3,), (3,)]
    np.testing.assert_allclose(a.value, -b.value[:2], rtol=1e-6)
    weights = opt.get_weights()
    opt2 = optimizers.Adam()
    opt2.build([a, b])
    opt2.set_weights(weights)
    assert opt2.iterations == 1
    np.testing.assert_allclose(opt2.variables[1], weights[1])


def test_clipnorm_clipvalue_global_clipnorm():
    g = np.array([3.0, 4.0], np.float32)  # norm 5
    h = np.array([0.0, 12.0], np.float32)  # norm 12; global norm 13
    for kw, ga, gb in [
        (dict(clipnorm=1.0), g / 5, h / 12),
        (dict(clipvalue=3.5), np.array([3.0, 3.5]), np.array([0.0, 3.5])),
        (dict(global_clipnorm=6.5), g / 2, h / 2),
        (dict(global_clipnorm=100.0), g, h),
    ]:
        a, b = Variable(np.zeros(2), "a"), Variable(np.zeros(2), "b")
        a.grad, b.grad = g, h
        optimizers.SGD(1.0, **kw).apply([a, b])
        np.testing.assert_allclose(-a.value, ga, rtol=1e-6, err_msg=str(kw))
        np.testing.assert_allclose(-b.value, gb, rtol=1e-6, err_msg=str(kw))
        np.testing.assert_array_equal(a.grad, g)  # the layer's gradient is not modified
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


def test_weight_decay_applies_before_update():
    v = Variable(np.full(2, 2.0), "v")
    v.grad = np.zeros(2, np.float32)
    optimizers.SGD(0.1, weight_decay=0.5).apply([v])
    np.testing.assert_allclose(v.value, 2.0 * (1 - 0.5 * 0.1))


def test_learning_rate_setter_and_schedule():
    opt = optimizers.SGD(0.1)
    opt.learning_rate = 0.05
    assert opt.learning_rate == 0.05 and isinstance(opt.learning_rate, float)
    sched = schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    opt = optimizers.SGD(sched)
    v = Variable(np.zeros(1), "v")
    v.grad = np.ones(1, np.float32)
    seen = []
    for _ in range(3):
        seen.append(opt.learning_rate)
        opt.apply([v])
    np.testing.assert_allclose(seen, [0.1, 0.1 * 0.5 ** 0.5, 0.05])
    np.testing.assert_allclose(v.value, -sum(seen), rtol=1e-6)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.3
    cfg = opt.get_config()
    assert cfg["learning_rate"]["class_name"] == "ExponentialDecay"
    assert optimizers.SGD.from_config(cfg).learning_rate == pytest.approx(0.1)  # iterations restart at 0


def test_schedules_formulas():
    e = schedules.ExponentialDecay(1.0, 10, 0.5, staircase=True)
    assert [e(s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    p = schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [p(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    with pytest.raises(ValueError, match="1 less than the length of values"):
        schedules.PiecewiseConstantDecay([1, 2], [1.0])
    c = schedules.CosineDecay(1.0, 100, alpha=0.1)
    assert c(0) == pytest.approx(1.0) and c(50) == pytest.approx(0.55) and c(100) == pytest.approx(0.1)
    assert c(1000) == pytest.approx(0.1)
    w = schedules.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=5)
    assert w(0) == 0.0 and w(2.5) == pytest.approx(0.5) and w(5) == pytest.approx(1.0)
    i = schedules.InverseTimeDecay(1.0, 10, 0.5)
    assert i(20) == pytest.approx(0.5) and i(5) == pytest.approx(1 / 1.25)
    assert schedules.InverseTimeDecay(1.0, 10, 0.5, staircase=True)(15) == pytest.approx(1 / 1.5)
    poly = schedules.PolynomialDecay(1.0, 10, end_learning_rate=0.0, power=2.0)
    assert poly(5) == pytest.approx(0.25) and poly(20) == 0.0


def test_get_identifiers():
    opt = optimizers.Adam(0.01)
    assert optimizers.get(opt) is opt
    assert isinstance(optimizers.get("SGD"), optimizers.SGD)
    restored = optimizers.get(optimizers.serialize(optimizers.RMSprop(0.02, centered=True)))
    assert isinstance(restored, optimizers.RMSprop) and restored.centered and restored.learning_rate == 0.02
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier: adamz"):
        optimizers.get("adamz")
    with pytest.raises(ValueError, match="Argument `learning_rate` should be float"):
        optimizers.SGD(learning_rate="fast")


@pytest.mark.skipif(not rules.FUSED, reason="bind_optim not registered in faltung._core")
def test_fused_kernel_errors_and_float64():
    from faltung import _core
    w = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"optim_sgd: expected `g` of shape \(2, 3\), received shape \(3, 2\)"):
        _core.optim_sgd_f32(w, None, np.zeros((3, 2), np.float32), 0.1, 0.0, False)
    with pytest.raises(ValueError, match="optim_adam: expected `m` of dtype float32, received float64"):
        _core.optim_adam_f32(w, np.zeros((2, 3)), np.zeros_like(w), None, w.copy(), 0.1, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        _core.optim_adagrad_f32(w, np.zeros((3, 2), np.float32).T, w.copy(), 0.1, 1e-7)
    w64 = np.ones(4)
    _core.optim_sgd_f64(w64, None, np.full(4, 2.0), 0.25, 0.0, False)
    np.testing.assert_array_equal(w64, 0.5)


@pytest.mark.skipif(not rules.FUSED, reason="bind_optim not registered in faltung._core")
@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True), lambda: optimizers.RMSprop(0.01),
    lambda: optimizers.Adagrad(0.1)], ids=["sgd-nesterov", "adam-amsgrad", "rmsprop-centered", "rmsprop", "adagrad"])
def test_fused_matches_numpy_on_odd_size(make):
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(7, 143)).astype(np.float32)  # 1001 elements: SIMD blocks + tail
    grads = [rng.normal(size=w0.shape).astype(np.float32) for _ in range(4)]
    a, b = make(), make()
    a.fused, b.fused = True, False
    np.testing.assert_allclose(run(a, grads, w0), run(b, grads, w0), rtol=1e-5, atol=1e-6)
