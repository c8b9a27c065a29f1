"""Praat TextGrid reader (via praatio): one interval tier per speaker, one interval per word.

A forced aligner (Montreal Forced Aligner, WebMAUS) or a hand transcription in Praat gives a TextGrid
whose tiers name the speakers (``A``, ``B``) and whose non-empty intervals are words. Words of one
speaker separated by less than ``ipu_gap`` (0.5 s) are grouped into one ``Utterance`` (an
inter-pausal unit, IPU). Point tiers are ignored. MFA's multi-speaker layout (tiers
``"<speaker> - words"`` and ``"<speaker> - phones"``) is recognised: only the word tiers are read and
the speaker is the part before `` - words``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from praatio import textgrid as praat_textgrid
from praatio.data_classes.interval_tier import IntervalTier

from .dialogue import Channel, Dialogue, Utterance, Word
from .errors import CorpusError

IPU_GAP_S = 0.5  # seconds: a silence at least this long ends an inter-pausal unit
# Labels forced aligners write for silence/pauses; they are not words.
SILENCE_LABELS = frozenset({"sil", "sp", "<sil>", "#", "<p:>", "{sl}", "[sil]"})
_MFA_WORDS = " - words"


def group_ipus(words: Iterable[Word], gap: float = IPU_GAP_S) -> list[Utterance]:
    """Group time-sorted words into inter-pausal units: a new unit starts after a gap >= ``gap`` s."""
    units: list[list[Word]] = []
    ends: list[float] = []
    for w in sorted(words, key=lambda w: (w.start, w.end)):
        if units and w.start - ends[-1] < gap:
            units[-1].append(w)
            ends[-1] = max(ends[-1], w.end)
        else:
            units.append([w])
            ends.append(w.end)
    return [Utterance(start=u[0].start, end=e, words=tuple(u)) for u, e in zip(units, ends, strict=True)]


def _speaker_tiers(tg, path: Path, speakers: Sequence[str] | None) -> dict[str, IntervalTier]:
    """``speaker -> interval tier``; a requested speaker may be named by speaker or by tier name."""
    interval = {name: tg.getTier(name) for name in tg.tierNames if isinstance(tg.getTier(name), IntervalTier)}
    mfa = {n[: -len(_MFA_WORDS)]: t for n, t in interval.items() if n.endswith(_MFA_WORDS)}
    by_speaker = mfa or interval
    if speakers is None:
        return by_speaker
    out = {}
    for s in speakers:
        if s in by_speaker:
            out[s] = by_speaker[s]
        elif s in interval:
            out[s] = interval[s]
        else:
            raise CorpusError(path, f"no interval tier {s!r} (tiers: {', '.join(tg.tierNames) or 'none'})")
    return out


def read_textgrid(path: str | Path, speakers: Sequence[str] | None = None,
                  dialogue_id: str | None = None, ipu_gap: float = IPU_GAP_S) -> Dialogue:
    """Read a TextGrid into a ``Dialogue`` (corpus ``"textgrid"``, id = file stem unless given).

    ``speakers`` picks tiers (by speaker or tier name), in that order; default: every interval
    tier. Intervals labelled with a silence label (``sil``, ``sp``, ...) are skipped. The dialogue
    lasts until the TextGrid's ``xmax`` (seconds).
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, "no such file")
    try:
        tg = praat_textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence")
    except Exception as err:  # praatio raises ParsingError, IndexError, ValueError... on bad input
        raise CorpusError(path, f"malformed TextGrid: {type(err).__name__}: {err}") from err
    tiers = _speaker_tiers(tg, path, speakers)
    if not tiers:
        raise CorpusError(path, "no interval tiers")
    channels = {}
    for speaker, tier in tiers.items():
        words = [Word(float(iv.start), float(iv.end), iv.label.strip()) for iv in tier.entries
                 if iv.label.strip() and iv.label.strip().lower() not in SILENCE_LABELS]
        channels[speaker] = Channel(speaker=speaker, utterances=group_ipus(words, ipu_gap))
    end = max([float(tg.maxTimestamp)] + [u.end for c in channels.values() for u in c.utterances])
    return Dialogue(id=dialogue_id or path.stem, corpus="textgrid", channels=channels, duration=end,
                    source=str(path)).validate()
