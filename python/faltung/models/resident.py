"""Device-resident Sequential models (issue 14): weights, optimizer slots and activations in
the memory of a CUDA device (faltung._cuda), or of the test harness faltung._cuda_host (the
same kernel bodies on the CPU), as DeviceArrays (cpp/cuda/device_array.hpp).

A Sequential model built inside `faltung.device("gpu:N")` gets a `Resident` (`model._resident`):
its layers as a list of ops (faltung.models.resident_ops) over the backend's `resident` entry
points (cpp/cuda/bind_resident.hpp). The Trainer's loop (epochs, shuffling, callbacks, History) is the
CPU's; only the per-batch steps come here:
- train_batch: x uploaded once (the labels once, inside the cross-entropy), forward, the
  loss's gradient, backward, the optimizer's rule on each weight and its slots in place; out
  come the B per-sample losses, and the predictions only when compiled metrics read them.
- test_batch: the same without gradients; predict: forward, the output downloaded.
Every output is a new DeviceArray whose block comes from the backend's caching pool
(cpp/cuda/pooled_buf.hpp), so steps after the first allocate nothing from the device.
The host copies (Variable.value, the optimizer's slot arrays) are refreshed from the device
when read after a step (get_weights, save, layer.kernel.value, optimizer.variables); writes
to them (Variable.assign, set_weights, load_weights, optimizer.set_weights) are uploaded.

Supported, anything else raising NotImplementedError that names it (layers at build time,
loss and optimizer at compile or on the first batch):
- layers Dense, Conv1D/2D, DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1D/2DTranspose (every
  padding, stride, dilation, groups and output_padding the CPU layers take),
  Max/AveragePooling1D/2D, Global{Max,Average}Pooling1D/2D (keepdims; no mask), Flatten,
  Reshape, UpSampling1D/2D (nearest, bilinear), ZeroPadding1D/2D, Cropping1D/2D (all
  channels_last), SimpleRNN, LSTM, GRU (either reset_after; tanh/sigmoid; return_sequences,
  go_backwards; no masks, stateful, return_state or dropout), Dropout (without noise_shape; its
  masks equal the CPU layer's for the same seeds), BatchNormalization (last axis, not
  synchronized), and the activation layers Activation, ReLU, LeakyReLU, ELU and Softmax, with
  activations that are kernels (relu & co., sigmoid, tanh, gelu, ...) or softmax/log_softmax on
  the last axis; no regularizers or constraints;
- loss SparseCategoricalCrossentropy on a (batch, classes) output, reduction
  "sum_over_batch_size", no sample or class weights: from_logits=True, or from_logits=False
  after a softmax output, whose loss then comes from the softmax's input (the fused kernel;
  it equals the CPU's except where a probability falls below the CPU's clip at 1e-7);
- optimizers SGD (momentum, nesterov), Adam (amsgrad), AdamW, RMSprop (momentum, centered)
  and Adagrad, with weight decay and learning-rate schedules; no gradient clipping or loss
  scaling.
"""
import math

import numpy as np

from faltung.models.resident_ops import SoftmaxOp, ops_for


class Resident:
    """A Sequential model's device state: its weights as DeviceArrays (uploaded once here), the
    optimizer's slots (created on the first step), and the batch steps the Trainer calls."""

    def __init__(self, model, placement):
        self.model, self.placement = model, placement
        self.DeviceArray = placement.module.DeviceArray
        self.r = placement.module.resident
        self.dtype = placement.dtype
        self.ops = [op for layer in model.layers for op in ops_for(layer)]
        self.variables = list(model.weights)
        self.arrays = {id(v): self.DeviceArray(v.value, self.dtype) for v in self.variables}
        self.slots = {}           # id(var) -> (host slot dict of the optimizer, {name: DeviceArray})
        self._slots_of = None     # the optimizer whose slots those are
        self.host_stale = False   # the device holds newer weights/slots than the host copies
        self.grads = {}
        self._trainable = set()
        self._checked = None      # the (optimizer, loss) check_compile accepted
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
        from faltung.losses import SparseCategoricalCrossentropy
        from faltung.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop
        model = self.model
        opt = model.optimizer
        per_loss, weights, _ = model._resolve_compile()
        loss = per_loss[0]
        if self._checked == (opt, loss):
            return
        where = f"faltung.device({self.placement.name!r}): model '{model.name}'"
        if type(opt) not in (SGD, Adam, AdamW, RMSprop, Adagrad):
            raise NotImplementedError(f"{where}: the optimizer {type(opt).__name__} is not supported on the "
                                      "device yet; supported: SGD, Adam, AdamW, RMSprop, Adagrad")
        for arg in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor"):
            if getattr(opt, arg, None):
                raise NotImplementedError(f"{where}: the optimizer's `{arg}` is not supported on the device "
                                          "yet")
        if loss is not None:  # None: compiled for predict only (fit and evaluate say a loss is missing)
            if type(loss) is not SparseCategoricalCrossentropy or loss.ignore_class is not None or \
                    loss.reduction != "sum_over_batch_size":
                raise NotImplementedError(
                    f"{where}: the loss {type(loss).__name__} ('{loss.name}', reduction {loss.reduction!r}) is "
                    "not supported on the device yet; supported: SparseCategoricalCrossentropy (reduction "
                    "'sum_over_batch_size', no ignore_class)")
            if len(model.output_shape) != 2:
                raise NotImplementedError(f"{where}: the loss needs a (batch, classes) output on the device, "
                                          f"the model's output shape is {model.output_shape}")
            if not loss.from_logits and not (isinstance(self.ops[-1], SoftmaxOp) and not self.ops[-1].log):
                raise NotImplementedError(f"{where}: SparseCategoricalCrossentropy(from_logits=False) needs a "
                                          "softmax output on the device; use a linear output and "
                                          "from_logits=True")
        opt._resident = self
        self.loss, self.loss_weight = loss, weights[0]
        self._checked = (opt, loss)

    # -- steps -----------------------------------------------------------------------------------
    def trains(self, var):
        return id(var) in self._trainable

    def set_grad(self, var, grad):
        if var is not None and grad is not None:
            self.grads[id(var)] = grad

    def _forward(self, x, training, ops):
        saved = []
        for op in ops:
            x, s = op.forward(self, x, training)
            saved.append(s)
        return x, saved

    def _upload_x(self, xs):
        return self.DeviceArray(xs[0], self.dtype)

    def _labels(self, y, batch):
        if y is None:
            raise ValueError(f"Model '{self.model.name}' has a loss but received no target in `y`.")
        t = np.asarray(y)
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.shape != (batch,):
            raise ValueError(f"{self.loss.name}: expected integer labels of shape ({batch},) or ({batch}, 1), "
                             f"received shape {t.shape}")
        if t.dtype.kind == "f" and (not np.all(np.isfinite(t)) or np.any(t != np.round(t))):
            raise ValueError(f"{self.loss.name}: labels must be integers, received non-integer values")
        return np.ascontiguousarray(t, dtype=np.int32)

    def _loss_ops(self):
        """The ops up to the logits the cross-entropy reads (a softmax output's input when
        from_logits=False)."""
        return self.ops if self.loss.from_logits else self.ops[:-1]

    def _loss_and_metrics(self, logits, ys, sws, need_grad):
        if sws[0] is not None:
            raise NotImplementedError(f"faltung.device({self.placement.name!r}): sample_weight and class_weight "
                                      "are not supported on the device yet")
        batch = logits.shape[0]
        labels = self._labels(ys[0], batch)
        values, grad = self.r.sparse_softmax_xent(logits, labels, self.loss_weight / batch, need_grad)
        value = float(np.mean(values.numpy()))
        if self.model._metrics:  # what the metrics read: the model's output
            out = logits if self.loss.from_logits else self.r.softmax(logits)
            self.model._update_metrics(ys, [out.numpy()], [None], sws)
        return [value * self.loss_weight, value], grad

    def _activate(self):
        """Make this model's GPU the current device (another scope may have changed it)."""
        set_device = getattr(self.placement.module, "set_device", None)  # the harness has one device
        if set_device is not None:
            set_device(self.placement.index)

    def train_batch(self, xs, ys, sws):
        self.check_compile()
        self._activate()
        model, opt = self.model, self.model.optimizer
        trainable = model.trainable_weights
        self._trainable = {id(v) for v in trainable}
        self.grads = {}
        ops = self._loss_ops()
        logits, saved = self._forward(self._upload_x(xs), True, ops)
        result, dy = self._loss_and_metrics(logits, ys, sws, True)
        for i in reversed(range(len(ops))):
            dy = ops[i].backward(self, dy, saved[i], i > 0)
        self._apply(opt, [v for v in trainable if id(v) in self.grads])
        return result

    def test_batch(self, xs, ys, sws):
        self.check_compile()
        self._activate()
        logits, _ = self._forward(self._upload_x(xs), False, self._loss_ops())
        return self._loss_and_metrics(logits, ys, sws, False)[0]

    def predict_batch(self, xs):
        """[output as numpy] for one batch (the Trainer's list of outputs)."""
        self._activate()
        y, _ = self._forward(self._upload_x(xs), False, self.ops)
        return [y.numpy()]

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
    from faltung.models.sequential import Sequential
    old = model.__dict__.get("_resident")
    placement = _device.current_placement() or (old.placement if old is not None else None)
    if old is not None:
        old.detach()
    model._resident = None
    if placement is None:
        return
    try:
        if not isinstance(model, Sequential):
            raise NotImplementedError(f"faltung.device({placement.name!r}): only Sequential models can be "
                                      f"device-resident yet; model '{model.name}' is a {type(model).__name__}")
        model._resident = Resident(model, placement)
    except NotImplementedError:
        model._graph, model.built = None, False  # never half-built, never silently on the CPU
        raise
