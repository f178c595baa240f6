"""Keras-mirroring layers, grouped as Keras groups them."""
from faltung.layers.layer import Layer, Variable
from faltung.layers.input_layer import Input, InputLayer, KerasTensor
from faltung.layers.core import *  # noqa: F401,F403
from faltung.layers.activations.relu import ELU, LeakyReLU, ReLU, Softmax
from faltung.layers.activations.prelu import PReLU
from faltung.layers.regularization.dropout import Dropout
from faltung.layers.reshaping.flatten import Flatten
from faltung.layers.reshaping.reshape import Reshape
from faltung.layers.convolutional import *  # noqa: F401,F403
from faltung.layers.pooling import *  # noqa: F401,F403
from faltung.layers.normalization.batch_normalization import BatchNormalization
from faltung.layers.reshaping.up_sampling import UpSampling1D, UpSampling2D
from faltung.layers.reshaping.zero_padding import ZeroPadding1D, ZeroPadding2D
from faltung.layers.reshaping.cropping import Cropping1D, Cropping2D
from faltung.layers.reshaping.repeat_vector import RepeatVector
from faltung.layers.reshaping.permute import Permute
from faltung.layers.merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,
                                    Subtract, add, average, concatenate, dot, maximum, minimum,
                                    multiply, subtract)
from faltung.layers.rnn import (GRU, Bidirectional, GRUCell, LSTM, LSTMCell, RNN, SimpleRNN,  # noqa: F401
                                SimpleRNNCell, TimeDistributed)
from faltung.layers.preprocessing import *  # noqa: F401,F403
