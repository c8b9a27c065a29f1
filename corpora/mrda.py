"""Reader for the ICSI Meeting Recorder Dialog Act corpus (MRDA), ``.dadb`` CSV release.

Layout (``<root>`` holds ``database/`` and ``splits/``)::

    database/<meeting>.dadb    one dialogue act a line (comma-separated, no header, no quoting)
    splits/train_split.txt, val_split.txt, test_split.txt   meeting ids, one a line

Fields used: 0 start (s), 1 end (s), 4 words as ``start+end+word`` joined by ``|``, 5 the
dialogue-act tag, 6 channel (``Bdb001-c3``), 7 speaker id (``me011``). Each speaker has one
close-talking channel; channels are keyed by speaker id. Each row becomes one ``Utterance`` with
``act`` = the full tag string. ``gold_backchannel`` reads the first label (before ``|``): its
general tag (before ``^``, less a ``.%-``-style disruption mark or a ``:`` second tag) is ``b``, or
its specific tags include ``bk`` (acknowledgement) or ``ba`` (appreciation).

Quirks of the release and how they are read:

- Words in braces with ``XXXX`` times (``XXXX+XXXX+{uhhuh}``) were not aligned. A row with any
  such word has all its words spread evenly over the row's span ``[start, end]``: in these rows the
  span is the only timing left, and the aligned neighbours usually already fill it.
- Words in angle brackets (``887.04+887.34+<o_k>``) are aligned words of the same speaker that
  may lie outside the row's span. Those outside it become a separate untagged ``Utterance``
  (``act=None, gold_backchannel=False``); those inside stay in the row. Brackets are stripped.
- Rows with neither words nor tag (letters ``D``/``B``: the digit-reading task and untranscribed
  stretches) are not dialogue and are skipped. A row with words but no tag is an error.
- Rows of one speaker may overlap each other (an untimed ``{uh}`` inside a longer act); that is
  kept. Aligned words of one speaker may overlap by at most ``OVERLAP_TOLERANCE_S`` (the release
  rounds to 10 ms); spread (untimed) words are exempt from that check.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from functools import cache, lru_cache
from pathlib import Path

from .dialogue import Channel, Dialogue, Utterance, Word, gc_paused
from .errors import CorpusError

# Tags of the source repository's full_label_map.txt, plus z (unlabelled), x (nonspeech) and the
# disruption-only labels %, %-, %-- (indecipherable, interrupted, abandoned).
MRDA_TAGS = frozenset({
    "s", "b", "fh", "bk", "aa", "df", "e", "%", "rt", "fg", "cs", "ba", "bu", "d", "na", "qw", "ar",
    "2", "no", "h", "co", "qy", "nd", "j", "bd", "cc", "ng", "am", "qrr", "fe", "m", "fa", "t", "br",
    "aap", "qh", "tc", "r", "t1", "t3", "bh", "arp", "bsc", "bs", "f", "qr", "ft", "g", "qo", "bc",
    "by", "fw", "z", "x", "%-", "%--",
})
BACKCHANNEL_SPECIFIC = frozenset({"bk", "ba"})
OVERLAP_TOLERANCE_S = 0.02  # seconds two aligned words of one speaker may overlap
SPAN_TOLERANCE_S = 0.011  # seconds an in-row word may stick out of the row span (10 ms rounding)
SPLIT_FILES = {"train": "train_split.txt", "dev": "val_split.txt", "test": "test_split.txt"}
_N_FIELDS = 8  # fields 0..7 are required


def mrda_root(path: str | Path) -> Path:
    """The folder holding ``database/``, given it or its parent."""
    path = Path(path)
    for cand in (path, path / "mrda"):
        if (cand / "database").is_dir():
            return cand
    raise CorpusError(path, "no MRDA database/ folder here")


def list_mrda(root: str | Path) -> list[str]:
    """Sorted meeting ids (``.dadb`` files under ``database/``)."""
    return sorted(p.stem for p in (mrda_root(root) / "database").glob("*.dadb"))


@lru_cache(maxsize=8)
def _split_table(root: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for split, name in SPLIT_FILES.items():
        path = root / "splits" / name
        if not path.is_file():
            raise CorpusError(path, "missing split file")
        for n, line in enumerate(path.read_text().splitlines(), 1):
            mid = line.strip()
            if not mid:
                continue
            if mid in table:
                raise CorpusError(path, f"meeting {mid} already in split {table[mid]!r}", n)
            table[mid] = split
    return table


def mrda_split(meeting_id: str, root: str | Path) -> str | None:
    """Official split (``train``/``dev``/``test``; ``val_split.txt`` is dev), None if unlisted."""
    return _split_table(mrda_root(root).resolve()).get(meeting_id)


@cache
def mrda_tag_parts(tag: str) -> tuple[str, tuple[str, ...]]:
    """General tag and specific tags of the first label: ``"s^bk|s"`` -> ``("s", ("bk",))``."""
    first = tag.split("|")[0].split(":")[0]
    parts = [p.split(".")[0] for p in first.split("^")]
    return parts[0], tuple(parts[1:])


@cache
def mrda_is_backchannel(tag: str) -> bool:
    """Backchannel by tag: first label's general tag ``b``, or specific ``bk``/``ba``."""
    general, specific = mrda_tag_parts(tag)
    return general == "b" or not BACKCHANNEL_SPECIFIC.isdisjoint(specific)


@cache
def _unknown_tag_piece(tag: str) -> str | None:
    """The first piece of ``tag`` (split at ``|`` ``:`` ``^`` ``.``) not in ``MRDA_TAGS``, or None."""
    return next((p for p in re.split(r"[|:^.]", tag) if p not in MRDA_TAGS), None)


def _float(path: Path, line: int, text: str, what: str) -> float:
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and t >= 0):
        raise CorpusError(path, f"bad {what} time {text!r}", f"line {line}")
    return t


def _row_words(path: Path, line: int, field: str, start: float, end: float):
    """``(in-span words, runs of out-of-span words, aligned)`` of one row; see the module docstring."""
    try:
        items = [(a, b, t.strip("{}<>")) for a, b, t in (x.split("+", 2) for x in field.split("|"))]
    except ValueError:
        bad = next(x for x in field.split("|") if x.count("+") < 2)
        raise CorpusError(path, f"word {bad!r} is not start+end+word", f"line {line}") from None
    lo, hi = start - SPAN_TOLERANCE_S, end + SPAN_TOLERANCE_S
    inside: list[Word] = []
    runs: list[list[Word]] = []
    aligned, prev_out = True, False
    for a, b, text in items:
        if a == "XXXX" or b == "XXXX":
            aligned, prev_out = False, False
            inside.append(Word(start, end, text))
            continue
        try:
            w0, w1 = float(a), float(b)
        except ValueError:
            w0 = w1 = math.nan
        if not 0.0 <= w0 <= w1 < math.inf:
            problem = "reversed word times" if 0.0 <= w1 < w0 < math.inf else "bad word times"
            raise CorpusError(path, f"{problem} {a}..{b} ({text!r})", f"line {line}")
        if lo <= w0 and w1 <= hi:
            inside.append(Word(w0, w1, text))
            prev_out = False
        elif prev_out:
            runs[-1].append(Word(w0, w1, text))
        else:
            runs.append([Word(w0, w1, text)])
            prev_out = True
    if not aligned:  # spread all in-span words evenly over the row's span
        step = (end - start) / len(inside)
        inside = [Word(start + k * step, start + (k + 1) * step, w.text) for k, w in enumerate(inside)]
    return inside, runs, aligned


def _check_overlap(path: Path, rows: list[tuple[int, list[Word]]], speaker: str) -> None:
    """Raise when two aligned words of ``speaker`` overlap by more than ``OVERLAP_TOLERANCE_S``."""
    last_end, last_line = -math.inf, 0
    for w0, w1, line in sorted([(w.start, w.end, line) for line, words in rows for w in words]):
        if w0 < last_end - OVERLAP_TOLERANCE_S:
            raise CorpusError(path, f"words of speaker {speaker} overlap by {last_end - w0:.3f} s "
                              f"(> {OVERLAP_TOLERANCE_S} s tolerance) with line {last_line}",
                              f"line {line}")
        if w1 > last_end:
            last_end, last_line = w1, line


def read_mrda_meeting(dadb_path: str | Path) -> Dialogue:
    """One meeting, channels keyed by speaker id; raises ``CorpusError`` on bad input.

    ``split`` is left None here (the split files live beside ``database/``; ``load_mrda`` sets it).
    """
    with gc_paused():
        return _read_meeting(Path(dadb_path))


def _read_meeting(path: Path) -> Dialogue:
    if not path.is_file():
        raise CorpusError(path, "missing file")
    utts: dict[str, list[Utterance]] = {}
    timed: dict[str, list[tuple[int, list[Word]]]] = {}  # aligned words by line
    channel_of: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CorpusError(path, f"not UTF-8 text: {err}") from None
    for line, text in enumerate(lines, 1):
        if not text.strip():
            continue
        row = text.split(",")  # the release never quotes; free-text comments hold stray '"'
        if len(row) < _N_FIELDS:
            raise CorpusError(path, f"malformed row: {len(row)} comma-separated fields, need at least "
                              f"{_N_FIELDS}", f"line {line}")
        start, end = _float(path, line, row[0], "start"), _float(path, line, row[1], "end")
        if end < start:
            raise CorpusError(path, f"reversed times {start}..{end}", f"line {line}")
        field, tag, channel, speaker = row[4].strip(), row[5].strip(), row[6], row[7].strip()
        if not field and not tag:
            continue  # digit reading / untranscribed stretch: not dialogue
        if not tag:
            raise CorpusError(path, "empty dialogue-act tag on a row with words", f"line {line}")
        bad = _unknown_tag_piece(tag)
        if bad is not None:
            raise CorpusError(path, f"unknown dialogue-act tag {bad!r} in {tag!r} "
                              "(not in the MRDA label map)", f"line {line}")
        if not speaker:
            raise CorpusError(path, "empty speaker id", f"line {line}")
        if channel_of.setdefault(speaker, channel) != channel:
            raise CorpusError(path, f"speaker {speaker} on two channels ({channel_of[speaker]}, {channel})",
                              f"line {line}")
        inside, runs, aligned = _row_words(path, line, field, start, end) if field else ([], [], True)
        spk_utts = utts.setdefault(speaker, [])
        spk_utts.append(Utterance(start, end, tuple(inside), tag, mrda_is_backchannel(tag)))
        spk_timed = timed.setdefault(speaker, [])
        for run in runs:
            spk_utts.append(Utterance(run[0].start, max(w.end for w in run), tuple(run), None, False))
            spk_timed.append((line, run))
        if aligned:
            spk_timed.append((line, inside))
    if not utts:
        raise CorpusError(path, "empty dialogue: no tagged utterances")
    if len(set(channel_of.values())) < len(channel_of):
        raise CorpusError(path, f"two speakers share a channel: {channel_of}")
    for speaker, spk_timed in timed.items():
        _check_overlap(path, spk_timed, speaker)
    channels = {s: Channel(s, sorted(u, key=lambda x: (x.start, x.end))) for s, u in sorted(utts.items())}
    duration = max(u.end for c in channels.values() for u in c.utterances)
    if duration <= 0:
        raise CorpusError(path, "empty dialogue: all times are 0")
    # Times are checked while parsing (finite, >= 0, end >= start), so Dialogue.validate() is not needed.
    return Dialogue(path.stem, "mrda", channels, duration, str(path))


def load_mrda(root: str | Path, splits: Iterable[str] | None = None,
              skipped: list | None = None) -> Iterator[Dialogue]:
    """Every meeting in sorted order with its official split, optionally only ``splits`` (``{"test"}``).

    With a ``skipped`` list, a meeting that raises ``CorpusError`` (a bad file, or a meeting listed in
    none of the split files) is recorded there as ``(path, message)`` and skipped; without one the
    error propagates. With ``splits``, meetings in no split file are not read.
    """
    root = mrda_root(root)
    keep = set(splits) if splits is not None else None
    for mid in list_mrda(root):
        split = mrda_split(mid, root)
        if keep is not None and split not in keep:
            continue
        path = root / "database" / f"{mid}.dadb"
        try:
            if split is None:
                raise CorpusError(path, f"meeting {mid} is in none of the split files "
                                        f"({', '.join(SPLIT_FILES.values())} in {root / 'splits'})")
            yield read_mrda_meeting(path).with_split(split)
        except CorpusError as err:
            if skipped is None:
                raise
            skipped.append((err.path, str(err)))
