from faltung.ops.nn import *  # noqa: F401,F403  (dense, activations, dropout, softmax xent)
from faltung.ops.conv import conv, conv_backward, depthwise_conv, depthwise_conv_backward, separable_conv  # noqa: F401
from faltung.ops.pooling import (average_pool, average_pool_backward, max_pool, max_pool_backward,  # noqa: F401
                                 max_unpool, max_unpool_backward, average_unpool, average_unpool_backward)
from faltung.ops.normalization import batch_normalization  # noqa: F401
from faltung.ops.conv_transpose import conv_transpose, conv_transpose_backward  # noqa: F401
from faltung.ops.embedding import embedding, embedding_backward  # noqa: F401
