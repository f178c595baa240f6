"""Device-resident models (issue 14): weights, optimizer slots and activations in the memory
of a CUDA device (faltung._cuda), or of the test harness faltung._cuda_host (the same kernel
bodies on the CPU), as DeviceArrays (cpp/cuda/device_array.hpp).

A model (Sequential or functional) built inside `faltung.device("gpu:N")` gets a `Resident`
(`model._resident`): its graph of layer calls as steps of ops (faltung.models.resident_graph,
faltung.models.resident_ops) over the backend's `resident` entry points
(cpp/cuda/bind_resident.hpp, bind_resident_losses.hpp). The Trainer's loop (epochs, shuffling,
callbacks, History) is the CPU's; only the per-batch steps come here:
- train_batch: each input uploaded once (in `fit`, one batch ahead through pinned buffers on a
  copy stream, overlapping the step before: `prefetch`, with the batch's targets and sample
  weights), targets, labels and sample weights once (shared by the loss and the metrics),
  forward, each output's loss and gradient (times its loss weight), backward (gradients of a
  tensor read twice, or of a layer called twice, summed), the optimizer's clipping and rule on
  each weight and its slots in place; out comes one small vector: each loss's mean and two sums
  per compiled metric reduced on the device (accuracies, MeanSquaredError, MeanAbsoluteError:
  faltung.models.resident_metrics), read after the batch, or summed on the device and read once
  per epoch (validation, evaluate) when no callback reads batch logs (verbose 0 or 2 and no
  batch-end hook: EpochStats); the predictions only for an output with another metric, which
  updates on the host from them.
- test_batch: the same without gradients; predict: forward, the outputs downloaded.
Every output is a new DeviceArray whose block comes from the backend's caching pool
(cpp/cuda/pooled_buf.hpp), so steps after the first allocate nothing from the device.
The host copies (Variable.value, the optimizer's slot arrays) are refreshed from the device
when read after a step (get_weights, save, layer.kernel.value, optimizer.variables); writes
to them (Variable.assign, set_weights, load_weights, optimizer.set_weights) are uploaded.

Supported, anything else raising NotImplementedError that names it (layers at build time,
losses and optimizer at compile or on the first batch):
- graphs: Sequential and functional models, several inputs and outputs, the merge layers Add,
  Subtract, Multiply, Average, Maximum, Minimum (masks used as the CPU layers use them),
  Concatenate and Dot (any axes, normalize), shared layers, tensors read by several layers;
  masks from Masking and Embedding(mask_zero=True) (faltung.models.resident_graph),
  weighing the losses and metrics of the outputs they reach as the CPU Trainer's, and `mask=`
  arguments (model inputs or layers' outputs); nested models (a Sequential or functional Model
  called as a layer, also with a `mask=`: its calls inlined into the outer graph, which then
  holds its weights: an inner model built on the device gives up its own Resident); no layers with several outputs (but
  Bidirectional's);
- layers Dense, Conv1D/2D, DepthwiseConv1D/2D, SeparableConv1D/2D (every padding, stride,
  dilation and groups the CPU layers take), Conv1D/2DTranspose (also output_padding),
  Max/AveragePooling1D/2D, Global{Max,Average}Pooling1D/2D (keepdims; no mask), Flatten,
  Reshape, UpSampling1D/2D (nearest, bilinear), ZeroPadding1D/2D, Cropping1D/2D (all
  channels_last), SimpleRNN, LSTM, GRU (either reset_after; tanh/sigmoid; return_sequences,
  go_backwards, masks, return_state, initial_state (tensors of the graph or constants), stateful
  (the states carried on the device, read back through RNN.states); dropout and
  recurrent_dropout (the CPU layer's masks)),
  Bidirectional (merge modes concat, sum, mul, ave, None; return_state, initial_state, stateful)
  and TimeDistributed of those layers,
  Embedding, Masking, RepeatVector, Permute (faltung.models.resident_seq), Dropout (without
  noise_shape; its masks equal the CPU layer's for the same seeds), BatchNormalization (last axis, not
  synchronized), and the activation layers Activation, ReLU, LeakyReLU, ELU and Softmax, with
  activations that are kernels (relu & co., sigmoid, tanh, gelu, ...) or softmax/log_softmax on
  the last axis; no regularizers or constraints (faltung.models.resident_ops);
- losses per output, with loss_weights: (Sparse)CategoricalCrossentropy, BinaryCrossentropy,
  MeanSquaredError, MeanAbsoluteError, Huber, reduction "sum_over_batch_size", with sample and
  class weights (faltung.models.resident_losses);
- optimizers SGD (momentum, nesterov), Adam (amsgrad), AdamW, RMSprop (momentum, centered)
  and Adagrad, with weight decay, learning-rate schedules and clipnorm, global_clipnorm or
  clipvalue (norms reduced on the device); no loss scaling.
"""
import math

import numpy as np

from faltung.models.resident_graph import DeviceGraph
from faltung.models.resident_losses import DeviceLoss
from faltung.models.resident_metrics import BatchStats, BatchTargets, EpochStats, device_kind, metric_inputs


class Resident:
    """A model's device state: its weights as DeviceArrays (uploaded once here), the
    optimizer's slots (created on the first step), and the batch steps the Trainer calls."""

    def __init__(self, model, placement):
        self.model, self.placement = model, placement
        self.DeviceArray = placement.module.DeviceArray
        self.r = placement.module.resident
        self.dtype = placement.dtype
        self.where = f"faltung.device({placement.name!r}): model '{model.name}'"
        self.graph = DeviceGraph(model._graph, self.where)
        for inner in self.graph.nested.values():  # its weights are this model's now: one device copy
            if inner.__dict__.get("_resident") is not None:
                inner._resident.detach()
                inner._resident = None
        self.variables = list(model.weights)
        self.arrays = {id(v): self.DeviceArray(v.value, self.dtype) for v in self.variables}
        self.slots = {}           # id(var) -> (host slot dict of the optimizer, {name: DeviceArray})
        self._slots_of = None     # the optimizer whose slots those are
        self.host_stale = False   # the device holds newer weights/slots than the host copies
        self.grads = {}
        self._trainable = set()
        self._checked = None      # the (optimizer, losses, loss weights) check_compile accepted
        self._prefetcher = None   # the pinned double buffer of prefetch(), made on first use
        self._prefetched = []     # [(host inputs, their DeviceArrays)] uploaded ahead
        for v in self.variables:
            v._resident = self

    # -- host <-> device -------------------------------------------------------------------------
    def array(self, var):
        return self.arrays[id(var)]

    def pull(self):
        """Refresh the host copies from the device after training steps (one download each)."""
        if not self.host_stale:
            return
        self.host_stale = False
        for v in self.variables:
            v._value[...] = self.arrays[id(v)].numpy()
        for host, dev in self.slots.values():
            for name, arr in dev.items():
                host[name][...] = arr.numpy()

    def push(self, var):
        """Upload a weight the host wrote (set_weights, assign, load_weights)."""
        self.arrays[id(var)] = self.DeviceArray(var._value, self.dtype)

    def push_slots(self):
        """Upload the optimizer's host slots (after optimizer.set_weights)."""
        for host, dev in self.slots.values():
            for name in dev:
                dev[name] = self.DeviceArray(host[name], self.dtype)

    def detach(self):
        """Back to host-only weights (the model is rebuilt): the newest values to the host."""
        self.pull()
        for v in self.variables:
            v._resident = None
        opt = self.model.optimizer
        if opt is not None and opt._resident is self:
            opt._resident = None

    def get_weights(self):
        """The weights as the device holds them (in its dtype: float64 under the float64 harness)."""
        return [self.arrays[id(v)].numpy() for v in self.variables]

    # -- compile-time checks ---------------------------------------------------------------------
    def check_compile(self):
        """NotImplementedError naming the optimizer or loss this path does not support."""
        from faltung.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop
        model = self.model
        opt = model.optimizer
        per_loss, weights, _ = model._resolve_compile()
        key = (opt, tuple(per_loss), tuple(weights))
        if self._checked == key:
            return
        where = self.where
        if type(opt) not in (SGD, Adam, AdamW, RMSprop, Adagrad):
            raise NotImplementedError(f"{where}: the optimizer {type(opt).__name__} is not supported on the "
                                      "device yet; supported: SGD, Adam, AdamW, RMSprop, Adagrad")
        if getattr(opt, "loss_scale_factor", None):
            raise NotImplementedError(f"{where}: the optimizer's `loss_scale_factor` is not supported on the "
                                      "device yet")
        out_ranks = [len(t.shape) for t in model._graph.outputs]
        self.losses = [None if loss is None else DeviceLoss(loss, out_ranks[i], self.graph.softmax_output(i),
                                                            f"{where}, output '{model.output_names[i]}'")
                       for i, loss in enumerate(per_loss)]
        self.loss_weights = weights
        self.fused = frozenset(self.graph.outputs[i] for i, l in enumerate(self.losses) if l is not None and l.fused)
        opt._resident = self
        self._checked = key

    # -- steps -----------------------------------------------------------------------------------
    def trains(self, var):
        return id(var) in self._trainable

    def set_grad(self, var, grad):
        """A weight's gradient; a weight used by several calls (a shared layer) sums them."""
        if var is None or grad is None:
            return
        key = id(var)
        self.grads[key] = grad if key not in self.grads else self.r.add(self.grads[key], grad)

    def prefetch(self, xs, ys=(), sws=()):
        """Start uploading a later batch (the Trainer hands over batch i + 1 before batch i's
        step): its inputs, and its targets and sample weights as the losses and metrics will
        most likely read them (integer labels as int32, the rest in the model's float dtype;
        BatchTargets takes them where they match), through pinned buffers on a copy stream,
        overlapping the step between (Prefetcher, cpp/cuda/bind_resident_io.hpp); the step of
        that batch then takes them. Models with inputs that are not floats on the device
        (Embedding's indices, `mask=` arguments: resident_graph's upload) take their batches as
        they come."""
        if self.graph.index_inputs or self.graph.mask_inputs:
            return
        self._activate()  # the arrays (and the prefetcher's stream) go to the model's GPU
        if self._prefetcher is None:
            self._prefetcher = self.r.Prefetcher(2)
        extra = [np.ascontiguousarray(a, dtype=np.int32 if a.dtype.kind in "iub" else self.dtype)
                 for a in (np.asarray(a) for a in [*(ys or ()), *(sws or ())] if a is not None)
                 if a.dtype.kind in "iubf"]
        xs = list(xs)
        dev = self._prefetcher.upload([np.ascontiguousarray(x, dtype=self.dtype) for x in xs] + extra)
        self._prefetched.append((xs, dev[:len(xs)], list(zip(extra, dev[len(xs):]))))
        del self._prefetched[:-2]  # a batch is taken right after the next is prefetched

    def _upload(self, xs):
        """(the inputs on the device, [(host array, DeviceArray)] of the batch's targets and
        weights uploaded ahead): prefetched ones (the same inputs, in order), else the graph's
        upload of each input now, and no targets."""
        if self._prefetched:
            host, dev, targets = self._prefetched.pop(0)
            if len(host) == len(xs) and all(h is x for h, x in zip(host, xs)):
                return dev, targets
            self._prefetched.clear()
        return self.graph.upload(self, xs), []

    def epoch_stats(self):
        """An EpochStats for Trainer.fit's deferred logs (resident_metrics)."""
        self.check_compile()
        return EpochStats(self, sum(loss is not None for loss in self.losses))

    def _losses(self, outs, ys, sws, need_grad, masks=None, epoch=None, size=0, uploaded=()):
        """([total, per-output losses...] as the CPU Trainer logs them, output gradients), and the
        compiled metrics updated: the losses and the metrics resident_metrics reduces come out
        in one download of a few numbers; other metrics read their output's predictions. An
        output's mask (downloaded) weighs its loss and metrics as in the CPU Trainer
        (_apply_mask, _update_metrics). `uploaded`: the batch's prefetched targets (_upload).
        With `epoch` (an EpochStats) nothing is read: the numbers of this batch of `size`
        samples join the epoch's sums on the device, and the losses come back as None."""
        from faltung.models.trainer import _apply_mask  # (trainer imports this module)
        model = self.model
        masks = [None if m is None else m.numpy().astype(bool) for m in masks or [None] * len(outs)]
        names = model.output_names
        metric_lists = model._per_output[2] if model._metrics else [[] for _ in outs]
        stats = BatchStats(self, sum(l is not None for l in self.losses) + len(model._metrics))
        loss_slots, dys, on_device, on_host = [], [], [], []
        for i, (loss, w, out, y, sw, t, m) in enumerate(zip(self.losses, self.loss_weights, outs, ys, sws,
                                                            self.graph.outputs, masks)):
            targets = BatchTargets(self, y, uploaded)
            if loss is not None:
                if y is None:
                    raise ValueError(f"Model '{model.name}': output '{names[i]}' has a loss but received no "
                                     "target in `y`.")
                lw = sw if m is None else _apply_mask(sw, m, loss.loss.reduction)
                try:
                    n, slot, dy = loss(self, out, targets, lw, w, need_grad, stats)
                except ValueError as e:
                    if len(names) == 1:
                        raise
                    raise ValueError(f"Output '{names[i]}' of model '{model.name}': {e}") from e
                loss_slots.append((n, slot, w))
            else:
                dy = None
            dys.append(dy)
            # `metrics` see only the output's mask, `weighted_metrics` also the sample weights
            masked = None if m is None else _apply_mask(None, m, "sum")
            weighted = sw if m is None else _apply_mask(sw, m, "sum")
            pred, host_pred = None, None  # what the metrics read: the probabilities of a fused softmax
            for metric in metric_lists[i]:
                mw = weighted if metric._weighted else masked
                if pred is None:
                    pred = self.r.softmax(out) if t in self.fused else out
                kind = device_kind(metric, y, pred.shape)
                inputs = kind and metric_inputs(kind[0], metric, targets, pred.shape, mw)
                if inputs:
                    target, labels, row_w = inputs
                    on_device.append((metric, stats.add(kind[0], pred, target, labels, row_w, kind[1])))
                    continue
                if host_pred is None:
                    host_pred = pred.numpy()
                on_host.append((metric, y, host_pred, mw))
        for metric, y, p, mw in on_host:  # the Trainer's _update_metrics
            metric.update_state(y, p, sample_weight=mw)
        if epoch is not None:
            epoch.add(stats, loss_slots, on_device, size)
            return None, dys
        values = stats.read()
        logged = [float(values[slot] / n) if n else 0.0 for n, slot, _ in loss_slots]
        total = sum(v * w for v, (_, _, w) in zip(logged, loss_slots))
        for metric, slot in on_device:  # what Mean.update_state would add
            metric.total += float(values[slot])
            metric.count += float(values[slot + 1])
        return [total] + logged, dys

    def _activate(self):
        """Make this model's GPU the current device (another scope may have changed it)."""
        set_device = getattr(self.placement.module, "set_device", None)  # the harness has one device
        if set_device is not None:
            set_device(self.placement.index)

    def train_batch(self, xs, ys, sws, epoch=None):
        """One step; its logged losses, or None with `epoch` (an EpochStats: Trainer.fit's
        deferred logs, read at the end of the epoch)."""
        self.check_compile()
        self._activate()
        model, opt = self.model, self.model.optimizer
        trainable = model.trainable_weights
        self._trainable = {id(v) for v in trainable}
        self.grads = {}
        inputs, uploaded = self._upload(xs)
        outs, saved, masks = self.graph.forward(self, inputs, True, self.fused)
        result, dys = self._losses(outs, ys, sws, True, masks, epoch, len(xs[0]), uploaded)
        self.graph.backward(self, saved, dys, self.fused)
        self._apply(opt, [v for v in trainable if id(v) in self.grads])
        return result

    def test_batch(self, xs, ys, sws, epoch=None):
        """The logged losses of one batch, or None with `epoch` (as train_batch)."""
        self.check_compile()
        self._activate()
        inputs, uploaded = self._upload(xs)
        outs, _, masks = self.graph.forward(self, inputs, False, self.fused)
        return self._losses(outs, ys, sws, False, masks, epoch, len(xs[0]), uploaded)[0]

    def predict_batch(self, xs):
        """The outputs as numpy for one batch (the Trainer's list of outputs)."""
        self._activate()
        outs, _, _ = self.graph.forward(self, self._upload(xs)[0], False)
        return [y.numpy() for y in outs]

    def _apply(self, opt, variables):
        """One optimizer step in place, in the CPU optimizer's order: the learning rate at
        `iterations`, the decoupled weight decay, each variable's rule, iterations += 1."""
        from faltung.optimizers import Adagrad, Adam, RMSprop
        if not variables:
            return
        lr = opt.learning_rate
        if isinstance(opt, Adam):
            t = opt.iterations + 1
            alpha = lr * math.sqrt(1.0 - opt.beta_2 ** t) / (1.0 - opt.beta_1 ** t)
        self._clip(opt, [self.grads[id(v)] for v in variables])
        for v in variables:
            slots = self._slots(opt, v)
            w, g = self.arrays[id(v)], self.grads[id(v)]
            if opt.weight_decay and opt._use_weight_decay(v):
                self.r.weight_decay(w, opt.weight_decay, lr)
            if isinstance(opt, Adam):  # and AdamW
                self.r.adam_update(w, slots["momentum"], slots["velocity"], slots.get("velocity_hat"), g,
                                   alpha, opt.beta_1, opt.beta_2, opt.epsilon)
            elif isinstance(opt, RMSprop):
                self.r.rmsprop_update(w, slots["velocity"], slots.get("momentum"), slots.get("average_gradient"),
                                      g, lr, opt.rho, opt.momentum, opt.epsilon)
            elif isinstance(opt, Adagrad):
                self.r.adagrad_update(w, slots["accumulator"], g, lr, opt.epsilon)
            else:
                self.r.sgd_update(w, slots.get("momentum"), g, lr, opt.momentum, opt.nesterov)
        opt.iterations += 1
        opt.built = True
        self.host_stale = True
        self.grads = {}

    def _clip(self, opt, grads):
        """The optimizer's clipping (base.py's _clip) on the device, in place."""
        if opt.clipnorm and opt.clipnorm > 0:
            self.r.clip_by_norm(grads, opt.clipnorm)
        elif opt.global_clipnorm and opt.global_clipnorm > 0:
            self.r.clip_by_global_norm(grads, opt.global_clipnorm)
        elif opt.clipvalue and opt.clipvalue > 0:
            self.r.clip_by_value(grads, opt.clipvalue)

    def _slots(self, opt, var):
        if opt is not self._slots_of:  # recompiled with another optimizer: its own, new slots
            self.pull()
            self.slots, self._slots_of = {}, opt
        entry = self.slots.get(id(var))
        if entry is None:
            host = opt._slots(var)  # the optimizer's own (zero) slots: get_weights and save see them
            entry = self.slots[id(var)] = (host, {n: self.DeviceArray(a, self.dtype) for n, a in host.items()})
        return entry[1]


def attach(model):
    """Called when `model` gets its graph: inside a device scope, give it a Resident (or raise
    NotImplementedError naming what is unsupported); a resident model rebuilt outside the scope
    (a layer added) stays where it is; any other model gets none."""
    from faltung import _device
    old = model.__dict__.get("_resident")
    placement = _device.current_placement() or (old.placement if old is not None else None)
    if old is not None:
        old.detach()
    model._resident = None
    if placement is None:
        return
    try:
        model._resident = Resident(model, placement)
    except NotImplementedError:
        model._graph, model.built = None, False  # never half-built, never silently on the CPU
        raise
