"""NIST STM (segment time mark) and RTTM (rich transcription time mark) readers.

STM, one segment a line (sclite's reference format)::

    <file> <channel> <speaker> <begin> <end> [<label>] <transcript>

``;;`` starts a comment line. The optional label is one ``<...>`` field with comma-separated ids
(``<o,f0,male>``); a bracketed token without commas (``<LAUGH>``) is transcript markup, not a label.
STM has only segment times, so the words of a segment are **spread evenly** over it (word ``i`` of
``n`` spans ``begin + i d .. begin + (i + 1) d`` with ``d = (end - begin) / n``): word timing inside a
segment is an approximation. Segments whose speaker is ``inter_segment_gap`` or whose transcript is
``ignore_time_segment_in_scoring`` (or empty) carry no speech and are skipped.

Bracketed markup, a whole token in ``<...>`` or ``[...]`` (``<LAUGH>``, ``[laughter]``, ``<UNK>``,
``[noise]``), is never a word. Rule: a segment is vocal activity over its whole span, its words (if
any) spread over it, unless every token of it is **non-speech** markup (``NON_SPEECH_MARKUP``:
noise, silence, music, breath, ...), in which case it is dropped. So ``<LAUGH>`` or ``<UNK>`` alone
is an utterance without words (the speaker is vocally active: it counts as voice activity, never as
a lexical backchannel), ``yeah <LAUGH>`` is the word ``yeah`` over the whole segment, and
``[noise]`` alone is silence.

RTTM, one object a line, 10 space-separated fields (9 accepted: old files omit ``slat``)::

    <type> <file> <chnl> <tbeg> <tdur> <ortho> <stype> <name> <conf> [<slat>]

``SPEAKER`` lines become utterances of speaker ``<name>`` (no words: ``words=()``); ``LEXEME`` lines
are words of speaker ``<name>``, placed in the ``SPEAKER`` segment that contains their midpoint
(or grouped into inter-pausal units where no segment does). Other types (``SPKR-INFO``,
``NON-LEX``, ``NOSCORE``, ...) are ignored. Times are seconds.

Audio channel (``Channel.audio_channel``): the STM ``<channel>`` / RTTM ``<chnl>`` field, where it
tells a recording's speakers apart: every speaker has one value, no two share one, and the values
are all letters (``A`` = 0, ``B`` = 1, ...) or all numbers (1-based as in NIST files, ``1`` = 0;
0-based if the recording uses ``0``). Otherwise (typically ``1`` for everyone) it is None and
``audio.attach_audio`` falls back to its documented order.

One file may hold many recordings: with a ``skipped`` list, a bad line (or a recording that fails
validation) drops only its own recording, recorded as ``(path, message)``; without one the first
``CorpusError`` propagates.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from pathlib import Path

from .dialogue import Channel, Dialogue, Utterance, Word
from .errors import CorpusError
from .textgrid import group_ipus

STM_SKIP_SPEAKERS = frozenset({"inter_segment_gap"})
STM_SKIP_TRANSCRIPTS = frozenset({"ignore_time_segment_in_scoring"})
# Markup names (case-insensitive, brackets and a closing "/" stripped) that are not vocal activity.
NON_SPEECH_MARKUP = frozenset({"noise", "sil", "silence", "sp", "pause", "music", "no-speech", "nonspeech",
                               "non-speech", "background", "static", "beep", "click", "ring", "dtmf", "breath",
                               "inhale", "exhale", "b_aside", "e_aside"})
RTTM_WORD_STYPES = frozenset({"lex", "fp", "frag", "un-lex", "for-lex", "alpha", "acronym", "interjection",
                              "propernoun", "other", "<na>"})
_LABEL = re.compile(r"^<[^<>\s,]*(,[^<>\s,]*)+>$")  # <o,f0,male>
_MARKUP = re.compile(r"^(<[^<>]+>|\[[^\[\]]+\])$")  # <LAUGH>, [noise]


def is_markup(token: str) -> bool:
    """True for a bracketed markup token (``<LAUGH>``, ``[noise]``): never a word."""
    return bool(_MARKUP.match(token))


def is_non_speech(token: str) -> bool:
    """True for markup of something other than the speaker's voice (``[noise]``, ``<sil>``)."""
    return is_markup(token) and token[1:-1].strip("/").lower() in NON_SPEECH_MARKUP


class _Book:
    """Per-recording error bookkeeping: a bad line drops its recording (with ``skipped``) or raises."""

    def __init__(self, path: Path, skipped: list | None):
        self.path, self.skipped, self.bad = path, skipped, {}

    def fail(self, rec: str, err: CorpusError) -> None:
        if self.skipped is None:
            raise err
        if rec not in self.bad:
            self.bad[rec] = err
            self.skipped.append((str(self.path), f"{err} (recording {rec} skipped)"))


def _lines(path: Path, book: _Book):
    """``(line_number, fields)`` for every non-blank, non-comment line; undecodable lines go to ``book``."""
    if not path.is_file():
        raise CorpusError(path, "no such file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorpusError(path, f"cannot read: {err}") from err
    for i, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8-sig" if i == 1 else "utf-8")
        except UnicodeDecodeError as err:
            rec = raw.decode("utf-8", "replace").split(maxsplit=1)
            book.fail(rec[0] if rec else "?", CorpusError(path, f"not UTF-8 text: {err}", i))
            continue
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
    if not tokens:
        return ()
    d = (t1 - t0) / len(tokens)
    return tuple(Word(t0 + i * d, t0 + (i + 1) * d, tok) for i, tok in enumerate(tokens))


def channel_indices(values: dict[str, set[str]]) -> dict[str, int | None]:
    """Speaker -> 0-based channel index from the channel field values seen per speaker (module docstring)."""
    none = dict.fromkeys(values)
    if any(len(v) != 1 for v in values.values()):
        return none
    chans = {s: next(iter(v)) for s, v in values.items()}
    if len(set(chans.values())) < len(chans):
        return none
    if all(len(c) == 1 and c.isascii() and c.isalpha() for c in chans.values()):
        return {s: ord(c.upper()) - ord("A") for s, c in chans.items()}
    if all(c.isascii() and c.isdigit() for c in chans.values()):
        base = 0 if any(int(c) == 0 for c in chans.values()) else 1
        return {s: int(c) - base for s, c in chans.items()}
    return none


def _dialogues(book: _Book, corpus: str, recordings: dict[str, dict[str, list[Utterance]]],
               channel_values: dict[str, dict[str, set[str]]]) -> list[Dialogue]:
    out = []
    for rec, speakers in recordings.items():
        if rec in book.bad or not speakers:
            continue
        index = channel_indices({s: channel_values[rec][s] for s in speakers})
        channels = {s: Channel(s, sorted(u, key=lambda u: (u.start, u.end)), audio_channel=index[s])
                    for s, u in speakers.items()}
        duration = max(u.end for c in channels.values() for u in c.utterances)
        try:
            out.append(Dialogue(id=rec, corpus=corpus, channels=channels, duration=duration,
                                source=str(book.path)).validate())
        except CorpusError as err:
            book.fail(rec, err)
    if not out and not book.bad:
        raise CorpusError(book.path, "no segments")
    return out


def read_stm(path: str | Path, skipped: list | None = None) -> list[Dialogue]:
    """Read an STM file: one ``Dialogue`` (corpus ``"stm"``, id = ``<file>``) per recording, in file order.

    Channels are keyed by ``<speaker>``; each segment is one ``Utterance`` with evenly spread words.
    ``skipped``: see the module docstring (a bad line drops its recording only).
    """
    path = Path(path)
    book = _Book(path, skipped)
    recordings: dict[str, dict[str, list[Utterance]]] = defaultdict(lambda: defaultdict(list))
    channel_values: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for i, f in _lines(path, book):
        rec = f[0]
        try:
            if len(f) < 5:
                raise CorpusError(path, "expected at least 5 fields (file channel speaker begin end), "
                                        f"got {len(f)}", i)
            t0, t1 = _times(path, i, f[3], f[4], second_is_duration=False)
        except CorpusError as err:
            book.fail(rec, err)
            continue
        chan, speaker, tokens = f[1], f[2], f[5:]
        if tokens and _LABEL.match(tokens[0]):
            tokens = tokens[1:]  # the optional <o,f0,male> label
        if speaker.lower() in STM_SKIP_SPEAKERS or not tokens or \
                " ".join(tokens).lower() in STM_SKIP_TRANSCRIPTS or all(is_non_speech(t) for t in tokens):
            continue
        words = _spread(t0, t1, [t for t in tokens if not is_markup(t)])
        recordings[rec][speaker].append(Utterance(t0, t1, words=words))
        channel_values[rec][speaker].add(chan)
    return _dialogues(book, "stm", recordings, channel_values)


def read_rttm(path: str | Path, ipu_gap: float = 0.5, skipped: list | None = None) -> list[Dialogue]:
    """Read an RTTM file: one ``Dialogue`` (corpus ``"rttm"``, id = ``<file>``) per recording.

    Channels are keyed by ``<name>``. ``SPEAKER`` segments are utterances; ``LEXEME`` words fill them.
    ``skipped``: see the module docstring (a bad line drops its recording only).
    """
    path = Path(path)
    book = _Book(path, skipped)
    segments: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    lexemes: dict[str, dict[str, list[Word]]] = defaultdict(lambda: defaultdict(list))
    channel_values: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for i, f in _lines(path, book):
        rec = f[1] if len(f) > 1 else f[0]
        try:
            if len(f) not in (9, 10):
                raise CorpusError(path, "expected 10 fields (type file chnl tbeg tdur ortho stype name conf "
                                        f"slat), got {len(f)}", i)
            kind, name = f[0].upper(), f[7]
            if kind not in ("SPEAKER", "LEXEME"):
                continue
            t0, t1 = _times(path, i, f[3], f[4], second_is_duration=True)
        except CorpusError as err:
            book.fail(rec, err)
            continue
        channel_values[rec][name].add(f[2])
        if kind == "SPEAKER":
            segments[rec][name].append((t0, t1))
        elif f[6].lower() in RTTM_WORD_STYPES and f[5] != "<NA>":
            lexemes[rec][name].append(Word(t0, t1, f[5]))
    recordings: dict[str, dict[str, list[Utterance]]] = {}
    for rec in dict.fromkeys(list(segments) + list(lexemes)):
        recordings[rec] = {}
        for name in dict.fromkeys(list(segments[rec]) + list(lexemes[rec])):
            recordings[rec][name] = _fill(sorted(segments[rec][name]), lexemes[rec][name], ipu_gap)
    return _dialogues(book, "rttm", recordings, channel_values)


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
