"""BaseConv: the rank-generic convolution layer (Keras 3's base_conv.py semantics) with
faltung's forward/backward bricks. Conv1D and Conv2D are thin subclasses; the depthwise
and separable layers reuse its checks and its activation handling.
"""
import numpy as np

from faltung import activations, backend, constraints, initializers, regularizers
from faltung.layers.layer import Layer
from faltung.ops import convolution as conv_ops


def check_positive(value, name):
    if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
        raise ValueError(f"Invalid value for argument `{name}`. Expected a strictly positive value. "
                         f"Received {name}={value}.")


def check_strides_dilation(strides, dilation_rate):
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError("`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                         f"Received: strides={strides} and dilation_rate={dilation_rate}")


def serialize(obj):
    """Config value of an initializer (None stays None)."""
    if obj is None or isinstance(obj, (str, int, float, dict)):
        return obj
    ser = initializers.serialize(obj)
    return ser if ser is not None else obj


class ConvBrick(Layer):
    """What every conv-family layer shares: hyperparameter checks, input checks, the fused
    bias + activation and the activation's backward. Subclasses implement
    `_op_forward(x, relu) -> (z, algorithm name)` and `_op_backward(dz, x, need_dx) -> dx`.

    faltung additions: `algorithm` ("auto", "reference", "im2col", "gemm1x1", "depthwise",
    "winograd", "phased", "direct") forces a kernel (ValueError if it cannot run the shape);
    `fuse_activation` (default True) applies a relu activation inside the conv's output pass.
    After each forward, `self.algorithm` names the kernel that ran.
    """

    def __init__(self, rank, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                 activity_regularizer=None, algorithm="auto", fuse_activation=True, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.kernel_size = conv_ops.standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = conv_ops.standardize_tuple(strides, rank, "strides")
        self.dilation_rate = conv_ops.standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = conv_ops.standardize_padding(padding, allow_causal=rank == 1, allow_full=True)
        self.data_format = conv_ops.standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.algorithm_arg = algorithm
        self.fuse_activation = fuse_activation
        self.algorithm = None  # name of the kernel the last forward ran
        check_strides_dilation(self.strides, self.dilation_rate)

    # -- shapes ----------------------------------------------------------------------
    _exact_ndim = False  # Keras's InputSpec: min_ndim for convolutions, ndim for transposed

    def _check_input_shape(self, input_shape):
        """Keras InputSpec checks: rank (rank + 2) and a known channel count."""
        input_shape = tuple(input_shape)
        nd = self.rank + 2
        if len(input_shape) != nd:
            kind = "min_ndim" if len(input_shape) < nd and not self._exact_ndim else "ndim"
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                             f"{kind}={nd}, found ndim={len(input_shape)}. Full shape received: {input_shape}")
        if input_shape[-1] is None:
            raise ValueError(f"Layer {self.name}: the channel dimension of the inputs should be defined. "
                             f"Received input_shape={input_shape}")
        for d in input_shape[1:]:
            if d is not None and d <= 0:
                raise ValueError(f"Layer {self.name}: input sizes must be positive, received input_shape="
                                 f"{input_shape}")
        return input_shape

    def check_input(self, x):
        exp = self.input_shape
        if x.ndim != len(exp):
            self._check_input_shape(x.shape)
        if x.shape[-1] != exp[-1]:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected axis -1 '
                             f"of input shape to have value {exp[-1]}, but received input with shape "
                             f"{tuple(x.shape)}")

    def _geometry(self):
        return dict(strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
                    algorithm=self.algorithm_arg)

    # -- computation -----------------------------------------------------------------
    def _fused(self):
        return self.fuse_activation and self.activation.name == "relu"

    def forward(self, x, training=False):
        x = backend.as_float_array(x, f"{self.name} input")
        self.check_input(x)
        fused = self._fused()
        z, self.algorithm, *extra = self._op_forward(x, fused)
        y = z if (fused or self.activation.name == "linear") else self.activation.forward(z)
        if training:
            self.save_for_backward(x, z, y, fused, *extra)
        return y

    def backward(self, dy, need_dx=True):
        x, z, y, fused, *extra = self.saved_for_backward()
        dy = np.ascontiguousarray(dy, dtype=np.float32)
        if dy.shape != y.shape:
            raise ValueError(f"Layer {self.name}: expected an output gradient of shape {y.shape}, received "
                             f"shape {dy.shape}")
        if fused:  # relu' depends only on the sign, and y > 0 exactly where z > 0
            dz = self.activation.backward(dy, y, y)
        elif self.activation.name == "linear":
            dz = dy
        else:
            dz = self.activation.backward(dy, z, y)
        return self._op_backward(np.ascontiguousarray(dz, dtype=np.float32), x, need_dx, *extra)

    def _set_grads(self, pairs):
        if self.trainable:
            for var, g in pairs:
                if var is not None and g is not None:
                    var.grad = np.ascontiguousarray(g, dtype=np.float32)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                   data_format=self.data_format, dilation_rate=self.dilation_rate,
                   activation=activations.serialize(self.activation), use_bias=self.use_bias,
                   activity_regularizer=regularizers.serialize(self.activity_regularizer))
        return cfg


class BaseConv(ConvBrick):
    """Abstract N-D convolution layer (rank 1 or 2), Keras's BaseConv.

    Args:
        rank: 1 or 2.
        filters: number of output channels.
        kernel_size: int or tuple of `rank` ints.
        strides: int or tuple of `rank` ints; `strides > 1` is incompatible with
            `dilation_rate > 1`.
        padding: "valid", "same", "causal" (Conv1D only) or "full" (faltung addition:
            pad (k-1)*d on both sides).
        data_format: None or "channels_last" (faltung supports only channels_last).
        dilation_rate: int or tuple of `rank` ints.
        groups: input channels and `filters` are split into `groups` groups.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as Keras.
    """

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(rank, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         activity_regularizer, **kwargs)
        check_positive(filters, "filters")
        self.filters = int(filters)
        if not isinstance(groups, (int, np.integer)) or groups <= 0:
            raise ValueError(f"The number of groups must be a positive integer. Received: groups={groups}.")
        self.groups = int(groups)
        if self.filters % self.groups != 0:
            raise ValueError("The number of filters must be evenly divisible by the number of groups. "
                             f"Received: groups={self.groups}, filters={self.filters}.")
        self.kernel_initializer = initializers.get(kernel_initializer or "glorot_uniform")
        self.bias_initializer = initializers.get(bias_initializer or "zeros")
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        input_shape = self._check_input_shape(input_shape)
        C = input_shape[-1]
        if C % self.groups != 0:
            raise ValueError("The number of input channels must be evenly divisible by the number of groups. "
                             f"Received groups={self.groups}, but the input has {C} channels (full input "
                             f"shape is {input_shape}).")
        self.compute_output_shape(input_shape)  # validates the spatial sizes
        self.kernel = self.add_weight(self.kernel_size + (C // self.groups, self.filters), self.kernel_initializer,
                                      "kernel", regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.bias = (self.add_weight((self.filters,), self.bias_initializer, "bias", regularizer=self.bias_regularizer,
                                     constraint=self.bias_constraint) if self.use_bias else None)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return conv_ops.compute_conv_output_shape(tuple(input_shape), self.filters, self.kernel_size, self.strides,
                                                  self.padding, self.dilation_rate)

    def _op_forward(self, x, relu):
        b = self.bias.value if self.bias is not None else None
        return conv_ops.conv_forward(x, self.kernel.value, b, relu=relu, **self._geometry())

    def _op_backward(self, dz, x, need_dx):
        dx, dw, db = conv_ops.conv_backward(dz, x, self.kernel.value, need_dx=need_dx, need_dw=self.trainable,
                                            need_db=self.trainable and self.bias is not None, **self._geometry())
        self._set_grads([(self.kernel, dw), (self.bias, db)])
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, groups=self.groups,
                   kernel_initializer=serialize(self.kernel_initializer),
                   bias_initializer=serialize(self.bias_initializer),
                   kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
                   bias_regularizer=regularizers.serialize(self.bias_regularizer),
                   kernel_constraint=constraints.serialize(self.kernel_constraint),
                   bias_constraint=constraints.serialize(self.bias_constraint))
        return cfg
