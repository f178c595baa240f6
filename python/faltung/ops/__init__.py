from faltung.ops.conv import conv, conv_backward, depthwise_conv, depthwise_conv_backward, separable_conv  # noqa: F401
