"""Bidirectional and TimeDistributed (Keras's wrappers). Each runs its inner layers as
sub-calls with their own CallContexts, so a wrapper used twice in a graph keeps both calls'
saved values, like any other brick."""
import numpy as np

from faltung import regularizers
from faltung.layers.layer import CallContext, Composite, Layer, run_backward, run_forward

_MERGE_MODES = ("sum", "mul", "ave", "concat", None)


class Bidirectional(Composite):
    """Bidirectional wrapper for RNNs (Keras's `Bidirectional`).

    Args:
        layer: an RNN layer (LSTM, GRU, SimpleRNN, RNN). The forward direction is a copy of it
            named "forward_<name>", the backward one a copy with go_backwards=True named
            "backward_<name>" (unless `backward_layer` is given).
        merge_mode: "concat" (default), "sum", "mul", "ave" or None (a list of both outputs).
        weights: optional list of initial weights (forward layer's, then backward layer's).
        backward_layer: optional RNN layer for the backward direction.
        activity_regularizer: penalty on the merged output(s) (and returned states), as
            Keras's; the inner layers' own activity_regularizers apply to their outputs.

    With return_sequences, the backward layer's output sequence is flipped back to input
    order before merging, and masked steps output zeros (Keras forces zero_output_for_mask).
    `initial_state` is the forward layer's states followed by the backward layer's.
    """

    supports_masking = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 activity_regularizer=None, **kwargs):
        from faltung.models.saving import deserialize_layer, serialize_layer
        if not isinstance(layer, Layer):
            raise ValueError("Please initialize `Bidirectional` layer with a `keras.layers.Layer` "
                             f"instance. Received: {layer}")
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ValueError("`backward_layer` need to be a `keras.layers.Layer` instance. "
                             f"Received: {backward_layer}")
        for role, sub in (("layer", layer), ("backward_layer", backward_layer)):
            if sub is not None and not hasattr(sub, "go_backwards"):
                raise ValueError(f"Bidirectional: `{role}` must be a recurrent layer (an RNN, SimpleRNN, "
                                 f"LSTM or GRU), received {type(sub).__name__} '{sub.name}'.")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Invalid merge mode. Received: {merge_mode}. Merge mode should be "
                             'one of {"sum", "mul", "ave", "concat", None}')
        super().__init__(**kwargs)
        cfg = serialize_layer(layer)
        cfg.pop("build_config", None)
        cfg["config"]["name"] = "forward_" + layer.name.removeprefix("forward_")
        self.forward_layer = deserialize_layer(cfg)
        if backward_layer is None:
            cfg = serialize_layer(layer)
            cfg.pop("build_config", None)
            cfg["config"].update(go_backwards=True,
                                 name="backward_" + layer.name.removeprefix("backward_"))
            backward_layer = deserialize_layer(cfg)
        self.backward_layer = backward_layer
        f, b = self.forward_layer, self.backward_layer
        if f.go_backwards == b.go_backwards:
            raise ValueError("Forward layer and backward layer should have different "
                             "`go_backwards` value. Received: forward_layer.go_backwards "
                             f"{f.go_backwards}, backward_layer.go_backwards={b.go_backwards}")
        for a in ("stateful", "return_sequences", "return_state"):
            if getattr(f, a) != getattr(b, a):
                raise ValueError("Forward layer and backward layer are expected to have the same "
                                 f'value for attribute "{a}", got "{getattr(f, a)}" for forward '
                                 f'layer and "{getattr(b, a)}" for backward layer')
        for sub in (f, b):
            sub.zero_output_for_mask = sub.return_sequences
        self.merge_mode = merge_mode
        self.stateful, self.return_sequences = f.stateful, f.return_sequences
        self.return_state = f.return_state
        self._initial_weights = weights
        self.activity_regularizer = regularizers.get(activity_regularizer)

    def _inner_layers(self):
        return [self.forward_layer, self.backward_layer]

    def reset_states(self, states=None):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    def build(self, input_shape):
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)
        if self._initial_weights:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        out = self.forward_layer.compute_output_shape(input_shape)
        out_b = self.backward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:  # each direction's own states (a backward_layer may differ)
            out, out_b, states = out[0], out_b[0], list(out[1:]) + list(out_b[1:])
        if self.merge_mode == "concat":
            last = None if out[-1] is None or out_b[-1] is None else out[-1] + out_b[-1]
            out = tuple(out[:-1]) + (last,)
        elif self.merge_mode is not None and tuple(out) != tuple(out_b):
            raise ValueError(f"Layer {self.name} (Bidirectional, merge_mode={self.merge_mode!r}): the "
                             f"forward layer's output has shape {tuple(out)}, the backward layer's "
                             f"{tuple(out_b)}; they must be equal (or use merge_mode='concat' or None).")
        outs = [tuple(out), tuple(out_b)] if self.merge_mode is None else [tuple(out)]
        if self.return_state:
            return outs + states
        return outs if self.merge_mode is None else outs[0]

    def _state_counts(self):
        return len(self.forward_layer.state_size), len(self.backward_layer.state_size)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        out = mask if self.return_sequences else None
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            return outs + [None] * sum(self._state_counts())
        return outs if self.merge_mode is None else outs[0]

    def forward(self, x, training=False, mask=None, initial_state=None):
        inference = self._context().inference
        fs = bs = None
        if initial_state is not None:  # the forward layer's states, then the backward one's
            initial_state = list(initial_state)
            nf, nb = self._state_counts()
            if len(initial_state) != nf + nb:
                raise ValueError(f"Layer {self.name} (Bidirectional) expects {nf + nb} initial states "
                                 f"({nf} for '{self.forward_layer.name}', then {nb} for "
                                 f"'{self.backward_layer.name}'), received {len(initial_state)}.")
            fs, bs = initial_state[:nf], initial_state[nf:]
        ctx_f, ctx_b = CallContext(inference), CallContext(inference)
        y = run_forward(self.forward_layer, ctx_f, x, training, mask=mask, initial_state=fs)
        y_rev = run_forward(self.backward_layer, ctx_b, x, training, mask=mask, initial_state=bs)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]
        mode = self.merge_mode
        if mode in ("sum", "ave", "mul") and y.shape != y_rev.shape:
            raise ValueError(f"Layer {self.name} (Bidirectional, merge_mode={mode!r}): the forward "
                             f"layer's output has shape {y.shape}, the backward layer's {y_rev.shape}; "
                             "they must be equal (or use merge_mode='concat' or None).")
        if mode == "concat":
            out = [np.concatenate([y, y_rev], axis=-1)]
        elif mode == "sum":
            out = [y + y_rev]
        elif mode == "ave":
            out = [(y + y_rev) / 2]
        elif mode == "mul":
            out = [y * y_rev]
        else:
            out = [y, np.ascontiguousarray(y_rev)]
        if training:
            self.save_for_backward(ctx_f, ctx_b, y if mode == "mul" else None,
                                   y_rev if mode == "mul" else None, y.shape[-1],
                                   initial_state is not None)
        if self.return_state or mode is None:
            return out + states
        return out[0]

    def backward(self, dy, need_dx=True):
        ctx_f, ctx_b, y, y_rev, units, given = self.saved_for_backward()
        dys = list(dy) if (self.return_state or self.merge_mode is None) else [dy]
        n_out = 2 if self.merge_mode is None else 1
        d_out, d_states = dys[:n_out], dys[n_out:]
        mode = self.merge_mode
        g = d_out[0]
        if mode == "concat":
            dy_f, dy_b = (None, None) if g is None else (g[..., :units], g[..., units:])
        elif mode == "sum":
            dy_f = dy_b = g
        elif mode == "ave":
            dy_f = dy_b = None if g is None else g / 2
        elif mode == "mul":
            dy_f, dy_b = (None, None) if g is None else (g * y_rev, g * y)
        else:
            dy_f, dy_b = d_out
        if dy_b is not None and self.return_sequences:
            dy_b = np.ascontiguousarray(dy_b[:, ::-1])
        nf, nb = self._state_counts()
        results = []
        for sub, ctx, d, ds in ((self.forward_layer, ctx_f, dy_f, d_states[:nf]),
                                (self.backward_layer, ctx_b, dy_b, d_states[nf:])):
            d_sub = [d] + list(ds) if self.return_state else d
            if d is None and not any(s is not None for s in ds) and ctx.outputs_spec is None:
                ctx.saved = None
                results.append(None)
                continue
            results.append(run_backward(sub, ctx, d_sub, need_dx))
        dx, d_init = None, []
        for r, n in zip(results, (nf, nb)):
            if r is None:  # no gradient reached this direction: none for its initial states
                d_init += [None] * (n if given else 0)
                continue
            r_dx, r_init = (r[0], r[1]["initial_state"]) if given else (r, [])
            d_init += r_init
            if r_dx is not None:
                dx = r_dx if dx is None else dx + r_dx
        return (dx, {"initial_state": d_init}) if given else dx

    def get_config(self):
        from faltung.models.saving import serialize_layer
        cfg = super().get_config()
        cfg.update(merge_mode=self.merge_mode, layer=serialize_layer(self.forward_layer),
                   backward_layer=serialize_layer(self.backward_layer),
                   activity_regularizer=regularizers.serialize(self.activity_regularizer))
        for key in ("layer", "backward_layer"):
            cfg[key].pop("build_config", None)
        return cfg

    @classmethod
    def from_config(cls, config):
        from faltung.models.saving import deserialize_layer
        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_layer(config["backward_layer"])
        return cls(**config)


class TimeDistributed(Composite):
    """Applies a layer to every temporal slice of an input (Keras's `TimeDistributed`).

    Input (batch, time, ...) is viewed as (batch * time, ...) for one call of the inner layer
    (Dense stays one GEMM), and the result reshaped back. faltung's difference: a layer with
    batch statistics (BatchNormalization) sees all steps at once, where Keras calls it per
    step. The time mask passes through.
    """

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError("Please initialize `TimeDistributed` layer with a "
                             f"`keras.layers.Layer` instance. Received: {layer}")
        super().__init__(**kwargs)
        self.layer = layer

    def _inner_layers(self):
        return [self.layer]

    def _child_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError("`TimeDistributed` Layer should be passed an `input_shape` with at "
                             f"least 3 dimensions, received: {input_shape}")
        return (None,) + input_shape[2:]

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(self._child_shape(input_shape))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_shape(input_shape))
        return (input_shape[0], input_shape[1]) + tuple(child[1:])

    def forward(self, x, training=False, mask=None):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ValueError(f"Layer {self.name}: expected an input of rank >= 3 (batch, time, "
                             f"...), received shape {x.shape}")
        if mask is not None and np.shape(mask)[:2] != x.shape[:2]:
            raise ValueError(f"The `mask` passed to the `TimeDistributed` layer has a shape "
                             f"{np.shape(mask)} that is incompatible with the input shape "
                             f"{x.shape}.")
        batch, time = x.shape[:2]
        ctx = CallContext(self._context().inference)
        flat = np.ascontiguousarray(x).reshape((batch * time,) + x.shape[2:])
        # the inner layer's own activity_regularizer does not apply (Keras runs its `call`)
        y = run_forward(self.layer, ctx, flat, training, own_activity=False)
        if training:
            self.save_for_backward(ctx, x.shape)
        return y.reshape((batch, time) + y.shape[1:])

    def backward(self, dy, need_dx=True):
        ctx, shape = self.saved_for_backward()
        batch, time = shape[:2]
        d = np.ascontiguousarray(dy).reshape((batch * time,) + dy.shape[2:])
        dx = run_backward(self.layer, ctx, d, need_dx)
        return None if dx is None else dx.reshape(shape)

    def get_config(self):
        from faltung.models.saving import serialize_layer
        cfg = super().get_config()
        layer = serialize_layer(self.layer)
        layer.pop("build_config", None)
        cfg["layer"] = layer
        return cfg

    @classmethod
    def from_config(cls, config):
        from faltung.models.saving import deserialize_layer
        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"])
        return cls(**config)
