"""benchmarks/transfer_ablations.py: the timing statistics it reports are hand-computable, the text probe removes
every word, and predictions are shared between conditions only for identical inputs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("transfer_ablations", ROOT / "benchmarks" / "transfer_ablations.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def row(speaker, listener, bc_onsets=(), isolated=None):
    n = len(speaker)
    return {"n_frames": n, "va_speaker": np.asarray(speaker, float), "va_listener": np.asarray(listener, float),
            "bc_onsets": np.asarray(bc_onsets, float), "bc_isolated": np.ones(len(bc_onsets), bool)
            if isolated is None else np.asarray(isolated, bool), "dialogue": "d", "listener": "f",
            "text_speaker": np.array(["go"] + [""] * (n - 1), dtype=object),
            "text_listener": np.array([""] * n, dtype=object)}


def test_timing_statistics_hand_computed(bench):
    # 750 frames (1 minute): the floor speaks 3-99 (the silence before is no pause), 110-299 (a 10-frame = 0.8 s
    # pause), 302-749 (a 2-frame = 0.16 s gap, under 200 ms: not a pause); the listener speaks 295-304 (overlap
    # with the floor at 295-299 and 302-304: 8 frames)
    s = np.zeros(750)
    s[3:100] = s[110:300] = s[302:] = 1
    lst = np.zeros(750)
    lst[295:305] = 1
    t = bench.timing_statistics([row(s, lst, bc_onsets=[9.0, 20.0], isolated=[True, False])])
    assert t["listener_minutes"] == pytest.approx(1.0)
    assert t["floor_speech_share"] == pytest.approx((750 - 15) / 750)
    assert t["listener_speech_share"] == pytest.approx(10 / 750)
    assert t["overlap_share"] == pytest.approx(8 / 750)
    assert t["floor_pauses_per_minute"] == pytest.approx(1.0)
    assert t["median_floor_pause_s"] == pytest.approx(0.8)
    assert t["isolated_backchannels_per_minute"] == pytest.approx(1.0)
    assert t["isolated_backchannels_per_pause"] == pytest.approx(1.0)


def test_text_probe_and_shared_predictions(bench):
    r = row(np.ones(5), np.zeros(5))
    blank = bench.blank_text([r])[0]
    assert list(blank["text_speaker"]) == [""] * 5 and list(r["text_speaker"])[0] == "go"  # the input is untouched

    class Counting:
        calls = 0

        def predict_rows(self, rows):
            Counting.calls += len(rows)
            return [{"n": int(any(bool(t) for t in x["text_speaker"]))} for x in rows]

    memo = bench.Memo(Counting())
    assert memo.predict_rows([r, blank]) == [{"n": 1}, {"n": 0}]
    assert memo.predict_rows([blank, r]) == [{"n": 0}, {"n": 1}] and Counting.calls == 2
