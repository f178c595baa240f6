"""Recurrent layers (Keras's keras.layers rnn group)."""
from faltung.layers.rnn.cells import GRUCell, LSTMCell, SimpleRNNCell
from faltung.layers.rnn.layers import GRU, LSTM, SimpleRNN
from faltung.layers.rnn.rnn import RNN
from faltung.layers.rnn.wrappers import Bidirectional, TimeDistributed

__all__ = ["RNN", "SimpleRNN", "LSTM", "GRU", "SimpleRNNCell", "LSTMCell", "GRUCell", "Bidirectional",
           "TimeDistributed"]
