"""Baselines on hand-built voice-activity and pitch tracks (80 ms frames, times in seconds)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.baselines import (
    PAUSE_GATE_COOLDOWN,
    WORD_COLUMNS,
    WT_REFRACTORY,
    GradientBoostingBaseline,
    HandcraftedFeatures,
    LogisticBaseline,
    TimingWordFeatures,
    has_prosody,
    low_pitch_frames,
    pause_gate,
    random_onsets,
    rule_onsets,
    ward_tsukahara,
)
from backchannel.frames import FRAME_S


def gate_onsets(va, cooldown=PAUSE_GATE_COOLDOWN, **kw):
    return rule_onsets(pause_gate(va, **kw), cooldown)


def wt_onsets(*args, **kw):
    return rule_onsets(ward_tsukahara(*args, **kw), WT_REFRACTORY)


def blocks(*spec):
    """blocks((1, 10), (0, 5)) -> ten 1s then five 0s."""
    return np.concatenate([np.full(n, float(v)) for v, n in spec])


def test_random_onsets_true_count_min_gap_and_seed():
    a = random_onsets(20, 60.0, rng=1, min_gap=0.8)
    assert len(a) == 20 and np.all(np.diff(a) >= 0.8 - 1e-9)
    assert a[0] >= 0.0 and a[-1] < 60.0
    assert np.array_equal(a, random_onsets(20, 60.0, rng=1, min_gap=0.8))
    assert len(random_onsets(0, 10.0, rng=0)) == 0
    with pytest.raises(ValueError):
        random_onsets(20, 10.0, rng=0, min_gap=0.8)  # 19 gaps of 0.8 s do not fit in 10 s


def test_pause_gate_fires_at_exact_frame_with_cooldown():
    va = blocks((1, 10), (0, 5),   # frames 0-9 speech (0.8 s); silence reaches 3 frames at 12 -> 1.04 s
                (1, 10), (0, 5),   # 15-24 speech; would fire at frame 27 (2.24 s): within 2.5 s cooldown
                (1, 8), (0, 5),    # 30-37: only 0.64 s of speech -> no firing at frame 40
                (1, 10), (0, 5))   # 43-52 speech; fires at frame 55 -> 4.48 s (3.44 s after 1.04)
    assert np.allclose(gate_onsets(va), [1.04, 4.48])
    assert list(np.flatnonzero(pause_gate(va))) == [12, 13, 14, 27, 28, 29, 55, 56, 57]
    # without cooldown the second pause fires too
    assert np.allclose(gate_onsets(va, cooldown=0.0), [1.04, 2.24, 4.48])


def test_pause_gate_short_gaps_do_not_reset_speech():
    # 5 + 4 voiced frames around a 2-frame (160 ms) gap = 0.72 s of speech -> fires at frame 13 (1.12 s)
    assert np.allclose(gate_onsets(blocks((1, 5), (0, 2), (1, 4), (0, 3))), [1.12])
    # a 3-frame gap is a pause: 0.40 s, then 0.32 s of speech -> never enough
    assert len(gate_onsets(blocks((1, 5), (0, 3), (1, 4), (0, 3)))) == 0


def test_pause_gate_is_causal():
    va = blocks((1, 10), (0, 5), (1, 10), (0, 40))
    changed = va.copy()
    changed[20:] = 1 - changed[20:]
    assert np.array_equal(pause_gate(va)[:20], pause_gate(changed)[:20])


def pitch_track():
    """60 frames; speaker voiced 0-44 at F0 +2 st except low frames 10-11, 17-18, 24, 35-36 (-5 st).

    45 valid F0 values, 7 of them low: the 26th percentile (linear) sits at sorted index
    0.26 * 44 = 11.44, between two +2 values, so it is 2.0 and exactly the -5 frames are low.
    """
    n = 60
    va_s = blocks((1, 45), (0, 15))
    f0 = np.where(va_s > 0, 2.0, np.nan)
    f0[[10, 11, 17, 18, 24, 35, 36]] = -5.0
    prosody = np.column_stack([f0, np.zeros(n)])
    return prosody, np.ones(n, dtype=bool), va_s, np.zeros(n)


def test_ward_tsukahara_on_hand_built_pitch_track():
    prosody, mask, va_s, va_l = pitch_track()
    assert list(np.flatnonzero(low_pitch_frames(prosody[:, 0], mask))) == [10, 11, 17, 18, 24, 35, 36]
    scores = ward_tsukahara(prosody, mask, va_s, va_l)
    # region 10-11: 0.8 s of speech before, detected at frame 11 -> 0.80 + 0.70 = 1.50 s, said at the end of
    # the frame holding it (frame 18: 1.44-1.52 s); region 17-18: 1.36 + 0.70 = 2.06 s -> frame 25 (2.08 s),
    # only 0.56 s after 1.52 -> dropped (800 ms rule); frame 24: a single low frame (80 ms < 110 ms) ->
    # nothing; region 35-36: 2.80 + 0.70 = 3.50 s -> frame 43 (3.52 s)
    assert list(np.flatnonzero(scores)) == [18, 25, 43]
    assert np.allclose(wt_onsets(prosody, mask, va_s, va_l), [1.52, 3.52])


def test_ward_tsukahara_listener_speaking_and_short_speech():
    prosody, mask, va_s, va_l = pitch_track()
    va_l[11] = 1.0  # listener speaks when region 1 is detected -> only regions 2 and 3 fire
    assert np.allclose(wt_onsets(prosody, mask, va_s, va_l), [2.08, 3.52])
    prosody, mask, va_s, va_l = pitch_track()
    va_s[:5] = 0.0  # speech starts at frame 5: 0.4 s before region 1 (< 0.7 s)
    assert np.allclose(wt_onsets(prosody, mask, va_s, va_l), [2.08, 3.52])


def test_ward_tsukahara_precomputed_flag_and_no_prosody():
    prosody, mask, va_s, va_l = pitch_track()
    flag = np.column_stack([prosody[:, 0], low_pitch_frames(prosody[:, 0], mask)])
    assert np.allclose(wt_onsets(flag, mask, va_s, va_l, low_pitch_col=1), [1.52, 3.52])
    assert ward_tsukahara(prosody, np.zeros(60, dtype=bool), va_s, va_l) is None
    assert not has_prosody(np.zeros(60, dtype=bool)) and has_prosody(mask)


def test_handcrafted_features_values_and_causality():
    feats = HandcraftedFeatures(n_prosody=2)
    va_s = blocks((1, 3), (0, 10))
    va_l = blocks((0, 5), (1, 2), (0, 6))  # a 160 ms listener IPU ending at frame 6
    text = ["", "go", "RIGHT", "", "", "", "", "", "", "", "", "", ""]
    x = feats(va_s, va_l, text, np.ones((13, 2)), np.r_[np.zeros(6, bool), np.ones(7, bool)])
    col = {name: x[:, i] for i, name in enumerate(feats.names)}
    assert x.shape == (13, len(feats.names))
    assert col["log_since_speaker_end"][5] == pytest.approx(np.log1p(0.24))  # last voiced frame 2
    assert col["log_since_speaker_end"][1] == 0.0
    assert col["log_speaker_ipu"][5] == pytest.approx(np.log1p(0.24))  # frames 0-2
    assert col["log_since_listener_short_ipu"][8] == pytest.approx(np.log1p(0.16))  # ended at frame 6
    assert col["log_since_listener_short_ipu"][6] == pytest.approx(np.log1p(10.0))  # not ended yet: capped
    assert list(col["speaker_last_word_clause_final"][:4]) == [0, 0, 1, 1]
    assert col["speaker_words_per_s"][2] == pytest.approx(1.0)  # 2 words in the last 2 s
    assert list(col["prosody_present"]) == [0] * 6 + [1] * 7
    assert np.all(col["prosody_0"][:6] == 0) and np.all(col["prosody_0"][6:] == 1)

    rng = np.random.default_rng(0)
    va_s, va_l = (rng.random(80) > 0.5).astype(float), (rng.random(80) > 0.7).astype(float)
    base = feats(va_s, va_l)
    for t in (5, 30, 70):
        vs2, vl2 = va_s.copy(), va_l.copy()
        vs2[t + 1:], vl2[t + 1:] = 1 - vs2[t + 1:], 1 - vl2[t + 1:]
        assert np.array_equal(base[: t + 1], feats(vs2, vl2)[: t + 1])


def test_logistic_baseline_learns_a_separable_case():
    rng = np.random.default_rng(0)

    def row(n):
        va_s = (rng.random(n) > 0.5).astype(float)
        va_l = (rng.random(n) > 0.7).astype(float)
        action = np.where(va_l > 0, 2, np.where(va_s > 0, 0, 1))  # a function of the current frame
        return {"va_speaker": va_s, "va_listener": va_l, "action": action}

    train, test = [row(300), row(200)], [row(250)]
    model = LogisticBaseline(HandcraftedFeatures(n_prosody=0), C=100.0).fit(train)
    (p,) = model.predict_proba(test)
    assert p.shape == (250, 3) and np.allclose(p.sum(axis=1), 1.0)
    assert np.mean(p.argmax(axis=1) == test[0]["action"]) == 1.0
    with pytest.raises(KeyError, match="va_listener"):
        model.predict_proba([{"va_speaker": np.zeros(3)}])


# ----------------------------------------------------------------------------------------------
# Gradient-boosting baseline
# ----------------------------------------------------------------------------------------------
def timing_word_features():
    return TimingWordFeatures(n_prosody=2, vocab_size=3).fit_vocabulary(
        [{"text_speaker": ["go", "go left", "", "right", "go", "left", "stop"]}])


def test_timing_word_features_values():
    feats = timing_word_features()
    assert feats.vocabulary == ("go", "left", "right")  # by count, ties alphabetical; "stop" is out
    assert (feats.other_id, feats.no_word_id) == (3, 4)
    va_s = blocks((1, 3), (0, 4), (1, 3))
    va_l = blocks((0, 4), (1, 2), (0, 4))
    text = ["", "Go", "", "stop left", "", "", "", "", "right", ""]
    x = feats(va_s, va_l, text)
    col = {name: x[:, i] for i, name in enumerate(feats.names)}
    assert x.shape == (10, len(feats.names)) and list(feats.names[-2:]) == list(WORD_COLUMNS)
    assert list(np.flatnonzero(feats.categorical)) == [len(feats.names) - 2, len(feats.names) - 1]
    assert list(col["speaker_last_word"]) == [4, 0, 0, 1, 1, 1, 1, 1, 2, 2]
    assert list(col["speaker_second_last_word"]) == [4, 4, 4, 3, 3, 3, 3, 3, 1, 1]  # "stop" ended with "left"
    frames = np.log1p(np.arange(6) * FRAME_S)  # log1p of seconds for 0..5 frames
    assert np.allclose(col["log_speaker_speech_run"], frames[[1, 2, 3, 0, 0, 0, 0, 1, 2, 3]])
    assert np.allclose(col["log_listener_speech_run"], frames[[0, 0, 0, 0, 1, 2, 0, 0, 0, 0]])
    assert np.allclose(col["log_since_listener_speech"][4:], frames[[0, 0, 1, 2, 3, 4]])
    assert np.allclose(col["log_since_listener_speech"][:4], np.log1p(10.0))  # never spoke yet: capped
    assert np.allclose(col["log_mutual_silence_run"], frames[[0, 0, 0, 1, 0, 0, 1, 0, 0, 0]])
    assert np.allclose(col["speaker_speech_0.24s"], [1, 1, 1, 2 / 3, 1 / 3, 0, 0, 1 / 3, 2 / 3, 1])
    with pytest.raises(ValueError, match="vocab_size"):
        TimingWordFeatures(vocab_size=254)


def _mutate_after(t, va_s, va_l, text, prosody, rng):
    va_s, va_l, text, prosody = va_s.copy(), va_l.copy(), list(text), prosody.copy()
    va_s[t + 1:] = rng.random(len(va_s) - t - 1)
    va_l[t + 1:] = rng.random(len(va_l) - t - 1)
    prosody[t + 1:] = rng.normal(size=prosody[t + 1:].shape)
    for i in range(t + 1, len(text)):
        text[i] = str(rng.choice(["", "go", "left right", "stop", "okay"]))
    return va_s, va_l, text, prosody


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 60), st.integers(0, 10_000), st.data())
def test_timing_word_features_are_causal(n, seed, data):
    """Changing frames t+1.. (voice activity of both parties, floor words, prosody) never changes any
    feature column at frames <= t."""
    t = data.draw(st.integers(0, n - 2))
    rng = np.random.default_rng(seed)
    feats = timing_word_features()
    va_s, va_l = (rng.random(n) > 0.5).astype(float), rng.random(n)
    text = [str(w) for w in rng.choice(["", "", "go", "left", "go right", "stop"], n)]
    prosody = rng.normal(size=(n, 2))
    mask = np.ones((n, 2), bool)
    base = feats(va_s, va_l, text, prosody, mask)
    s2, l2, text2, p2 = _mutate_after(t, va_s, va_l, text, prosody, rng)
    changed = feats(s2, l2, text2, p2, mask)
    np.testing.assert_array_equal(base[: t + 1], changed[: t + 1])


def test_gradient_boosting_learns_a_separable_case():
    """The action is a function of the floor party's last word (categorical) and the listener's voice
    activity: BACKCHANNEL after "mhm-worthy" words, TAKE_TURN after "over", else SILENT."""
    rng = np.random.default_rng(0)

    def row(n):
        words = rng.choice(["", "", "go", "left", "right", "over", "stop", "down"], n)
        va_s, va_l = (rng.random(n) > 0.5).astype(float), (rng.random(n) > 0.7).astype(float)
        last, action = None, np.zeros(n, int)
        for t, w in enumerate(words):
            last = w or last
            action[t] = 2 if last == "over" else 1 if (last in ("right", "stop") and va_l[t] == 0) else 0
        return {"va_speaker": va_s, "va_listener": va_l, "text_speaker": [str(w) for w in words],
                "action": action}

    train, test = [row(3000), row(2000)], [row(1500)]
    model = GradientBoostingBaseline(TimingWordFeatures(n_prosody=0, vocab_size=10), min_samples_leaf=5,
                                     max_iter=50).fit(train)
    assert set(model.features.vocabulary) == {"go", "left", "right", "over", "stop", "down"}
    (p,) = model.predict_proba(test)
    assert p.shape == (1500, 3) and np.allclose(p.sum(axis=1), 1.0)
    assert np.mean(p.argmax(axis=1) == test[0]["action"]) > 0.99


def test_timing_word_features_of_an_audio_less_row_have_prosody_masked():
    feats = TimingWordFeatures().fit_vocabulary([{"text_speaker": ["go", "left"]}])
    va_s, va_l = blocks((1, 4), (0, 4)), blocks((0, 6), (1, 2))
    row = {"va_speaker": va_s, "va_listener": va_l, "text_speaker": ["", "go", "", "", "left", "", "", ""],
           "prosody": np.zeros((0, 8)), "prosody_mask": np.zeros((0, 8), bool)}
    x = feats.from_row(row)
    np.testing.assert_array_equal(x, feats(va_s, va_l, row["text_speaker"], np.ones((8, 8)), np.zeros((8, 8), bool)))
    col = {name: x[:, i] for i, name in enumerate(feats.names)}
    assert not col["prosody_present"].any() and not x[:, feats.names.index("prosody_0")].any()
