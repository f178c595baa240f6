"""The layers of a device-resident model (faltung.models.resident) as ops over the backend's
`resident` entry points (cpp/cuda/bind_resident.hpp): `ops_for(layer)` gives one or two ops per
layer (Dense with its activation fused, or followed by a softmax op, ...), or raises
NotImplementedError naming the layer and what of it is not supported.

An op has forward(res, x, training) -> (y, saved) and backward(res, dy, saved, need_dx) -> dx
over DeviceArrays; `saved` holds references, not copies; weight gradients go to
res.set_grad(variable, grad), and res.trains(variable) says whether one is wanted. Each op
computes what the CPU layer computes (faltung/layers), with the same kernels' bodies.
"""
from faltung.ops.convolution import pad_and_size

SUPPORTED_LAYERS = ("Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout, BatchNormalization, "
                    "Activation, ReLU, LeakyReLU, ELU, Softmax")


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


class SoftmaxOp:
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
        return None, [SoftmaxOp(act.kernel == "log_softmax")]
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


class _LayerOp:
    """An op that reads its settings from the layer it runs."""

    def __init__(self, layer):
        self.layer = layer


class _MaxPool2D(_LayerOp):

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


class _AvgPool2D(_LayerOp):

    def forward(self, res, x, training):
        l = self.layer
        return res.r.avg_pool2d(x, l.pool_size, l.strides, l.padding), tuple(x.shape[1:3])

    def backward(self, res, dy, hw, need_dx):
        l = self.layer
        return res.r.avg_pool2d_backward(dy, hw, l.pool_size, l.strides, l.padding) if need_dx else None


class _BatchNorm(_LayerOp):
    """BatchNormalization over the last axis: batch statistics and the moving update in
    training (a trainable layer), the moving statistics otherwise (a frozen layer trains in
    inference mode, as Keras's)."""

    def forward(self, res, x, training):
        l = self.layer
        gamma = res.array(l.gamma) if l.gamma is not None else None
        beta = res.array(l.beta) if l.beta is not None else None
        mm, mv = res.array(l.moving_mean), res.array(l.moving_variance)
        if training and l.trainable:
            y, mean, inv = res.r.batch_norm_train(x, gamma, beta, mm, mv, l.epsilon, l.momentum)
            res.host_stale = True  # the moving statistics moved
            return y, (x, mean, inv, False)
        y, inv = res.r.batch_norm_inference(x, gamma, beta, mm, mv, l.epsilon)
        return y, (x, mm, inv, True)

    def backward(self, res, dy, saved, need_dx):
        x, mean, inv, inference = saved
        l = self.layer
        need_dg, need_db = l.gamma is not None and res.trains(l.gamma), l.beta is not None and res.trains(l.beta)
        gamma = res.array(l.gamma) if l.gamma is not None else None
        dx, dg, db = res.r.batch_norm_backward(dy, x, mean, inv, gamma, inference, need_dx, need_dg, need_db)
        res.set_grad(l.gamma, dg)
        res.set_grad(l.beta, db)
        return dx


class _Dropout(_LayerOp):
    """Dropout drawing its seed as the CPU layer does, so the masks equal the CPU's."""

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


def ops_for(layer):
    """The ops of one layer, or NotImplementedError naming it."""
    from faltung.layers import (ELU, Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout,
                                Flatten, LeakyReLU, MaxPooling2D, ReLU, Softmax)
    kind = type(layer)
    activation_layers = (Activation, ReLU, LeakyReLU, ELU, Softmax)
    supported = (Dense, Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dropout, BatchNormalization)
    if kind not in supported + activation_layers:
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
    if kind is BatchNormalization:
        rank = len(layer.input_shape)
        if layer._axis(rank) != rank - 1 or layer.synchronized:
            raise _unsupported(layer, f"axis={layer.axis} (only the last axis is) or synchronized=True")
        return [_BatchNorm(layer)]
    if kind is Dropout:
        if layer.noise_shape is not None:
            raise _unsupported(layer, f"noise_shape={layer.noise_shape}")
        return [_Dropout(layer)]
    return _activation_ops(layer.fn, layer)[1]
