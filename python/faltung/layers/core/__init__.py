from faltung.layers.core.dense import Dense
from faltung.layers.core.activation import Activation, Identity
from faltung.layers.core.highway import Highway
from faltung.layers.core.embedding import Embedding
from faltung.layers.core.masking import Masking
