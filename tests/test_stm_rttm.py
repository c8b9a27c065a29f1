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
