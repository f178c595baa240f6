"""Optimizer base: learning rate (float, schedule or callable), iterations, clipping,
weight decay, per-variable state. Subclasses implement `_update(var_value, grad, slots, lr)`
in place with numpy.

Order of one step (Keras 3's): drop variables without gradient, divide by
loss_scale_factor, clip (clipnorm | global_clipnorm | clipvalue), decay weights
(w -= w * weight_decay * lr), update rule, constraints, iterations += 1. The learning
rate is the schedule evaluated at `iterations` before the increment.
"""
import warnings

import numpy as np

from faltung.optimizers import schedules as schedules_module


class Optimizer:
    """Base class of faltung's optimizers (Keras 3's `keras.optimizers.Optimizer`).

    Args:
        learning_rate: float, a `LearningRateSchedule`, or a callable with no arguments.
        weight_decay: if set, w -= w * weight_decay * lr before each update.
        clipnorm: clip each gradient to this L2 norm.
        clipvalue: clip each gradient element to [-clipvalue, clipvalue].
        global_clipnorm: clip all gradients together to this global L2 norm.
        loss_scale_factor: gradients are divided by it before the update.
        name: optimizer name.
    use_ema and gradient_accumulation_steps are not supported (ValueError if set).
    """

    _slot_names = ()  # names of per-variable state arrays, created as zeros
    _resident = None  # a device-resident model's Resident, whose device holds the slots' newest values

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                             f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        if use_ema or gradient_accumulation_steps:
            raise ValueError(f"{type(self).__name__}: `use_ema` and `gradient_accumulation_steps` "
                             "are not supported by faltung")
        if not (isinstance(learning_rate, (schedules_module.LearningRateSchedule, int, float))
                or callable(learning_rate)) or isinstance(learning_rate, bool):
            raise ValueError("Argument `learning_rate` should be float, or an instance of "
                             "LearningRateSchedule, or a callable (that takes in the current "
                             "iteration value and returns the corresponding learning rate value). "
                             f"Received instead: learning_rate={learning_rate}")
        self.name = name or type(self).__name__.lower()
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._learning_rate = (float(learning_rate) if isinstance(learning_rate, (int, float))
                               else learning_rate)
        self.iterations = 0
        self._state = {}      # id(var) -> (var, {slot name: ndarray})
        self._slot_list = []  # every slot array, in creation order (for `variables`)
        self._exclude_ids = set()
        self._exclude_names = ()
        self.built = False

    # -- learning rate -----------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current learning rate as a float (a schedule is evaluated at `iterations`)."""
        lr = self._learning_rate
        if isinstance(lr, schedules_module.LearningRateSchedule):
            return float(lr(self.iterations))
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, schedules_module.LearningRateSchedule) or callable(value):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, schedules_module.LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not "
                            "settable. If you need the learning rate to be settable, you should "
                            "instantiate the optimizer with a float `learning_rate` argument.")
        self._learning_rate = float(value)

    lr = learning_rate  # tf.keras alias

    # -- state ----------------------------------------------------------------------------
    def build(self, variables):
        """Create the per-variable state of `variables` (done lazily by apply otherwise)."""
        for v in variables:
            self._slots(v)
        self.built = True

    def _slots(self, var):
        entry = self._state.get(id(var))
        if entry is None or entry[0] is not var:
            slots = {}
            for name in self._slot_names:
                slots[name] = self._init_slot(name, var.value)
                self._slot_list.append(slots[name])
            entry = (var, slots)
            self._state[id(var)] = entry
        return entry[1]

    def _init_slot(self, name, value):
        return np.zeros_like(value)

    @property
    def variables(self):
        """[iterations (int64 0-d array)] + every state array, in creation order."""
        if self._resident is not None:
            self._resident.pull()
        return [np.array(self.iterations, dtype=np.int64)] + list(self._slot_list)

    def get_weights(self):
        return [np.array(v, copy=True) for v in self.variables]

    def set_weights(self, weights):
        current = self.variables
        if len(weights) != len(current):
            raise ValueError(f"Optimizer {self.name}: expected {len(current)} weights, "
                             f"received {len(weights)}")
        for i, (dst, src) in enumerate(zip(current, weights)):
            src = np.asarray(src)
            if dst.shape != src.shape:
                raise ValueError(f"Optimizer variable {i} has shape {dst.shape} not compatible "
                                 f"with provided weight shape {src.shape}.")
        self.iterations = int(np.asarray(weights[0]))
        for dst, src in zip(self._slot_list, weights[1:]):
            dst[...] = src
        if self._resident is not None:
            self._resident.push_slots()

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        self._exclude_ids = {id(v) for v in (var_list or [])}
        self._exclude_names = tuple(var_names or ())

    # -- applying gradients ---------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        grads_and_vars = list(grads_and_vars)
        if grads_and_vars:
            grads, variables = zip(*grads_and_vars)
            self.apply(list(grads), list(variables))
        return self.iterations

    def apply(self, grads, trainable_variables=None):
        """Keras form `apply(grads, variables)`, or faltung's `apply(variables)`, which takes
        each variable's `.grad` (variables with grad None or trainable False are skipped)."""
        if trainable_variables is None:
            variables = [v for v in grads if getattr(v, "trainable", True)]
            grads = [v.grad for v in variables]
        else:
            variables = list(trainable_variables)
            grads = list(grads)
            if len(grads) != len(variables):
                raise ValueError(f"Optimizer {self.name}: received {len(grads)} gradients for "
                                 f"{len(variables)} variables")
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if not pairs:
            return
        gs = []
        for g, v in pairs:
            g = np.asarray(g)
            if g.shape != v.value.shape:
                raise ValueError(f"Optimizer {self.name}: gradient of variable `{v.name}` has shape "
                                 f"{g.shape}, expected the variable's shape {v.value.shape}")
            if g.dtype != v.value.dtype:
                g = g.astype(v.value.dtype)
            gs.append(g)
        if self.loss_scale_factor is not None:
            gs = [g / self.loss_scale_factor for g in gs]
        gs = self._clip(gs)
        lr = self.learning_rate
        if self.weight_decay:
            for _, v in pairs:
                if self._use_weight_decay(v):
                    v.value *= (1.0 - self.weight_decay * lr)
        for g, (_, v) in zip(gs, pairs):
            self._update(v.value, g, self._slots(v), lr)
            if getattr(v, "constraint", None) is not None:
                v.value[...] = v.constraint(v.value)
        self.built = True
        self.iterations += 1

    def _use_weight_decay(self, var):
        if id(var) in self._exclude_ids:
            return False
        return not any(n in getattr(var, "name", "") for n in self._exclude_names)

    def _clip(self, gs):
        if self.clipnorm and self.clipnorm > 0:
            out = []
            for g in gs:
                norm = float(np.sqrt(np.vdot(g, g)))
                out.append(g * (self.clipnorm / norm) if norm > self.clipnorm else g)
            return out
        if self.global_clipnorm and self.global_clipnorm > 0:
            norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in gs)))
            if norm > self.global_clipnorm or not np.isfinite(norm):
                scale = self.global_clipnorm / norm if np.isfinite(norm) else float("nan")
                return [g * scale for g in gs]
            return gs
        if self.clipvalue and self.clipvalue > 0:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in gs]
        return gs

    def _update(self, w, g, slots, lr):
        """Update w (float32 ndarray) in place from gradient g and state `slots`."""
        raise NotImplementedError(f"{type(self).__name__}._update")

    # -- config ---------------------------------------------------------------------------
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, schedules_module.LearningRateSchedule):
            lr = schedules_module.serialize(lr)
        elif callable(lr):
            lr = float(lr())
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue, "use_ema": self.use_ema,
                "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = schedules_module.deserialize(lr)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name} learning_rate={self.learning_rate}>"
