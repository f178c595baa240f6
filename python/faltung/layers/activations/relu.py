"""ReLU, LeakyReLU, ELU and Softmax layers (Keras's layers/activations group)."""
from faltung.activations import Activation as _Fn
from faltung.layers.core.activation import ElementwiseActivation


class ReLU(ElementwiseActivation):
    """Rectified Linear Unit activation layer (Keras's `ReLU`).

    f(x) = max_value if x >= max_value; x if threshold <= x < max_value;
    negative_slope * (x - threshold) otherwise.

    Args:
        max_value: float >= 0 or None (unlimited).
        negative_slope: float >= 0.
        threshold: float >= 0.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0.0:
            raise ValueError("max_value of a ReLU layer cannot be a negative value. "
                             f"Received: max_value={max_value}")
        if negative_slope is None or negative_slope < 0.0:
            raise ValueError("negative_slope of a ReLU layer cannot be None or a negative value. "
                             f"Received: negative_slope={negative_slope}")
        if threshold is None or threshold < 0.0:
            raise ValueError("threshold of a ReLU layer cannot be None or a negative value. "
                             f"Received: threshold={threshold}")
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold
        self.fn = _Fn("relu", negative_slope=float(negative_slope), threshold=float(threshold),
                      max_value=None if max_value is None else float(max_value))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(max_value=self.max_value, negative_slope=self.negative_slope,
                   threshold=self.threshold)
        return cfg


class LeakyReLU(ElementwiseActivation):
    """Leaky ReLU layer (Keras's `LeakyReLU`): f(x) = negative_slope * x for x < 0, x otherwise.

    Args:
        negative_slope: float >= 0 (default 0.3). `alpha` is accepted as its old name.
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError("The negative_slope value of a Leaky ReLU layer cannot be None or "
                             f"negative value. Expected a float. Received: negative_slope={negative_slope}")
        self.negative_slope = negative_slope
        self.fn = _Fn("leaky_relu", "relu", negative_slope=float(negative_slope))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(negative_slope=self.negative_slope)
        return cfg


class ELU(ElementwiseActivation):
    """Exponential Linear Unit layer (Keras's `ELU`): x if x > 0, alpha * (exp(x) - 1) otherwise.

    Args:
        alpha: float, the negative saturation value (default 1.0).
    """

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.fn = _Fn("elu", alpha=float(alpha))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(alpha=self.alpha)
        return cfg


class Softmax(ElementwiseActivation):
    """Softmax layer (Keras's `Softmax`) over one axis.

    Args:
        axis: int, the axis of the normalization (default -1). (Keras also accepts a tuple
            of axes; faltung does not.)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int):
            raise ValueError(f"Softmax {self.name}: faltung supports one integer `axis`, "
                             f"received axis={axis}")
        self.axis = axis
        self.fn = _Fn("softmax", axis=axis)

    def build(self, input_shape):
        if not -len(input_shape) <= self.axis < len(input_shape):
            raise ValueError(f"Softmax {self.name}: axis={self.axis} is out of range for an input "
                             f"of rank {len(input_shape)}")
        super().build(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis)
        return cfg
