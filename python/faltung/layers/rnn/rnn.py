"""`RNN(cell)`: runs a recurrent cell over a sequence (Keras's `keras.layers.RNN`).

The built-in cells run whole sequences in one C++ call (faltung.ops.rnn): forward saves what
backpropagation through time needs, backward returns dL/dx and, when `initial_state` was
given, the gradients of the initial states. Options as Keras names them: return_sequences,
return_state, go_backwards, stateful (states carried across batches; `reset_states()`),
initial_state, masks (masked steps carry the state; their output is the previous output, or
zeros with zero_output_for_mask), dropout and recurrent_dropout (one mask per sequence, fixed
across time; faltung shares the recurrent mask across the gates, where Keras draws one per
gate), `unroll` accepted and ignored (the C++ loop is already one call).

A user-written cell (any object with `call(inputs, states)` and `state_size`, Keras's
custom-cell protocol: `states` is a list even for one state, the cell returns
(output, new_states)) runs in a Python loop for inference, with masks, go_backwards,
return_state and stateful; training through it raises a clear error (faltung has no
autograd to differentiate arbitrary Python). Such cells may use numpy or faltung.ops
(`matmul`, `dot`, `tanh`, `sigmoid`, ...).
"""
import numpy as np

from faltung import backend, initializers, regularizers
from faltung.layers.layer import Composite, Layer
from faltung.layers.rnn.cells import _Cell


class RNN(Composite):
    """Base class for recurrent layers (Keras's `RNN`).

    Args:
        cell: a built-in cell (SimpleRNNCell, LSTMCell, GRUCell) or an object with
            `call(inputs, states)` returning (output, new_states) and `state_size`.
        return_sequences: return the whole output sequence (batch, time, units) instead of
            the last output (batch, units).
        return_state: also return the final states (h, and c for LSTM).
        go_backwards: process the sequence backwards; the returned sequence is in processing
            order (reversed), as in Keras.
        stateful: the final states of a batch are the initial states of the next batch
            (needs a fixed batch size); `reset_states()` zeroes them.
        unroll: accepted for Keras compatibility; no effect.
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        activity_regularizer: penalty on the layer's outputs (the states too with
            return_state), over the batch size, added to the loss as Keras does
            (faltung.layers.layer.collect_activity_losses).

    Call arguments: `inputs` (batch, time, features) (bool/int inputs are cast to float32),
    `initial_state` (a list of (batch, units) arrays or tensors), `mask` (batch, time),
    `training`.
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False,
                 activity_regularizer=None, **kwargs):
        if isinstance(cell, (list, tuple)):
            raise ValueError("RNN: faltung does not support stacked cells (a list of cells) "
                             "yet; stack RNN layers instead.")
        if not hasattr(cell, "call") or not hasattr(cell, "state_size"):
            raise ValueError("Argument `cell` should have a `call` method and a `state_size` "
                             f"attribute. Received: cell={cell}")
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.states = None
        self._rng = None
        size = cell.state_size
        self.state_size = [size] if isinstance(size, (int, np.integer)) else list(size)

    supports_masking = True

    @property
    def units(self):
        """The output size: the cell's `output_size`, else its first state size (Keras)."""
        return getattr(self.cell, "output_size", None) or self.state_size[0]

    def _inner_layers(self):  # the weights live on the cell, as in Keras
        return [self.cell] if isinstance(self.cell, Layer) else []

    # -- shapes ----------------------------------------------------------------------------
    def _sequence_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, list) else input_shape
        shape = tuple(shape)
        if len(shape) != 3:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: '
                             f"expected ndim=3, found ndim={len(shape)}. Full shape received: "
                             f"{shape}")
        return shape

    def build(self, input_shape):
        shape = self._sequence_shape(input_shape)
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell.build((shape[0], shape[2]))
            self.cell.built = True  # as Keras: a user cell's build need not call super().build
        if self.stateful:
            if shape[0] is None:
                raise ValueError("When using `stateful=True` in a RNN, the batch size must be "
                                 f"static. Found dynamic batch size: sequence.shape={shape}")
            self.states = [np.zeros((shape[0], s), np.float32) for s in self.state_size]
        super().build(shape)

    def compute_output_shape(self, input_shape):
        batch, time = self._sequence_shape(input_shape)[:2]
        out = (batch, time, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [out] + [(batch, s) for s in self.state_size]
        return out

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        out = mask if self.return_sequences else None
        return [out] + [None] * len(self.state_size) if self.return_state else out

    def check_input(self, x):
        exp = self.input_shape
        if x.ndim != 3 or (exp[2] is not None and x.shape[2] != exp[2]):
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: '
                             f"expected shape={exp}, found shape={tuple(x.shape)}")

    def reset_states(self, states=None):
        """Zero the carried states of a stateful layer (or set them to `states`)."""
        if not self.stateful:
            raise AttributeError(f"Layer {self.name} is not stateful: pass stateful=True.")
        if self.states is None:
            return
        if states is None:
            for s in self.states:
                s[...] = 0
            return
        states = states if isinstance(states, (list, tuple)) else [states]
        for s, v in zip(self.states, self._check_states(states, self.states[0].shape[0])):
            s[...] = v

    reset_state = reset_states

    @property
    def states(self):
        """A stateful layer's carried states ((batch, s) float32 arrays, h then c), else None.
        A device-resident model keeps them on the device (`_device_states`, see
        faltung.models.resident_ops): reading them downloads them here, and the device takes
        these host arrays (and whatever is written into them) again on its next batch."""
        dev = self.__dict__.get("_device_states")
        if dev is not None:
            for s, d in zip(self._states, dev):
                s[...] = d.numpy()
            self._device_states = None
        return self._states

    @states.setter
    def states(self, value):
        self._states = value
        self._device_states = None

    # -- computation ---------------------------------------------------------------------------
    def _check_states(self, states, batch):
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        if len(states) != len(self.state_size):
            raise ValueError(f"Layer {self.name} expects {len(self.state_size)} initial "
                             f"state(s), received {len(states)}.")
        out = []
        for s, size in zip(states, self.state_size):
            s = backend.as_float_array(s, f"{self.name} initial_state")
            if s.shape != (batch, size):
                raise ValueError(f"Layer {self.name}: expected an initial state of shape "
                                 f"{(batch, size)}, received shape {s.shape}")
            out.append(s)
        return out

    def _check_stateful_batch(self, input_shape, state_shape):
        """A stateful layer takes batches of the size of its carried states, else ValueError
        (Keras's words, and the layer and shapes; the device-resident path raises it too)."""
        if input_shape[0] != state_shape[0]:
            raise ValueError(f"Layer {self.name}: if an RNN is stateful, the batch size of the input "
                             "sequences must be the same as the batch size of the initial state. "
                             f"Expected an input of shape {(state_shape[0],) + tuple(input_shape[1:])}"
                             f" (the carried states have shape {tuple(state_shape)}), received "
                             f"shape {tuple(input_shape)}.")

    def _check_mask(self, mask, x):
        if mask is None:
            return None
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        m = np.asarray(mask)
        if m.shape != x.shape[:2]:
            raise ValueError(f"Layer {self.name}: expected a mask of shape {x.shape[:2]} "
                             f"(batch, time), received shape {m.shape}")
        return m.astype(bool)

    def _dropout_mask(self, rate, shape, dtype):
        if rate <= 0:
            return None
        if self._rng is None and getattr(self.cell, "seed", None) is not None:
            self._rng = np.random.default_rng(self.cell.seed)
        rng = self._rng if self._rng is not None else initializers.rng()
        keep = rng.random(shape) >= rate
        return (keep / (1.0 - rate)).astype(dtype) if rate < 1 else np.zeros(shape, dtype)

    def forward(self, inputs, training=False, mask=None, initial_state=None):
        x = backend.as_float_array(inputs, f"{self.name} input")
        self.check_input(x)
        batch = x.shape[0]
        given = initial_state is not None
        if given:
            states = self._check_states(initial_state, batch)
        elif self.stateful:
            self._check_stateful_batch(x.shape, self.states[0].shape)
            states = [s.copy() for s in self.states]
        else:
            states = [None] * len(self.state_size)
        m = self._check_mask(mask, x)
        if not isinstance(self.cell, _Cell):
            return self._python_loop(x, states, m, training)
        from faltung.ops import rnn as R
        train = self.behaves_as_training(training)
        dp = self._dropout_mask(self.cell.dropout, (batch, x.shape[2]), x.dtype) if train else None
        rdp = self._dropout_mask(self.cell.recurrent_dropout, (batch, self.units), x.dtype) \
            if train else None
        xin = x if dp is None else x * dp[:, None, :]
        out = self.cell._run(R, xin, states, m, self.go_backwards, self.zero_output_for_mask,
                             rdp, bool(training))
        hs, finals, saved = out[0], list(out[1:-1]), out[-1]
        if self.stateful:
            for s, v in zip(self.states, finals):
                s[...] = v
        if training:
            self.save_for_backward(saved, dp, given, hs.shape)
        last = hs[:, -1] if self.zero_output_for_mask else finals[0]
        y = hs if self.return_sequences else np.ascontiguousarray(last)
        return [y] + finals if self.return_state else y

    def backward(self, dy, need_dx=True):
        from faltung.ops import rnn as R
        saved, dp, given, hs_shape = self.saved_for_backward()
        dys = list(dy) if self.return_state else [dy]
        d_out, d_states = dys[0], list(dys[1:]) + [None] * (len(self.state_size) + 1 - len(dys))
        dhs = None
        if d_out is not None:
            if self.return_sequences:
                dhs = d_out
            elif self.zero_output_for_mask:  # the last output is hs[:, -1]
                dhs = np.zeros(hs_shape, d_out.dtype)
                dhs[:, -1] = d_out
            else:                            # the last output is the final state h_T
                d_states[0] = d_out if d_states[0] is None else d_states[0] + d_out
        grads = self.cell._back(R, saved, dhs, d_states, need_dx or given, self.trainable)
        dx, dk, drk, db = grads[:4]
        d_init = list(grads[4:])
        if self.trainable:
            self.cell.kernel.grad = dk
            self.cell.recurrent_kernel.grad = drk
            if self.cell.bias is not None:
                self.cell.bias.grad = db
        if dx is not None and dp is not None:
            dx = dx * dp[:, None, :]
        dx = dx if need_dx else None
        return (dx, {"initial_state": d_init}) if given else dx

    def _python_loop(self, x, states, mask, training):
        """A user-written cell, step by step in Python (inference only)."""
        if training:
            raise ValueError(f"Layer {self.name}: faltung cannot train through the user-written "
                             f"cell {type(self.cell).__name__} (no autograd for Python code). "
                             "Use SimpleRNNCell, LSTMCell or GRUCell, or run it for inference.")
        batch, T = x.shape[:2]
        states = [np.zeros((batch, s), np.float32) if v is None else v
                  for v, s in zip(states, self.state_size)]
        outs, prev = [], None
        steps = range(T - 1, -1, -1) if self.go_backwards else range(T)
        for t in steps:
            out, new = self.cell.call(x[:, t], list(states))  # a list even for one state (Keras)
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            out, new = np.asarray(out, np.float32), [np.asarray(s, np.float32) for s in new]
            if mask is not None:
                keep = mask[:, t][:, None]
                new = [np.where(keep, n, s) for n, s in zip(new, states)]
                # as the built-in layers (and Keras's jax/numpy loop): the carried h, states[0];
                # a cell whose output is not shaped like it repeats its previous output
                carried = states[0] if states[0].shape == out.shape else prev
                fallback = np.zeros_like(out) if self.zero_output_for_mask or carried is None \
                    else carried
                out = np.where(keep, out, fallback)
            states, prev = new, out
            outs.append(out)
        if self.stateful:
            for s, v in zip(self.states, states):
                s[...] = v
        y = np.stack(outs, 1) if self.return_sequences else outs[-1]
        return [y] + states if self.return_state else y

    def get_config(self):
        from faltung.models.saving import serialize_layer
        cfg = super().get_config()
        cfg.update(return_sequences=self.return_sequences, return_state=self.return_state,
                   go_backwards=self.go_backwards, stateful=self.stateful, unroll=self.unroll,
                   zero_output_for_mask=self.zero_output_for_mask,
                   activity_regularizer=regularizers.serialize(self.activity_regularizer))
        if type(self) is RNN:
            cfg["cell"] = serialize_layer(self.cell)
        return cfg

    @classmethod
    def from_config(cls, config):
        from faltung.models.saving import deserialize_layer
        config = dict(config)
        cell = deserialize_layer(config.pop("cell"))
        return cls(cell, **config)
