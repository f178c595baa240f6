"""Keras-style progress bar (Keras: `keras.utils.Progbar`).

    1875/1875 ━━━━━━━━━━━━━━━━━━━━ 3s 2ms/step - accuracy: 0.8100 - loss: 0.5300

Values passed to `update` are shown as they are (faltung's training loop already passes
running averages), formatted like Keras (4 decimals, or `.4e` for tiny values).

faltung-only behaviour: redrawing is throttled to one draw per `interval` seconds (0.05 s)
on a terminal; when stdout is not a terminal (a log file, CI, pytest capture) only the
final line of each bar is written, so logs get one line per epoch instead of one per
update. Colours (ANSI codes) are used only on a terminal.
"""
import math
import sys
import time

import numpy as np


def _fmt_value(v):
    try:
        v = float(np.mean(v))  # Keras shows the mean of a per-class (array) result
    except (TypeError, ValueError):
        return f" {v}"
    return f" {v:.4f}" if abs(v) > 1e-3 or v == 0 else f" {v:.4e}"


def _fmt_time_per_unit(t, unit):
    if t >= 1 or t == 0:
        return f" {t:.0f}s/{unit}"
    if t >= 1e-3:
        return f" {t * 1e3:.0f}ms/{unit}"
    return f" {t * 1e6:.0f}us/{unit}"


def _fmt_eta(eta):
    if eta > 3600:
        return "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
    if eta > 60:
        return "%d:%02d" % (eta // 60, eta % 60)
    return "%ds" % eta


class Progbar:
    """Displays a progress bar.

    Args:
        target: total number of steps, None if unknown.
        width: bar width in characters.
        verbose: 0 silent, 1 bar, 2 one line when finished.
        interval: minimum seconds between two redraws (terminal only).
        unit_name: "step" or "sample".
        stream: file to write to (default: sys.stdout at each write).
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None,
                 unit_name="step", stream=None):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self._stream = stream
        out = self.stream
        self._dynamic = hasattr(out, "isatty") and out.isatty()
        self._values = {}
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_width = 0
        self._seen = 0

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def _step_time(self, current, now):
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            t = (now - self._time_after_first_step) / (current - 1)
        else:
            t = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return t

    def update(self, current, values=None, finalize=None):
        """Show step `current` with `values`, a list of (name, value) pairs."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k, v in values or []:
            self._values[k] = v
        self._seen = current
        now = time.time()
        per_unit = self._step_time(current, now)
        if self.verbose == 1:
            if not finalize and (not self._dynamic or now - self._last_update < self.interval):
                return
            self._last_update = now
            self._draw(current, now, per_unit, finalize)
        elif self.verbose == 2 and finalize:
            if self.target:
                nd = int(math.log10(self.target)) + 1
                info = f"%{nd}d/%d" % (current, self.target)
            else:
                info = f"{current}"
            info += f" - {now - self._start:.0f}s -" + _fmt_time_per_unit(per_unit, self.unit_name)
            info += self._metrics_text()
            self.stream.write(info + "\n")
            self.stream.flush()

    def add(self, n, values=None):
        self.update(self._seen + n, values)

    def _metrics_text(self):
        return "".join(f" - {k}:{_fmt_value(v)}" for k, v in self._values.items())

    def _draw(self, current, now, per_unit, finalize):
        color = self._dynamic
        if self.target:
            nd = int(math.log10(self.target)) + 1
            bar = f"%{nd}d/%d " % (current, self.target)
            filled = min(self.width, int(self.width * current / self.target))
            if color:
                bar += f"\x1b[32m{'━' * filled}\x1b[0m\x1b[37m{'━' * (self.width - filled)}\x1b[0m"
            else:
                bar += "━" * self.width if finalize else "━" * filled + "─" * (self.width - filled)
        else:
            bar = "%7d/Unknown" % current
        if self.target and not finalize:
            info = " " + _fmt_eta(per_unit * (self.target - current))
        else:
            info = f" {now - self._start:.0f}s"
        info += _fmt_time_per_unit(per_unit, self.unit_name) + self._metrics_text()
        text = bar + info
        width = len(text) - (18 if color and self.target else 0)
        msg = ("\r" + text) if self._dynamic else text
        if self._dynamic and self._prev_width > width:
            msg += " " * (self._prev_width - width)
        self._prev_width = width
        if finalize or not self._dynamic:
            msg += "\n"
        self.stream.write(msg)
        self.stream.flush()
