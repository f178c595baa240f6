import numpy as np
import pytest

from faltung.utils import classification_report, confusion_matrix, to_categorical


def test_confusion_matrix_counts():
    cm = confusion_matrix([0, 1, 2, 2, 1], [0, 2, 2, 2, 1], num_classes=3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]


def test_classification_report_values():
    text = classification_report([0, 1, 2, 2, 1], [0, 2, 2, 2, 1], target_names=["a", "b", "c"],
                                 digits=3)
    row_c = next(line for line in text.splitlines() if line.strip().startswith("c "))
    # class c: precision 2/3, recall 1, f1 0.8, support 2
    assert row_c.split()[1:] == ["0.667", "1.000", "0.800", "2"]
    assert "0.800" in next(line for line in text.splitlines() if "accuracy" in line)


def test_confusion_matrix_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0])


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        to_categorical([3], 3)

