"""Named conversational events mined from a Dialogue (times in seconds), and the one set of settings
that defines them.

Produced by ``backchannel.corpora.mining``; consumed by labels, statistics and evaluation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

ACTIONS = ("SILENT", "BACKCHANNEL", "TAKE_TURN")
SILENT, BACKCHANNEL, TAKE_TURN = 0, 1, 2
IGNORE = -1  # frame action with no target: left out of the action loss and of frame metrics

BC_KINDS = ("isolated", "turn_initial", "other")  # BackchannelEvent.kind (rule: mining.backchannel_kinds)
BC_DEFINITIONS = ("isolated", "all")  # which candidates label BACKCHANNEL frames
NON_ISOLATED = ("turn_or_mask", "silent")  # what the other candidates label under "isolated"


@dataclass(frozen=True)
class LabelSettings:
    """Every threshold of event mining and frame labelling; one object for mining, framing, dataset
    building and ``corpus stats``, recorded in ``manifest.json`` as ``label_settings``.

    Seconds and words. ``horizon``: a frame carries the action whose onset lies in the next
    ``horizon``. ``pause``: IPU pause. ``max_words``, ``max_duration``, ``continue_gap``, ``use_tags``:
    the backchannel candidate rule. ``isolation_before`` / ``isolation_after`` / ``floor_within``: the
    isolated-backchannel rule (Ruede et al. 2017). ``bc_definition``: ``"isolated"`` (only isolated
    candidates label BACKCHANNEL frames) or ``"all"`` (every candidate does). ``non_isolated`` (under
    ``"isolated"``): ``"turn_or_mask"`` (turn-initial candidates label TAKE_TURN frames, the others
    ``IGNORE``) or ``"silent"`` (they label nothing). Exact rules: ``mining`` module docstring and
    ``framing.action_onsets``.
    """

    horizon: float = 0.5
    pause: float = 0.2
    max_words: int = 3
    max_duration: float = 1.0
    continue_gap: float = 0.5
    use_tags: bool = True
    isolation_before: float = 1.0
    isolation_after: float = 1.0
    floor_within: float = 1.5
    bc_definition: str = "isolated"
    non_isolated: str = "turn_or_mask"

    def __post_init__(self) -> None:
        for name in ("horizon", "pause", "max_duration", "continue_gap", "isolation_before", "isolation_after",
                     "floor_within"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                raise ValueError(f"label setting {name} must be a finite number of seconds >= 0, got {x!r}")
        if self.horizon <= 0 or self.pause <= 0:
            raise ValueError(f"label settings horizon and pause must be > 0 s, got {self.horizon}, {self.pause}")
        if isinstance(self.max_words, bool) or not isinstance(self.max_words, int) or self.max_words < 1:
            raise ValueError(f"label setting max_words must be a whole number >= 1, got {self.max_words!r}")
        if not isinstance(self.use_tags, bool):
            raise TypeError(f"label setting use_tags must be true or false, got {self.use_tags!r}")
        for name, allowed in (("bc_definition", BC_DEFINITIONS), ("non_isolated", NON_ISOLATED)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"label setting {name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def of(cls, settings: LabelSettings | dict | None) -> LabelSettings:
        """``settings`` as a ``LabelSettings`` (None: the defaults; a dict: those fields overridden)."""
        if settings is None or isinstance(settings, cls):
            return settings or cls()
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            known = [f.name for f in fields(cls)]
            raise ValueError(f"unknown label settings {sorted(unknown)}; known: {known}")
        return cls(**settings)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BackchannelEvent:
    """A listener backchannel.

    ``form``: normalised words (``"uh-huh"`` -> ``"uhhuh"``); ``bc_type``: one of ``lexicon.BC_TYPES``;
    ``source``: ``"tag"`` (the corpus's dialogue-act tag says backchannel) or ``"lexicon"`` (our
    lexicon + size rule, corpus has no tag or the tag is ignored); ``lexical``: whether the lexicon
    rule also accepts it; ``in_overlap``: the floor party is speaking at the onset;
    ``since_speaker_end``: onset minus the end of the floor party's last speech before the onset
    (negative never; 0.0 when in overlap; NaN when the floor party has not spoken yet); ``kind``: one
    of ``BC_KINDS`` (``mining.backchannel_kinds``): ``"isolated"`` (Ruede et al. 2017), else
    ``"turn_initial"`` (the listener takes the turn right after it) or ``"other"``. ``bc_type`` is
    ``lexicon.ECHO`` for a tagged repeat with no lexicon word ("south"): kept for timing, no type.
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
    kind: str

    @property
    def isolated(self) -> bool:
        return self.kind == "isolated"

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
