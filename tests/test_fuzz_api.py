"""API fuzzing of every layer in faltung.layers (issue 15): random, mostly invalid configs
and inputs through Sequential (or a two-input Model for the merging layers) -> predict ->
fit. Allowed outcomes: success with finite outputs for finite inputs, or a ValueError /
TypeError carrying a message (NotImplementedError where Keras raises it). Anything else (another exception, a crash, a NaN or inf from
finite data) fails.

FALTUNG_FUZZ_EXAMPLES sets the examples per layer group (default 150 over all layers of the
group); FALTUNG_FUZZ_REPORT=path appends the counts as JSON lines.
"""
import collections
import inspect

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import faltung  # noqa: E402
from faltung import layers  # noqa: E402
from test_fuzz_ops import FUZZ, write_counts  # noqa: E402

COUNTS = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    write_counts("api", "layer", COUNTS)


# Argument pools: (strategy of valid values, list of bad values). A third of the examples
# draw only valid values; in the others each argument is bad with probability 1/3.
def arg(good, bad=()):
    return good, list(bad)


def optional(pool):
    return st.one_of(st.none(), pool[0]), pool[1]


def choice(good, bad):
    return st.sampled_from(good), list(bad)


BAD = [0, -1, -3, 2.5, "2", None, 2 ** 62, True, (), (1, 2, 3), [0, 1], float("nan")]
BOOL = arg(st.booleans())
POS = arg(st.integers(1, 4), BAD)
NONNEG = arg(st.integers(0, 2), BAD)
PADDING = choice(["valid", "same"], ["causal", "full", "SAME", "bogus", None, 1])
ACTIVATION = choice([None, "relu", "tanh", "sigmoid", "softmax", "linear", "gelu", "selu"], ["bogus", 3])
FLOAT = arg(st.floats(-2, 2), [float("nan"), float("inf"), -1e3, "x", None])
RATE = arg(st.floats(0, 0.9), [1.0, -0.5, 2.0, "0.5", None])
REGULARIZER = choice([None, "l1", "l2", "l1_l2"], ["bogus", 3, -1.0])
FACTOR = arg(st.one_of(st.floats(0, 0.5), st.tuples(st.floats(-0.5, 0), st.floats(0, 0.5))),
             [-1.0, 2.0, (0.5, -0.5), "x", None])
AXIS = arg(st.integers(-4, 3), [None, "x", 2.5, (1, 2)])
SIZE = arg(st.integers(1, 5), [0, -2, 2 ** 62, None, "3", 2.0])
CROP2 = arg(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)), st.just(((1, 0), (0, 1)))),
            [-1, ((0,), (1,)), "x", None, 2 ** 62])

# Layer name -> (input rank (time and spatial dims plus channels, batch excluded), config).
def geometry(rank):
    """kernel_size / strides / dilation_rate pool: an int, or a tuple of `rank` ints."""
    return arg(st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * rank)), BAD + [(1, 2, 3)[:rank + 1]])


def conv(rank, **extra):
    g = geometry(rank)
    return dict(filters=POS, kernel_size=g, strides=g, padding=PADDING, dilation_rate=g, activation=ACTIVATION,
                use_bias=BOOL, activity_regularizer=REGULARIZER, **extra)


def depthwise(rank):
    g = geometry(rank)
    return dict(kernel_size=g, strides=g, padding=PADDING, depth_multiplier=POS, dilation_rate=g,
                activation=ACTIVATION)


def pool(rank):
    return dict(pool_size=geometry(rank), strides=optional(geometry(rank)), padding=PADDING)


GLOBAL = dict(keepdims=BOOL)
RNN_CFG = dict(units=POS, activation=ACTIVATION, return_sequences=BOOL, go_backwards=BOOL,
               dropout=RATE, recurrent_dropout=RATE, activity_regularizer=REGULARIZER)
NO_ARGS = {}
LAYERS = {
    "Dense": (1, 3, dict(units=POS, activation=ACTIVATION, use_bias=BOOL, activity_regularizer=REGULARIZER)),
    "Activation": (1, 3, dict(activation=ACTIVATION)),
    "Identity": (1, 3, NO_ARGS),
    "Highway": (1, 1, dict(activation=ACTIVATION)),
    "Embedding": (1, 2, dict(input_dim=POS, output_dim=POS, mask_zero=BOOL)),
    "Masking": (2, 2, dict(mask_value=FLOAT)),
    "ELU": (1, 3, dict(alpha=FLOAT)),
    "LeakyReLU": (1, 3, dict(negative_slope=FLOAT)),
    "ReLU": (1, 3, dict(max_value=optional(FLOAT), negative_slope=FLOAT, threshold=FLOAT)),
    "Softmax": (1, 3, dict(axis=AXIS)),
    "PReLU": (1, 3, dict(shared_axes=optional(AXIS))),
    "Dropout": (1, 3, dict(rate=RATE, seed=arg(st.one_of(st.none(), st.integers(0, 9))))),
    "Flatten": (1, 3, NO_ARGS),
    "Reshape": (1, 3, dict(target_shape=arg(st.one_of(st.tuples(st.integers(-1, 6)),
                                                      st.tuples(st.integers(-1, 4), st.integers(-1, 4))),
                                            [None, 3, "x", (0,), (-1, -1)]))),
    "Permute": (2, 3, dict(dims=arg(st.one_of(st.permutations([1, 2]), st.permutations([1, 2, 3])),
                                    [(0, 1), (1, 1), (2, 3), None, "12"]))),
    "RepeatVector": (1, 1, dict(n=SIZE)),
    "Conv1D": (2, 2, conv(1)), "Conv2D": (3, 3, conv(2)),
    "DepthwiseConv1D": (2, 2, depthwise(1)), "DepthwiseConv2D": (3, 3, depthwise(2)),
    "SeparableConv1D": (2, 2, conv(1, depth_multiplier=POS)), "SeparableConv2D": (3, 3, conv(2, depth_multiplier=POS)),
    "Conv1DTranspose": (2, 2, conv(1, output_padding=optional(NONNEG))),
    "Conv2DTranspose": (3, 3, conv(2, output_padding=optional(NONNEG))),
    "MaxPooling1D": (2, 2, pool(1)), "MaxPooling2D": (3, 3, pool(2)),
    "AveragePooling1D": (2, 2, pool(1)), "AveragePooling2D": (3, 3, pool(2)),
    "GlobalAveragePooling1D": (2, 2, GLOBAL), "GlobalAveragePooling2D": (3, 3, GLOBAL),
    "GlobalMaxPooling1D": (2, 2, GLOBAL), "GlobalMaxPooling2D": (3, 3, GLOBAL),
    "MaxUnpooling2D": (3, 3, dict(size=geometry(2))),
    "AverageUnpooling2D": (3, 3, dict(size=geometry(2))),
    "BatchNormalization": (1, 3, dict(axis=AXIS, momentum=FLOAT, epsilon=arg(st.floats(1e-5, 1), FLOAT[1]),
                                      center=BOOL, scale=BOOL)),
    "UpSampling1D": (2, 2, dict(size=SIZE)),
    "UpSampling2D": (3, 3, dict(size=geometry(2), interpolation=choice(["nearest", "bilinear"], ["bicubic", 1]))),
    "ZeroPadding1D": (2, 2, dict(padding=CROP2)), "ZeroPadding2D": (3, 3, dict(padding=CROP2)),
    "Cropping1D": (2, 2, dict(cropping=CROP2)), "Cropping2D": (3, 3, dict(cropping=CROP2)),
    "SimpleRNN": (2, 2, RNN_CFG), "LSTM": (2, 2, RNN_CFG), "GRU": (2, 2, dict(RNN_CFG, reset_after=BOOL)),
    "Normalization": (1, 3, dict(axis=AXIS, invert=BOOL)),
    "RandomBrightness": (3, 3, dict(factor=FACTOR, value_range=choice([(0, 255), (0, 1)], [(1, 0), None]))),
    "RandomContrast": (3, 3, dict(factor=FACTOR)),
    "RandomCrop": (3, 3, dict(height=SIZE, width=SIZE)),
    "RandomFlip": (3, 3, dict(mode=choice(["horizontal", "vertical", "horizontal_and_vertical"], ["diagonal", 1]))),
    "RandomRotation": (3, 3, dict(factor=FACTOR, fill_mode=choice(["reflect", "constant", "nearest", "wrap"], ["x"]))),
    "RandomTranslation": (3, 3, dict(height_factor=FACTOR, width_factor=FACTOR)),
    "RandomZoom": (3, 3, dict(height_factor=FACTOR, width_factor=optional(FACTOR))),
    "Rescaling": (1, 3, dict(scale=arg(st.floats(-10, 10), ["x", None]), offset=FLOAT)),
    "Resizing": (3, 3, dict(height=SIZE, width=SIZE, interpolation=choice(["bilinear", "nearest"], ["lanczos9"]),
                            crop_to_aspect_ratio=BOOL)),
}
MERGING = {"Add": NO_ARGS, "Subtract": NO_ARGS, "Multiply": NO_ARGS, "Average": NO_ARGS, "Maximum": NO_ARGS,
           "Minimum": NO_ARGS, "Concatenate": dict(axis=AXIS),
           "Dot": dict(axes=arg(st.one_of(AXIS[0], st.tuples(st.integers(-2, 2), st.integers(-2, 2))), AXIS[1]),
                       normalize=BOOL)}
# Layers that wrap another layer or cell: built around a random recurrent layer or cell.
WRAPPERS = {"RNN": "cell", "Bidirectional": "layer", "TimeDistributed": "layer"}
CELLS = {"SimpleRNNCell", "LSTMCell", "GRUCell"}
# Not layers a user configures: the base class and the graph's input placeholder.
NOT_FUZZED = {"Layer", "InputLayer"}


def test_every_layer_is_fuzzed():
    exported = {name for name, obj in vars(layers).items()
                if inspect.isclass(obj) and issubclass(obj, layers.Layer)}
    covered = set(LAYERS) | set(MERGING) | set(WRAPPERS) | CELLS | NOT_FUZZED
    aliases = {name for name in exported if getattr(layers, name).__name__ != name}
    assert exported - aliases - covered == set(), "layers without a fuzz config"


# Keras raises NotImplementedError for an unknown choice of the preprocessing layers
# (RandomRotation(fill_mode="x")): faltung words it the same way.
CLEAR = (ValueError, TypeError, NotImplementedError)


def clear_error(layer, stage, e):
    """Records a ValueError/TypeError after checking it carries a message."""
    assert str(e).strip(), f"{layer}: {type(e).__name__} without a message at {stage}"
    COUNTS[layer][f"clear errors ({stage})"] += 1


@st.composite
def inputs(draw, min_rank, max_rank, integer=False):
    rank = draw(st.integers(min_rank, max_rank))
    if draw(st.integers(0, 7)) == 0:
        rank = draw(st.integers(0, 4))  # a wrong rank now and then
    shape = (draw(st.integers(1, 4)),) + tuple(draw(st.integers(1, 7)) for _ in range(rank))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if integer:
        return rng.integers(0, 6, shape)
    return rng.uniform(-3, 3, shape).astype(draw(st.sampled_from([np.float32, np.float64])))


def all_finite(value):
    """Whether no number in a config (a dict, nested tuples/lists) is NaN or inf."""
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return all(all_finite(v) for v in value)
    return not (isinstance(value, float) and not np.isfinite(value))


def run(name, make_layer, x, extra_inputs=(), finite_config=True):
    """Layer construction, Sequential (or Model), predict, fit: every step either works or
    raises a clear ValueError/TypeError. A NaN or inf in the config may give non-finite
    outputs (as in Keras: Rescaling(offset=nan) adds NaN); finite configs may not."""
    COUNTS[name]["calls"] += 1
    try:
        layer = make_layer()
    except CLEAR as e:
        return clear_error(name, "config", e)
    try:
        if extra_inputs:
            ins = [layers.Input(a.shape[1:]) for a in (x, *extra_inputs)]
            model = faltung.Model(ins, layer(ins))
            data = [x, *extra_inputs]
        else:
            model = faltung.Sequential([layers.Input(x.shape[1:], dtype=str(x.dtype)), layer])
            data = x
        y = model.predict(data, verbose=0)
    except CLEAR as e:
        return clear_error(name, "predict", e)
    outs = y if isinstance(y, list) else [y]
    if not finite_config:
        COUNTS[name]["ran (non-finite config)"] += 1
        return
    for out in outs:
        assert np.all(np.isfinite(out)), f"{name}: non-finite output from finite input"
    try:
        model.compile(optimizer="sgd", loss="mse")
        model.fit(data, [np.zeros_like(o) for o in outs] if len(outs) > 1 else np.zeros_like(outs[0]),
                  batch_size=2, epochs=1, verbose=0)
        after = model.predict(data, verbose=0)
    except CLEAR as e:
        return clear_error(name, "fit", e)
    # One SGD step can legitimately diverge (a linear SimpleRNN with recurrent dropout reached
    # 1e24 -> inf; its gradients match finite differences): counted, not failed.
    diverged = not all(np.all(np.isfinite(o)) for o in (after if isinstance(after, list) else [after]))
    COUNTS[name]["ran, diverged in fit" if diverged else "ran"] += 1


def draw_config(draw, spec):
    clean = draw(st.integers(0, 2)) == 0
    return {k: draw(good) if clean or not bad or draw(st.integers(0, 2)) else draw(st.sampled_from(bad))
            for k, (good, bad) in spec.items()}


@FUZZ
@given(st.data())
def test_fuzz_layers(data):
    name = data.draw(st.sampled_from(sorted(LAYERS)))
    lo, hi, spec = LAYERS[name]
    config = draw_config(data.draw, spec)
    x = data.draw(inputs(lo, hi, integer=name == "Embedding"))
    run(name, lambda: getattr(layers, name)(**config), x, finite_config=all_finite(config))


@FUZZ
@given(st.data())
def test_fuzz_merging_layers(data):
    name = data.draw(st.sampled_from(sorted(MERGING)))
    config = draw_config(data.draw, MERGING[name])
    x = data.draw(inputs(1, 3))
    other = x * 0.5 if data.draw(st.integers(0, 3)) else data.draw(inputs(1, 3))
    run(name, lambda: getattr(layers, name)(**config), x, (other.astype(x.dtype),), all_finite(config))


@FUZZ
@given(st.data())
def test_fuzz_wrappers_and_cells(data):
    name = data.draw(st.sampled_from(sorted(WRAPPERS)))
    inner = data.draw(st.sampled_from(["SimpleRNN", "LSTM", "GRU", "Dense", "Conv1D"]))
    _, _, spec = LAYERS[inner]
    config = draw_config(data.draw, spec)
    cell = inner + "Cell"
    x = data.draw(inputs(2, 3))
    flags = dict(return_sequences=data.draw(st.booleans()))
    if name == "RNN":
        cfg = {k: v for k, v in config.items() if k not in ("return_sequences", "go_backwards")}
        if cell not in CELLS:
            cell, cfg = "SimpleRNNCell", dict(units=config.get("units", 2))
        run(name, lambda: layers.RNN(getattr(layers, cell)(**cfg), **flags), x)
    else:
        merge = data.draw(st.sampled_from(["concat", "sum", "mul", "ave", None, "bogus"]))
        kwargs = {}
        if name == "Bidirectional":
            kwargs = dict(merge_mode=merge, activity_regularizer=data.draw(REGULARIZER[0]))
            if data.draw(st.booleans()):  # a backward layer of any recurrent kind, units and flags
                back = data.draw(st.sampled_from(["SimpleRNN", "LSTM", "GRU"]))
                kwargs["backward_layer"] = getattr(layers, back)(
                    data.draw(st.integers(1, 4)), go_backwards=data.draw(st.booleans()),
                    return_sequences=data.draw(st.booleans()))
        run(name, lambda: getattr(layers, name)(getattr(layers, inner)(**config), **kwargs), x)
    COUNTS[cell if cell in CELLS else inner]["wrapped"] += 1
