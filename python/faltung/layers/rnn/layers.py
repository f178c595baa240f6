"""SimpleRNN, LSTM and GRU (Keras 3's layers): an RNN over the matching built-in cell, with
the cell's arguments flattened into the layer's signature and config, as Keras has them."""
from faltung.backend import to_snake_case
from faltung.layers.rnn.cells import GRUCell, LSTMCell, SimpleRNNCell
from faltung.layers.rnn.rnn import RNN

_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
             "zero_output_for_mask", "activity_regularizer")
_LAYER_ARGS = ("name", "trainable", "dtype", "input_shape", "batch_input_shape", "input_dim")


class _CellLayer(RNN):
    cell_class = None

    def __init__(self, units, **kwargs):
        kwargs.pop("use_cudnn", None)  # Keras's kernel choice; faltung has one
        rnn_args = {k: kwargs.pop(k) for k in _RNN_ARGS if k in kwargs}
        layer_args = {k: kwargs.pop(k) for k in _LAYER_ARGS if k in kwargs}
        # Keras names the cell after its class inside the layer ("lstm_cell")
        cell = self.cell_class(units, name=to_snake_case(self.cell_class.__name__), **kwargs)
        super().__init__(cell, **rnn_args, **layer_args)

    def __getattr__(self, name):  # units, activation, kernel_initializer, ... from the cell
        cell = self.__dict__.get("cell")
        if cell is not None and not name.startswith("_") and hasattr(cell, name):
            return getattr(cell, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def get_config(self):
        cfg = super().get_config()
        cell_cfg = self.cell.get_config()
        for k in ("name", "trainable", "dtype"):
            cell_cfg.pop(k, None)
        cfg.update(cell_cfg)
        return cfg

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SimpleRNN(_CellLayer):
    """Fully-connected RNN where the output is fed back to the input (Keras's `SimpleRNN`).

    Args: units, activation="tanh", use_bias, kernel_initializer="glorot_uniform",
    recurrent_initializer="orthogonal", bias_initializer="zeros", the regularizers and
    constraints, dropout, recurrent_dropout, seed, and RNN's return_sequences, return_state,
    go_backwards, stateful, unroll. Weights: kernel (features, units), recurrent_kernel
    (units, units), bias (units,).
    """
    cell_class = SimpleRNNCell


class LSTM(_CellLayer):
    """Long Short-Term Memory layer (Hochreiter 1997; Keras's `LSTM`).

    Args: units, activation="tanh", recurrent_activation="sigmoid", use_bias,
    kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
    bias_initializer="zeros", unit_forget_bias=True, the regularizers and constraints,
    dropout, recurrent_dropout, seed, and RNN's options. Weights: kernel (features, 4*units),
    recurrent_kernel (units, 4*units), bias (4*units,), gates i, f, c, o. With
    return_state the layer returns [output, h, c].
    """
    cell_class = LSTMCell


class GRU(_CellLayer):
    """Gated Recurrent Unit (Cho et al. 2014; Keras's `GRU`), `reset_after=True` by default.

    Weights: kernel (features, 3*units), recurrent_kernel (units, 3*units), bias (2, 3*units)
    with reset_after (else (3*units,)), gates z, r, h.
    """
    cell_class = GRUCell
