"""fit / evaluate / predict / train_on_batch refuse bad arguments with Keras's wording
(measured with Keras 3.15 on the torch backend) instead of IndexError, ZeroDivisionError or
a silent wrong answer (issue 15)."""
import numpy as np
import pytest

import faltung
from faltung import layers

X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
Y = np.arange(8) % 4


def _model():
    model = faltung.Sequential([layers.Input((3,)), layers.Dense(4, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _fit(**kw):
    return _model().fit(kw.pop("x", X), kw.pop("y", Y), verbose=0, **kw)


@pytest.mark.parametrize("call", [
    lambda m: m.fit(X[:0], Y[:0], verbose=0),
    lambda m: m.evaluate(X[:0], Y[:0], verbose=0),
    lambda m: m.predict(X[:0], verbose=0),
    lambda m: m.train_on_batch(X[:0], Y[:0]),
], ids=["fit", "evaluate", "predict", "train_on_batch"])
def test_empty_data(call):
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        call(_model())


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", True])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_batch_size_must_be_a_positive_integer(method, bad):
    m = _model()
    call = {"fit": lambda: m.fit(X, Y, batch_size=bad, verbose=0),
            "evaluate": lambda: m.evaluate(X, Y, batch_size=bad, verbose=0),
            "predict": lambda: m.predict(X, batch_size=bad, verbose=0)}[method]
    with pytest.raises(ValueError, match=f"batch_size should be a positive integer value, but got batch_size={bad!r}"):
        call()


def test_numpy_integer_counts_are_accepted():
    hist = _fit(batch_size=np.int64(3), epochs=np.int32(2))
    assert len(hist.history["loss"]) == 2


def test_epochs_must_be_non_negative():
    with pytest.raises(ValueError, match="epochs should be a non-negative integer value, but got epochs=-1"):
        _fit(epochs=-1)
    assert _fit(epochs=0).history == {}  # as Keras: zero epochs train nothing


@pytest.mark.parametrize("kw", ["steps_per_epoch", "validation_steps", "validation_freq"])
def test_steps_must_be_positive(kw):
    with pytest.raises(ValueError, match=f"{kw} should be a positive integer value, but got {kw}=0"):
        _fit(**{kw: 0})


def test_evaluate_and_predict_steps_must_be_positive():
    m = _model()
    with pytest.raises(ValueError, match="steps should be a positive integer value, but got steps=0"):
        m.evaluate(X, Y, steps=0, verbose=0)
    with pytest.raises(ValueError, match="steps should be a positive integer value, but got steps=-1"):
        m.predict(X, steps=-1, verbose=0)


@pytest.mark.parametrize("label", [4, -1])
def test_sparse_labels_out_of_range(label):
    with pytest.raises(ValueError, match=str(label)):
        _fit(y=np.full(8, label))


@pytest.mark.parametrize("label", [2 ** 32 + 1, -(2 ** 31) - 1])
def test_labels_not_representable_as_int32(label):
    # 2**32 + 1 used to wrap around to class 1 and train
    for call in (lambda m: m.fit(X, np.full(8, label, np.int64), verbose=0),
                 lambda m: m.train_on_batch(X, np.full(8, label, np.int64))):
        with pytest.raises(ValueError, match=f"label value of {label} .*outside the range of int32"):
            call(_model())


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5])
def test_validation_split_outside_0_1(split):
    with pytest.raises(ValueError, match=r"`validation_split` must be in \[0, 1\)"):
        _fit(validation_split=split)


def test_sample_weight_of_the_wrong_length():
    with pytest.raises(ValueError, match="'sample_weight' sizes: 5"):
        _fit(sample_weight=np.ones(5))


@pytest.mark.parametrize("cw", [{0: 1.0, 7: 2.0}, {-1: 1.0}, {"a": 1.0}, [1.0, 2.0]])
def test_class_weight_keys_must_be_classes(cw):
    with pytest.raises(ValueError, match="Expected `class_weight` to be a dict with keys from 0 to one "
                                         "less than the number of classes"):
        _fit(class_weight=cw)


def test_valid_class_weight_trains():
    assert np.isfinite(_fit(class_weight={0: 1.0, 3: 2.0}).history["loss"]).all()


def test_sparse_loss_refuses_labels_beyond_int32():
    from faltung.ops.nn import softmax_cross_entropy_with_grad
    logits = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"label value of 4294967297, which is outside the valid range of \[0, 4\)"):
        softmax_cross_entropy_with_grad(logits, np.array([0, 2 ** 32 + 1], np.int64), sparse=True)
