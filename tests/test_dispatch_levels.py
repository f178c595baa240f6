"""Runtime CPU dispatch (python/faltung/_core.py): every CPU level built and supported here
runs a representative set of kernels and agrees with the default level to float rounding;
FALTUNG_CPU caps the level; the baseline runs on an emulated CPU without AVX."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import faltung
from faltung import _core, ops
from faltung.ops import convolution, nn, normalization

DEFAULT = _core.LEVEL
_NEEDS = {"avx2": "AVX2+FMA (x86-64-v3)", "avx512": "AVX-512 F/BW/CD/DQ/VL (x86-64-v4)"}


@pytest.fixture(params=_core.LEVELS)
def level(request):
    """The kernels of one CPU level in faltung._core for the test; the default level after."""
    lv = request.param
    if lv not in _core.AVAILABLE:
        pytest.skip(f"the {lv} level was not built (FALTUNG_CPU_LEVELS)")
    if lv not in _core.SUPPORTED:
        pytest.skip(f"this CPU lacks {_NEEDS[lv]}, which the {lv} level needs")
    _core.use_level(lv)
    yield lv
    _core.use_level(DEFAULT)


# ---- the kernels: each case returns its outputs for fixed, seeded inputs ------------------

def _rng():
    return np.random.default_rng(13)


def case_dense():
    r = _rng()
    x, w, b = r.normal(size=(5, 37)), r.normal(size=(37, 19)), r.normal(size=19)
    x, w, b = (a.astype(np.float32) for a in (x, w, b))
    y = nn.dense(x, w, b)
    return [y, *nn.dense_backward(r.normal(size=y.shape).astype(np.float32), x, w)]


# (input shape, kernel shape, strides, padding, algorithm): every vectorized conv kernel,
# with channel counts that leave remainders at every vector width.
CONVS = [((2, 11, 9, 3), (3, 3, 3, 21), 1, "same", "direct"),
         ((2, 13, 11, 19), (3, 3, 19, 37), 2, "same", "direct"),  # border pixels' window copies
         ((1, 10, 12, 19), (3, 3, 19, 35), 1, "same", "winograd"),
         ((2, 9, 9, 8), (3, 3, 8, 40), 2, "valid", "auto"),
         ((2, 7, 8, 13), (1, 1, 13, 17), 1, "valid", "auto")]


def case_conv():
    r, out = _rng(), []
    for xs, ws, s, pad, algo in CONVS:
        x, w = r.normal(size=xs).astype(np.float32), r.normal(size=ws).astype(np.float32)
        b = r.normal(size=ws[-1]).astype(np.float32)
        y, _ = convolution.conv_forward(x, w, b, strides=s, padding=pad, algorithm=algo)
        dy = r.normal(size=y.shape).astype(np.float32)
        out += [y, *convolution.conv_backward(dy, x, w, strides=s, padding=pad, algorithm=algo)]
    return out


def case_depthwise_conv():
    r = _rng()
    x, w = r.normal(size=(2, 9, 10, 21)).astype(np.float32), r.normal(size=(3, 3, 21, 1)).astype(np.float32)
    y = ops.depthwise_conv(x, w, padding="same")
    dy = r.normal(size=y.shape).astype(np.float32)
    return [y, *ops.depthwise_conv_backward(dy, x, w, padding="same")]


def case_pooling():
    r = _rng()
    x = r.normal(size=(2, 9, 11, 37)).astype(np.float32)
    y, arg = ops.max_pool(x, 3, 2, "same", return_argmax=True)
    a = ops.average_pool(x, 2, 2, "valid")
    return [y, arg, ops.max_pool_backward(np.ones_like(y), arg, x.shape, 3, 2, "same"), a,
            ops.average_pool_backward(np.ones_like(a), x.shape, 2, 2, "valid")]


def case_activations():
    x = _rng().normal(size=(3, 53)).astype(np.float32) * 4
    out = []
    for name in ("relu", "elu", "gelu", "silu", "softplus"):
        out.append(getattr(nn, name)(x))
    for name in ("exponential", "tanh", "sigmoid"):
        y = getattr(nn, name)(x)
        out += [y, getattr(nn, name + "_backward")(np.ones_like(y), y)]
    return out


def case_softmax():
    x = _rng().normal(size=(4, 45)).astype(np.float32) * 3
    y, ly = nn.softmax(x), nn.log_softmax(x)
    dy = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(x.shape)
    return [y, ly, nn.softmax_backward(dy, y), nn.log_softmax_backward(dy, ly)]


def case_optimizers():
    r, out = _rng(), []
    w0, g = r.normal(size=45).astype(np.float32), r.normal(size=45).astype(np.float32)
    w, m, v, vh = w0.copy(), np.zeros(45, np.float32), np.zeros(45, np.float32), np.zeros(45, np.float32)
    for _ in range(3):
        _core.optim_adam_f32(w, m, v, vh, g, 0.01, 0.9, 0.999, 1e-7)
    out += [w, m, v, vh]
    w, v, mom, avg = w0.copy(), np.zeros(45, np.float32), np.zeros(45, np.float32), np.zeros(45, np.float32)
    for _ in range(3):
        _core.optim_rmsprop_f32(w, v, mom, avg, g, 0.01, 0.9, 0.5, 1e-7)
    out += [w, v, mom, avg]
    w, acc = w0.copy(), np.full(45, 0.1, np.float32)
    for _ in range(3):
        _core.optim_adagrad_f32(w, acc, g, 0.01, 1e-7)
    return out + [w, acc]


def case_lstm():
    r = _rng()
    B, T, F, U = 3, 5, 7, 19
    x = r.normal(size=(B, T, F)).astype(np.float32)
    k = (r.normal(size=(F, 4 * U)) * 0.3).astype(np.float32)
    rk = (r.normal(size=(U, 4 * U)) * 0.3).astype(np.float32)
    b = (r.normal(size=4 * U) * 0.1).astype(np.float32)
    hs, hT, cT, saved = ops.lstm_forward(x, k, rk, b, training=True)
    dhs = r.normal(size=hs.shape).astype(np.float32)
    return [hs, hT, cT, *ops.lstm_backward(saved, dhs, None, None)]


def case_ctc():
    r = _rng()
    B, T, C, S = 3, 12, 21, 4
    logits = r.normal(size=(B, T, C)).astype(np.float32) * 2
    labels = r.integers(1, C, size=(B, S)).astype(np.int32)
    loss, grad = ops.ctc_loss_and_grad(labels, logits, np.array([4, 2, 3], np.int32),
                                       np.array([12, 9, 7], np.int32))
    return [loss, grad]


def case_batch_norm():
    x = _rng().normal(size=(4, 5, 6, 21)).astype(np.float32)
    y, mean, var, inv_std = normalization.batch_norm_train(x)
    return [y, mean, var, inv_std, *normalization.batch_norm_train_backward(np.cos(x), x, mean, inv_std)]


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def _run(case, lv):
    _core.use_level(lv)
    try:
        return [np.asarray(a) for a in CASES[case]() if a is not None]
    finally:
        _core.use_level(DEFAULT)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_level_matches_the_default_level(level, case):
    want, got = _run(case, DEFAULT), _run(case, level)
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        # float32 rounding: the levels sum in different orders and fuse multiply-adds
        scale = max(1.0, float(np.max(np.abs(w))))
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * scale)


def test_the_level_in_use_is_the_best_usable_one():
    info = faltung.build_info()
    usable = _core.usable_levels()
    assert usable[0] == "baseline" and set(usable) <= set(_core.LEVELS)
    assert info["cpu_levels_available"] == list(_core.AVAILABLE)
    assert info["cpu_levels_supported"] == list(_core.SUPPORTED)
    if not os.environ.get("FALTUNG_CPU"):
        assert info["cpu_level"] == usable[-1] == _core.LEVEL


def test_use_level_switches_the_kernels_and_build_info(level):
    assert _core.LEVEL == level and faltung.build_info()["cpu_level"] == level
    assert _core.conv2d_forward is _core.level_module(level).conv2d_forward


def test_a_level_that_cannot_run_is_refused():
    with pytest.raises(ValueError, match="expected a CPU level of baseline.*received 'sse9'"):
        _core.use_level("sse9")
    assert _core.LEVEL == DEFAULT


def _python(code, **env):
    full = {k: v for k, v in os.environ.items() if k != "FALTUNG_CPU"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          timeout=120)


def test_faltung_cpu_caps_the_level():
    code = "import faltung; print(faltung.build_info()['cpu_level'])"
    for cap in _core.LEVELS:
        want = [lv for lv in _core.usable_levels() if _core.LEVELS.index(lv) <= _core.LEVELS.index(cap)][-1]
        p = _python(code, FALTUNG_CPU=cap)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == [want]


def test_a_wrong_faltung_cpu_names_the_choices():
    p = _python("import faltung", FALTUNG_CPU="avx3")
    assert p.returncode != 0
    assert "FALTUNG_CPU: expected one of baseline, avx2, avx512, received 'avx3'" in p.stderr


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_the_baseline_module_holds_no_avx_instruction():
    """Static half of the proof: no VEX/EVEX-encoded vector instruction (v...ps/pd/ss/sd) and
    no ymm/zmm register anywhere in the baseline module's code."""
    path = _core.level_module("baseline").__file__
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True,
                         check=True).stdout
    assert asm.count("\n") > 10000  # the module's code was disassembled
    bad = [ln for ln in asm.splitlines() if "ymm" in ln or "zmm" in ln
           or re.search(r"\tv[a-z0-9]+(ps|pd|ss|sd)\s", ln)]
    assert bad == [], bad[:5]


# A small model's forward and backward on an emulated Nehalem (SSE4.2, no AVX): the baseline
# module must never execute an AVX instruction, and OpenBLAS must get its Nehalem kernels
# without being told (under qemu-user /proc/cpuinfo describes the host: faltung._cpu asks
# cpuid, faltung._cpuid, before it asks for any kernels).
NEHALEM_SCRIPT = """
import numpy as np, faltung
from faltung import layers
info = faltung.build_info()
assert info["cpu_level"] == "baseline" and info["cpu_levels_supported"] == ["baseline"], info
assert info["blas_core"] == "Nehalem", info
faltung.utils.set_random_seed(1)
model = faltung.Sequential([faltung.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"),
                            layers.MaxPooling2D(), layers.Flatten(), layers.Dense(3, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype("float32")
y = np.array([0, 1, 2, 0, 1, 2])
loss = model.train_on_batch(x, y)
p = model.predict(x, verbose=0)
assert np.isfinite(loss) and p.shape == (6, 3), (loss, p.shape)
print("nehalem ok", info["cpu_level"])
"""


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-x86_64 (Debian qemu-user) is not installed")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under tools/sanitize.sh: ASan's shadow memory does not fit in qemu-user "
                           "(the plain suite and .ci/run's qemu stage run this)")
def test_baseline_runs_on_a_cpu_without_avx():
    env = {k: v for k, v in os.environ.items() if k not in ("FALTUNG_CPU", "OPENBLAS_CORETYPE")}
    env.update(OMP_NUM_THREADS="1")
    p = subprocess.run(["qemu-x86_64", "-cpu", "Nehalem", sys.executable, "-c", NEHALEM_SCRIPT], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "nehalem ok baseline" in p.stdout
