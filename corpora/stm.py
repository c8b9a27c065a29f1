"""NIST STM (segment time mark) and RTTM (rich transcription time mark) readers.

STM, one segment a line (sclite's reference format)::

    <file> <channel> <speaker> <begin> <end> [<label>] <transcript>

``;;`` starts a comment line; the optional label is one ``<...>`` field (``<o,f0,male>``). STM has
only segment times, so the words of a segment are **spread evenly** over it (word ``i`` of ``n``
spans ``begin + i d .. begin + (i + 1) d`` with ``d = (end - begin) / n``): word timing inside a
segment is an approximation. Segments whose speaker is ``inter_segment_gap`` or whose transcript is
``ignore_time_segment_in_scoring`` (or empty) carry no speech and are skipped.

RTTM, one object a line, 10 space-separated fields (9 accepted: old files omit ``slat``)::

    <type> <file> <chnl> <tbeg> <tdur> <ortho> <stype> <name> <conf> [<slat>]

``SPEAKER`` lines become utterances of speaker ``<name>`` (no words: ``words=()``); ``LEXEME`` lines
are words of speaker ``<name>``, placed in the ``SPEAKER`` segment that contains their midpoint
(or grouped into inter-pausal units where no segment does). Other types (``SPKR-INFO``,
``NON-LEX``, ``NOSCORE``, ...) are ignored. Times are seconds.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from pathlib import Path

from .dialogue import Channel, Dialogue, Utterance, Word
from .errors import CorpusError
from .textgrid import group_ipus

STM_SKIP_SPEAKERS = frozenset({"inter_segment_gap"})
STM_SKIP_TRANSCRIPTS = frozenset({"ignore_time_segment_in_scoring"})
RTTM_WORD_STYPES = frozenset({"lex", "fp", "frag", "un-lex", "for-lex", "alpha", "acronym", "interjection",
                              "propernoun", "other", "<na>"})


def _lines(path: Path):
    """``(line_number, fields)`` for every non-blank, non-comment line."""
    if not path.is_file():
        raise CorpusError(path, "no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(path, f"not UTF-8 text: {err}") from err
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith(";;"):
            yield i, line.split()


def _times(path: Path, line: int, begin: str, second: str, second_is_duration: bool) -> tuple[float, float]:
    """Parse a (begin, end) or (begin, duration) pair into (start, end) seconds, checking signs."""
    try:
        t0, t1 = float(begin), float(second)
    except ValueError:
        raise CorpusError(path, f"non-numeric time in {begin!r} {second!r}", line) from None
    if t0 < 0:
        raise CorpusError(path, f"negative start time {t0}", line)
    if second_is_duration:
        if t1 < 0:
            raise CorpusError(path, f"negative duration {t1}", line)
        t1 = t0 + t1
    elif t1 < t0:
        raise CorpusError(path, f"negative duration: segment ends ({t1}) before it begins ({t0})", line)
    return t0, t1


def _spread(t0: float, t1: float, tokens: list[str]) -> tuple[Word, ...]:
    d = (t1 - t0) / len(tokens)
    return tuple(Word(t0 + i * d, t0 + (i + 1) * d, tok) for i, tok in enumerate(tokens))


def _dialogues(path: Path, corpus: str, recordings: dict[str, dict[str, list[Utterance]]]) -> list[Dialogue]:
    out = []
    for rec, speakers in recordings.items():
        channels = {s: Channel(s, sorted(u, key=lambda u: (u.start, u.end))) for s, u in speakers.items()}
        duration = max(u.end for c in channels.values() for u in c.utterances)
        out.append(Dialogue(id=rec, corpus=corpus, channels=channels, duration=duration,
                            source=str(path)).validate())
    if not out:
        raise CorpusError(path, "no segments")
    return out


def read_stm(path: str | Path) -> list[Dialogue]:
    """Read an STM file: one ``Dialogue`` (corpus ``"stm"``, id = ``<file>``) per recording, in file order.

    Channels are keyed by ``<speaker>``; each segment is one ``Utterance`` with evenly spread words.
    """
    path = Path(path)
    recordings: dict[str, dict[str, list[Utterance]]] = defaultdict(lambda: defaultdict(list))
    for i, f in _lines(path):
        if len(f) < 5:
            raise CorpusError(path, "expected at least 5 fields (file channel speaker begin end), "
                                    f"got {len(f)}", i)
        rec, _chan, speaker = f[0], f[1], f[2]
        t0, t1 = _times(path, i, f[3], f[4], second_is_duration=False)
        tokens = f[5:]
        if tokens and tokens[0].startswith("<") and tokens[0].endswith(">"):
            tokens = tokens[1:]  # the optional <label>
        if speaker.lower() in STM_SKIP_SPEAKERS or not tokens or \
                " ".join(tokens).lower() in STM_SKIP_TRANSCRIPTS:
            continue
        recordings[rec][speaker].append(Utterance(t0, t1, words=_spread(t0, t1, tokens)))
    return _dialogues(path, "stm", {r: s for r, s in recordings.items() if s})


def read_rttm(path: str | Path, ipu_gap: float = 0.5) -> list[Dialogue]:
    """Read an RTTM file: one ``Dialogue`` (corpus ``"rttm"``, id = ``<file>``) per recording.

    Channels are keyed by ``<name>``. ``SPEAKER`` segments are utterances; ``LEXEME`` words fill them.
    """
    path = Path(path)
    segments: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    lexemes: dict[str, dict[str, list[Word]]] = defaultdict(lambda: defaultdict(list))
    for i, f in _lines(path):
        if len(f) not in (9, 10):
            raise CorpusError(path, "expected 10 fields (type file chnl tbeg tdur ortho stype name conf "
                                    f"slat), got {len(f)}", i)
        kind, rec, name = f[0].upper(), f[1], f[7]
        if kind not in ("SPEAKER", "LEXEME"):
            continue
        t0, t1 = _times(path, i, f[3], f[4], second_is_duration=True)
        if kind == "SPEAKER":
            segments[rec][name].append((t0, t1))
        elif f[6].lower() in RTTM_WORD_STYPES and f[5] != "<NA>":
            lexemes[rec][name].append(Word(t0, t1, f[5]))
    recordings: dict[str, dict[str, list[Utterance]]] = {}
    for rec in dict.fromkeys(list(segments) + list(lexemes)):
        recordings[rec] = {}
        for name in dict.fromkeys(list(segments[rec]) + list(lexemes[rec])):
            recordings[rec][name] = _fill(sorted(segments[rec][name]), lexemes[rec][name], ipu_gap)
    return _dialogues(path, "rttm", recordings)


def _fill(segments: list[tuple[float, float]], words: list[Word], ipu_gap: float) -> list[Utterance]:
    """Utterances from speaker segments, each holding the words whose midpoint it contains."""
    starts = [s for s, _ in segments]
    inside: list[list[Word]] = [[] for _ in segments]
    orphans = []
    for w in sorted(words, key=lambda w: (w.start, w.end)):
        mid = (w.start + w.end) / 2
        k = bisect_right(starts, mid) - 1  # the last segment starting at or before the midpoint
        (inside[k] if k >= 0 and mid <= segments[k][1] else orphans).append(w)
    utts = [Utterance(s, e, words=tuple(ws)) for (s, e), ws in zip(segments, inside, strict=True)]
    return utts + group_ipus(orphans, ipu_gap)
