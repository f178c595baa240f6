"""Embedding: integer indices -> rows of a trainable table, computed by the C++ core."""
import warnings

import numpy as np

from faltung import constraints, initializers, regularizers
from faltung.layers.layer import Layer
from faltung.ops.embedding import as_indices, embedding, embedding_backward


def _positive_int(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a strictly positive "
                         f"integer. Received {name}={value!r}")
    return int(value)


class Embedding(Layer):
    """Turns non-negative integers (indexes) into dense vectors of fixed size (Keras's
    `Embedding`): `[[4], [20]] -> [[0.25, 0.1], [0.6, -0.2]]`.

    Args:
        input_dim: size of the vocabulary, i.e. maximum integer index + 1.
        output_dim: dimension of the dense embedding.
        embeddings_initializer: initializer of the `embeddings` table ("uniform":
            uniform in [-0.05, 0.05]).
        embeddings_regularizer: stored as the `Variable.regularizer` of the table (applied
            by the training loop).
        embeddings_constraint: stored as the `Variable.constraint` of the table.
        mask_zero: whether index 0 is padding: the layer then outputs the mask
            `inputs != 0` for the layers after it (and index 0 cannot be used in the
            vocabulary, so input_dim = vocabulary size + 1).
        weights: optional initial table of shape (input_dim, output_dim) (or a list of it).
        lora_rank, lora_alpha, quantization_config: Keras's LoRA and quantization; faltung
            has neither and accepts only None.

    Inputs are integers (int32 as they are, other integer types cast); floats are truncated
    toward zero, as Keras casts them to int32. Indices outside [0, input_dim) raise
    ValueError naming the index (Keras documents non-negative indices below input_dim only;
    its backends differ on the others). Integer inputs get no gradient (`backward` returns
    None).

    Input shape:
        N-D tensor of shape `(batch_size, ...)`, usually `(batch_size, input_length)`.
    Output shape:
        `(batch_size, ..., output_dim)`.

    Example:
        >>> model = Sequential([Input((10,), dtype="int32"), Embedding(1000, 64)])
        >>> model.output_shape
        (None, 10, 64)
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, lora_alpha=None, quantization_config=None,
                 **kwargs):
        if kwargs.pop("input_length", None) is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.")
        if kwargs.pop("activity_regularizer", None) is not None:
            raise ValueError("Embedding: faltung does not support `activity_regularizer`.")
        super().__init__(**kwargs)
        for arg, value in (("lora_rank", lora_rank), ("lora_alpha", lora_alpha),
                           ("quantization_config", quantization_config)):
            if value is not None:
                raise ValueError(f"Layer {self.name}: faltung has no LoRA or quantization; "
                                 f"expected {arg}=None, received {arg}={value!r}")
        self.input_dim = _positive_int(input_dim, "input_dim")
        self.output_dim = _positive_int(output_dim, "output_dim")
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero  # as Keras: the mask passes only when made here
        self.embeddings = None
        if weights is not None:
            self.build()
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.set_weights(weights)

    def build(self, input_shape=None):
        """Creates the (input_dim, output_dim) table; any input shape will do."""
        if self.embeddings is None:
            self.embeddings = self.add_weight(
                (self.input_dim, self.output_dim), self.embeddings_initializer, "embeddings",
                regularizer=self.embeddings_regularizer, constraint=self.embeddings_constraint)
        if input_shape is None:  # Keras's build() without a shape (`weights=` at init)
            self.built = True
        else:
            super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def check_input_shape(self, shapes):
        pass  # Keras's Embedding has no input_spec: indices of any shape

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def _indices(self, x):
        try:
            return as_indices(x, self.input_dim)
        except (TypeError, ValueError) as e:
            raise type(e)(f'Layer "{self.name}": {e}') from None

    def convert_input(self, x):
        return self._indices(x)

    def forward(self, inputs, training=False):
        idx = self._indices(inputs)
        try:
            y = embedding(idx, self.embeddings.value)
        except ValueError as e:  # an index out of range: name the layer
            raise ValueError(f'Layer "{self.name}": {e}') from None
        if training:
            self.save_for_backward(idx)
        return y

    def backward(self, dy, need_dx=True):
        (idx,) = self.saved_for_backward()
        if self.trainable:
            self.embeddings.grad = embedding_backward(dy, idx, self.input_dim)
        return None  # indices are integers: no gradient flows to them

    def get_config(self):
        cfg = super().get_config()
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim,
                   embeddings_initializer=initializers.serialize(self.embeddings_initializer),
                   embeddings_regularizer=regularizers.serialize(self.embeddings_regularizer),
                   activity_regularizer=None,
                   embeddings_constraint=constraints.serialize(self.embeddings_constraint),
                   mask_zero=self.mask_zero)
        return cfg
