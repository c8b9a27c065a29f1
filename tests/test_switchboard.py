"""Switchboard ms98 word alignments: both sides, utterances by id, ISIP markup reduced to what was said."""
from __future__ import annotations

import shutil

import pytest

from backchannel.corpora.dialogue import Word
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.switchboard import b_side_path, read_switchboard, spoken_form


@pytest.fixture
def a_side(fixtures):
    return fixtures / "switchboard" / "sw9001A-ms98-a-word.text"


def test_reads_both_sides_grouped_by_utterance_id(a_side):
    d = read_switchboard(a_side)
    assert (d.id, d.corpus, d.source) == ("sw9001", "switchboard", str(a_side))
    assert d.speakers == ["A", "B"]
    assert d.duration == 6.2  # the B side's last [silence] ends at 6.2 s
    a = d.channels["A"].utterances
    assert [(u.start, u.end, u.text) for u in a] == [
        (0.977625, 2.6, "well i ut sim e yeah"),  # utt 0002: [noise] dropped, markup reduced
        (3.5, 4.1, "yuppiedom splace"),  # utt 0004
    ]
    assert a[0].words[2] == Word(1.35, 1.6, "ut")
    b = d.channels["B"].utterances  # utt 0004 is only [vocalized-noise]: no utterance
    assert [(u.start, u.end, u.text) for u in b] == [(2.65, 2.95, "uh-huh"), (4.05, 4.3, "right")]
    assert all(u.gold_backchannel is None for c in d.channels.values() for u in c.utterances)


def test_explicit_b_path_and_id(a_side, tmp_path):
    b = tmp_path / "other_b.text"
    shutil.copy(a_side.with_name("sw9001B-ms98-a-word.text"), b)
    d = read_switchboard(a_side, b_path=b, dialogue_id="conv")
    assert d.id == "conv" and [u.text for u in d.channels["B"].utterances] == ["uh-huh", "right"]


@pytest.mark.parametrize("token, spoken", [
    ("uh-huh", "uh-huh"), ("[b]ut", "ut"), ("-[th]e", "e"), ("sim[ilar]-", "sim"),
    ("[laughter-yeah]", "yeah"), ("[laughter-sim[ilar]-]", "sim"), ("[splace/space]", "splace"),
    ("[lem[guini]-/linguini]", "lem"), ("{yuppiedom}", "yuppiedom"), ("i_1", "i"), ("them_1's", "them's"),
    ("[silence]", ""), ("[noise]", ""), ("[laughter]", ""), ("[vocalized-noise]", ""), ("<b_aside>", ""),
])
def test_spoken_form(token, spoken):
    assert spoken_form(token) == spoken


def test_b_side_path(a_side):
    assert b_side_path(a_side).name == "sw9001B-ms98-a-word.text"
    with pytest.raises(CorpusError, match="not swNNNN"):
        b_side_path(a_side.with_name("conversation.txt"))


def test_missing_b_side(a_side, tmp_path):
    lonely = tmp_path / "sw9002A-ms98-a-word.text"
    shutil.copy(a_side, lonely)
    with pytest.raises(CorpusError, match=r"sw9002A-ms98-a-word\.text: B side not found: .*sw9002B-ms98"):
        read_switchboard(lonely)
    with pytest.raises(CorpusError, match="this is the B side"):
        read_switchboard(a_side.with_name("sw9001B-ms98-a-word.text"))


@pytest.mark.parametrize("line, problem", [
    ("sw9003A-ms98-a-0002 1.0 1.5", "expected 4 fields"),
    ("sw9003A-ms98-a-0002 1.0 x.5 word", "non-numeric time in '1.0' 'x.5'"),
    ("sw9003A-ms98-a-0002 1.5 1.0 word", "negative duration"),
])
def test_bad_lines_name_file_and_line(tmp_path, a_side, line, problem):
    a = tmp_path / "sw9003A-ms98-a-word.text"
    a.write_text("sw9003A-ms98-a-0001 0.0 1.0 [silence]\n" + line + "\n")
    shutil.copy(a_side.with_name("sw9001B-ms98-a-word.text"), tmp_path / "sw9003B-ms98-a-word.text")
    with pytest.raises(CorpusError, match=rf"sw9003A-ms98-a-word\.text:2: {problem}"):
        read_switchboard(a)


def test_sides_state_their_audio_channel(fixtures):
    d = read_switchboard(fixtures / "switchboard" / "sw9001A-ms98-a-word.text")
    assert (d.channels["A"].audio_channel, d.channels["B"].audio_channel) == (0, 1)
