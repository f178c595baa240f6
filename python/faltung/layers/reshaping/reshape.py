"""Reshape (Keras's `Reshape`)."""
import math

from faltung.layers.layer import Layer


def compute_reshape_output_shape(input_shape, new_shape, arg_name):
    """Resolves one -1 in new_shape against input_shape (no batch axis), with Keras's errors."""
    unknown = new_shape.count(-1)
    if unknown > 1:
        raise ValueError("There must be at most one unknown dimension (-1) in "
                         f"{arg_name}. Received: {arg_name}={new_shape}.")
    if None in input_shape:
        return tuple(None if d == -1 else d for d in new_shape)
    size = math.prod(input_shape)
    if unknown == 0:
        if size != math.prod(new_shape):
            raise ValueError("The total size of the tensor must be unchanged. Received: "
                             f"input_shape={tuple(input_shape)}, {arg_name}={new_shape}")
        return tuple(new_shape)
    known = math.prod(d for d in new_shape if d != -1)
    if known == 0 or size % known != 0:
        raise ValueError("The total size of the tensor must be unchanged, however, the input size "
                         f"cannot by divided by the specified dimensions in {arg_name}. Received: "
                         f"input_shape={tuple(input_shape)}, {arg_name}={new_shape}")
    return tuple(size // known if d == -1 else d for d in new_shape)


class Reshape(Layer):
    """Reshapes inputs into `target_shape` (without the batch axis; one entry may be -1).

    Input shape: arbitrary, compatible with target_shape.
    Output shape: (batch_size, *target_shape).
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target_shape = tuple(int(d) for d in target_shape)
        if target_shape.count(-1) > 1:
            raise ValueError("The `target_shape` argument must not contain more than one `-1` "
                             f"value. Received: target_shape={target_shape}")
        self.target_shape = target_shape

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + compute_reshape_output_shape(
            tuple(input_shape[1:]), self.target_shape, "target_shape")

    def forward(self, x, training=False):
        self.check_input(x)
        out = compute_reshape_output_shape(x.shape[1:], self.target_shape, "target_shape")
        if training:
            self.save_for_backward(x.shape)
        return x.reshape((x.shape[0],) + out)

    def backward(self, dy, need_dx=True):
        (shape,) = self.saved_for_backward()
        return dy.reshape(shape) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(target_shape=self.target_shape)
        return cfg
