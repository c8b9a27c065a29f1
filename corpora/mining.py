"""Event mining: backchannels, take-turns and pauses of one listener against the floor party.

Pure functions of a ``Dialogue`` or of a ``(listener, floor)`` ``Channel`` pair (VAP ``events.py``
style). Times are seconds. Speech is the words' spans (an utterance's span where it has no words).
``floor`` is the other speaker, or, in multi-party dialogues, the union of all other speakers
(``Dialogue.floor``). Comparisons of times allow ``EPS`` (1 microsecond) of float error.

Every threshold is a field of one ``LabelSettings`` (``corpora.events``); each function takes that
object (None: the defaults). Exact rules (defaults in brackets):

* **IPU** (inter-pausal unit): a speaker's speech spans joined across pauses shorter than ``pause``
  [0.2 s]; a pause of ``pause`` or more separates two IPUs.
* **Backchannel** candidate: one listener ``Utterance`` whose words (after
  ``lexicon.normalize_form``) are at most ``max_words`` [3] and whose spoken span (first word start
  to last word end) lasts at most ``max_duration`` [1.0 s], which is not hesitation fillers alone
  (``lexicon.is_filler_only``: "uh", "um", "er"), and which does not claim the floor.
  It *claims the floor* when the listener's next utterance starts less than ``continue_gap``
  [0.5 s] after its offset and the floor party neither is speaking at its offset nor starts
  speaking between its onset and that next utterance.
  A candidate is a backchannel with ``source="tag"`` when ``use_tags`` and the corpus tags the
  utterance (``gold_backchannel`` True; tagged False means not a backchannel); when the corpus has
  no tag (``gold_backchannel`` None) or ``use_tags`` is False, with ``source="lexicon"`` when
  ``lexicon.is_lexical_backchannel`` accepts its words.
  ``in_overlap``: the floor party is voiced at the onset (word level, no pause bridging).
  Its ``bc_type`` is ``lexicon.backchannel_type`` of its words (``ECHO`` when no lexicon word).
* **Isolated** backchannel (Ruede et al. 2017), ``backchannel_kinds``: a candidate for which all three
  hold: (1) the listener has no speech in the ``isolation_before`` [1.0 s] before its onset (the
  listener's previous speech ends at least that long before; no earlier speech counts as silence);
  (2) none in the ``isolation_after`` [1.0 s] after its offset (the end of the dialogue counts as
  silence); (3) the floor party (all its speech, backchannels included) is speaking at the onset or
  stopped at most ``floor_within`` [1.5 s] before it (``since_speaker_end <= floor_within``). The
  listener's speech is all of its speech spans outside the candidate's own ``[onset, offset]``.
  A candidate that is not isolated is **turn-initial** when the listener's next take-turn (below)
  starting at or after the candidate's onset starts less than ``isolation_after`` after its offset
  (the listener goes on into a turn: "okay, so ..."); otherwise it is **other** (e.g. a second
  backchannel follows, the listener was speaking just before, or the floor party was silent).
* **Take-turn**: the listener's speech without its backchannel candidates is cut into IPUs (``pause``).
  An IPU starting at ``s`` takes the turn when the floor party's non-backchannel speech has a span
  that starts before ``s`` and ends after the end of the listener's previous non-backchannel IPU
  (the floor party spoke last; otherwise the IPU continues the listener's own turn, e.g. across
  the floor party's backchannels). It is an ``interruption`` when ``s`` lies inside a floor IPU
  (non-backchannel speech, joined across pauses < ``pause``); ``gap`` = ``s`` - that IPU's end
  (< 0). Otherwise it is a ``shift``; ``gap`` = ``s`` - the floor party's last speech end (>= 0).
* **Pause**: a mutual silence (neither party voiced, backchannels included) of at least ``pause``
  that starts where the floor party's non-backchannel speech ends (and the listener was not the
  one who stopped there). ``shift`` when the listener's next take-turn after its start is a shift
  that comes before the floor party's next non-backchannel speech; ``hold`` when the floor party's
  non-backchannel speech resumes first. Any other silence (e.g. the dialogue ends) is not mined.
* **Turn-transition gap**: the ``gap`` of every shift, and of every interruption after which the
  floor party stops before the listener's IPU ends (between-speaker overlap, Heldner & Edlund 2010).
"""
from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np

from backchannel.lexicon import backchannel_type, is_filler_only, is_lexical_backchannel, normalize_form

from .dialogue import Channel, Dialogue, Utterance
from .events import BackchannelEvent, LabelSettings, Pause, TurnEvent

EPS = 1e-6  # seconds

_EMPTY = np.zeros((0, 2), dtype=np.float64)


# --------------------------------------------------------------------------- speech spans
def speech_spans(channel: Channel) -> np.ndarray:
    """Voiced spans ``[k, 2]`` (seconds) of ``channel``: every word, or the utterance where untimed."""
    spans = [iv for u in channel.utterances for iv in u.speech_intervals()]
    return _sorted(np.asarray(spans, dtype=np.float64).reshape(-1, 2))


def merge_spans(spans: np.ndarray, gap: float = 0.0) -> np.ndarray:
    """Union of ``spans`` ``[k, 2]``; spans separated by a pause shorter than ``gap`` s are joined.

    Touching or overlapping spans are always joined; a pause of ``gap`` or more separates.
    """
    if len(spans) == 0:
        return _EMPTY
    spans = _sorted(spans)
    ends = np.maximum.accumulate(spans[:, 1])
    pause = spans[1:, 0] - ends[:-1]
    new = np.concatenate([[True], pause >= max(gap - EPS, EPS)])
    first = np.flatnonzero(new)
    last = np.concatenate([first[1:] - 1, [len(spans) - 1]])
    return np.stack([spans[first, 0], ends[last]], axis=1)


def ipus(channel: Channel, settings: LabelSettings | dict | None = None) -> list[tuple[float, float]]:
    """Inter-pausal units ``(start, end)`` (seconds): speech joined across pauses < ``settings.pause``."""
    cfg = LabelSettings.of(settings)
    return [(float(s), float(e)) for s, e in merge_spans(speech_spans(channel), cfg.pause)]


def _sorted(spans: np.ndarray) -> np.ndarray:
    if len(spans) < 2:
        return spans
    return spans[np.lexsort((spans[:, 1], spans[:, 0]))]


def _without(spans: np.ndarray, events) -> np.ndarray:
    """``spans`` minus those lying inside a backchannel ``[onset, offset]``."""
    if len(spans) == 0 or not events:
        return spans
    on = np.array([e.onset for e in events])
    off = np.array([e.offset for e in events])
    order = np.argsort(on)
    on, off = on[order], off[order]
    k = np.searchsorted(on, spans[:, 0] + EPS, side="right") - 1
    kk = np.maximum(k, 0)
    inside = (k >= 0) & (spans[:, 1] <= off[kk] + EPS)
    return spans[~inside]


def _speaking_at(merged: np.ndarray, t: float) -> tuple[bool, float]:
    """(a span of ``merged`` (sorted, disjoint) is open at ``t``, end of the last span started by ``t``)."""
    k = int(np.searchsorted(merged[:, 0], t, side="right")) - 1 if len(merged) else -1
    if k < 0:
        return False, math.nan
    end = float(merged[k, 1])
    return end > t + EPS, end


# --------------------------------------------------------------------------- backchannels
def _span(u: Utterance) -> tuple[float, float]:
    if u.words:
        return u.words[0].start, max(w.end for w in u.words)
    return u.start, u.end


# A backchannel before its kind is known (that needs the listener's take-turns); fields as BackchannelEvent.
_Candidate = namedtuple("_Candidate", "onset offset form bc_type source lexical")


def _candidates(listener: Channel, floor_merged: np.ndarray, cfg: LabelSettings):
    """Yield ``(utt, onset, offset, tag, lexical)`` for short listener utterances not claiming the floor."""
    utts = sorted((u for u in listener.utterances if u.words or u.end > u.start), key=_span)
    spans = [_span(u) for u in utts]
    f_starts = floor_merged[:, 0]
    for i, (u, (onset, offset)) in enumerate(zip(utts, spans)):
        if offset - onset > cfg.max_duration + EPS or len(u.words) > 4 * cfg.max_words:
            continue
        words = [w.text for w in u.words]
        n_words = len(normalize_form(words).split())
        if u.words and (n_words > cfg.max_words or is_filler_only(words)):
            continue
        nxt = spans[i + 1][0] if i + 1 < len(spans) else math.inf
        if nxt - offset < cfg.continue_gap - EPS:  # the listener goes on: backchannel only if the floor does too
            ongoing, _ = _speaking_at(floor_merged, offset)
            j = int(np.searchsorted(f_starts, onset - EPS, side="left"))
            if not ongoing and not (j < len(f_starts) and f_starts[j] < nxt - EPS):
                continue
        lexical = bool(u.words) and is_lexical_backchannel(words, cfg.max_words)
        yield u, onset, offset, u.gold_backchannel is True, lexical


def _mine_candidates(listener: Channel, floor_merged: np.ndarray, cfg: LabelSettings):
    """``(candidates, source counts)`` of the listener against the floor party's merged speech."""
    cands, counts = [], {"tag": 0, "lexicon": 0, "both": 0, "tag_only": 0, "lexicon_only": 0}
    for u, onset, offset, tag, lexical in _candidates(listener, floor_merged, cfg):
        counts["tag"] += tag
        counts["lexicon"] += lexical
        counts["both"] += tag and lexical
        counts["tag_only"] += tag and not lexical
        counts["lexicon_only"] += lexical and not tag
        if cfg.use_tags and u.gold_backchannel is not None:
            if not tag:
                continue
            source = "tag"
        elif lexical:
            source = "lexicon"
        else:
            continue
        words = [w.text for w in u.words]
        cands.append(_Candidate(float(onset), float(offset), normalize_form(words), backchannel_type(words),
                                source, lexical))
    return cands, counts


def backchannel_kinds(onsets, offsets, since_speaker_end, listener_speech: np.ndarray, next_turn_onsets,
                      settings: LabelSettings | dict | None = None) -> list[str]:
    """``"isolated"``, ``"turn_initial"`` or ``"other"`` for each candidate ``[onset, offset]`` (seconds).

    ``since_speaker_end``: as ``BackchannelEvent`` (0 in overlap, NaN when the floor party has not
    spoken); ``listener_speech``: the listener's merged speech spans ``[k, 2]`` (``merge_spans``),
    the candidates' own included; ``next_turn_onsets``: the listener's first take-turn onset at or
    after each onset (``inf`` when none). Rule: module docstring.
    """
    cfg = LabelSettings.of(settings)
    on, off = np.asarray(onsets, dtype=np.float64), np.asarray(offsets, dtype=np.float64)
    since, next_turn = np.asarray(since_speaker_end, dtype=np.float64), np.asarray(next_turn_onsets, np.float64)
    starts = np.append(listener_speech[:, 0], math.inf)
    ends = np.append(-math.inf, listener_speech[:, 1])
    prev_end = ends[np.searchsorted(listener_speech[:, 0], on - EPS, side="left")]  # last span starting before
    next_start = starts[np.searchsorted(listener_speech[:, 1], off + EPS, side="right")]  # first ending after
    isolated = ((on - prev_end >= cfg.isolation_before - EPS) & (next_start - off >= cfg.isolation_after - EPS)
                & (since <= cfg.floor_within + EPS))  # NaN: the floor party has not spoken, False
    turn_initial = ~isolated & (next_turn - off < cfg.isolation_after - EPS)
    return np.where(isolated, "isolated", np.where(turn_initial, "turn_initial", "other")).tolist()


def _backchannel_events(listener: str, cands: list[_Candidate], l_merged: np.ndarray, f_merged: np.ndarray,
                        turns: list[TurnEvent], cfg: LabelSettings) -> list[BackchannelEvent]:
    """Candidates as events: overlap, time since the floor party's speech, and kind (``backchannel_kinds``)."""
    if not cands:
        return []
    on = np.array([c.onset for c in cands])
    k = np.searchsorted(f_merged[:, 0], on, side="right") - 1  # last floor span started by the onset
    last_end = np.where(k >= 0, np.append(f_merged[:, 1], math.nan)[k], math.nan)
    in_overlap = last_end > on + EPS
    since = np.where(in_overlap, 0.0, np.maximum(on - last_end, 0.0))  # NaN where the floor has not spoken
    turn_on = np.append(np.sort(np.array([t.onset for t in turns], dtype=np.float64)), math.inf)
    next_turn = turn_on[np.searchsorted(turn_on, on - EPS, side="left")]
    kinds = backchannel_kinds(on, [c.offset for c in cands], since, l_merged, next_turn, cfg)
    return [BackchannelEvent(listener=listener, onset=c.onset, offset=c.offset, form=c.form, bc_type=c.bc_type,
                             source=c.source, lexical=c.lexical, in_overlap=bool(o), since_speaker_end=float(x),
                             kind=kind)
            for c, o, x, kind in zip(cands, in_overlap, since, kinds)]


def mine_backchannels(listener: Channel, floor: Channel,
                      settings: LabelSettings | dict | None = None) -> list[BackchannelEvent]:
    """The listener's backchannels against ``floor`` (rules in the module docstring), in onset order.

    Their ``kind`` needs the listener's take-turns: those are mined too, with the floor party's
    backchannels mined with the roles swapped (exact for two parties; ``mine_dialogue`` mines them
    per speaker).
    """
    cfg = LabelSettings.of(settings)
    l_all, f_all = speech_spans(listener), speech_spans(floor)
    l_merged, f_merged = merge_spans(l_all), merge_spans(f_all)
    cands = _mine_candidates(listener, f_merged, cfg)[0]
    floor_cands = _mine_candidates(floor, l_merged, cfg)[0]
    turns = _mine_turns(listener.speaker, _without(l_all, cands), _without(f_all, floor_cands), cfg.pause)
    return _backchannel_events(listener.speaker, cands, l_merged, f_merged, turns, cfg)


def count_backchannel_sources(listener: Channel, floor: Channel,
                              settings: LabelSettings | dict | None = None) -> dict[str, int]:
    """Short, non-floor-claiming listener utterances by verdict, for gold-tag vs lexicon side by side.

    Keys: ``tag`` (corpus-tagged backchannel), ``lexicon`` (lexicon rule), ``both``, ``tag_only``,
    ``lexicon_only``.
    """
    return _mine_candidates(listener, merge_spans(speech_spans(floor)), LabelSettings.of(settings))[1]


# --------------------------------------------------------------------------- turns and pauses
def _mine_turns(listener: str, l_speech: np.ndarray, f_speech: np.ndarray, pause: float) -> list[TurnEvent]:
    """Take-turns from the listener's and floor's non-backchannel raw spans (rules in module docstring)."""
    l_ipu = merge_spans(l_speech, pause)
    f_merged, f_ipu = merge_spans(f_speech), merge_spans(f_speech, pause)
    if len(l_ipu) == 0 or len(f_merged) == 0:
        return []
    s = l_ipu[:, 0]
    prev_end = np.concatenate([[-math.inf], l_ipu[:-1, 1]])
    k = np.searchsorted(f_merged[:, 0], s - EPS, side="left") - 1  # last floor span starting before s
    takes = (k >= 0) & (f_merged[np.maximum(k, 0), 1] > prev_end + EPS)
    k2 = np.searchsorted(f_ipu[:, 0], s - EPS, side="left") - 1
    floor_end = f_ipu[np.maximum(k2, 0), 1]
    turns = []
    for i in np.flatnonzero(takes):
        gap = float(s[i] - floor_end[i])
        kind = "interruption" if gap < -EPS else "shift"
        gap = gap if kind == "interruption" else max(gap, 0.0)
        turns.append(TurnEvent(listener, float(s[i]), kind, gap, offset=float(l_ipu[i, 1])))
    return turns


def _mine_pauses(l_all: np.ndarray, f_all: np.ndarray, f_speech: np.ndarray, turns: list[TurnEvent],
                 pause: float) -> list[Pause]:
    """Hold/shift pauses from raw spans: both parties' speech, the floor's non-backchannel speech."""
    both = merge_spans(np.concatenate([l_all, f_all]))
    f_merged, l_merged = merge_spans(f_speech), merge_spans(l_all)
    if len(both) < 2 or len(f_merged) == 0:
        return []
    a, b = both[:-1, 1], both[1:, 0]  # mutual silences
    keep = b - a >= pause - EPS
    a, b = a[keep], b[keep]
    k = np.searchsorted(f_merged[:, 1], a - EPS, side="left")  # floor span ending at a?
    f_end = np.append(f_merged[:, 1], math.inf)[k]
    kl = np.searchsorted(l_merged[:, 1], a - EPS, side="left")  # listener span ending at a too?
    l_end = np.append(l_merged[:, 1], math.inf)[kl]
    ok = (np.abs(f_end - a) <= EPS) & (np.abs(l_end - a) > EPS)
    f_next = np.append(f_merged[:, 0], [math.inf, math.inf])[k + 1]
    turns = sorted(turns, key=lambda x: x.onset)
    t_on = np.array([x.onset for x in turns] + [math.inf])
    t_shift = np.array([x.kind == "shift" for x in turns] + [False])
    j = np.searchsorted(t_on, a + EPS, side="left")
    t_next = t_on[j]
    shift = ok & (t_next < f_next - EPS) & t_shift[j]
    hold = ok & (f_next < t_next - EPS)
    return [Pause(float(x), float(y), "shift" if s else "hold")
            for x, y, s, h in zip(a.tolist(), b.tolist(), shift.tolist(), hold.tolist()) if s or h]


# --------------------------------------------------------------------------- per dialogue
@dataclass
class ListenerEvents:
    """Everything mined for one listener against the floor party (``floor``: its speaker id)."""

    listener: str
    floor: str
    backchannels: list[BackchannelEvent]
    turns: list[TurnEvent]
    pauses: list[Pause]
    source_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class DialogueEvents:
    """Per-listener events of one dialogue, keyed by listener id, and the settings used to mine them."""

    dialogue: str
    listeners: dict[str, ListenerEvents]
    settings: LabelSettings = field(default_factory=LabelSettings)

    def __getitem__(self, listener: str) -> ListenerEvents:
        return self.listeners[listener]


def mine_dialogue(dialogue: Dialogue, settings: LabelSettings | dict | None = None) -> DialogueEvents:
    """Mine every speaker as listener against the floor party (all the others); times in seconds."""
    cfg = LabelSettings.of(settings)
    speakers = dialogue.speakers
    spans = {s: speech_spans(c) for s, c in dialogue.channels.items()}
    for s, x in spans.items():
        if not np.isfinite(x).all():
            raise ValueError(f"{dialogue.source or dialogue.id}: speaker {s}: NaN/inf in speech times")

    def others(table, s):
        rest = [table[o] for o in speakers if o != s]
        return _sorted(np.concatenate(rest)) if rest else _EMPTY

    cands, counts, f_merged = {}, {}, {}
    for s in speakers:
        f_merged[s] = merge_spans(others(spans, s))
        cands[s], counts[s] = _mine_candidates(dialogue.channels[s], f_merged[s], cfg)
    substantive = {s: _without(spans[s], cands[s]) for s in speakers}
    out = {}
    for s in speakers:
        f_all, f_speech = others(spans, s), others(substantive, s)
        turns = _mine_turns(s, substantive[s], f_speech, cfg.pause)
        pauses = _mine_pauses(spans[s], f_all, f_speech, turns, cfg.pause)
        bcs = _backchannel_events(s, cands[s], merge_spans(spans[s]), f_merged[s], turns, cfg)
        floor_id = "+".join(o for o in speakers if o != s)
        out[s] = ListenerEvents(s, floor_id, bcs, turns, pauses, counts[s])
    return DialogueEvents(dialogue.id, out, cfg)


def turn_transition_gaps(dialogue: Dialogue, events: DialogueEvents | None = None,
                         settings: LabelSettings | dict | None = None) -> list[float]:
    """Floor-transfer offsets (seconds; > 0 gaps, < 0 overlaps) of all speakers, in onset order."""
    events = events if events is not None else mine_dialogue(dialogue, settings)
    turns = sorted((t for ev in events.listeners.values() for t in ev.turns), key=lambda t: t.onset)
    return [t.gap for t in turns if t.kind == "shift" or t.onset - t.gap < t.offset - EPS]
