"""Audio features on synthetic signals with known F0, spans and levels; attach_audio and its errors.

Signals: harmonic complexes (5 harmonics, amplitude 1/k) at known F0 inside known spans, silence
or faint noise around. webrtcvad fires on such tones (modes 0-2); the "speech-like" signal adds a
4 Hz syllable-rate amplitude modulation and noise, as a check that is closer to speech.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile

from backchannel.corpora.audio import attach_audio, load_audio, prosody, voice_activity
from backchannel.corpora.dialogue import Channel, Dialogue, Utterance, Word
from backchannel.corpora.errors import CorpusError
from backchannel.frames import num_frames, time_to_frame


def harmonic(sr, dur, segments, amp=0.3, n_harm=5):
    """Sum of ``n_harm`` harmonics; ``segments``: ``(t0, t1, f0_start_hz, f0_end_hz)``, F0 linear in time."""
    t = np.arange(int(round(sr * dur))) / sr
    f0 = np.zeros_like(t)
    for t0, t1, fa, fb in segments:
        m = (t >= t0) & (t < t1)
        f0[m] = fa + (fb - fa) * (t[m] - t0) / (t1 - t0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, n_harm + 1)) * (f0 > 0)
    return (amp * x).astype(np.float32)


def speech_like(sr, dur, span, seed=0):
    """120 Hz harmonic complex with 4 Hz amplitude modulation and noise in ``span``; faint noise elsewhere."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sr * dur))) / sr
    x = harmonic(sr, dur, [(span[0], span[1], 120.0, 120.0)]) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    x += 0.02 * rng.standard_normal(len(t)) * ((t >= span[0]) & (t < span[1]))
    return (x + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


def voiced_frames(p):
    return np.flatnonzero(p["voiced"] > 0.5)


@pytest.mark.parametrize("f0", [120.0, 220.0])
def test_f0_within_2_percent_and_voicing_span(f0):
    sr, span = 16000, (0.83, 1.97)  # span edges inside frames 10 and 24
    p = prosody(harmonic(sr, 3.0, [(span[0], span[1], f0, f0)]), sr)
    assert len(p["f0_hz"]) == num_frames(3.0) == 38
    frames = voiced_frames(p)
    assert abs(frames[0] - time_to_frame(span[0])) <= 1 and abs(frames[-1] - time_to_frame(span[1])) <= 1
    assert np.array_equal(frames, np.arange(frames[0], frames[-1] + 1))  # one contiguous voiced stretch
    assert np.all(np.abs(p["f0_hz"][frames] / f0 - 1) < 0.02)
    assert np.all(np.isnan(p["f0_hz"][:9])) and np.all(np.isnan(p["f0_hz"][26:]))  # silence: no F0
    assert np.all(p["voiced"][:9] == 0) and np.all(p["voiced"][11:24] == 1)


def test_semitones_relative_to_median():
    # 1.2 s at 110 Hz then 0.6 s at 220 Hz (apart): median voiced F0 is 110 Hz -> 220 Hz is +12 st
    sr = 16000
    p = prosody(harmonic(sr, 2.6, [(0.2, 1.4, 110.0, 110.0), (1.8, 2.4, 220.0, 220.0)]), sr)
    low, high = np.arange(4, 17), np.arange(23, 29)  # frames fully inside each span
    assert np.allclose(p["f0_st"][low], 0.0, atol=0.35)  # 2% of F0 is 0.34 st
    assert np.allclose(p["f0_st"][high], 12.0, atol=0.35)
    assert np.all(np.isnan(p["f0_st"][19:22]))  # the silent gap 1.4-1.8 s has no F0


def test_low_pitch_flag_is_below_the_26th_percentile():
    # F0 steps from a 100 Hz plateau (0.4 s) to a 180->220 Hz glide (1.6 s). Voiced time: 20% at
    # 100 Hz, 80% uniform over 180..220 Hz, so the 26th percentile is 180 + (0.26-0.20)/0.80 * 40
    # = 183 Hz, reached 0.075 * 1.6 = 0.12 s into the glide: low = 0.4-1.0 s (plateau) + 1.0-1.12 s.
    sr = 16000
    p = prosody(harmonic(sr, 2.4, [(0.2, 0.6, 100.0, 100.0), (0.6, 2.2, 180.0, 220.0)]), sr)
    flagged = np.flatnonzero(p["low_pitch"] == 1.0)
    assert abs(flagged[0] - time_to_frame(0.2)) <= 1 and abs(flagged[-1] - time_to_frame(0.72)) <= 1
    assert np.array_equal(flagged, np.arange(flagged[0], flagged[-1] + 1))
    assert set(np.unique(p["low_pitch"])) <= {0.0, 1.0}
    assert np.all(p["low_pitch"][np.isnan(p["f0_hz"])] == 0)  # unvoiced frames are never low


def test_intensity_of_a_sine_by_hand():
    # a sine of amplitude 0.1 (read as Pa) has RMS 0.0707 Pa: 20 log10(0.0707 / 2e-5) = 70.97 dB
    sr = 16000
    t = np.arange(2 * sr) / sr
    x = (0.1 * np.sin(2 * np.pi * 200 * t) * (t >= 1.0)).astype(np.float32)
    p = prosody(x, sr)
    assert np.allclose(p["intensity_db"][14:24], 70.97, atol=0.3)
    assert np.all(p["intensity_db"][:11] == 0.0)  # digital silence is floored at 0 dB


def test_voice_activity_on_speech_like_signal_vs_silence():
    sr, span = 16000, (1.0, 2.6)  # frames 12..32
    vad = voice_activity(speech_like(sr, 4.0, span), sr, mode=2)
    assert len(vad) == 50
    active = np.flatnonzero(vad > 0.5)
    assert abs(active[0] - 12) <= 1 and abs(active[-1] - 32) <= 1
    assert np.all(vad[13:32] == 1.0)
    assert np.all(vad[:11] == 0.0) and np.all(vad[35:] == 0.0)
    assert not voice_activity(np.zeros(sr, dtype=np.float32), sr).any()


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
def test_any_rate_gives_the_frame_clock(sr):
    dur = 2.03  # 25.375 frames -> 26
    x = harmonic(sr, dur, [(0.5, 1.5, 150.0, 150.0)])
    vad, p = voice_activity(x, sr), prosody(x, sr)
    assert len(vad) == num_frames(dur) == 26
    assert all(len(v) == 26 for v in p.values())
    assert np.all(np.abs(p["f0_hz"][voiced_frames(p)] / 150 - 1) < 0.02)
    assert np.flatnonzero(vad > 0.5)[0] in (5, 6) and voiced_frames(p)[0] in (5, 6, 7)


def test_voice_activity_vad_frame_sizes():
    sr = 16000
    x = speech_like(sr, 3.0, (0.8, 2.0))
    for ms in (10, 20, 30):
        vad = voice_activity(x, sr, frame_ms=ms)
        assert len(vad) == 38 and np.all(vad[12:23] == 1.0) and np.all(vad[:8] == 0.0)
    with pytest.raises(ValueError, match="10, 20 or 30 ms"):
        voice_activity(x, sr, frame_ms=25)


# ---------------------------------------------------------------- attach_audio

def dialogue(end_a=1.5, end_b=2.8, source="call.TextGrid"):
    a = Channel("A", [Utterance(0.5, end_a, (Word(0.5, end_a, "hello"),))])
    b = Channel("B", [Utterance(2.0, end_b, (Word(2.0, end_b, "mhm"),))])
    return Dialogue("call", "textgrid", {"A": a, "B": b}, duration=3.2, source=source)


@pytest.fixture
def stereo(tmp_path):
    sr = 16000
    a = harmonic(sr, 3.5, [(0.5, 1.5, 120.0, 120.0)])  # longer than the 3.2 s dialogue
    b = harmonic(sr, 3.5, [(2.0, 2.8, 220.0, 220.0)])
    path = tmp_path / "call.wav"
    soundfile.write(path, np.stack([a, b], axis=1), sr)
    soundfile.write(tmp_path / "a.wav", a, sr)
    soundfile.write(tmp_path / "b.wav", b, sr)
    return path


def test_load_audio_channels_first(stereo):
    samples, sr = load_audio(stereo)
    assert sr == 16000 and samples.shape == (2, 56000) and samples.dtype == np.float32


def test_attach_stereo(stereo):
    d = dialogue()
    out = attach_audio(d, stereo=stereo)
    assert d.channels["A"].audio is None  # the input is not modified
    a, b = out.channels["A"].audio, out.channels["B"].audio
    assert a.n_frames == b.n_frames == d.n_frames == 40  # 3.5 s of audio truncated to the dialogue
    assert (a.path, a.sample_rate, a.duration) == (str(stereo), 16000, 3.5)
    assert np.all(a.vad[7:18] == 1.0) and np.all(a.vad[25:] == 0.0)
    assert np.all(b.vad[26:34] == 1.0) and np.all(b.vad[:24] == 0.0)
    assert np.nanmedian(a.f0_st) == pytest.approx(0.0, abs=0.1) and np.all(np.isnan(a.f0_st[25:]))
    assert out.channels["A"].utterances == d.channels["A"].utterances
    with pytest.warns(UserWarning, match="looks swapped"):  # and says so
        swapped = attach_audio(d, stereo=stereo, channels={"A": 1, "B": 0})
    assert np.array_equal(swapped.channels["A"].audio.vad, b.vad)


def test_attach_per_speaker_matches_stereo(stereo):
    d = dialogue()
    per = attach_audio(d, per_speaker={"A": stereo.with_name("a.wav"), "B": stereo.with_name("b.wav")})
    ref = attach_audio(d, stereo=stereo)
    for s in "AB":
        assert np.array_equal(per.channels[s].audio.vad, ref.channels[s].audio.vad)
        assert np.allclose(per.channels[s].audio.f0_st, ref.channels[s].audio.f0_st, equal_nan=True)


def test_short_audio_is_padded(tmp_path):
    sr = 8000
    path = tmp_path / "short.wav"  # 2.4 s of audio, dialogue 3.2 s, last word ends 2.8 s (< 1 s over)
    soundfile.write(path, np.stack([harmonic(sr, 2.4, [(0.5, 1.5, 120.0, 120.0)])] * 2, axis=1), sr)
    a = attach_audio(dialogue(), stereo=path).channels["A"].audio
    assert a.n_frames == 40 and a.duration == 2.4 and a.sample_rate == 8000
    assert np.all(a.vad[30:] == 0) and np.all(np.isnan(a.f0_st[30:])) and np.all(a.intensity_db[30:] == 0)


def write(path, channels, sr=8000, seconds=1.0):
    soundfile.write(path, np.zeros((int(sr * seconds), channels), dtype=np.float32), sr)
    return path


def test_wrong_channel_counts(tmp_path):
    three = write(tmp_path / "three.wav", 3, seconds=3.0)
    msg = r"three\.wav: expected 2 channels \(one per speaker: A, B\), found 3"
    with pytest.raises(CorpusError, match=msg):
        attach_audio(dialogue(), stereo=three)
    with pytest.raises(CorpusError, match=r"three\.wav: speaker 'B' mapped to channel 5, file has 3"):
        attach_audio(dialogue(), stereo=three, channels={"A": 0, "B": 5})
    with pytest.raises(CorpusError, match=r"three\.wav: speaker 'B' has no channel in the mapping"):
        attach_audio(dialogue(), stereo=three, channels={"A": 0})
    two = write(tmp_path / "two.wav", 2, seconds=3.0)
    with pytest.raises(CorpusError, match=r"two\.wav: expected a mono file for speaker 'A', found 2 chan"):
        attach_audio(dialogue(), per_speaker={"A": two, "B": two})


def test_speaker_without_file(tmp_path):
    mono = write(tmp_path / "a.wav", 1, seconds=3.0)
    with pytest.raises(CorpusError, match=r"call\.TextGrid: speaker\(s\) 'B' have no audio file"):
        attach_audio(dialogue(), per_speaker={"A": mono})
    with pytest.raises(CorpusError, match="unknown speaker 'C'"):
        attach_audio(dialogue(), per_speaker={"A": mono, "B": mono, "C": mono})
    with pytest.raises(ValueError, match="exactly one"):
        attach_audio(dialogue())


def test_transcript_longer_than_audio(tmp_path):
    ten = write(tmp_path / "ten.wav", 2, seconds=10.0)
    d = dialogue(end_b=12.3)
    with pytest.raises(CorpusError, match=r"ten\.wav: transcript longer than its audio: 12\.3 s vs 10\.0 s"):
        attach_audio(d, stereo=ten)
    ok = attach_audio(dialogue(end_b=10.9), stereo=ten)  # within the 1 s slack
    assert ok.channels["B"].audio.duration == 10.0


def test_unreadable_and_low_rate_files(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(CorpusError, match=r"junk\.wav: unreadable audio"):
        load_audio(junk)
    with pytest.raises(CorpusError, match=r"missing\.wav: no such audio file"):
        attach_audio(dialogue(), stereo=tmp_path / "missing.wav")
    slow = write(tmp_path / "slow.wav", 2, sr=6000, seconds=3.0)
    with pytest.raises(CorpusError, match=r"slow\.wav: sample rate 6000 Hz is below 8000 Hz"):
        attach_audio(dialogue(), stereo=slow)


@pytest.mark.parametrize("n", [0, 100, 1600])  # shorter than Praat's pitch / intensity windows
def test_very_short_signals(n):
    x = (0.1 * np.random.default_rng(1).standard_normal(n)).astype(np.float32)
    p, vad = prosody(x, 16000), voice_activity(x, 16000)
    assert len(vad) == num_frames(n / 16000) and all(len(v) == len(vad) for v in p.values())
    assert np.all(p["voiced"] == 0) and np.all(p["intensity_db"] == 0.0)


# ---------------------------------------------------------------- which channel is whose (STM + stereo WAV)

def two_speaker_wav(path, ch0_spans, ch1_spans, sr=16000, dur=6.0):
    """Stereo WAV: speech-like bursts at ``ch0_spans`` on channel 0 and at ``ch1_spans`` on channel 1."""
    chans = []
    for spans in (ch0_spans, ch1_spans):
        x = sum(harmonic(sr, dur, [(t0, t1, 130.0, 130.0)]) for t0, t1 in spans)
        chans.append(x + (0.002 * np.random.default_rng(len(spans)).standard_normal(len(x))).astype(np.float32))
    soundfile.write(path, np.stack(chans, axis=1), sr)
    return path


# the first speaker of the file (zed, 0.5-2.0 s and 4.0-4.6 s) talks on channel 1, amy on channel 0
ZED, AMY = [(0.5, 2.0), (4.0, 4.6)], [(2.4, 3.4), (5.0, 5.6)]


def stm_file(path, zed_chan, amy_chan, zed="zed", amy="amy"):
    lines = [f"rec {zed_chan} {zed} {ZED[0][0]} {ZED[0][1]} so you go left of the mill",
             f"rec {amy_chan} {amy} {AMY[0][0]} {AMY[0][1]} mhm okay",
             f"rec {zed_chan} {zed} {ZED[1][0]} {ZED[1][1]} then down",
             f"rec {amy_chan} {amy} {AMY[1][0]} {AMY[1][1]} right"]
    path.write_text("\n".join(lines) + "\n")
    return path


def active(audio):
    return np.flatnonzero(audio.vad > 0.5)


def test_stm_channel_field_maps_the_first_speaker_to_channel_1(tmp_path):
    from backchannel.corpora.stm import read_stm

    wav = two_speaker_wav(tmp_path / "rec.wav", AMY, ZED)
    (d,) = read_stm(stm_file(tmp_path / "rec.stm", "B", "A"))
    assert d.speakers[0] == "zed"  # first in the file ...
    notes = []
    out = attach_audio(d, stereo=wav, log=notes.append)
    zed, amy = out.channels["zed"].audio, out.channels["amy"].audio
    assert (zed.channel, amy.channel) == (1, 0)  # ... on the second channel, as the STM says
    assert active(zed)[0] in (6, 7) and active(amy)[0] in (29, 30, 31)  # 0.5 s is in frame 6, 2.4 s in 30
    assert not zed.vad[31:42].any() and not amy.vad[7:24].any()  # neither hears the other's speech
    assert notes == ["rec.wav: channel 0 = amy, channel 1 = zed (from the transcript's channel field)"]


def test_guessed_mapping_is_sorted_labels_and_said(tmp_path):
    from backchannel.corpora.stm import read_stm

    wav = two_speaker_wav(tmp_path / "rec.wav", AMY, ZED)
    (d,) = read_stm(stm_file(tmp_path / "rec.stm", "1", "1"))  # the channel field does not tell them apart
    notes = []
    out = attach_audio(d, stereo=wav, log=notes.append)
    assert (out.channels["amy"].audio.channel, out.channels["zed"].audio.channel) == (0, 1)
    assert notes == [("rec.wav: channel 0 = amy, channel 1 = zed (guessed: sorted speaker labels; "
                      "give the mapping with --channel-map if this is wrong)")]


def test_guessed_mapping_that_looks_swapped_is_refused(tmp_path):
    from backchannel.corpora.stm import read_stm

    wav = two_speaker_wav(tmp_path / "rec.wav", AMY, ZED)
    # speaker labels whose sorted order (a_zed, b_amy) puts zed on channel 0: wrong
    (d,) = read_stm(stm_file(tmp_path / "rec.stm", "1", "1", zed="a_zed", amy="b_amy"))
    with pytest.raises(CorpusError, match=r"rec\.wav: the guessed channel mapping .*looks swapped.*"
                                          r"--channel-map a_zed=1,b_amy=0"):
        attach_audio(d, stereo=wav)


def test_given_mapping_that_looks_swapped_warns(tmp_path):
    from backchannel.corpora.stm import read_stm

    wav = two_speaker_wav(tmp_path / "rec.wav", AMY, ZED)
    (d,) = read_stm(stm_file(tmp_path / "rec.stm", "A", "B"))  # the transcript says zed is on channel 0: wrong
    notes = []
    out = attach_audio(d, stereo=wav, log=notes.append)
    assert out.channels["zed"].audio.channel == 0  # what the transcript states is used ...
    assert len(notes) == 2 and "looks swapped" in notes[1] and "zed" in notes[1]  # ... with a warning
    with pytest.warns(UserWarning, match="looks swapped"):
        attach_audio(d, stereo=wav, channels={"zed": 0, "amy": 1})
    right = []
    attach_audio(d, stereo=wav, channels={"zed": 1, "amy": 0}, log=right.append)
    assert right == ["rec.wav: channel 0 = amy, channel 1 = zed (given)"]


def test_per_speaker_files_that_look_swapped_warn(tmp_path):
    sr = 16000
    soundfile.write(tmp_path / "a.wav", harmonic(sr, 3.2, [(2.0, 2.8, 200.0, 200.0)]), sr)  # B's speech
    soundfile.write(tmp_path / "b.wav", harmonic(sr, 3.2, [(0.5, 1.5, 120.0, 120.0)]), sr)  # A's speech
    notes = []
    attach_audio(dialogue(), per_speaker={"A": tmp_path / "a.wav", "B": tmp_path / "b.wav"}, log=notes.append)
    assert len(notes) == 1 and "look swapped" in notes[0] and "{'A': 'b.wav', 'B': 'a.wav'}" in notes[0]
