"""Evaluation metrics (DESIGN.md, "Evaluation protocol") on plain arrays.

Everything runs on the 80 ms frame clock of ``backchannel.frames``: per-frame arrays are indexed
by frame ``t`` (covering ``[0.08 t, 0.08 (t + 1))`` s); event onsets are lists of seconds.

1. Frame level: per-class F1, macro-F1, balanced accuracy, AUPRC (scikit-learn).
2. Backchannel events (Ruede et al. 2017): matching predicted to true onsets within a margin. Onsets
   come from ``backchannel.policy.Policy`` (the one decision core); this module scores them, it does
   not make them.
3. Turn-taking (VAP, Ekstedt & Skantze 2022): shift-vs-hold in mutual silences, take-turn latency,
   false take-turns in the speaker's speech.
4. Cadence: rate per minute, onset offsets from the speaker's last speech, JS distance of their
   histograms, share in overlap, inter-onset intervals.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

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
    hit, _ = matched_predictions(pred_onsets, true_onsets, margin)
    tp = int(hit.sum())
    return EventScores(tp=tp, fp=len(hit) - tp, fn=len(np.asarray(true_onsets).reshape(-1)) - tp)


def matched_predictions(pred_onsets, true_onsets, margin: tuple[float, float] = (-0.5, 0.5)):
    """The matching of :func:`match_events`: ``(hit [n_pred] bool, sorted predictions)``."""
    m0, m1 = margin
    if m0 > m1:
        raise ValueError(f"margin must be (low, high) with low <= high, got {margin}")
    pred = np.sort(np.asarray(pred_onsets, dtype=np.float64).reshape(-1))
    true = np.sort(np.asarray(true_onsets, dtype=np.float64).reshape(-1))
    matched = np.zeros(len(true), dtype=bool)
    hit = np.zeros(len(pred), dtype=bool)
    for j, p in enumerate(pred):
        lo = np.searchsorted(true, p - m1 - _EPS, side="left")
        hi = np.searchsorted(true, p - m0 + _EPS, side="right")
        cand = [i for i in range(lo, hi) if not matched[i]]
        if cand:
            best = min(cand, key=lambda i: (abs(p - true[i]), i))
            matched[best] = True
            hit[j] = True
    return hit, pred


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


def false_take_turns_in_speech(pred_onsets, true_onsets, speaker_va, margin=(-0.5, 0.5)) -> int:
    """Predicted take-turn onsets (seconds) that fall inside the speaker's speech (``speech_runs``) and
    match no true take-turn onset within ``margin`` (``matched_predictions``): the model barged in."""
    hit, pred = matched_predictions(pred_onsets, true_onsets, margin)
    inside = onset_offsets(pred, speaker_va) < 0
    return int(np.sum(inside & ~hit))


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

