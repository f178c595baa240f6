from faltung.ops.conv_transpose import conv_transpose, conv_transpose_backward  # noqa: F401
