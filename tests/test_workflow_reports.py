"""faltung.utils.classification_report / confusion_matrix against scikit-learn's own
output (text, dict and matrices), plus a hand-checked case."""
import numpy as np
import pytest

from faltung.utils import classification_report, confusion_matrix

sklearn_metrics = pytest.importorskip("sklearn.metrics")

rng = np.random.default_rng(3)
Y_TRUE = rng.integers(0, 4, 57)
Y_PRED = np.where(rng.uniform(size=57) < 0.6, Y_TRUE, rng.integers(0, 4, 57))
Y_PRED[Y_PRED == 3] = 2  # class 3 never predicted: precision 0 by zero_division


@pytest.mark.parametrize("kwargs", [{}, {"digits": 4}, {"target_names": ["T-shirt", "Trouser", "Pullover", "Dress"]},
                                    {"labels": [0, 2]}, {"sample_weight": rng.uniform(0.5, 2, 57).round(2)}],
                         ids=["default", "digits4", "names", "labels-subset", "weighted"])
def test_report_text_matches_sklearn(kwargs):
    expected = sklearn_metrics.classification_report(Y_TRUE, Y_PRED, zero_division=0, **kwargs)
    assert classification_report(Y_TRUE, Y_PRED, **kwargs) == expected


def test_report_dict_matches_sklearn():
    expected = sklearn_metrics.classification_report(Y_TRUE, Y_PRED, zero_division=0, output_dict=True)
    got = classification_report(Y_TRUE, Y_PRED, output_dict=True)
    assert list(got) == list(expected)
    for key, value in expected.items():
        if isinstance(value, dict):
            assert got[key] == pytest.approx(value)
        else:
            assert got[key] == pytest.approx(value)


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_matches_sklearn(normalize):
    np.testing.assert_allclose(confusion_matrix(Y_TRUE, Y_PRED, normalize=normalize),
                               sklearn_metrics.confusion_matrix(Y_TRUE, Y_PRED, normalize=normalize))


def test_confusion_matrix_labels_and_probabilities():
    # labels reorder and drop classes; score rows (as predict returns them) become argmax
    scores = np.eye(4)[Y_PRED] * 0.7 + 0.05
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, scores, labels=[2, 0]),
                                  sklearn_metrics.confusion_matrix(Y_TRUE, Y_PRED, labels=[2, 0]))


def test_report_by_hand():
    text = classification_report([0, 1, 1, 1], [0, 1, 0, 1], target_names=["cat", "dog"])
    # cat: p 1/2, r 1, f1 2/3, support 1; dog: p 1, r 2/3, f1 0.8; accuracy 3/4
    assert text.splitlines()[2].split() == ["cat", "0.50", "1.00", "0.67", "1"]
    assert text.splitlines()[3].split() == ["dog", "1.00", "0.67", "0.80", "3"]
    assert text.splitlines()[5].split() == ["accuracy", "0.75", "4"]


def test_report_errors():
    with pytest.raises(ValueError, match="does not match size of target_names"):
        classification_report([0, 1, 2], [0, 1, 1], target_names=["a", "b"])
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="normalize"):
        confusion_matrix([0, 1], [0, 1], normalize="rows")
