"""Progress bars: totals where known; off a terminal, whole lines at most every LOG_INTERVAL_S seconds."""
from __future__ import annotations

import io

from backchannel import progress as progress_module
from backchannel.progress import progress


def test_log_lines_off_a_terminal(monkeypatch):
    err = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", err)
    assert sum(progress(range(5000), "mining", "dialogue")) == sum(range(5000))
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and 1 <= len(lines) <= 3  # the start and the end, not every update
    assert lines[-1].startswith("mining: 5000/5000 dialogue (100%)")


def test_a_line_every_interval_and_no_total_for_generators(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.0)  # every update is due
    list(progress((i for i in range(3)), "reading", "file"))
    assert err.getvalue().splitlines()[-1].startswith("reading: 3 file")
    err.truncate(0)
    err.seek(0)
    list(progress((i for i in range(3)), "reading", "file", total=3))
    assert [x.split(" (")[0] for x in err.getvalue().splitlines()] == [f"reading: {k}/3 file" for k in range(4)]
