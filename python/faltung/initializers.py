"""Weight initializers with Keras 3's names and defaults.

All draw from one process-wide generator that `faltung.utils.set_random_seed` seeds, so a
seeded run is reproducible.
"""
import math

import numpy as np

_rng = np.random.default_rng()


def set_seed(seed):
    global _rng
    _rng = np.random.default_rng(seed)


def rng():
    return _rng


def _fans(shape):
    """Keras's compute_fans: conv kernels (..., in, out) use the receptive field size."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    def __call__(self, shape, dtype=None):
        raise NotImplementedError

    def get_config(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class Zeros(Initializer):
    def __call__(self, shape, dtype=None):
        return np.zeros(shape, np.float32)


class Ones(Initializer):
    def __call__(self, shape, dtype=None):
        return np.ones(shape, np.float32)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        return np.full(shape, self.value, np.float32)


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None):
        g = np.random.default_rng(self.seed) if self.seed is not None else _rng
        return g.normal(self.mean, self.stddev, shape).astype(np.float32)


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype=None):
        g = np.random.default_rng(self.seed) if self.seed is not None else _rng
        return g.uniform(self.minval, self.maxval, shape).astype(np.float32)


class TruncatedNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None):
        g = np.random.default_rng(self.seed) if self.seed is not None else _rng
        x = g.normal(0.0, 1.0, shape)
        bad = np.abs(x) > 2
        while bad.any():
            x[bad] = g.normal(0.0, 1.0, int(bad.sum()))
            bad = np.abs(x) > 2
        return (self.mean + self.stddev * x).astype(np.float32)


class VarianceScaling(Initializer):
    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid `mode` argument: expected one of fan_in, fan_out, fan_avg, received mode={mode}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform", "normal"):
            raise ValueError(f"Invalid `distribution` argument: received distribution={distribution}")
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        g = np.random.default_rng(self.seed) if self.seed is not None else _rng
        if self.distribution in ("truncated_normal", "normal"):
            stddev = math.sqrt(scale) / 0.87962566103423978  # std of N(0,1) truncated at 2
            return TruncatedNormal(0.0, stddev, self.seed)(shape) if self.seed is not None else \
                _truncated(g, stddev, shape)
        if self.distribution == "untruncated_normal":
            return g.normal(0.0, math.sqrt(scale), shape).astype(np.float32)
        limit = math.sqrt(3.0 * scale)
        return g.uniform(-limit, limit, shape).astype(np.float32)


class _Preset(VarianceScaling):
    """A VarianceScaling with fixed scale/mode/distribution: its config is only the seed,
    so `get(serialize(init))` rebuilds it (as Keras's GlorotUniform and friends)."""

    def get_config(self):
        return {"seed": self.seed}


def _truncated(g, stddev, shape):
    x = g.normal(0.0, 1.0, shape)
    bad = np.abs(x) > 2
    while bad.any():
        x[bad] = g.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(x) > 2
    return (stddev * x).astype(np.float32)


class GlorotUniform(_Preset):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(_Preset):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeNormal(_Preset):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


class HeUniform(_Preset):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)


class LecunNormal(_Preset):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "truncated_normal", seed)


class LecunUniform(_Preset):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "uniform", seed)


class Orthogonal(Initializer):
    def __init__(self, gain=1.0, seed=None):
        self.gain, self.seed = gain, seed

    def __call__(self, shape, dtype=None):
        g = np.random.default_rng(self.seed) if self.seed is not None else _rng
        rows = int(np.prod(shape[:-1]))
        cols = shape[-1]
        a = g.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q[:rows, :cols]).reshape(shape).astype(np.float32)


class Identity(Initializer):
    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        if len(shape) != 2:
            raise ValueError(f"Identity initializer: expected a 2D shape, received shape={shape}")
        return (self.gain * np.eye(*shape)).astype(np.float32)


_ALIASES = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "random_normal": RandomNormal, "random_uniform": RandomUniform,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
    "orthogonal": Orthogonal, "identity": Identity,
    # Keras's aliases ("uniform" is Embedding's default initializer)
    "uniform": RandomUniform, "normal": RandomNormal, "one": Ones, "zero": Zeros,
}


def get(identifier):
    """An initializer from a name (`"glorot_uniform"`, `"GlorotUniform"`), an instance or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        key = identifier if identifier in _ALIASES else _snake(identifier)
        if key not in _ALIASES:
            raise ValueError(f"Could not interpret initializer identifier: {identifier!r}. "
                             f"Expected one of {sorted(_ALIASES)}")
        return _ALIASES[key]()
    if isinstance(identifier, dict):
        cls = _ALIASES[_snake(identifier["class_name"])]
        return cls(**identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret initializer identifier: {identifier!r}")


def serialize(init):
    name = {cls: key for key, cls in _ALIASES.items()}.get(type(init))
    return {"class_name": type(init).__name__, "config": init.get_config()} if name else None


def _snake(name):
    from faltung.backend import to_snake_case
    return to_snake_case(name)
