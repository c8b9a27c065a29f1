"""Rows of prepared datasets as numpy dicts, and the gold events of each backchannel definition.

Definitions (docs/design.md "Labels"): ``all`` = every mined backchannel candidate; ``isolated`` = the
candidates with the listener silent >= 1 s before and after and the floor party speaking within 1.5 s
before (the ``bc_isolated`` column of a prepared dataset).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from backchannel.frames import FRAME_S

DEFINITIONS = ("isolated", "all")
FRAME_COLS = ("va_listener", "va_speaker", "prosody", "prosody_mask", "text_listener", "text_speaker",
              "action", "bc_type")
ONSET_COLS = ("bc_onsets", "bc_offsets", "shift_onsets", "interruption_onsets")
PAUSE_COLS = ("hold_pauses", "shift_pauses")


def load_rows(ds, desc: str = "rows", progress: bool = True, indices: Sequence[int] | None = None) -> list[dict]:
    """Rows (all, or those at ``indices``) of a dataset split as dicts: per-frame columns as numpy arrays
    (read straight from Arrow; text as object arrays of ``str``), ``*_onsets`` float64 [k], ``*_pauses``
    float64 [k, 2] (seconds), ids as ``str``/``int``, other event lists as Python lists."""
    if getattr(ds, "_indices", None) is not None:  # a .select()ed view: Arrow columns are read by position
        ds = ds.flatten_indices(keep_in_memory=True)
    indices = list(range(len(ds))) if indices is None else [int(i) for i in indices]
    cols = set(ds.column_names)
    frame_cols = [c for c in FRAME_COLS if c in cols and not c.startswith("prosody")]
    table = ds.data
    arrow = {c: table.column(c) for c in frame_cols}
    grids = ds.select_columns([c for c in ("prosody", "prosody_mask") if c in cols]).with_format("numpy")
    other = [c for c in ds.column_names if c not in FRAME_COLS]
    rest = ds.select_columns(other).select(indices).to_list() if other else [{} for _ in indices]
    rows = []
    for j, i in enumerate(tqdm(indices, desc=desc, unit="row", disable=not progress, leave=False)):
        # copies: Arrow's zero-copy views are read-only (torch.from_numpy warns on them)
        row = {c: np.array(arrow[c][i].values.to_numpy(zero_copy_only=False)) for c in frame_cols}
        if len(grids.column_names):
            row.update(grids[i])
        for k, v in rest[j].items():
            if k in ONSET_COLS:
                v = np.asarray(v, dtype=np.float64).reshape(-1)
            elif k in PAUSE_COLS:
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


def duration(row) -> float:
    """Seconds covered by a row's frames."""
    return int(row["n_frames"]) * FRAME_S


def row_id(row) -> str:
    return f"{row.get('corpus', '?')}/{row.get('dialogue', '?')}/{row.get('listener', '?')}"


def definitions(rows: Sequence[dict], first: str | None = None) -> list[str]:
    """The backchannel definitions these rows can be scored on (``isolated`` needs ``bc_isolated``), ``first``
    (the one the dataset's frame labels follow) first."""
    have = [d for d in DEFINITIONS if d == "all" or all("bc_isolated" in r for r in rows)]
    return sorted(have, key=lambda d: d != first)


def gold_mask(row: dict, definition: str) -> np.ndarray:
    """Which of a row's mined backchannel candidates are gold under ``definition`` (``isolated`` or ``all``)."""
    n = len(row["bc_onsets"])
    if definition == "all":
        return np.ones(n, dtype=bool)
    if definition != "isolated":
        raise ValueError(f"unknown backchannel definition {definition!r} (have {DEFINITIONS})")
    if "bc_isolated" not in row:
        raise ValueError(f"{row_id(row)}: the dataset has no bc_isolated column (prepared by an older version: "
                         "re-run `backchannel corpus prepare --overwrite`)")
    flags = np.asarray(row["bc_isolated"], dtype=bool).reshape(-1)
    if len(flags) != n:
        raise ValueError(f"{row_id(row)}: bc_isolated has {len(flags)} flags for {n} backchannel candidates")
    return flags


def gold_onsets(row: dict, definition: str) -> np.ndarray:
    """True backchannel onsets (seconds) of one row under ``definition`` (``isolated`` or ``all``)."""
    return np.asarray(row["bc_onsets"], dtype=np.float64).reshape(-1)[gold_mask(row, definition)]


def turn_onsets(row: dict, definition: str = "isolated") -> np.ndarray:
    """The listener's take-turn onsets (seconds, sorted): its shifts and interruptions; under the ``isolated``
    definition a turn-initial acknowledgement ("okay, so ...") starts the take-turn that follows it within 1 s
    (``LabelSettings.isolation_after``): its onset replaces that turn's onset, as the frame labels have it."""
    turns = np.sort(np.concatenate([row["shift_onsets"], row["interruption_onsets"]]))
    if definition == "all" or "bc_kinds" not in row:
        return turns
    from backchannel.corpora.events import LabelSettings

    after = LabelSettings().isolation_after
    keep = np.ones(len(turns), dtype=bool)
    starts = []
    for onset, offset, kind in zip(row["bc_onsets"], row["bc_offsets"], row["bc_kinds"]):
        if kind != "turn_initial":
            continue
        starts.append(float(onset))
        nxt = np.flatnonzero((turns > offset) & (turns < offset + after) & keep)
        if len(nxt):
            keep[nxt[0]] = False
    return np.sort(np.concatenate([turns[keep], starts]))


def backchannel_counts(rows: Sequence[dict]) -> dict:
    """Per definition, the rows' true backchannels: ``{"count", "rate_per_minute"}`` (per listener-minute).
    Needs only ``n_frames``, ``bc_onsets`` and ``bc_isolated``."""
    minutes = sum(duration(r) for r in rows) / 60
    out = {}
    for d in definitions(rows):
        n = sum(len(gold_onsets(r, d)) for r in rows)
        out[d] = {"count": n, "rate_per_minute": n / minutes if minutes else math.nan}
    return out


def split_summary(rows: Sequence[dict]) -> dict:
    return {"rows": len(rows), "dialogues": len({r["dialogue"] for r in rows}),
            "listener_minutes": sum(duration(r) for r in rows) / 60,
            "shift_pauses": int(sum(len(r["shift_pauses"]) for r in rows)),
            "hold_pauses": int(sum(len(r["hold_pauses"]) for r in rows)), "backchannels": backchannel_counts(rows)}
