"""The built-in recurrent cells (Keras's SimpleRNNCell, LSTMCell, GRUCell): they hold the
weights and hyperparameters; `RNN` runs whole sequences of them in one C++ call
(faltung.ops.rnn), never step by step in Python.

Weight shapes and orders are Keras 3's: kernel (input_dim, n*units), recurrent_kernel
(units, n*units), bias (n*units,) — gates i, f, c, o for LSTM, z, r, h for GRU, whose bias is
(2, 3*units) when reset_after (input bias row 0, recurrent bias row 1).
"""
import numpy as np

from faltung import activations, constraints, initializers, regularizers
from faltung.layers.layer import Layer


def _rate(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Invalid value for argument `{name}`: expected a float between 0 and "
                         f"1. Received: {name}={value!r}")
    return min(1.0, max(0.0, float(value)))  # Keras clips to [0, 1]


class _Cell(Layer):
    """What the three cells share: units, activations, initializers, regularizers,
    constraints, dropout rates and the kernel/recurrent_kernel/bias weights."""

    gates = 1            # column blocks of the kernels
    kind = None          # faltung.ops.rnn family
    has_recurrent_activation = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        kwargs.pop("implementation", None)  # Keras's kernel choice; faltung has one
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError("Received an invalid value for argument `units`, expected a "
                             f"positive integer, got {units}.")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = _rate(dropout, "dropout")
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout")
        self.seed = seed

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"Layer {self.name}: the last dimension of the inputs must be "
                             f"known. Received input_shape={tuple(input_shape)}")
        n = self.gates * self.units
        self.kernel = self.add_weight((input_dim, n), self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight((self.units, n), self.recurrent_initializer,
                                                "recurrent_kernel",
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(self._bias_shape(), self._bias_initializer(), "bias",
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, inputs, states, training=False):
        """One step, as Keras's cell API: (output, new_states). Runs the same C++ kernel on a
        length-1 sequence (for code that drives a cell by hand; RNN runs whole sequences)."""
        from faltung.ops import rnn as R
        x = np.asarray(inputs, np.float32)[:, None, :]
        states = states if isinstance(states, (list, tuple)) else [states]
        out = self._run(R, x, states, None, False, False, None, False)
        return out[1], list(out[1:-1])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=activations.serialize(self.activation),
                   use_bias=self.use_bias,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   recurrent_initializer=initializers.serialize(self.recurrent_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer),
                   kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                   recurrent_regularizer=regularizers.serialize(self.recurrent_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer),
                   kernel_constraint=constraints.serialize(self.kernel_constraint),
                   recurrent_constraint=constraints.serialize(self.recurrent_constraint),
                   bias_constraint=constraints.serialize(self.bias_constraint),
                   dropout=self.dropout, recurrent_dropout=self.recurrent_dropout, seed=self.seed)
        if self.has_recurrent_activation:
            cfg["recurrent_activation"] = activations.serialize(self.recurrent_activation)
        return cfg

    # -- the sequence kernels (used by RNN) ----------------------------------------------
    def _weights_values(self):
        return (self.kernel.value, self.recurrent_kernel.value,
                None if self.bias is None else self.bias.value)


class SimpleRNNCell(_Cell):
    """Cell of a fully-connected RNN: h_t = activation(x_t @ kernel + h_{t-1} @
    recurrent_kernel + bias) (Keras's `SimpleRNNCell`; no recurrent_activation)."""

    gates, kind, has_recurrent_activation = 1, "simple_rnn", False

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        super().__init__(units, activation, "sigmoid", use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer,
                         recurrent_regularizer, bias_regularizer, kernel_constraint,
                         recurrent_constraint, bias_constraint, dropout, recurrent_dropout,
                         seed, **kwargs)

    def _run(self, R, x, states, mask, go_backwards, zero_out, rmask, training):
        W, U, b = self._weights_values()
        return R.simple_rnn_forward(x, W, U, b, states[0], mask, go_backwards,
                                    self.activation.name, zero_out, rmask, training)

    @staticmethod
    def _back(R, saved, dhs, d_states, need_dx, need_dweights):
        return R.simple_rnn_backward(saved, dhs, d_states[0], need_dx, need_dweights)


class LSTMCell(_Cell):
    """Cell of a long short-term memory layer (Keras's `LSTMCell`): gates i, f, c, o;
    c_t = f*c_{t-1} + i*activation(z_c); h_t = o*activation(c_t). `unit_forget_bias`
    initializes the forget gate's bias to 1."""

    gates, kind = 4, "lstm"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, **kwargs):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer,
                         recurrent_regularizer, bias_regularizer, kernel_constraint,
                         recurrent_constraint, bias_constraint, dropout, recurrent_dropout,
                         seed, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    @property
    def state_size(self):
        return [self.units, self.units]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        u, base = self.units, self.bias_initializer

        def init(shape, dtype=None):  # Keras: [bias_init(u), ones(u), bias_init(2u)]
            return np.concatenate([base((u,)), np.ones(u, np.float32), base((2 * u,))])
        return init

    def _run(self, R, x, states, mask, go_backwards, zero_out, rmask, training):
        W, U, b = self._weights_values()
        return R.lstm_forward(x, W, U, b, states[0], states[1], mask, go_backwards,
                              self.activation.name, self.recurrent_activation.name, zero_out,
                              rmask, training)

    @staticmethod
    def _back(R, saved, dhs, d_states, need_dx, need_dweights):
        return R.lstm_backward(saved, dhs, d_states[0], d_states[1], need_dx, need_dweights)

    def get_config(self):
        cfg = super().get_config()
        cfg["unit_forget_bias"] = self.unit_forget_bias
        return cfg


class GRUCell(_Cell):
    """Cell of a gated recurrent unit layer (Keras's `GRUCell`): gates z, r, h;
    h_t = z*h_{t-1} + (1-z)*hh. `reset_after=True` (Keras's default) applies the reset gate
    after the recurrent product and keeps separate input and recurrent biases (2, 3*units)."""

    gates, kind = 3, "gru"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, reset_after=True,
                 seed=None, **kwargs):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, kernel_regularizer,
                         recurrent_regularizer, bias_regularizer, kernel_constraint,
                         recurrent_constraint, bias_constraint, dropout, recurrent_dropout,
                         seed, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _run(self, R, x, states, mask, go_backwards, zero_out, rmask, training):
        W, U, b = self._weights_values()
        return R.gru_forward(x, W, U, b, states[0], mask, go_backwards, self.reset_after,
                             self.activation.name, self.recurrent_activation.name, zero_out,
                             rmask, training)

    @staticmethod
    def _back(R, saved, dhs, d_states, need_dx, need_dweights):
        return R.gru_backward(saved, dhs, d_states[0], need_dx, need_dweights)

    def get_config(self):
        cfg = super().get_config()
        cfg["reset_after"] = self.reset_after
        return cfg
