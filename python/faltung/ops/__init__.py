"""numpy in, numpy out: the kernels under keras.ops names. Each module is named for its kernel
family (convolution, convolution_transpose, pooling, ...), never like one of the functions
exported here, so that `faltung.ops.conv` is the function and `faltung.ops.convolution` the module.
Shared by every module: argument_validation (standardize_tuple, standardize_padding, ...) and
_kernels (the dtype rule and the `_core` kernel lookup)."""
from faltung.ops.nn import *  # noqa: F401,F403  (dense, activations, dropout, softmax xent)
from faltung.ops.convolution import (conv, conv_backward, depthwise_conv, depthwise_conv_backward,  # noqa: F401
                                     separable_conv)
from faltung.ops.pooling import (average_pool, average_pool_backward, max_pool, max_pool_backward,  # noqa: F401
                                 max_unpool, max_unpool_backward, average_unpool, average_unpool_backward)
from faltung.ops.normalization import batch_normalization  # noqa: F401
from faltung.ops.convolution_transpose import conv_transpose, conv_transpose_backward  # noqa: F401
from faltung.ops.embedding import embedding, embedding_backward  # noqa: F401
from faltung.ops.rnn import (simple_rnn_forward, simple_rnn_backward, lstm_forward,  # noqa: F401
                             lstm_backward, gru_forward, gru_backward)
from faltung.ops.ctc import ctc_loss, ctc_loss_and_grad, ctc_decode  # noqa: F401
