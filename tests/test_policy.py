"""Decision policy: the whole-sequence form equals stepping frame by frame, and hand-computed triggers,
hysteresis, smoothing, refractory, quiet, take-turn, cadence budget and form variety."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from backchannel.lexicon import BC_TYPES
from backchannel.policy import Decision, Policy


def bc_probs(p_bc, p_tt=None):
    """Action probabilities [n, 3] with the given backchannel (and take-turn) column."""
    p_bc = np.asarray(p_bc, dtype=np.float64)
    p_tt = np.zeros_like(p_bc) if p_tt is None else np.asarray(p_tt, dtype=np.float64)
    return np.stack([1.0 - p_bc - p_tt, p_bc, p_tt], axis=1)


def run(policy: Policy, probs, type_probs=None, quiet=None) -> list[Decision]:
    """Step the policy frame by frame, and check that the whole-sequence form decides the same."""
    state = policy.new_state()
    out = []
    for t, p in enumerate(probs):
        tp = None if type_probs is None else type_probs[t]
        out.append(policy.decide(state, p, tp, quiet=bool(quiet[t]) if quiet is not None else False))
    whole = policy.run(np.asarray(probs, dtype=np.float64), None if type_probs is None else np.asarray(type_probs),
                       quiet=None if quiet is None else np.asarray(quiet, bool))
    assert whole.decisions() == out
    return out


def onsets(p_bc, on=0.5, refractory=0.8, smoothing=1, lead=0.0) -> np.ndarray:
    """Backchannel onsets (s) of a policy on a backchannel probability alone (whole-sequence form)."""
    policy = Policy(on=on, refractory=refractory, smoothing=smoothing, lead=lead, take_turn=None)
    return policy.run(bc_probs(p_bc)).backchannel_onsets


def fired(decisions, action="BACKCHANNEL") -> list[int]:
    return [d.frame for d in decisions if d.action == action]


@pytest.mark.parametrize("seed", range(6))
def test_whole_sequence_form_equals_stepping(seed):
    """Policy.run == Policy.decide stepped frame by frame: every field of every decision, with smoothing,
    hysteresis, refractory, cadence, lead, take-turn, quiet, faults, missing outputs and form choice."""
    rng = np.random.default_rng(seed)
    n = 1500
    p_bc = np.clip(0.3 + 0.25 * np.sin(np.arange(n) / (5 + seed)) + rng.normal(0, 0.2, n), 0, 1) * 0.8
    p_tt = np.clip(rng.normal(0.1, 0.15, n), 0, 0.2)
    probs = np.stack([1 - p_bc - p_tt, p_bc, p_tt], 1)
    probs[rng.random(n) < 0.01] = np.nan  # no output: certain silence
    types = rng.dirichlet(np.ones(5), n)
    quiet = rng.random(n) < 0.03
    faults = ["deadline" if r < 0.02 else None for r in rng.random(n)]
    on = float(rng.uniform(0.25, 0.45))
    policy = Policy(on=on, off=on - float(rng.uniform(0, 0.1)), smoothing=int(rng.integers(1, 6)),
                    refractory=float(rng.choice([0.0, 0.8, 2.0])), cadence=[None, 12.0, 30.0][seed % 3],
                    take_turn=0.15, lead=0.08 * int(rng.integers(0, 7)), seed=seed)
    state = policy.new_state()
    step = [policy.decide(state, None if np.isnan(probs[t]).any() else probs[t], types[t], quiet=bool(quiet[t]),
                          fault=faults[t]) for t in range(n)]
    whole = policy.run(probs, types, quiet=quiet, faults=faults)
    assert whole.decisions() == step
    said = [d for d in step if d.action == "BACKCHANNEL"]
    assert len(said) > 5 and any(d.action == "TAKE_TURN" for d in step)
    np.testing.assert_array_equal(whole.backchannel_onsets, [d.time for d in said])


def test_smooth_is_a_causal_moving_average():
    assert np.allclose(Policy(smoothing=2).smooth([0, 3, 6, 9]), [0, 1.5, 4.5, 7.5])
    assert np.allclose(Policy(smoothing=3).smooth([0, 3, 6, 9]), [0, 1.5, 3, 6])
    assert np.allclose(Policy(smoothing=1).smooth([0.2, 0.4]), [0.2, 0.4])
    rng = np.random.default_rng(0)
    x = rng.random(50)
    for t in (0, 10, 48):
        y = x.copy()
        y[t + 1:] = rng.random(len(y) - t - 1)  # change the future only
        assert np.array_equal(Policy(smoothing=5).smooth(x)[: t + 1], Policy(smoothing=5).smooth(y)[: t + 1])


def test_trigger_fires_at_frame_end_with_refractory():
    p = np.zeros(30)
    p[[2, 8, 13, 20, 23]] = 0.9
    # rising edges at frames 2, 8, 13, 20, 23 -> frame ends 0.24, 0.72, 1.12, 1.68, 1.92 s.
    # 0.72 is 0.48 s after 0.24 (dropped); 1.12 fires; 1.68 is 0.56 s after it (dropped);
    # 1.92 is exactly 0.80 s after 1.12 (fires: the boundary is allowed).
    assert np.allclose(onsets(p), [0.24, 1.12, 1.92])
    assert np.allclose(onsets(p, lead=0.32), [0.56, 1.44, 2.24])  # said 4 frames after deciding
    assert np.allclose(onsets(p, refractory=0.0), [0.24, 0.72, 1.12, 1.68, 1.92])


def test_trigger_two_crossings_half_a_second_apart_give_one_trigger():
    p = np.zeros(20)
    p[[3, 9]] = 1.0  # rising edges at frame ends 0.32 and 0.80 s: 0.48 s apart
    assert np.allclose(onsets(p, refractory=0.8), [0.32])


def test_trigger_needs_a_rising_edge_and_uses_smoothing():
    assert np.allclose(onsets(np.r_[np.zeros(2), np.full(20, 0.9)]), [0.24])  # sustained: once
    assert np.allclose(onsets([0.9, 0.0]), [0.08])  # frame 0 counts as a rising edge
    assert np.allclose(onsets([0.0, 0.5]), [0.16])  # >= threshold
    # smoothed over 2 frames: [0, 0, .5, 1, 1] -> crosses 0.75 at frame 3 -> 0.32 s
    assert np.allclose(onsets([0, 0, 1, 1, 1], 0.75, smoothing=2), [0.32])
    assert len(onsets(np.zeros(10))) == 0


def test_take_turn_onsets_are_the_first_frame_of_each_run():
    p_tt = [0.0, 0.7, 0.8, 0.0, 0.9, 0.9, 0.9, 0.1]
    run_ = Policy(on=1.0, take_turn=0.5).run(bc_probs(np.zeros(8), p_tt))
    assert list(run_.take_turn_frames) == [1, 4]
    assert np.allclose(run_.take_turn_onsets, [0.16, 0.40])


def test_decision_fields_and_time():
    d = run(Policy(on=0.5, take_turn=None), bc_probs([0.1, 0.9]), type_probs=[[0, 0, 1, 0, 0]] * 2)
    assert d[0] == Decision(frame=0, time=0.08, action="SILENT", probability=0.1, p_take_turn=0.0, threshold=0.5)
    assert (d[1].frame, d[1].time, d[1].action, d[1].bc_type) == (1, 0.16, "BACKCHANNEL", "assessment")
    assert d[1].form in ("wow", "nice", "great")


def test_hysteresis_rearms_only_below_off():
    p = [0.2, 0.7, 0.55, 0.65, 0.3, 0.7, 0.5, 0.61]
    no_hyst = run(Policy(on=0.6, refractory=0.0, take_turn=None), bc_probs(p))
    assert fired(no_hyst) == [1, 3, 5, 7]  # every rising edge through 0.6
    hyst = run(Policy(on=0.6, off=0.4, refractory=0.0, take_turn=None), bc_probs(p))
    # 0.55 and 0.5 never fall below 0.4: only the drop to 0.3 re-arms
    assert fired(hyst) == [1, 5]


def test_smoothing_hand_computed():
    p = [0.9, 0.0, 0.0, 0.9, 0.9, 0.9]
    d = run(Policy(on=0.5, smoothing=3, refractory=0.0, take_turn=None), bc_probs(p))
    np.testing.assert_allclose([x.probability for x in d], [0.9, 0.45, 0.3, 0.3, 0.6, 0.9], atol=1e-12)
    assert fired(d) == [0, 4]


def test_refractory_drops_edges_it_does_not_postpone():
    p = [1.0, 0.0] * 15  # a rising edge on every even frame
    d = run(Policy(on=0.5, refractory=0.8, take_turn=None), bc_probs(p))
    # 0.8 s = 10 frames: edges at 2..8 dropped, 10 allowed (exactly 0.8 s later), and so on
    assert fired(d) == [0, 10, 20]
    d = run(Policy(on=0.5, refractory=0.7, take_turn=None), bc_probs([1.0, 1.0, 0.0, 1.0] * 8))
    # edges at 0, 3, 7, 11, ...; 0.7 s = 8.75 frames: 3 and 7 dropped, 11 fires, 15 and 19 dropped,
    # 23 fires, 27 and 31 dropped
    assert fired(d) == [0, 11, 23]


def test_refractory_counts_from_emitted_backchannels_only():
    # quiet at frames 0-3 consumes the edge at 0; the edge at 6 fires: a consumed edge starts no refractory
    p = [0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9]
    quiet = [1, 1, 1, 1, 0, 0, 0]
    d = run(Policy(on=0.5, refractory=2.0, take_turn=None), bc_probs(p), quiet=quiet)
    assert fired(d) == [6]


def test_quiet_blocks_both_actions_and_consumes_crossings():
    p_bc = [0.1, 0.9, 0.9, 0.9, 0.9, 0.1, 0.9]
    p_tt = [0.0, 0.0, 0.0, 0.0, 0.0, 0.8, 0.0]
    quiet = [0, 1, 1, 0, 0, 1, 0]
    d = run(Policy(on=0.5, refractory=0.0, take_turn=0.5), bc_probs(p_bc, p_tt), quiet=quiet)
    # frame 1 crosses while quiet: consumed, so frames 3-4 (still high) do not fire after quiet ends;
    # frame 5 would take the turn but is quiet; frame 6 is a fresh rising edge
    assert [x.action for x in d] == ["SILENT"] * 6 + ["BACKCHANNEL"]


def test_take_turn_is_a_level_and_a_backchannel_wins_its_frame():
    p_bc = [0.0, 0.0, 0.0, 0.6, 0.0, 0.0]
    p_tt = [0.2, 0.7, 0.7, 0.3, 0.7, 0.69]
    d = run(Policy(on=0.5, take_turn=0.7, refractory=0.0), bc_probs(p_bc, p_tt))
    assert [x.action for x in d] == ["SILENT", "TAKE_TURN", "TAKE_TURN", "BACKCHANNEL", "TAKE_TURN", "SILENT"]
    assert d[1].p_take_turn == pytest.approx(0.7)
    never = run(Policy(on=0.5, take_turn=None), bc_probs([0.0] * 3, [1.0] * 3))
    assert [x.action for x in never] == ["SILENT"] * 3


def test_cadence_budget_hand_computed():
    p = [1.0, 0.0] * 100  # an edge every other frame, refractory off: the budget alone limits
    # 15 per minute = 0.02 tokens per 80 ms frame: one backchannel per 50 frames once the burst is spent
    d = run(Policy(on=0.5, refractory=0.0, cadence=15.0, burst=1.0, take_turn=None), bc_probs(p))
    assert fired(d) == [0, 50, 100, 150]
    d = run(Policy(on=0.5, refractory=0.0, cadence=15.0, burst=3.0, take_turn=None), bc_probs(p))
    # burst of 3 at 0, 2, 4 (budget 3 -> 2.02 -> 1.04 -> 0.08), then 0.92 more tokens = 46 frames
    assert fired(d) == [0, 2, 4, 50, 100, 150]


def test_cadence_long_run_rate_approaches_target():
    minutes = 10
    n = int(minutes * 60 / 0.08)
    p = np.tile([1.0, 0.0, 0.0], n // 3 + 1)[:n]  # the model asks for 250 per minute
    policy = Policy(on=0.5, refractory=0.0, cadence=12.0, burst=2.0, take_turn=None)
    count = len(fired(run(policy, bc_probs(p))))
    assert 12 * minutes <= count <= 12 * minutes + 2  # target x minutes, plus at most the burst


def test_form_variety_never_three_in_a_row():
    policy = Policy(on=0.5, refractory=0.0, take_turn=None, forms={"continuer": ("mhm", "uh-huh")}, seed=3)
    d = run(policy, bc_probs([1.0, 0.0] * 300))
    forms = [x.form for x in d if x.action == "BACKCHANNEL"]
    assert len(forms) == 300 and set(forms) == {"mhm", "uh-huh"}
    assert all(not (a == b == c) for a, b, c in zip(forms, forms[1:], forms[2:]))
    # the rule is active: a fair coin over 300 draws would almost surely repeat three times
    assert any(a == b for a, b in itertools.pairwise(forms))
    again = [x.form for x in run(policy, bc_probs([1.0, 0.0] * 300)) if x.action == "BACKCHANNEL"]
    assert again == forms  # seeded


def test_single_allowed_form_may_repeat_and_max_repeat_one():
    one = Policy(on=0.5, refractory=0.0, take_turn=None, forms={"continuer": ("mhm",)})
    assert {x.form for x in run(one, bc_probs([1.0, 0.0] * 10)) if x.form} == {"mhm"}
    strict = Policy(on=0.5, refractory=0.0, take_turn=None, forms={"continuer": ("a", "b")}, max_repeat=1)
    forms = [x.form for x in run(strict, bc_probs([1.0, 0.0] * 20)) if x.form]
    assert forms in (["a", "b"] * 10, ["b", "a"] * 10)


def test_type_is_the_argmax_with_fallback_to_a_type_with_forms():
    n = len(BC_TYPES)
    surprise = np.eye(n)[BC_TYPES.index("surprise")] * 0.6 + 0.08
    policy = Policy(on=0.5, refractory=0.0, take_turn=None,
                    forms={"surprise": ("oh",), "continuer": ("mhm",), "agreement": ("yeah",)})
    d = run(policy, bc_probs([0.9]), type_probs=[surprise])
    assert (d[0].bc_type, d[0].form) == ("surprise", "oh")
    assessment_then_agreement = np.array([0.0, 0.3, 0.5, 0.1, 0.1])  # assessment has no forms here
    d = run(policy, bc_probs([0.9]), type_probs=[assessment_then_agreement])
    assert (d[0].bc_type, d[0].form) == ("agreement", "yeah")


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="off <= on"):
        Policy(on=0.4, off=0.5)
    with pytest.raises(ValueError, match="unknown types"):
        Policy(forms={"grunt": ("hm",)})
    with pytest.raises(ValueError, match="at least one form"):
        Policy(forms={"continuer": ()})
    with pytest.raises(ValueError, match="smoothing"):
        Policy(smoothing=0)
    with pytest.raises(ValueError, match="lead must be a whole number"):
        Policy(lead=0.2)  # not a multiple of 80 ms
    with pytest.raises(ValueError, match="3 values"):
        Policy().decide(Policy().new_state(), [0.5, 0.5])
    with pytest.raises(ValueError, match=r"probs must be \[n_frames, 3\]"):
        Policy().run(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unknown settings"):
        Policy.from_dict({"threshold": 0.3})


def test_missing_probabilities_count_as_silence():
    policy = Policy(on=0.5, smoothing=2, refractory=0.0, take_turn=None)
    state = policy.new_state()
    a = policy.decide(state, [0.0, 1.0, 0.0])
    b = policy.decide(state, None, fault="deadline")
    c = policy.decide(state, [0.0, 1.0, 0.0])
    assert (a.action, b.action, b.fault) == ("BACKCHANNEL", "SILENT", "deadline")
    assert (b.probability, c.probability) == (0.5, 0.5)
    assert c.action == "SILENT"  # the smoothed value never fell below 0.5, so the trigger never re-armed


@pytest.mark.parametrize("lead_frames", [1, 3, 6])
def test_lead_delays_speech_by_whole_frames(lead_frames):
    """A lead of k frames speaks k frames after deciding (decisions due past the end are never said)."""
    rng = np.random.default_rng(7)
    p = np.clip(0.3 + 0.25 * np.sin(np.arange(800) / 9) + rng.normal(0, 0.15, 800), 0, 1) * 0.9
    undelayed = fired(run(Policy(on=0.35, smoothing=3, refractory=0.8, take_turn=None), bc_probs(p)))
    decisions = run(Policy(on=0.35, smoothing=3, refractory=0.8, lead=0.08 * lead_frames, take_turn=None),
                    bc_probs(p))
    assert len(undelayed) > 5
    assert fired(decisions) == [t + lead_frames for t in undelayed if t + lead_frames < len(p)]


def test_a_pending_backchannel_is_dropped_when_quiet_comes():
    policy = Policy(on=0.5, lead=0.16, take_turn=None)
    state = policy.new_state()
    acts = [policy.decide(state, [0.1, 0.9, 0.0], quiet=(t == 2)).action for t in range(4)]
    assert acts == ["SILENT", "SILENT", "SILENT", "SILENT"]  # decided at 0, due at 2 (quiet): dropped
    state = policy.new_state()
    acts = [policy.decide(state, [0.1, 0.9, 0.0]).action for t in range(4)]
    assert acts == ["SILENT", "SILENT", "BACKCHANNEL", "SILENT"]


def test_from_report_reads_the_tuned_policy_without_translation(tmp_path):
    tuned = Policy(on=0.3, smoothing=5, refractory=0.8, lead=0.48, take_turn=0.41)
    report = {"corpora": {"maptask": {"systems": {"head": {"definitions": {"isolated": {"variants": {
        "rate_matched": {"policy": tuned.to_dict()},
        "f1": {"policy": Policy(on=0.25, smoothing=3).to_dict()}}}}}}}}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    p = Policy.from_report(path, "maptask", cadence=12.0)
    assert (p.on, p.smoothing, p.refractory, p.lead, p.lead_frames, p.take_turn, p.cadence) == \
        (0.3, 5, 0.8, 0.48, 6, 0.41, 12.0)
    assert Policy.from_report(path, "maptask") == tuned  # every setting as saved
    assert Policy.from_report(report, "maptask", variant="f1").on == 0.25
    with pytest.raises(ValueError, match="corpus 'mrda', system 'head'"):
        Policy.from_report(path, "mrda")


# ----------------------------------------------------------------------------------------------
# Rule 9: online rate calibration
# ----------------------------------------------------------------------------------------------
def pulses(seconds, every_s, height, start_s=0.0, n=None):
    """A backchannel probability of 0 with one-frame pulses to ``height`` every ``every_s`` seconds."""
    p = np.zeros(round(seconds / 0.08) if n is None else n)
    p[np.arange(round(start_s / 0.08), len(p), round(every_s / 0.08))] = height
    return p


def calibration_signal(minutes=5):
    """Low pulses (0.5) every 10 s and high pulses (0.9) every 30 s, 5 s apart: a level <= 0.5 crosses
    8 times a minute, a level in (0.5, 0.9] twice, a level above 0.9 never."""
    n = round(minutes * 60 / 0.08)
    return np.maximum(pulses(0, 10.0, 0.5, start_s=0.0, n=n), pulses(0, 30.0, 0.9, start_s=5.0, n=n))


def test_calibration_picks_the_level_nearest_the_target_after_warm_up():
    p = calibration_signal()
    policy = Policy(on=0.5, off=0.3, refractory=0.0, take_turn=None, target_rate=3.0, calibration_window=60.0,
                    calibration_warmup=60.0)
    decisions = run(policy, bc_probs(p))
    fired = np.array([d.frame for d in decisions if d.action == "BACKCHANNEL"])
    warm = fired[fired < 750]
    after = fired[fired >= 750]
    # warm-up (first 60 s = 750 frames): the policy's own level 0.5 takes every pulse, 6 low + 2 high
    assert len(warm) == 8
    # then the levels <= 0.5 cross 8/min > 3/min, the level above, 0.52, twice a minute: nearer in log ratio
    # (3/2 < 8/3), so only the high pulses (at 5 s, 35 s, 65 s, ... -> frames 62 + 375 k) remain
    assert after.tolist() == [62 + 375 * k for k in range(2, 10)]
    thresholds = np.array([d.threshold for d in decisions])
    assert np.all(thresholds[:750] == 0.5) and np.all(thresholds[760:] == pytest.approx(0.52))


def test_calibration_follows_the_target_down_and_up():
    p = calibration_signal()
    # target 1/min: 0.90 (2/min) is nearer than 0.92 (never); 2.5/min: 0.52 (2/min) nearer than 0.50 (8/min)
    for target, level, per_min in ((10.0, 0.02, 8), (1.0, 0.90, 2), (2.5, 0.52, 2)):
        policy = Policy(on=0.5, off=0.3, refractory=0.0, take_turn=None, target_rate=target,
                        calibration_window=60.0, calibration_warmup=60.0)
        r = policy.run(bc_probs(p))
        assert r.threshold[800:] == pytest.approx(np.full(len(p) - 800, level)), target
        after = r.backchannel_frames[r.backchannel_frames >= 1500]  # the last 3 minutes
        assert len(after) == 3 * per_min, target


def test_calibration_window_forgets_the_past():
    # 2 minutes of dense pulses (12/min at 0.5), then 3 minutes of sparse ones (1.5/min, every 40 s):
    # target 3/min: while the 60 s window holds the dense part the level is 0.50 (12/min is nearer 3 than
    # never); once the window has only sparse pulses no level is over the target and 0.02 is chosen
    n = round(300 / 0.08)
    p = np.where(np.arange(n) < 1500, pulses(0, 5.0, 0.5, n=n), pulses(0, 40.0, 0.5, start_s=2.0, n=n))
    policy = Policy(on=0.5, off=0.3, refractory=0.0, take_turn=None, target_rate=3.0, calibration_window=60.0,
                    calibration_warmup=30.0)
    r = policy.run(bc_probs(p))
    assert r.threshold[1400] == pytest.approx(0.50)
    assert r.threshold[1500 + 750 + 10] == pytest.approx(0.02)
    late = r.backchannel_frames[r.backchannel_frames >= 1500 + 750 + 10]
    sparse = np.arange(25, n, 500)
    assert late.tolist() == sparse[sparse >= 1500 + 750 + 10].tolist()


def test_calibrated_streaming_equals_whole_sequence_on_random_signals():
    rng = np.random.default_rng(3)
    walk = np.clip(0.3 + np.cumsum(rng.normal(0, 0.03, 3000)), 0, 1)
    p = np.clip(walk * rng.uniform(0.5, 1.0, 3000), 0, 1)
    for policy in (Policy(on=0.4, smoothing=3, refractory=0.8, target_rate=2.0, calibration_window=30.0,
                          calibration_warmup=10.0),
                   Policy(on=0.6, smoothing=1, refractory=0.0, lead=0.16, target_rate=6.0, calibration_window=5.0,
                          calibration_warmup=0.0, take_turn=0.7)):
        run(policy, bc_probs(p * 0.8, p_tt=(1 - p) * 0.1))
        state = policy.new_state()
        for x in bc_probs(p)[:100]:
            policy.decide(state, x)
        fresh = policy.new_state()
        assert fresh.calibration.counts.sum() == 0 and state.calibration.counts.sum() > 0


def test_calibration_settings_are_checked_and_round_trip():
    for bad in ({"target_rate": 0.0}, {"target_rate": float("nan")}, {"target_rate": -1.0},
                {"target_rate": 2.0, "calibration_window": 0.01}, {"target_rate": 2.0, "calibration_warmup": -1.0}):
        with pytest.raises(ValueError, match=next(iter(k for k in bad if k != "target_rate"), "target_rate")):
            Policy(**bad)
    p = Policy(on=0.4, target_rate=1.5, calibration_window=120.0)
    assert Policy.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert Policy().new_state().calibration is None


def test_calibration_carries_across_sessions_in_both_forms():
    rng = np.random.default_rng(5)
    sessions = [np.clip(rng.beta(1, 6, n), 0, 1) for n in (900, 400, 1300)]
    policy = Policy(on=0.3, off=0.2, smoothing=2, refractory=0.4, take_turn=None, target_rate=4.0,
                    calibration_window=40.0, calibration_warmup=20.0)
    states = policy.init_state(1)
    stepped = []
    for p in sessions:
        stepped.append([policy.decide(states[0], x) for x in bc_probs(p)])
        policy.reset(states, [True])
    carried = states[0].calibration
    cal = policy.new_calibration()
    whole = [policy.run(bc_probs(p), calibration=cal).decisions() for p in sessions]
    assert whole == stepped
    assert cal.seen == carried.seen == 2600 and np.array_equal(cal.counts, carried.counts)
    assert np.array_equal(cal.ring, carried.ring)
    assert policy.new_state(cal).calibration is cal and cal.armed.all() and carried.armed.all()  # re-armed
    # the second session starts calibrated (no warm-up at the policy's level): its first frames use a level
    # from the first session's window; a fresh calibration would sit at `on` for 20 s
    assert any(d.threshold != 0.3 for d in stepped[1][:250])
    assert [d.threshold for d in policy.run(bc_probs(sessions[1])).decisions()[:250]] == [0.3] * 250


def test_calibrated_policy_starts_at_the_level_rule_9_picks_on_unlabelled_sessions():
    sessions = [calibration_signal(minutes=2), calibration_signal(minutes=3)]
    base = Policy(on=0.5, off=0.3, refractory=0.0, take_turn=None)
    for target, level in ((3.0, 0.52), (10.0, 0.02), (1.0, 0.90), (2.0, 0.52)):
        cal = base.calibrated(target, [bc_probs(p) for p in sessions], calibration_window=120.0)
        assert (cal.on, cal.off, cal.target_rate, cal.calibration_window) == pytest.approx(
            (level, level * 0.6, target, 120.0)), target
    assert base.calibrated(3.0).on == 0.5  # no sessions: on stays
