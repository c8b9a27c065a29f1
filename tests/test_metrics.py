"""Metric functions against hand-computed cases (times in seconds, 80 ms frames)."""
import math

import numpy as np
import pytest

from backchannel.frames import interval_activity
from backchannel.metrics import (
    MARGINS,
    OFFSET_BINS,
    EventScores,
    auprc,
    cadence_report,
    event_scores,
    frame_scores,
    inter_onset_intervals,
    js_distance,
    margin_label,
    match_events,
    onset_offsets,
    pause_window_frames,
    rate_per_minute,
    share_in_overlap,
    shift_hold_balanced_accuracy,
    shift_hold_scores,
    smooth,
    speech_runs,
    take_turn_latency,
    trigger_onsets,
    tune_threshold,
)


def counts(s: EventScores):
    return s.tp, s.fp, s.fn


# --- event matching ----------------------------------------------------------------------------
def test_match_basic_hit_miss_false_alarm():
    s = match_events([1.3, 5.0], [1.0, 3.0], (-0.5, 0.5))
    assert counts(s) == (1, 1, 1)
    assert (s.precision, s.recall, s.f1) == (0.5, 0.5, 0.5)


def test_one_true_onset_claimed_by_two_predictions():
    s = match_events([1.8, 2.1], [2.0], (-0.5, 0.5))
    assert counts(s) == (1, 1, 0)  # 1.8 (earlier) claims 2.0; 2.1 finds it taken
    assert s.precision == 0.5 and s.recall == 1.0
    assert s.f1 == pytest.approx(2 / 3)


def test_nearest_unmatched_onset_is_claimed():
    # 1.25 may claim 1.0 (+0.25) or 1.4 (-0.15): it takes the nearer, 1.4. Then 1.5 may only claim
    # 1.4 (1.5 - 1.0 = 0.5 > 0.3), which is taken -> false positive, and 1.0 is missed.
    assert counts(match_events([1.25, 1.5], [1.0, 1.4], (-0.3, 0.3))) == (1, 1, 1)
    # input order does not matter: predictions are taken in time order
    assert counts(match_events([1.5, 1.25], [1.4, 1.0], (-0.3, 0.3))) == (1, 1, 1)


def test_predictions_outside_margin():
    s = match_events([4.4, 5.6], [5.0], (-0.5, 0.5))
    assert counts(s) == (0, 2, 1)
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)


def test_asymmetric_margins_relative_to_true_onset():
    # (0, +1.0): a prediction before the true onset is never a hit
    assert counts(match_events([1.9], [2.0], (0.0, 1.0))) == (0, 1, 1)
    assert counts(match_events([2.9], [2.0], (0.0, 1.0))) == (1, 0, 0)
    # (-0.1, +0.5): bounds are inclusive
    assert counts(match_events([1.9], [2.0], (-0.1, 0.5))) == (1, 0, 0)
    assert counts(match_events([2.6], [2.0], (-0.1, 0.5))) == (0, 1, 1)
    with pytest.raises(ValueError):
        match_events([1.0], [1.0], (0.5, -0.5))


def test_empty_streams():
    assert counts(match_events([], [])) == (0, 0, 0)
    assert match_events([], [1.0]).f1 == 0.0


def test_event_scores_at_the_four_margins_and_pooling():
    assert [margin_label(m) for m in MARGINS] == ["[-200,+200]", "[-100,+500]", "[-500,+500]", "[0,+1000]"]
    res = event_scores([1.3], [1.0])
    assert counts(res["[-200,+200]"]) == (0, 1, 1)
    assert all(counts(res[k]) == (1, 0, 0) for k in ("[-100,+500]", "[-500,+500]", "[0,+1000]"))
    # two listeners pooled (micro): (1, 0, 0) + (0, 1, 1)
    pooled = event_scores([[1.3], [7.0]], [[1.0], [5.0]], [(-0.5, 0.5)])["[-500,+500]"]
    assert counts(pooled) == (1, 1, 1)
    with pytest.raises(ValueError):
        event_scores([[1.0], [2.0]], [[1.0]])


# --- smoothing and triggers --------------------------------------------------------------------
def test_smooth_is_a_causal_moving_average():
    assert np.allclose(smooth([0, 3, 6, 9], 2), [0, 1.5, 4.5, 7.5])
    assert np.allclose(smooth([0, 3, 6, 9], 3), [0, 1.5, 3, 6])
    assert np.allclose(smooth([0.2, 0.4], 1), [0.2, 0.4])
    rng = np.random.default_rng(0)
    x = rng.random(50)
    for t in (0, 10, 48):
        y = x.copy()
        y[t + 1:] = rng.random(len(y) - t - 1)  # change the future only
        assert np.array_equal(smooth(x, 5)[: t + 1], smooth(y, 5)[: t + 1])


def test_trigger_fires_at_frame_end_with_refractory():
    p = np.zeros(30)
    p[[2, 8, 13, 20, 23]] = 0.9
    # rising edges at frames 2, 8, 13, 20, 23 -> frame ends 0.24, 0.72, 1.12, 1.68, 1.92 s.
    # 0.72 is 0.48 s after 0.24 (dropped); 1.12 fires; 1.68 is 0.56 s after it (dropped);
    # 1.92 is exactly 0.80 s after 1.12 (fires: the boundary is allowed).
    assert np.allclose(trigger_onsets(p, 0.5), [0.24, 1.12, 1.92])
    assert np.allclose(trigger_onsets(p, 0.5, lead=0.3), [0.54, 1.42, 2.22])
    assert np.allclose(trigger_onsets(p, 0.5, refractory=0.0), [0.24, 0.72, 1.12, 1.68, 1.92])


def test_trigger_two_crossings_half_a_second_apart_give_one_trigger():
    p = np.zeros(20)
    p[[3, 9]] = 1.0  # rising edges at frame ends 0.32 and 0.80 s: 0.48 s apart
    assert np.allclose(trigger_onsets(p, 0.5, refractory=0.8), [0.32])


def test_trigger_needs_a_rising_edge_and_uses_smoothing():
    assert np.allclose(trigger_onsets(np.r_[np.zeros(2), np.full(20, 0.9)], 0.5), [0.24])  # sustained: once
    assert np.allclose(trigger_onsets([0.9, 0.0], 0.5), [0.08])  # frame 0 counts as a rising edge
    assert np.allclose(trigger_onsets([0.0, 0.5], 0.5), [0.16])  # >= threshold
    # smoothed over 2 frames: [0, 0, .5, 1, 1] -> crosses 0.75 at frame 3 -> 0.32 s
    assert np.allclose(trigger_onsets([0, 0, 1, 1, 1], 0.75, smoothing=2), [0.32])
    assert len(trigger_onsets(np.zeros(10), 0.5)) == 0


def test_tune_threshold_maximises_event_f1_and_rate_variant():
    p = np.zeros(100)  # 8 s
    p[9], p[39], p[69] = 0.9, 0.7, 0.3  # triggers at 0.80, 3.20, 5.60 s
    # threshold 0.2: 3 preds, tp 2 fp 1 -> F1 .8; 0.5: tp 2 -> F1 1; 0.8: tp 1 fn 1 -> F1 .667
    res = tune_threshold([p], [[0.8, 3.2]], (-0.5, 0.5), grid=[0.2, 0.5, 0.8])
    assert res.settings.threshold == 0.5 and res.f1 == 1.0
    assert res.rate == pytest.approx(15.0) and res.human_rate == pytest.approx(15.0)
    assert [round(r["f1"], 3) for r in res.table] == [0.8, 1.0, 0.667]

    # A third true onset no peak predicts: 0.5 -> P 1, R 2/3, F1 .8, 15/min (0.67 of human 22.5/min);
    # 0.2 -> P 2/3, R 2/3, F1 .667, 22.5/min. Plain tuning picks 0.5, the rate-targeting one 0.2.
    true = [[0.8, 3.2, 7.0]]
    assert tune_threshold([p], true, grid=[0.2, 0.5, 0.8]).settings.threshold == 0.5
    res = tune_threshold([p], true, grid=[0.2, 0.5, 0.8], rate_factor=1.25)
    assert res.settings.threshold == 0.2 and res.rate == pytest.approx(22.5)
    assert res.f1 == pytest.approx(2 / 3)


def test_tune_threshold_searches_lead_and_smoothing():
    p = np.zeros(100)
    p[9] = 0.9  # trigger at 0.80 s; true onset 1.25 s: a hit at [-200,+200] only with lead 0.4 or 0.5
    res = tune_threshold([p], [[1.25]], (-0.2, 0.2), grid=[0.5], lead=[0.0, 0.4], smoothing=[1])
    assert res.settings.lead == 0.4 and res.f1 == 1.0
    assert np.allclose(res.settings.onsets(p), [1.2])


# --- frame level -------------------------------------------------------------------------------
def test_frame_scores_small_case():
    labels = [0, 0, 1, 1, 2, 2, -100]
    probs = [[.8, .1, .1], [.3, .6, .1], [.2, .7, .1], [.1, .8, .1], [.1, .1, .8], [.5, .2, .3], [0, 0, 1]]
    s = frame_scores(labels, probs)  # argmax: 0 1 1 1 2 0 (padding frame ignored)
    # class 0: tp1 fp1 fn1 -> .5; class 1: tp2 fp1 -> P 2/3 R 1 -> .8; class 2: tp1 fn1 -> P 1 R .5 -> 2/3
    assert np.allclose(s["f1"], [0.5, 0.8, 2 / 3])
    assert s["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    # class 0 ranking .8(+) .5(-) .3(+) ...: AP = (1/1 + 2/3) / 2; class 2: .8(+) .3(+) first: AP = 1
    assert s["auprc"][0] == pytest.approx((1 + 2 / 3) / 2)
    assert s["auprc"][2] == pytest.approx(1.0)
    assert s["n_frames"] == 6
    assert math.isnan(auprc([0, 0], [[.9, .1, 0], [.8, .2, 0]])[1])  # no positive frame: undefined


# --- turn-taking -------------------------------------------------------------------------------
def test_pause_window_frames_follow_vap_convention():
    assert list(pause_window_frames(1.0)) == [13]  # ends in [1.05, 1.15]: 1.12
    assert list(pause_window_frames(0.97)) == [12, 13]  # ends in [1.02, 1.12]: 1.04, 1.12


def test_shift_hold_balanced_accuracy():
    p = np.zeros(50)
    p[13], p[25], p[44] = 0.2, 0.9, 0.7
    hold = [(1.0, 1.5), (3.5, 4.0)]  # windows: frame 13 (0.2 -> hold, right), frame 44 (0.7 -> wrong)
    shift = [(2.0, 2.6), (3.0, 3.1)]  # frame 25 (0.9 -> shift, right); 3.0-3.1 shorter than 150 ms: skipped
    scores, labels = shift_hold_scores(p, hold, shift)
    assert np.allclose(scores, [0.2, 0.7, 0.9]) and list(labels) == [0, 0, 1]
    # recall shift 1/1, hold 1/2 -> 0.75
    assert shift_hold_balanced_accuracy(p, hold, shift) == pytest.approx(0.75)
    assert shift_hold_balanced_accuracy([p, p], [hold, hold], [shift, shift]) == pytest.approx(0.75)
    assert math.isnan(shift_hold_balanced_accuracy(p, [], []))


def test_take_turn_latency():
    lat = take_turn_latency([0.7, 9.0], [(1.0, 1.4), (5.0, 5.3)])
    assert lat[0] == pytest.approx(-0.3) and math.isnan(lat[1])
    assert take_turn_latency([1.2], [(1.0, 1.4)])[0] == pytest.approx(0.2)


# --- cadence -----------------------------------------------------------------------------------
def test_rate_per_minute():
    assert rate_per_minute([1, 2, 3, 4, 5, 6], 120.0) == pytest.approx(3.0)
    assert rate_per_minute([[1.0, 2.0], [3.0]], [60.0, 60.0]) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        rate_per_minute([1.0], 0.0)


def test_onset_offsets_and_share_in_overlap():
    va = interval_activity([(0.5, 1.3), (2.0, 2.4)], 40)
    runs = speech_runs(va)
    assert np.allclose(runs, [(0.5, 1.3), (2.0, 2.4)])  # sub-frame edges recovered
    off = onset_offsets([0.2, 1.0, 1.5, 3.0], va)
    assert math.isnan(off[0])  # before any speech
    assert np.allclose(off[1:], [-0.3, 0.2, 0.6])  # in overlap: minus the end of that stretch
    assert share_in_overlap([0.2, 1.0, 1.5, 3.0], va) == pytest.approx(0.25)
    assert np.allclose(inter_onset_intervals([3.0, 1.0, 1.5]), [0.5, 1.5])


def test_js_distance():
    assert js_distance([0.05, 0.15, 0.3], [0.05, 0.15, 0.3]) == pytest.approx(0.0)
    assert js_distance([0.05, 0.15], [1.05]) == pytest.approx(1.0)  # disjoint bins, base 2
    # p = [1, 0], q = [.5, .5], m = [.75, .25]: JSD = (log2(4/3) + .5 log2(2/3) + .5) / 2
    expected = math.sqrt((math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5) / 2)
    assert js_distance([0.0, 0.0], [0.0, 1.0], bins=[-0.5, 0.5, 1.5]) == pytest.approx(expected)
    assert js_distance([5.0], [1.5], bins=[0, 1, 2]) == pytest.approx(0.0)  # clipped into the last bin
    assert math.isnan(js_distance([], [1.0]))
    assert OFFSET_BINS[0] == -1.0 and OFFSET_BINS[-1] == 2.0


def test_cadence_report():
    va = interval_activity([(0.5, 1.3), (2.0, 2.4)], 750)  # 60 s
    rep = cadence_report([[1.5, 3.0]], [[1.5, 3.0, 10.0, 20.0]], [va])
    assert rep["model"]["rate_per_minute"] == pytest.approx(2.0)
    assert rep["human"]["rate_per_minute"] == pytest.approx(4.0)
    assert rep["rate_ratio"] == pytest.approx(0.5)
    assert rep["model"]["median_offset"] == pytest.approx(0.4)  # offsets 0.2, 0.6
    assert rep["model"]["share_in_overlap"] == 0.0
    assert rep["model"]["median_inter_onset"] == pytest.approx(1.5)
    assert 0.0 < rep["offset_js_distance"] <= 1.0
