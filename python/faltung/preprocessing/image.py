"""Keras's legacy image augmentation: `ImageDataGenerator` and the iterators its `flow` and
`flow_from_directory` return (keras.preprocessing.image / keras.src.legacy.preprocessing.image).

Semantics are Keras's, line for line where it matters: the same random draws from NumPy's
global generator in the same order (so a `seed` gives the same augmented batches as Keras),
the same affine matrix per image (rotation, shift, shear, zoom about the image centre), the
same sampling (scipy.ndimage.affine_transform with `interpolation_order` 0 or 1 and scipy's
fill modes), flips after the transform, then `standardize`. What differs is where the work
runs: the matrices of a whole batch go to one C++ call (`faltung.ops.image.affine_transform`,
OpenMP over the batch) instead of one scipy call per image and channel.

Keras's quirk kept: the matrix is centred at (h/2 - 0.5, w/2 - 0.5) *before* its rows and
columns are swapped, so on non-square images the rotation centre is off by (w-h)/2; square
images (the usual case) are unaffected.

`brightness_range` follows Keras's round trip through PIL (ImageEnhance.Brightness on the
image cast to uint8, min-max scaled to [0, 255] first when it lies outside) in numpy, byte for
byte, without needing Pillow.

`flow_from_dataframe` reads the files a pandas DataFrame lists (pandas is the caller's; faltung
only reads the frame).

Not implemented (ValueError when asked for): `data_format="channels_first"`,
`interpolation_order` above 1, and the `save_to_dir` debugging path.
"""
import os
import threading
import warnings

import numpy as np

from faltung.ops.image import SCIPY_FILL_MODES, affine_transform
from faltung.utils.py_dataset import PyDataset

WHITE_LIST_FORMATS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")


class Iterator(PyDataset):
    """Base class of the image iterators: `it[i]` is batch i of the current epoch (what
    `fit` reads), `next(it)` walks the batches endlessly (Keras's generator protocol).

    Args:
        n: number of samples; batch_size; shuffle: reshuffle the order every epoch;
        seed: seeds NumPy's global generator with `seed + batches_seen` before every batch,
            as Keras does, so shuffling and augmentation repeat exactly.
    """

    white_list_formats = WHITE_LIST_FORMATS

    def __init__(self, n, batch_size, shuffle, seed, **kwargs):
        super().__init__(**kwargs)
        if int(batch_size) < 1:
            raise ValueError(f"Invalid value for argument `batch_size`. Expected a positive integer. "
                             f"Received: batch_size={batch_size}")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.seed = seed
        self.shuffle = shuffle
        self.batch_index = 0
        self.total_batches_seen = 0
        self.lock = threading.Lock()
        self.index_array = None
        self.index_generator = self._flow_index()

    def _set_index_array(self):
        self.index_array = np.arange(self.n)
        if self.shuffle:
            self.index_array = np.random.permutation(self.n)

    def __getitem__(self, idx):
        if idx >= len(self):
            raise ValueError(f"Asked to retrieve element {idx}, but the Sequence has length {len(self)}")
        if self.seed is not None:
            np.random.seed(self.seed + self.total_batches_seen)
        self.total_batches_seen += 1
        if self.index_array is None:
            self._set_index_array()
        index_array = self.index_array[self.batch_size * idx:self.batch_size * (idx + 1)]
        return self._get_batches_of_transformed_samples(index_array)

    def __len__(self):
        return (self.n + self.batch_size - 1) // self.batch_size

    def on_epoch_end(self):
        self._set_index_array()

    def reset(self):
        self.batch_index = 0

    def _flow_index(self):
        self.reset()
        while True:
            if self.seed is not None:
                np.random.seed(self.seed + self.total_batches_seen)
            if self.batch_index == 0:
                self._set_index_array()
            current = 0 if self.n == 0 else (self.batch_index * self.batch_size) % self.n
            if self.n > current + self.batch_size:
                self.batch_index += 1
            else:
                self.batch_index = 0
            self.total_batches_seen += 1
            yield self.index_array[current:current + self.batch_size]

    def __iter__(self):
        return self

    def __next__(self):
        with self.lock:
            index_array = next(self.index_generator)
        return self._get_batches_of_transformed_samples(index_array)

    def _get_batches_of_transformed_samples(self, index_array):
        raise NotImplementedError(f"{type(self).__name__}._get_batches_of_transformed_samples")


class NumpyArrayIterator(Iterator):
    """Batches `(augmented x, y[, sample_weight])` from arrays (what `ImageDataGenerator.flow`
    returns). `x` (N, H, W, C), or a tuple `(x, extra)` / `(x, [extras])` whose extra arrays
    ride along unaugmented (the batch's x is then `[x, *extras]`)."""

    def __init__(self, x, y, image_data_generator, batch_size=32, shuffle=False, sample_weight=None,
                 seed=None, data_format=None, save_to_dir=None, save_prefix="", save_format="png",
                 subset=None, ignore_class_split=False, dtype=None):
        _check_unsupported(data_format, save_to_dir)
        self.dtype = np.dtype(dtype or "float32")
        if isinstance(x, (tuple, list)):
            extras = x[1] if isinstance(x[1], list) else [x[1]]
            x_misc = [np.asarray(e) for e in extras]
            x = x[0]
            for e in x_misc:
                if len(x) != len(e):
                    raise ValueError("All of the arrays in `x` should have the same length. Found a "
                                     f"pair with: len(x[0]) = {len(x)}, len(x[?]) = {len(e)}")
        else:
            x_misc = []
        if y is not None and len(x) != len(y):
            raise ValueError("`x` (images tensor) and `y` (labels) should have the same length. "
                             f"Found: x.shape = {np.asarray(x).shape}, y.shape = {np.asarray(y).shape}")
        if sample_weight is not None and len(x) != len(sample_weight):
            raise ValueError("`x` (images tensor) and `sample_weight` should have the same length. "
                             f"Found: x.shape = {np.asarray(x).shape}, "
                             f"sample_weight.shape = {np.asarray(sample_weight).shape}")
        if subset is not None:
            if subset not in ("training", "validation"):
                raise ValueError(f'Invalid subset name: {subset}; expected "training" or "validation".')
            split = int(len(x) * image_data_generator._validation_split)
            if (y is not None and not ignore_class_split
                    and not np.array_equal(np.unique(y[:split]), np.unique(y[split:]))):
                raise ValueError("Training and validation subsets have different number of classes "
                                 "after the split. If your numpy arrays are sorted by the label, you "
                                 "might want to shuffle them.")
            part = slice(None, split) if subset == "validation" else slice(split, None)
            x, x_misc = x[part], [e[part] for e in x_misc]
            y = None if y is None else y[part]
            sample_weight = None if sample_weight is None else sample_weight[part]
        self.x = np.asarray(x, dtype=self.dtype)
        if self.x.ndim != 4:
            raise ValueError("Input data in `NumpyArrayIterator` should have rank 4. You passed an "
                             f"array with shape {self.x.shape}")
        if self.x.shape[3] not in (1, 3, 4):
            warnings.warn('NumpyArrayIterator is set to use the data format convention "channels_last" '
                          "(channels on axis 3), i.e. expected either 1, 3, or 4 channels on axis 3. "
                          f"However, it was passed an array with shape {self.x.shape} "
                          f"({self.x.shape[3]} channels).")
        self.x_misc = x_misc
        self.y = None if y is None else np.asarray(y)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        self.image_data_generator = image_data_generator
        self.data_format = "channels_last"
        super().__init__(self.x.shape[0], batch_size, shuffle, seed)

    def _get_batches_of_transformed_samples(self, index_array):
        batch_x = self.image_data_generator._augment_batch(self.x[index_array], self.dtype)
        miscs = [e[index_array] for e in self.x_misc]
        out_x = [batch_x] + miscs if miscs else batch_x
        if self.y is None:
            return out_x
        if self.sample_weight is None:
            return out_x, self.y[index_array]
        return out_x, self.y[index_array], self.sample_weight[index_array]


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Loading images from files (`flow_from_directory`, `load_img`) requires "
                          "Pillow, faltung's optional image extra: `pip install faltung[image]` (or "
                          "`pip install Pillow`).") from None
    return Image


_PIL_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """A PIL image from a file, converted to `color_mode` ("grayscale", "rgb", "rgba") and
    resized to `target_size` (height, width) with PIL's `interpolation` (keras.utils.load_img)."""
    Image = _pil()
    if color_mode not in ("grayscale", "rgb", "rgba"):
        raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')
    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
    img = img.convert({"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}[color_mode]) \
        if img.mode != {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}[color_mode] else img
    if target_size is not None:
        width_height = (target_size[1], target_size[0])
        if img.size != width_height:
            if interpolation not in _PIL_INTERPOLATIONS:
                raise ValueError(f"Invalid interpolation method {interpolation} specified. Supported "
                                 f"methods are {', '.join(_PIL_INTERPOLATIONS)}")
            resample = getattr(Image, interpolation.upper())
            if keep_aspect_ratio:
                width, height = img.size
                target_width, target_height = width_height
                crop_height = (width * target_height) // target_width
                crop_width = (height * target_width) // target_height
                crop_height, crop_width = min(height, crop_height), min(width, crop_width)
                top, left = (height - crop_height) // 2, (width - crop_width) // 2
                img = img.crop((left, top, left + crop_width, top + crop_height))
            img = img.resize(width_height, resample)
    return img


def img_to_array(img, dtype="float32"):
    """A PIL image as an (H, W, C) array (keras.utils.img_to_array, channels last)."""
    x = np.asarray(img, dtype=dtype)
    if x.ndim == 2:
        x = x[:, :, None]
    elif x.ndim != 3:
        raise ValueError(f"Unsupported image shape: {x.shape}")
    return x


def _list_files(directory, follow_links):
    """Files with an image extension under `directory`, walked in Keras's sorted order."""
    for root, _, files in sorted(os.walk(directory, followlinks=follow_links), key=lambda t: t[0]):
        for fname in sorted(files):
            if fname.lower().endswith(WHITE_LIST_FORMATS):
                yield os.path.join(root, fname)


class DirectoryIterator(Iterator):
    """Batches of augmented images read from `directory/<class>/...` (what
    `ImageDataGenerator.flow_from_directory` returns); classes are the sub-folder names in
    sorted order unless `classes` lists them. Needs Pillow."""

    allowed_class_modes = ("categorical", "binary", "sparse", "input", None)

    def __init__(self, directory, image_data_generator, target_size=(256, 256), color_mode="rgb",
                 classes=None, class_mode="categorical", batch_size=32, shuffle=True, seed=None,
                 data_format=None, save_to_dir=None, save_prefix="", save_format="png",
                 follow_links=False, subset=None, interpolation="nearest", keep_aspect_ratio=False,
                 dtype=None):
        if class_mode not in self.allowed_class_modes:
            raise ValueError(f"Invalid class_mode: {class_mode}; expected one of: {self.allowed_class_modes}")
        split = _file_iterator_attrs(self, image_data_generator, target_size, color_mode, data_format,
                                     save_to_dir, subset, interpolation, keep_aspect_ratio, dtype)
        self.directory = directory
        self.class_mode = class_mode
        if not classes:
            classes = [d for d in sorted(os.listdir(directory)) if os.path.isdir(os.path.join(directory, d))]
        self.num_classes = len(classes)
        self.class_indices = dict(zip(classes, range(len(classes))))
        self.filenames, labels = [], []
        for name in classes:
            sub = os.path.join(directory, name)
            files = list(_list_files(sub, follow_links))
            if split is not None:
                files = files[int(split[0] * len(files)):int(split[1] * len(files))]
            self.filenames += [os.path.join(name, os.path.relpath(f, sub)) for f in files]
            labels += [self.class_indices[name]] * len(files)
        self.classes = np.asarray(labels, np.int32)
        self.samples = len(self.filenames)
        self.filepaths = [os.path.join(directory, f) for f in self.filenames]
        self.labels = self.classes
        self.sample_weight = None
        print(f"Found {self.samples} images belonging to {self.num_classes} classes.")
        super().__init__(self.samples, batch_size, shuffle, seed)

    def _get_batches_of_transformed_samples(self, index_array):
        batch_x = _load_batch(self, index_array)
        if self.class_mode == "input":
            return batch_x, batch_x.copy()
        if self.class_mode in ("binary", "sparse"):
            return batch_x, self.classes[index_array].astype(self.dtype)
        if self.class_mode == "categorical":
            batch_y = np.zeros((len(batch_x), self.num_classes), dtype=self.dtype)
            batch_y[np.arange(len(batch_x)), self.classes[index_array]] = 1.0
            return batch_x, batch_y
        return batch_x


def _file_iterator_attrs(it, image_data_generator, target_size, color_mode, data_format, save_to_dir,
                         subset, interpolation, keep_aspect_ratio, dtype):
    """Checks and sets what DirectoryIterator and DataFrameIterator share (Keras's
    BatchFromFilesMixin); returns the (start, stop) fractions of `subset`, or None."""
    _check_unsupported(data_format, save_to_dir)
    _pil()
    if color_mode not in ("rgb", "rgba", "grayscale"):
        raise ValueError(f"Invalid color mode: {color_mode}; expected \"rgb\", \"rgba\", or \"grayscale\".")
    if subset is not None and subset not in ("training", "validation"):
        raise ValueError(f'Invalid subset name: {subset}; expected "training" or "validation"')
    it.image_data_generator = image_data_generator
    it.target_size = tuple(target_size)
    it.color_mode = color_mode
    it.image_shape = it.target_size + ({"rgb": 3, "rgba": 4, "grayscale": 1}[color_mode],)
    it.interpolation = interpolation
    it.keep_aspect_ratio = keep_aspect_ratio
    it.dtype = np.dtype(dtype or "float32")
    it.data_format = "channels_last"
    if subset is None:
        return None
    v = image_data_generator._validation_split if image_data_generator is not None else 0.0
    return (0, v) if subset == "validation" else (v, 1)


def _load_batch(it, index_array):
    """The augmented images `index_array` of a file iterator (DirectoryIterator,
    DataFrameIterator): read, resized, then transformed as one batch."""
    raw = np.zeros((len(index_array),) + it.image_shape, dtype=it.dtype)
    for i, j in enumerate(index_array):
        img = load_img(it.filepaths[j], color_mode=it.color_mode, target_size=it.target_size,
                       interpolation=it.interpolation, keep_aspect_ratio=it.keep_aspect_ratio)
        raw[i] = img_to_array(img, it.dtype)
        img.close()
    if it.image_data_generator is None:
        return raw
    return it.image_data_generator._augment_batch(raw, it.dtype)


class DataFrameIterator(Iterator):
    """Batches of augmented images whose file names (and labels) are columns of a pandas
    DataFrame (what `ImageDataGenerator.flow_from_dataframe` returns), as Keras builds them:

    - `x_col`: file names, relative to `directory` (or paths when it is None); with
      `validate_filenames` the rows whose file is missing or has no image extension are dropped
      (with a warning).
    - `class_mode`: "categorical" (y_col holds a class name or a list of names: one-hot or
      multi-hot rows), "binary" / "sparse" (class names -> class indices as floats),
      "raw" (y_col's values as they are, one column or several), "multi_output" (a list of
      columns -> a list of arrays), "input" (the images themselves), None (images only).
      Classes are the sorted names found, or `classes` (rows with other names are dropped).
    - `weight_col`: per-sample weights, yielded third.
    Needs Pillow (and pandas for the DataFrame)."""

    allowed_class_modes = ("binary", "categorical", "input", "multi_output", "raw", "sparse", None)

    def __init__(self, dataframe, directory=None, image_data_generator=None, x_col="filename",
                 y_col="class", weight_col=None, target_size=(256, 256), color_mode="rgb",
                 classes=None, class_mode="categorical", batch_size=32, shuffle=True, seed=None,
                 data_format="channels_last", save_to_dir=None, save_prefix="", save_format="png",
                 subset=None, interpolation="nearest", keep_aspect_ratio=False, dtype="float32",
                 validate_filenames=True):
        split = _file_iterator_attrs(self, image_data_generator, target_size, color_mode, data_format,
                                     save_to_dir, subset, interpolation, keep_aspect_ratio, dtype)
        self.directory = directory or ""
        self.class_mode = class_mode
        df = dataframe.copy()
        self._check_params(df, x_col, y_col, weight_col, classes)
        if validate_filenames:
            paths = df[x_col].map(lambda f: os.path.join(self.directory, f))
            valid = paths.apply(lambda f: f.lower().endswith(WHITE_LIST_FORMATS) and os.path.isfile(f))
            if (~valid).sum():
                warnings.warn(f'Found {(~valid).sum()} invalid image filename(s) in x_col="{x_col}". '
                              "These filename(s) will be ignored.")
            df = df[valid]
        labelled = class_mode not in ("input", "multi_output", "raw", None)
        if labelled:
            df, classes = _filter_classes(df, y_col, classes)
            self.class_indices = dict(zip(classes, range(len(classes))))
        if split is not None:
            df = df.iloc[int(split[0] * len(df)):int(split[1] * len(df)), :]
        if labelled:
            self.classes = [[self.class_indices[c] for c in v] if isinstance(v, (list, tuple))
                            else self.class_indices[v] for v in df[y_col]]
        self.filenames = df[x_col].tolist()
        self.sample_weight = df[weight_col].values if weight_col else None
        if class_mode == "multi_output":
            self._targets = [np.array(df[col].tolist()) for col in y_col]
        if class_mode == "raw":
            self._targets = df[y_col].values
        self.samples = len(self.filenames)
        checked = "validated" if validate_filenames else "non-validated"
        of_classes = f" belonging to {len(self.class_indices)} classes" if labelled else ""
        print(f"Found {self.samples} {checked} image filenames{of_classes}.")
        self.filepaths = [os.path.join(self.directory, f) for f in self.filenames]
        super().__init__(self.samples, batch_size, shuffle, seed)

    @property
    def labels(self):
        return self._targets if self.class_mode in ("multi_output", "raw") else self.classes

    def _check_params(self, df, x_col, y_col, weight_col, classes):
        mode = self.class_mode
        if mode not in self.allowed_class_modes:
            raise ValueError(f"Invalid class_mode: {mode}; expected one of: {self.allowed_class_modes}")
        if mode == "multi_output" and not isinstance(y_col, list):
            raise TypeError(f'If class_mode="{mode}", y_col must be a list. Received {type(y_col).__name__}.')
        if not all(isinstance(v, str) for v in df[x_col]):
            raise TypeError(f"All values in column x_col={x_col} must be strings.")
        if mode in ("binary", "sparse") and not all(isinstance(v, str) for v in df[y_col]):
            raise TypeError(f'If class_mode="{mode}", y_col="{y_col}" column values must be strings.')
        if mode == "binary":
            n = len(set(classes)) if classes else df[y_col].nunique()
            if n != 2:
                raise ValueError(f'If class_mode="binary" there must be 2 classes. '
                                 f'{"Found" if not classes else "Given"} {n} class(es).')
        if mode == "categorical" and not all(isinstance(v, (str, list, tuple)) for v in df[y_col]):
            raise TypeError(f'If class_mode="{mode}", y_col="{y_col}" column values must be type '
                            "string, list or tuple.")
        if classes and mode in ("input", "multi_output", "raw", None):
            warnings.warn(f'`classes` will be ignored given the class_mode="{mode}"')
        if weight_col and not issubclass(df[weight_col].dtype.type, np.number):
            raise TypeError(f"Column weight_col={weight_col} must be numeric.")

    def _get_batches_of_transformed_samples(self, index_array):
        batch_x = _load_batch(self, index_array)
        mode = self.class_mode
        if mode is None:
            return batch_x
        if mode == "input":
            batch_y = batch_x.copy()
        elif mode in ("binary", "sparse"):
            batch_y = np.array([self.classes[j] for j in index_array], dtype=self.dtype)
        elif mode == "categorical":  # one-hot, or multi-hot for a list of classes
            batch_y = np.zeros((len(batch_x), len(self.class_indices)), dtype=self.dtype)
            for i, j in enumerate(index_array):
                batch_y[i, self.classes[j]] = 1.0
        elif mode == "multi_output":
            batch_y = [out[index_array] for out in self._targets]
        else:  # raw
            batch_y = self._targets[index_array]
        if self.sample_weight is None:
            return batch_x, batch_y
        return batch_x, batch_y, self.sample_weight[index_array]


def _filter_classes(df, y_col, classes):
    """(rows whose labels lie in `classes`, with other labels removed from lists; the class
    names): `classes` in its order without duplicates, else every label found, sorted."""
    df = df.copy()
    if classes:
        classes = list(dict.fromkeys(classes))

        def keep(v):
            if isinstance(v, (list, tuple)):
                return [c for c in v if c in classes] or None
            if isinstance(v, str):
                return v if v in classes else None
            raise TypeError(f"Expect string, list or tuple but found {type(v)} in {y_col} column ")
        df[y_col] = df[y_col].apply(keep)
    else:
        found = set()
        for v in df[y_col]:
            if isinstance(v, (list, tuple)):
                found.update(v)
            else:
                found.add(v)
        classes = sorted(found)
    return df.dropna(subset=[y_col]), classes


def _check_unsupported(data_format, save_to_dir):
    if data_format not in (None, "channels_last"):
        raise ValueError("faltung's image preprocessing is channels-last only. Received: "
                         f"data_format={data_format}")
    if save_to_dir is not None:
        raise ValueError("faltung's iterators do not implement `save_to_dir`. Received: "
                         f"save_to_dir={save_to_dir}")


def _shift_range(value, name):
    """Keras accepts a float (fraction or pixels), an int (pixels) or a list of choices."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"Invalid value for argument `{name}`. Expected a float, an int or a list "
                         f"of values. Received: {name}={value}")
    return value


class ImageDataGenerator:
    """Real-time data augmentation of image batches (Keras's legacy `ImageDataGenerator`,
    channels last).

    Args (Keras's names and defaults):
        featurewise_center / featurewise_std_normalization: subtract the mean / divide by the
            std per channel, computed by `fit(x)`.
        samplewise_center / samplewise_std_normalization: per image, over all its values.
        zca_whitening, zca_epsilon: ZCA whitening computed by `fit(x)`.
        rotation_range: degrees; the angle is uniform in [-range, range].
        width_shift_range / height_shift_range: float < 1 = fraction of the width/height,
            >= 1 = pixels, uniform in [-range, range); an int or a list = a random choice of
            those pixel counts with a random sign.
        shear_range: shear angle in degrees, uniform in [-range, range].
        zoom_range: float z -> [1-z, 1+z], or [lower, upper]; one factor per axis.
        channel_shift_range: a uniform shift added to every channel, clipped to the image's
            original [min, max].
        fill_mode: "nearest" (default), "constant", "reflect", "wrap" (scipy.ndimage's modes,
            "mirror"/"grid-constant"/"grid-wrap" too); cval: the constant's value.
        horizontal_flip / vertical_flip: flip half of the images.
        rescale: a factor multiplied with every value first (e.g. 1/255).
        preprocessing_function: called on each image (H, W, C) before the rest of
            `standardize`.
        validation_split: fraction held out for `subset="validation"`.
        interpolation_order: 0 (nearest) or 1 (bilinear, default).
        dtype: of the produced batches (float32).
    """

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 zca_whitening=False, zca_epsilon=1e-6, rotation_range=0, width_shift_range=0.0,
                 height_shift_range=0.0, brightness_range=None, shear_range=0.0, zoom_range=0.0,
                 channel_shift_range=0.0, fill_mode="nearest", cval=0.0, horizontal_flip=False,
                 vertical_flip=False, rescale=None, preprocessing_function=None, data_format=None,
                 validation_split=0.0, interpolation_order=1, dtype=None):
        _check_unsupported(data_format, None)
        if brightness_range is not None and (not isinstance(brightness_range, (tuple, list))
                                             or len(brightness_range) != 2):
            raise ValueError("`brightness_range should be tuple or list of two floats. "
                             f"Received: {brightness_range}")
        if fill_mode not in SCIPY_FILL_MODES:
            raise ValueError(f"Invalid value for argument `fill_mode`. Expected one of {SCIPY_FILL_MODES}. "
                             f"Received: fill_mode={fill_mode}")
        if interpolation_order not in (0, 1):
            raise ValueError("faltung's ImageDataGenerator supports interpolation_order 0 (nearest) or "
                             f"1 (bilinear). Received: interpolation_order={interpolation_order}")
        if validation_split and not 0 < validation_split < 1:
            raise ValueError("`validation_split` must be strictly between 0 and 1.  Received: "
                             f"{validation_split}")
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening = zca_whitening
        self.zca_epsilon = zca_epsilon
        self.rotation_range = rotation_range
        self.width_shift_range = _shift_range(width_shift_range, "width_shift_range")
        self.height_shift_range = _shift_range(height_shift_range, "height_shift_range")
        self.shear_range = shear_range
        self.channel_shift_range = channel_shift_range
        self.fill_mode = fill_mode
        self.cval = cval
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        self.brightness_range = brightness_range
        self.interpolation_order = interpolation_order
        self.dtype = np.dtype(dtype or "float32")
        self.data_format = "channels_last"
        self.channel_axis, self.row_axis, self.col_axis = 3, 1, 2
        self._validation_split = validation_split
        self.mean = self.std = self.zca_whitening_matrix = None
        if isinstance(zoom_range, (float, int)) and not isinstance(zoom_range, bool):
            self.zoom_range = [1 - zoom_range, 1 + zoom_range]
        elif (isinstance(zoom_range, (list, tuple)) and len(zoom_range) == 2
              and all(isinstance(v, (float, int)) for v in zoom_range)):
            self.zoom_range = [zoom_range[0], zoom_range[1]]
        else:
            raise ValueError("`zoom_range` should be a float or a tuple or list of two floats. "
                             f"Received: {zoom_range}")
        if zca_whitening:
            if not featurewise_center:
                self.featurewise_center = True
                warnings.warn("This ImageDataGenerator specifies `zca_whitening`, which overrides "
                              "setting of `featurewise_center`.")
            if featurewise_std_normalization:
                self.featurewise_std_normalization = False
                warnings.warn("This ImageDataGenerator specifies `zca_whitening` which overrides "
                              "setting of`featurewise_std_normalization`.")
        if featurewise_std_normalization and not featurewise_center:
            self.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `featurewise_std_normalization`, which "
                          "overrides setting of `featurewise_center`.")
        if samplewise_std_normalization and not samplewise_center:
            self.samplewise_center = True
            warnings.warn("This ImageDataGenerator specifies `samplewise_std_normalization`, which "
                          "overrides setting of `samplewise_center`.")

    # -- iterators ---------------------------------------------------------------------
    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None,
             save_to_dir=None, save_prefix="", save_format="png", ignore_class_split=False, subset=None):
        """An iterator of augmented batches `(x, y)` (or `x` without y) from arrays."""
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle,
                                  sample_weight=sample_weight, seed=seed, save_to_dir=save_to_dir,
                                  save_prefix=save_prefix, save_format=save_format,
                                  ignore_class_split=ignore_class_split, subset=subset, dtype=self.dtype)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None,
                            save_to_dir=None, save_prefix="", save_format="png", follow_links=False,
                            subset=None, interpolation="nearest", keep_aspect_ratio=False):
        """An iterator of augmented batches read from `directory/<class>/<image files>`
        (needs Pillow: `pip install faltung[image]`)."""
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode,
                                 classes=classes, class_mode=class_mode, batch_size=batch_size,
                                 shuffle=shuffle, seed=seed, save_to_dir=save_to_dir,
                                 save_prefix=save_prefix, save_format=save_format,
                                 follow_links=follow_links, subset=subset, interpolation=interpolation,
                                 keep_aspect_ratio=keep_aspect_ratio, dtype=self.dtype)

    def flow_from_dataframe(self, dataframe, directory=None, x_col="filename", y_col="class",
                            weight_col=None, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None,
                            save_to_dir=None, save_prefix="", save_format="png", subset=None,
                            interpolation="nearest", validate_filenames=True, **kwargs):
        """An iterator of augmented batches read from the files a pandas DataFrame lists (see
        DataFrameIterator; needs Pillow). Keras's deprecated keywords warn as in Keras
        (`has_ext`, `sort`, `drop_duplicates`; `class_mode="other"` means "raw")."""
        for key, why in (("has_ext", "has_ext is deprecated, filenames in the dataframe have to match "
                                     "the exact filenames in disk."),
                         ("sort", "sort is deprecated, batches will be created in the same order than "
                                  "the filenames provided if `shuffle` is set to `False`."),
                         ("drop_duplicates", "drop_duplicates is deprecated, you can drop duplicates by "
                                             "using the pandas.DataFrame.drop_duplicates method.")):
            if key in kwargs:
                warnings.warn(why, DeprecationWarning)
        if class_mode == "other":
            warnings.warn('`class_mode="other"` is deprecated, please use `class_mode="raw"`.',
                          DeprecationWarning)
            class_mode = "raw"
        return DataFrameIterator(dataframe, directory, self, x_col=x_col, y_col=y_col,
                                 weight_col=weight_col, target_size=target_size, color_mode=color_mode,
                                 classes=classes, class_mode=class_mode, batch_size=batch_size,
                                 shuffle=shuffle, seed=seed, save_to_dir=save_to_dir,
                                 save_prefix=save_prefix, save_format=save_format, subset=subset,
                                 interpolation=interpolation, validate_filenames=validate_filenames,
                                 dtype=self.dtype)

    # -- normalization -------------------------------------------------------------------
    def standardize(self, x):
        """Applies rescale, samplewise and featurewise normalization and ZCA to `x` in place
        (Keras: the samplewise statistics are over all of `x`, one image when the iterators
        call it) and returns it."""
        if self.preprocessing_function:
            x = self.preprocessing_function(x)
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= np.mean(x, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, keepdims=True) + 1e-6
        self._featurewise(x)
        if self.zca_whitening:
            if self.zca_whitening_matrix is not None:
                flat = x.reshape(-1, int(np.prod(x.shape[-3:])))
                x = np.reshape(flat @ self.zca_whitening_matrix, x.shape)
            else:
                self._warn_not_fit("zca_whitening")
        return x

    def _featurewise(self, x):
        if self.featurewise_center:
            if self.mean is not None:
                x -= self.mean
            else:
                self._warn_not_fit("featurewise_center")
        if self.featurewise_std_normalization:
            if self.std is not None:
                x /= self.std + 1e-6
            else:
                self._warn_not_fit("featurewise_std_normalization")

    @staticmethod
    def _warn_not_fit(what):
        warnings.warn(f"This ImageDataGenerator specifies `{what}`, but it hasn't been fit on any "
                      "training data. Fit it first by calling `.fit(numpy_data)`.")

    # -- random transforms -----------------------------------------------------------------
    def get_random_transform(self, img_shape, seed=None):
        """Random parameters for one image of shape (H, W, C): Keras's draws in Keras's
        order (theta, tx, ty, shear, zx/zy, flips, channel shift, brightness)."""
        if seed is not None:
            np.random.seed(seed)
        theta = np.random.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0
        tx = self._draw_shift(self.height_shift_range, img_shape[0])
        ty = self._draw_shift(self.width_shift_range, img_shape[1])
        shear = np.random.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = np.random.uniform(self.zoom_range[0], self.zoom_range[1], 2)
        flip_horizontal = (np.random.random() < 0.5) * self.horizontal_flip
        flip_vertical = (np.random.random() < 0.5) * self.vertical_flip
        channel_shift_intensity = None
        if self.channel_shift_range != 0:
            channel_shift_intensity = np.random.uniform(-self.channel_shift_range, self.channel_shift_range)
        brightness = None
        if self.brightness_range is not None:
            brightness = np.random.uniform(self.brightness_range[0], self.brightness_range[1])
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_horizontal, "flip_vertical": flip_vertical,
                "channel_shift_intensity": channel_shift_intensity, "brightness": brightness}

    @staticmethod
    def _draw_shift(shift_range, size):
        if not (np.size(shift_range) if isinstance(shift_range, (list, tuple, np.ndarray)) else shift_range):
            return 0  # Keras's `if self.height_shift_range:` (a non-empty list draws, even [0])
        try:  # a list or an int: a random choice with a random sign
            t = np.random.choice(shift_range)
            t *= np.random.choice([-1, 1])
        except ValueError:  # a float
            t = np.random.uniform(-shift_range, shift_range)
        if np.max(shift_range) < 1:
            t *= size
        return t

    def apply_transform(self, x, transform_parameters):
        """One image (H, W, C) transformed by the parameters of `get_random_transform`."""
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"apply_transform expects one image (H, W, C), received shape {x.shape}")
        return self._apply_batch(x[None], [transform_parameters])[0]

    def random_transform(self, x, seed=None):
        """One image (H, W, C) under a random transform."""
        return self.apply_transform(x, self.get_random_transform(np.shape(x), seed))

    def _apply_batch(self, batch, params):
        """batch (N, H, W, C) under per-image parameters: one C++ call for the affine maps,
        then channel shift, flips and brightness (Keras's order)."""
        out = np.array(batch, dtype=batch.dtype if batch.dtype == np.float64 else self.dtype)
        h, w = out.shape[1:3]
        mats = [affine_matrix(p.get("theta", 0), p.get("tx", 0), p.get("ty", 0), p.get("shear", 0),
                              p.get("zx", 1), p.get("zy", 1), h, w) for p in params]
        moved = [i for i, m in enumerate(mats) if m is not None]
        if moved:
            out[moved] = affine_transform(out[moved], np.stack([mats[i] for i in moved]),
                                          interpolation="bilinear" if self.interpolation_order else "nearest",
                                          fill_mode=self.fill_mode, fill_value=self.cval)
        for i, p in enumerate(params):
            if p.get("channel_shift_intensity") is not None:
                out[i] = apply_channel_shift(out[i], p["channel_shift_intensity"])
            if p.get("flip_horizontal", False):
                out[i] = out[i, :, ::-1]
            if p.get("flip_vertical", False):
                out[i] = out[i, ::-1]
            if p.get("brightness") is not None:
                out[i] = apply_brightness_shift(out[i], p["brightness"], False)
        return out

    def _augment_batch(self, batch, dtype):
        """What the iterators yield for raw images (N, H, W, C): random transforms drawn image
        by image, applied in one call, then `standardize` image by image."""
        params = [self.get_random_transform(batch.shape[1:]) for _ in range(len(batch))]
        out = self._apply_batch(np.asarray(batch, dtype), params).astype(dtype, copy=False)
        for i in range(len(out)):
            out[i] = self.standardize(out[i])
        return out

    # -- statistics ----------------------------------------------------------------------
    def fit(self, x, augment=False, rounds=1, seed=None):
        """Per-channel mean / std (and the ZCA matrix) of sample images x (N, H, W, C), after
        `rescale` (and `rounds` random augmentations when `augment`)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 4:
            raise ValueError(f"Input to `.fit()` should have rank 4. Got array with shape: {x.shape}")
        if x.shape[3] not in (1, 3, 4):
            warnings.warn('Expected input to be images (as Numpy array) following the data format '
                          'convention "channels_last" (channels on axis 3), i.e. expected either 1, '
                          f"3 or 4 channels on axis 3. However, it was passed an array with shape "
                          f"{x.shape} ({x.shape[3]} channels).")
        if seed is not None:
            np.random.seed(seed)
        x = np.copy(x)
        if self.rescale:
            x *= self.rescale
        if augment:
            params = [self.get_random_transform(x.shape[1:]) for _ in range(rounds * len(x))]
            x = self._apply_batch(np.concatenate([x] * rounds), params)
        if self.featurewise_center:
            self.mean = np.mean(x, axis=(0, 1, 2)).reshape(1, 1, x.shape[3])
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.std(x, axis=(0, 1, 2)).reshape(1, 1, x.shape[3])
            x /= self.std + 1e-6
        if self.zca_whitening:
            n = len(x)
            u, s, _ = np.linalg.svd(np.reshape(x, (n, -1)).T, full_matrices=False)
            self.zca_whitening_matrix = (u * (np.sqrt(n) / (s + self.zca_epsilon))).dot(u.T)


def affine_matrix(theta, tx, ty, shear, zx, zy, h, w):
    """Keras's apply_affine_transform matrix for an (h, w) channels-last image as a (2, 3)
    row-first matrix for `faltung.ops.image.affine_transform`, or None for the identity
    (Keras then leaves the image untouched)."""
    m = None

    def then(a, b):
        return b if a is None else a @ b

    if theta != 0:
        t = np.deg2rad(theta)
        m = then(m, np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]))
    if tx != 0 or ty != 0:
        m = then(m, np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]))
    if shear != 0:
        s = np.deg2rad(shear)
        m = then(m, np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]]))
    if zx != 1 or zy != 1:
        m = then(m, np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]]))
    if m is None:
        return None
    ox, oy = float(h) / 2 - 0.5, float(w) / 2 - 0.5
    m = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    m[:, [0, 1]] = m[:, [1, 0]]  # Keras's swap of the x/y convention to row/column
    m[[0, 1]] = m[[1, 0]]
    return m[:2]


def apply_affine_transform(x, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1, row_axis=0, col_axis=1,
                           channel_axis=2, fill_mode="nearest", cval=0.0, order=1):
    """One channels-last image (H, W, C) under Keras's affine parameters (Keras's
    apply_affine_transform with its channels-last axes)."""
    if (row_axis, col_axis, channel_axis) != (0, 1, 2):
        raise ValueError("faltung's apply_affine_transform is channels-last only: row_axis=0, "
                         f"col_axis=1, channel_axis=2. Received: {(row_axis, col_axis, channel_axis)}")
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError("Input arrays must be multi-channel 2D images.")
    m = affine_matrix(theta, tx, ty, shear, zx, zy, x.shape[0], x.shape[1])
    if m is None:
        return x
    return affine_transform(x[None], m[None], interpolation="bilinear" if order else "nearest",
                            fill_mode=fill_mode, fill_value=cval)[0]


def apply_channel_shift(x, intensity, channel_axis=2):
    """Adds `intensity` to every channel, clipped to x's original [min, max] (Keras)."""
    x = np.rollaxis(x, channel_axis, 0)
    lo, hi = np.min(x), np.max(x)
    x = np.stack([np.clip(c + intensity, lo, hi) for c in x], axis=0)
    return np.rollaxis(x, 0, channel_axis + 1)


def apply_brightness_shift(x, brightness, scale=True):
    """Keras's brightness shift of one image (H, W, C) with C in 1, 3, 4, as PIL computes it:
    the image cast to uint8 (min-max scaled to [0, 255] first if `scale`, or if it lies outside
    [0, 255]), each byte v becomes uint8(float32(brightness) * v) (PIL's Image.blend with a
    black image; clipped to [0, 255] when brightness > 1; an alpha channel is kept), then
    float32, scaled back to the original range when Keras would (not `scale` but out of range)."""
    x = np.asarray(x, np.float32)
    if x.ndim != 3:
        raise ValueError(f"Expected image array to have rank 3 (single image). Got array with shape: {x.shape}")
    if x.shape[2] not in (1, 3, 4):
        raise ValueError(f"Unsupported channel number: {x.shape[2]}")
    x_min, x_max = np.min(x), np.max(x)
    local_scale = bool(x_min < 0 or x_max > 255)
    v = x
    if local_scale or scale:
        v = x - x_min
        top = np.max(v)
        if top != 0:
            v = v / top
        v = v * np.float32(255)
    u8 = v.astype(np.uint8)
    f = np.float32(brightness)
    t = f * u8.astype(np.float32)
    if not 0 <= f <= 1:  # PIL clips only when extrapolating
        t = np.clip(t, 0, 255)
    out = t.astype(np.uint8)
    if x.shape[2] == 4:
        out[..., 3] = u8[..., 3]
    out = out.astype(np.float32)
    if not scale and local_scale:
        out = out / 255 * (x_max - x_min) + x_min
    return out


def random_brightness(x, brightness_range, scale=True):
    """apply_brightness_shift with a brightness drawn uniformly from `brightness_range`."""
    if len(brightness_range) != 2:
        raise ValueError("`brightness_range should be tuple or list of two floats. "
                         f"Received: {brightness_range}")
    return apply_brightness_shift(x, np.random.uniform(brightness_range[0], brightness_range[1]), scale)
