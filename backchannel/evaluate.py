"""``backchannel evaluate``: the evaluation protocol of DESIGN.md on the official TEST splits, with every
baseline in the same run.

Systems (``SYSTEMS``):

- ``random``: the true number of backchannels of each test listener at random times (Ruede et al.
  2017), averaged over several seeds;
- ``pause_gate``: the voice-agent plugin rule (``baselines.pause_gate``);
- ``ward_tsukahara``: the low-pitch rule, only on rows with the speaker's prosody (audio); otherwise
  reported as ``"n/a: no audio"``;
- ``logistic``: logistic regression on handcrafted causal features, fitted on (a sample of) TRAIN;
- ``head``: the timing head from a checkpoint (``backchannel.train.predict.load_predictor``) or any
  object with ``predict_rows(rows) -> [{"action_probs": [n, 3], "type_probs": [n, 5],
  "vap_p_shift": [n] | None}]``.

Probabilistic systems (``logistic``, ``head``) are turned into onsets by ``metrics.trigger_onsets``
with threshold, causal smoothing (frames) and lead (seconds) tuned on DEV only
(``metrics.tune_threshold``), once for the best event F1 (variant ``"f1"``) and once among settings
whose dev rate lies within 0.8-1.25 of the human dev rate (variant ``"rate_matched"``). Test labels
are used for scoring only. Figures per corpus: frame level, backchannel events at the four margins,
shift-vs-hold balanced accuracy in mutual silences (threshold tuned on dev), take-turn latency,
cadence, and the head / pause-gate F1 ratio; plus published reference points (different data).

Outputs in ``out_dir``: ``report.json``, ``report.md``, PNG plots (``backchannel.report``),
``<corpus>-test-onsets.jsonl`` (the headline system's test onsets) and ``onsets/<corpus>-<system>.jsonl``
for every system.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score
from tqdm import tqdm

from backchannel import metrics
from backchannel.baselines import LogisticBaseline, pause_gate, random_onsets, ward_tsukahara
from backchannel.corpora.dataset import code_version, load_prepared, row_prosody
from backchannel.corpora.events import BACKCHANNEL, TAKE_TURN
from backchannel.frames import FRAME_S
from backchannel.lexicon import BC_TYPES

SYSTEMS = ("random", "pause_gate", "ward_tsukahara", "logistic", "head")
PROBABILISTIC = ("logistic", "head")
HEADLINE_ORDER = ("head", "logistic", "pause_gate", "ward_tsukahara", "random")
SPEAKER_F0, SPEAKER_LOW_PITCH = 4, 5  # prosody columns: listener's 4 streams, then the speaker's

#: Published figures on OTHER data (DESIGN.md): context, not a like-for-like comparison.
REFERENCE = {
    "note": "different data (Switchboard); context, not a like-for-like comparison",
    "ruede2017_switchboard_f1": {"[-200,+200]": 0.237, "[-100,+500]": 0.301, "[-500,+500]": 0.339,
                                 "[0,+1000]": 0.388},
    "ruede2017_random_true_count_f1": 0.071,
    "vap2022_switchboard_weighted_f1": {"backchannel_prediction": 0.723, "shift_hold": 0.899},
    "ruede2017_timing_mos": {"random": 2.33, "model": 3.48, "real": 4.20},
}

_FRAME_COLS = ("va_listener", "va_speaker", "prosody", "prosody_mask", "text_listener", "text_speaker",
               "action", "bc_type")
_ID_COLS = ("corpus", "dialogue", "listener", "floor", "split", "n_frames")
_ONSET_COLS = ("bc_onsets", "bc_offsets", "shift_onsets", "interruption_onsets")
_PAUSE_COLS = ("hold_pauses", "shift_pauses")


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation options. Times in seconds, smoothing in frames (80 ms).

    ``tune_margin``: the margin whose dev F1 is maximised; ``rate_factor``: the rate-matched variant
    keeps dev rates within ``[human / f, human * f]``; ``seeds``: random-baseline seeds;
    ``logistic_train_frames``: train frames featurised (whole rows, drawn at random up to this total);
    ``logistic_fit_frames``: frames the regression is fitted on; ``onsets_variant``: which tuned variant
    of a probabilistic system goes into the onsets files.
    """

    margins: tuple = metrics.MARGINS
    tune_margin: tuple = (-0.5, 0.5)
    refractory: float = 0.8
    smoothing: tuple = (1, 3, 5)
    leads: tuple = (0.0, 0.08, 0.16, 0.24, 0.32, 0.40, 0.48, 0.56, 0.64)  # whole frames: a Policy can replay them
    rate_factor: float = 1.25
    seeds: tuple = (0, 1, 2, 3, 4)
    logistic_train_frames: int = 1_500_000
    logistic_fit_frames: int = 300_000
    onsets_variant: str = "rate_matched"
    batch_rows: int = 8


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def resolve_dataset(name_or_path: str | Path, data_root: str | Path = "data") -> Path:
    """A prepared dataset folder, or a corpus name resolved to ``<data_root>/<name>``."""
    from backchannel.corpora.dataset import is_prepared

    p = Path(name_or_path)
    for cand in (p, Path(data_root) / str(name_or_path)):
        if is_prepared(cand):
            return cand
    raise FileNotFoundError(f"{name_or_path}: not a prepared dataset folder, nor a corpus name with one in "
                            f"{Path(data_root) / str(name_or_path)} (run `backchannel corpus prepare` first)")


def load_rows(ds, desc: str = "rows", progress: bool = True, indices: Sequence[int] | None = None) -> list[dict]:
    """Rows (all, or those at ``indices``) of a dataset split as dicts: per-frame columns as numpy arrays
    (read straight from Arrow; text as object arrays of ``str``), ``*_onsets`` float64 [k], ``*_pauses``
    float64 [k, 2] (seconds), ids as ``str``/``int``, other event lists as Python lists."""
    if getattr(ds, "_indices", None) is not None:  # a .select()ed view: Arrow columns are read by position
        ds = ds.flatten_indices(keep_in_memory=True)
    indices = list(range(len(ds))) if indices is None else [int(i) for i in indices]
    cols = set(ds.column_names)
    frame_cols = [c for c in _FRAME_COLS if c in cols and not c.startswith("prosody")]
    table = ds.data
    arrow = {c: table.column(c) for c in frame_cols}
    grids = ds.select_columns([c for c in ("prosody", "prosody_mask") if c in cols]).with_format("numpy")
    other = [c for c in ds.column_names if c not in _FRAME_COLS]
    rest = ds.select_columns(other).select(indices).to_list() if other else [{} for _ in indices]
    rows = []
    for j, i in enumerate(tqdm(indices, desc=desc, unit="row", disable=not progress, leave=False)):
        # copies: Arrow's zero-copy views are read-only (torch.from_numpy warns on them)
        row = {c: np.array(arrow[c][i].values.to_numpy(zero_copy_only=False)) for c in frame_cols}
        if len(grids.column_names):
            row.update(grids[i])
        for k, v in rest[j].items():
            if k in _ONSET_COLS:
                v = np.asarray(v, dtype=np.float64).reshape(-1)
            elif k in _PAUSE_COLS:
                v = np.asarray(v, dtype=np.float64).reshape(-1, 2)
            elif k == "n_frames":
                v = int(v)
            row[k] = v
        rows.append(row)
    return rows


def sample_rows(n_frames: Sequence[int], max_frames: int, seed: int = 0) -> list[int]:
    """Indices of whole rows drawn at random (seeded) until ``max_frames`` frames (at least one row);
    all rows if they fit."""
    n = np.asarray(n_frames, dtype=np.int64)
    if n.sum() <= max_frames:
        return list(range(len(n)))
    order = np.random.default_rng(seed).permutation(len(n))
    keep = order[: max(1, int(np.searchsorted(np.cumsum(n[order]), max_frames, side="right")))]
    return sorted(keep.tolist())


def _duration(row) -> float:
    return int(row["n_frames"]) * FRAME_S


def _row_id(row) -> str:
    return f"{row.get('corpus', '?')}/{row.get('dialogue', '?')}/{row.get('listener', '?')}"


# ----------------------------------------------------------------------------------------------
# Systems
# ----------------------------------------------------------------------------------------------
@dataclass
class Outputs:
    """One system's per-row outputs on one split: ``probs`` [n, 3] (probabilistic systems), rule
    ``onsets`` (seconds) and 0/1 ``scores`` [n], ``types`` [n, 5], ``vap`` [n] (head only)."""

    probs: list | None = None
    onsets: list | None = None
    scores: list | None = None
    types: list | None = None
    vap: list | None = None


def run_head(predictor, rows: list[dict], batch_rows: int = 8, progress: bool = True, desc: str = "head"):
    """``predictor.predict_rows`` in batches of rows, outputs checked for shape and range."""
    probs, types, vap = [], [], []
    for i in tqdm(range(0, len(rows), batch_rows), desc=desc, unit="batch", disable=not progress, leave=False):
        batch = rows[i : i + batch_rows]
        outs = predictor.predict_rows(batch)
        if len(outs) != len(batch):
            raise ValueError(f"predictor returned {len(outs)} outputs for {len(batch)} rows")
        for row, out in zip(batch, outs):
            n = int(row["n_frames"])
            a = np.asarray(out["action_probs"], dtype=np.float64)
            t = np.asarray(out["type_probs"], dtype=np.float64)
            if a.shape != (n, 3) or t.shape != (n, len(BC_TYPES)):
                raise ValueError(f"{_row_id(row)}: predictor gave action_probs {a.shape}, type_probs {t.shape}; "
                                 f"expected ({n}, 3) and ({n}, {len(BC_TYPES)})")
            if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
                raise ValueError(f"{_row_id(row)}: action_probs must be finite probabilities in [0, 1]")
            v = out.get("vap_p_shift")
            if v is not None:
                v = np.asarray(v, dtype=np.float64).reshape(-1)
                if v.shape != (n,):
                    raise ValueError(f"{_row_id(row)}: vap_p_shift has shape {v.shape}, expected ({n},)")
            probs.append(a)
            types.append(t)
            vap.append(v)
    return Outputs(probs=probs, types=types, vap=None if any(v is None for v in vap) else vap)


def run_rule(name: str, rows: list[dict], progress: bool = True):
    """``pause_gate`` or ``ward_tsukahara`` on every row; W&T rows without speaker prosody get
    ``None`` (the rule does not apply there)."""
    onsets, scores = [], []
    for row in tqdm(rows, desc=name, unit="row", disable=not progress, leave=False):
        if name == "pause_gate":
            pred = pause_gate(row["va_speaker"])
        else:
            prosody, mask = row_prosody(row)
            if not mask[:, SPEAKER_LOW_PITCH].any():
                onsets.append(None)
                scores.append(None)
                continue
            pred = ward_tsukahara(prosody, mask, row["va_speaker"], row["va_listener"],
                                  low_pitch_col=SPEAKER_LOW_PITCH)
        onsets.append(np.asarray(pred.onsets, dtype=np.float64))
        scores.append(np.asarray(pred.scores, dtype=np.float64))
    return Outputs(onsets=onsets, scores=scores)


def fit_logistic(train_rows: list[dict], settings: EvalSettings, progress: bool = True) -> LogisticBaseline:
    """``LogisticBaseline`` fitted on (a frame sample of) ``train_rows``."""
    model = LogisticBaseline(max_frames=settings.logistic_fit_frames, seed=0)
    feats = [model.featurize(r) for r in tqdm(train_rows, desc="logistic: features (train)", unit="row",
                                                disable=not progress, leave=False)]
    return model.fit(feats, [r["action"] for r in train_rows])


def run_logistic(model: LogisticBaseline, rows: list[dict], progress: bool = True, desc: str = "logistic"):
    probs = [model.predict_proba([model.featurize(r)])[0] for r in tqdm(rows, desc=desc, unit="row", disable=not progress,
                                                          leave=False)]
    return Outputs(probs=probs)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def tune(probs_list, trues, settings: EvalSettings, rate_factor: float | None = None) -> metrics.Tuned:
    """``metrics.tune_threshold`` over thresholds 0.05..0.95 (step 0.025) x ``settings.smoothing`` x
    ``settings.leads`` on DEV streams: the same winner, with fewer settings scored.

    For a threshold and smoothing with ``P`` triggers, ``T`` true onsets and ``R`` hits possible at
    any lead (true onsets with a trigger in reach of the margin for some lead, and vice versa), event
    F1 is at most ``2 R / (P + T)``. Settings are scored in decreasing order of that bound and
    scoring stops once it falls below the best F1 found: no later setting can reach it. ``table``
    lists the settings scored.
    """
    grid = np.round(np.arange(0.05, 0.95 + 1e-9, 0.025), 4)
    probs_list = [np.asarray(p, dtype=np.float64) for p in probs_list]
    trues = [np.sort(np.asarray(t, dtype=np.float64)) for t in trues]
    n_true = sum(len(t) for t in trues)
    minutes = sum(len(p) for p in probs_list) * FRAME_S / 60
    human = n_true / minutes if minutes else math.nan
    counts, bounds = {}, {}
    for w in settings.smoothing:
        smoothed = [metrics.smooth(p, w) for p in probs_list]
        for thr in grid:
            base = [metrics.trigger_onsets(p, thr, settings.refractory) for p in smoothed]
            n = counts[(w, float(thr))] = sum(len(b) for b in base)
            hits = _reachable(base, trues, settings.tune_margin, settings.leads)
            bounds[(w, float(thr))] = 2 * hits / (n + n_true) if n + n_true else 0.0

    def in_band(n: int) -> bool:
        if rate_factor is None:
            return True
        return human > 0 and n > 0 and abs(math.log(n / minutes / human)) <= math.log(rate_factor) + 1e-9

    keys = [k for k, n in counts.items() if in_band(n)]
    if not keys:  # nothing in the band: tune_threshold falls back to the rate nearest the human one
        return metrics.tune_threshold(probs_list, trues, settings.tune_margin, grid, smoothing=settings.smoothing,
                                      lead=settings.leads, refractory=settings.refractory, rate_factor=rate_factor)
    scored: dict = {}
    best_f1 = -1.0
    for key in sorted(keys, key=lambda k: -bounds[k]):
        if bounds[key] < best_f1:
            break
        w, thr = key
        scored[key] = metrics.tune_threshold(probs_list, trues, settings.tune_margin, [thr], smoothing=w,
                                             lead=settings.leads, refractory=settings.refractory,
                                             rate_factor=rate_factor)
        best_f1 = max(best_f1, scored[key].f1)
    order = {w: i for i, w in enumerate(settings.smoothing)}
    best = None
    for key in sorted(scored, key=lambda k: (order[k[0]], k[1])):  # tune_threshold's table order
        if best is None or _rank(scored[key]) > _rank(best):
            best = scored[key]
    table = [r for key in sorted(scored, key=lambda k: (order[k[0]], k[1])) for r in scored[key].table]
    return replace(best, table=table)


def _reachable(base, trues, margin, leads, slack: float = 1e-6) -> int:
    """Upper bound on hits of triggers ``base`` (onsets before the lead) over all ``leads``: per stream,
    the fewer of (true onsets with a trigger in reach) and (triggers with a true onset in reach)."""
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


def _rank(t: metrics.Tuned) -> tuple:
    gap = abs(math.log(t.rate / t.human_rate)) if t.rate > 0 and t.human_rate > 0 else math.inf
    return (t.f1, -gap)


def _clean(x):
    """JSON-ready: numpy scalars/arrays to Python, NaN/inf to None, other objects to ``str``."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or isinstance(x, (str, bool, int)):
        return x
    return str(x)  # paths and other objects (e.g. in a predictor's description)


def event_report(pred, rows, margins) -> dict:
    """Pooled backchannel event P/R/F1 (``metrics.event_scores``) at each margin, as dicts."""
    scores = metrics.event_scores(list(pred), [r["bc_onsets"] for r in rows], margins)
    return {k: v.to_dict() for k, v in scores.items()}


def cadence(pred, rows) -> dict:
    """``metrics.cadence_report`` of predicted vs true onsets of the same rows (rates per listener-minute)."""
    return metrics.cadence_report(list(pred), [r["bc_onsets"] for r in rows], [r["va_speaker"] for r in rows],
                                  [_duration(r) for r in rows])


def offsets(onsets_list, rows) -> np.ndarray:
    """Onsets minus the end of the speaker's last speech (``metrics.onset_offsets``), pooled (seconds)."""
    parts = [metrics.onset_offsets(o, r["va_speaker"]) for o, r in zip(onsets_list, rows)]
    return np.concatenate(parts) if parts else np.zeros(0)


def rule_frame_scores(scores, rows) -> dict:
    """Frame figures of a 0/1 rule score against BACKCHANNEL frames: F1 and average precision."""
    y = np.concatenate([r["action"] for r in rows]) == BACKCHANNEL
    s = np.concatenate(scores)
    fired = s >= 0.5
    return {"f1_backchannel": float(f1_score(y, fired, zero_division=0)),
            "precision_backchannel": float((y & fired).sum() / fired.sum()) if fired.any() else 0.0,
            "recall_backchannel": float((y & fired).sum() / y.sum()) if y.any() else 0.0,
            "auprc_backchannel": float(average_precision_score(y, s)) if y.any() else math.nan,
            "n_frames": len(y)}


def tune_shift_threshold(scores, labels) -> float:
    """Threshold maximising balanced accuracy of "shift iff score >= threshold" (0.5 without both classes)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    if len(pos) == 0 or len(neg) == 0:
        return 0.5
    cand = np.unique(scores)
    tpr = 1.0 - np.searchsorted(pos, cand, side="left") / len(pos)
    tnr = np.searchsorted(neg, cand, side="left") / len(neg)
    return float(cand[int(np.argmax(tpr + tnr))])


def _pause_scores(p_list, rows):
    parts = [metrics.shift_hold_scores(p, r["hold_pauses"], r["shift_pauses"]) for p, r in zip(p_list, rows)]
    if not parts:
        return np.zeros(0), np.zeros(0, int)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(int)


def shift_hold(dev_p, dev_rows, test_p, test_rows) -> dict:
    """Shift-vs-hold in mutual silences (VAP's window 50-150 ms into the pause): threshold tuned on dev,
    test balanced accuracy at it and at 0.5, and the threshold-free ROC AUC."""
    ds, dl = _pause_scores(dev_p, dev_rows)
    ts, tl = _pause_scores(test_p, test_rows)
    thr = tune_shift_threshold(ds, dl)
    both = len(np.unique(tl)) == 2
    args = ([np.asarray(p) for p in test_p], [r["hold_pauses"] for r in test_rows],
            [r["shift_pauses"] for r in test_rows])
    return {"threshold": thr,
            "balanced_accuracy": metrics.shift_hold_balanced_accuracy(*args, threshold=thr) if both else math.nan,
            "balanced_accuracy_at_0.5": metrics.shift_hold_balanced_accuracy(*args, threshold=0.5) if both
            else math.nan,
            "roc_auc": float(roc_auc_score(tl, ts)) if both else math.nan,
            "n_shift": int((tl == 1).sum()), "n_hold": int((tl == 0).sum())}


def _turn_onsets(row) -> np.ndarray:
    return np.sort(np.concatenate([row["shift_onsets"], row["interruption_onsets"]]))


def take_turn(dev_probs, dev_rows, test_probs, test_rows, settings: EvalSettings) -> dict:
    """Take-turn triggers on the TAKE_TURN probability (tuned on dev against shift + interruption
    onsets), their event scores on test, and latency after the speaker's end in shift pauses (seconds)."""
    tuned = tune([p[:, TAKE_TURN] for p in dev_probs], [_turn_onsets(r) for r in dev_rows], settings)
    pred = [tuned.settings.onsets(p[:, TAKE_TURN]) for p in test_probs]
    scores = metrics.event_scores(pred, [_turn_onsets(r) for r in test_rows], settings.margins)
    lat = np.concatenate([metrics.take_turn_latency(p, r["shift_pauses"]) for p, r in zip(pred, test_rows)] or [[]])
    human = np.concatenate([r["shift_pauses"][:, 1] - r["shift_pauses"][:, 0] for r in test_rows] or [[]])
    return {"settings": asdict(tuned.settings), "dev_f1": tuned.f1,
            "events": {k: v.to_dict() for k, v in scores.items()},
            "median_latency": float(np.nanmedian(lat)) if np.any(~np.isnan(lat)) else math.nan,
            "coverage": float(np.mean(~np.isnan(lat))) if len(lat) else math.nan,
            "human_median_latency": float(np.median(human)) if len(human) else math.nan,
            "n_shift_pauses": len(lat)}


def type_scores(types, rows) -> dict:
    """Backchannel type (argmax of ``types``) on the frames labelled BACKCHANNEL with a known type."""
    y = np.concatenate([r["bc_type"] for r in rows]).astype(int)
    p = np.concatenate([np.asarray(t).argmax(axis=1) for t in types])
    keep = y >= 0
    if not keep.any():
        return {"n_frames": 0}
    y, p = y[keep], p[keep]
    return {"accuracy": float(np.mean(y == p)),
            "macro_f1": float(f1_score(y, p, labels=list(range(len(BC_TYPES))), average="macro", zero_division=0)),
            "majority_share": float(np.bincount(y).max() / len(y)), "n_frames": len(y)}


def probabilistic_system(dev: Outputs, test: Outputs, dev_rows, test_rows, settings: EvalSettings,
                         progress: bool = True, name: str = "") -> tuple[dict, dict]:
    """Frame figures, tuned event variants, cadence, shift/hold and take-turn of a system with probs.

    Returns ``(report, extras)``; ``extras`` holds test onsets per variant and plot data."""
    labels = np.concatenate([r["action"] for r in test_rows])
    probs = np.concatenate(test.probs)
    out = {"status": "ok", "frame": metrics.frame_scores(labels, probs), "variants": {}}
    extras = {"onsets": {}, "bc_probs": [p[:, BACKCHANNEL] for p in test.probs]}
    dev_bc = [p[:, BACKCHANNEL] for p in dev.probs]
    dev_true = [r["bc_onsets"] for r in dev_rows]
    for variant, factor in (("f1", None), ("rate_matched", settings.rate_factor)):
        if progress:
            print(f"  {name}: tuning ({variant}) on dev", file=sys.stderr, flush=True)
        tuned = tune(dev_bc, dev_true, settings, factor)
        pred = [tuned.settings.onsets(p[:, BACKCHANNEL]) for p in test.probs]
        extras["onsets"][variant] = pred
        out["variants"][variant] = {
            "settings": asdict(tuned.settings),
            "dev": {"f1": tuned.f1, "rate": tuned.rate, "human_rate": tuned.human_rate,
                    "settings_scored": len(tuned.table)},
            "events": event_report(pred, test_rows, settings.margins),
            "cadence": cadence(pred, test_rows)}
    y = labels == BACKCHANNEL
    if y.any():
        prec, rec, _ = precision_recall_curve(y, probs[:, BACKCHANNEL])
        step = max(1, len(prec) // 400)
        extras["pr_curve"] = (prec[::step], rec[::step], out["frame"]["auprc"][BACKCHANNEL])
    sources = {"take_turn": ([p[:, TAKE_TURN] for p in dev.probs], [p[:, TAKE_TURN] for p in test.probs])}
    if dev.vap is not None and test.vap is not None:
        sources["vap_p_shift"] = (dev.vap, test.vap)
    out["shift_hold"] = {k: shift_hold(d, dev_rows, t, test_rows) for k, (d, t) in sources.items()}
    out["take_turn"] = take_turn(dev.probs, dev_rows, test.probs, test_rows, settings)
    if test.types is not None:
        out["types"] = type_scores(test.types, test_rows)
    return out, extras


def rule_system(test: Outputs, test_rows, settings: EvalSettings) -> tuple[dict, dict]:
    """Event scores, frame figures and cadence of a fixed rule on the rows it applies to."""
    keep = [i for i, o in enumerate(test.onsets) if o is not None]
    if not keep:
        return {"status": "n/a: no audio"}, {}
    rows = [test_rows[i] for i in keep]
    pred = [test.onsets[i] for i in keep]
    out = {"status": "ok", "rows": len(rows), "rows_total": len(test_rows),
           "frame": rule_frame_scores([test.scores[i] for i in keep], rows),
           "variants": {"rule": {"events": event_report(pred, rows, settings.margins),
                                 "cadence": cadence(pred, rows)}}}
    if len(rows) < len(test_rows):
        out["note"] = f"only the {len(rows)} of {len(test_rows)} test rows with the speaker's audio"
    return out, {"onsets": {"rule": [test.onsets[i] if test.onsets[i] is not None else np.zeros(0)
                                     for i in range(len(test_rows))]}, "rows": keep}


def random_system(test_rows, settings: EvalSettings) -> tuple[dict, dict]:
    """The true count of each row at random times, one run per seed; P/R/F1 averaged over seeds."""
    runs = []
    for seed in settings.seeds:
        rng = np.random.default_rng(seed)
        runs.append([random_onsets(len(r["bc_onsets"]), _duration(r), rng, settings.refractory) for r in test_rows])
    per_seed = [event_report(run, test_rows, settings.margins) for run in runs]
    events = {}
    for label in per_seed[0]:
        d = {k: float(np.mean([s[label][k] for s in per_seed])) for k in per_seed[0][label]}
        d["f1_std"] = float(np.std([s[label]["f1"] for s in per_seed]))
        events[label] = d
    return ({"status": "ok", "seeds": list(settings.seeds),
             "variants": {"true_count": {"events": events, "cadence": cadence(runs[0], test_rows)}}},
            {"onsets": {"true_count": runs[0]}})


# ----------------------------------------------------------------------------------------------
# One corpus, all corpora
# ----------------------------------------------------------------------------------------------
def split_summary(rows) -> dict:
    minutes = sum(_duration(r) for r in rows) / 60
    n_bc = sum(len(r["bc_onsets"]) for r in rows)
    return {"rows": len(rows), "dialogues": len({r["dialogue"] for r in rows}), "listener_minutes": minutes,
            "backchannels": n_bc, "human_rate_per_minute": n_bc / minutes if minutes else math.nan,
            "shift_pauses": int(sum(len(r["shift_pauses"]) for r in rows)),
            "hold_pauses": int(sum(len(r["hold_pauses"]) for r in rows))}


def _chosen_variant(system: dict, settings: EvalSettings) -> str:
    variants = system["variants"]
    return settings.onsets_variant if settings.onsets_variant in variants else next(iter(variants))


def evaluate_corpus(corpus: str, dev_rows: list[dict], test_rows: list[dict], *, train_rows=None,
                    predictor=None, systems: Sequence[str] = SYSTEMS, settings: EvalSettings | None = None,
                    progress: bool = True) -> tuple[dict, dict]:
    """Every requested system on one corpus: ``(report section, extras)``.

    ``train_rows``: for ``logistic`` (skipped as "n/a: no train rows" without them); ``predictor``: for
    ``head`` ("n/a: no checkpoint" without it). Thresholds are tuned on ``dev_rows`` only; ``test_rows``
    are scored. ``extras[system]`` holds test onsets per variant and plot data.
    """
    settings = settings or EvalSettings()
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    if not test_rows or not dev_rows:
        raise ValueError(f"{corpus}: needs dev and test rows, got {len(dev_rows)} dev and {len(test_rows)} test")
    section = {"dev": split_summary(dev_rows), "test": split_summary(test_rows), "systems": {}, "seconds": {}}
    extras = {}

    def say(msg):
        if progress:
            print(f"[{corpus}] {msg}", file=sys.stderr, flush=True)

    for name in [s for s in SYSTEMS if s in systems]:
        t0 = time.perf_counter()
        say(f"{name} ...")
        if name == "random":
            rep, ext = random_system(test_rows, settings)
        elif name in ("pause_gate", "ward_tsukahara"):
            rep, ext = rule_system(run_rule(name, test_rows, progress), test_rows, settings)
        elif name == "logistic":
            if not train_rows:
                rep, ext = {"status": "n/a: no train rows"}, {}
            else:
                model = fit_logistic(train_rows, settings, progress)
                dev = run_logistic(model, dev_rows, progress, "logistic (dev)")
                test = run_logistic(model, test_rows, progress, "logistic (test)")
                rep, ext = probabilistic_system(dev, test, dev_rows, test_rows, settings, progress, name)
                rep["train"] = {"rows": len(train_rows), "frames": int(sum(r["n_frames"] for r in train_rows)),
                                "fit_frames": settings.logistic_fit_frames}
        else:
            if predictor is None:
                rep, ext = {"status": "n/a: no checkpoint"}, {}
            else:
                dev = run_head(predictor, dev_rows, settings.batch_rows, progress, "head (dev)")
                test = run_head(predictor, test_rows, settings.batch_rows, progress, "head (test)")
                rep, ext = probabilistic_system(dev, test, dev_rows, test_rows, settings, progress, name)
                describe = getattr(predictor, "describe", None)
                rep["predictor"] = describe() if callable(describe) else repr(predictor)
        section["systems"][name] = rep
        section["seconds"][name] = time.perf_counter() - t0
        if rep.get("status") == "ok":
            variant = _chosen_variant(rep, settings)
            ext["variant"] = variant
            keep = ext.get("rows", range(len(test_rows)))
            ext["offsets"] = offsets([ext["onsets"][variant][i] for i in keep], [test_rows[i] for i in keep])
            extras[name] = ext
        say(f"{name}: {rep.get('status')} ({section['seconds'][name]:.1f} s)")
    section["ratios"] = _ratios(section["systems"], settings)
    section["headline"] = next((s for s in HEADLINE_ORDER if s in extras), None)
    return section, extras


def _ratios(systems: dict, settings: EvalSettings) -> dict:
    """Event F1 of ``head`` and ``logistic`` (each variant) over the pause gate's, per margin."""
    gate = systems.get("pause_gate", {})
    if gate.get("status") != "ok":
        return {}
    base = gate["variants"]["rule"]["events"]
    out = {}
    for name in ("head", "logistic"):
        rep = systems.get(name, {})
        if rep.get("status") != "ok":
            continue
        for variant, v in rep["variants"].items():
            out[f"{name}/{variant}_over_pause_gate"] = {
                label: (v["events"][label]["f1"] / base[label]["f1"]) if base[label]["f1"] > 0 else math.nan
                for label in base}
    return out


def write_onsets_jsonl(path: str | Path, rows: Sequence[dict], onsets_list) -> Path:
    """One JSON line per row: ``{"corpus", "dialogue", "listener", "onsets": [seconds, ...]}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row, onsets in zip(rows, onsets_list):
            f.write(json.dumps({"corpus": str(row["corpus"]), "dialogue": str(row["dialogue"]),
                                "listener": str(row["listener"]),
                                "onsets": [round(float(x), 6) for x in np.asarray(onsets).reshape(-1)]}) + "\n")
    return path


def read_onsets_jsonl(path: str | Path) -> list[dict]:
    """The lines of an onsets file (``write_onsets_jsonl``), with a clear error for a bad line."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{i}: not JSON ({err})") from None
        missing = [k for k in ("corpus", "dialogue", "listener", "onsets") if k not in item]
        if missing:
            raise ValueError(f"{path}:{i}: missing {missing}")
        out.append(item)
    return out


def export_textgrid(row: dict, predicted_onsets, path: str | Path, *, predicted_labels=None) -> Path:
    """A Praat TextGrid (praatio) of one listener row, times in seconds, tiers:

    ``speaker speech`` / ``listener speech``: stretches of voice activity (``metrics.speech_runs``),
    labelled with the words that end inside them (``"speech"`` where none); ``true backchannels``:
    ``[onset, offset]`` labelled with the form; ``predicted backchannels``: a point at each predicted
    onset, labelled ``"bc"`` (or ``predicted_labels``, e.g. the forms to say).
    """
    from praatio import textgrid

    duration = _duration(row)

    def speech(va, text):
        out = []
        for a, b in metrics.speech_runs(va):
            a, b = max(0.0, a), min(duration, b)
            words = [] if text is None else [w for w in text[int(a / FRAME_S) : int(b / FRAME_S) + 1] if w]
            if b - a > 1e-6:
                out.append((a, b, " ".join(str(w) for w in words) or "speech"))
        return out

    true = []
    for on, off, form in sorted(zip(row["bc_onsets"], row["bc_offsets"], row["bc_forms"])):
        on, off = max(0.0, float(on)), min(duration, float(off))
        if true and on < true[-1][1]:  # keep the tier well-formed if two events touch
            on = true[-1][1]
        if off - on > 1e-6:
            true.append((on, off, str(form)))
    pred = np.asarray(predicted_onsets, dtype=np.float64).reshape(-1)
    labels = ["bc"] * len(pred) if predicted_labels is None else [str(x) for x in predicted_labels]
    points = [(float(t), lb) for t, lb in zip(pred, labels) if 0.0 <= t <= duration]
    tg = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=duration)
    tg.addTier(textgrid.IntervalTier("speaker speech", speech(row["va_speaker"], row.get("text_speaker")), 0.0, duration))
    tg.addTier(textgrid.IntervalTier("listener speech", speech(row["va_listener"], row.get("text_listener")),
                                     0.0, duration))
    tg.addTier(textgrid.IntervalTier("true backchannels", true, 0.0, duration))
    tg.addTier(textgrid.PointTier("predicted backchannels", points, 0.0, duration))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return path


def _load_predictor(checkpoint):
    if checkpoint is None or hasattr(checkpoint, "predict_rows"):
        return checkpoint
    try:
        from backchannel.train.predict import load_predictor
    except ImportError as err:
        raise RuntimeError(f"cannot load checkpoint {checkpoint}: backchannel.train.predict is unavailable "
                           f"({err})") from err
    return load_predictor(checkpoint)


def _parse_row_key(key) -> tuple[str, str] | None:
    if key is None:
        return None
    if isinstance(key, str):
        if ":" not in key:
            raise ValueError(f"--textgrid wants DIALOGUE:LISTENER, got {key!r}")
        d, lst = key.split(":", 1)
        return d, lst
    return tuple(key)


def evaluate(dataset_dirs, checkpoint=None, out_dir: str | Path = "docs/eval", *, systems: Sequence[str] = SYSTEMS,
             margins=metrics.MARGINS, settings: EvalSettings | None = None, textgrid=None, data_root="data",
             progress: bool = True, plots: bool = True) -> dict:
    """Evaluate every system on the test split of each prepared dataset in ``dataset_dirs`` (folders or
    corpus names under ``data_root``); write the report, plots and onsets files to ``out_dir``.

    ``checkpoint``: a head checkpoint path, or an object with ``predict_rows`` (see module docstring).
    ``textgrid``: ``"DIALOGUE:LISTENER"`` of a test row to export as ``<corpus>-<dialogue>-<listener>.TextGrid``
    with the headline system's onsets (its timeline is also the one plotted). Returns the report dict.
    """
    from backchannel import report as report_mod

    settings = replace(settings or EvalSettings(), margins=tuple(tuple(m) for m in margins))
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    if isinstance(dataset_dirs, (str, Path)):
        dataset_dirs = [dataset_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = _parse_row_key(textgrid)
    t_start = time.perf_counter()
    predictor = _load_predictor(checkpoint) if "head" in systems else None
    report = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "code": code_version(),
              "checkpoint": None if checkpoint is None or hasattr(checkpoint, "predict_rows") else str(checkpoint),
              "systems": [s for s in SYSTEMS if s in systems],
              "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
              "reference": REFERENCE, "corpora": {}, "files": []}
    plot_data, found = {}, False
    for d in dataset_dirs:
        path = resolve_dataset(d, data_root)
        t0 = time.perf_counter()
        dsd, manifest = load_prepared(path)
        corpus = manifest.get("corpus") or path.name
        dev_rows = load_rows(dsd["dev"], f"{corpus}: dev rows", progress)
        test_rows = load_rows(dsd["test"], f"{corpus}: test rows", progress)
        train_rows = None
        if "logistic" in systems and len(dsd["train"]):
            keep = sample_rows(dsd["train"]["n_frames"], settings.logistic_train_frames)
            train_rows = load_rows(dsd["train"], f"{corpus}: train rows", progress, keep)
        load_s = time.perf_counter() - t0
        section, extras = evaluate_corpus(corpus, dev_rows, test_rows, train_rows=train_rows, predictor=predictor,
                                          systems=systems, settings=settings, progress=progress)
        section["dataset"] = {"path": str(path), "fingerprint": manifest.get("fingerprint")}
        section["seconds"]["load"] = load_s
        files = []
        for name, ext in extras.items():
            keep = ext.get("rows", range(len(test_rows)))
            rows = [test_rows[i] for i in keep]
            onsets = [ext["onsets"][ext["variant"]][i] for i in keep]
            files.append(write_onsets_jsonl(out_dir / "onsets" / f"{corpus}-{name}.jsonl", rows, onsets))
            if name == section["headline"]:
                files.append(write_onsets_jsonl(out_dir / f"{corpus}-test-onsets.jsonl", rows, onsets))
                section["onsets_file"] = {"path": f"{corpus}-test-onsets.jsonl", "system": name,
                                          "variant": ext["variant"]}
        idx = _pick_timeline_row(test_rows, key) if key is not None else None
        found = found or idx is not None
        if idx is not None and section["headline"]:
            ext = extras[section["headline"]]
            files.append(export_textgrid(test_rows[idx], ext["onsets"][ext["variant"]][idx],
                                         out_dir / f"{corpus}-{key[0]}-{key[1]}.TextGrid"))
        report["files"] += [str(f.relative_to(out_dir)) for f in files]
        report["corpora"][corpus] = section
        plot_data[corpus] = _plot_data(corpus, test_rows, extras, section,
                                       idx if idx is not None else _pick_timeline_row(test_rows, None))
    if key is not None and not found:
        raise ValueError(f"--textgrid {key[0]}:{key[1]}: no such test row (dialogue:listener) in "
                         f"{', '.join(report['corpora'])}")
    report["seconds_total"] = time.perf_counter() - t_start
    report = _clean(report)
    report["files"] += report_mod.write_report(report, out_dir, plot_data if plots else None) + ["report.json"]
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _pick_timeline_row(rows, key) -> int | None:
    """The row ``key`` = (dialogue, listener) if given (None if absent), else the row with most backchannels."""
    if key is not None:
        return next((i for i, r in enumerate(rows) if (str(r["dialogue"]), str(r["listener"])) == key), None)
    return int(np.argmax([len(r["bc_onsets"]) for r in rows])) if rows else None


def _plot_data(corpus, test_rows, extras, section, idx) -> dict:
    human = offsets([r["bc_onsets"] for r in test_rows], test_rows)
    data = {"corpus": corpus, "human_offsets": human, "offsets": {}, "pr_curves": {}, "pr_points": {},
            "timeline": None}
    for name, ext in extras.items():
        data["offsets"][f"{name} ({ext['variant']})"] = ext["offsets"]
        if "pr_curve" in ext:
            data["pr_curves"][name] = ext["pr_curve"]
        frame = section["systems"][name].get("frame", {})
        if "precision_backchannel" in frame:
            data["pr_points"][name] = (frame["precision_backchannel"], frame["recall_backchannel"])
    if idx is not None:
        row = test_rows[idx]
        data["timeline"] = {
            "row": {k: row[k] for k in ("corpus", "dialogue", "listener", "n_frames", "va_speaker", "va_listener",
                                        "bc_onsets", "bc_forms") if k in row},
            "probs": {n: e["bc_probs"][idx] for n, e in extras.items() if "bc_probs" in e},
            "onsets": {n: e["onsets"][e["variant"]][idx] for n, e in extras.items()
                       if idx in list(e.get("rows", range(len(test_rows))))}}
    return data


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    settings = EvalSettings(seeds=tuple(range(args.seeds)))
    try:
        report = evaluate(args.datasets or ["maptask", "mrda"], args.checkpoint, args.out,
                          systems=args.systems or list(SYSTEMS), settings=settings, textgrid=args.textgrid,
                          data_root=args.data)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from backchannel.report import summary_lines

    for line in summary_lines(report):
        print(line)
    print(f"report written to {Path(args.out) / 'report.md'} (+ report.json, plots, onsets)")
    return 0

