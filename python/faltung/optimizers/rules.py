"""Update rules with Keras 3 defaults and formulas (keras/src/optimizers/*.py), in place.

SGD, Adam/AdamW, RMSprop and Adagrad run the fused C++ kernels (cpp/src/optim.cpp: one
pass over each variable) when `faltung._core` has them (FUSED is True) and the optimizer's
`fused` attribute is True; otherwise, and for Adamax, `_update` runs the numpy reference:
in-place `out=` operations and one reusable scratch buffer, no per-step allocation
beyond what clipping needs.
"""
import math

import numpy as np

from faltung import _core
from faltung.optimizers.base import Optimizer

# True once the integrator registers bind_optim in cpp/bindings/module.cpp.
FUSED = hasattr(_core, "optim_adam_f32")


def _kernel(name, w, g):
    """(fused C++ kernel for w's dtype, g as a contiguous array of w's dtype)."""
    sfx = "_f64" if w.dtype == np.float64 else "_f32"
    return getattr(_core, f"optim_{name}{sfx}"), np.asarray(g, dtype=w.dtype, order="C")  # 0-d stays 0-d


class _Scratch:
    """One flat float32 buffer shared by all variables (grown on demand)."""

    def __init__(self):
        self.buf = np.empty(0, np.float32)

    def __call__(self, like, i=0):
        n = like.size
        if self.buf.size < 2 * n:
            self.buf = np.empty(2 * n, np.float32)
        return self.buf[i * n:(i + 1) * n].reshape(like.shape)


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, as Keras:
    m = momentum * m - lr * g; w += m (nesterov: w += momentum * m - lr * g);
    without momentum w -= lr * g.

    Args: learning_rate=0.01, momentum=0.0, nesterov=False, plus the common arguments.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name="SGD", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name=name, **kwargs)
        if not isinstance(momentum, (int, float)) or momentum < 0 or momentum > 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = momentum
        self.nesterov = nesterov
        self._slot_names = ("momentum",) if momentum != 0 else ()
        self._tmp = _Scratch()
        self.fused = FUSED

    def _update(self, w, g, slots, lr):
        if self.fused:
            kernel, g = _kernel("sgd", w, g)
            kernel(w, slots.get("momentum"), g, lr, self.momentum, self.nesterov)
            return
        buf = self._tmp(w)
        np.multiply(g, lr, out=buf)                  # lr * g
        if self.momentum == 0:
            w -= buf
            return
        m = slots["momentum"]
        m *= self.momentum
        m -= buf                                     # m = momentum * m - lr * g
        if self.nesterov:
            w -= buf
            np.multiply(m, self.momentum, out=buf)
            w += buf                                 # w += momentum * m - lr * g
        else:
            w += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras's bias-correction form:
    alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t), t = iterations + 1;
    m += (g - m) * (1 - beta_1); v += (g**2 - v) * (1 - beta_2);
    w -= alpha * m / (sqrt(v) + epsilon)   (v replaced by max over time if amsgrad).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name="adam", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad
        self._slot_names = ("momentum", "velocity") + (("velocity_hat",) if amsgrad else ())
        self._tmp = _Scratch()
        self.fused = FUSED

    def _update(self, w, g, slots, lr):
        t = self.iterations + 1
        alpha = lr * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        m, v = slots["momentum"], slots["velocity"]
        if self.fused:
            kernel, g = _kernel("adam", w, g)
            kernel(w, m, v, slots.get("velocity_hat"), g, alpha, self.beta_1, self.beta_2, self.epsilon)
            return
        buf = self._tmp(w)
        np.subtract(g, m, out=buf)
        buf *= (1.0 - self.beta_1)
        m += buf
        np.multiply(g, g, out=buf)
        buf -= v
        buf *= (1.0 - self.beta_2)
        v += buf
        if self.amsgrad:
            np.maximum(slots["velocity_hat"], v, out=slots["velocity_hat"])
            v = slots["velocity_hat"]
        np.sqrt(v, out=buf)
        buf += self.epsilon
        np.divide(m, buf, out=buf)
        buf *= alpha
        w -= buf

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (w -= w * weight_decay * lr before each step);
    Keras default weight_decay=0.004."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name="adamw", **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm,
                         clipvalue, global_clipnorm, name=name, **kwargs)


class Adamax(Optimizer):
    """Adamax (Keras): m += (g - m)(1 - beta_1); u = max(beta_2 * u, |g|);
    w -= lr / (1 - beta_1**t) * m / (u + epsilon)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name="adamax", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self._slot_names = ("m", "norm")
        self._tmp = _Scratch()

    def _update(self, w, g, slots, lr):
        t = self.iterations + 1
        m, u = slots["m"], slots["norm"]
        buf = self._tmp(w)
        np.subtract(g, m, out=buf)
        buf *= (1.0 - self.beta_1)
        m += buf
        u *= self.beta_2
        np.abs(g, out=buf)
        np.maximum(u, buf, out=u)
        np.add(u, self.epsilon, out=buf)
        np.divide(m, buf, out=buf)
        buf *= lr / (1.0 - self.beta_1 ** t)
        w -= buf

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop (Keras): v = rho * v + (1 - rho) * g**2; (centered: a = rho * a + (1 - rho) * g,
    denominator v - a**2 + eps, else v + eps); increment = lr * g / sqrt(denominator);
    with momentum: mom = momentum * mom + increment, w -= mom; else w -= increment."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name="rmsprop", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name=name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered
        self._slot_names = (("velocity",) + (("momentum",) if momentum > 0 else ())
                            + (("average_gradient",) if centered else ()))
        self._tmp = _Scratch()
        self.fused = FUSED

    def _update(self, w, g, slots, lr):
        v = slots["velocity"]
        if self.fused:
            kernel, g = _kernel("rmsprop", w, g)
            kernel(w, v, slots.get("momentum"), slots.get("average_gradient"), g, lr, self.rho,
                   self.momentum, self.epsilon)
            return
        buf = self._tmp(w, 0)
        np.multiply(g, g, out=buf)
        buf *= (1.0 - self.rho)
        v *= self.rho
        v += buf
        if self.centered:
            a = slots["average_gradient"]
            a *= self.rho
            np.multiply(g, 1.0 - self.rho, out=buf)
            a += buf
            np.multiply(a, a, out=buf)
            np.subtract(v, buf, out=buf)
            buf += self.epsilon
        else:
            np.add(v, self.epsilon, out=buf)
        np.sqrt(buf, out=buf)
        np.divide(g, buf, out=buf)
        buf *= lr                                    # increment
        if self.momentum > 0:
            mom = slots["momentum"]
            mom *= self.momentum
            mom += buf
            w -= mom
        else:
            w -= buf

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad (Keras): acc += g**2; w -= lr * g / sqrt(acc + epsilon); the accumulator
    starts at initial_accumulator_value."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name="adagrad", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name=name, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon
        self._slot_names = ("accumulator",)
        self._tmp = _Scratch()
        self.fused = FUSED

    def _init_slot(self, name, value):
        return np.full_like(value, self.initial_accumulator_value)

    def _update(self, w, g, slots, lr):
        acc = slots["accumulator"]
        if self.fused:
            kernel, g = _kernel("adagrad", w, g)
            kernel(w, acc, g, lr, self.epsilon)
            return
        buf = self._tmp(w)
        np.multiply(g, g, out=buf)
        acc += buf
        np.add(acc, self.epsilon, out=buf)
        np.sqrt(buf, out=buf)
        np.divide(g, buf, out=buf)
        buf *= lr
        w -= buf

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
