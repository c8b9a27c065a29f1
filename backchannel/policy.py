"""The decision policy: per-80 ms-frame probabilities -> SILENT / BACKCHANNEL / TAKE_TURN and the form to say.

One call of :meth:`Policy.decide` per frame ``t`` (decided at the frame's end, ``0.08 (t + 1)`` s):

1. **Smoothing**: causal moving average of the action probabilities over the last ``smoothing``
   frames, computed exactly as :func:`backchannel.metrics.smooth` (same running sums, same float64
   arithmetic), so streaming and offline smoothed values are bit-identical.
2. **Backchannel trigger with hysteresis**: the trigger is *armed* at the start; it fires on the first
   frame where the smoothed backchannel probability is ``>= on`` while armed, which disarms it; it
   re-arms on a frame where the probability is ``< off``. With ``off = on`` this is the rising edge of
   :func:`backchannel.metrics.trigger_onsets`.
3. A crossing is **dropped, not postponed** (as in ``trigger_onsets``) when it lies less than
   ``refractory`` s after the previous backchannel, when the cadence budget is empty, in quiet mode,
   or on a frame the runtime forces silent (a fault). Only emitted backchannels start a refractory period.
4. **Cadence** (``cadence`` backchannels per minute): a token bucket holding at most ``burst``
   backchannels, refilled by ``cadence / 60 * 0.08`` per frame; a backchannel costs one token. Over
   ``D`` s at most ``burst + cadence * D / 60`` backchannels are emitted, so the long-run rate never
   exceeds the target by more than the burst, and approaches it whenever the model asks for more.
5. **TAKE_TURN** on every frame whose smoothed take-turn probability is ``>= take_turn`` (a level,
   not an edge: a duplex loop releases its speech while it holds). A backchannel trigger on the same
   frame wins that one frame, so backchannel decisions never depend on the take-turn threshold.
6. **Quiet** (e.g. while the user dictates digits): no backchannel, no take-turn; smoothing and the
   budget keep running, and crossings during quiet are consumed.
7. **Lead** (``lead`` s, a whole number of 80 ms frames): a backchannel decided at frame ``t`` is spoken
   (returned as BACKCHANNEL) at frame ``t + lead / 0.08``; refractory and cadence count decision times,
   as ``trigger_onsets(..., lead=lead)`` does. A pending backchannel whose frame is quiet or faulted is
   dropped. ``backchannel evaluate`` tunes the lead on dev; :meth:`Policy.from_report` reads it.
8. **Form**: the backchannel type is the argmax of the type probabilities (``lexicon.BC_TYPES``; the
   next most probable type with forms when a type has none); the form is drawn uniformly (seeded RNG)
   from that type's forms, excluding a form already said ``max_repeat`` times in a row, unless the
   type allows only that one form.

With ``off = on`` (or ``None``) and no cadence, the backchannel decisions of :meth:`Policy.decide` equal
``metrics.trigger_onsets(p_bc, on, refractory, smoothing, lead)`` (tested; exactly for ``lead = 0``).
"""
from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backchannel.corpora.events import ACTIONS, BACKCHANNEL, SILENT, TAKE_TURN
from backchannel.frames import FRAME_S, frame_end
from backchannel.lexicon import BC_TYPES

_EPS = 1e-9  # seconds / tokens; the same slack as metrics.trigger_onsets

#: Default forms per type (what a TTS or pre-encoded audio bank says).
DEFAULT_FORMS: dict[str, tuple[str, ...]] = {
    "continuer": ("mhm", "uh-huh", "mm"),
    "agreement": ("yeah", "right", "exactly"),
    "assessment": ("wow", "nice", "great"),
    "surprise": ("oh", "really", "oh really"),
    "acknowledgement": ("okay", "I see", "alright"),
}


@dataclass(frozen=True)
class Decision:
    """The decision for one frame.

    ``frame``: index ``t``; ``time``: decision time ``0.08 (t + 1)`` s (the frame's end);
    ``action``: ``"SILENT"``, ``"BACKCHANNEL"`` or ``"TAKE_TURN"``; ``probability``: the smoothed
    backchannel probability (what the trigger compares with ``on``); ``p_take_turn``: the smoothed
    take-turn probability; ``bc_type``/``form``: what to say (BACKCHANNEL only, else None);
    ``fault``: why the runtime forced this frame SILENT (``"deadline"``, ``"model:ValueError"``...),
    else None.
    """

    frame: int
    time: float
    action: str
    probability: float
    p_take_turn: float = 0.0
    bc_type: str | None = None
    form: str | None = None
    fault: str | None = None


@dataclass
class Policy:
    """Decision settings (see the module docstring). Thresholds are probabilities in [0, 1];
    ``smoothing`` in frames; ``refractory`` in seconds; ``cadence`` in backchannels per minute
    (None: unlimited); ``burst`` in backchannels; ``take_turn`` None never takes the turn; ``lead``
    in seconds, a multiple of 0.08 (delay between deciding and speaking)."""

    on: float = 0.5
    off: float | None = None
    smoothing: int = 1
    refractory: float = 0.8
    cadence: float | None = None
    burst: float = 2.0
    take_turn: float | None = 0.5
    forms: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(DEFAULT_FORMS))
    max_repeat: int = 2
    seed: int = 0
    lead: float = 0.0

    def __post_init__(self):
        if self.off is None:
            self.off = self.on
        if not 0.0 <= self.off <= self.on <= 1.0:
            raise ValueError(f"policy: need 0 <= off <= on <= 1, got on={self.on}, off={self.off}")
        if int(self.smoothing) != self.smoothing or self.smoothing < 1:
            raise ValueError(f"policy: smoothing must be a whole number of frames >= 1, got {self.smoothing}")
        if self.refractory < 0:
            raise ValueError(f"policy: refractory must be >= 0 s, got {self.refractory}")
        if self.cadence is not None and self.cadence <= 0:
            raise ValueError(f"policy: cadence must be > 0 backchannels/min or None, got {self.cadence}")
        if self.burst < 1:
            raise ValueError(f"policy: burst must be >= 1 backchannel, got {self.burst}")
        if self.max_repeat < 1:
            raise ValueError(f"policy: max_repeat must be >= 1, got {self.max_repeat}")
        unknown = sorted(set(self.forms) - set(BC_TYPES))
        if unknown:
            raise ValueError(f"policy: forms for unknown types {unknown} (types: {list(BC_TYPES)})")
        self.forms = {k: tuple(v) for k, v in self.forms.items()}
        if not any(self.forms.values()):
            raise ValueError("policy: forms must allow at least one form for some type")
        self.smoothing = int(self.smoothing)
        frames = self.lead / FRAME_S
        if self.lead < 0 or abs(frames - round(frames)) > 1e-6:
            raise ValueError(f"policy: lead must be a whole number of {FRAME_S} s frames >= 0, got {self.lead} s")
        self.lead_frames = int(round(frames))

    @classmethod
    def from_trigger(cls, settings, **overrides) -> Policy:
        """The policy that reproduces ``metrics.TriggerSettings`` (threshold, smoothing, refractory, lead)."""
        return cls(on=settings.threshold, smoothing=settings.smoothing, refractory=settings.refractory,
                   lead=settings.lead, **overrides)

    @classmethod
    def from_report(cls, report: str | Path | Mapping, corpus: str, system: str = "head",
                    variant: str = "rate_matched", **overrides) -> Policy:
        """The policy ``backchannel evaluate`` tuned on dev for ``system`` on ``corpus``: backchannel
        threshold, smoothing, refractory and lead of ``variant`` (``f1`` or ``rate_matched``), and the
        take-turn level from the shift/hold threshold. ``report``: a ``report.json`` path or its dict."""
        data = report if isinstance(report, Mapping) else json.loads(Path(report).read_text())
        try:
            entry = data["corpora"][corpus]["systems"][system]
            settings = entry["variants"][variant]["settings"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"policy: {report if not isinstance(report, Mapping) else 'report'} has no tuned "
                             f"settings for corpus {corpus!r}, system {system!r}, variant {variant!r} "
                             f"(missing {err})") from None
        kw = {"on": float(settings["threshold"]), "smoothing": int(settings["smoothing"]),
              "refractory": float(settings["refractory"]), "lead": float(settings.get("lead", 0.0))}
        take = (entry.get("shift_hold") or {}).get("take_turn") or {}
        if "threshold" in take:
            kw["take_turn"] = float(take["threshold"])
        return cls(**(kw | overrides))

    def init_state(self) -> PolicyState:
        """A fresh state (reset = a new state)."""
        return PolicyState(sums=deque([(0.0, 0.0, 0.0)], maxlen=self.smoothing + 1), budget=float(self.burst),
                           recent=deque(maxlen=self.max_repeat), rng=random.Random(self.seed), pending=deque())

    def choose_form(self, state: PolicyState, type_probs) -> tuple[str, str]:
        """``(bc_type, form)`` for a backchannel (rule 7 of the module docstring); updates
        ``state.recent``."""
        if type_probs is None:
            order = list(range(len(BC_TYPES)))
        else:
            tp = np.asarray(type_probs, dtype=np.float64).reshape(-1)
            if tp.shape != (len(BC_TYPES),):
                raise ValueError(f"policy: type_probs must have {len(BC_TYPES)} values, got shape {tp.shape}")
            order = sorted(range(len(BC_TYPES)), key=lambda i: (-tp[i], i))
        bc_type = next(BC_TYPES[i] for i in order if self.forms.get(BC_TYPES[i]))
        forms = self.forms[bc_type]
        recent = state.recent
        candidates = forms
        if len(forms) > 1 and len(recent) == recent.maxlen and len(set(recent)) == 1:
            candidates = [f for f in forms if f != recent[0]] or forms
        form = candidates[state.rng.randrange(len(candidates))]
        recent.append(form)
        return bc_type, form

    def decide(self, state: PolicyState, probs=None, type_probs=None, *, quiet: bool = False,
               fault: str | None = None) -> Decision:
        """Decide frame ``state.t`` from its action probabilities ``probs`` (SILENT, BACKCHANNEL,
        TAKE_TURN; 3 values) and backchannel type probabilities ``type_probs`` (5 values, or None).

        ``probs=None`` (the model produced nothing this frame) counts as certain silence ``(1, 0, 0)``.
        ``fault`` (a reason) forces the frame SILENT like ``quiet`` and is copied into the decision.
        """
        if probs is None:
            p = (1.0, 0.0, 0.0)
        else:
            p = tuple(float(x) for x in np.asarray(probs, dtype=np.float64).reshape(-1))
            if len(p) != len(ACTIONS):
                raise ValueError(f"policy: probs must have {len(ACTIONS)} values "
                                 f"(SILENT, BACKCHANNEL, TAKE_TURN), got {len(p)}")
        t = state.t
        s = _smoothed(state, p, self.smoothing)
        p_bc, p_tt = s[BACKCHANNEL], s[TAKE_TURN]
        blocked = quiet or fault is not None
        if self.cadence is not None:
            state.budget = min(float(self.burst), state.budget + self.cadence / 60.0 * FRAME_S)

        fire = False
        if state.armed and p_bc >= self.on:
            state.armed = False
            fire = not blocked
            if fire and state.last_bc is not None:
                fire = float(frame_end(t)) - float(frame_end(state.last_bc)) >= self.refractory - _EPS
            if fire and self.cadence is not None:
                fire = state.budget >= 1.0 - _EPS
        if p_bc < self.off:
            state.armed = True
        state.t += 1

        bc_type = form = None
        if fire:
            state.last_bc = t
            if self.cadence is not None:
                state.budget -= 1.0
            state.pending.append((t + self.lead_frames, *self.choose_form(state, type_probs)))
        due = None
        while state.pending and state.pending[0][0] <= t:
            due = state.pending.popleft()
        if due is not None and not blocked:
            action = BACKCHANNEL
            bc_type, form = due[1], due[2]
        elif not blocked and self.take_turn is not None and p_tt >= self.take_turn:
            action = TAKE_TURN
        else:
            action = SILENT
        return Decision(frame=t, time=float(frame_end(t)), action=ACTIONS[action], probability=p_bc,
                        p_take_turn=p_tt, bc_type=bc_type, form=form, fault=fault)


@dataclass
class PolicyState:
    """Everything :meth:`Policy.decide` carries from frame to frame.

    ``t``: frames decided; ``sums``: running sums ``c_lo .. c_t`` of the action probabilities (the
    last ``smoothing + 1``); ``armed``: the trigger may fire; ``last_bc``: frame of the last emitted
    backchannel (decision frame); ``budget``: cadence tokens; ``recent``: the last ``max_repeat`` forms
    said; ``pending``: decided backchannels waiting for their lead, ``(frame to speak, type, form)``.
    """

    sums: deque
    budget: float
    recent: deque
    rng: random.Random
    pending: deque = field(default_factory=deque)
    t: int = 0
    armed: bool = True
    last_bc: int | None = None


def _smoothed(state: PolicyState, p: tuple[float, float, float], w: int) -> tuple[float, ...]:
    c = state.sums[-1]
    state.sums.append((c[0] + p[0], c[1] + p[1], c[2] + p[2]))
    if w == 1:  # metrics.smooth returns the input unchanged
        return p
    lo, hi, n = state.sums[0], state.sums[-1], len(state.sums) - 1
    return tuple((hi[i] - lo[i]) / n for i in range(3))
