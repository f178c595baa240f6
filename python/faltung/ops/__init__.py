from faltung.ops.pooling import (average_pool, average_pool_backward, max_pool, max_pool_backward,  # noqa: F401
                                 max_unpool, max_unpool_backward, average_unpool, average_unpool_backward)
from faltung.ops.normalization import batch_normalization  # noqa: F401
