from faltung.ops.nn import *  # noqa: F401,F403  (dense, activations, dropout, softmax xent)
from faltung.ops.conv import conv, conv_backward, depthwise_conv, depthwise_conv_backward, separable_conv  # noqa: F401
