"""The one frame clock: 80 ms frames at 12.5 Hz (Mimi's rate).

Frame ``t`` covers ``[0.08 t, 0.08 (t + 1))`` seconds. Every stream (voice activity, prosody,
text, labels, model outputs) uses this clock; all conversions live here, with the width of the
per-frame prosody streams.
"""
from __future__ import annotations

import math

import numpy as np

FRAME_HZ = 12.5
FRAME_S = 0.08
#: Prosody streams per party and frame (listener's four, then the floor party's four).
PROSODY_STREAMS = ("f0_st", "low_pitch", "intensity_db", "voiced")
PROSODY_DIM = 2 * len(PROSODY_STREAMS)
PROSODY_NAMES = tuple(f"{party}_{name}" for party in ("listener", "speaker") for name in PROSODY_STREAMS)
_EPS = 1e-9  # seconds; absorbs float error in times such as 0.08 * 3


def time_to_frame(t: float) -> int:
    """Index of the frame containing time ``t`` (seconds)."""
    return int(math.floor(t * FRAME_HZ + _EPS))


def times_to_frames(t) -> np.ndarray:
    """Vectorised ``time_to_frame``: index (int64) of the frame containing each time in ``t`` (seconds)."""
    return np.floor(np.asarray(t, dtype=np.float64) * FRAME_HZ + _EPS).astype(np.int64)


def frame_start(frame: int | np.ndarray) -> float | np.ndarray:
    """Start time in seconds of ``frame``."""
    return frame * FRAME_S


def frame_end(frame: int | np.ndarray) -> float | np.ndarray:
    """End time in seconds of ``frame`` (the moment a causal decision for it is made)."""
    return (frame + 1) * FRAME_S


def num_frames(duration: float) -> int:
    """Number of frames needed to cover ``duration`` seconds (a partial last frame counts)."""
    if duration < 0:
        raise ValueError(f"negative duration {duration}")
    return int(math.ceil(duration * FRAME_HZ - _EPS))


def interval_activity(intervals, n_frames: int) -> np.ndarray:
    """Fraction (0..1) of each frame covered by the union of ``(start, end)`` intervals (seconds).

    Overlapping intervals are merged first, so the result never exceeds 1.
    """
    out = np.zeros(n_frames, dtype=np.float64)
    for start, end in merge_intervals(intervals):
        start, end = max(start, 0.0), min(end, n_frames * FRAME_S)
        if end <= start:
            continue
        f0, f1 = time_to_frame(start), min(time_to_frame(end - _EPS), n_frames - 1)
        if f0 == f1:
            out[f0] += (end - start) * FRAME_HZ
            continue
        out[f0] += (frame_end(f0) - start) * FRAME_HZ
        out[f0 + 1 : f1] += 1.0
        out[f1] += (end - frame_start(f1)) * FRAME_HZ
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def merge_intervals(intervals, gap: float = 0.0) -> list[tuple[float, float]]:
    """Union of ``(start, end)`` intervals; intervals separated by at most ``gap`` s are joined."""
    merged: list[list[float]] = []
    for start, end in sorted((float(s), float(e)) for s, e in intervals):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]
