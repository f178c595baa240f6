"""examples/ocr_data.py: the text-line renderer of the OCR example (Pillow + Debian fonts)."""
import os
import sys

import numpy as np
import pytest

pytest.importorskip("PIL", reason="the OCR line renderer needs Pillow (pip install pillow)")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import ocr_data  # noqa: E402

if not ocr_data.find_fonts():
    pytest.skip("no DejaVu/Liberation fonts (apt-get install fonts-dejavu-core fonts-liberation)",
                allow_module_level=True)


def test_render_dataset_shapes_texts_and_range():
    images, texts = ocr_data.render_dataset(12, seed=3, min_length=2, max_length=5)
    assert images.shape == (12, 32, 128, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert len(texts) == 12
    assert all(2 <= len(t) <= 5 and set(t) <= set(ocr_data.ALPHABET) for t in texts)
    # every line carries ink: its darkest stroke is far above the paper level
    assert (images.reshape(12, -1).max(axis=1) > 0.6).all()


def test_same_seed_same_lines_other_seed_other_lines():
    a, ta = ocr_data.render_dataset(4, seed=7)
    b, tb = ocr_data.render_dataset(4, seed=7)
    c, tc = ocr_data.render_dataset(4, seed=8)
    np.testing.assert_array_equal(a, b)
    assert ta == tb and ta != tc and not np.array_equal(a, c)


def test_every_font_draws_every_character():
    """No font lacks a glyph: each character alone puts ink on the line in each font."""
    rng = np.random.default_rng(0)
    for font in ocr_data.find_fonts():
        for char in ocr_data.ALPHABET:
            line = ocr_data.render_line(char, rng, [font])
            assert line.max() > 0.5, (font, char)


def test_long_text_is_squeezed_into_the_width():
    rng = np.random.default_rng(1)
    line = ocr_data.render_line("W" * 12, rng, ocr_data.find_fonts()[:1], height=32, width=96)
    assert line.shape == (32, 96)
    ink = line[6:28].mean(axis=0) - line[:3].mean()     # text rows minus the paper above
    assert ink[:16].mean() > 0.05 and ink[-16:].mean() > 0.05   # the text spans the whole width


def test_capital_i_is_left_out_of_the_alphabet():
    assert "I" not in ocr_data.ALPHABET and "l" in ocr_data.ALPHABET
    assert len(set(ocr_data.ALPHABET)) == len(ocr_data.ALPHABET) == 61
