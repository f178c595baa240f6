"""Slow, obviously-correct numpy references for SimpleRNN, LSTM and GRU (never imports faltung).
Computed in float64, one sample and one step at a time, from Keras 3's cells
(keras/src/layers/rnn/{simple_rnn,lstm,gru}.py, `call` of each cell) and its loop
(keras/src/backend/{jax,numpy}/rnn.py, the scan path):

- go_backwards: the steps run over input times T-1 .. 0 and the outputs stay in processing
  order (outputs[:, 0] is the output after input step T-1); the mask is reversed with x.
- mask: at a masked step the states are carried over unchanged; the output is the carried h
  (`states[0]`), or zeros when zero_output_for_mask.
- recurrent_mask (B, U): recurrent dropout, h_{t-1} * recurrent_mask feeds the recurrent
  products only (GRU's update h = z * h_{t-1} + (1 - z) * hh uses the plain h_{t-1}).

Activations by Keras name ("tanh", "relu6", "swish", ...).
"""
import numpy as np

from .nn import ELEMENTWISE, relu

ACTIVATIONS = dict(ELEMENTWISE)
ACTIVATIONS.update({
    "relu6": lambda v: relu(v, max_value=6.0),
    "leaky_relu": lambda v: relu(v, negative_slope=0.2),
    "swish": ELEMENTWISE["silu"],
    "hard_swish": ELEMENTWISE["hard_silu"],
    None: ELEMENTWISE["linear"],
})


def _f64(a):
    return None if a is None else np.asarray(a, np.float64)


def _run(step, x, states, mask, go_backwards, zero_output_for_mask):
    """Keras's loop. step(x_t (F,), sample b, states tuple of (U,)) -> new states tuple
    (states[0] is h). states: tuple of (B, U) arrays. -> (outputs (B,T,U), final states)."""
    B, T = x.shape[0], x.shape[1]
    U = states[0].shape[1]
    states = tuple(s.copy() for s in states)
    outputs = np.zeros((B, T, U))
    for s in range(T):  # processing step
        t = T - 1 - s if go_backwards else s  # input time
        for b in range(B):
            prev = tuple(st[b].copy() for st in states)
            if mask is None or mask[b, t]:
                new = step(x[b, t], b, prev)
                out = new[0]
            else:
                new = prev
                out = np.zeros(U) if zero_output_for_mask else prev[0]
            for st, v in zip(states, new):
                st[b] = v
            outputs[b, s] = out
    return outputs, states


def _initial(h, B, U):
    return np.zeros((B, U)) if h is None else _f64(h).copy()


def _rmask(recurrent_mask, b, U):
    return np.ones(U) if recurrent_mask is None else _f64(recurrent_mask)[b]


def simple_rnn(x, kernel, recurrent_kernel, bias, h0=None, mask=None, go_backwards=False,
               activation="tanh", zero_output_for_mask=False, recurrent_mask=None):
    """-> (hs (B,T,U), h_T (B,U)). h_t = a(x_t @ W + b + (h_{t-1} * m) @ R)."""
    x, W, R, bias = _f64(x), _f64(kernel), _f64(recurrent_kernel), _f64(bias)
    B, U = x.shape[0], W.shape[1]
    a = ACTIVATIONS[activation]

    def step(x_t, b, states):
        (h_prev,) = states
        z = x_t @ W + (h_prev * _rmask(recurrent_mask, b, U)) @ R
        if bias is not None:
            z = z + bias
        return (a(z),)

    hs, (hT,) = _run(step, x, (_initial(h0, B, U),), mask, go_backwards, zero_output_for_mask)
    return hs, hT


def lstm(x, kernel, recurrent_kernel, bias, h0=None, c0=None, mask=None, go_backwards=False,
         activation="tanh", recurrent_activation="sigmoid", zero_output_for_mask=False,
         recurrent_mask=None):
    """-> (hs, h_T, c_T). Gates i, f, c, o (columns [0,U), [U,2U), [2U,3U), [3U,4U)):
    z = x_t @ W + (h_{t-1} * m) @ R + b; c_t = f * c_{t-1} + i * a(z_c); h_t = o * a(c_t)."""
    x, W, R, bias = _f64(x), _f64(kernel), _f64(recurrent_kernel), _f64(bias)
    B, U = x.shape[0], W.shape[1] // 4
    a, ra = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]

    def step(x_t, b, states):
        h_prev, c_prev = states
        z = x_t @ W + (h_prev * _rmask(recurrent_mask, b, U)) @ R
        if bias is not None:
            z = z + bias
        i = ra(z[0:U])
        f = ra(z[U:2 * U])
        g = a(z[2 * U:3 * U])
        o = ra(z[3 * U:4 * U])
        c = f * c_prev + i * g
        h = o * a(c)
        return (h, c)

    hs, (hT, cT) = _run(step, x, (_initial(h0, B, U), _initial(c0, B, U)), mask, go_backwards,
                        zero_output_for_mask)
    return hs, hT, cT


def gru(x, kernel, recurrent_kernel, bias, h0=None, mask=None, go_backwards=False,
        reset_after=True, activation="tanh", recurrent_activation="sigmoid",
        zero_output_for_mask=False, recurrent_mask=None):
    """-> (hs, h_T). Gates z, r, h (columns [0,U), [U,2U), [2U,3U)). bias (2, 3U) when
    reset_after (row 0 input bias, row 1 recurrent bias), (3U,) when not, or None.
    reset_after:     hh = a(x_h + r * ((h_{t-1} * m) @ R_h + rb_h))
    not reset_after: hh = a(x_h + (r * (h_{t-1} * m)) @ R_h)
    h_t = z * h_{t-1} + (1 - z) * hh."""
    x, W, R, bias = _f64(x), _f64(kernel), _f64(recurrent_kernel), _f64(bias)
    B, U = x.shape[0], W.shape[1] // 3
    a, ra = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    if bias is None:
        in_bias, rec_bias = np.zeros(3 * U), np.zeros(3 * U)
    elif reset_after:
        in_bias, rec_bias = bias[0], bias[1]
    else:
        in_bias, rec_bias = bias, np.zeros(3 * U)

    def step(x_t, b, states):
        (h_prev,) = states
        hm = h_prev * _rmask(recurrent_mask, b, U)
        xz = x_t @ W[:, 0:U] + in_bias[0:U]
        xr = x_t @ W[:, U:2 * U] + in_bias[U:2 * U]
        xh = x_t @ W[:, 2 * U:] + in_bias[2 * U:]
        z = ra(xz + hm @ R[:, 0:U] + rec_bias[0:U])
        r = ra(xr + hm @ R[:, U:2 * U] + rec_bias[U:2 * U])
        if reset_after:
            hh = a(xh + r * (hm @ R[:, 2 * U:] + rec_bias[2 * U:]))
        else:
            hh = a(xh + (r * hm) @ R[:, 2 * U:])
        h = z * h_prev + (1 - z) * hh
        return (h,)

    hs, (hT,) = _run(step, x, (_initial(h0, B, U),), mask, go_backwards, zero_output_for_mask)
    return hs, hT


def minimal_rnn_cell(lib, ops, units, **kwargs):
    """Keras's custom-cell example (keras.layers.RNN's docstring), written against `lib`
    (keras or faltung) and its `ops`: output = x W + h U, one state."""
    class MinimalRNNCell(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                          initializer="uniform", name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                    initializer="uniform", name="recurrent_kernel")

        def call(self, inputs, states):
            prev_output = states[0]
            h = ops.matmul(inputs, self.kernel)
            output = h + ops.matmul(prev_output, self.recurrent_kernel)
            return output, [output]
    return MinimalRNNCell(units, **kwargs)
