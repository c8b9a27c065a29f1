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
    false_take_turns_in_speech,
    shift_hold_scores,
    speech_runs,
    take_turn_latency,
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
    # as shipped: the policy takes the turn at level 0.5 -> frame 13 hold (right), 44 shift (wrong), 25 shift
    # (right): recall shift 1/1, hold 1/2 -> 0.75
    from backchannel.evaluation.scoring import shift_hold_accuracy
    from backchannel.policy import Policy

    run = Policy(on=1.0, take_turn=0.5).run(np.column_stack([1 - p, 0 * p, p]))
    row = {"hold_pauses": np.array(hold), "shift_pauses": np.array(shift)}
    assert shift_hold_accuracy([run], [row]) == pytest.approx(0.75)
    assert shift_hold_accuracy([run, run], [row, row]) == pytest.approx(0.75)
    assert math.isnan(shift_hold_accuracy([run], [{"hold_pauses": np.zeros((0, 2)), "shift_pauses": np.zeros((0, 2))}]))


def test_false_take_turns_in_speech():
    va = interval_activity([(0.0, 2.0), (4.0, 6.0)], 100)  # the speaker talks 0-2 s and 4-6 s
    # onsets 1.0 (in speech, matches the true 1.2), 1.5 (in speech, nothing left to match: false),
    # 3.0 (in the gap: not counted), 5.0 (in speech, no true onset near: false)
    assert false_take_turns_in_speech([1.0, 1.5, 3.0, 5.0], [1.2], va) == 2
    assert false_take_turns_in_speech([], [1.2], va) == 0


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
