"""Evaluation metrics (DESIGN.md, "Evaluation protocol") on plain arrays.

Everything runs on the 80 ms frame clock of ``backchannel.frames``: per-frame arrays are indexed
by frame ``t`` (covering ``[0.08 t, 0.08 (t + 1))`` s); event onsets are lists of seconds.

1. Frame level: per-class F1, macro-F1, balanced accuracy, AUPRC (scikit-learn).
2. Backchannel events (Ruede et al. 2017): causal smoothing, threshold triggers with a refractory
   period, matching to true onsets within a margin, threshold tuning on dev.
3. Turn-taking (VAP, Ekstedt & Skantze 2022): shift-vs-hold balanced accuracy in mutual silences,
   take-turn latency.
4. Cadence: rate per minute, onset offsets from the speaker's last speech, JS distance of their
   histograms, share in overlap, inter-onset intervals.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score

from backchannel.frames import FRAME_S, frame_end, frame_start

_EPS = 1e-9  # seconds; absorbs float error in frame times such as 0.08 * 3

#: Ruede et al. (2017) margins in seconds, relative to the TRUE onset: hit iff pred - true in [m0, m1].
MARGINS: tuple[tuple[float, float], ...] = ((-0.2, 0.2), (-0.1, 0.5), (-0.5, 0.5), (0.0, 1.0))
#: Default histogram bins (seconds) for onset offsets from the speaker's last speech end.
OFFSET_BINS = np.round(np.arange(-1.0, 2.0 + _EPS, 0.1), 6)


# ----------------------------------------------------------------------------------------------
# 1. Frame level
# ----------------------------------------------------------------------------------------------
def _valid(labels, probs):
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be [n_frames, n_classes] matching {len(labels)} labels, got {probs.shape}")
    keep = labels >= 0  # negative labels (e.g. -100 padding) are ignored
    return labels[keep].astype(int), probs[keep]


def per_class_f1(labels, preds, n_classes: int = 3) -> np.ndarray:
    """F1 of each class ``0..n_classes-1`` over frames (0 for a class never true nor predicted)."""
    return f1_score(labels, preds, labels=list(range(n_classes)), average=None, zero_division=0)


def macro_f1(labels, preds, n_classes: int = 3) -> float:
    """Unweighted mean of the per-class F1 over frames."""
    return float(np.mean(per_class_f1(labels, preds, n_classes)))


def balanced_accuracy(labels, preds) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    return float(balanced_accuracy_score(labels, preds))


def auprc(labels, probs) -> np.ndarray:
    """Area under the precision-recall curve (average precision) of each class, one-vs-rest.

    ``probs``: [n_frames, n_classes]. NaN for a class with no true frame (undefined).
    """
    labels, probs = _valid(labels, probs)
    out = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        if np.any(labels == c):
            out[c] = average_precision_score(labels == c, probs[:, c])
    return out


def frame_scores(labels, probs) -> dict:
    """All frame-level figures for per-frame ``labels`` (0/1/2, negatives ignored) and ``probs``
    [n_frames, n_classes]; predictions are the argmax class. Returns a JSON-ready dict."""
    labels, probs = _valid(labels, probs)
    preds = probs.argmax(axis=1)
    n = probs.shape[1]
    return {
        "f1": per_class_f1(labels, preds, n).tolist(),
        "macro_f1": macro_f1(labels, preds, n),
        "balanced_accuracy": balanced_accuracy(labels, preds),
        "auprc": auprc(labels, probs).tolist(),
        "n_frames": len(labels),
    }


# ----------------------------------------------------------------------------------------------
# 2. Backchannel events
# ----------------------------------------------------------------------------------------------
def smooth(probs, window_frames: int) -> np.ndarray:
    """Causal moving average over the last ``window_frames`` frames (the current one included).

    ``out[t] = mean(probs[max(0, t - w + 1) : t + 1])`` along axis 0: no future frame is used, so
    changing frame ``t + 1`` never changes ``out[t]``. The first ``w - 1`` frames average over the
    frames available. ``window_frames=1`` returns the input unchanged (as float).
    """
    x = np.asarray(probs, dtype=np.float64)
    w = int(window_frames)
    if w < 1:
        raise ValueError(f"window_frames must be >= 1, got {window_frames}")
    if w == 1 or len(x) == 0:
        return x.copy()
    c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    t = np.arange(len(x))
    lo = np.maximum(t + 1 - w, 0)
    count = (t + 1 - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return (c[t + 1] - c[lo]) / count


def trigger_onsets(probs, threshold: float, refractory: float = 0.8, smoothing: int = 1,
                   lead: float = 0.0) -> np.ndarray:
    """Predicted onsets (seconds) from a per-frame probability (Ruede et al. 2017).

    The probability is smoothed causally over ``smoothing`` frames. A trigger fires at frame ``t``
    where the smoothed value rises to ``>= threshold`` (it was below at ``t - 1``, or ``t = 0``).
    The decision is made at the END of that frame, ``0.08 (t + 1)`` s, the earliest moment a causal
    system has seen the frame; the predicted onset is ``0.08 (t + 1) + lead`` s.

    ``lead`` (seconds, default 0): the system speaks the moment it decides. Our labels mark the
    frames whose next-500 ms horizon holds the true onset, so a good model crosses up to 500 ms
    BEFORE the true onset; a positive ``lead`` is a fixed delay between decision and speech. It is
    still causal (decide now, speak later) and, like ``threshold`` and ``smoothing``, is tuned on
    dev only (``tune_threshold``).

    Refractory: after a trigger, no trigger whose onset lies less than ``refractory`` s after it
    (rising edges inside the refractory period are dropped, not postponed).
    """
    s = smooth(probs, smoothing)
    if s.ndim != 1:
        raise ValueError(f"probs must be 1-D (one class), got shape {np.shape(probs)}")
    above = s >= threshold
    rising = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    onsets: list[float] = []
    for t in rising:
        onset = float(frame_end(int(t))) + lead
        if not onsets or onset - onsets[-1] >= refractory - _EPS:
            onsets.append(onset)
    return np.asarray(onsets, dtype=np.float64)


@dataclass
class EventScores:
    """Counts of matched events; precision/recall/F1 are 0 where their denominator is 0."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: EventScores) -> EventScores:
        """Pool counts (micro average over dialogues/listeners)."""
        return EventScores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


def match_events(pred_onsets, true_onsets, margin: tuple[float, float] = (-0.5, 0.5)) -> EventScores:
    """Match predicted to true onsets (seconds) within ``margin`` (Ruede et al. 2017).

    A prediction ``p`` may claim a true onset ``o`` when ``margin[0] <= p - o <= margin[1]`` (the
    margin is relative to the TRUE onset; bounds inclusive). Predictions are taken in time order;
    each claims, among the still-unmatched true onsets it may claim, the nearest (smallest
    ``|p - o|``, the earlier one on a tie) and is a hit (tp); a prediction with nothing left to claim
    is a false positive (fp). Each true onset is matched at most once; the unmatched ones are misses
    (fn).
    """
    m0, m1 = margin
    if m0 > m1:
        raise ValueError(f"margin must be (low, high) with low <= high, got {margin}")
    pred = np.sort(np.asarray(pred_onsets, dtype=np.float64).reshape(-1))
    true = np.sort(np.asarray(true_onsets, dtype=np.float64).reshape(-1))
    matched = np.zeros(len(true), dtype=bool)
    tp = 0
    for p in pred:
        lo = np.searchsorted(true, p - m1 - _EPS, side="left")
        hi = np.searchsorted(true, p - m0 + _EPS, side="right")
        cand = [i for i in range(lo, hi) if not matched[i]]
        if cand:
            best = min(cand, key=lambda i: (abs(p - true[i]), i))
            matched[best] = True
            tp += 1
    return EventScores(tp=tp, fp=len(pred) - tp, fn=len(true) - tp)


def margin_label(margin: tuple[float, float]) -> str:
    """``(-0.2, 0.2)`` -> ``"[-200,+200]"`` (milliseconds, as in DESIGN.md)."""
    def ms(x: float) -> str:
        v = round(x * 1000)
        return "0" if v == 0 else f"{v:+d}"

    return f"[{ms(margin[0])},{ms(margin[1])}]"


def _as_streams(x) -> list[np.ndarray]:
    """One onset list -> ``[it]``; a list of per-listener onset lists -> itself (as arrays)."""
    if isinstance(x, np.ndarray) and x.ndim <= 1:
        return [x]
    x = list(x)
    if all(np.isscalar(v) for v in x):
        return [np.asarray(x, dtype=np.float64)]
    return [np.asarray(v, dtype=np.float64) for v in x]


def event_scores(pred, true, margins: Sequence[tuple[float, float]] = MARGINS) -> dict[str, EventScores]:
    """``match_events`` at each margin, keyed by ``margin_label``.

    ``pred``/``true``: one onset list, or equally long lists of per-listener onset lists whose
    counts are pooled (micro average).
    """
    preds, trues = _as_streams(pred), _as_streams(true)
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} predicted onset streams but {len(trues)} true ones")
    out = {}
    for m in margins:
        total = EventScores()
        for p, t in zip(preds, trues):
            total = total + match_events(p, t, m)
        out[margin_label(m)] = total
    return out


@dataclass
class TriggerSettings:
    """Everything that turns a per-frame probability into onsets (see ``trigger_onsets``)."""

    threshold: float
    smoothing: int = 1
    refractory: float = 0.8
    lead: float = 0.0

    def onsets(self, probs) -> np.ndarray:
        return trigger_onsets(probs, self.threshold, self.refractory, self.smoothing, self.lead)


@dataclass
class Tuned:
    """Outcome of ``tune_threshold``: the chosen settings and their dev figures.

    ``rate``/``human_rate`` are onsets per listener-minute (pooled); ``table`` lists every setting
    tried as dicts (threshold, smoothing, lead, f1, rate) for plots.
    """

    settings: TriggerSettings
    f1: float
    rate: float
    human_rate: float
    table: list[dict] = field(default_factory=list, repr=False)


def tune_threshold(probs_list, true_onsets_list, margin: tuple[float, float] = (-0.5, 0.5), grid=None, *,
                   smoothing: int | Sequence[int] = 1, lead: float | Sequence[float] = 0.0,
                   refractory: float = 0.8, rate_factor: float | None = None,
                   durations: Sequence[float] | None = None) -> Tuned:
    """Choose trigger settings on DEV data: maximise pooled event F1 at ``margin``.

    ``probs_list``: per-listener 1-D backchannel probabilities; ``true_onsets_list``: their true
    onsets (seconds). ``grid``: thresholds to try (default 0.05..0.95 in steps of 0.025);
    ``smoothing`` (frames) and ``lead`` (seconds) may be sequences, and every combination is tried.
    ``durations`` (seconds) default to ``n_frames * 0.08``.

    Rate-targeting variant: with ``rate_factor`` (e.g. 1.25), only settings whose predicted rate
    (onsets per listener-minute) lies within ``[human / f, human * f]`` compete on F1; if none does,
    the one whose rate is nearest the human rate (in log ratio) wins. F1 ties go to the rate nearer
    the human one.
    """
    probs_list = [np.asarray(p, dtype=np.float64) for p in probs_list]
    trues = [np.asarray(t, dtype=np.float64) for t in true_onsets_list]
    if len(probs_list) != len(trues) or not probs_list:
        raise ValueError(f"need equally many (>0) probability streams and onset lists, "
                         f"got {len(probs_list)} and {len(trues)}")
    grid = np.round(np.arange(0.05, 0.95 + _EPS, 0.025), 4) if grid is None else np.asarray(grid, float)
    smoothings = [smoothing] if np.isscalar(smoothing) else list(smoothing)
    leads = [lead] if np.isscalar(lead) else list(lead)
    if durations is None:
        durations = [len(p) * FRAME_S for p in probs_list]
    minutes = float(np.sum(durations)) / 60.0
    human = sum(len(t) for t in trues) / minutes if minutes > 0 else math.nan

    table = []
    for w in smoothings:
        smoothed = [smooth(p, int(w)) for p in probs_list]
        for thr in grid:
            base = [trigger_onsets(p, float(thr), refractory) for p in smoothed]  # lead only shifts them
            rate = sum(len(p) for p in base) / minutes if minutes > 0 else math.nan
            for ld in leads:
                s = TriggerSettings(float(thr), int(w), refractory, float(ld))
                sc = event_scores([p + s.lead for p in base], trues, [margin])[margin_label(margin)]
                table.append({"threshold": s.threshold, "smoothing": s.smoothing, "lead": s.lead,
                              "f1": sc.f1, "rate": rate, "_settings": s})

    def log_gap(row) -> float:
        if not row["rate"] > 0 or not human > 0:
            return math.inf
        return abs(math.log(row["rate"] / human))

    pool = table
    if rate_factor is not None:
        pool = [r for r in table if log_gap(r) <= math.log(rate_factor) + _EPS]
        if not pool:
            pool = [min(table, key=log_gap)]
    best = max(pool, key=lambda r: (r["f1"], -log_gap(r)))
    clean = [{k: v for k, v in r.items() if k != "_settings"} for r in table]
    return Tuned(best["_settings"], best["f1"], best["rate"], human, clean)


# ----------------------------------------------------------------------------------------------
# 3. Turn-taking (VAP)
# ----------------------------------------------------------------------------------------------
def pause_window_frames(start: float, pad: float = 0.05, dur: float = 0.10) -> np.ndarray:
    """Frames whose END (decision time) lies in ``[start + pad, start + pad + dur]`` seconds."""
    first = max(0, math.ceil((start + pad) / FRAME_S - 1 - _EPS))
    last = math.floor((start + pad + dur) / FRAME_S - 1 + _EPS)
    return np.arange(first, last + 1)


def shift_hold_scores(p_shift, hold_pauses, shift_pauses, pad: float = 0.05, dur: float = 0.10):
    """Per-pause shift scores for one listener: ``(scores, is_shift)`` arrays.

    VAP's convention (Ekstedt & Skantze 2022, ``metric_pad=0.05``, ``metric_dur=0.1``): the score of
    a mutual-silence pause ``[start, end]`` (seconds) is the mean of the listener's per-frame shift
    (take-turn) probability ``p_shift`` over the frames whose end lies in
    ``[start + 50 ms, start + 150 ms]``: the model has heard the silence begin but not yet how it
    ends. Pauses shorter than ``pad + dur`` (VAP's 150 ms minimum silence) or running past the last
    frame are skipped.
    """
    p = np.asarray(p_shift, dtype=np.float64).reshape(-1)
    scores, labels = [], []
    for pauses, label in ((hold_pauses, 0), (shift_pauses, 1)):
        for start, end in np.asarray(pauses, dtype=np.float64).reshape(-1, 2):
            if end - start < pad + dur - _EPS:
                continue
            frames = pause_window_frames(start, pad, dur)
            if len(frames) == 0 or frames[-1] >= len(p):
                continue
            scores.append(float(p[frames].mean()))
            labels.append(label)
    return np.asarray(scores), np.asarray(labels, dtype=int)


def shift_hold_balanced_accuracy(p_shift, hold_pauses, shift_pauses, threshold: float = 0.5,
                                 pad: float = 0.05, dur: float = 0.10) -> float:
    """Balanced accuracy of shift vs hold over mutual-silence pauses (a pause is predicted a shift
    when its ``shift_hold_scores`` score is ``>= threshold``).

    One listener (``p_shift`` a 1-D array, pauses ``[k, 2]`` seconds) or lists of them (pooled).
    NaN when no pause qualifies.
    """
    if isinstance(p_shift, np.ndarray) and p_shift.ndim == 1:
        p_shift, hold_pauses, shift_pauses = [p_shift], [hold_pauses], [shift_pauses]
    if not len(p_shift) == len(hold_pauses) == len(shift_pauses):
        raise ValueError("p_shift, hold_pauses and shift_pauses must list the same listeners")
    scores, labels = [], []
    for p, h, s in zip(p_shift, hold_pauses, shift_pauses):
        sc, lb = shift_hold_scores(p, h, s, pad, dur)
        scores.append(sc)
        labels.append(lb)
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    if len(labels) == 0:
        return math.nan
    return balanced_accuracy(labels, (scores >= threshold).astype(int))


def take_turn_latency(pred_onsets, shift_pauses, window: tuple[float, float] = (-0.5, 2.0)) -> np.ndarray:
    """Per shift pause: first predicted take-turn onset minus the pause start (the speaker's speech
    end), in seconds, searching ``[start + window[0], start + window[1]]``; NaN where none.

    Compare with the human latency ``end - start`` of the same pauses. Negative values: the model
    takes the turn before the speaker has stopped.
    """
    pred = np.sort(np.asarray(pred_onsets, dtype=np.float64).reshape(-1))
    out = []
    for start, _end in np.asarray(shift_pauses, dtype=np.float64).reshape(-1, 2):
        i = np.searchsorted(pred, start + window[0] - _EPS, side="left")
        hit = i < len(pred) and pred[i] <= start + window[1] + _EPS
        out.append(pred[i] - start if hit else math.nan)
    return np.asarray(out)


# ----------------------------------------------------------------------------------------------
# 4. Cadence
# ----------------------------------------------------------------------------------------------
def rate_per_minute(onsets, duration) -> float:
    """Onsets per minute. ``onsets`` (seconds) over ``duration`` seconds, or a list of per-listener
    onset lists with a list of durations (pooled: total count / total minutes)."""
    if np.ndim(duration) == 0:
        count, total = len(onsets), float(duration)
    else:
        streams = list(onsets)
        if len(streams) != len(duration):
            raise ValueError(f"{len(streams)} onset lists but {len(duration)} durations")
        count, total = sum(len(s) for s in streams), float(np.sum(duration))
    if total <= 0:
        raise ValueError(f"duration must be > 0 s, got {total}")
    return count / total * 60.0


def speech_runs(va, min_va: float = 0.0) -> list[tuple[float, float]]:
    """Stretches of speech (seconds) from per-frame voice-activity fractions.

    A frame is voiced when ``va > min_va``; a run of voiced frames ``t0..t1`` gets sub-frame edges:
    speech enters ``t0`` at its end and leaves ``t1`` from its start (``start = 0.08 (t0+1) -
    0.08 va[t0]``, ``end = 0.08 t1 + 0.08 va[t1]``), exact for a single interval; a one-frame run is
    centred in its frame.
    """
    va = np.asarray(va, dtype=np.float64).reshape(-1)
    voiced = va > min_va
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = []
    for t0, t1 in zip(edges[::2], edges[1::2] - 1):
        if t0 == t1:
            mid = float(frame_start(t0)) + FRAME_S / 2
            runs.append((mid - va[t0] * FRAME_S / 2, mid + va[t0] * FRAME_S / 2))
        else:
            runs.append((float(frame_end(t0)) - va[t0] * FRAME_S, float(frame_start(t1)) + va[t1] * FRAME_S))
    return runs


def onset_offsets(onsets, speaker_va, min_va: float = 0.0) -> np.ndarray:
    """Onset (seconds) minus the end of the speaker's last speech (``speech_runs`` of ``speaker_va``).

    Positive: the onset follows the speaker's speech end (a gap). Onsets inside a stretch of the
    speaker's speech (overlap) get onset minus the end of THAT stretch (negative; uses the speaker's
    future voice activity, fine for evaluation). NaN before the speaker's first speech.
    Note: the mined ``BackchannelEvent.since_speaker_end`` writes 0.0 for overlap instead.
    """
    runs = speech_runs(speaker_va, min_va)
    starts = np.asarray([r[0] for r in runs])
    ends = np.asarray([r[1] for r in runs])
    out = []
    for x in np.asarray(onsets, dtype=np.float64).reshape(-1):
        i = np.searchsorted(starts, x, side="right") - 1  # last run starting at or before x
        out.append(math.nan if i < 0 else x - ends[i])
    return np.asarray(out)


def share_in_overlap(onsets, speaker_va, min_va: float = 0.0) -> float:
    """Fraction of onsets that fall inside the speaker's speech (negative ``onset_offsets``); NaN if none."""
    off = onset_offsets(onsets, speaker_va, min_va)
    return float(np.mean(off < 0)) if len(off) else math.nan


def inter_onset_intervals(onsets) -> np.ndarray:
    """Seconds between consecutive onsets (sorted)."""
    return np.diff(np.sort(np.asarray(onsets, dtype=np.float64).reshape(-1)))


def js_distance(a, b, bins=OFFSET_BINS) -> float:
    """Jensen-Shannon distance (base 2: 0 identical .. 1 disjoint) between the histograms of samples
    ``a`` and ``b`` on the shared ``bins`` (edges, or a count spanning both samples' range).

    NaNs are dropped; values outside the edges are clipped into the outer bins so that no sample is
    lost. NaN when either sample is empty.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=bins)
    lo, hi = edges[0], np.nextafter(edges[-1], -np.inf)
    pa, _ = np.histogram(np.clip(a, lo, hi), bins=edges)
    pb, _ = np.histogram(np.clip(b, lo, hi), bins=edges)
    return float(jensenshannon(pa / pa.sum(), pb / pb.sum(), base=2))


def cadence_report(pred_onsets_list, true_onsets_list, speaker_va_list, durations=None,
                   bins=OFFSET_BINS) -> dict:
    """Model-vs-human cadence on the same listeners: rates per listener-minute and their ratio,
    onset-offset medians and JS distance, share in overlap, median inter-onset interval."""
    if durations is None:
        durations = [len(va) * FRAME_S for va in speaker_va_list]
    out = {}
    for who, streams in (("model", pred_onsets_list), ("human", true_onsets_list)):
        offsets = np.concatenate([onset_offsets(o, va) for o, va in zip(streams, speaker_va_list)] or [[]])
        iois = np.concatenate([inter_onset_intervals(o) for o in streams] or [[]])
        n = int(sum(len(o) for o in streams))
        out[who] = {
            "count": n,
            "rate_per_minute": rate_per_minute(streams, durations),
            "median_offset": float(np.nanmedian(offsets)) if np.any(~np.isnan(offsets)) else math.nan,
            "share_in_overlap": float(np.mean(offsets < 0)) if n else math.nan,
            "median_inter_onset": float(np.median(iois)) if len(iois) else math.nan,
            "_offsets": offsets,
        }
    human_rate = out["human"]["rate_per_minute"]
    out["rate_ratio"] = out["model"]["rate_per_minute"] / human_rate if human_rate > 0 else math.nan
    out["offset_js_distance"] = js_distance(out["model"].pop("_offsets"), out["human"].pop("_offsets"), bins)
    return out

