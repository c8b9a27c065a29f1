"""Plain data objects every corpus reader produces (the lhotse way: readers know nothing of training).

Times are seconds on the dialogue's shared clock. A ``Dialogue`` has one ``Channel`` per speaker;
each channel holds that speaker's ``Utterance``s (with ``Word``s where the corpus has word timing)
and, optionally, per-frame audio features (``ChannelAudio``) on the 80 ms frame clock.
"""
from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from backchannel.frames import merge_intervals, num_frames

from .errors import CorpusError


@contextmanager
def gc_paused():
    """Pause the cyclic GC while a reader builds one dialogue's (acyclic) objects: halves load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class Word:
    """One word: ``start``/``end`` in seconds, ``text`` as transcribed."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Utterance:
    """A stretch of one speaker's speech: a Map Task move, an MRDA dialogue act, an STM segment.

    ``act`` is the corpus's own dialogue-act label (``"acknowledge"``, ``"s^bk"``) or None.
    ``gold_backchannel`` is the corpus tag's verdict: True (tagged backchannel), False (tagged as
    something else), None (the corpus has no dialogue-act tags).
    ``words`` may be empty for segment-level corpora (RTTM); ``start``/``end`` always hold.
    """

    start: float
    end: float
    words: tuple[Word, ...] = ()
    act: str | None = None
    gold_backchannel: bool | None = None

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    def speech_intervals(self) -> list[tuple[float, float]]:
        """Voiced spans: the words where timed, else the whole utterance."""
        if self.words:
            return [(w.start, w.end) for w in self.words]
        return [(self.start, self.end)]


@dataclass
class ChannelAudio:
    """Per-80 ms-frame audio features of one channel (``n`` frames each).

    ``vad``: fraction of the frame voiced by webrtcvad (0..1). ``f0_st``: F0 in semitones relative
    to the speaker's median F0, NaN where unvoiced. ``low_pitch``: Ward & Tsukahara's flag, F0 below
    the speaker's 26th percentile. ``intensity_db``: mean intensity in dB. ``voiced``: fraction of
    pitch analysis frames voiced (0..1). ``path``: the audio file; ``sample_rate`` in Hz; ``channel``:
    the index of this speaker's channel in that file (0 for a mono file).
    """

    vad: np.ndarray
    f0_st: np.ndarray
    low_pitch: np.ndarray
    intensity_db: np.ndarray
    voiced: np.ndarray
    path: str = ""
    sample_rate: int = 0
    duration: float = 0.0
    channel: int = 0

    @property
    def n_frames(self) -> int:
        return len(self.vad)


@dataclass
class Channel:
    """One speaker's side of a dialogue.

    ``audio_channel``: the index (0-based) of this speaker's channel in the recording's multi-channel
    audio file, where the transcript states it (the STM/RTTM channel field), else None.
    """

    speaker: str
    utterances: list[Utterance] = field(default_factory=list)
    audio: ChannelAudio | None = None
    audio_channel: int | None = None

    @property
    def words(self) -> list[Word]:
        return [w for u in self.utterances for w in u.words]

    def speech_intervals(self) -> list[tuple[float, float]]:
        """Merged voiced spans of this speaker (seconds)."""
        return merge_intervals(iv for u in self.utterances for iv in u.speech_intervals())


@dataclass
class Dialogue:
    """A conversation: ``channels`` keyed by speaker id, ``duration`` in seconds.

    ``corpus`` names the recipe (``maptask``, ``mrda``, ``textgrid``...), ``source`` the file the
    transcript came from, ``split`` the official split (``train``/``dev``/``test``) or None.
    """

    id: str
    corpus: str
    channels: dict[str, Channel]
    duration: float
    source: str = ""
    split: str | None = None

    @property
    def speakers(self) -> list[str]:
        return list(self.channels)

    @property
    def n_frames(self) -> int:
        return num_frames(self.duration)

    def floor(self, listener: str) -> Channel:
        """Everyone but ``listener`` merged into one channel: the party holding the floor.

        Two-party dialogues give the other speaker unchanged (audio included). Multi-party
        dialogues (MRDA) are projected to listener-vs-floor pairs: the floor channel's speech is the
        union of all other speakers' utterances; it carries no audio features.
        """
        others = [c for s, c in self.channels.items() if s != listener]
        if listener not in self.channels:
            raise KeyError(f"{self.id}: no speaker {listener!r} (have {self.speakers})")
        if len(others) == 1:
            return others[0]
        utts = sorted((u for c in others for u in c.utterances), key=lambda u: (u.start, u.end))
        return Channel(speaker="+".join(c.speaker for c in others), utterances=utts, audio=None)

    def pairs(self) -> Iterator[tuple[Channel, Channel]]:
        """``(listener, floor)`` for every speaker as listener, in speaker order."""
        for s in self.channels:
            yield self.channels[s], self.floor(s)

    def validate(self) -> "Dialogue":
        """Raise ``CorpusError`` on an empty dialogue, reversed or out-of-range times."""
        if not self.channels or not any(c.utterances for c in self.channels.values()):
            raise CorpusError(self.source or self.id, "empty dialogue: no timed speech")
        if not math.isfinite(self.duration) or self.duration <= 0:
            raise CorpusError(self.source or self.id, f"bad duration {self.duration}")
        for ch in self.channels.values():
            for u in ch.utterances:
                for t0, t1 in [(u.start, u.end)] + [(w.start, w.end) for w in u.words]:
                    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0 or t1 < t0:
                        raise CorpusError(self.source or self.id,
                                          f"speaker {ch.speaker}: reversed or invalid times {t0}..{t1}")
        return self

    def with_split(self, split: str | None) -> "Dialogue":
        return replace(self, split=split)
