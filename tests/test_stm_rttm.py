"""NIST STM and RTTM readers: recordings, speakers, evenly spread STM words, RTTM lexemes, errors."""
from __future__ import annotations

import pytest

from backchannel.corpora.dialogue import Word
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.stm import read_rttm, read_stm


@pytest.fixture
def stm(fixtures):
    return fixtures / "stm" / "two_calls.stm"


@pytest.fixture
def rttm(fixtures):
    return fixtures / "stm" / "meeting.rttm"


def approx_words(utt):
    return [(pytest.approx(w.start), pytest.approx(w.end), w.text) for w in utt.words]


def test_stm_one_dialogue_per_recording(stm):
    calls = read_stm(stm)
    assert [d.id for d in calls] == ["en_4156", "sw_4390"]
    assert all(d.corpus == "stm" and d.source == str(stm) for d in calls)
    first, second = calls
    assert first.speakers == ["en_4156_A", "en_4156_B"]
    assert first.duration == 5.0  # the last kept segment ends at 5.00
    assert second.speakers == ["sw_4390_A", "sw_4390_B"] and second.duration == 1.3


def test_stm_words_spread_evenly_over_the_segment(stm):
    a = read_stm(stm)[0].channels["en_4156_A"]
    # 4 words over 0.00-1.50: 0.375 s each
    assert approx_words(a.utterances[0]) == [(0.0, 0.375, "so"), (0.375, 0.75, "how"),
                                             (0.75, 1.125, "are"), (1.125, 1.5, "you")]
    # the <O,F0,female> label is not a word; transcript tokens are kept as written
    assert approx_words(a.utterances[1]) == [(1.8, 2.1, "(%hesitation)"), (2.1, 2.4, "good")]
    assert (a.utterances[1].start, a.utterances[1].end) == (1.8, 2.4)


def test_stm_skips_gaps_and_ignored_segments(stm):
    d = read_stm(stm)[0]
    assert "inter_segment_gap" not in d.speakers
    b = d.channels["en_4156_B"]
    assert [(u.start, u.end, u.text) for u in b.utterances] == [(1.2, 1.8, "uh-huh"),
                                                                (4.0, 5.0, "yeah right")]
    assert all(u.gold_backchannel is None for u in b.utterances)


def test_rttm_segments_and_lexemes(rttm):
    meeting, call = read_rttm(rttm)
    assert (meeting.id, meeting.corpus, meeting.source) == ("meeting1", "rttm", str(rttm))
    assert meeting.speakers == ["spk1", "spk2"]
    spk1 = meeting.channels["spk1"].utterances
    assert [(u.start, u.end) for u in spk1] == [(0.5, pytest.approx(1.7)), (2.4, 3.0)]
    assert spk1[0].words == (Word(0.5, 0.8, "so"), Word(0.8, pytest.approx(1.2), "right"))  # NON-LEX dropped
    assert spk1[1].words == ()  # a segment without lexemes
    spk2 = meeting.channels["spk2"].utterances
    assert spk2[0].words == () and (spk2[0].start, spk2[0].end) == (1.6, 2.0)
    # a lexeme outside every SPEAKER segment becomes its own utterance
    assert (spk2[1].start, spk2[1].end, spk2[1].text) == (3.2, pytest.approx(3.45), "mhm")
    assert meeting.duration == pytest.approx(3.45)
    # call2: SPEAKER lines only; the 9-field line (no slat) is accepted
    assert call.speakers == ["A", "B"] and call.duration == 2.0
    assert [(u.start, u.end, u.words) for u in call.channels["B"].utterances] == [(1.5, 1.75, ())]


@pytest.mark.parametrize("line, problem", [
    ("en_1 A spk 0.5", "expected at least 5 fields"),
    ("en_1 A spk zero 1.0 hello", "non-numeric time in 'zero' '1.0'"),
    ("en_1 A spk 2.0 1.0 hello", "negative duration"),
    ("en_1 A spk -1.0 1.0 hello", "negative start time"),
])
def test_stm_errors_name_file_and_line(tmp_path, line, problem):
    bad = tmp_path / "bad.stm"
    bad.write_text(";; comment\nen_1 A spk 0.0 0.5 fine\n" + line + "\n")
    with pytest.raises(CorpusError, match=rf"bad\.stm:3: {problem}"):
        read_stm(bad)


@pytest.mark.parametrize("line, problem", [
    ("SPEAKER rec 1 0.5 1.0 <NA> <NA> spk", "expected 10 fields .* got 8"),
    ("SPEAKER rec 1 0.5 1.0 <NA> <NA> spk <NA> <NA> extra", "expected 10 fields .* got 11"),
    ("SPEAKER rec 1 0.5 one <NA> <NA> spk <NA> <NA>", "non-numeric time"),
    ("SPEAKER rec 1 0.5 -0.2 <NA> <NA> spk <NA> <NA>", "negative duration -0.2"),
])
def test_rttm_errors_name_file_and_line(tmp_path, line, problem):
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER rec 1 0.0 0.5 <NA> <NA> spk <NA> <NA>\n" + line + "\n")
    with pytest.raises(CorpusError, match=rf"bad\.rttm:2: {problem}"):
        read_rttm(bad)


def test_files_without_segments(tmp_path):
    only_comments = tmp_path / "empty.stm"
    only_comments.write_text(";; nothing here\nrec 1 inter_segment_gap 0 1 <o>\n")
    with pytest.raises(CorpusError, match=r"empty\.stm: no segments"):
        read_stm(only_comments)
    with pytest.raises(CorpusError, match="missing.rttm: no such file"):
        read_rttm(tmp_path / "missing.rttm")


# ---------------------------------------------------------------- channels stated by the transcript

def test_stm_channel_field_gives_the_audio_channel(stm):
    first, second = read_stm(stm)
    assert {s: c.audio_channel for s, c in first.channels.items()} == {"en_4156_A": 0, "en_4156_B": 1}  # A, B
    assert {s: c.audio_channel for s, c in second.channels.items()} == {"sw_4390_A": 0, "sw_4390_B": 1}  # 1, 2


@pytest.mark.parametrize("chans, expected", [
    (("B", "A"), {"x": 1, "y": 0}),          # the first speaker in the file is on the second channel
    (("2", "1"), {"x": 1, "y": 0}),          # NIST channels are 1-based ...
    (("1", "0"), {"x": 1, "y": 0}),          # ... unless the recording uses 0
    (("1", "1"), {"x": None, "y": None}),    # one channel for both: the field does not tell them apart
    (("left", "right"), {"x": None, "y": None}),
])
def test_stm_channel_field_forms(tmp_path, chans, expected):
    f = tmp_path / "c.stm"
    f.write_text(f"rec {chans[0]} x 0.0 1.0 hello\nrec {chans[1]} y 1.0 2.0 mhm\n")
    (d,) = read_stm(f)
    assert {s: c.audio_channel for s, c in d.channels.items()} == expected


def test_stm_speaker_on_two_channels_states_no_mapping(tmp_path):
    f = tmp_path / "c.stm"
    f.write_text("rec A x 0.0 1.0 hello\nrec B y 1.0 2.0 mhm\nrec B x 2.0 3.0 so\n")
    (d,) = read_stm(f)
    assert all(c.audio_channel is None for c in d.channels.values())


def test_rttm_channel_field(rttm, tmp_path):
    meeting, _ = read_rttm(rttm)  # every line says channel 1: no mapping
    assert all(c.audio_channel is None for c in meeting.channels.values())
    f = tmp_path / "c.rttm"
    f.write_text("SPEAKER rec 2 0.0 1.0 <NA> <NA> x <NA> <NA>\nSPEAKER rec 1 1.0 1.0 <NA> <NA> y <NA> <NA>\n")
    (d,) = read_rttm(f)
    assert {s: c.audio_channel for s, c in d.channels.items()} == {"x": 1, "y": 0}


# ---------------------------------------------------------------- markup

def test_stm_label_field_only_in_its_comma_form(tmp_path):
    f = tmp_path / "m.stm"
    f.write_text("rec A a 0.0 1.0 <LAUGH>\n"
                 "rec A a 1.0 2.0 <o,f0,male> <UNK>\n"
                 "rec B b 0.5 1.5 <o,f0,female> yeah <LAUGH>\n"
                 "rec B b 2.0 3.0 [noise]\n"
                 "rec B b 3.0 4.0 <o,f0,female> [laughter] [noise]\n"
                 "rec A a 4.0 5.0 <sil>\n")
    (d,) = read_stm(f)
    a, b = d.channels["a"].utterances, d.channels["b"].utterances
    # a lone <LAUGH> / <UNK> is vocal activity without words, not the label field
    assert [(u.start, u.end, u.words) for u in a] == [(0.0, 1.0, ()), (1.0, 2.0, ())]
    assert a[0].speech_intervals() == [(0.0, 1.0)]
    # markup is never a word; words are spread over the whole segment; pure noise / silence is dropped
    assert [(u.start, u.end, u.text) for u in b] == [(0.5, 1.5, "yeah"), (3.0, 4.0, "")]
    assert approx_words(b[0]) == [(0.5, 1.5, "yeah")]
    assert d.duration == 4.0  # the <sil> segment at 4-5 s is not speech


# ---------------------------------------------------------------- --skip-bad per recording

def test_stm_bad_line_skips_its_recording_only(tmp_path):
    f = tmp_path / "many.stm"
    f.write_text("r1 A a 0.0 1.0 hello\nr1 B b 1.0 2.0 mhm\n"
                 "r2 A a 0.0 1.0 hello\nr2 B b 2.0 1.0 mhm\n"  # reversed times in r2
                 "r3 A a 0.0 1.0 hello\nr3 B b 1.0 2.0 yeah\n")
    with pytest.raises(CorpusError, match=r"many\.stm:4: negative duration"):
        read_stm(f)
    skipped = []
    assert [d.id for d in read_stm(f, skipped=skipped)] == ["r1", "r3"]
    ((path, msg),) = skipped
    assert path == str(f) and "many.stm:4" in msg and "r2" in msg


def test_stm_undecodable_line_skips_its_recording_only(tmp_path):
    f = tmp_path / "bytes.stm"
    f.write_bytes(b"r1 A a 0.0 1.0 hello\nr2 A a 0.0 1.0 caf\xe9\nr3 A a 0.0 1.0 yeah\n")
    with pytest.raises(CorpusError, match=r"bytes\.stm:2: not UTF-8"):
        read_stm(f)
    skipped = []
    assert [d.id for d in read_stm(f, skipped=skipped)] == ["r1", "r3"]
    assert "r2" in skipped[0][1]


def test_rttm_bad_line_skips_its_recording_only(tmp_path):
    f = tmp_path / "many.rttm"
    f.write_text("SPEAKER r1 1 0.0 1.0 <NA> <NA> a <NA> <NA>\n"
                 "SPEAKER r2 1 0.0 oops <NA> <NA> a <NA> <NA>\n"
                 "SPEAKER r3 1 0.0 1.0 <NA> <NA> a <NA> <NA>\n"
                 "SPEAKER r2 1 2.0 1.0 <NA> <NA> b <NA> <NA>\n")
    skipped = []
    assert [d.id for d in read_rttm(f, skipped=skipped)] == ["r1", "r3"]
    assert len(skipped) == 1 and "many.rttm:2" in skipped[0][1] and "r2" in skipped[0][1]
    only_bad = tmp_path / "bad.rttm"
    only_bad.write_text("SPEAKER r2 1 0.0 oops <NA> <NA> a <NA> <NA>\n")
    skipped = []
    assert read_rttm(only_bad, skipped=skipped) == [] and len(skipped) == 1
