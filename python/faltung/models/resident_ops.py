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

SUPPORTED_LAYERS = ("Dense, Conv2D, Conv1D, DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1DTranspose, "
                    "Conv2DTranspose, Max/AveragePooling1D/2D, Global{Max,Average}Pooling1D/2D, Flatten, Reshape, "
                    "UpSampling1D/2D, ZeroPadding1D/2D, Cropping1D/2D, SimpleRNN, LSTM, GRU, Dropout, "
                    "BatchNormalization, Activation, ReLU, LeakyReLU, ELU, Softmax, Embedding, Masking, "
                    "RepeatVector, Permute, Bidirectional, TimeDistributed")


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


class _LayerOp:
    """An op that reads its settings from the layer it runs."""

    def __init__(self, layer):
        self.layer = layer


def _image(x, rank):
    """A rank-1 layer's (N, W, C) input viewed as the (N, 1, W, C) image the 2D entry points take."""
    return x if rank == 2 else x.reshape((x.shape[0], 1) + tuple(x.shape[1:]))


def _hw(value, rank, one=1):
    """A layer's per-axis tuple for the 2D entry points: a rank-1 layer's gets `one` for the height."""
    return tuple(value) if rank == 2 else (one,) + tuple(value)


def _conv_geometry(layer, image_shape, groups):
    """conv2d_forward's geometry keywords and (OH, OW) of `layer` (rank 1 or 2) on an image."""
    (kh, kw), (sh, sw), (dh, dw) = (_hw(v, layer.rank) for v in (layer.kernel_size, layer.strides,
                                                                  layer.dilation_rate))
    pt, oh = (0, 1) if layer.rank == 1 else pad_and_size(image_shape[1], kh, sh, dh, layer.padding)
    pl, ow = pad_and_size(image_shape[2], kw, sw, dw, layer.padding)
    return dict(stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl, dil_h=dh, dil_w=dw, groups=groups), (oh, ow)


def _grad_as(res, var, grad):
    """A weight's gradient computed on a reshaped view, in the weight's own shape."""
    if grad is not None:
        res.set_grad(var, grad.reshape(tuple(res.array(var).shape)))


class _ConvStep:
    """One convolution on the conv2d entry points: Conv1D/2D (kernel (k..., C/groups, K)) or a
    depthwise step (kernel (k..., C, m), the grouped (k..., 1, C*m) with groups = C, the same
    memory); rank-1 layers on images of height 1. relu fused into the output pass when asked."""

    def __init__(self, layer, kernel_var, bias_var, relu, depthwise):
        self.layer, self.kernel_var, self.bias_var = layer, kernel_var, bias_var
        self.relu, self.depthwise = relu, depthwise

    def _kernel(self, res):
        w = res.array(self.kernel_var)
        ks = tuple(w.shape)
        if self.depthwise:
            return w.reshape(_hw(ks[:-2], self.layer.rank) + (1, ks[-2] * ks[-1])), ks[-2]
        return (w if self.layer.rank == 2 else w.reshape((1,) + ks)), self.layer.groups

    def forward(self, res, x, training):
        x4 = _image(x, self.layer.rank)
        w4, groups = self._kernel(res)
        geom, (oh, ow) = _conv_geometry(self.layer, x4.shape, groups)
        bias = res.array(self.bias_var) if self.bias_var is not None else None
        y4 = res.r.conv2d_forward(x4, w4, bias, OH=oh, OW=ow, relu=self.relu, **geom)
        y = y4 if self.layer.rank == 2 else y4.reshape((y4.shape[0], ow, y4.shape[3]))
        return y, (x4, w4, y, geom, tuple(x.shape))

    def backward(self, res, dy, saved, need_dx):
        x4, w4, y, geom, x_shape = saved
        if self.relu:  # relu' depends on the sign only, and y > 0 exactly where z > 0
            dy = res.r.activation_backward("relu", dy, y, y)
        dy4 = _image(dy, self.layer.rank)
        need_dw = res.trains(self.kernel_var)
        need_db = self.bias_var is not None and res.trains(self.bias_var)
        dx, dw, db = res.r.conv2d_backward(dy4, x4, w4, need_dx=need_dx, need_dw=need_dw, need_db=need_db, **geom)
        _grad_as(res, self.kernel_var, dw)
        res.set_grad(self.bias_var, db)
        return None if dx is None else dx.reshape(x_shape)


def _conv_ops(layer, depthwise=False):
    """Conv1D/2D or DepthwiseConv1D/2D: the conv (relu fused as the CPU layer fuses it), then its
    activation."""
    relu = layer._fused()
    _, rest = (None, []) if relu else _activation_ops(layer.activation, layer)
    return [_ConvStep(layer, layer.kernel, layer.bias, relu, depthwise)] + rest


class _Separable:
    """SeparableConv1D/2D: the depthwise step (no bias), then the 1x1 pointwise conv with the
    bias (and a fused relu), as the CPU layer runs them."""

    def __init__(self, layer, relu):
        self.depthwise = _ConvStep(layer, layer.depthwise_kernel, None, False, True)
        self.pointwise = _ConvStep(_Pointwise(layer.rank), layer.pointwise_kernel, layer.bias, relu, False)

    def forward(self, res, x, training):
        d, s1 = self.depthwise.forward(res, x, training)
        y, s2 = self.pointwise.forward(res, d, training)
        return y, (s1, s2)

    def backward(self, res, dy, saved, need_dx):
        s1, s2 = saved
        dd = self.pointwise.backward(res, dy, s2, True)
        return self.depthwise.backward(res, dd, s1, need_dx)


class _Pointwise:
    """The geometry of a separable conv's pointwise step: 1x1, stride 1, "valid"."""

    def __init__(self, rank):
        self.rank, self.groups = rank, 1
        self.kernel_size = self.strides = self.dilation_rate = (1,) * rank
        self.padding = "valid"


class _ConvTranspose(_LayerOp):
    """Conv1DTranspose/Conv2DTranspose: the forward conv's data gradient (conv_transpose2d),
    rank-1 layers on images of height 1."""

    def _args(self):
        l = self.layer
        op = None if l.output_padding is None else _hw(l.output_padding, l.rank, 0)
        return dict(strides=_hw(l.strides, l.rank), padding=l.padding, output_padding=op,
                    dilation_rate=_hw(l.dilation_rate, l.rank))

    def _kernel(self, res):
        k = res.array(self.layer.kernel)
        return k if self.layer.rank == 2 else k.reshape((1,) + tuple(k.shape))

    def forward(self, res, x, training):
        l = self.layer
        x4, k4 = _image(x, l.rank), self._kernel(res)
        bias = res.array(l.bias) if l.bias is not None else None
        y4 = res.r.conv_transpose2d(x4, k4, bias, **self._args())
        y = y4 if l.rank == 2 else y4.reshape((y4.shape[0], y4.shape[2], y4.shape[3]))
        return y, (x4, k4, tuple(x.shape))

    def backward(self, res, dy, saved, need_dx):
        x4, k4, x_shape = saved
        l = self.layer
        need_dk, need_db = res.trains(l.kernel), l.bias is not None and res.trains(l.bias)
        dx, dk, db = res.r.conv_transpose2d_backward(_image(dy, l.rank), x4, k4, need_dx=need_dx, need_dkernel=need_dk,
                                                     need_dbias=need_db, **self._args())
        _grad_as(res, l.kernel, dk)
        res.set_grad(l.bias, db)
        return None if dx is None else dx.reshape(x_shape)


class _Pool(_LayerOp):
    """Max/AveragePooling1D/2D; rank-1 layers on images of height 1."""

    def _args(self):
        l = self.layer
        return _hw(l.pool_size, l.pool_dimensions), _hw(l.strides, l.pool_dimensions), l.padding

    def forward(self, res, x, training):
        x4 = _image(x, self.layer.pool_dimensions)
        if self.layer.pool_mode == "max":
            y4, argmax = res.r.max_pool2d(x4, *self._args())
        else:
            y4, argmax = res.r.avg_pool2d(x4, *self._args()), None
        y = y4 if x4 is x else y4.reshape((y4.shape[0], y4.shape[2], y4.shape[3]))
        return y, (argmax, tuple(x4.shape[1:3]), tuple(x.shape))

    def backward(self, res, dy, saved, need_dx):
        if not need_dx:
            return None
        argmax, hw, x_shape = saved
        dy4 = _image(dy, self.layer.pool_dimensions)
        if argmax is not None:
            dx = res.r.max_pool2d_backward(dy4, argmax, hw, *self._args())
        else:
            dx = res.r.avg_pool2d_backward(dy4, hw, *self._args())
        return dx.reshape(x_shape)


class _GlobalPool(_LayerOp):
    """Global{Max,Average}Pooling1D/2D: a pooling whose window is the whole image.
    GlobalAveragePooling1D takes a mask (the mean over the kept steps) and passes none on."""

    def __init__(self, layer):
        self.layer = layer
        self.takes_mask = layer.pool_mode == "average" and layer.pool_dimensions == 1

    def passes_mask(self):
        return False

    def forward(self, res, x, training, mask=None):
        l = self.layer
        if mask is not None:
            y = res.r.masked_mean_time(x, mask)
            n, c = x.shape[0], x.shape[-1]
            return (y.reshape((n, 1, c)) if l.keepdims else y), (mask, None, tuple(x.shape))
        x4 = _image(x, l.pool_dimensions)
        hw = tuple(x4.shape[1:3])
        if l.pool_mode == "max":
            y4, argmax = res.r.max_pool2d(x4, hw, hw, "valid")
        else:
            y4, argmax = res.r.avg_pool2d(x4, hw, hw, "valid"), None
        n, c = x.shape[0], x.shape[-1]
        y = y4.reshape((n,) + (1,) * l.pool_dimensions + (c,) if l.keepdims else (n, c))
        return y, (argmax, hw, tuple(x.shape))

    def backward(self, res, dy, saved, need_dx):
        if not need_dx:
            return None
        argmax, hw, x_shape = saved
        if hw is None:  # masked: `argmax` holds the mask
            return res.r.masked_mean_time_backward(dy.reshape((x_shape[0], x_shape[-1])), argmax)
        dy4 = dy.reshape((x_shape[0], 1, 1, x_shape[-1]))
        if argmax is not None:
            dx = res.r.max_pool2d_backward(dy4, argmax, hw, hw, hw, "valid")
        else:
            dx = res.r.avg_pool2d_backward(dy4, hw, hw, hw, "valid")
        return dx.reshape(x_shape)


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


class _Reshape(_LayerOp):
    """Reshape: the same memory under (batch,) + target_shape, no copy."""

    def forward(self, res, x, training):
        from faltung.layers.reshaping.reshape import compute_reshape_output_shape
        shape = tuple(x.shape)
        out = compute_reshape_output_shape(shape[1:], self.layer.target_shape, "target_shape")
        return x.reshape((shape[0],) + out), shape

    def backward(self, res, dy, shape, need_dx):
        return dy.reshape(shape) if need_dx else None


class _Upsample(_LayerOp):
    """UpSampling1D (nearest, on images of width 1) and UpSampling2D (nearest or bilinear)."""

    def _size(self):
        return (self.layer.size, 1) if isinstance(self.layer.size, int) else tuple(self.layer.size)

    def forward(self, res, x, training):
        shape = tuple(x.shape)
        x4 = x if len(shape) == 4 else x.reshape((shape[0], shape[1], 1, shape[2]))
        sh, sw = self._size()
        if getattr(self.layer, "interpolation", "nearest") == "bilinear":
            y4 = res.r.resize_bilinear2d(x4, (x4.shape[1] * sh, x4.shape[2] * sw))
        else:
            y4 = res.r.upsample_nearest2d(x4, (sh, sw))
        y = y4 if len(shape) == 4 else y4.reshape((shape[0], shape[1] * sh, shape[2]))
        return y, (tuple(x4.shape), shape)

    def backward(self, res, dy, saved, need_dx):
        if not need_dx:
            return None
        x4_shape, shape = saved
        sh, sw = self._size()
        dy4 = dy.reshape((x4_shape[0], x4_shape[1] * sh, x4_shape[2] * sw, x4_shape[3]))
        if getattr(self.layer, "interpolation", "nearest") == "bilinear":
            dx = res.r.resize_bilinear2d_backward(dy4, x4_shape[1:3])
        else:
            dx = res.r.upsample_nearest2d_backward(dy4, (sh, sw))
        return dx.reshape(shape)


class _Shift(_LayerOp):
    """ZeroPadding1D/2D (pads >= 0) and Cropping1D/2D (`crop`: the pads negated) as one 2D shift;
    each one's backward is the other's shift back. pads: ((top, bottom), (left, right))."""

    def __init__(self, layer, pads, crop):
        self.layer, self.sign = layer, -1 if crop else 1
        self.pads = pads if len(pads) == 2 else ((0, 0),) + tuple(pads)  # rank 1: width only

    def forward(self, res, x, training):
        shape = tuple(x.shape)
        x4 = _image(x, len(shape) - 2)
        (t, b), (l, r) = self.pads
        s = self.sign
        out_hw = (x4.shape[1] + s * (t + b), x4.shape[2] + s * (l + r))
        y4 = res.r.shift2d(x4, out_hw, s * t, s * l)
        y = y4 if len(shape) == 4 else y4.reshape((shape[0], out_hw[1], shape[2]))
        return y, (tuple(x4.shape[1:3]), shape)

    def backward(self, res, dy, saved, need_dx):
        if not need_dx:
            return None
        hw, shape = saved
        (t, _), (l, _) = self.pads
        dx = res.r.shift2d(_image(dy, len(shape) - 2), hw, -self.sign * t, -self.sign * l)
        return dx.reshape(shape)


class _Recurrent(_LayerOp):
    """SimpleRNN, LSTM, GRU (either reset_after): the family's forward (keeping its workspace when
    training) and backward; go_backwards reverses the input (and the mask) in time first (the
    output stays in processing order, as Keras's); the last output is the final state h_T. A
    mask (B,T) makes masked steps carry the states, their outputs the carried h (zeros with
    zero_output_for_mask), as the CPU kernels do.

    States, as the CPU layer (faltung.layers.rnn.rnn): `initial_state` (DeviceArrays h0, and c0
    for LSTM) starts the recursion instead of zeros, and backward then returns (dx, [dh0, ...]);
    a stateful layer starts from its carried states (the layer's `_device_states`, uploaded from
    its host `states` when absent: after reset_states() or a read of RNN.states) and carries its
    final states on (also at inference); return_state adds the final states to the outputs,
    whose gradients come as a list (None where one gets none).

    Dropout (training only), with the CPU layer's masks (drawn as it draws them, input mask
    first), fixed across time: `dropout` multiplies x by a (B,1,F) mask (dx likewise),
    `recurrent_dropout` gives the kernels a (B,units) mask on h_{t-1} in the recurrent products
    (rnn_common.cuh), as the CPU kernels apply it."""
    takes_mask = True
    takes_initial_state = True

    def passes_mask(self):
        return self.layer.return_sequences

    def mask_unsupported(self):
        """Why this layer cannot take a mask on the device, or None."""
        l = self.layer
        if l.zero_output_for_mask and not l.return_sequences:
            return "a mask with zero_output_for_mask=True and return_sequences=False"
        return None

    def __init__(self, layer, family):
        self.layer, self.family = layer, family

    def _options(self):
        return {"reset_after": self.layer.cell.reset_after} if self.family == "gru" else {}

    def _weights(self, res):
        c = self.layer.cell
        return res.array(c.kernel), res.array(c.recurrent_kernel), (res.array(c.bias) if c.bias is not None else None)

    def _initial(self, res, input_shape, initial_state):
        """The states the recursion starts from: given, carried (stateful) or None (zeros)."""
        l = self.layer
        if initial_state is not None or not l.stateful:
            return initial_state
        carried = l.__dict__.get("_device_states")
        if carried is None:
            carried = [res.DeviceArray(s, res.dtype) for s in l.states]
        l._check_stateful_batch(input_shape, carried[0].shape)  # the CPU layer's words
        return carried

    def _dropout_masks(self, res, x, training):
        """The CPU layer's dropout masks on the device, drawn as RNN.forward draws them
        (RNN._dropout_mask: the cell's seed or faltung's generator, input mask first): input
        (B,1,F) and recurrent (B,units), each None without its rate or when not training."""
        l = self.layer
        if not training or not (l.cell.dropout or l.cell.recurrent_dropout):
            return None, None
        batch, _, features = x.shape
        dp = l._dropout_mask(l.cell.dropout, (batch, features), res.dtype)
        rdp = l._dropout_mask(l.cell.recurrent_dropout, (batch, l.units), res.dtype)
        return (None if dp is None else res.DeviceArray(dp.reshape(batch, 1, features), res.dtype),
                None if rdp is None else res.DeviceArray(rdp, res.dtype))

    def forward(self, res, x, training, mask=None, initial_state=None):
        l = self.layer
        dp, rdp = self._dropout_masks(res, x, training)
        x = x if dp is None else res.r.merge("multiply", [x, dp])[0]  # fixed across time
        xs = res.r.reverse_time(x) if l.go_backwards else x
        m = res.r.reverse_mask(mask) if mask is not None and l.go_backwards else mask
        opts = dict(self._options(), mask=m, zero_output_for_mask=l.zero_output_for_mask, recurrent_mask=rdp)
        out = getattr(res.r, self.family + "_forward")(xs, *self._weights(res), training=training,
                                                       initial_state=self._initial(res, x.shape, initial_state),
                                                       **opts)
        hs, finals, ws = out[0], list(out[1:-1]), out[-1]  # finals: h_T (and c_T)
        if l.stateful:
            l._device_states = finals
        y = hs if l.return_sequences else finals[0]
        return ([y] + finals if l.return_state else y), (xs, ws, opts, initial_state is not None, dp)

    def backward(self, res, dy, saved, need_dx):
        xs, ws, opts, given, dp = saved
        l, c = self.layer, self.layer.cell
        n = len(l.state_size)
        d_out, d_states = (dy[0], list(dy[1:])) if l.return_state else (dy, [None] * n)
        dhs, dh_T = (d_out, d_states[0]) if l.return_sequences else (None, d_states[0])
        if not l.return_sequences and d_out is not None:  # the last output is the final state h_T
            dh_T = d_out if dh_T is None else res.r.add(dh_T, d_out)
        extra = {"dc_T": d_states[1]} if n == 2 else {}
        grads = getattr(res.r, self.family + "_backward")(xs, *self._weights(res), ws, dhs, dh_T,
                                                          need_dx=need_dx, **extra, **opts)
        dx, dk, drk, db = grads[:4]
        for var, g in ((c.kernel, dk), (c.recurrent_kernel, drk), (c.bias, db)):
            if var is not None and res.trains(var):
                res.set_grad(var, g)
        dx = res.r.reverse_time(dx) if dx is not None and l.go_backwards else dx
        dx = res.r.merge("multiply", [dx, dp])[0] if dx is not None and dp is not None else dx
        return (dx, list(grads[4:])) if given else dx


def _recurrent_ops(layer):
    """SimpleRNN/LSTM/GRU, or NotImplementedError naming the option the device cannot run."""
    from faltung.layers import GRU, LSTM
    c = layer.cell
    if c.activation.name != "tanh":
        raise _unsupported(layer, f"activation={c.activation.name!r} (only 'tanh' is)")
    if isinstance(layer, (LSTM, GRU)) and c.recurrent_activation.name != "sigmoid":
        raise _unsupported(layer, f"recurrent_activation={c.recurrent_activation.name!r} (only 'sigmoid' is)")
    return [_Recurrent(layer, c.kind)]


def recurrent_op(layer):
    """The op of a SimpleRNN/LSTM/GRU layer (Bidirectional's directions)."""
    from faltung.layers import GRU, LSTM, SimpleRNN
    if type(layer) not in (SimpleRNN, LSTM, GRU):
        raise _unsupported(layer, f"the layer type {type(layer).__name__} (inside Bidirectional)")
    return _recurrent_ops(layer)[0]


def _unsupported(layer, what):
    return NotImplementedError(
        f"Device-resident models do not support {what} yet (layer '{layer.name}' of type "
        f"{type(layer).__name__}). Supported: {SUPPORTED_LAYERS} (see faltung.models.resident); "
        "build the model outside the device scope to train it on the CPU.")


def ops_for(layer):
    """The ops of one layer, or NotImplementedError naming it."""
    from faltung import layers as L
    from faltung.layers.layer import Composite
    from faltung.models.resident_seq import SEQ_LAYERS, seq_ops
    kind = type(layer)
    activation_layers = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Softmax)
    convs = (L.Conv1D, L.Conv2D)
    depthwise = (L.DepthwiseConv1D, L.DepthwiseConv2D)
    separable = (L.SeparableConv1D, L.SeparableConv2D)
    transposed = (L.Conv1DTranspose, L.Conv2DTranspose)
    pooling = (L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D)
    global_pooling = (L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalAveragePooling1D,
                      L.GlobalAveragePooling2D)
    padding = (L.ZeroPadding1D, L.ZeroPadding2D)
    cropping = (L.Cropping1D, L.Cropping2D)
    recurrent = (L.SimpleRNN, L.LSTM, L.GRU)
    supported = (convs + depthwise + separable + transposed + pooling + global_pooling + padding + cropping +
                 recurrent + (L.Dense, L.Flatten, L.Reshape, L.UpSampling1D, L.UpSampling2D, L.Dropout,
                              L.BatchNormalization))
    if kind not in supported + activation_layers + SEQ_LAYERS():
        raise _unsupported(layer, f"the layer type {kind.__name__}")
    for v in layer.weights:
        if v.regularizer is not None or v.constraint is not None:
            raise _unsupported(layer, f"the regularizer or constraint of weight '{v.name}'")
    inner = layer._inner_layers() if isinstance(layer, Composite) else []
    if any(getattr(l, "activity_regularizer", None) is not None for l in [layer] + inner):
        raise _unsupported(layer, "an activity_regularizer")
    if getattr(layer, "data_format", "channels_last") != "channels_last" and len(layer.input_shape) > 2:
        raise _unsupported(layer, f"data_format={layer.data_format!r}")
    if kind in SEQ_LAYERS():
        return seq_ops(layer)
    if kind is L.Dense:
        fused, rest = _activation_ops(layer.activation, layer, fused_elementwise=True)
        return [_Dense(layer, fused)] + rest
    if kind in convs or kind in depthwise:
        return _conv_ops(layer, depthwise=kind in depthwise)
    if kind in separable:
        relu = layer._fused()
        _, rest = (None, []) if relu else _activation_ops(layer.activation, layer)
        return [_Separable(layer, relu)] + rest
    if kind in transposed:
        return [_ConvTranspose(layer)] + _activation_ops(layer.activation, layer)[1]
    if kind in pooling:
        return [_Pool(layer)]
    if kind in global_pooling:
        return [_GlobalPool(layer)]
    if kind in padding:
        return [_Shift(layer, layer._pads, crop=False)]
    if kind in cropping:
        return [_Shift(layer, layer.cropping if kind is L.Cropping2D else (layer.cropping,), crop=True)]
    if kind in (L.UpSampling1D, L.UpSampling2D):
        return [_Upsample(layer)]
    if kind in recurrent:
        return _recurrent_ops(layer)
    if kind is L.Flatten:
        return [_Flatten()]
    if kind is L.Reshape:
        return [_Reshape(layer)]
    if kind is L.BatchNormalization:
        rank = len(layer.input_shape)
        if layer._axis(rank) != rank - 1 or layer.synchronized:
            raise _unsupported(layer, f"axis={layer.axis} (only the last axis is) or synchronized=True")
        return [_BatchNorm(layer)]
    if kind is L.Dropout:
        if layer.noise_shape is not None:
            raise _unsupported(layer, f"noise_shape={layer.noise_shape}")
        return [_Dropout(layer)]
    return _activation_ops(layer.fn, layer)[1]
