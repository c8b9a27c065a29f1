"""Named conversational events mined from a Dialogue (times in seconds).

Produced by ``backchannel.corpora.mining``; consumed by labels, statistics and evaluation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ACTIONS = ("SILENT", "BACKCHANNEL", "TAKE_TURN")
SILENT, BACKCHANNEL, TAKE_TURN = 0, 1, 2


@dataclass(frozen=True)
class BackchannelEvent:
    """A listener backchannel.

    ``form``: normalised words (``"uh-huh"`` -> ``"uhhuh"``); ``bc_type``: one of ``lexicon.BC_TYPES``;
    ``source``: ``"tag"`` (the corpus's dialogue-act tag says backchannel) or ``"lexicon"`` (our
    lexicon + size rule, corpus has no tag or the tag is ignored); ``lexical``: whether the lexicon
    rule also accepts it; ``in_overlap``: the floor party is speaking at the onset;
    ``since_speaker_end``: onset minus the end of the floor party's last speech before the onset
    (negative never; 0.0 when in overlap; NaN when the floor party has not spoken yet).
    """

    listener: str
    onset: float
    offset: float
    form: str
    bc_type: str
    source: str
    lexical: bool
    in_overlap: bool
    since_speaker_end: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TurnEvent:
    """The listener takes the floor with a non-backchannel stretch of speech.

    ``kind``: ``"shift"`` (starts after the floor party fell silent; ``gap`` = onset - their last
    speech end, > 0) or ``"interruption"`` (starts while the floor party speaks; ``gap`` < 0 is
    minus the overlap length up to the floor party's end of that stretch, or the time overlapped).
    ``offset``: end of the listener's inter-pausal unit that takes the turn (NaN when unknown).
    """

    listener: str
    onset: float
    kind: str
    gap: float
    offset: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Pause:
    """A silence inside the floor party's turn (``kind="hold"``: they resume, the listener did not
    take the turn) or one that ends in a shift (``kind="shift"``). ``start``/``end`` in seconds."""

    start: float
    end: float
    kind: str

    @property
    def duration(self) -> float:
        return self.end - self.start
