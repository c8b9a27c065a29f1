"""Per-frame listener streams and labels; expected frames worked out by hand (frame t: [0.08t, 0.08(t+1)))."""
from __future__ import annotations

import numpy as np
import pytest

from backchannel.corpora.dialogue import Channel, ChannelAudio, Dialogue, Word
from backchannel.corpora.events import BACKCHANNEL, IGNORE, SILENT, TAKE_TURN, LabelSettings
from backchannel.corpora.framing import action_onsets, frame_listener, label_frames, text_stream
from backchannel.corpora.mining import mine_dialogue
from backchannel.frames import interval_activity
from backchannel.lexicon import BC_TYPE_INDEX
from test_mining import isolation_case, tagged, three_party, two_party, utt  # hand-built dialogues


def frames_of(action, a):
    return np.flatnonzero(action == a).tolist()


def test_onset_at_one_second_labels_frames_6_to_11():
    # decision at the end of frame t, 0.08(t+1): 0.56 (t=6) <= 1.0 < 0.56 + 0.5 ... 0.96 (t=11) <= 1.0
    action, event = label_frames({BACKCHANNEL: [1.0]}, 20, 0.5)
    assert frames_of(action, BACKCHANNEL) == list(range(6, 12))
    assert (event[6:12] == 0).all() and (event[:6] == -1).all() and (event[12:] == -1).all()
    assert action.dtype == np.int8 and event.dtype == np.int32


def test_label_edges_earliest_wins_and_ties():
    # onset on a frame boundary (0.96 = end of frame 11): frames 5..11 (0.48 + 0.5 > 0.96, 0.40 + 0.5 <= 0.96)
    assert frames_of(label_frames({TAKE_TURN: [0.96]}, 20, 0.5)[0], TAKE_TURN) == list(range(5, 12))
    # an onset before the first decision (0.08 s) labels nothing
    assert (label_frames({BACKCHANNEL: [0.05]}, 20, 0.5)[0] == SILENT).all()
    # BC at 1.0 (frames 6..11) and TAKE_TURN at 1.2 (8..14): the earlier one keeps 8..11
    action, event = label_frames({BACKCHANNEL: [1.0], TAKE_TURN: [1.2]}, 20, 0.5)
    assert frames_of(action, BACKCHANNEL) == list(range(6, 12))
    assert frames_of(action, TAKE_TURN) == [12, 13, 14]
    # equal onsets: TAKE_TURN wins; the index points into the winning action's list
    action, event = label_frames({BACKCHANNEL: [0.3, 1.0], TAKE_TURN: [1.0]}, 20, 0.5)
    assert frames_of(action, TAKE_TURN) == list(range(6, 12)) and (event[6:12] == 0).all()
    assert frames_of(action, BACKCHANNEL) == [0, 1, 2] and (event[:3] == 0).all()
    # a shorter horizon: 1.0 - 0.2 = 0.8 -> first frame 10; clipped at n
    assert frames_of(label_frames({BACKCHANNEL: [1.0]}, 11, 0.2)[0], BACKCHANNEL) == [10]


def test_ignore_onsets_label_minus_one_and_lose_ties():
    # an IGNORE onset at 1.0 masks frames 6..11; a BACKCHANNEL onset at 1.2 keeps 12..14
    action, event = label_frames({IGNORE: [1.0], BACKCHANNEL: [1.2]}, 20, 0.5)
    assert frames_of(action, IGNORE) == list(range(6, 12)) and frames_of(action, BACKCHANNEL) == [12, 13, 14]
    assert (event[6:15] == 0).all() and (event[:6] == -1).all()
    # at equal onsets any action wins over IGNORE
    action, _ = label_frames({IGNORE: [1.0], BACKCHANNEL: [1.0]}, 20, 0.5)
    assert frames_of(action, BACKCHANNEL) == list(range(6, 12)) and not (action == IGNORE).any()


def test_action_onsets_rule():
    from backchannel.corpora.events import BackchannelEvent, TurnEvent

    def b(onset, kind):
        return BackchannelEvent("B", onset, onset + 0.3, "mhm", "continuer", "lexicon", True, False, 0.2, kind)

    bcs = [b(1.0, "isolated"), b(2.0, "turn_initial"), b(3.0, "other"), b(4.0, "isolated")]
    turns = [TurnEvent("B", 5.0, "shift", 0.3), TurnEvent("B", 2.6, "shift", 0.3)]
    assert action_onsets(bcs, turns, LabelSettings(bc_definition="all")) == \
        ({BACKCHANNEL: [1.0, 2.0, 3.0, 4.0], TAKE_TURN: [2.6, 5.0]}, [0, 1, 2, 3])
    assert action_onsets(bcs, turns) == \
        ({BACKCHANNEL: [1.0, 4.0], TAKE_TURN: [2.0, 2.6, 5.0], IGNORE: [3.0]}, [0, 3])
    assert action_onsets(bcs, turns, {"non_isolated": "silent"}) == ({BACKCHANNEL: [1.0, 4.0], TAKE_TURN: [2.6, 5.0]},
                                                                     [0, 3])


# The isolation cases of test_mining: B's "mhm" at 10.0 labels frames tf(9.5)=118 .. tf(10.0)-1=124.
MHM_FRAMES = list(range(118, 125))


def test_isolated_candidate_labels_backchannel_frames():
    d = isolation_case(before=1.0)
    r = frame_listener(d, "B", mine_dialogue(d))
    assert r["bc_kinds"] == ["isolated"] and r["bc_isolated"].tolist() == [True]
    assert frames_of(r["action"], BACKCHANNEL) == MHM_FRAMES
    assert (r["bc_type"][MHM_FRAMES] == BC_TYPE_INDEX["continuer"]).all()
    assert (r["bc_type"][r["action"] != BACKCHANNEL] == -1).all()


def test_turn_initial_candidate_labels_take_turn_frames():
    # B's "mhm" 10.0-10.3, then B's shift at 11.29 (0.99 s later): the take-turn starts with the "mhm".
    # The shift's own onset labels tf(10.79)=134 .. tf(11.29)-1=140 as before.
    d = isolation_case(after=0.99)
    ev = mine_dialogue(d)
    r = frame_listener(d, "B", ev)
    assert r["bc_kinds"] == ["turn_initial"] and r["bc_onsets"].tolist() == [10.0]  # kept as an event
    assert r["shift_onsets"].tolist() == [pytest.approx(11.29)]  # the mined take-turn is unchanged
    assert frames_of(r["action"], TAKE_TURN) == MHM_FRAMES + list(range(134, 141))
    assert not (r["action"] == BACKCHANNEL).any() and (r["bc_type"] == -1).all()
    # the alternatives: every candidate a backchannel (today's labels), or non-isolated ones SILENT
    r_all = frame_listener(d, "B", ev, LabelSettings(bc_definition="all"))
    assert frames_of(r_all["action"], BACKCHANNEL) == MHM_FRAMES
    assert frames_of(r_all["action"], TAKE_TURN) == list(range(134, 141))
    r_silent = frame_listener(d, "B", ev, {"non_isolated": "silent"})
    assert (r_silent["action"][MHM_FRAMES] == SILENT).all()
    assert frames_of(r_silent["action"], TAKE_TURN) == list(range(134, 141))


def test_other_candidate_is_masked():
    d = isolation_case(before=0.99)  # B spoke until 9.01: not isolated, and no take-turn follows
    ev = mine_dialogue(d)
    r = frame_listener(d, "B", ev)
    assert r["bc_kinds"] == ["other"] and r["bc_isolated"].tolist() == [False]
    assert frames_of(r["action"], IGNORE) == MHM_FRAMES and (r["bc_type"][MHM_FRAMES] == -1).all()
    assert not (r["action"] == BACKCHANNEL).any()
    assert (frame_listener(d, "B", ev, {"non_isolated": "silent"})["action"][MHM_FRAMES] == SILENT).all()
    assert frames_of(frame_listener(d, "B", ev, {"bc_definition": "all"})["action"], BACKCHANNEL) == MHM_FRAMES


def test_echo_frames_have_no_type():
    # tagged(): B's "go on" (7.0, a tag with no lexicon word) is an echo; with bc_definition="all" its
    # frames tf(6.5)=81 .. tf(7.0)-1=86 are BACKCHANNEL with bc_type -1, "okay" (1.0) keeps its type
    d = tagged()
    r = frame_listener(d, "B", mine_dialogue(d), {"bc_definition": "all"})
    assert r["bc_types"] == ["acknowledgement", "echo", "continuer"]
    assert frames_of(r["action"], BACKCHANNEL)[:6] == list(range(6, 12))
    assert (r["action"][81:87] == BACKCHANNEL).all() and (r["bc_type"][81:87] == -1).all()
    assert (r["bc_type"][6:12] == BC_TYPE_INDEX["acknowledgement"]).all()


def test_framing_settings_must_match_the_mined_events():
    d = two_party()
    ev = mine_dialogue(d, {"isolation_before": 0.5})
    assert frame_listener(d, "B", ev, ev.settings)["n_frames"] == 163
    frame_listener(d, "B", ev, LabelSettings(isolation_before=0.5, horizon=0.3))  # framing-only fields may differ
    with pytest.raises(ValueError, match="mined with other label settings"):
        frame_listener(d, "B", ev, LabelSettings())


@pytest.mark.corpora
def test_definitions_on_a_real_maptask_dialogue(corpora_root):
    """With ``all`` every candidate labels BACKCHANNEL frames as ``label_frames`` does (today's rule);
    ``isolated`` changes frames only in the horizon before non-isolated onsets."""
    from backchannel.corpora.maptask import load_maptask

    d = next(iter(load_maptask(corpora_root / "maptask", splits={"test"})))
    ev = mine_dialogue(d)
    seen = set()
    for listener in d.speakers:
        le = ev[listener]
        r_all = frame_listener(d, listener, ev, {"bc_definition": "all"})
        expect, _ = label_frames({BACKCHANNEL: [b.onset for b in le.backchannels],
                                  TAKE_TURN: sorted(t.onset for t in le.turns)}, d.n_frames, 0.5)
        np.testing.assert_array_equal(r_all["action"], expect)
        r = frame_listener(d, listener, ev)
        assert r["bc_kinds"] == [b.kind for b in le.backchannels]
        seen.update(r["bc_kinds"])
        changed = np.flatnonzero(r["action"] != r_all["action"])
        near = np.zeros(d.n_frames, bool)
        for b in le.backchannels:
            if b.kind != "isolated":
                near[max(int((b.onset - 0.5) / 0.08) - 1, 0): int(b.onset / 0.08) + 1] = True
        assert len(changed) and near[changed].all()
        assert set(np.unique(r["action"][changed]).tolist()) <= {SILENT, TAKE_TURN, IGNORE}
        assert (r["bc_type"][r["action"] != BACKCHANNEL] == -1).all()
        on_bc = r["action"] == BACKCHANNEL
        assert on_bc.sum() < (r_all["action"] == BACKCHANNEL).sum()
    assert seen == {"isolated", "turn_initial", "other"}


def test_text_stream_word_in_frame_of_its_end():
    words = [Word(0.5, 0.95, "hello"), Word(0.90, 0.93, "uh"), Word(0.96, 1.2, "there"),
             Word(5.0, 9.0, "late")]
    out = text_stream(words, 20)
    # 0.93 and 0.95 lie in frame 11 [0.88, 0.96); 1.2 in frame 15; 9.0 is past the end -> last frame
    assert out[11] == "uh hello" and out[15] == "there" and out[19] == "late"
    assert sum(bool(x) for x in out) == 3 and len(out) == 20


def test_two_party_frames():
    d = two_party()
    ev = mine_dialogue(d)
    r = frame_listener(d, "B", ev)
    n = 163  # 13.0 s / 0.08 = 162.5 -> 163 frames
    assert r["n_frames"] == n and r["va_source"] == "words" and r["floor"] == "A"
    # BCs 2.4 -> frames 23..29 (tf(1.9)=23, tf(2.4)-1=29), 4.0 -> 43..49;
    # turns 7.3 -> 85..90, 11.2 -> 133..139
    assert frames_of(r["action"], BACKCHANNEL) == list(range(23, 30)) + list(range(43, 50))
    assert frames_of(r["action"], TAKE_TURN) == list(range(85, 91)) + list(range(133, 140))
    assert (r["bc_type"][23:30] == BC_TYPE_INDEX["continuer"]).all()
    assert (r["bc_type"][43:50] == BC_TYPE_INDEX["agreement"]).all()
    assert (r["bc_type"][r["action"] != BACKCHANNEL] == -1).all()
    # voice activity: "mhm" 2.4-2.7 would cover frame 30 [2.40, 2.48) fully, frame 33 [2.64, 2.72) for 0.06 s,
    # but a listener's backchannel candidates are left out of its input streams (what is predicted is not
    # heard): both frames are silent, and the word is not in its text stream
    assert r["va_listener"][30] == 0.0 and r["va_listener"][33] == 0.0
    assert not any("mhm" in w for w in r["text_listener"])
    assert r["va_speaker"][25] == 0.0 and r["va_speaker"][10] == 1.0
    assert r["va_listener"].dtype == np.float32 and r["va_listener"].shape == (n,)
    # text: "mhm" (ends 2.7 -> frame 33) is a backchannel candidate: not in the listener's text; A's "north"
    # ends 2.0 -> frame 25
    assert r["text_listener"][33] == "" and r["text_speaker"][25] == "north"
    assert r["prosody"].shape == (n, 8) and not r["prosody_mask"].any() and not r["prosody"].any()
    assert r["bc_onsets"].tolist() == [2.4, 4.0] and r["bc_offsets"].tolist() == [2.7, 4.3]
    assert r["bc_forms"] == ["mhm", "yeah"] and r["bc_sources"] == ["lexicon", "lexicon"]
    assert r["bc_in_overlap"].tolist() == [False, True]
    assert r["bc_kinds"] == ["isolated", "isolated"] and r["bc_isolated"].tolist() == [True, True]
    assert r["shift_onsets"].tolist() == [7.3] and r["interruption_onsets"].tolist() == [11.2]
    assert r["hold_pauses"].tolist() == [[2.0, pytest.approx(2.4)], [5.5, 6.0]]
    assert r["shift_pauses"].tolist() == [[7.0, 7.3]]
    with pytest.raises(ValueError, match="events are for listener 'A'"):
        frame_listener(d, "B", ev["A"])


def test_three_party_floor_streams():
    d = three_party()
    r = frame_listener(d, "C", mine_dialogue(d))
    assert r["floor"] == "A+B" and r["n_frames"] == 82  # 6.5 s -> 81.25 -> 82
    # B's "right" ends 1.45 and A's "a" 1.5: both in frame 18 [1.44, 1.52), in end order
    assert r["text_speaker"][18] == "right a" and r["text_speaker"][12] == "need"
    # A starts 2.5 in frame 31 [2.48, 2.56): 0.06 s voiced; B's "good" 5.3 in frame 66 [5.28, 5.36)
    assert r["va_speaker"][31] == pytest.approx(0.75) and r["va_speaker"][66] == pytest.approx(0.75)
    # C's shift at 4.0 -> frames tf(3.5)=43 .. tf(4.0)-1=49; "mhm" 2.1 -> tf(1.6)=20 .. tf(2.1)-1=25
    assert frames_of(r["action"], TAKE_TURN) == list(range(43, 50))
    assert frames_of(r["action"], BACKCHANNEL) == list(range(20, 26))


def audio(n, **over):
    x = {"vad": np.full(n, 0.5), "f0_st": np.linspace(-2, 2, n), "low_pitch": np.zeros(n),
         "intensity_db": np.full(n, 60.0), "voiced": np.ones(n)}
    x.update(over)
    return ChannelAudio(**x)


def with_audio(a_audio, b_audio) -> Dialogue:
    d = two_party()
    d.channels["A"].audio, d.channels["B"].audio = a_audio, b_audio
    return d


def test_audio_prosody_and_masks():
    n = 163
    f0 = np.linspace(-2, 2, 150)
    f0[10] = np.nan  # unvoiced frame: masked, not an error
    voiced = np.ones(150)
    voiced[10] = 0.0
    low = np.where(np.isnan(f0), np.nan, 1.0)
    d = with_audio(audio(n), audio(150, f0_st=f0, voiced=voiced, low_pitch=low))
    r = frame_listener(d, "B", mine_dialogue(d))
    assert r["va_source"] == "audio"
    # the listener's VAD activity, less the share of its own backchannel candidates (left out of its input)
    bc = interval_activity([(b.onset, b.offset) for b in mine_dialogue(d)["B"].backchannels], n)
    assert r["va_listener"][:150].tolist() == pytest.approx(np.clip(0.5 - bc[:150], 0, 1).tolist())
    assert (r["va_listener"][150:] == 0).all() and bc[:150].any()
    p, m = r["prosody"], r["prosody_mask"]
    assert m[:150, 0].sum() == 149 and not m[10, 0] and not m[10, 1] and m[10, 2] and m[10, 3]
    assert not m[150:, :4].any() and m[:, 4:].all()  # listener audio ends at 150 frames; speaker's covers all
    assert p[10, 0] == 0.0 and p[11, 0] == pytest.approx(f0[11]) and p[0, 2] == 60.0 and p[5, 6] == 60.0
    assert not np.isnan(p).any()
    d = with_audio(None, audio(n))
    assert frame_listener(d, "B", mine_dialogue(d))["va_source"] == "listener=audio,speaker=words"


def test_nan_feature_raises_naming_dialogue_and_stream():
    bad = np.full(163, 60.0)
    bad[7] = np.nan
    d = with_audio(audio(163, intensity_db=bad), audio(163))
    msg = r"hand2: listener B: speaker: NaN/inf in audio stream 'intensity_db' at frame 7"
    with pytest.raises(ValueError, match=msg):
        frame_listener(d, "B", mine_dialogue(d))
    d = with_audio(None, audio(163, vad=np.full(163, np.nan)))
    with pytest.raises(ValueError, match=r"hand2: listener B: listener: NaN/inf in audio stream 'vad'"):
        frame_listener(d, "B", mine_dialogue(d))
    d = with_audio(None, audio(163, f0_st=np.full(163, np.inf)))
    with pytest.raises(ValueError, match="'f0_st'"):
        frame_listener(d, "B", mine_dialogue(d))


def test_nan_word_time_caught_in_streams():
    a = Channel("A", [utt(("so", 0.0, 0.4))])
    good = Dialogue("nan", "hand", {"A": a, "B": Channel("B", [utt(("mhm", 0.5, 0.7))])}, 1.0)
    bad = Dialogue("nan", "hand", {"A": a, "B": Channel("B", [utt(("mhm", 0.5, float("nan")))])}, 1.0)
    with pytest.raises(ValueError, match=r"nan: speaker B: NaN/inf in speech times"):
        mine_dialogue(bad)
    with pytest.raises(ValueError, match=r"nan: listener B: NaN/inf word time in stream 'va_listener'"):
        frame_listener(bad, "B", mine_dialogue(good))
    with pytest.raises(ValueError, match=r"nan: listener A: NaN/inf word time in stream 'va_speaker'"):
        frame_listener(bad, "A", mine_dialogue(good))
