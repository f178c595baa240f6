"""examples/ocr_ctc.py end to end on faltung, tiny: 1 epoch on 256 lines, 32 held-out lines."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("PIL", reason="the OCR example renders its lines with Pillow (pip install pillow)")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import ocr_data  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "ocr_ctc.py")


@pytest.mark.skipif(not ocr_data.find_fonts(),
                    reason="no DejaVu/Liberation fonts (apt-get install fonts-dejavu-core fonts-liberation)")
def test_tiny_ocr_run_reports_error_rates_and_decoded_lines():
    run = subprocess.run([sys.executable, EXAMPLE, "--epochs", "1", "--train", "256", "--test", "32",
                          "--beam-width", "10"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert re.search(r"epoch 1: loss \d+\.\d+, .*held-out CER \(greedy\) \d\.\d{4}", out)
    assert re.search(r"training time: \d+\.\d s for 1 epochs", out)
    cer = re.search(r"held-out CER on 32 lines: greedy (\d\.\d{4}), beam search \(width 10\) (\d\.\d{4})", out)
    assert cer and all(0.0 <= float(v) for v in cer.groups())
    shown = re.findall(r"^  (\S+) +greedy", out, flags=re.M)
    _, texts = ocr_data.render_dataset(32, seed=1 + 1000)   # the example's held-out lines
    assert shown[:5] == texts[:5] and set(shown) <= set(texts)
