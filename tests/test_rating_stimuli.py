"""Rating stimuli: baseline onsets, floor windows, TTS/tone rendering, loudness, the study file."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import soundfile as sf
from backchannel.corpora.dialogue import Channel, ChannelAudio, Dialogue, Utterance, Word
from backchannel.corpora.errors import CorpusError

from backchannel.rating import tts as tts_mod
from backchannel.rating.stimuli import (
    FORMS,
    Onset,
    StudyInput,
    build_study,
    condition_onsets,
    demo_dialogue,
    floor_windows,
    listener_backchannels,
    load_study,
    make_onset,
    pause_gate_condition,
    pause_relative,
    random_condition,
    study_onsets,
)

pyloudnorm = pytest.importorskip("pyloudnorm")


def test_pause_gate_condition_is_the_evaluation_baseline_on_the_frame_clock():
    # speaker A: 0-1.01 s (frames 0..12 voiced), 3.01-4.01 s (frames 38..49), 4.51-5.51 s (frames 56..68).
    # The gate fires at the end of the 3rd unvoiced frame after >= 0.7 s of speech: 16 x 0.08 = 1.28 s,
    # 53 x 0.08 = 4.24 s; 72 x 0.08 = 5.76 s falls inside the 2.5 s cooldown.
    a = [Utterance(s, e, (Word(s, e, "go"),)) for s, e in [(0.0, 1.01), (3.01, 4.01), (4.51, 5.51)]]
    d = Dialogue("g", "test", {"A": Channel("A", a), "B": Channel("B", [])}, 8.0)
    assert pause_gate_condition(d, "B") == pytest.approx([1.28, 4.24])


def test_random_condition_count_range_and_gap():
    a = random_condition(5, 2.0, 12.0, np.random.default_rng(3))
    assert len(a) == 5 and a == sorted(a) and 2.0 <= a[0] and a[-1] < 12.0
    assert min(np.diff(a)) >= 1.0 - 1e-9
    assert a == random_condition(5, 2.0, 12.0, np.random.default_rng(3))
    dense = random_condition(12, 0.0, 6.0, np.random.default_rng(0))  # 12 in 6 s: 0.25 s apart at least
    assert len(dense) == 12 and min(np.diff(dense)) >= 0.25 - 1e-9
    assert random_condition(0, 0, 1, np.random.default_rng(0)) == []


def test_pause_relative():
    speech = [(1.0, 2.0), (3.0, 4.0)]
    assert math.isnan(pause_relative(0.5, speech))
    assert pause_relative(1.5, speech) == pytest.approx(-0.5)  # still talking, pause in 0.5 s
    assert pause_relative(2.3, speech) == pytest.approx(0.3)
    assert pause_relative(3.0, speech) == pytest.approx(-1.0)
    assert pause_relative(5.0, speech) == pytest.approx(1.0)


def _word_dialogue() -> Dialogue:
    """Speaker A: 0.3 s words every 0.5 s over 0..100 s; listener B: a turn at 50-52 s, backchannels."""
    a = [Utterance(k * 0.5, k * 0.5 + 0.3, (Word(k * 0.5, k * 0.5 + 0.3, "go"),)) for k in range(200)]
    b = [Utterance(10.0, 10.3, (Word(10.0, 10.3, "mhm"),)),
         Utterance(50.0, 52.0, (Word(50.0, 50.6, "no"), Word(50.7, 51.2, "wait"), Word(51.3, 52.0, "there"))),
         Utterance(60.0, 60.3, (Word(60.0, 60.3, "okay"),), gold_backchannel=False),  # tagged non-bc: a turn
         Utterance(70.0, 71.5, (Word(70.0, 71.5, "yeah"),)),  # too long for a backchannel: a turn
         Utterance(80.0, 80.4, (Word(80.0, 80.2, "oh"), Word(80.2, 80.4, "really")), gold_backchannel=True)]
    return Dialogue("d1", "test", {"A": Channel("A", a), "B": Channel("B", b)}, 100.0).validate()


def test_listener_backchannels_tags_lexicon_and_size():
    bcs = listener_backchannels(_word_dialogue(), "B")
    assert bcs == [Onset(10.0, "mhm", "continuer"), Onset(80.0, "oh really", "surprise")]


def test_echo_backchannels_are_never_said_as_echoes():
    from test_mining import tagged  # B's tagged "go on" (7.0) has no lexicon word: an echo

    real = listener_backchannels(tagged(), "B")
    assert [(o.time, o.form, o.bc_type) for o in real] == \
        [(1.0, "okay", "acknowledgement"), (7.0, "go on", None), (8.0, "mhm", "continuer")]
    inp = StudyInput(tagged(), "B", model=[Onset(3.0)])
    conds = condition_onsets(inp, 0.0, 16.0, np.random.default_rng(0), real)
    said = [o for onsets in conds.values() for o in onsets]
    assert said and all(o.bc_type in FORMS and o.form == FORMS[o.bc_type] for o in said)
    assert [o.bc_type in ("acknowledgement", "continuer") for o in conds["real"]] == [True] * 3


def test_floor_windows_hand_case():
    d = _word_dialogue()
    d.channels["B"].utterances = d.channels["B"].utterances[:2]  # backchannel at 10 s, turn at 50-52 s
    wins = floor_windows(d, "B", min_s=20, max_s=40, margin=0.5)
    # span (0, 49.5): words up to 39.8 fit in 40 s; the rest (40..49.3) is under 20 s
    # span (52.5, 100): 52.5 .. 92.3 (word 184 ends at 92.3), the rest is under 20 s
    assert wins == [pytest.approx((0.0, 39.8)), pytest.approx((52.5, 92.3))]
    # turns at 60 s and 70-71.5 s leave 52.5..59.5 and 60.8..69.5 (under 20 s) and 72.0..99.8
    # (the last word ends at 99.8; the "oh really" backchannel at 80 s does not break the floor)
    assert floor_windows(_word_dialogue(), "B", min_s=20, max_s=40) == [
        pytest.approx((0.0, 39.8)), pytest.approx((72.0, 99.8))]


def test_study_onsets(tmp_path):
    p = tmp_path / "onsets.jsonl"
    p.write_text('{"corpus": "maptask", "dialogue": "q7ec1", "listener": "f", "onsets": [3.5, 1.25]}\n\n'
                 '{"corpus": "maptask", "dialogue": "q7ec1", "listener": "g", "onsets": [2.0], "types": ["surprise"]}\n'
                 '{"corpus": "maptask", "dialogue": "q7ec2", "listener": "f", "onsets": [1.0], "forms": ["uh-huh"]}\n')
    got = study_onsets(p)
    assert got[("maptask", "q7ec1", "f")] == [Onset(1.25), Onset(3.5)]
    assert got[("maptask", "q7ec1", "g")] == [Onset(2.0, "oh", "surprise")]
    assert got[("maptask", "q7ec2", "f")] == [Onset(1.0, "uhhuh", "continuer")]
    p.write_text('{"corpus": "m", "dialogue": "d", "listener": "f", "onsets": [1.0]}\n{"corpus": "m", "onsets": [1]}\n')
    with pytest.raises(CorpusError, match=r"onsets.jsonl:2: bad onsets line.*listener|dialogue"):
        study_onsets(p)
    p.write_text('{"corpus": "m", "dialogue": "d", "listener": "f", "onsets": [-1.0]}\n')
    with pytest.raises(CorpusError, match=r":1: onsets must be finite"):
        study_onsets(p)
    with pytest.raises(ValueError, match="unknown backchannel type"):
        make_onset(1.0, bc_type="grunt")


def _loudness(path) -> float:
    x, sr = sf.read(path)
    return pyloudnorm.Meter(sr).integrated_loudness(x)


def test_build_study_end_to_end(tmp_path):
    d = demo_dialogue(120.0, seed=1)
    real = listener_backchannels(d, "B")
    model = [Onset(o.time + 0.3) for o in real][::2]  # untyped model output
    study = build_study([StudyInput(d, "B", model)], tmp_path, per_dialogue=2, seed=0, progress=False)
    assert study == json.loads((tmp_path / "study.json").read_text())
    assert load_study(tmp_path / "study.json")["clips"] == study["clips"]
    key, clips = study["key"], study["clips"]
    assert len(clips) == 8 and set(key) == {c["id"] for c in clips}
    rendering = tts_mod.load_tts("auto")
    expected = f"tts: {rendering.name}" if rendering else "tone (no TTS available)"
    assert study["speech_rendering"] == expected
    windows = {(k["start"], k["end"]) for k in key.values()}
    assert len(windows) == 2
    for start, end in windows:
        assert 20.0 <= end - start <= 40.0
        by = {k["condition"]: k for k in key.values() if (k["start"], k["end"]) == (start, end)}
        assert sorted(by) == ["model", "pause_gate", "random", "real"]
        true = [o.time for o in real if start <= o.time < end]
        assert [b["time"] for b in by["real"]["backchannels"]] == pytest.approx(true, abs=1e-3)
        assert len(by["random"]["backchannels"]) == len(true) >= 2
        assert [b["time"] for b in by["model"]["backchannels"]] == pytest.approx(
            [o.time for o in model if start <= o.time < end], abs=1e-3)
        # every pause-gate onset is 200 ms into a pause, give or take the 80 ms frame clock (0.2..0.28 s);
        # forms come from the real ones
        assert all(0.2 - 1e-3 <= b["pause_rel"] <= 0.28 + 1e-3 for b in by["pause_gate"]["backchannels"])
        real_types = {b["bc_type"] for b in by["real"]["backchannels"]}
        assert {b["bc_type"] for c in by.values() for b in c["backchannels"]} <= real_types
        # every condition says one form per type, so forms cannot give the condition away
        assert all(b["form"] == FORMS[b["bc_type"]] for c in by.values() for b in c["backchannels"])
    for c in clips:
        k = key[c["id"]]
        x, sr = sf.read(tmp_path / "clips" / c["file"])
        assert sr == 22050 and abs(len(x) / sr - (k["end"] + 1.0 - k["start"])) < 0.01  # 1 s tail
        assert c["duration"] == pytest.approx(k["clip_end"] - k["start"], abs=2e-3)
        assert _loudness(tmp_path / "clips" / c["file"]) == pytest.approx(-23.0, abs=0.5)
        assert np.abs(x).max() <= 1.0
        assert c["backchannels"] == pytest.approx([b["time"] - k["start"] for b in k["backchannels"]], abs=2e-3)
        assert len(c["id"]) == 12 and "condition" not in c


def test_tone_fallback_follows_word_timing(tmp_path):
    d = demo_dialogue(60.0, seed=2)
    study = build_study([StudyInput(d, "B", [])], tmp_path, conditions=("model",), tts="tone", per_dialogue=1,
                        min_backchannels=1, progress=False)
    assert study["speech_rendering"] == "tone (no TTS available)"
    (clip,) = study["clips"]
    k = study["key"][clip["id"]]
    assert k["backchannels"] == [] and k["speaker"] == "tone"
    x, sr = sf.read(tmp_path / "clips" / clip["file"])
    words = [w for w in d.channels["A"].words if k["start"] <= w.start and w.end <= k["end"]]
    rms = lambda t0, t1: np.sqrt(np.mean(x[int((t0 - k["start"]) * sr): int((t1 - k["start"]) * sr)] ** 2))
    assert all(rms(w.start + 0.05, w.end - 0.05) > 0.01 for w in words)
    gaps = [(a.end + 0.02, b.start - 0.02) for a, b in itertools.pairwise(words) if b.start - a.end > 0.2]
    assert gaps and all(rms(*g) == 0.0 for g in gaps)


def test_real_speaker_audio_and_user_backchannel_wavs(tmp_path):
    sr = 16000
    t = np.arange(int(30 * sr)) / sr
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 3000 * t)], axis=1)
    sf.write(tmp_path / "talk.wav", stereo, sr)
    (tmp_path / "bc").mkdir()
    sf.write(tmp_path / "bc" / "mhm.wav", 0.3 * np.sin(2 * np.pi * 1000 * np.arange(int(0.3 * sr)) / sr), sr)
    empty = np.zeros(0, np.float32)
    audio = ChannelAudio(empty, empty, empty, empty, empty, path=str(tmp_path / "talk.wav"), sample_rate=sr)
    words = tuple(Word(0.5 + k, 1.3 + k, "go") for k in range(28))
    d = Dialogue("d", "test", {"A": Channel("A", [Utterance(0.5, 28.3, words)], audio=audio),
                               "B": Channel("B", [])}, 30.0)
    real = [Onset(5.0, "mhm", "continuer"), Onset(12.0, "mhm", "continuer")]
    study = build_study([StudyInput(d, "B", [], real=real, windows=[(2.0, 24.0)])], tmp_path / "s",
                        conditions=("real",), tts="tone", bc_sounds=tmp_path / "bc", progress=False)
    assert study["speech_rendering"] == "audio"
    (clip,) = study["clips"]
    x, out_sr = sf.read(tmp_path / "s" / "clips" / clip["file"])

    def peak_hz(t0, t1):
        seg = x[int(t0 * out_sr): int(t1 * out_sr)]
        return np.argmax(np.abs(np.fft.rfft(seg))) * out_sr / len(seg)

    assert peak_hz(6.0, 9.0) == pytest.approx(440, abs=5)  # channel 0 = speaker A, no listener sound
    spec = np.abs(np.fft.rfft(x[int(3.02 * out_sr): int(3.28 * out_sr)]))  # the mhm.wav at 5.0 - 2.0 s
    f = np.fft.rfftfreq(int(3.28 * out_sr) - int(3.02 * out_sr), 1 / out_sr)
    assert spec[np.abs(f - 1000) < 10].max() > 0.5 * spec[np.abs(f - 440) < 10].max()
    assert spec[np.abs(f - 3000) < 10].max() < 0.01 * spec.max()  # the listener's own channel is gone


def test_load_study_rejects_paths_outside_clips(tmp_path):
    p = tmp_path / "study.json"
    p.write_text(json.dumps({"format": "backchannel-rating-study/1", "clips": [
        {"id": "abc", "file": "../secret.wav", "duration": 1, "backchannels": []}], "key": {}}))
    with pytest.raises(CorpusError, match=r"study.json:clips\[0\]: clip file '../secret.wav'"):
        load_study(p)
    p.write_text(json.dumps({"format": "nope"}))
    with pytest.raises(CorpusError, match="not a study file"):
        load_study(p)


@pytest.mark.parametrize("name", ["clip\x00.wav", "a/b.wav", "a\\b.wav", "..", ".hidden.wav", "c\n.wav", "", 7])
def test_load_study_rejects_clip_names_that_are_not_plain_file_names(tmp_path, name):
    p = tmp_path / "study.json"
    p.write_text(json.dumps({"format": "backchannel-rating-study/1", "clips": [
        {"id": "abc", "file": "abc.wav", "duration": 1, "backchannels": []},
        {"id": "def", "file": name, "duration": 1, "backchannels": []}], "key": {}}))
    with pytest.raises(CorpusError, match=r"study\.json:clips\[1\]: clip file .* of clip def must be a plain file"):
        load_study(p)
    for bad in ([1, 2], {"format": "backchannel-rating-study/1", "clips": [["abc", "abc.wav"]]}):
        p.write_text(json.dumps(bad))
        with pytest.raises(CorpusError, match=r"study\.json: (not a study file|clips must be a list of objects)"):
            load_study(p)


def test_word_renderer_fits_words_into_their_spans():
    tts = tts_mod.load_tts("auto")
    if tts is None:
        pytest.skip("no espeak-ng available")
    r = tts_mod.WordRenderer(tts, 22050)
    for text, dur in [("instruction", 0.4), ("go", 0.2), ("mmhmm", 0.5)]:
        x = r.word(text, dur)
        assert 0.7 * dur <= len(x) / 22050 <= dur + 1e-6
    assert len(r.word("<noi>", 0.3)) == 0
    assert tts_mod.speakable("mm-hmm") == tts_mod.SPOKEN["mhm"]


def test_no_tts_falls_back_to_tones(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no library")

    monkeypatch.setattr(tts_mod, "Espeak", broken)
    monkeypatch.setattr(tts_mod, "EspeakBinary", broken)
    assert tts_mod.load_tts("auto") is None
    with pytest.raises(RuntimeError, match="no espeak-ng available"):
        tts_mod.load_tts("espeak")
