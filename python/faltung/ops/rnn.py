"""Recurrent kernels: SimpleRNN, LSTM and GRU forward and backward (numpy in, numpy out).

Shapes channels-last: x (B, T, F); B batch, T time steps, F features, U units. float32 in
and out; float64 inputs run the float64 kernels (for gradient checks). Weights in Keras 3's
layouts and gate orders (LSTM i, f, c, o; GRU z, r, h). Semantics copied from Keras 3's RNN
loop (keras/src/backend/jax/rnn.py and numpy/rnn.py):

- go_backwards: the steps run over input times T-1 .. 0; `hs` is in processing order
  (hs[:, 0] is the output after input step T-1), as Keras returns it.
- mask (B, T) (input time; reversed with the input): at a masked step the states are carried
  over unchanged and the output is the carried h (zero_output_for_mask=False, the default of
  Keras's plain layers) or zeros (True; Bidirectional with return_sequences). Keras's
  TensorFlow and PyTorch backends output the previous *output* instead, which differs only at
  masked steps before a sample's first unmasked one when h0 is not zero. The kernels work only
  on each step's unmasked samples: padded steps of right- or left-padded batches cost no GEMM
  rows and no gate math.
- recurrent_mask (B, U): recurrent dropout; h_{t-1} * recurrent_mask feeds the recurrent
  products only (one mask for every gate; Keras's implementation 1 draws one per gate).
- activation / recurrent_activation: a Keras name ("tanh", "relu6", "swish", ...), None
  (linear), or a faltung activation object; elementwise ones only.

Each forward returns `saved` (an opaque tuple) when training=True, else None; the matching
backward takes it and the gradients of the outputs and returns the gradients of the inputs
(it never reruns the forward).

faltung's addition: `algorithm="reference"` runs the naive C++ oracle instead (tests).
"""
import numpy as np

from faltung.ops._kernels import as_array, dtype_of, kernel_for

__all__ = ["simple_rnn_forward", "simple_rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward"]


def _activation_spec(identifier, what, op):
    """(kernel name, negative_slope, threshold, max_value, alpha) of an elementwise activation."""
    from faltung import activations  # faltung.activations imports faltung.ops
    try:
        act = activations.get(identifier)
    except ValueError:
        raise ValueError(f"{op}: unknown `{what}` {identifier!r}; expected the name of an "
                         f"elementwise activation (tanh, sigmoid, relu, ...)") from None
    kernel = getattr(act, "kernel", None)
    if kernel is None or kernel in ("softmax", "log_softmax"):
        name = getattr(act, "name", identifier)
        raise ValueError(f"{op}: `{what}`={name!r} is not an elementwise activation; recurrent "
                         f"kernels take tanh, sigmoid, relu, ... by name")
    p = act.params
    max_value = p.get("max_value")
    return (kernel, float(p.get("negative_slope", 0.0)), float(p.get("threshold", 0.0)),
            None if max_value is None else float(max_value), float(p.get("alpha", 1.0)))


def _opt(a, dtype):
    return None if a is None else as_array(a, dtype)


def _mask(mask):
    if mask is None:
        return None
    return np.ascontiguousarray(np.asarray(mask).astype(bool, copy=False)).view(np.uint8)


def _algorithm(algorithm, op):
    if algorithm not in ("fast", "reference"):
        raise ValueError(f"{op}: expected algorithm 'fast' or 'reference', received {algorithm!r}")
    return algorithm == "reference"


def _forward(cell, x, kernel, recurrent_kernel, bias, h0, c0, mask, go_backwards, reset_after,
             activation, recurrent_activation, zero_output_for_mask, recurrent_mask, training,
             algorithm):
    op = f"{cell}_forward"
    dtype = dtype_of(x)
    args = (as_array(x, dtype), as_array(kernel, dtype), as_array(recurrent_kernel, dtype),
            _opt(bias, dtype), _opt(h0, dtype), _opt(c0, dtype), _mask(mask),
            _opt(recurrent_mask, dtype), bool(go_backwards), bool(reset_after),
            _activation_spec(activation, "activation", op),
            _activation_spec(recurrent_activation, "recurrent_activation", op),
            bool(zero_output_for_mask))
    reference = _algorithm(algorithm, op)
    hs, h_T, c_T, flat = kernel_for("rnn_forward", dtype)(cell, *args, bool(training), reference)
    saved = (cell, dtype, args, flat, reference) if training else None
    return hs, h_T, c_T, saved


def _backward(cell, saved, dhs, dh_T, dc_T, need_dx, need_dweights):
    op = f"{cell}_backward"
    if not (isinstance(saved, tuple) and len(saved) == 5 and saved[0] == cell):
        raise ValueError(f"{op}: expected the `saved` tuple of a {cell}_forward(..., "
                         f"training=True) call, received {type(saved).__name__}")
    _, dtype, args, flat, reference = saved
    return kernel_for("rnn_backward", dtype)(
        cell, *args, flat, _opt(dhs, dtype), _opt(dh_T, dtype), _opt(dc_T, dtype),
        bool(need_dx), bool(need_dweights), reference)


def simple_rnn_forward(x, kernel, recurrent_kernel, bias, h0=None, mask=None, go_backwards=False,
                       activation="tanh", zero_output_for_mask=False, recurrent_mask=None,
                       training=False, *, algorithm="fast"):
    """h_t = a(x_t @ W + b + (h_{t-1} * recurrent_mask) @ R).

    x (B,T,F), kernel (F,U), recurrent_kernel (U,U), bias (U,) or None, h0 (B,U) or None
    (zeros), mask (B,T) bool or None, recurrent_mask (B,U) float or None.
    -> (hs (B,T,U) outputs in processing order, h_T (B,U) last state, saved)."""
    hs, h_T, _, saved = _forward("simple_rnn", x, kernel, recurrent_kernel, bias, h0, None, mask,
                                 go_backwards, False, activation, None, zero_output_for_mask,
                                 recurrent_mask, training, algorithm)
    return hs, h_T, saved


def simple_rnn_backward(saved, dhs, dh_T, need_dx=True, need_dweights=True):
    """dhs (B,T,U) or None, dh_T (B,U) or None -> (dx, dkernel, drecurrent_kernel, dbias, dh0);
    entries not needed are None (dbias None when bias was None)."""
    dx, dk, dr, db, dh0, _ = _backward("simple_rnn", saved, dhs, dh_T, None, need_dx, need_dweights)
    return dx, dk, dr, db, dh0


def lstm_forward(x, kernel, recurrent_kernel, bias, h0=None, c0=None, mask=None, go_backwards=False,
                 activation="tanh", recurrent_activation="sigmoid", zero_output_for_mask=False,
                 recurrent_mask=None, training=False, *, algorithm="fast"):
    """kernel (F,4U), recurrent_kernel (U,4U), bias (4U,) or None; gates i, f, c, o:
    z = x_t@W + (h_{t-1} * recurrent_mask)@R + b; i = ra(z_i), f = ra(z_f), g = a(z_c),
    o = ra(z_o); c_t = f*c_{t-1} + i*g; h_t = o*a(c_t).
    -> (hs (B,T,U), h_T (B,U), c_T (B,U), saved)."""
    return _forward("lstm", x, kernel, recurrent_kernel, bias, h0, c0, mask, go_backwards, False,
                    activation, recurrent_activation, zero_output_for_mask, recurrent_mask,
                    training, algorithm)


def lstm_backward(saved, dhs, dh_T, dc_T, need_dx=True, need_dweights=True):
    """dhs (B,T,U), dh_T, dc_T (B,U), each or None
    -> (dx, dkernel, drecurrent_kernel, dbias, dh0, dc0)."""
    return _backward("lstm", saved, dhs, dh_T, dc_T, need_dx, need_dweights)


def gru_forward(x, kernel, recurrent_kernel, bias, h0=None, mask=None, go_backwards=False,
                reset_after=True, activation="tanh", recurrent_activation="sigmoid",
                zero_output_for_mask=False, recurrent_mask=None, training=False, *,
                algorithm="fast"):
    """kernel (F,3U), recurrent_kernel (U,3U), gates z, r, h; bias (2,3U) when reset_after
    (input bias row 0, recurrent bias row 1), (3U,) when not, or None. With hm = h_{t-1} *
    recurrent_mask: z, r = ra(x_{z,r} + hm @ R_{z,r} (+ biases));
    reset_after: hh = a(x_h + r * (hm @ R_h + rb_h)); else hh = a(x_h + (r * hm) @ R_h);
    h_t = z * h_{t-1} + (1 - z) * hh (Keras's GRUCell.call).
    -> (hs (B,T,U), h_T (B,U), saved)."""
    hs, h_T, _, saved = _forward("gru", x, kernel, recurrent_kernel, bias, h0, None, mask,
                                 go_backwards, reset_after, activation, recurrent_activation,
                                 zero_output_for_mask, recurrent_mask, training, algorithm)
    return hs, h_T, saved


def gru_backward(saved, dhs, dh_T, need_dx=True, need_dweights=True):
    """-> (dx, dkernel, drecurrent_kernel, dbias, dh0)."""
    dx, dk, dr, db, dh0, _ = _backward("gru", saved, dhs, dh_T, None, need_dx, need_dweights)
    return dx, dk, dr, db, dh0
