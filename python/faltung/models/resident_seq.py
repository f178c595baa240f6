"""The sequence layers of a device-resident model (faltung.models.resident), as ops of the kind
faltung.models.resident_ops defines, over cpp/cuda/bind_resident_seq.hpp's entry points:
Embedding (its indices checked on the host and uploaded with the batch), Masking, RepeatVector,
Permute, Bidirectional and TimeDistributed.

Masks (uint8 DeviceArrays, 1 = keep) travel as faltung.models.resident_graph propagates them:
an op with `mask_of(res, saved)` makes its step's output mask (Masking, Embedding with
mask_zero=True), an op with `takes_mask` receives its step's input mask as `mask=` and says
with `passes_mask()` whether its output keeps it (the recurrent layers, Bidirectional,
TimeDistributed, GlobalAveragePooling1D).
"""
from faltung.models.resident_ops import _LayerOp, _unsupported, ops_for, recurrent_op


class Indices:
    """A model input read by Embedding layers: the host batch, uploaded once per vocabulary
    size (the table's rows) as the (indices, order, offsets) bind_resident_seq.hpp's
    `indices` makes."""

    def __init__(self, x):
        self.x, self.uploads = x, {}

    def device(self, res, layer):
        up = self.uploads.get(layer.input_dim)
        if up is None:
            idx = layer._indices(self.x)  # the CPU layer's conversion, and its errors
            try:
                up = res.r.indices(idx, layer.input_dim)
            except ValueError as e:  # an index out of range, worded as the CPU layer words it
                raise ValueError(f'Layer "{layer.name}": {e}') from None
            self.uploads[layer.input_dim] = up
        return up


class _Embedding(_LayerOp):
    """Embedding: a gather of the table's rows; backward a scatter-add into the table's
    gradient (no gradient to the integer input); with mask_zero the mask `indices != 0`."""

    def forward(self, res, x, training):
        idx, order, offsets = x.device(res, self.layer)
        y = res.r.embedding(idx, res.array(self.layer.embeddings))
        mask = res.r.nonzero_mask(idx) if self.layer.mask_zero else None
        return y, (order, offsets, mask)

    def mask_of(self, res, saved):
        return saved[2]

    def backward(self, res, dy, saved, need_dx):
        order, offsets, _ = saved
        table = self.layer.embeddings
        if res.trains(table):
            res.set_grad(table, res.r.embedding_backward(dy, order, offsets))
        return None


class _Masking(_LayerOp):
    """Masking: keep = any(x != mask_value, axis=-1), y = x * keep (the mask a constant)."""

    def forward(self, res, x, training):
        keep = res.r.masking_mask(x, float(self.layer.mask_value))
        return res.r.apply_mask(x, keep), keep

    def mask_of(self, res, keep):
        return keep

    def backward(self, res, dy, keep, need_dx):
        return res.r.apply_mask(dy, keep) if need_dx else None


class _RepeatVector(_LayerOp):
    def forward(self, res, x, training):
        return res.r.repeat_vector(x, self.layer.n), None

    def backward(self, res, dy, saved, need_dx):
        return res.r.repeat_vector_backward(dy) if need_dx else None


class _Permute(_LayerOp):
    def forward(self, res, x, training):
        return res.r.permute(x, list(self.layer._perm)), None

    def backward(self, res, dy, saved, need_dx):
        return res.r.permute(dy, list(self.layer._inverse)) if need_dx else None


class _TimeDistributed(_LayerOp):
    """TimeDistributed: the inner layer's ops on (batch * time, ...), reshaped back; the time
    mask passes through (the inner layer does not see it)."""
    takes_mask = True

    def __init__(self, layer):
        self.layer, self.ops = layer, ops_for(layer.layer)
        for op in self.ops:  # the inner layer never sees the mask, as on the CPU
            if hasattr(op, "mask_of"):  # Masking, Embedding
                raise _unsupported(layer, f"the inner layer {type(layer.layer).__name__} of TimeDistributed")

    def passes_mask(self):
        return True

    def forward(self, res, x, training, mask=None):
        shape = tuple(x.shape)
        if len(shape) < 3:
            raise ValueError(f"Layer {self.layer.name}: expected an input of rank >= 3 (batch, time, ...), "
                             f"received shape {shape}")
        y, saved = x.reshape((shape[0] * shape[1],) + shape[2:]), []
        for op in self.ops:
            y, s = op.forward(res, y, training)
            saved.append(s)
        return y.reshape(shape[:2] + tuple(y.shape[1:])), (saved, shape)

    def backward(self, res, dy, saved, need_dx):
        saved, shape = saved
        d = dy.reshape((shape[0] * shape[1],) + tuple(dy.shape[2:]))
        for j in range(len(self.ops) - 1, -1, -1):
            d = self.ops[j].backward(res, d, saved[j], need_dx or j > 0)
        return None if d is None else d.reshape(shape)


BIDIRECTIONAL_MERGE = {"sum": "add", "ave": "average", "mul": "multiply"}


class _Bidirectional(_LayerOp):
    """Bidirectional: the forward and the backward (go_backwards) recurrent op on the same input
    and mask; with return_sequences the backward output flipped back to input order; merged by
    concat, sum, ave or mul, or both returned (merge_mode=None). As the CPU wrapper: with
    return_state the forward direction's final states, then the backward's, follow the
    output(s); `initial_state` is the forward direction's states, then the backward's (their
    gradients come back alike); stateful directions carry their own states (_Recurrent). Several
    outputs take their gradients as a list, None where one gets none."""
    takes_mask = True
    takes_initial_state = True

    def __init__(self, layer):
        self.layer = layer
        self.fwd, self.bwd = recurrent_op(layer.forward_layer), recurrent_op(layer.backward_layer)

    def passes_mask(self):
        return self.layer.return_sequences

    def forward(self, res, x, training, mask=None, initial_state=None):
        l, mode = self.layer, self.layer.merge_mode
        nf = len(l.forward_layer.state_size)  # (a backward_layer of another kind has its own count)
        fs, bs = (None, None) if initial_state is None else (initial_state[:nf], initial_state[nf:])
        y_f, s_f = self.fwd.forward(res, x, training, mask=mask, initial_state=fs)
        y_b, s_b = self.bwd.forward(res, x, training, mask=mask, initial_state=bs)
        states = []
        if l.return_state:
            states, y_f, y_b = y_f[1:] + y_b[1:], y_f[0], y_b[0]
        if l.return_sequences:
            y_b = res.r.reverse_time(y_b)
        merged = None
        if mode is None:
            out = [y_f, y_b]
        elif mode == "concat":
            out = [res.r.concatenate([y_f, y_b], len(y_f.shape) - 1)]
        else:
            y, win = res.r.merge(BIDIRECTIONAL_MERGE[mode], [y_f, y_b])
            out, merged = [y], ([y_f, y_b], win)
        saved = (s_f, s_b, merged, initial_state is not None, y_f.shape[-1])
        return (out + states if l.return_state or mode is None else out[0]), saved

    def backward(self, res, dy, saved, need_dx):
        s_f, s_b, merged, given, units = saved
        l, mode = self.layer, self.layer.merge_mode
        dys = list(dy) if l.return_state or mode is None else [dy]
        n_out = 2 if mode is None else 1
        g, d_states = dys[0], dys[n_out:]
        if mode is None:
            d_f, d_b = dys[:2]
        elif g is None:
            d_f = d_b = None
        elif mode == "concat":
            d_f, d_b = res.r.concatenate_backward(g, [units, g.shape[-1] - units], len(g.shape) - 1)
        else:
            d_f, d_b = res.r.merge_backward(BIDIRECTIONAL_MERGE[mode], g, merged[0], merged[1])
        if l.return_sequences and d_b is not None:
            d_b = res.r.reverse_time(d_b)
        nf = len(l.forward_layer.state_size)
        dx, d_init = None, []
        for op, d, ds, s in ((self.fwd, d_f, d_states[:nf], s_f), (self.bwd, d_b, d_states[nf:], s_b)):
            if d is None and all(v is None for v in ds):  # a direction without a gradient is skipped
                d_init += [None] * len(op.layer.state_size)
                continue
            r = op.backward(res, [d] + ds if l.return_state else d, s, need_dx)
            r_dx, r_init = r if given else (r, [])
            d_init += r_init
            if r_dx is not None:
                dx = r_dx if dx is None else res.r.add(dx, r_dx)
        return (dx, d_init) if given else dx


def SEQ_LAYERS():
    """The layer types seq_ops runs."""
    from faltung import layers as L
    return (L.Embedding, L.Masking, L.RepeatVector, L.Permute, L.TimeDistributed, L.Bidirectional)


def seq_ops(layer):
    """The ops of a sequence layer (one of SEQ_LAYERS())."""
    from faltung import layers as L
    kind = type(layer)
    if kind is L.Embedding:
        return [_Embedding(layer)]
    if kind is L.Masking:
        return [_Masking(layer)]
    if kind is L.RepeatVector:
        return [_RepeatVector(layer)]
    if kind is L.Permute:
        return [_Permute(layer)]
    if kind is L.TimeDistributed:
        return [_TimeDistributed(layer)]
    if kind is L.Bidirectional:
        return [_Bidirectional(layer)]
    raise _unsupported(layer, f"the layer type {kind.__name__}")
