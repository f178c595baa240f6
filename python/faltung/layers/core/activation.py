"""Activation and Identity layers, and the base of the elementwise activation layers."""
from faltung import activations
from faltung.layers.layer import Layer


class ElementwiseActivation(Layer):
    """Base of layers that apply one activation object (`self.fn`, from
    `faltung.activations`): forward caches (x, y) when training, backward calls
    `fn.backward`. faltung's internal base; Keras has no such class."""

    supports_masking = True  # as Keras's activation layers: the mask passes through

    fn = None

    def forward(self, x, training=False):
        self.check_input(x)
        y = self.fn.forward(x)
        if training:
            self.save_for_backward(x, y)
        return y

    def backward(self, dy, need_dx=True):
        x, y = self.saved_for_backward()
        if not need_dx:
            return None
        return self.fn.backward(dy, x, y)


class Activation(ElementwiseActivation):
    """Applies an activation function to an output (Keras's `Activation`).

    Args:
        activation: activation name ("relu", "softmax", ...) or object.

    Input shape: arbitrary.
    Output shape: same shape as input.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.fn = activations.get(activation)
        self.activation = self.fn

    def get_config(self):
        cfg = super().get_config()
        cfg.update(activation=activations.serialize(self.fn))
        return cfg


class Identity(Layer):
    """Identity layer: returns its input unchanged (Keras's `Identity`)."""

    supports_masking = True

    def forward(self, x, training=False):
        self.check_input(x)
        return x

    def backward(self, dy, need_dx=True):
        return dy if need_dx else None
