"""Figures of one system on one split, from its per-frame outputs and the policy runs that decide on them.

Everything here scores; nothing decides (decisions come from ``Policy.run``). Times in seconds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, log_loss, roc_auc_score

from backchannel import metrics
from backchannel.corpora.events import BACKCHANNEL, TAKE_TURN
from backchannel.lexicon import BC_TYPES
from backchannel.policy import Run

from .data import duration, turn_onsets


def event_report(pred, gold, margins) -> dict:
    """Pooled backchannel event P/R/F1 (``metrics.event_scores``) at each margin, as dicts."""
    return {k: v.to_dict() for k, v in metrics.event_scores(list(pred), list(gold), margins).items()}


def cadence(pred, gold, rows) -> dict:
    """``metrics.cadence_report`` of predicted vs true onsets of the same rows (rates per listener-minute)."""
    return metrics.cadence_report(list(pred), list(gold), [r["va_speaker"] for r in rows],
                                  [duration(r) for r in rows])


def offsets(onsets_list, rows) -> np.ndarray:
    """Onsets minus the end of the speaker's last speech (``metrics.onset_offsets``), pooled."""
    parts = [metrics.onset_offsets(o, r["va_speaker"]) for o, r in zip(onsets_list, rows)]
    return np.concatenate(parts) if parts else np.zeros(0)


def frame_report(probs: Sequence[np.ndarray], rows) -> dict:
    """Frame figures (argmax class) of per-frame action probabilities against the rows' ``action`` labels
    (negative labels are ignored), plus the backchannel precision and recall at the argmax."""
    labels = np.concatenate([r["action"] for r in rows]).astype(int)
    p = np.nan_to_num(np.concatenate(probs), nan=0.0)
    out = metrics.frame_scores(labels, p)
    keep = labels >= 0
    y, pred = labels[keep] == BACKCHANNEL, p[keep].argmax(axis=1) == BACKCHANNEL
    out["precision_backchannel"] = float((y & pred).sum() / pred.sum()) if pred.any() else 0.0
    out["recall_backchannel"] = float((y & pred).sum() / y.sum()) if y.any() else 0.0
    return out


def rule_frame_report(probs: Sequence[np.ndarray], rows) -> dict:
    """Frame figures of a 0/1 rule (its BACKCHANNEL column) against BACKCHANNEL frames: F1, precision,
    recall and average precision."""
    labels = np.concatenate([r["action"] for r in rows]).astype(int)
    s = np.nan_to_num(np.concatenate([p[:, BACKCHANNEL] for p in probs]), nan=0.0)
    keep = labels >= 0
    y, s = labels[keep] == BACKCHANNEL, s[keep]
    fired = s >= 0.5
    return {"f1_backchannel": float(f1_score(y, fired, zero_division=0)),
            "precision_backchannel": float((y & fired).sum() / fired.sum()) if fired.any() else 0.0,
            "recall_backchannel": float((y & fired).sum() / y.sum()) if y.any() else 0.0,
            "auprc_backchannel": float(average_precision_score(y, s)) if y.any() else math.nan,
            "n_frames": len(y)}


def type_report(types: Sequence[np.ndarray], rows) -> dict:
    """Backchannel type (argmax of ``types``) on the frames labelled BACKCHANNEL with a known type: accuracy,
    macro-F1 over the ``BC_TYPES``, the majority type's share, and the confusion matrix (``confusion[i][j]``:
    frames of true type i predicted as j)."""
    y = np.concatenate([r["bc_type"] for r in rows]).astype(int)
    p = np.concatenate([np.asarray(t).argmax(axis=1) for t in types])
    keep = y >= 0
    if not keep.any():
        return {"n_frames": 0}
    y, p = y[keep], p[keep]
    labels = list(range(len(BC_TYPES)))
    return {"accuracy": float(np.mean(y == p)),
            "macro_f1": float(f1_score(y, p, labels=labels, average="macro", zero_division=0)),
            "majority_share": float(np.bincount(y).max() / len(y)), "n_frames": len(y),
            "confusion": confusion_matrix(y, p, labels=labels).tolist()}


def type_log_loss(types: Sequence[np.ndarray], rows) -> float:
    """Mean negative log-likelihood (nats) of the true type under ``types`` (probabilities ``[n, 5]`` per row,
    each frame normalised to sum 1) on the frames labelled BACKCHANNEL with a known type; NaN without such
    frames. Unlike the argmax figures it says how much a system knows about the type: below the train type
    prior's log loss it carries information, above it less than none."""
    y = np.concatenate([r["bc_type"] for r in rows]).astype(int)
    p = np.concatenate([np.asarray(t, dtype=np.float64) for t in types])
    keep = y >= 0
    if not keep.any():
        return math.nan
    p = p[keep]
    return float(log_loss(y[keep], p / p.sum(axis=1, keepdims=True), labels=list(range(len(BC_TYPES)))))


def shift_hold_predictions(runs: Sequence[Run], rows, pad: float = 0.05, dur: float = 0.10):
    """Per mutual-silence pause of each row (VAP's window: frames whose end lies 50-150 ms into the pause;
    pauses shorter than 150 ms or running past the last frame skipped): ``(predicted shift [k] 0/1,
    true shift [k] 0/1)``. Predicted shift = the policy decided TAKE_TURN on a frame of the window."""
    pred, labels = [], []
    for run, row in zip(runs, rows):
        n = len(run.action)
        for pauses, label in ((row["hold_pauses"], 0), (row["shift_pauses"], 1)):
            for start, end in np.asarray(pauses, dtype=np.float64).reshape(-1, 2):
                if end - start < pad + dur - 1e-9:
                    continue
                frames = metrics.pause_window_frames(start, pad, dur)
                if len(frames) == 0 or frames[-1] >= n:
                    continue
                pred.append(int(np.any(run.action[frames] == TAKE_TURN)))
                labels.append(label)
    return np.asarray(pred, dtype=int), np.asarray(labels, dtype=int)


def shift_hold_auc(p_shift: Sequence[np.ndarray], rows) -> dict:
    """Threshold-free ranking of shift vs hold pauses by the mean ``p_shift`` over VAP's window
    (``metrics.shift_hold_scores``): ROC AUC and the pause counts."""
    parts = [metrics.shift_hold_scores(p, r["hold_pauses"], r["shift_pauses"]) for p, r in zip(p_shift, rows)]
    s = np.concatenate([x[0] for x in parts]) if parts else np.zeros(0)
    y = np.concatenate([x[1] for x in parts]).astype(int) if parts else np.zeros(0, int)
    both = len(np.unique(y)) == 2
    return {"roc_auc": float(roc_auc_score(y, s)) if both else math.nan,
            "n_shift": int((y == 1).sum()), "n_hold": int((y == 0).sum())}


def shift_hold_accuracy(runs: Sequence[Run], rows) -> float:
    """Balanced accuracy of :func:`shift_hold_predictions` (NaN without both kinds of pause)."""
    pred, y = shift_hold_predictions(runs, rows)
    return metrics.balanced_accuracy(y, pred) if len(np.unique(y)) == 2 else math.nan


def take_turn_report(runs: Sequence[Run], rows, margins, definition: str = "isolated") -> dict:
    """Take-turn onsets as shipped (the first frame of each run of TAKE_TURN decisions) against the true
    take-turn onsets (``data.turn_onsets``: shifts and interruptions, a turn-initial acknowledgement starting its
    turn under the isolated definition): event scores; latency after the floor party's speech end
    in shift pauses (median, and the share of shift pauses with a take-turn within -0.5..2 s of their start)
    vs the human gap; false take-turns inside the floor party's speech (per listener-minute)."""
    pred = [r.take_turn_onsets for r in runs]
    gold = [turn_onsets(r, definition) for r in rows]
    lat = np.concatenate([metrics.take_turn_latency(p, r["shift_pauses"]) for p, r in zip(pred, rows)] or [[]])
    human = np.concatenate([r["shift_pauses"][:, 1] - r["shift_pauses"][:, 0] for r in rows] or [[]])
    false = sum(metrics.false_take_turns_in_speech(p, g, r["va_speaker"]) for p, g, r in zip(pred, gold, rows))
    minutes = sum(duration(r) for r in rows) / 60
    return {"events": event_report(pred, gold, margins),
            "rate_per_minute": sum(len(p) for p in pred) / minutes if minutes else math.nan,
            "median_latency": float(np.nanmedian(lat)) if np.any(~np.isnan(lat)) else math.nan,
            "coverage": float(np.mean(~np.isnan(lat))) if len(lat) else math.nan,
            "human_median_latency": float(np.median(human)) if len(human) else math.nan,
            "false_in_speech": int(false), "false_in_speech_per_minute": false / minutes if minutes else math.nan,
            "n_shift_pauses": len(lat)}
