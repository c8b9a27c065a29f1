"""The decision policy: per-80 ms-frame probabilities -> SILENT / BACKCHANNEL / TAKE_TURN and the form to say.

The ONE decision core (docs/design.md "Policy"): the plugin steps it frame by frame (:meth:`Policy.decide`,
:meth:`Policy.step` for a batch of sessions), evaluation runs the whole-sequence form :meth:`Policy.run`
(exactly equal, tested), and tuning searches its settings. Rules, per frame ``t`` (decided at its end,
``0.08 (t + 1)`` s):

1. Smoothing: causal moving average of the action probabilities over the last ``smoothing`` frames.
2. Backchannel trigger with hysteresis: armed at the start, it fires on the first frame where the smoothed
   backchannel probability is ``>= on`` while armed (which disarms it) and re-arms where it is ``< off``.
3. A crossing is dropped, not postponed, within ``refractory`` s of the previous emitted backchannel, when
   the cadence budget is empty, in quiet mode or on a faulted frame.
4. Cadence: a token bucket of at most ``burst`` backchannels refilled by ``cadence / 60 * 0.08`` per frame.
5. TAKE_TURN on every frame whose smoothed take-turn probability is ``>= take_turn`` (a level); a
   backchannel said on the same frame wins that frame. A take-turn *onset* is the first frame of a run.
6. Quiet / fault: no backchannel, no take-turn; crossings are consumed.
7. Lead: a backchannel decided at frame ``t`` is said at frame ``t + lead / 0.08``; dropped if that frame is
   quiet or faulted. Refractory and cadence count decision frames.
8. Form: the argmax type with forms (``lexicon.BC_TYPES``), a seeded uniform draw among its forms that
   avoids saying one form more than ``max_repeat`` times in a row.
9. Rate calibration (``target_rate`` set; no labels needed): every level of :data:`CALIBRATION_LEVELS` runs
   its own trigger (rule 2 at that level, re-armed below it in the ratio ``off / on``, no refractory), counted
   over the last ``calibration_window`` s. After ``calibration_warmup`` s (``on`` until then) a frame's level is,
   of the highest level crossing more than ``target_rate`` times per minute and the level above it, the one
   whose rate is nearer the target in log ratio (the lowest level if none crosses more often), and the frame
   crosses when that level's trigger crosses there. Each level's crossings are the
   eligible moments it would have used; rules 3-8 apply to the crossings as before. The calibration belongs to
   the deployment, not the session: :meth:`Policy.reset` and ``run(..., calibration=)`` carry it across
   sessions, so the window spans conversations.
"""
from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from backchannel.corpora.events import ACTIONS, BACKCHANNEL, SILENT, TAKE_TURN
from backchannel.frames import FRAME_S, frame_end
from backchannel.lexicon import BC_TYPES

_EPS = 1e-9  # seconds / tokens

#: The trigger levels rate calibration chooses from (rule 9): 0.02, 0.04, ..., 0.98.
CALIBRATION_LEVELS = np.round(np.arange(1, 50) * 0.02, 2)

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
    ``fault``: why the runtime forced this frame SILENT (``"deadline"``, ``"model:ValueError"``...), else None;
    ``threshold``: the trigger level ``on`` of this frame (the policy's ``on`` unless rate calibration moved it).
    """

    frame: int
    time: float
    action: str
    probability: float
    p_take_turn: float = 0.0
    bc_type: str | None = None
    form: str | None = None
    fault: str | None = None
    threshold: float | None = None


@dataclass
class PolicyState:
    """What :meth:`Policy.decide` carries from frame to frame for one session.

    ``t``: frames decided; ``sums``: running sums of the action probabilities (the last ``smoothing + 1``);
    ``armed``: the trigger may fire; ``last_bc``: decision frame of the last emitted backchannel;
    ``budget``/``budget_t``: cadence tokens after frame ``budget_t`` (refilled lazily, see
    :meth:`Policy.budget`); ``recent``: the last ``max_repeat`` forms; ``pending``: decided backchannels
    waiting for their lead, ``(frame to say, type, form)``; ``calibration``: rule 9's per-level trigger state
    (None without ``target_rate``).
    """

    sums: deque
    budget: float
    recent: deque
    rng: random.Random
    pending: deque = field(default_factory=deque)
    t: int = 0
    armed: bool = True
    last_bc: int | None = None
    budget_t: int = -1
    calibration: Calibration | None = None


@dataclass
class Calibration:
    """Rule 9's state, one listener deployment's (kept across sessions by :meth:`Policy.reset` and
    ``Policy.run(..., calibration=)``): ``armed`` [K] per-level triggers, ``ring`` [W, K] their crossings in
    the last ``W`` frames (row ``g % W`` holds frame ``g``), ``counts`` [K] the ring's column sums, ``seen``
    the frames counted so far (all sessions)."""

    armed: np.ndarray
    ring: np.ndarray
    counts: np.ndarray
    seen: int = 0


@dataclass
class Run:
    """:meth:`Policy.run` over ``n`` frames: per-frame arrays and what was said.

    ``action`` int8 ``[n]`` (``events.ACTIONS`` indices); ``p_backchannel``/``p_take_turn`` float64 ``[n]``
    (smoothed); ``said``: frame -> ``(bc_type, form)`` of each backchannel said; ``faults``: per-frame
    reasons or None; ``threshold`` float64 ``[n]``: each frame's trigger level ``on`` (rule 9), or None.
    """

    action: np.ndarray
    p_backchannel: np.ndarray
    p_take_turn: np.ndarray
    said: dict[int, tuple[str, str]]
    faults: list | None = None
    threshold: np.ndarray | None = None

    @property
    def backchannel_frames(self) -> np.ndarray:
        return np.flatnonzero(self.action == BACKCHANNEL)

    @property
    def backchannel_onsets(self) -> np.ndarray:
        """Seconds: the end of each frame where a backchannel is said (the moment speech starts)."""
        return frame_end(self.backchannel_frames).astype(np.float64)

    @property
    def take_turn_frames(self) -> np.ndarray:
        """First frame of each run of TAKE_TURN decisions."""
        tt = self.action == TAKE_TURN
        return np.flatnonzero(tt & ~np.concatenate([[False], tt[:-1]]))

    @property
    def take_turn_onsets(self) -> np.ndarray:
        return frame_end(self.take_turn_frames).astype(np.float64)

    def decisions(self) -> list[Decision]:
        """The same frames as :class:`Decision` objects (what stepping the policy returns)."""
        out = []
        for t in range(len(self.action)):
            bc_type, form = self.said.get(t, (None, None))
            out.append(Decision(frame=t, time=float(frame_end(t)), action=ACTIONS[int(self.action[t])],
                                probability=float(self.p_backchannel[t]), p_take_turn=float(self.p_take_turn[t]),
                                bc_type=bc_type, form=form, fault=None if self.faults is None else self.faults[t],
                                threshold=None if self.threshold is None else float(self.threshold[t])))
        return out


@dataclass
class Policy:
    """Decision settings (see the module docstring). Thresholds are probabilities in [0, 1];
    ``smoothing`` in frames; ``refractory`` in seconds; ``cadence`` in backchannels per minute
    (None: unlimited); ``burst`` in backchannels; ``take_turn`` None never takes the turn; ``lead``
    in seconds, a multiple of 0.08 (delay between deciding and speaking); ``target_rate`` in backchannels
    per listener-minute (rule 9; None: the level stays ``on``), ``calibration_window`` and
    ``calibration_warmup`` in seconds."""

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
    target_rate: float | None = None
    calibration_window: float = 1800.0
    calibration_warmup: float = 60.0

    def __post_init__(self):
        if self.off is None:
            self.off = self.on
        if not 0.0 <= self.off <= self.on <= 1.0:
            raise ValueError(f"policy: need 0 <= off <= on <= 1, got on={self.on}, off={self.off}")
        if self.take_turn is not None and not 0.0 <= self.take_turn <= 1.0:
            raise ValueError(f"policy: take_turn must be in [0, 1] or None, got {self.take_turn}")
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
        self.lead_frames = round(frames)
        if self.target_rate is not None and not (math.isfinite(self.target_rate) and self.target_rate > 0):
            raise ValueError(f"policy: target_rate must be > 0 backchannels/min or None, got {self.target_rate}")
        if not (math.isfinite(self.calibration_window) and self.calibration_window >= FRAME_S):
            raise ValueError(f"policy: calibration_window must be >= {FRAME_S} s, got {self.calibration_window}")
        if not (math.isfinite(self.calibration_warmup) and self.calibration_warmup >= 0):
            raise ValueError(f"policy: calibration_warmup must be >= 0 s, got {self.calibration_warmup}")
        self.window_frames = max(1, round(self.calibration_window / FRAME_S))
        self.warmup_frames = round(self.calibration_warmup / FRAME_S)

    # ------------------------------------------------------------------ settings
    def to_dict(self) -> dict:
        """The settings as JSON types (what a report stores; ``Policy(**d)`` rebuilds it)."""
        d = asdict(self)
        d["forms"] = {k: list(v) for k, v in self.forms.items()}
        return d

    @classmethod
    def from_dict(cls, settings: Mapping, **overrides) -> Policy:
        """``Policy(**settings, **overrides)`` with a clear error for unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"policy: unknown settings {unknown} (known: {sorted(known)})")
        return cls(**(dict(settings) | overrides))

    @classmethod
    def from_report(cls, report: str | Path | Mapping, corpus: str, system: str = "head",
                    variant: str = "rate_matched", definition: str | None = None, **overrides) -> Policy:
        """The policy ``backchannel evaluate`` tuned on dev for ``system`` on ``corpus`` (``variant`` ``f1`` or
        ``rate_matched``; ``definition`` of the backchannel gold, default the report's first, ``isolated``),
        exactly as the report stores it. ``report``: a ``report.json`` path or its dict."""
        where = report if not isinstance(report, Mapping) else "report"
        data = report if isinstance(report, Mapping) else json.loads(Path(report).read_text())
        try:
            defs = data["corpora"][corpus]["systems"][system]["definitions"]
            definition = definition or next(iter(defs))
            settings = defs[definition]["variants"][variant]["policy"]
        except (KeyError, TypeError, StopIteration) as err:
            raise ValueError(f"policy: {where} has no tuned policy for corpus {corpus!r}, system {system!r}, "
                             f"definition {definition!r}, variant {variant!r} (missing {err})") from None
        return cls.from_dict(settings, **overrides)

    # ------------------------------------------------------------------ shared rules
    def budget(self, state: PolicyState, t: int) -> float:
        """Cadence tokens available at frame ``t`` (after its refill)."""
        return min(float(self.burst), state.budget + self.cadence / 60.0 * FRAME_S * (t - state.budget_t))

    def _emit(self, state: PolicyState, t: int, blocked: bool) -> bool:
        """A trigger crossing at frame ``t``: True (and the refractory/budget bookkeeping done) when it
        becomes a backchannel, False when it is dropped (rule 3)."""
        if blocked:
            return False
        if state.last_bc is not None and float(frame_end(t)) - float(frame_end(state.last_bc)) < self.refractory - _EPS:
            return False
        if self.cadence is not None:
            tokens = self.budget(state, t)
            if tokens < 1.0 - _EPS:
                return False
            state.budget, state.budget_t = tokens - 1.0, t
        state.last_bc = t
        return True

    def _levels(self) -> tuple[np.ndarray, np.ndarray]:
        """Rule 9's per-level ``(on, off)`` [K]: each level's re-arming level in the policy's ratio ``off / on``."""
        return CALIBRATION_LEVELS, CALIBRATION_LEVELS * (self.off / self.on if self.on > 0 else 1.0)

    def _level_index(self, counts, t, window: int | None = None) -> np.ndarray:
        """Rule 9: the index into :data:`CALIBRATION_LEVELS` of the level frames ``t`` (calibration frame
        counts, ints ``[m]``) use, from the levels' crossing ``counts`` ``[m, K]`` in the ``window`` frames
        (default ``calibration_window``) before them; -1 during the warm-up."""
        t = np.asarray(t, dtype=np.int64)
        window = self.window_frames if window is None else window
        elapsed = np.maximum(np.minimum(t, window), 1).astype(np.float64) * FRAME_S  # seconds counted
        rate = np.asarray(counts, dtype=np.float64) * 60.0 / elapsed[:, None]  # crossings per minute [m, K]
        over = rate > self.target_rate
        top = len(CALIBRATION_LEVELS) - 1
        hi = np.where(over.any(axis=1), top - over[:, ::-1].argmax(axis=1), -1)  # the highest level over the target
        lo = np.minimum(hi + 1, top)  # the level above it: at or under the target (or the top level)
        rows = np.arange(len(t))
        with np.errstate(divide="ignore"):  # a level that never crossed is infinitely far below in log rate
            above = np.log(rate[rows, np.maximum(hi, 0)] / self.target_rate)
            below = np.log(self.target_rate / rate[rows, lo])
        k = np.where((hi >= 0) & (hi != lo) & (above < below), hi, lo)
        return np.where(t < max(self.warmup_frames, 1), -1, k)

    def calibrated(self, target_rate: float, probs_list=None, **settings) -> Policy:
        """This policy with rule 9 at ``target_rate`` backchannels per listener-minute (``settings``: more
        overrides, e.g. ``calibration_window``). With ``probs_list`` (sessions' action probabilities ``[n, 3]``,
        no labels needed: e.g. the dev split it was tuned on) the warm-up level ``on`` is the level rule 9
        picks on them pooled, ``off`` kept in ratio; without, ``on`` stays."""
        policy = replace(self, target_rate=float(target_rate), **settings)
        if not probs_list:
            return policy
        counts = np.zeros(len(CALIBRATION_LEVELS), dtype=np.int64)
        frames = 0
        for probs in probs_list:
            smooth = policy.smoothed(probs)[:, BACKCHANNEL]
            counts += [len(f) for f in policy.level_crossings(smooth)]
            frames += len(smooth)
        k = int(policy._level_index(counts[None, :], [max(frames, policy.warmup_frames, 1)],
                                    window=max(frames, 1))[0])
        lv_on, lv_off = policy._levels()
        return replace(policy, on=float(lv_on[k]), off=float(lv_off[k]))

    def choose_form(self, state: PolicyState, type_probs) -> tuple[str, str]:
        """``(bc_type, form)`` for a backchannel (rule 8); updates ``state.recent``."""
        tp = None if type_probs is None else np.asarray(type_probs, dtype=np.float64).reshape(-1)
        if tp is not None and tp.shape != (len(BC_TYPES),):
            raise ValueError(f"policy: type_probs must have {len(BC_TYPES)} values, got shape {tp.shape}")
        if tp is None or np.isnan(tp).any():  # no type prediction: the types in their fixed order
            order = list(range(len(BC_TYPES)))
        else:
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

    # ------------------------------------------------------------------ streaming
    def new_calibration(self) -> Calibration | None:
        """A fresh rule 9 state (None without ``target_rate``)."""
        if self.target_rate is None:
            return None
        k = len(CALIBRATION_LEVELS)
        return Calibration(armed=np.ones(k, dtype=bool), ring=np.zeros((self.window_frames, k), np.int8),
                           counts=np.zeros(k, dtype=np.int64))

    def new_state(self, calibration: Calibration | None = None) -> PolicyState:
        """A fresh state for one session; ``calibration``: rule 9's state to carry on with (its counts go on, its
        level triggers re-arm; default, or one of another window length: fresh)."""
        fits = calibration is not None and calibration.ring.shape == (self.window_frames, len(CALIBRATION_LEVELS))
        calibration = calibration if self.target_rate is not None and fits else self.new_calibration()
        if calibration is not None:  # the window's counts carry on; each level's trigger re-arms, as rule 2's does
            calibration.armed[:] = True
        return PolicyState(sums=deque([(0.0, 0.0, 0.0)], maxlen=self.smoothing + 1), budget=float(self.burst),
                           recent=deque(maxlen=self.max_repeat), rng=random.Random(self.seed), pending=deque(),
                           calibration=calibration)

    def init_state(self, batch: int = 1) -> list[PolicyState]:
        """Fresh states for ``batch`` sessions (the streaming protocol: ``init_state``/``step``/``reset``)."""
        return [self.new_state() for _ in range(batch)]

    def reset(self, states: list[PolicyState], mask) -> None:
        """Fresh states for the sessions where ``mask`` is true (their rate calibration carries on: it is the
        deployment's, not the session's); the others are untouched."""
        for i, m in enumerate(np.asarray(mask, dtype=bool).reshape(-1)):
            if m:
                states[i] = self.new_state(states[i].calibration)

    def step(self, states: list[PolicyState], probs, type_probs=None, *, quiet=None, faults=None) -> list[Decision]:
        """One frame for every session: ``probs`` ``[B, 3]`` (a row None: the model produced nothing),
        ``type_probs`` ``[B, 5]`` or None, ``quiet`` ``[B]`` bools, ``faults`` ``[B]`` reasons or None."""
        n = len(states)
        quiet = [False] * n if quiet is None else quiet
        faults = [None] * n if faults is None else faults
        return [self.decide(s, None if probs is None else probs[i], None if type_probs is None else type_probs[i],
                            quiet=bool(quiet[i]), fault=faults[i]) for i, s in enumerate(states)]

    def decide(self, state: PolicyState, probs=None, type_probs=None, *, quiet: bool = False,
               fault: str | None = None) -> Decision:
        """Decide frame ``state.t`` of one session from its action probabilities ``probs`` (SILENT,
        BACKCHANNEL, TAKE_TURN; 3 values) and type probabilities ``type_probs`` (5 values, or None).

        ``probs=None`` (the model produced nothing this frame) counts as certain silence ``(1, 0, 0)``.
        ``fault`` (a reason) forces the frame SILENT like ``quiet`` and is copied into the decision.
        """
        p = _probs_row(probs)
        t = state.t
        s = _smoothed(state, p, self.smoothing)
        p_bc, p_tt = s[BACKCHANNEL], s[TAKE_TURN]
        blocked = quiet or fault is not None
        crossing = state.armed and p_bc >= self.on
        if crossing:
            state.armed = False
        if p_bc < self.off:
            state.armed = True
        on, cal = self.on, state.calibration
        if cal is not None:  # rule 9: this frame's level from the window before it; every level's own trigger
            k = int(self._level_index(cal.counts[None, :], [cal.seen])[0])
            lv_on, lv_off = self._levels()
            fired = cal.armed & (p_bc >= lv_on)
            cal.armed = (cal.armed & ~fired) | (p_bc < lv_off)
            slot = cal.seen % self.window_frames
            cal.counts += fired.astype(np.int64) - cal.ring[slot]
            cal.ring[slot] = fired
            cal.seen += 1
            if k >= 0:
                crossing, on = bool(fired[k]), float(CALIBRATION_LEVELS[k])
        if crossing and self._emit(state, t, blocked):
            state.pending.append((t + self.lead_frames, *self.choose_form(state, type_probs)))
        state.t += 1
        bc_type = form = None
        due = state.pending.popleft() if state.pending and state.pending[0][0] <= t else None
        if due is not None and not blocked:
            action = BACKCHANNEL
            bc_type, form = due[1], due[2]
        elif not blocked and self.take_turn is not None and p_tt >= self.take_turn:
            action = TAKE_TURN
        else:
            action = SILENT
        return Decision(frame=t, time=float(frame_end(t)), action=ACTIONS[action], probability=p_bc,
                        p_take_turn=p_tt, bc_type=bc_type, form=form, fault=fault, threshold=on)

    # ------------------------------------------------------------------ whole sequence
    def smooth(self, probs) -> np.ndarray:
        """Causal moving average over the last ``smoothing`` frames along axis 0 (fewer at the start),
        with the same running sums as :meth:`decide`: ``out[t] = mean(probs[max(0, t-w+1) : t+1])``."""
        x = np.asarray(probs, dtype=np.float64)
        w = self.smoothing
        if w == 1 or len(x) == 0:
            return x.copy()
        c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
        t = np.arange(len(x))
        lo = np.maximum(t + 1 - w, 0)
        count = (t + 1 - lo).reshape((-1,) + (1,) * (x.ndim - 1))
        return (c[t + 1] - c[lo]) / count

    def smoothed(self, probs) -> np.ndarray:
        """Checked, smoothed action probabilities ``[n, 3]`` of one session (a NaN row counts as certain
        silence; raises ``ValueError`` for another shape or inf values)."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(ACTIONS):
            raise ValueError(f"policy: probs must be [n_frames, {len(ACTIONS)}] (SILENT, BACKCHANNEL, TAKE_TURN), "
                             f"got shape {p.shape}")
        missing = np.isnan(p).any(axis=1)
        if missing.any():
            p = p.copy()
            p[missing] = (1.0, 0.0, 0.0)
        if not np.isfinite(p).all():
            raise ValueError("policy: probs hold inf values")
        return self.smooth(p)

    def level_crossings(self, p_bc) -> list[np.ndarray]:
        """Rule 9's per-level triggers over one session's smoothed backchannel probabilities (every level armed
        at its start): the crossing frames of each of :data:`CALIBRATION_LEVELS`."""
        p = np.asarray(p_bc, dtype=np.float64)
        return [self.crossings(p, on, off) for on, off in zip(*self._levels())]

    def crossings(self, p_bc, on=None, off=None) -> np.ndarray:
        """Frames where the armed trigger crosses ``on`` (rule 2), from smoothed backchannel probabilities;
        ``on``/``off``: per-frame levels ``[n]`` (default the policy's)."""
        p = np.asarray(p_bc, dtype=np.float64)
        on = self.on if on is None else on
        off = self.off if off is None else off
        arm_or_fire = (p < off) | (p >= on)  # frames that arm or may fire
        events = np.flatnonzero(arm_or_fire)
        fires = (p >= on)[events]
        first = fires & ~np.concatenate([[False], fires[:-1]])  # armed: no fire since the last arming frame
        return events[first]

    def trigger(self, p_bc, calibration: Calibration | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rules 2 and 9 over one session's smoothed backchannel probabilities: ``(crossing frames, per-frame
        trigger level [n])``. ``calibration``: rule 9's state to start from (its level triggers re-arm, as at
        every session start), updated in place to where the session leaves it (default a fresh one, discarded)."""
        p = np.asarray(p_bc, dtype=np.float64)
        n = len(p)
        if self.target_rate is None:
            return self.crossings(p), np.full(n, float(self.on))
        cal = calibration if calibration is not None else self.new_calibration()
        w, lv_on, lv_off = self.window_frames, *self._levels()
        fired = np.zeros((n, len(lv_on)), dtype=np.int8)  # each level's own trigger
        armed_end = np.ones(len(lv_on), dtype=bool)  # armed after the session: no crossing, or below off since
        for k, frames in enumerate(self.level_crossings(p)):
            fired[frames, k] = 1
            armed_end[k] = not len(frames) or bool((p[frames[-1]:] < lv_off[k]).any())
        past = np.roll(cal.ring, -(cal.seen % w), axis=0)  # the window before this sequence, oldest first
        every = np.concatenate([past, fired])
        c = np.concatenate([np.zeros((1, len(lv_on)), np.int64), np.cumsum(every, axis=0, dtype=np.int64)])
        t = np.arange(n)
        k = self._level_index(c[w + t] - c[t], cal.seen + t)
        warm = k < 0
        cross = np.zeros(n, dtype=bool)
        cross[self.crossings(p)] = True
        cross = np.where(warm, cross, fired[t, np.maximum(k, 0)] > 0)
        cal.seen += n
        cal.ring = np.roll(every[-w:], cal.seen % w, axis=0)
        cal.counts = cal.ring.sum(axis=0, dtype=np.int64)
        cal.armed = armed_end
        return np.flatnonzero(cross), np.where(warm, float(self.on), CALIBRATION_LEVELS[np.maximum(k, 0)])

    def run(self, probs, type_probs=None, *, quiet=None, faults=None, calibration: Calibration | None = None) -> Run:
        """Decide every frame of one session at once: exactly :meth:`decide` stepped over the frames from a
        fresh state (``new_state(calibration)``). ``probs`` ``[n, 3]`` (a NaN row: the model produced nothing,
        certain silence), ``type_probs`` ``[n, 5]`` or None, ``quiet`` ``[n]`` bools, ``faults`` ``[n]`` reasons
        or None; ``calibration``: rule 9's state carried from earlier sessions, updated in place."""
        s = self.smoothed(probs)
        n = len(s)
        blocked = np.zeros(n, dtype=bool) if quiet is None else np.asarray(quiet, dtype=bool).reshape(-1).copy()
        if len(blocked) != n:
            raise ValueError(f"policy: quiet has {len(blocked)} frames, probs {n}")
        if faults is not None:
            if len(faults) != n:
                raise ValueError(f"policy: faults has {len(faults)} frames, probs {n}")
            blocked |= np.array([f is not None for f in faults], dtype=bool)
        p_bc, p_tt = s[:, BACKCHANNEL], s[:, TAKE_TURN]
        state = self.new_state(calibration)
        said: dict[int, tuple[str, str]] = {}
        frames, on = self.trigger(p_bc, calibration)
        for t in frames.tolist():
            if self._emit(state, t, bool(blocked[t])):
                chosen = self.choose_form(state, None if type_probs is None else type_probs[t])
                due = t + self.lead_frames
                if due < n and not blocked[due]:
                    said[due] = chosen
        action = np.full(n, SILENT, dtype=np.int8)
        if self.take_turn is not None:
            action[(p_tt >= self.take_turn) & ~blocked] = TAKE_TURN
        action[list(said)] = BACKCHANNEL
        return Run(action, p_bc, p_tt, said, None if faults is None else list(faults), on)


def _probs_row(probs) -> tuple[float, float, float]:
    if probs is None:
        return (1.0, 0.0, 0.0)
    p = tuple(float(x) for x in np.asarray(probs, dtype=np.float64).reshape(-1))
    if len(p) != len(ACTIONS):
        raise ValueError(f"policy: probs must have {len(ACTIONS)} values (SILENT, BACKCHANNEL, TAKE_TURN), "
                         f"got {len(p)}")
    if any(math.isnan(x) for x in p):
        return (1.0, 0.0, 0.0)
    return p


def _smoothed(state: PolicyState, p: tuple[float, float, float], w: int) -> tuple[float, ...]:
    c = state.sums[-1]
    state.sums.append((c[0] + p[0], c[1] + p[1], c[2] + p[2]))
    if w == 1:  # Policy.smooth returns the input unchanged
        return p
    lo, hi, n = state.sums[0], state.sums[-1], len(state.sums) - 1
    return tuple((hi[i] - lo[i]) / n for i in range(3))
