"""Decision policy: equals the offline trigger rule, and hand-computed hysteresis, smoothing,
refractory, quiet, take-turn, cadence budget and form variety."""
from __future__ import annotations

import itertools

import json

import numpy as np
import pytest

from backchannel.lexicon import BC_TYPES
from backchannel.metrics import TriggerSettings, smooth, trigger_onsets
from backchannel.policy import Decision, Policy


def bc_probs(p_bc, p_tt=None):
    """Action probabilities [n, 3] with the given backchannel (and take-turn) column."""
    p_bc = np.asarray(p_bc, dtype=np.float64)
    p_tt = np.zeros_like(p_bc) if p_tt is None else np.asarray(p_tt, dtype=np.float64)
    return np.stack([1.0 - p_bc - p_tt, p_bc, p_tt], axis=1)


def run(policy: Policy, probs, type_probs=None, quiet=None) -> list[Decision]:
    state = policy.init_state()
    out = []
    for t, p in enumerate(probs):
        tp = None if type_probs is None else type_probs[t]
        out.append(policy.decide(state, p, tp, quiet=bool(quiet[t]) if quiet is not None else False))
    return out


def fired(decisions, action="BACKCHANNEL") -> list[int]:
    return [d.frame for d in decisions if d.action == action]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("smoothing,refractory", [(1, 0.8), (3, 0.8), (5, 0.0), (4, 2.0)])
def test_equals_offline_trigger_onsets(seed, smoothing, refractory):
    rng = np.random.default_rng(seed)
    # a wandering probability with bursts, so that there are many crossings of several thresholds
    p = np.clip(0.3 + 0.25 * np.sin(np.arange(1500) / (7 + seed)) + rng.normal(0, 0.15, 1500), 0, 1) * 0.9
    for threshold in (0.25, 0.35, 0.45):
        want = trigger_onsets(p, threshold, refractory=refractory, smoothing=smoothing)
        policy = Policy.from_trigger(TriggerSettings(threshold, smoothing, refractory), take_turn=None)
        decisions = run(policy, bc_probs(p))
        got = np.array([d.time for d in decisions if d.action == "BACKCHANNEL"])
        assert len(want) > 5
        np.testing.assert_array_equal(got, want)  # exact: same frames, same float times
        np.testing.assert_array_equal([d.probability for d in decisions], smooth(p, smoothing))


def test_decision_fields_and_time():
    d = run(Policy(on=0.5, take_turn=None), bc_probs([0.1, 0.9]), type_probs=[[0, 0, 1, 0, 0]] * 2)
    assert d[0] == Decision(frame=0, time=0.08, action="SILENT", probability=0.1, p_take_turn=0.0)
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
        Policy.from_trigger(TriggerSettings(0.5, lead=0.2))  # not a multiple of 80 ms
    with pytest.raises(ValueError, match="3 values"):
        Policy().decide(Policy().init_state(), [0.5, 0.5])


def test_missing_probabilities_count_as_silence():
    policy = Policy(on=0.5, smoothing=2, refractory=0.0, take_turn=None)
    state = policy.init_state()
    a = policy.decide(state, [0.0, 1.0, 0.0])
    b = policy.decide(state, None, fault="deadline")
    c = policy.decide(state, [0.0, 1.0, 0.0])
    assert (a.action, b.action, b.fault) == ("BACKCHANNEL", "SILENT", "deadline")
    assert (b.probability, c.probability) == (0.5, 0.5)
    assert c.action == "SILENT"  # the smoothed value never fell below 0.5, so the trigger never re-armed


@pytest.mark.parametrize("lead_frames", [1, 3, 6])
def test_lead_delays_speech_like_trigger_onsets(lead_frames):
    """A lead of k frames speaks k frames after deciding: the times equal trigger_onsets(lead=0.08 k)."""
    rng = np.random.default_rng(7)
    p = np.clip(0.3 + 0.25 * np.sin(np.arange(800) / 9) + rng.normal(0, 0.15, 800), 0, 1) * 0.9
    lead = 0.08 * lead_frames
    want = trigger_onsets(p, 0.35, refractory=0.8, smoothing=3, lead=lead)
    policy = Policy.from_trigger(TriggerSettings(0.35, 3, 0.8, lead), take_turn=None)
    decisions = run(policy, bc_probs(p))
    got = np.array([d.time for d in decisions if d.action == "BACKCHANNEL"])
    assert len(want) > 5 and len(got) == len(want) - int(want[-1] > decisions[-1].time)
    np.testing.assert_allclose(got, want[:len(got)], atol=1e-9)
    undelayed = fired(run(Policy.from_trigger(TriggerSettings(0.35, 3, 0.8), take_turn=None), bc_probs(p)))
    assert fired(decisions) == [t + lead_frames for t in undelayed if t + lead_frames < len(p)]


def test_a_pending_backchannel_is_dropped_when_quiet_comes():
    policy = Policy(on=0.5, lead=0.16, take_turn=None)
    state = policy.init_state()
    acts = [policy.decide(state, [0.1, 0.9, 0.0], quiet=(t == 2)).action for t in range(4)]
    assert acts == ["SILENT", "SILENT", "SILENT", "SILENT"]  # decided at 0, due at 2 (quiet): dropped
    state = policy.init_state()
    acts = [policy.decide(state, [0.1, 0.9, 0.0]).action for t in range(4)]
    assert acts == ["SILENT", "SILENT", "BACKCHANNEL", "SILENT"]


def test_from_report_reads_the_tuned_settings(tmp_path):
    report = {"corpora": {"maptask": {"systems": {"head": {
        "variants": {"rate_matched": {"settings": {"threshold": 0.3, "smoothing": 5, "refractory": 0.8, "lead": 0.48}},
                     "f1": {"settings": {"threshold": 0.25, "smoothing": 3, "refractory": 0.8, "lead": 0.0}}},
        "shift_hold": {"take_turn": {"threshold": 0.41}}}}}}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    p = Policy.from_report(path, "maptask", cadence=12.0)
    assert (p.on, p.smoothing, p.refractory, p.lead, p.lead_frames, p.take_turn, p.cadence) == \
        (0.3, 5, 0.8, 0.48, 6, 0.41, 12.0)
    assert Policy.from_report(report, "maptask", variant="f1").on == 0.25
    with pytest.raises(ValueError, match="corpus 'mrda', system 'head'"):
        Policy.from_report(path, "mrda")
