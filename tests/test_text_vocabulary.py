"""faltung.utils.text: CharVocabulary (strings <-> CTC label arrays), edit distance, CER."""
import functools

import numpy as np
import pytest

from faltung.utils.text import CharVocabulary, character_error_rate, edit_distance


def test_encode_pads_with_blank_and_returns_lengths():
    vocab = CharVocabulary("abc")
    labels, lengths = vocab.encode(["ab", "cab", ""])
    np.testing.assert_array_equal(labels, [[1, 2, 0], [3, 1, 2], [0, 0, 0]])
    np.testing.assert_array_equal(lengths, [2, 3, 0])
    assert labels.dtype == np.int32 and lengths.dtype == np.int32
    assert vocab.num_classes == 4


def test_encode_max_length_pads_further():
    labels, _ = CharVocabulary("xy").encode(["yx"], max_length=4)
    np.testing.assert_array_equal(labels, [[2, 1, 0, 0]])


def test_decode_skips_padding_and_blank():
    vocab = CharVocabulary("abc")
    decoded = np.array([[1, 0, 2, -1, -1], [3, 3, -1, -1, -1], [-1, -1, -1, -1, -1]])
    assert vocab.decode(decoded) == ["ab", "cc", ""]
    assert vocab.decode(decoded[0]) == "ab"
    top_paths = np.stack([decoded, decoded[::-1]])        # (top_paths, batch, time)
    assert vocab.decode(top_paths) == [["ab", "cc", ""], ["", "cc", "ab"]]


def test_encode_decode_round_trip_on_random_strings():
    rng = np.random.default_rng(0)
    alphabet = "0123456789abcXYZ"
    vocab = CharVocabulary(alphabet)
    texts = ["".join(rng.choice(list(alphabet), size=rng.integers(0, 9))) for _ in range(50)]
    labels, lengths = vocab.encode(texts)
    assert vocab.decode(labels) == texts
    np.testing.assert_array_equal(lengths, [len(t) for t in texts])
    np.testing.assert_array_equal((labels != 0).sum(axis=1), lengths)   # what losses.CTC counts


def test_config_round_trip():
    vocab = CharVocabulary("q7")
    assert CharVocabulary.from_config(vocab.get_config()).characters == "q7"


@pytest.mark.parametrize("characters, match", [
    ("", "must not be empty"),
    ("abca", "must not repeat a character. Received repeats of 'a'"),
    (["a", "bc"], "single character. Received 'bc'"),
])
def test_bad_vocabulary(characters, match):
    with pytest.raises(ValueError, match=match):
        CharVocabulary(characters)


def test_bad_encode_input():
    vocab = CharVocabulary("ab")
    with pytest.raises(ValueError, match=r"character 'z' of texts\[1\]='az' is not in the vocabulary"):
        vocab.encode(["ab", "az"])
    with pytest.raises(ValueError, match="`max_length`=1 is shorter than the longest text"):
        vocab.encode(["ab"], max_length=1)
    with pytest.raises(TypeError, match="list of strings, not one string"):
        vocab.encode("ab")


def test_bad_decode_input():
    vocab = CharVocabulary("ab")
    with pytest.raises(ValueError, match=r"labels must lie in \[-1, 2\]. Received min=0, max=3"):
        vocab.decode(np.array([[0, 3]]))
    with pytest.raises(ValueError, match="min=-2"):
        vocab.decode(np.array([-2, 1]))
    with pytest.raises(TypeError, match="integer array. Received dtype=float32"):
        vocab.decode(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="at least one axis"):
        vocab.decode(np.int32(1))


def reference_edit_distance(a, b):
    @functools.lru_cache(maxsize=None)
    def d(i, j):          # distance between a[:i] and b[:j]
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


def test_edit_distance_against_recursive_reference():
    assert edit_distance("kitten", "sitting") == 3
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = "".join(rng.choice(list("abc"), size=rng.integers(0, 7)))
        b = "".join(rng.choice(list("abc"), size=rng.integers(0, 7)))
        assert edit_distance(a, b) == reference_edit_distance(a, b), (a, b)


def test_character_error_rate():
    # one substitution in "abcd", one deletion in "xy", nothing wrong in "z": 2 errors / 7 chars
    assert character_error_rate(["abcd", "xy", "z"], ["abed", "x", "z"]) == pytest.approx(2 / 7)
    with pytest.raises(ValueError, match="same length. Received 2 and 1"):
        character_error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="hold no characters"):
        character_error_rate([""], ["a"])
