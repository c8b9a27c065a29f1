"""Property-based fuzzing of every corpus reader on mutated copies of the small fixture files.

Random truncations, byte flips and field swaps (1-3 of them, in sequence) of a real fixture file must
either read into valid dialogues or raise ``CorpusError`` naming the file: never another exception.
``BACKCHANNEL_FUZZ_EXAMPLES`` sets the examples per reader (default sized for CI; see ``EXAMPLES``).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.maptask import read_maptask_dialogue
from backchannel.corpora.mrda import read_mrda_meeting
from backchannel.corpora.stm import read_rttm, read_stm
from backchannel.corpora.switchboard import read_switchboard
from backchannel.corpora.textgrid import read_textgrid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLES = int(os.environ.get("BACKCHANNEL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_FIELD = re.compile(rb"[^\s,|+<>=\"/]+")  # a field: what lies between separators of any of the formats


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """``data`` after 1-3 random truncations, byte flips and swaps of two fields."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "swap"]))
        if kind == "truncate" or not data:
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
        else:
            fields = [m.span() for m in _FIELD.finditer(data)]
            if len(fields) < 2:
                continue
            i, j = sorted(draw(st.lists(st.integers(0, len(fields) - 1), min_size=2, max_size=2, unique=True)))
            (a0, a1), (b0, b1) = fields[i], fields[j]
            data = data[:a0] + data[b0:b1] + data[a1:b0] + data[a0:a1] + data[b1:]
    return data


def _check(read, path: Path, names: tuple[str, ...]) -> None:
    """``read()`` gives valid dialogues or a ``CorpusError`` whose message names one of ``names``."""
    try:
        out = read()
    except CorpusError as err:
        assert any(n in str(err) for n in names), f"error does not name {names}: {err}"
        return
    for d in out if isinstance(out, list) else [out]:
        d.validate()


@pytest.fixture(scope="module")
def work():
    with tempfile.TemporaryDirectory(prefix="bc-fuzz-") as tmp:
        yield Path(tmp)


def _fuzz(work: Path, rel: str, read, names=None):
    """Copy the fixture folder of ``rel`` into ``work`` and fuzz the file ``rel`` through ``read(path)``."""
    src = FIXTURES / rel
    top = rel.split("/")[0]  # the fixture corpus, copied whole: readers look at sibling files
    if not (work / top).exists():
        shutil.copytree(FIXTURES / top, work / top)
    path = work / rel
    original = src.read_bytes()

    @FUZZ
    @given(mutations(original))
    def run(data):
        path.write_bytes(data)
        _check(lambda: read(path), path, names or (path.name,))

    try:
        run()
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("rel", ["maptask/timed-units/q7xx1.g.timed-units.xml", "maptask/moves/q7xx1.f.moves.xml"])
def test_fuzz_maptask(work, rel):
    # a bad timed-units file may surface as a bad reference in its moves file: either file of the dialogue
    _fuzz(work, rel, lambda p: read_maptask_dialogue(p.parents[1], "q7xx1"), names=("q7xx1.",))


def test_fuzz_mrda(work):
    _fuzz(work, "mrda/database/Bxx001.dadb", read_mrda_meeting)


def test_fuzz_stm(work):
    _fuzz(work, "stm/two_calls.stm", read_stm)
    _fuzz(work, "stm/two_calls.stm", lambda p: read_stm(p, skipped=[]))


def test_fuzz_rttm(work):
    _fuzz(work, "stm/meeting.rttm", read_rttm)
    _fuzz(work, "stm/meeting.rttm", lambda p: read_rttm(p, skipped=[]))


@pytest.mark.parametrize("name", ["two_speakers.TextGrid", "mfa_short.TextGrid"])
def test_fuzz_textgrid(work, name):
    _fuzz(work, f"textgrid/{name}", read_textgrid)


@pytest.mark.parametrize("side", ["A", "B"])
def test_fuzz_switchboard(work, side):
    a = work / "switchboard" / "sw9001A-ms98-a-word.text"
    _fuzz(work, f"switchboard/sw9001{side}-ms98-a-word.text", lambda p: read_switchboard(a))
