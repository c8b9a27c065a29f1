"""Evaluation files: onsets as JSON lines, Praat TextGrids of one listener, strict JSON.

Shared by ``backchannel evaluate`` (writes onsets), ``backchannel rating`` (reads them) and
``backchannel simulate`` (writes JSON). Times are seconds.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backchannel.corpora.errors import CorpusError
from backchannel.frames import FRAME_S

ONSET_KEYS = ("corpus", "dialogue", "listener", "onsets")


def json_safe(x):
    """JSON-ready: numpy scalars/arrays to Python, NaN/inf to None, other objects (paths...) to ``str``."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or isinstance(x, (str, int)):
        return x
    return str(x)


def write_onsets_jsonl(path: str | Path, rows: Sequence[dict], onsets_list, extra: Sequence[dict] | None = None
                       ) -> Path:
    """One JSON line per row: ``{"corpus", "dialogue", "listener", "onsets": [seconds, ...]}`` plus the
    row's ``extra`` entries (e.g. ``"forms"`` parallel to the onsets). Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (row, onsets) in enumerate(zip(rows, onsets_list)):
        item = {"corpus": str(row["corpus"]), "dialogue": str(row["dialogue"]), "listener": str(row["listener"]),
                "onsets": [round(float(x), 6) for x in np.asarray(onsets).reshape(-1)]}
        lines.append(json.dumps(item | (dict(extra[i]) if extra else {})) + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
    return path


def read_onsets_jsonl(path: str | Path) -> list[dict]:
    """The lines of an onsets file: dicts with ``corpus``, ``dialogue``, ``listener`` (str), ``onsets``
    (sorted, finite, non-negative seconds) and any parallel ``forms``/``types``. ``CorpusError`` naming the
    file and line for a bad or duplicate line."""
    out, seen = [], set()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CorpusError(path, f"cannot read onsets file: {err}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("a line must be a JSON object")
            missing = [k for k in ONSET_KEYS if k not in item]
            if missing:
                raise ValueError(f"missing {missing}")
            key = tuple(str(item[k]) for k in ONSET_KEYS[:3])
            times = [float(t) for t in item["onsets"]]
            for name in ("forms", "types"):
                if item.get(name) is not None and len(item[name]) != len(times):
                    raise ValueError(f"{len(item[name])} {name} for {len(times)} onsets")
        except (ValueError, KeyError, TypeError) as err:
            raise CorpusError(path, f"bad onsets line: {err}", n) from None
        if any(not math.isfinite(t) or t < 0 for t in times):
            raise CorpusError(path, "onsets must be finite and non-negative seconds", n)
        if key in seen:
            raise CorpusError(path, f"duplicate entry for {'/'.join(key)}", n)
        seen.add(key)
        order = sorted(range(len(times)), key=lambda i: times[i])
        item = dict(item, corpus=key[0], dialogue=key[1], listener=key[2], onsets=[times[i] for i in order])
        for name in ("forms", "types"):
            if item.get(name) is not None:
                item[name] = [item[name][i] for i in order]
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

    from backchannel.metrics import speech_runs

    duration = int(row["n_frames"]) * FRAME_S

    def speech(va, text):
        out = []
        for a, b in speech_runs(va):
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
    tg.addTier(textgrid.IntervalTier("speaker speech", speech(row["va_speaker"], row.get("text_speaker")), 0.0,
                                     duration))
    tg.addTier(textgrid.IntervalTier("listener speech", speech(row["va_listener"], row.get("text_listener")),
                                     0.0, duration))
    tg.addTier(textgrid.IntervalTier("true backchannels", true, 0.0, duration))
    tg.addTier(textgrid.PointTier("predicted backchannels", points, 0.0, duration))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return path
