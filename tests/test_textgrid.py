"""TextGrid reader: tiers as speakers, words grouped into inter-pausal units, errors name the file."""
from __future__ import annotations

import pytest

from backchannel.corpora.dialogue import Word
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.textgrid import group_ipus, read_textgrid


@pytest.fixture
def two_speakers(fixtures):
    return fixtures / "textgrid" / "two_speakers.TextGrid"


def spans(channel):
    return [(u.start, u.end, u.text) for u in channel.utterances]


def test_reads_interval_tiers_as_speakers(two_speakers):
    d = read_textgrid(two_speakers)
    assert d.id == "two_speakers" and d.corpus == "textgrid" and d.source == str(two_speakers)
    assert d.speakers == ["A", "B"]  # the point tier "notes" is ignored
    assert d.duration == 6.0 and d.n_frames == 75
    # gap 1.0 -> 1.2 (0.2 s) joins; 1.7 -> 2.5 (0.8 s) splits; "sil" is not a word, 2.9 -> 3.5 splits
    assert spans(d.channels["A"]) == [(0.3, 1.7, "so we went"), (2.5, 2.9, "there"), (3.5, 3.8, "yesterday")]
    assert spans(d.channels["B"]) == [(1.8, 2.1, "uh-huh"), (4.0, 4.6, "oh really")]
    assert d.channels["A"].words[2] == Word(1.2, 1.7, "went")
    utts = [u for c in d.channels.values() for u in c.utterances]
    assert all(u.gold_backchannel is None and u.act is None for u in utts)


def test_speakers_pick_and_order_tiers(two_speakers):
    d = read_textgrid(two_speakers, speakers=["B"], dialogue_id="call-7")
    assert d.id == "call-7" and d.speakers == ["B"]
    assert read_textgrid(two_speakers, speakers=["B", "A"]).speakers == ["B", "A"]


def test_missing_tier_names_the_tier(two_speakers):
    with pytest.raises(CorpusError, match=r"two_speakers\.TextGrid: no interval tier 'C'"):
        read_textgrid(two_speakers, speakers=["A", "C"])
    with pytest.raises(CorpusError, match="no interval tier 'notes'"):  # a point tier is not a speaker
        read_textgrid(two_speakers, speakers=["notes"])


def test_mfa_word_tiers_short_format(fixtures):
    d = read_textgrid(fixtures / "textgrid" / "mfa_short.TextGrid")
    assert d.speakers == ["spk1", "spk2"]  # "<spk> - phones" tiers are not read
    assert spans(d.channels["spk1"]) == [(0.4, 1.1, "hello")]
    assert spans(d.channels["spk2"]) == [(1.3, 1.6, "mhm")]
    by_tier = read_textgrid(fixtures / "textgrid" / "mfa_short.TextGrid", speakers=["spk2 - words"])
    assert by_tier.speakers == ["spk2 - words"]


def test_ipu_gap_is_configurable(two_speakers):
    d = read_textgrid(two_speakers, ipu_gap=1.0)  # 0.8 s and 0.6 s gaps no longer split
    assert spans(d.channels["A"]) == [(0.3, 3.8, "so we went there yesterday")]


def test_group_ipus_boundary():
    words = [Word(0.0, 0.5, "a"), Word(1.0, 1.2, "b"), Word(1.69, 2.0, "c")]
    # gap of exactly 0.5 s splits (< 0.5 joins); 0.49 s joins
    assert [u.text for u in group_ipus(words)] == ["a", "b c"]
    assert group_ipus([]) == []


@pytest.mark.parametrize("text", [
    "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\nxmin = 0\nxmax = ",  # truncated
    "this is not a TextGrid\n",
    "",
])
def test_malformed_textgrid_names_the_file(tmp_path, text):
    bad = tmp_path / "bad.TextGrid"
    bad.write_text(text)
    with pytest.raises(CorpusError, match=r"bad\.TextGrid: malformed TextGrid"):
        read_textgrid(bad)


def test_reversed_interval_is_an_error(tmp_path, two_speakers):
    bad = tmp_path / "reversed.TextGrid"
    bad.write_text(two_speakers.read_text().replace("xmin = 1.2\n            xmax = 1.7",
                                                    "xmin = 1.7\n            xmax = 1.2"))
    with pytest.raises(CorpusError, match=r"reversed\.TextGrid: malformed TextGrid.*1\.7"):
        read_textgrid(bad)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="nope.TextGrid: no such file"):
        read_textgrid(tmp_path / "nope.TextGrid")


def test_tiers_without_words_are_an_empty_dialogue(tmp_path, two_speakers):
    text = two_speakers.read_text()
    for word in ("so", "we", "went", "there", "yesterday", "uh-huh", "oh", "really"):
        text = text.replace(f'text = "{word}"', 'text = ""')
    empty = tmp_path / "empty.TextGrid"
    empty.write_text(text)
    with pytest.raises(CorpusError, match=r"empty\.TextGrid: empty dialogue"):
        read_textgrid(empty)
