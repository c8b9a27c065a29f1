"""User onset classification: at each listener speech onset while the floor party holds the floor, is
it a backchannel or the listener taking the turn? Scored from what is known 80, 160, 240 and 400 ms in.

Onsets of a row (times in seconds): the listener's backchannel candidates (label 1: the ``isolated`` ones
under that definition, where the other candidates are left out; every candidate under ``all``) and its
take-turn onsets (label 0: shifts and interruptions), kept when the floor party speaks in the frame
holding the onset or in one of the frames back to the one holding ``onset - floor_slack`` (its speech ends
at most 0.2 s before the onset). The decision at delay ``d`` reads the frame whose end is the first at or
after ``onset + d``; onsets whose last decision frame lies past the row's end are left out, so every
delay scores the same onsets.

Every score reads the rows as an agent hears its user (``heard``: the listener's backchannel candidates,
which the prepared rows leave out of its streams, put back): the task is to tell the user's "mhm" from a
barge-in while hearing it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score

from backchannel.corpora.events import LabelSettings
from backchannel.corpora.framing import heard_listener
from backchannel.frames import FRAME_HZ, time_to_frame
from backchannel.lexicon import is_lexical_backchannel

from .data import gold_onsets, turn_onsets

DELAYS = (0.08, 0.16, 0.24, 0.40)  # seconds after the onset
#: The head's onset output is trained on the frames whose end lies in [onset + 0.08, onset + 0.48) s.
TRAIN_WINDOW = (0.08, 0.48)
FLOOR_SLACK = 0.2  # s: an onset up to this long after the floor party's speech still counts
RECALL = 0.95


def delay_label(delay: float) -> str:
    return f"{round(delay * 1000)}ms"


def decision_frame(onset: float, delay: float) -> int:
    """The frame whose end (``0.08 (f + 1)`` s) is the first at or after ``onset + delay``."""
    return math.ceil((onset + delay) * FRAME_HZ - 1e-6) - 1


@dataclass
class OnsetCases:
    """Listener onsets of several rows: ``row`` index [k], ``onset`` s [k], ``label`` 1 = backchannel,
    0 = take-turn [k], ``frames`` decision frame per delay [k, len(delays)]."""

    row: np.ndarray
    onset: np.ndarray
    label: np.ndarray
    frames: np.ndarray
    delays: tuple


def floor_held(va_speaker, onset: float, slack: float = FLOOR_SLACK, threshold: float = 0.5) -> bool:
    """The floor party speaks in a frame from the one holding ``onset - slack`` to the one holding ``onset``."""
    va = np.asarray(va_speaker, dtype=np.float64).reshape(-1)
    lo, hi = max(time_to_frame(onset - slack), 0), time_to_frame(onset)
    return bool(np.any(va[lo : hi + 1] >= threshold))


def onset_cases(rows: Sequence[dict], definition: str, delays: Sequence[float] = DELAYS,
                slack: float = FLOOR_SLACK) -> OnsetCases:
    """The listener speech onsets of ``rows`` under ``definition`` (see the module docstring)."""
    idx, onsets, labels, frames = [], [], [], []
    for i, row in enumerate(rows):
        n = int(row["n_frames"])
        for times, label in ((gold_onsets(row, definition), 1), (turn_onsets(row, definition), 0)):
            for o in np.asarray(times, dtype=np.float64):
                f = [decision_frame(o, d) for d in delays]
                if max(f) >= n or not floor_held(row["va_speaker"], o, slack):
                    continue
                idx.append(i)
                onsets.append(o)
                labels.append(label)
                frames.append(f)
    order = np.lexsort((np.asarray(onsets), np.asarray(idx))) if idx else np.zeros(0, int)
    return OnsetCases(np.asarray(idx, dtype=int)[order], np.asarray(onsets, dtype=np.float64)[order],
                      np.asarray(labels, dtype=int)[order],
                      np.asarray(frames, dtype=int).reshape(-1, len(delays))[order], tuple(delays))


def onset_targets(row: dict, definition: str = "isolated", window=TRAIN_WINDOW) -> np.ndarray:
    """Per-frame targets of the head's onset output (the same onsets as the scoring, :func:`onset_cases`),
    int8 ``[n]``: 1 / 0 on the frames whose end lies in ``[onset + window[0], onset + window[1])`` after a
    backchannel / take-turn onset (a later onset overwrites), -1 elsewhere."""
    n = int(row["n_frames"])
    out = np.full(n, -1, dtype=np.int8)
    cases = onset_cases([row], definition, delays=window)
    for o, label in zip(cases.onset, cases.label):
        first = decision_frame(o, window[0])
        last = min(decision_frame(o, window[1]) - 1, n - 1)
        out[first : last + 1] = label
    return out


def model_scores(cases: OnsetCases, onset_probs: Sequence[np.ndarray]) -> np.ndarray:
    """Per case and delay, a system's per-frame p(backchannel onset) at the decision frame [k, delays]."""
    out = np.empty(cases.frames.shape)
    for k, (i, f) in enumerate(zip(cases.row, cases.frames)):
        out[k] = np.asarray(onset_probs[i], dtype=np.float64).reshape(-1)[f]
    return out


def lexicon_scores(cases: OnsetCases, rows: Sequence[dict], key: str = "text_listener",
                   max_words: int = LabelSettings.max_words) -> np.ndarray:
    """The lexicon rule per case and delay: 1 when the listener's words visible by the decision frame (words
    ending from the onset's frame to the decision frame) pass ``lexicon.is_lexical_backchannel`` (at most
    ``max_words``, the candidate rule's), 0.5 when no word is visible yet, 0 otherwise."""
    out = np.empty(cases.frames.shape)
    for k, (i, o, fs) in enumerate(zip(cases.row, cases.onset, cases.frames)):
        text = rows[i][key]
        start = time_to_frame(o)
        for j, f in enumerate(fs):
            words = " ".join(str(x) for x in text[start : f + 1] if x).split()
            out[k, j] = 0.5 if not words else float(is_lexical_backchannel(words, max_words))
    return out


def precision_at_recall(labels, scores, recall: float = RECALL) -> float:
    """The highest precision among thresholds on ``scores`` whose recall of label 1 is at least ``recall``."""
    prec, rec, _ = precision_recall_curve(labels, scores)
    return float(prec[rec >= recall - 1e-12].max())


def onset_report(cases: OnsetCases, scores: np.ndarray) -> dict:
    """Per delay: ROC AUC and precision at recall 0.95 of backchannel (1) vs take-turn (0) onsets, and counts
    (NaN figures without both kinds)."""
    y = cases.label
    both = len(np.unique(y)) == 2
    out = {}
    for j, d in enumerate(cases.delays):
        s = scores[:, j]
        out[delay_label(d)] = {
            "roc_auc": float(roc_auc_score(y, s)) if both else math.nan,
            f"precision_at_recall_{RECALL:g}": precision_at_recall(y, s) if both else math.nan,
            "n_backchannel": int((y == 1).sum()), "n_take_turn": int((y == 0).sum())}
    return out


def heard(rows: Sequence[dict]) -> list[dict]:
    """The rows as an agent hears its user (``corpora.framing.heard_listener``): what a system's onset
    output must be computed on."""
    return [heard_listener(r) for r in rows]


def user_onsets(rows: Sequence[dict], definitions: Sequence[str], onset_probs=None) -> dict:
    """Per definition, :func:`onset_report` of a system's ``onset_probs`` (per row [n], computed on
    ``heard(rows)``) or, without them, of the lexicon rule on the words heard."""
    out = {}
    heard_rows = heard(rows) if onset_probs is None else None
    for definition in definitions:
        cases = onset_cases(rows, definition)
        s = lexicon_scores(cases, heard_rows) if onset_probs is None else model_scores(cases, onset_probs)
        out[definition] = onset_report(cases, s)
    return out
