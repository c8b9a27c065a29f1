"""Tuning on DEV only: a search over :class:`~backchannel.policy.Policy` settings.

Every setting is scored on what :meth:`Policy.run` decides, so the tuned policy is exactly what a user
runs (``Policy.from_report``). Backchannel settings (``on``, ``smoothing``, ``lead``) maximise pooled event
F1 at a margin, optionally among settings whose dev rate lies within ``rate_factor`` of the human rate;
then the take-turn level maximises take-turn onset F1 (the shipped policy) or shift/hold balanced accuracy.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from backchannel import metrics
from backchannel.frames import FRAME_S
from backchannel.policy import Policy

_EPS = 1e-9
THRESHOLDS = tuple(np.round(np.arange(0.05, 0.95 + _EPS, 0.025), 4).tolist())


@dataclass(frozen=True)
class PolicyGrid:
    """The settings tuning tries: trigger levels ``on`` (off = on), ``smoothing`` (frames), ``lead``
    (seconds, whole frames), a fixed ``refractory`` (s), and take-turn levels ``take_turn``."""

    on: tuple = THRESHOLDS
    smoothing: tuple = (1, 3, 5)
    lead: tuple = tuple(round(0.08 * k, 2) for k in range(9))  # 0 .. 0.64 s
    refractory: float = 0.8
    take_turn: tuple = THRESHOLDS


@dataclass
class Tuned:
    """A tuned policy and its dev figures: ``f1`` at the tuning margin, ``rate``/``human_rate`` per
    listener-minute, ``in_band`` (False when no setting met the rate band and the nearest rate was taken),
    ``table`` (every setting scored: on, smoothing, lead, f1, rate)."""

    policy: Policy
    f1: float
    rate: float
    human_rate: float
    in_band: bool = True
    table: list[dict] = field(default_factory=list, repr=False)

    def dev(self) -> dict:
        return {"f1": self.f1, "rate": self.rate, "human_rate": self.human_rate, "in_band": self.in_band,
                "settings_scored": len(self.table)}


def _log_gap(rate: float, human: float) -> float:
    return abs(math.log(rate / human)) if rate > 0 and human > 0 else math.inf


def tune_backchannel(probs_list: Sequence[np.ndarray], gold: Sequence[np.ndarray], *, base: Policy | None = None,
                     grid: PolicyGrid = PolicyGrid(), margin=(-0.5, 0.5), rate_factor: float | None = None) -> Tuned:
    """Backchannel settings of ``base`` (default ``Policy()``) maximising pooled dev event F1 at ``margin``.

    ``probs_list``: per-listener action probabilities ``[n, 3]``; ``gold``: their true onsets (seconds).
    With ``rate_factor`` (e.g. 1.25) only settings whose dev rate lies within ``[human / f, human * f]``
    compete; if none does, the one nearest the human rate (log ratio) wins and ``in_band`` is False. F1 ties
    go to the rate nearer the human one. Settings are scored in decreasing order of an upper bound on their
    F1 (hits reachable at any lead) and the search stops once the bound falls below the best F1 found, so
    the winner is the one an exhaustive search finds.
    """
    base = replace(base or Policy(), take_turn=None, refractory=grid.refractory, cadence=None)
    probs_list = [np.asarray(p, dtype=np.float64) for p in probs_list]
    gold = [np.sort(np.asarray(g, dtype=np.float64).reshape(-1)) for g in gold]
    if not probs_list or len(probs_list) != len(gold):
        raise ValueError(f"need equally many (>0) probability streams and onset lists, got {len(probs_list)} "
                         f"and {len(gold)}")
    minutes = sum(len(p) for p in probs_list) * FRAME_S / 60
    n_true = sum(len(g) for g in gold)
    human = n_true / minutes if minutes else math.nan
    band = math.inf if rate_factor is None else math.log(rate_factor) + _EPS

    def score(policy: Policy) -> dict:
        onsets = [policy.run(p).backchannel_onsets for p in probs_list]
        n = sum(len(o) for o in onsets)
        f1 = metrics.event_scores(onsets, gold, [margin])[metrics.margin_label(margin)].f1
        return {"on": policy.on, "smoothing": policy.smoothing, "lead": policy.lead, "f1": f1,
                "rate": n / minutes if minutes else math.nan, "_policy": policy}

    # stage 1: crossings at lead 0 for every (smoothing, on): counts and the reachable-hits bound
    stage = []
    for w in grid.smoothing:
        for on in grid.on:
            policy = replace(base, on=float(on), off=float(on), smoothing=int(w), lead=0.0)
            frames = [policy.run(p).backchannel_frames for p in probs_list]
            base_onsets = [(f + 1) * FRAME_S for f in frames]
            n = sum(len(o) for o in base_onsets)
            hits = _reachable(base_onsets, gold, margin, grid.lead)
            stage.append((2 * hits / (n + n_true) if n + n_true else 0.0, policy))
    # stage 2: every lead of the promising ones, best bound first
    table, best = [], None
    for bound, policy in sorted(stage, key=lambda x: -x[0]):
        if best is not None and bound < best["f1"] and best["_in"]:
            break
        for lead in grid.lead:
            row = score(replace(policy, lead=float(lead)))
            row["_in"] = _log_gap(row["rate"], human) <= band
            table.append(row)
            if row["_in"] and (best is None or not best["_in"] or _rank(row, human) > _rank(best, human)):
                best = row
    in_band = best is not None and best["_in"]
    if not in_band:  # nothing in the band (so every setting was scored): the rate nearest the human rate
        best = min(table, key=lambda r: (_log_gap(r["rate"], human), -r["f1"]))
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in table]
    return Tuned(best["_policy"], best["f1"], best["rate"], human, in_band, clean)


def _rank(row: dict, human: float) -> tuple:
    return (row["f1"], -_log_gap(row["rate"], human))


def _reachable(base, trues, margin, leads, slack: float = 1e-6) -> int:
    """Upper bound on hits of onsets ``base`` (lead 0) over all ``leads``: per stream, the fewer of (true
    onsets with an onset in reach) and (onsets with a true onset in reach)."""
    lo_lead, hi_lead = min(leads), max(leads)
    m0, m1 = margin
    total = 0
    for p, t in zip(base, trues):
        if len(p) == 0 or len(t) == 0:
            continue
        # p + lead - o in [m0, m1]  <=>  o + m0 - lead <= p <= o + m1 - lead
        a = np.searchsorted(p, t + m0 - hi_lead - slack, "left") < np.searchsorted(p, t + m1 - lo_lead + slack, "right")
        b = np.searchsorted(t, p - m1 + lo_lead - slack, "left") < np.searchsorted(t, p - m0 + hi_lead + slack, "right")
        total += min(int(a.sum()), int(b.sum()))
    return total


def tune_take_turn(policy: Policy, probs_list, turn_gold, *, grid: PolicyGrid = PolicyGrid(),
                   margin=(-0.5, 0.5)) -> tuple[Policy, float]:
    """``policy`` with the take-turn level maximising pooled dev F1 of its take-turn onsets (first frame of
    each run of TAKE_TURN decisions) against the true take-turn onsets ``turn_gold``; ``(policy, dev F1)``."""
    best, best_f1 = None, -1.0
    label = metrics.margin_label(margin)
    for level in grid.take_turn:
        cand = replace(policy, take_turn=float(level))
        onsets = [cand.run(p).take_turn_onsets for p in probs_list]
        f1 = metrics.event_scores(onsets, list(turn_gold), [margin])[label].f1
        if f1 > best_f1:
            best, best_f1 = cand, f1
    return best, best_f1


def tune_shift_hold(policy: Policy, probs_list, rows, *, grid: PolicyGrid = PolicyGrid()) -> tuple[Policy, float]:
    """``policy`` with the take-turn level maximising dev shift-vs-hold balanced accuracy of its decisions
    (VAP's protocol, see ``scoring.shift_hold_predictions``); ``(policy, dev balanced accuracy)``."""
    from backchannel.evaluation.scoring import shift_hold_predictions

    best, best_ba = None, -1.0
    for level in grid.take_turn:
        cand = replace(policy, take_turn=float(level))
        pred, labels = shift_hold_predictions([cand.run(p) for p in probs_list], rows)
        if len(set(labels.tolist())) < 2:
            return cand, math.nan
        ba = metrics.balanced_accuracy(labels, pred)
        if ba > best_ba:
            best, best_ba = cand, ba
    return best, best_ba
