"""ImageDataGenerator.flow_from_dataframe / DataFrameIterator: file names and labels from a
pandas DataFrame, every class_mode, weights, classes filtering, subsets, invalid files; and
the same batches as Keras (same seed) when Keras is installed."""
import os

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
Image = pytest.importorskip("PIL.Image")

from faltung.preprocessing.image import DataFrameIterator, ImageDataGenerator  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture
def files(tmp_path):
    """Eight 6x5 RGB images whose pixels all equal 10 * (index + 1), and a text file."""
    for i in range(8):
        Image.fromarray(np.full((6, 5, 3), 10 * (i + 1), np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def frame():
    return pd.DataFrame({
        "filename": [f"im{i}.png" for i in range(8)],
        "class": ["cat", "dog", "cat", "bird", "dog", "cat", "bird", "dog"],
        "tags": [["a"], ["a", "b"], ["b"], [], ["c"], ["a", "c"], ["b"], ["a", "b", "c"]],
        "w": np.arange(8, dtype=np.float64) / 10,
        "size": np.arange(8, dtype=np.float32) * 2,
        "age": np.arange(8) + 100,
    })


def first_batch(it):
    return it[0]


def test_categorical_classes_sorted_with_weights(files):
    gen = ImageDataGenerator()
    it = gen.flow_from_dataframe(frame(), str(files), weight_col="w", target_size=(6, 5),
                                 batch_size=8, shuffle=False)
    assert it.class_indices == {"bird": 0, "cat": 1, "dog": 2}
    x, y, w = first_batch(it)
    assert x.shape == (8, 6, 5, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0, 0, 0], 10 * np.arange(1, 9))
    np.testing.assert_array_equal(y.argmax(1), [1, 2, 1, 0, 2, 1, 0, 2])
    np.testing.assert_allclose(w, np.arange(8) / 10)


def test_multi_label_categorical_is_multi_hot_and_classes_filter_rows(files):
    it = ImageDataGenerator().flow_from_dataframe(frame(), str(files), y_col="tags", classes=["c", "a"],
                                                  target_size=(6, 5), batch_size=8, shuffle=False)
    # rows without "a" or "c" (im2, im3, im6) are dropped; "b" is removed from the lists
    assert it.class_indices == {"c": 0, "a": 1} and it.filenames == ["im0.png", "im1.png", "im4.png",
                                                                      "im5.png", "im7.png"]
    _, y = first_batch(it)
    np.testing.assert_array_equal(y, [[0, 1], [0, 1], [1, 0], [1, 1], [1, 1]])


def test_binary_sparse_raw_multi_output_input_and_none(files):
    df = frame()
    gen = ImageDataGenerator()
    kw = dict(directory=str(files), target_size=(6, 5), batch_size=4, shuffle=False)
    two = df[df["class"] != "bird"]
    _, y = first_batch(gen.flow_from_dataframe(two, class_mode="binary", **kw))
    np.testing.assert_array_equal(y, [0, 1, 0, 1])
    _, y = first_batch(gen.flow_from_dataframe(df, class_mode="sparse", **kw))
    np.testing.assert_array_equal(y, [1, 2, 1, 0])
    _, y = first_batch(gen.flow_from_dataframe(df, y_col=["size", "age"], class_mode="raw", **kw))
    np.testing.assert_array_equal(y, [[0, 100], [2, 101], [4, 102], [6, 103]])
    _, ys = first_batch(gen.flow_from_dataframe(df, y_col=["size", "age"], class_mode="multi_output", **kw))
    np.testing.assert_array_equal(ys[0], [0, 2, 4, 6])
    np.testing.assert_array_equal(ys[1], [100, 101, 102, 103])
    x, y = first_batch(gen.flow_from_dataframe(df, class_mode="input", **kw))
    np.testing.assert_array_equal(x, y)
    x = first_batch(gen.flow_from_dataframe(df, class_mode=None, **kw))
    assert isinstance(x, np.ndarray) and x.shape == (4, 6, 5, 3)
    with pytest.warns(DeprecationWarning, match="class_mode=\"raw\""):
        _, y = first_batch(gen.flow_from_dataframe(df, y_col="size", class_mode="other", **kw))
    np.testing.assert_array_equal(y, [0, 2, 4, 6])


def test_subsets_invalid_files_and_errors(files):
    df = pd.concat([frame(), pd.DataFrame({"filename": ["notes.txt", "missing.png"],
                                           "class": ["cat", "cat"]})], ignore_index=True)
    gen = ImageDataGenerator(validation_split=0.25)
    with pytest.warns(UserWarning, match="Found 2 invalid image filename"):
        val = gen.flow_from_dataframe(df, str(files), subset="validation", target_size=(6, 5))
    assert val.filenames == ["im0.png", "im1.png"]
    train = gen.flow_from_dataframe(frame(), str(files), subset="training", target_size=(6, 5))
    assert len(train.filenames) == 6
    assert gen.flow_from_dataframe(df, str(files), validate_filenames=False).samples == 10
    with pytest.raises(ValueError, match="there must be 2 classes. Found 3"):
        gen.flow_from_dataframe(frame(), str(files), class_mode="binary")
    with pytest.raises(TypeError, match="y_col must be a list"):
        gen.flow_from_dataframe(frame(), str(files), class_mode="multi_output")
    with pytest.raises(TypeError, match="must be numeric"):
        gen.flow_from_dataframe(frame(), str(files), weight_col="class")
    with pytest.raises(ValueError, match="Invalid class_mode"):
        DataFrameIterator(frame(), str(files), gen, class_mode="bogus")
    with pytest.raises(TypeError, match="All values in column x_col=filename must be strings"):
        gen.flow_from_dataframe(frame().assign(filename=range(8)), str(files))
    with pytest.raises(TypeError, match='class_mode="sparse", y_col="age" column values must be strings'):
        gen.flow_from_dataframe(frame(), str(files), y_col="age", class_mode="sparse")
    with pytest.raises(TypeError, match="must be type string, list or tuple"):
        gen.flow_from_dataframe(frame(), str(files), y_col="age")
    with pytest.raises(ValueError, match="Invalid color mode"):
        gen.flow_from_dataframe(frame(), str(files), color_mode="cmyk")


def test_absolute_paths_without_directory_and_fit(files):
    df = frame().assign(filename=[str(files / f"im{i}.png") for i in range(8)])
    it = ImageDataGenerator(rescale=1 / 255).flow_from_dataframe(df, target_size=(6, 5), batch_size=8,
                                                                 shuffle=False)
    x, _ = first_batch(it)
    np.testing.assert_allclose(x[:, 0, 0, 0], np.arange(1, 9) * 10 / 255, rtol=1e-6)


def test_same_batches_as_keras(files):
    pytest.importorskip("keras")
    from keras.src.legacy.preprocessing import image as kimage
    kw = dict(rotation_range=30, horizontal_flip=True, brightness_range=(0.5, 1.5), validation_split=0.25)
    args = dict(directory=str(files), weight_col="w", target_size=(6, 5), batch_size=3, seed=4,
                subset="training")
    ours = ImageDataGenerator(**kw).flow_from_dataframe(frame(), **args)
    theirs = kimage.ImageDataGenerator(**kw).flow_from_dataframe(frame(), **args)
    assert ours.filenames == theirs.filenames and ours.class_indices == theirs.class_indices
    for i in range(len(ours)):
        for a, b in zip(ours[i], theirs[i]):
            np.testing.assert_allclose(a, b, atol=1e-4)
