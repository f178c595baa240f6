"""Strings <-> integer label arrays for CTC models, and the character error rate.

Keras does this with `layers.StringLookup` on string tensors; faltung has no string
tensors, so the same job is a small class on plain Python strings (faltung's own API):

    vocab = CharVocabulary("abc")              # a -> 1, b -> 2, c -> 3; 0 is the CTC blank
    labels, lengths = vocab.encode(["ab", "cab"])
    # labels [[1, 2, 0], [3, 1, 2]] (int32, padded with 0), lengths [2, 3]
    decoded, _ = faltung.ops.ctc_decode(logits, seq_lengths)   # (top_paths, batch, time)
    vocab.decode(decoded[0])                   # -> list of str; -1 and 0 are skipped

Index 0 is the blank, as `faltung.losses.CTC` and `ops.ctc_decode(mask_index=0)` expect, so
a model's last Dense layer needs `vocab.num_classes` = len(characters) + 1 units.
"""
import numpy as np


class CharVocabulary:
    """A character vocabulary: character i of `characters` has label i + 1; 0 is the blank.

    Args:
        characters: a string (or iterable of one-character strings) without repeats.
    """

    def __init__(self, characters):
        chars = list(characters)
        if not chars:
            raise ValueError("CharVocabulary: `characters` must not be empty. Received ''")
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError("CharVocabulary: every entry of `characters` must be a single "
                             f"character. Received {bad[0]!r}")
        repeated = sorted({c for c in chars if chars.count(c) > 1})
        if repeated:
            raise ValueError("CharVocabulary: `characters` must not repeat a character. "
                             f"Received repeats of {''.join(repeated)!r}")
        self.characters = "".join(chars)
        self._index = {c: i + 1 for i, c in enumerate(chars)}

    @property
    def num_classes(self):
        """Units of the model's logit layer: one per character plus the blank (label 0)."""
        return len(self.characters) + 1

    def encode(self, texts, max_length=None):
        """Label arrays for a list of strings.

        Returns (labels, lengths): labels int32 (len(texts), max_length) padded with 0, where
        max_length defaults to the longest text; lengths int32 (len(texts),).
        """
        if isinstance(texts, str):
            raise TypeError("CharVocabulary.encode: `texts` must be a list of strings, "
                            f"not one string. Received {texts!r}")
        texts = list(texts)
        lengths = np.array([len(t) for t in texts], dtype=np.int32)
        longest = int(lengths.max()) if texts else 0
        if max_length is None:
            max_length = longest
        elif max_length < longest:
            raise ValueError(f"CharVocabulary.encode: `max_length`={max_length} is shorter than "
                             f"the longest text ({longest} characters)")
        labels = np.zeros((len(texts), max_length), dtype=np.int32)
        for row, text in enumerate(texts):
            for col, char in enumerate(text):
                label = self._index.get(char)
                if label is None:
                    raise ValueError(f"CharVocabulary.encode: character {char!r} of texts[{row}]"
                                     f"={text!r} is not in the vocabulary {self.characters!r}")
                labels[row, col] = label
        return labels, lengths

    def decode(self, labels):
        """Strings from label arrays (..., time), e.g. `ctc_decode`'s decoded[0] (batch, time).

        Labels -1 (ctc_decode's padding) and 0 (the blank) are skipped. A 1-D array gives one
        string; each leading axis gives one level of nested lists.
        """
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError("CharVocabulary.decode: `labels` must be an integer array. "
                            f"Received dtype={labels.dtype}")
        if labels.ndim == 0:
            raise ValueError("CharVocabulary.decode: `labels` must have at least one axis "
                             "(time). Received a scalar")
        if labels.size and (labels.min() < -1 or labels.max() > len(self.characters)):
            raise ValueError(f"CharVocabulary.decode: labels must lie in [-1, "
                             f"{len(self.characters)}]. Received min={labels.min()}, "
                             f"max={labels.max()}")
        return self._decode(labels)

    def _decode(self, labels):
        if labels.ndim == 1:
            return "".join(self.characters[i - 1] for i in labels.tolist() if i > 0)
        return [self._decode(row) for row in labels]

    def get_config(self):
        return {"characters": self.characters}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def edit_distance(a, b):
    """Levenshtein distance between two sequences (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def character_error_rate(truths, predictions):
    """Sum of edit distances over the total number of characters in `truths`."""
    truths, predictions = list(truths), list(predictions)
    if len(truths) != len(predictions):
        raise ValueError("character_error_rate: `truths` and `predictions` must have the same "
                         f"length. Received {len(truths)} and {len(predictions)}")
    total = sum(len(t) for t in truths)
    if total == 0:
        raise ValueError("character_error_rate: `truths` hold no characters")
    return sum(edit_distance(t, p) for t, p in zip(truths, predictions)) / total
