"""Event mining on hand-built dialogues; every expected time is worked out by hand in the comments."""
from __future__ import annotations

import math

import numpy as np
import pytest

from backchannel.corpora.dialogue import Channel, Dialogue, Utterance, Word
from backchannel.corpora.events import BackchannelEvent, LabelSettings, Pause, TurnEvent
from backchannel.corpora.mining import (
    backchannel_kinds,
    count_backchannel_sources,
    ipus,
    merge_spans,
    mine_backchannels,
    mine_dialogue,
    speech_spans,
    turn_transition_gaps,
)

approx = pytest.approx


def utt(*words, gold=None):
    """Utterance from ``(text, start, end)`` triples."""
    ws = tuple(Word(s, e, t) for t, s, e in words)
    return Utterance(ws[0].start, ws[-1].end, ws, gold_backchannel=gold)


def two_party() -> Dialogue:
    """A gives directions, B listens (13 s).

    A speaks 0-2, 3-5.5, 6-7, 8.8-12. B: "mhm" 2.4-2.7 in A's 1 s pause; "yeah" 4.0-4.3 in overlap;
    "where is the mill" 7.3-8.5 after a 300 ms gap (shift); "wait which way" 11.2-12.4 while A
    speaks until 12.0 (interruption). A's pause 5.5-6.0 has no listener speech (hold).
    """
    a = Channel("A", [utt(("so", 0.0, 0.4), ("we", 0.4, 0.8), ("go", 0.8, 1.2), ("north", 1.2, 2.0)),
                      utt(("then", 3.0, 3.5), ("east", 3.5, 4.0), ("past", 4.0, 4.5), ("the", 4.5, 4.7),
                          ("lake", 4.7, 5.5)),
                      utt(("and", 6.0, 6.4), ("stop", 6.4, 7.0)),
                      utt(("near", 8.8, 9.2), ("the", 9.2, 9.3), ("bridge", 9.3, 10.0), ("and", 10.0, 10.4),
                          ("then", 10.4, 11.0), ("turn", 11.0, 11.5), ("left", 11.5, 12.0))])
    b = Channel("B", [utt(("mhm", 2.4, 2.7)), utt(("yeah", 4.0, 4.3)),
                      utt(("where", 7.3, 7.6), ("is", 7.6, 7.8), ("the", 7.8, 7.9), ("mill", 7.9, 8.5)),
                      utt(("wait", 11.2, 11.6), ("which", 11.6, 12.0), ("way", 12.0, 12.4))])
    return Dialogue("hand2", "hand", {"A": a, "B": b}, 13.0, split="train")


def test_ipus_join_pauses_shorter_than_gap():
    ch = Channel("A", [utt(("a", 0.0, 0.5), ("b", 0.6, 1.0)), utt(("c", 1.2, 1.5)), utt(("d", 2.0, 2.1))])
    # pauses: 0.1 (joined), 0.2 (= gap: separates), 0.5 (separates)
    assert ipus(ch) == ipus(ch, LabelSettings(pause=0.2)) == [(0.0, 1.0), (1.2, 1.5), (2.0, 2.1)]
    assert ipus(ch, {"pause": 0.3}) == [(0.0, 1.5), (2.0, 2.1)]
    assert [tuple(s) for s in merge_spans(speech_spans(ch))] == \
        [(0.0, 0.5), (0.6, 1.0), (1.2, 1.5), (2.0, 2.1)]


def test_two_party_exact_events():
    ev = mine_dialogue(two_party())
    b = ev["B"]
    assert b.floor == "A"
    # both isolated: B silent > 1 s around each (none before 2.4, 1.3 s to 4.0, 3.0 s to 7.3); A spoke
    # 0.4 s before the first and is speaking at the second
    assert b.backchannels == [
        BackchannelEvent("B", 2.4, 2.7, "mhm", "continuer", "lexicon", True, False, approx(0.4), "isolated"),
        BackchannelEvent("B", 4.0, 4.3, "yeah", "agreement", "lexicon", True, True, 0.0, "isolated"),
    ]
    # shift: A's last speech ended 7.0, B starts 7.3; interruption: A's stretch 8.8-12.0 ends 0.8 s after 11.2
    assert b.turns == [TurnEvent("B", 7.3, "shift", approx(0.3), 8.5),
                       TurnEvent("B", 11.2, "interruption", approx(-0.8), 12.4)]
    # 2.0-2.4: mutual silence until B's "mhm", then A resumes at 3.0 -> hold; 5.5-6.0 hold; 7.0-7.3 shift.
    assert b.pauses == [Pause(2.0, approx(2.4), "hold"), Pause(5.5, 6.0, "hold"), Pause(7.0, 7.3, "shift")]
    a = ev["A"]
    # A's IPU at 3.0 continues A's turn across B's backchannel; at 8.8 A takes the turn 0.3 s after B's 8.5.
    assert a.backchannels == []
    assert a.turns == [TurnEvent("A", 8.8, "shift", approx(0.3), 12.0)]
    assert a.pauses == [Pause(8.5, 8.8, "shift")]
    assert turn_transition_gaps(two_party(), ev) == approx([0.3, 0.3, -0.8])


def test_pair_function_matches_mine_dialogue_and_candidates_take_no_turn():
    d = two_party()
    lis, flo = d.channels["B"], d.floor("B")
    assert mine_backchannels(lis, flo) == mine_dialogue(d)["B"].backchannels
    # With no backchannel candidates (none is that short), "mhm" (after A's 2.0) and "yeah" (inside A's
    # 3.0-5.5) take turns.
    ev = mine_dialogue(d, LabelSettings(max_duration=0.01))
    assert ev["B"].backchannels == [] and ev["A"].backchannels == []
    assert [(t.onset, t.kind) for t in ev["B"].turns] == \
        [(2.4, "shift"), (4.0, "interruption"), (7.3, "shift"), (11.2, "interruption")]


def test_interruption_inside_a_short_floor_pause():
    # A pauses 0.1 s (1.0-1.1, < 0.2 s: same IPU); B starting at 1.05 interrupts, gap = 1.05 - 2.0.
    a = Channel("A", [utt(("one", 0.0, 1.0), ("two", 1.1, 2.0))])
    b = Channel("B", [utt(("no", 1.05, 1.3), ("wait", 1.3, 1.6), ("listen", 1.6, 2.5))])
    ev = mine_dialogue(Dialogue("ov", "hand", {"A": a, "B": b}, 3.0))
    assert ev["B"].turns == [TurnEvent("B", 1.05, "interruption", approx(-0.95), 2.5)]
    assert turn_transition_gaps(Dialogue("ov", "hand", {"A": a, "B": b}, 3.0)) == approx([-0.95])


def tagged() -> Dialogue:
    """A speaks 0-10 (three long words). B's short utterances carry corpus tags."""
    a = Channel("A", [utt(("one", 0.0, 3.0), ("two", 3.0, 6.0), ("three", 6.0, 10.0), gold=False)])
    b = Channel("B", [
        utt(("okay", 1.0, 1.4), gold=True),             # tag + lexicon
        utt(("right", 4.0, 4.3), gold=False),           # lexicon only (tag says no)
        utt(("go", 7.0, 7.2), ("on", 7.2, 7.5), gold=True),  # tag only
        utt(("mhm", 8.0, 8.3), gold=True),              # B goes on 0.2 s later, but A is still speaking
        utt(("so", 8.5, 8.7), gold=False),              # neither
        utt(("yeah", 11.0, 11.3), gold=True),           # claims the floor: B continues at 11.5, A silent
        utt(("i", 11.5, 11.7), ("think", 11.7, 12.0), ("that", 12.0, 12.2), ("is", 12.2, 12.4),
            ("wrong", 12.4, 13.0), gold=False),
        utt(("mmm", 14.0, 15.2), gold=True),            # 1.2 s: too long
    ])
    return Dialogue("tags", "hand", {"A": a, "B": b}, 16.0)


def test_tags_decide_and_lexicon_counted_side_by_side():
    d = tagged()
    lis, flo = d.channels["B"], d.channels["A"]
    bcs = mine_backchannels(lis, flo)
    # kinds: "okay" isolated (B silent before it, 2.6 s to "right"; A speaking); "go on" follows "right"
    # (4.3) by 2.7 s but "mhm" comes 0.5 s after it and B's next take-turn ("so", 8.5) starts exactly
    # 1.0 s after its offset 7.5: not < 1.0, so "other"; "mhm" (B spoke 0.5 s before) is followed 0.2 s
    # later by the take-turn "so": turn-initial.
    assert [(b.onset, b.form, b.bc_type, b.source, b.lexical, b.in_overlap, b.kind) for b in bcs] == [
        (1.0, "okay", "acknowledgement", "tag", True, True, "isolated"),
        (7.0, "go on", "echo", "tag", False, True, "other"),  # no lexicon word: an echo, no type
        (8.0, "mhm", "continuer", "tag", True, True, "turn_initial")]
    assert count_backchannel_sources(lis, flo) == {"tag": 3, "lexicon": 3, "both": 2, "tag_only": 1,
                                                   "lexicon_only": 1}
    lex = mine_backchannels(lis, flo, {"use_tags": False})
    assert [(b.onset, b.source) for b in lex] == [(1.0, "lexicon"), (4.0, "lexicon"), (8.0, "lexicon")]
    assert [b.onset for b in mine_backchannels(lis, flo, {"max_duration": 1.5})] == [1.0, 7.0, 8.0, 14.0]
    assert [b.onset for b in mine_backchannels(lis, flo, LabelSettings(max_words=1))] == [1.0, 8.0]
    assert mine_dialogue(d)["B"].source_counts["tag_only"] == 1
    assert mine_dialogue(d, {"use_tags": False}).settings == LabelSettings(use_tags=False)


def test_lone_filler_is_never_a_backchannel_even_when_tagged():
    a = Channel("A", [utt(("one", 0.0, 3.0), ("two", 3.0, 6.0), gold=False)])
    b = Channel("B", [utt(("uh", 1.0, 1.3), gold=True), utt(("um", 2.0, 2.2)), utt(("er", 3.0, 3.2), ("erm", 3.2, 3.5)),
                      utt(("uh", 4.0, 4.2), ("yeah", 4.2, 4.5), gold=True)])
    d = Dialogue("fill", "hand", {"A": a, "B": b}, 7.0)
    for settings in (None, {"use_tags": False}):
        bcs = mine_dialogue(d, settings)["B"].backchannels
        assert [(x.onset, x.form, x.bc_type) for x in bcs] == [(4.0, "uh yeah", "agreement")]
    assert count_backchannel_sources(d.channels["B"], d.channels["A"]) == \
        {"tag": 1, "lexicon": 1, "both": 1, "tag_only": 0, "lexicon_only": 0}


def three_party() -> Dialogue:
    """A talks; B backchannels; C backchannels in A's pause, then takes the turn; B then takes it from C."""
    a = Channel("A", [utt(("we", 0.0, 0.5), ("need", 0.5, 1.0), ("a", 1.0, 1.5), ("plan", 1.5, 2.0)),
                      utt(("for", 2.5, 3.0), ("tomorrow", 3.0, 3.5))])
    b = Channel("B", [utt(("right", 1.0, 1.45)), utt(("good", 5.3, 5.6), ("idea", 5.6, 6.0))])
    c = Channel("C", [utt(("mhm", 2.1, 2.3)),
                      utt(("what", 4.0, 4.3), ("about", 4.3, 4.6), ("today", 4.6, 5.0))])
    return Dialogue("three", "hand", {"A": a, "B": b, "C": c}, 6.5)


def test_three_party_projected_to_listener_vs_floor():
    ev = mine_dialogue(three_party())
    assert [ev[s].floor for s in "ABC"] == ["B+C", "A+C", "A+B"]
    c = ev["C"]
    # floor A+B last spoke until 2.0 (A): the "mhm" is 0.1 s after, not in overlap
    assert [(b.onset, b.form, b.in_overlap, b.since_speaker_end, b.kind) for b in c.backchannels] == \
        [(2.1, "mhm", False, approx(0.1), "isolated")]
    assert c.turns == [TurnEvent("C", 4.0, "shift", approx(0.5), 5.0)]
    assert c.pauses == [Pause(3.5, 4.0, "shift")]
    # B's "right" overlaps A; B's "good idea" 0.3 s after C's turn is a shift for B (floor A+C)
    assert [(x.onset, x.in_overlap) for x in ev["B"].backchannels] == [(1.0, True)]
    assert ev["B"].turns == [TurnEvent("B", 5.3, "shift", approx(0.3), 6.0)]
    # A resumes at 2.5 after only backchannels from B and C: no take-turn for A
    assert ev["A"].turns == [] and ev["A"].backchannels == []
    assert turn_transition_gaps(three_party(), ev) == approx([0.5, 0.3])


def test_untimed_segments_and_empty_floor():
    # segment-level utterances (no words) count as speech; a lone speaker has no events
    a = Channel("A", [Utterance(0.0, 2.0), Utterance(2.6, 4.0)])
    b = Channel("B", [Utterance(2.1, 2.4, gold_backchannel=True)])
    ev = mine_dialogue(Dialogue("seg", "hand", {"A": a, "B": b}, 4.0))
    assert [(x.onset, x.form, x.source) for x in ev["B"].backchannels] == [(2.1, "", "tag")]
    assert ev["A"].turns == [] and ev["B"].turns == []
    assert ev["B"].pauses == []  # the silences 2.0-2.1 and 2.4-2.6 are shorter than 0.2 s
    solo = mine_dialogue(Dialogue("solo", "hand", {"A": a}, 4.0))
    assert solo["A"].turns == [] and solo["A"].pauses == []
    lone = mine_backchannels(Channel("A", [utt(("yeah", 0.0, 0.3))]), Channel("B"))
    assert len(lone) == 1 and math.isnan(lone[0].since_speaker_end)  # the floor party never spoke
    assert lone[0].kind == "other"  # so it is not isolated, and no turn follows


MHM = ("mhm", 10.0, 10.3)  # the candidate of the isolation cases: B's "mhm" at 10.0-10.3 s


def isolation_case(*, before=None, after=None, floor_end=9.8) -> Dialogue:
    """A speaks 0..``floor_end`` and 12.5-14.5; B says "mhm" 10.0-10.3. ``before``: B's five-word
    utterance (an interruption, not a candidate) ends at 10.0 - ``before``; ``after``: B's five-word
    utterance (a shift: A spoke last) starts at 10.3 + ``after``. Times in seconds."""
    a = Channel("A", [utt(("so", 0.0, 4.0), ("we", 4.0, floor_end)), utt(("and", 12.5, 13.0), ("then", 13.0, 14.5))])
    b_utts = [utt(MHM)]
    if before is not None:
        end = round(10.0 - before, 6)
        words = ["i", "see", "the", "lake", "now"]
        b_utts.insert(0, utt(*[(w, end - 1.5 + 0.3 * i, end - 1.2 + 0.3 * i) for i, w in enumerate(words)]))
    if after is not None:
        start = round(10.3 + after, 6)
        words = ["and", "then", "where", "is", "it"]
        b_utts.append(utt(*[(w, start + 0.2 * i, start + 0.2 * (i + 1)) for i, w in enumerate(words)]))
    return Dialogue("iso", "hand", {"A": a, "B": Channel("B", b_utts)}, 15.0)


def kind_of_mhm(d: Dialogue, settings=None) -> str:
    [bc] = [b for b in mine_dialogue(d, settings)["B"].backchannels if b.onset == 10.0]
    return bc.kind


@pytest.mark.parametrize("before,kind", [(1.0, "isolated"), (0.99, "other"), (None, "isolated")])
def test_isolation_listener_silent_before(before, kind):
    # B's previous speech ends exactly 1.0 s / 0.99 s before the onset (or never): >= 1.0 s is silence.
    # 0.99 fails and no take-turn follows within 1 s of the offset (A resumes at 12.5): "other".
    assert kind_of_mhm(isolation_case(before=before)) == kind


@pytest.mark.parametrize("after,kind", [(1.0, "isolated"), (0.99, "turn_initial"), (None, "isolated")])
def test_isolation_listener_silent_after(after, kind):
    # B speaks again exactly 1.0 s / 0.99 s after the offset 10.3 (or never: the dialogue end counts as
    # silence). At 0.99 s that speech is B's take-turn (a shift, A spoke last): turn-initial.
    d = isolation_case(after=after)
    assert kind_of_mhm(d) == kind
    if after is not None:
        assert [t.onset for t in mine_dialogue(d)["B"].turns] == [approx(10.3 + after)]


@pytest.mark.parametrize("gap,kind", [(1.5, "isolated"), (1.51, "other"), (0.0, "isolated"), (-0.5, "isolated")])
def test_isolation_floor_spoke_within(gap, kind):
    # A stops exactly 1.5 s / 1.51 s before the onset, right at it, or speaks through it (overlap counts)
    assert kind_of_mhm(isolation_case(floor_end=round(10.0 - gap, 6))) == kind


def test_isolation_thresholds_are_settings():
    d = isolation_case(before=0.8, floor_end=8.0)  # B silent 0.8 s before; A stopped 2.0 s before
    assert kind_of_mhm(d) == "other"
    loose = {"isolation_before": 0.8, "floor_within": 2.0}
    assert kind_of_mhm(d, loose) == "isolated"
    assert kind_of_mhm(d, dict(loose, floor_within=1.99)) == "other"
    d = isolation_case(after=0.8)  # B's take-turn 0.8 s after the offset
    assert kind_of_mhm(d) == "turn_initial"
    assert kind_of_mhm(d, {"isolation_after": 0.8}) == "isolated"


def test_mid_turn_candidate_is_other():
    # B speaks 7.7-9.2 (interrupting A, who stops at 8.0), "mhm" at 10.0, then goes on at 11.1: B's
    # speech at 11.1 continues B's own turn (A has not spoken since 9.2), so it is no take-turn and the
    # "mhm" is not turn-initial.
    d = isolation_case(before=0.8, after=0.8, floor_end=8.0)
    assert [t.onset for t in mine_dialogue(d)["B"].turns] == [approx(7.7)]
    assert kind_of_mhm(d) == "other"


def test_backchannel_kinds_rule_directly():
    speech = merge_spans(np.array([[2.0, 3.0], [5.0, 5.4], [6.4, 7.0]]))  # the candidate is 5.0-5.4
    on, off = [5.0] * 5, [5.4] * 5
    since = [0.3, 1.6, math.nan, 0.3, 0.3]  # floor: near, too long ago, never spoke, near, near
    nxt = [math.inf, math.inf, 6.3, 6.4, 6.41]
    # silences: 2.0 s before, exactly 1.0 s after (6.4 - 5.4)
    assert backchannel_kinds(on, off, since, speech, nxt) == ["isolated", "other", "turn_initial", "isolated",
                                                               "isolated"]
    assert backchannel_kinds(on, off, since, speech, nxt, {"isolation_after": 1.01}) == \
        ["other", "other", "turn_initial", "turn_initial", "other"]  # 6.41 - 5.4 = 1.01: not < 1.01
    assert backchannel_kinds([], [], [], speech, []) == []
    with pytest.raises(ValueError, match="floor_within"):
        LabelSettings(floor_within=-1.0)
    with pytest.raises(ValueError, match="bc_definition"):
        LabelSettings(bc_definition="some")


@pytest.mark.corpora
def test_real_maptask_test_split_looks_like_conversation(corpora_root):
    """Mined Map Task statistics near the human reference figures (corpora/README.md)."""
    from backchannel.corpora.maptask import load_maptask

    gaps, forms, minutes, n_bc = [], {}, 0.0, 0
    for d in load_maptask(corpora_root / "maptask", splits={"test"}):
        ev = mine_dialogue(d)
        gaps += turn_transition_gaps(d, ev)
        for le in ev.listeners.values():
            minutes += d.duration / 60
            n_bc += len(le.backchannels)
            for b in le.backchannels:
                forms[b.form] = forms.get(b.form, 0) + 1
                assert b.source == "tag" and b.offset - b.onset <= 1.0 + 1e-6 and len(b.form.split()) <= 3
    hist, edges = np.histogram(gaps, bins=np.arange(-1.0, 1.5, 0.1))
    assert 0.0 <= edges[np.argmax(hist)] <= 0.3  # the gap mode sits just above zero (~200 ms)
    assert 1.0 <= n_bc / minutes <= 4.0  # ~2 backchannels per listener-minute
    top = sorted(forms, key=forms.get, reverse=True)[:5]
    assert {"right", "okay", "mhm"} <= set(top)
