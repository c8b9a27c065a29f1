"""Progress bars for long loops: a live tqdm bar on a terminal, a plain log line every few seconds elsewhere."""
from __future__ import annotations

import sys
from collections.abc import Iterable

LOG_INTERVAL_S = 5.0  # seconds between progress lines when stderr is not a terminal


class _Lines:
    """A text stream that turns tqdm's carriage-return redraws into whole lines (for logs and pipes)."""

    def __init__(self, stream):
        self.stream, self.last = stream, None

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            line = part.rstrip()
            if line.strip() and line != self.last:  # tqdm redraws the final state on close
                self.stream.write(line + "\n")
                self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable, desc: str, unit: str, total: int | None = None, enable: bool = True):
    """``iterable`` wrapped in a tqdm bar on stderr: ``x/total`` where ``total`` (or ``len(iterable)``) is
    known. On a terminal the bar redraws in place; otherwise one line is written at most every
    ``LOG_INTERVAL_S`` seconds (and at the end)."""
    from tqdm import tqdm

    stream = sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if tty:
        return tqdm(iterable, desc=desc, unit=unit, total=total, disable=not enable, file=stream,
                    mininterval=0.1, dynamic_ncols=True)
    fmt = ("{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed}<{remaining}]" if total is not None
           else "{desc}: {n_fmt} {unit} [{elapsed}]")
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=not enable, file=_Lines(stream),
                mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S * 2, bar_format=fmt)
