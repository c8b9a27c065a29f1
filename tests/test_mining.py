"""Event mining on hand-built dialogues; every expected time is worked out by hand in the comments."""
from __future__ import annotations

import math

import pytest

from backchannel.corpora.dialogue import Channel, Dialogue, Utterance, Word
from backchannel.corpora.events import BackchannelEvent, Pause, TurnEvent
from backchannel.corpora.mining import (
    count_backchannel_sources,
    ipus,
    merge_spans,
    mine_backchannels,
    mine_dialogue,
    mine_pauses,
    mine_turns,
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
    assert ipus(ch, gap=0.2) == [(0.0, 1.0), (1.2, 1.5), (2.0, 2.1)]
    assert ipus(ch, gap=0.3) == [(0.0, 1.5), (2.0, 2.1)]
    assert [tuple(s) for s in merge_spans(speech_spans(ch))] == \
        [(0.0, 0.5), (0.6, 1.0), (1.2, 1.5), (2.0, 2.1)]


def test_two_party_exact_events():
    ev = mine_dialogue(two_party())
    b = ev["B"]
    assert b.floor == "A"
    assert b.backchannels == [
        BackchannelEvent("B", 2.4, 2.7, "mhm", "continuer", "lexicon", True, False, approx(0.4)),
        BackchannelEvent("B", 4.0, 4.3, "yeah", "agreement", "lexicon", True, True, 0.0),
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


def test_pair_functions_match_mine_dialogue():
    d = two_party()
    lis, flo = d.channels["B"], d.floor("B")
    bcs = mine_backchannels(lis, flo)
    turns = mine_turns(lis, flo, bcs)
    assert bcs == mine_dialogue(d)["B"].backchannels
    assert turns == mine_dialogue(d)["B"].turns
    assert mine_pauses(lis, flo, turns) == mine_dialogue(d)["B"].pauses
    # Without the listener's backchannels, "mhm" (after A's 2.0) and "yeah" (inside A's 3.0-5.5) take turns.
    assert [(t.onset, t.kind) for t in mine_turns(lis, flo, [])] == \
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
    assert [(b.onset, b.form, b.bc_type, b.source, b.lexical, b.in_overlap) for b in bcs] == [
        (1.0, "okay", "acknowledgement", "tag", True, True),
        (7.0, "go on", "acknowledgement", "tag", False, True),  # no lexicon word: fallback type
        (8.0, "mhm", "continuer", "tag", True, True)]
    assert count_backchannel_sources(lis, flo) == {"tag": 3, "lexicon": 3, "both": 2, "tag_only": 1,
                                                   "lexicon_only": 1}
    lex = mine_backchannels(lis, flo, use_tags=False)
    assert [(b.onset, b.source) for b in lex] == [(1.0, "lexicon"), (4.0, "lexicon"), (8.0, "lexicon")]
    assert [b.onset for b in mine_backchannels(lis, flo, max_duration=1.5)] == [1.0, 7.0, 8.0, 14.0]
    assert [b.onset for b in mine_backchannels(lis, flo, max_words=1)] == [1.0, 8.0]
    assert mine_dialogue(d)["B"].source_counts["tag_only"] == 1


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
    assert [(b.onset, b.form, b.in_overlap, b.since_speaker_end) for b in c.backchannels] == \
        [(2.1, "mhm", False, approx(0.1))]
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


@pytest.mark.corpora
def test_real_maptask_test_split_looks_like_conversation(corpora_root):
    """Mined Map Task statistics near the human reference figures (corpora/README.md)."""
    import numpy as np
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
