"""BatchNormalization (Keras 3), forward and backward in C++."""
import numpy as np

from faltung import constraints, initializers, regularizers
from faltung.distribution import replica
from faltung.layers.layer import Layer
from faltung.ops import normalization as N


class BatchNormalization(Layer):
    """Normalizes each channel with batch statistics (training) or moving statistics
    (inference): y = gamma * (x - mean) / sqrt(var + epsilon) + beta.

    With `training=True` (and `trainable=True`) the batch mean and the biased batch
    variance over all axes but `axis` are used, and the moving statistics are updated:
    moving = moving * momentum + batch * (1 - momentum) (the biased variance, as Keras's
    ops.moments). Otherwise the moving statistics are used. As in Keras 3,
    `trainable=False` means inference mode even when training=True (the layer is frozen:
    no moving update, no weight gradients; backward still returns dL/dx).

    Args:
        axis: the channel axis (default -1).
        momentum: moving-average momentum (default 0.99).
        epsilon: added to the variance (default 1e-3).
        center: use `beta` (default True). scale: use `gamma` (default True).
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: Keras names and defaults.
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint: stored
            on the weights (applied by the training loop).
        synchronized: with a faltung.distribution.DataParallel over several processes,
            the batch statistics (and their gradients) are those of the global batch,
            summed over the processes by MPI all-reduce; in one process it changes
            nothing. (Keras accepts True only on TensorFlow; faltung's addition.)

    Weights (Keras order): gamma, beta, moving_mean, moving_variance (the last two
    non-trainable), each of shape (channels,).

    Input shape: any; output shape: same as input.
    """

    # The mask passes through, as in Keras; unlike Keras, masked steps still count in the
    # batch statistics (Keras computes masked moments).
    supports_masking = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.synchronized = bool(synchronized)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        if not self.epsilon > 0:
            raise ValueError(f"Invalid value for argument `epsilon`. Expected a strictly positive value. "
                             f"Received epsilon={epsilon}")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = None

    def _axis(self, ndim):
        if not -ndim <= self.axis < ndim:
            raise ValueError(f"Layer {self.name}: axis={self.axis} is out of range for an input of rank {ndim}")
        return self.axis % ndim

    def build(self, input_shape):
        ax = self._axis(len(input_shape))
        c = input_shape[ax]
        if c is None:
            raise ValueError(f"Layer {self.name}: axis {self.axis} of the input must be known, received "
                             f"input_shape={tuple(input_shape)}")
        if self.scale:
            self.gamma = self.add_weight((c,), self.gamma_initializer, "gamma", True,
                                         self.gamma_regularizer, self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight((c,), self.beta_initializer, "beta", True,
                                        self.beta_regularizer, self.beta_constraint)
        self.moving_mean = self.add_weight((c,), self.moving_mean_initializer, "moving_mean", False)
        self.moving_variance = self.add_weight((c,), self.moving_variance_initializer, "moving_variance", False)
        super().build(input_shape)

    def check_input(self, x, min_rank=None, rank=None):
        exp = self.input_shape
        if exp is None:
            return
        ax = self._axis(len(exp))
        if x.ndim != len(exp) or x.shape[ax] != exp[ax]:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                             f"ndim={len(exp)} and axis {self.axis} of size {exp[ax]}, found shape={tuple(x.shape)}")

    def _value(self, v):
        return None if v is None else v.value

    def forward(self, x, training=False):
        self.check_input(x)
        ax = self._axis(x.ndim)
        if self.behaves_as_training(training) and self.trainable:
            if self.synchronized and replica.is_distributed():
                return self._forward_synchronized(x, ax)
            y, mean, var, inv_std = N.batch_norm_train(x, self._value(self.gamma), self._value(self.beta),
                                                       self.epsilon, ax)
            self._update_moving(mean, var)
            self.save_for_backward("train", x, mean, inv_std)
            return y
        inv = 1.0 / np.sqrt(self.moving_variance.value + np.float32(self.epsilon))
        scale = inv if self.gamma is None else self.gamma.value * inv
        shift = -self.moving_mean.value * scale + (0 if self.beta is None else self.beta.value)
        scale, shift = scale.astype(np.float32), np.asarray(shift, np.float32)
        if training:  # a trainable layer in inference mode still learns gamma and beta
            self.save_for_backward("inference", scale, x if self.trainable else None, inv)
        return N.channel_affine(x, scale, shift, ax)

    def _update_moving(self, mean, var):
        m = self.momentum
        self.moving_mean.value[...] = self.moving_mean.value * m + mean * (1.0 - m)
        self.moving_variance.value[...] = self.moving_variance.value * m + var * (1.0 - m)

    def _forward_synchronized(self, x, ax):
        """Training forward with the global batch's mean and biased variance: per channel,
        (count, sum x, sum x^2) summed over the processes in float64."""
        axes = tuple(i for i in range(x.ndim) if i != ax)
        c = x.shape[ax]
        x64 = x.astype(np.float64)
        local = np.concatenate([[x.size // c], x64.sum(axis=axes), (x64 * x64).sum(axis=axes)])
        total = replica.sum_over_replicas(local)
        mean = total[1:c + 1] / total[0]
        var = np.maximum(total[c + 1:] / total[0] - mean * mean, 0.0)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        scale = inv_std if self.gamma is None else self.gamma.value * inv_std
        shift = -mean * scale + (0 if self.beta is None else self.beta.value)
        self._update_moving(mean.astype(np.float32), var.astype(np.float32))
        self.save_for_backward("synchronized", x, mean, inv_std, total[0])
        return N.channel_affine(x, scale.astype(np.float32), shift.astype(np.float32), ax)

    def _backward_synchronized(self, dy, ax, need_dx):
        """dx = gamma * inv_std / N * (N dy - sum dy - x_hat sum(dy x_hat)) with the sums
        over the global batch; gamma/beta get this process's share of their gradients
        (the data-parallel all-reduce sums the shares)."""
        _, x, mean, inv_std, count = self.saved_for_backward()
        axes = tuple(i for i in range(dy.ndim) if i != ax)
        shape = [1] * dy.ndim
        shape[ax] = -1
        x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        local = np.concatenate([dy.sum(axis=axes, dtype=np.float64),
                                (dy * x_hat).sum(axis=axes, dtype=np.float64)])
        if self.gamma is not None:
            self.gamma.grad = local[len(mean):].astype(np.float32)
        if self.beta is not None:
            self.beta.grad = local[:len(mean)].astype(np.float32)
        if not need_dx:
            return None
        total = replica.sum_over_replicas(local)
        if replica.is_stand_in():  # a process without rows: its stand-in row is no sample
            return np.zeros_like(dy)
        sum_dy, sum_dy_xhat = total[:len(mean)].reshape(shape), total[len(mean):].reshape(shape)
        g = inv_std if self.gamma is None else self.gamma.value * inv_std
        dx = g.reshape(shape) / count * (count * dy - sum_dy - x_hat * sum_dy_xhat)
        return dx.astype(np.float32)

    def backward(self, dy, need_dx=True):
        saved = self.saved_for_backward()
        ax = self._axis(dy.ndim)
        if saved[0] == "synchronized":
            return self._backward_synchronized(dy, ax, need_dx)
        if saved[0] == "inference":  # y = x * scale + shift with the moving statistics
            _, scale, x, inv = saved
            if x is not None:  # dgamma = sum(dy * x_hat), dbeta = sum(dy) over all but the axis
                axes = tuple(i for i in range(dy.ndim) if i != ax)
                shape = [1] * dy.ndim
                shape[ax] = -1
                if self.gamma is not None:
                    x_hat = (x - self.moving_mean.value.reshape(shape)) * inv.reshape(shape)
                    self.gamma.grad = np.asarray((dy * x_hat).sum(axis=axes), np.float32)
                if self.beta is not None:
                    self.beta.grad = np.asarray(dy.sum(axis=axes), np.float32)
            return N.channel_affine(dy, scale, None, ax) if need_dx else None
        _, x, mean, inv_std = saved
        dx, dg, db = N.batch_norm_train_backward(dy, x, mean, inv_std, self._value(self.gamma), ax, need_dx,
                                                 self.gamma is not None, self.beta is not None)
        if self.gamma is not None:
            self.gamma.grad = dg
        if self.beta is not None:
            self.beta.grad = db
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                   scale=self.scale,
                   beta_initializer=initializers.serialize(self.beta_initializer),
                   gamma_initializer=initializers.serialize(self.gamma_initializer),
                   moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
                   moving_variance_initializer=initializers.serialize(self.moving_variance_initializer),
                   beta_regularizer=regularizers.serialize(self.beta_regularizer),
                   gamma_regularizer=regularizers.serialize(self.gamma_regularizer),
                   beta_constraint=constraints.serialize(self.beta_constraint),
                   gamma_constraint=constraints.serialize(self.gamma_constraint),
                   synchronized=self.synchronized)
        return cfg
