"""Per-listener, per-80 ms-frame streams and labels (the frame clock is ``backchannel.frames``).

``frame_listener`` turns one listener of a ``Dialogue`` and its mined events into arrays of
``dialogue.n_frames`` frames: voice activity of listener and floor party (fraction voiced), prosody
(masked where there is no audio), the text stream (a word is visible from its end time), the
action label per frame and the backchannel type, plus the event lists evaluation needs. Which
events label which frames is ``action_onsets`` (the backchannel definition) and ``label_frames``
(the horizon). NaN never leaves this module: a NaN or infinite feature raises ``ValueError``.

The listener's input streams (``va_listener``, ``text_listener``) leave out its backchannel candidates:
they are what is predicted, so a model must not hear them (a live listener is the bot, whose own
backchannels have not happened yet when it decides). The rest of its speech stays: a bot knows what it
said. The floor party's streams are whole.
"""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from backchannel.frames import PROSODY_DIM, PROSODY_STREAMS, interval_activity, time_to_frame, times_to_frames
from backchannel.lexicon import BC_TYPE_INDEX

from .dialogue import ChannelAudio, Dialogue
from .events import BACKCHANNEL, IGNORE, SILENT, TAKE_TURN, BackchannelEvent, LabelSettings, TurnEvent
from .mining import DialogueEvents, ListenerEvents, _without, merge_spans, speech_spans


def action_onsets(backchannels: list[BackchannelEvent], turns: list[TurnEvent],
                  settings: LabelSettings | None = None) -> tuple[dict[int, list[float]], list[int]]:
    """The label rule: onsets (s) per frame action, for ``label_frames``, and for each BACKCHANNEL onset
    its index in ``backchannels``.

    ``bc_definition="all"``: every candidate is a BACKCHANNEL onset, every take-turn a TAKE_TURN onset.
    ``"isolated"``: only isolated candidates are BACKCHANNEL onsets; with ``non_isolated="turn_or_mask"``
    a turn-initial candidate's onset is a TAKE_TURN onset too (the take-turn starts with the
    acknowledgement; the turn's own onset stays one) and an ``"other"`` candidate's onset is an
    ``IGNORE`` onset (its frames leave the action loss); with ``"silent"`` they label nothing.
    """
    cfg = LabelSettings.of(settings)
    take_turn = sorted(t.onset for t in turns)
    if cfg.bc_definition == "all":
        return {BACKCHANNEL: [b.onset for b in backchannels], TAKE_TURN: take_turn}, list(range(len(backchannels)))
    labelled = [i for i, b in enumerate(backchannels) if b.kind == "isolated"]
    onsets = {BACKCHANNEL: [backchannels[i].onset for i in labelled], TAKE_TURN: take_turn}
    if cfg.non_isolated == "turn_or_mask":
        onsets[TAKE_TURN] = sorted(take_turn + [b.onset for b in backchannels if b.kind == "turn_initial"])
        onsets[IGNORE] = [b.onset for b in backchannels if b.kind == "other"]
    return onsets, labelled


def label_frames(onsets_by_action: dict[int, list[float]], n: int, horizon: float = LabelSettings.horizon):
    """Action per frame from onsets (seconds): ``(action int8 [n], event int32 [n])``.

    The decision for frame ``t`` is made at its end, ``0.08 (t + 1)`` s, so frame ``t`` carries an
    action when one of its onsets lies in ``[0.08 (t + 1), 0.08 (t + 1) + horizon)``. When several
    onsets fall in one frame's horizon the earliest wins (equal onsets: the higher action, i.e.
    ``TAKE_TURN`` over ``BACKCHANNEL`` over ``IGNORE``). ``event[t]`` is the winning onset's index in
    its action's list (-1 where ``SILENT``). An ``IGNORE`` (-1) key labels its frames -1.
    """
    action = np.full(n, SILENT, dtype=np.int8)
    event = np.full(n, -1, dtype=np.int32)
    items = [(float(o), a, i) for a, onsets in onsets_by_action.items() for i, o in enumerate(onsets)]
    # Latest first, so earlier onsets (and, at equal onsets, higher actions) overwrite later ones.
    for onset, a, i in sorted(items, key=lambda x: (-x[0], x[1])):
        first = max(time_to_frame(onset - horizon), 0)  # first t with frame_end(t) > onset - horizon
        last = min(time_to_frame(onset) - 1, n - 1)  # last t with frame_end(t) <= onset
        if first <= last:
            action[first : last + 1] = a
            event[first : last + 1] = i
    return action, event


def text_stream(words, n: int) -> list[str]:
    """Words visible at each of ``n`` frames: a word goes in the frame holding its end time (space-joined)."""
    return _text_stream(_word_table(words), n)


def _word_table(words) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(ends, starts, texts)`` of ``words`` (seconds)."""
    words = list(words)
    ends = np.fromiter((w.end for w in words), dtype=np.float64, count=len(words))
    starts = np.fromiter((w.start for w in words), dtype=np.float64, count=len(words))
    return ends, starts, [w.text.strip() for w in words]


def _words_outside(table, events):
    """The word table without the words lying inside an event's ``[onset, offset]``."""
    ends, starts, texts = table
    if not events or len(ends) == 0:
        return table
    inside = np.zeros(len(ends), dtype=bool)
    for e in events:
        inside |= (starts >= e.onset - 1e-6) & (ends <= e.offset + 1e-6)
    keep = ~inside
    return ends[keep], starts[keep], [t for t, k in zip(texts, keep) if k]


def _text_stream(table, n: int) -> list[str]:
    ends, starts, texts = table
    out = [""] * n
    if len(ends) == 0 or n == 0:
        return out
    order = np.lexsort((starts, ends))
    frames = np.minimum(times_to_frames(ends[order]), n - 1)
    keep = [i for i, j in enumerate(order.tolist()) if texts[j] and frames[i] >= 0]
    if not keep:
        return out
    frames = frames[keep].tolist()
    words = [texts[j] for j in order[keep].tolist()]
    cuts = [0] + [i for i in range(1, len(frames)) if frames[i] != frames[i - 1]] + [len(frames)]
    for a, b in itertools.pairwise(cuts):
        out[frames[a]] = " ".join(words[a:b])
    return out


def _audio_frames(audio: ChannelAudio, n: int, where: str):
    """``(vad [n], prosody [n, 4], mask [n, 4])`` from per-frame audio features, padded/cut to n frames."""
    streams = [np.asarray(getattr(audio, name), dtype=np.float64) for name in ("vad",) + PROSODY_STREAMS]
    for name, x in zip(("vad",) + PROSODY_STREAMS, streams):
        if x.shape != (audio.n_frames,):
            raise ValueError(f"{where}: audio stream {name} has shape {x.shape}, "
                             f"expected ({audio.n_frames},)")
        bad = ~np.isfinite(x)
        if name == "f0_st":  # NaN is documented as "unvoiced": masked, not an error
            bad = np.isinf(x)
        elif name == "low_pitch":  # undefined where F0 is
            bad &= ~np.isnan(streams[1])
        if bad.any():
            raise ValueError(f"{where}: NaN/inf in audio stream {name!r} at frame {int(np.argmax(bad))}")
    m = min(n, audio.n_frames)
    vad = np.zeros(n, dtype=np.float32)
    vad[:m] = streams[0][:m]
    pros = np.zeros((n, len(PROSODY_STREAMS)), dtype=np.float32)
    mask = np.zeros((n, len(PROSODY_STREAMS)), dtype=bool)
    for j, x in enumerate(streams[1:]):
        ok = np.isfinite(x[:m])
        pros[:m, j] = np.where(ok, x[:m], 0.0)
        mask[:m, j] = ok
    return vad, pros, mask


_FRAMING_ONLY = ("horizon", "bc_definition", "non_isolated")  # settings mining does not use


def _settings(events, settings) -> LabelSettings:
    """The labelling settings: ``settings``, else those the events were mined with, else the defaults.

    Given settings that differ from the events' in a mining field are an error (the labels would not
    describe the events)."""
    mined = getattr(events, "settings", None)
    if settings is None:
        return mined or LabelSettings()
    cfg = LabelSettings.of(settings)
    if mined is not None and replace(mined, **{k: getattr(cfg, k) for k in _FRAMING_ONLY}) != cfg:
        raise ValueError(f"{events.dialogue}: events were mined with other label settings ({mined}) "
                         f"than the ones given for framing ({cfg})")
    return cfg


def frame_dialogue(dialogue: Dialogue, events: DialogueEvents, settings: LabelSettings | dict | None = None):
    """``frame_listener`` for every speaker as listener, in speaker order (shares per-speaker work)."""
    cfg = _settings(events, settings)
    shared = _Shared(dialogue)
    for listener in dialogue.speakers:
        yield _frame(dialogue, listener, events, cfg, shared)


def frame_listener(dialogue: Dialogue, listener: str, events: DialogueEvents | ListenerEvents,
                   settings: LabelSettings | dict | None = None) -> dict:
    """All per-frame streams, labels and event lists of ``listener`` vs the floor party.

    ``settings``: the ``LabelSettings`` (default: those of ``events`` when a ``DialogueEvents``, which
    must match when both are given). Arrays have ``n = dialogue.n_frames`` rows. Voice activity comes from
    ``ChannelAudio.vad`` where a channel has audio, else from word timings (``va_source``:
    ``"words"``, ``"audio"``, or ``"listener=audio,speaker=words"`` style when they differ).
    ``prosody`` [n, 8] float32 columns: the listener's f0_st, low_pitch, intensity_db, voiced, then
    the floor party's; ``prosody_mask`` [n, 8] is False where a value is absent (no audio, or F0 of
    an unvoiced frame), and the value there is 0.0. The floor party of a multi-party dialogue has no
    audio (``Dialogue.floor``). ``action`` int8 [n] (``events.ACTIONS``, or ``IGNORE`` = -1: no target)
    follows ``action_onsets`` and ``label_frames``; ``bc_type`` int8 [n] is the labelled backchannel's
    ``lexicon.BC_TYPE_INDEX`` on BACKCHANNEL frames (-1 elsewhere, and for an echo). The event lists
    ``bc_*`` hold every backchannel candidate, with ``bc_kinds`` / ``bc_isolated`` saying which ones
    are isolated, so both definitions can be scored from one row.
    """
    return _frame(dialogue, listener, events, _settings(events, settings), _Shared(dialogue))


class _Shared:
    """Per-speaker speech spans and word tables of one dialogue, computed once for all listeners."""

    def __init__(self, dialogue: Dialogue):
        self.spans = {s: speech_spans(c) for s, c in dialogue.channels.items()}
        self.words = {s: _word_table(c.words) for s, c in dialogue.channels.items()}

    def floor(self, listener: str):
        others = [s for s in self.spans if s != listener]
        spans = np.concatenate([self.spans[s] for s in others]) if others else np.zeros((0, 2))
        tables = [self.words[s] for s in others]
        words = (np.concatenate([w[0] for w in tables]) if tables else np.zeros(0),
                 np.concatenate([w[1] for w in tables]) if tables else np.zeros(0),
                 [x for w in tables for x in w[2]])
        return spans, words


def heard_listener(row: dict) -> dict:
    """A prepared row with the listener's backchannel candidates put back into its streams: what an agent
    hears of its user (the reversed role of the user-onset task). ``va_listener`` gets each candidate's
    share of each frame back (the inverse of what framing left out, clipped to [0, 1]) and
    ``text_listener`` its form's words at the frame of its offset (word ends inside a candidate are not
    stored). Labels and everything else are unchanged."""
    n = int(row["n_frames"])
    spans = list(zip(np.asarray(row["bc_onsets"], dtype=np.float64).tolist(),
                     np.asarray(row["bc_offsets"], dtype=np.float64).tolist()))
    va = np.asarray(row["va_listener"], dtype=np.float32)
    out = dict(row, va_listener=np.clip(va + interval_activity(spans, n), 0.0, 1.0).astype(np.float32))
    text = list(row["text_listener"])
    for (_, offset), form in zip(spans, row["bc_forms"]):
        f = min(max(time_to_frame(offset), 0), n - 1) if n else -1
        if f >= 0 and form:
            text[f] = f"{text[f]} {form}".strip()
    out["text_listener"] = text
    return out


def _frame(dialogue: Dialogue, listener: str, events, cfg: LabelSettings, shared: _Shared) -> dict:
    ev = events[listener] if isinstance(events, DialogueEvents) else events
    if ev.listener != listener:
        raise ValueError(f"{dialogue.id}: events are for listener {ev.listener!r}, not {listener!r}")
    where = f"{dialogue.id}: listener {listener}"
    n = dialogue.n_frames
    lch = dialogue.channels[listener]
    others = [c for s, c in dialogue.channels.items() if s != listener]
    f_audio = others[0].audio if len(others) == 1 else None
    f_spans, f_words = shared.floor(listener)
    bcs = ev.backchannels
    spans = {"listener": _without(shared.spans[listener], bcs), "speaker": f_spans}  # (module docstring)
    for role, x in spans.items():
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: NaN/inf word time in stream 'va_{role}'")

    va, src = {}, {}
    prosody = np.zeros((n, PROSODY_DIM), dtype=np.float32)
    mask = np.zeros((n, PROSODY_DIM), dtype=bool)
    for j, (role, audio) in enumerate((("listener", lch.audio), ("speaker", f_audio))):
        if audio is not None:
            va[role], p, m = _audio_frames(audio, n, f"{where}: {role}")
            if role == "listener" and bcs:  # its backchannels' share of each frame is not heard
                va[role] = np.clip(va[role] - interval_activity([(b.onset, b.offset) for b in bcs], n), 0.0, 1.0)
            prosody[:, 4 * j : 4 * j + 4], mask[:, 4 * j : 4 * j + 4] = p, m
            src[role] = "audio"
        else:
            va[role] = interval_activity(merge_spans(spans[role]).tolist(), n)
            src[role] = "words"
    va_source = src["listener"] if src["listener"] == src["speaker"] else \
        f"listener={src['listener']},speaker={src['speaker']}"

    shifts = [t.onset for t in ev.turns if t.kind == "shift"]
    interruptions = [t.onset for t in ev.turns if t.kind == "interruption"]
    onsets, labelled = action_onsets(bcs, ev.turns, cfg)
    action, which = label_frames(onsets, n, cfg.horizon)
    bc_type = np.full(n, -1, dtype=np.int8)
    is_bc = action == BACKCHANNEL
    type_idx = np.array([BC_TYPE_INDEX.get(bcs[i].bc_type, -1) for i in labelled], dtype=np.int8)
    bc_type[is_bc] = type_idx[which[is_bc]]

    out = {
        "dialogue": dialogue.id,
        "listener": listener,
        "floor": ev.floor,
        "n_frames": n,
        "va_source": va_source,
        "va_listener": va["listener"].astype(np.float32),
        "va_speaker": va["speaker"].astype(np.float32),
        "prosody": prosody,
        "prosody_mask": mask,
        "text_listener": _text_stream(_words_outside(shared.words[listener], bcs), n),
        "text_speaker": _text_stream(f_words, n),
        "action": action,
        "bc_type": bc_type,
        "bc_onsets": np.array([b.onset for b in bcs], dtype=np.float64),
        "bc_offsets": np.array([b.offset for b in bcs], dtype=np.float64),
        "bc_forms": [b.form for b in bcs],
        "bc_types": [b.bc_type for b in bcs],
        "bc_sources": [b.source for b in bcs],
        "bc_in_overlap": np.array([b.in_overlap for b in bcs], dtype=bool),
        "bc_kinds": [b.kind for b in bcs],
        "bc_isolated": np.array([b.isolated for b in bcs], dtype=bool),
        "shift_onsets": np.array(shifts, dtype=np.float64),
        "interruption_onsets": np.array(interruptions, dtype=np.float64),
        "hold_pauses": np.array([[p.start, p.end] for p in ev.pauses if p.kind == "hold"],
                                dtype=np.float64).reshape(-1, 2),
        "shift_pauses": np.array([[p.start, p.end] for p in ev.pauses if p.kind == "shift"],
                                 dtype=np.float64).reshape(-1, 2),
    }
    for key, x in out.items():
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{where}: NaN/inf in stream {key!r}")
    return out
