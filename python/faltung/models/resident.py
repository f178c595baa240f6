"""Device-resident Sequential models (issue 14): weights, optimizer slots and activations in
the memory of a CUDA device (faltung._cuda), or of the test harness faltung._cuda_host (the
same kernel bodies on the CPU), as DeviceArrays (cpp/cuda/device_array.hpp).

A Sequential model built inside `faltung.device("gpu:N")` gets a `Resident` (`model._resident`):
its layers as a list of ops over the backend's `resident` entry points
(cpp/cuda/bind_resident.hpp). The Trainer's loop (epochs, shuffling, callbacks, History) is the
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
- layers Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten (channels_last), Dropout
  (without noise_shape; its masks equal the CPU layer's for the same seeds), and the
  activation layers Activation, ReLU, LeakyReLU, ELU and Softmax, with activations
  that are kernels (relu & co., sigmoid, tanh, gelu, ...) or softmax/log_softmax on the last
  axis; no regularizers or constraints;
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

from faltung.ops.convolution import pad_and_size

SUPPORTED_LAYERS = ("Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout, Activation, ReLU, "
                    "LeakyReLU, ELU, Softmax")


# ---- ops: one model layer is one or two of them ------------------------------------------------
# forward(res, x, training) -> (y, saved); backward(res, dy, saved, need_dx) -> dx, storing weight
# gradients with res.set_grad. `saved` holds DeviceArrays, references rather than copies.

class _Act:
    """An elementwise activation kernel (faltung._core.activation_names()) with its params."""

    def __init__(self, kernel, params):
        self.kernel, self.params = kernel, params

    def forward(self, res, x, training):
        y = res.r.activation(self.kernel, x, **self.params)
        return y, (x, y)

    def backward(self, res, dy, saved, need_dx):
        x, y = saved
        return res.r.activation_backward(self.kernel, dy, x, y, **self.params) if need_dx else None


class _Softmax:
    """softmax or log_softmax over the last axis."""

    def __init__(self, log):
        self.log = log

    def forward(self, res, x, training):
        y = (res.r.log_softmax if self.log else res.r.softmax)(x)
        return y, y

    def backward(self, res, dy, y, need_dx):
        if not need_dx:
            return None
        return (res.r.log_softmax_backward if self.log else res.r.softmax_backward)(dy, y)


def _activation_ops(act, layer, fused_elementwise=False):
    """The ops of `act` (a faltung.activations.Activation) after `layer`'s own op; with
    fused_elementwise, an elementwise kernel is left to that op (returned as (kernel, params))."""
    if act.kernel == "linear":
        return None, []
    if act.kernel in ("softmax", "log_softmax"):
        if act.axis not in (-1, len(layer.output_shape) - 1):
            raise _unsupported(layer, f"{act.kernel} over axis {act.axis} (only the last axis is)")
        return None, [_Softmax(act.kernel == "log_softmax")]
    if fused_elementwise:
        return (act.kernel, dict(act.params)), []
    return None, [_Act(act.kernel, dict(act.params))]


class _Dense:
    """Dense on (..., IN) inputs, viewed as (B, IN); an elementwise activation fused."""

    def __init__(self, layer, act):
        self.layer, self.act = layer, act  # act: (kernel name, params) or None

    def forward(self, res, x, training):
        shape = tuple(x.shape)
        x2 = x if len(shape) == 2 else x.reshape((-1, shape[-1]))
        kernel, params = self.act or ("linear", {})
        bias = res.array(self.layer.bias) if self.layer.bias is not None else None
        y, z = res.r.dense_forward(x2, res.array(self.layer.kernel), bias, kernel, **params)
        out = y if len(shape) == 2 else y.reshape(shape[:-1] + (self.layer.units,))
        return out, (x2, z, y, shape)

    def backward(self, res, dy, saved, need_dx):
        x2, z, y, shape = saved
        dy = dy if len(shape) == 2 else dy.reshape(tuple(y.shape))
        if self.act is not None:
            kernel, params = self.act
            dy = res.r.activation_backward(kernel, dy, z, y, **params)
        kernel_var, bias_var = self.layer.kernel, self.layer.bias
        need_dw, need_db = res.trains(kernel_var), bias_var is not None and res.trains(bias_var)
        dx, dw, db = res.r.dense_backward(dy, x2, res.array(kernel_var), need_dx, need_dw, need_db)
        res.set_grad(kernel_var, dw)
        res.set_grad(bias_var, db)
        return None if dx is None else dx if len(shape) == 2 else dx.reshape(shape)


class _Conv2D:
    """Conv2D (channels_last); relu fused into the output pass as the CPU layer fuses it."""

    def __init__(self, layer, relu):
        self.layer, self.relu = layer, relu

    def geometry(self, x_shape):
        l = self.layer
        (kh, kw), (sh, sw), (dh, dw) = l.kernel_size, l.strides, l.dilation_rate
        pt, oh = pad_and_size(x_shape[1], kh, sh, dh, l.padding)
        pl, ow = pad_and_size(x_shape[2], kw, sw, dw, l.padding)
        return dict(stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl, dil_h=dh, dil_w=dw,
                    groups=l.groups), (oh, ow)

    def forward(self, res, x, training):
        geom, (oh, ow) = self.geometry(x.shape)
        bias = res.array(self.layer.bias) if self.layer.bias is not None else None
        y = res.r.conv2d_forward(x, res.array(self.layer.kernel), bias, OH=oh, OW=ow, relu=self.relu,
                                 **geom)
        return y, (x, y, geom)

    def backward(self, res, dy, saved, need_dx):
        x, y, geom = saved
        if self.relu:  # relu' depends on the sign only, and y > 0 exactly where z > 0
            dy = res.r.activation_backward("relu", dy, y, y)
        kernel_var, bias_var = self.layer.kernel, self.layer.bias
        need_dw, need_db = res.trains(kernel_var), bias_var is not None and res.trains(bias_var)
        dx, dw, db = res.r.conv2d_backward(dy, x, res.array(kernel_var), need_dx=need_dx, need_dw=need_dw,
                                           need_db=need_db, **geom)
        res.set_grad(kernel_var, dw)
        res.set_grad(bias_var, db)
        return dx


class _MaxPool2D:
    def __init__(self, layer):
        self.layer = layer

    def forward(self, res, x, training):
        l = self.layer
        y, argmax = res.r.max_pool2d(x, l.pool_size, l.strides, l.padding)
        return y, (argmax, tuple(x.shape[1:3]))

    def backward(self, res, dy, saved, need_dx):
        if not need_dx:
            return None
        argmax, hw = saved
        l = self.layer
        return res.r.max_pool2d_backward(dy, argmax, hw, l.pool_size, l.strides, l.padding)


class _AvgPool2D:
    def __init__(self, layer):
        self.layer = layer

    def forward(self, res, x, training):
        l = self.layer
        return res.r.avg_pool2d(x, l.pool_size, l.strides, l.padding), tuple(x.shape[1:3])

    def backward(self, res, dy, hw, need_dx):
        l = self.layer
        return res.r.avg_pool2d_backward(dy, hw, l.pool_size, l.strides, l.padding) if need_dx else None


class _Dropout:
    """Dropout drawing its seed as the CPU layer does, so the masks equal the CPU's."""

    def __init__(self, layer):
        self.layer = layer

    def forward(self, res, x, training):
        from faltung import initializers
        l = self.layer
        if not training or l.rate == 0:
            return x, None
        rng = l._rng if l._rng is not None else initializers.rng()
        y, mask = res.r.dropout(x, l.rate, int(rng.integers(0, 2 ** 63 - 1)))
        return y, mask

    def backward(self, res, dy, mask, need_dx):
        if not need_dx:
            return None
        return dy if mask is None else res.r.dropout_backward(dy, mask, self.layer.rate)


class _Flatten:
    """A reshape of the same memory, no copy."""

    def forward(self, res, x, training):
        shape = tuple(x.shape)
        return x.reshape((shape[0], -1)), shape

    def backward(self, res, dy, shape, need_dx):
        return dy.reshape(shape) if need_dx else None


def _unsupported(layer, what):
    return NotImplementedError(
        f"Device-resident models do not support {what} yet (layer '{layer.name}' of type "
        f"{type(layer).__name__}). Supported: {SUPPORTED_LAYERS} (see faltung.models.resident); "
        "build the model outside the device scope to train it on the CPU.")


def _ops_for(layer):
    """The ops of one layer, or NotImplementedError naming it."""
    from faltung.layers import (ELU, Activation, AveragePooling2D, Conv2D, Dense, Dropout, Flatten, LeakyReLU,
                                MaxPooling2D, ReLU, Softmax)
    kind = type(layer)
    activation_layers = (Activation, ReLU, LeakyReLU, ELU, Softmax)
    if kind not in (Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout) + activation_layers:
        raise _unsupported(layer, f"the layer type {kind.__name__}")
    for v in layer.weights:
        if v.regularizer is not None or v.constraint is not None:
            raise _unsupported(layer, f"the regularizer or constraint of weight '{v.name}'")
    if getattr(layer, "activity_regularizer", None) is not None:
        raise _unsupported(layer, "an activity_regularizer")
    if getattr(layer, "data_format", "channels_last") != "channels_last" and len(layer.input_shape) > 2:
        raise _unsupported(layer, f"data_format={layer.data_format!r}")
    if kind is Dense:
        fused, rest = _activation_ops(layer.activation, layer, fused_elementwise=True)
        return [_Dense(layer, fused)] + rest
    if kind is Conv2D:
        relu = layer.fuse_activation and layer.activation.name == "relu"
        _, rest = (None, []) if relu else _activation_ops(layer.activation, layer)
        return [_Conv2D(layer, relu)] + rest
    if kind is MaxPooling2D:
        return [_MaxPool2D(layer)]
    if kind is AveragePooling2D:
        return [_AvgPool2D(layer)]
    if kind is Flatten:
        return [_Flatten()]
    if kind is Dropout:
        if layer.noise_shape is not None:
            raise _unsupported(layer, f"noise_shape={layer.noise_shape}")
        return [_Dropout(layer)]
    return _activation_ops(layer.fn, layer)[1]


# ---- the model's device state and steps --------------------------------------------------------

class Resident:
    """A Sequential model's device state: its weights as DeviceArrays (uploaded once here), the
    optimizer's slots (created on the first step), and the batch steps the Trainer calls."""

    def __init__(self, model, placement):
        self.model, self.placement = model, placement
        self.DeviceArray = placement.module.DeviceArray
        self.r = placement.module.resident
        self.dtype = placement.dtype
        self.ops = [op for layer in model.layers for op in _ops_for(layer)]
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
            if not loss.from_logits and not (isinstance(self.ops[-1], _Softmax) and not self.ops[-1].log):
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

    def train_batch(self, xs, ys, sws):
        self.check_compile()
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
        logits, _ = self._forward(self._upload_x(xs), False, self._loss_ops())
        return self._loss_and_metrics(logits, ys, sws, False)[0]

    def predict_batch(self, xs):
        """[output as numpy] for one batch (the Trainer's list of outputs)."""
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
