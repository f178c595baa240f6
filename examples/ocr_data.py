"""Synthetic text lines for the OCR example: random strings of letters and digits rendered
through Pillow with Debian's DejaVu and Liberation fonts into grayscale images of a fixed
size, with mild variation (font, size, position, stroke and background gray, noise).

This lives beside the example, not in `faltung.datasets`: Keras's datasets are loaders of
fixed, published data, while this is a generator that needs Pillow (not a faltung
dependency) and system fonts at Debian's paths (`apt-get install fonts-dejavu-core
fonts-liberation`). Import it from the examples directory:

    from ocr_data import ALPHABET, render_dataset
    images, texts = render_dataset(1000, seed=0)   # (1000, 32, 128, 1) float32 in [0, 1]

The same seed gives the same images and texts.
"""
import os

import numpy as np

FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansCondensed.ttf", "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSansNarrow-Regular.ttf",
    "LiberationSerif-Regular.ttf", "LiberationMono-Regular.ttf",
)
# Letters and digits except capital I, which sans-serif fonts (DejaVu Sans, Liberation Sans)
# draw exactly like lowercase l: no reader can tell the two apart there.
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHJKLMNOPQRSTUVWXYZ"


def find_fonts():
    """Paths of the FONT_FILES present on this machine (empty if none is installed)."""
    paths = [os.path.join(d, f) for f in FONT_FILES for d in FONT_DIRS]
    return [p for p in paths if os.path.exists(p)]


def random_texts(count, rng, min_length=4, max_length=8, alphabet=ALPHABET):
    """`count` random strings with lengths uniform in [min_length, max_length]."""
    chars = np.array(list(alphabet))
    lengths = rng.integers(min_length, max_length + 1, size=count)
    return ["".join(rng.choice(chars, size=n)) for n in lengths]


def render_line(text, rng, fonts, height=32, width=128, sizes=(17, 22)):
    """One line of text as a (height, width) float32 image, ink near 1, paper near 0.

    A text wider than `width` - 4 pixels is squeezed horizontally to fit.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(sizes[0], sizes[1] + 1)))
    ink, paper = int(rng.integers(0, 90)), int(rng.integers(170, 256))
    text_width = int(np.ceil(font.getlength(text)))
    canvas = Image.new("L", (max(width, text_width + 4), height), color=paper)
    x = int(rng.integers(0, max(1, width - text_width - 3))) + 2 if text_width + 4 <= width else 2
    baseline = height - 8 + int(rng.integers(-2, 3))
    ImageDraw.Draw(canvas).text((x, baseline), text, fill=ink, font=font, anchor="ls")
    if canvas.width > width:
        canvas = canvas.resize((width, height), Image.BILINEAR)
    image = 1.0 - np.asarray(canvas, dtype=np.float32) / 255.0
    image += rng.normal(0.0, rng.uniform(0.0, 0.06), size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def render_dataset(count, seed, height=32, width=128, min_length=4, max_length=8):
    """`count` random lines: images (count, height, width, 1) float32 and their texts."""
    fonts = find_fonts()
    if not fonts:
        raise FileNotFoundError("no DejaVu or Liberation font found in " + ", ".join(FONT_DIRS)
                                + "; install them: apt-get install fonts-dejavu-core fonts-liberation")
    rng = np.random.default_rng(seed)
    texts = random_texts(count, rng, min_length, max_length)
    images = np.stack([render_line(t, rng, fonts, height, width) for t in texts])
    return images[..., None], texts
