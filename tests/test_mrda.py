"""MRDA reader: a hand-written 3-speaker fixture, tag parsing, every bad-input case, the real corpus."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.mrda import (
    MRDA_TAGS,
    list_mrda,
    load_mrda,
    mrda_is_backchannel,
    mrda_split,
    mrda_tag_parts,
    read_mrda_meeting,
)


def _rows(channel):
    return [(u.start, u.end, [(w.start, w.end, w.text) for w in u.words], u.act, u.gold_backchannel)
            for u in channel.utterances]


def test_fixture_meeting_exact(fixtures):
    d = read_mrda_meeting(fixtures / "mrda" / "database" / "Bxx001.dadb")
    assert (d.id, d.corpus, d.split) == ("Bxx001", "mrda", None)
    assert d.speakers == ["fe008", "me011", "mn017"]
    assert d.duration == 6.0  # the 7.0-40.0 digits row (no words, no tag) is skipped
    assert _rows(d.channels["me011"]) == [
        (0.5, 2.0, [(0.5, 0.8, "we"), (0.8, 1.2, "should"), (1.2, 2.0, "start")], "s", False),
        (2.6, 2.9, [(2.6, 2.9, "mm-hmm")], None, False),  # <mm-hmm> lies before its row's span
        (3.0, 4.0, [(3.0, 3.5, "so"), (3.5, 4.0, "what")], "qw.%-", False),
    ]
    fe = _rows(d.channels["fe008"])
    assert fe[:2] == [(1.5, 1.8, [(1.5, 1.8, "uhhuh")], "b", True),
                      (4.2, 4.5, [(4.2, 4.5, "right")], "s^ba", True)]
    # one untimed word in the row: all three spread evenly over 5.0..6.0, 1/3 s each
    assert fe[2][:2] == (5.0, 6.0) and fe[2][3:] == ("fh|s", False)
    assert [w[2] for w in fe[2][2]] == ["okay", "so", "then"]
    assert [t for w in fe[2][2] for t in w[:2]] == pytest.approx([5.0, 5 + 1 / 3, 5 + 1 / 3, 5 + 2 / 3, 5 + 2 / 3, 6.0])
    mn = _rows(d.channels["mn017"])
    assert mn[0] == (2.2, 2.6, [(2.2, 2.6, "yeah")], "s^bk|s", True)  # comment field has stray quotes
    assert mn[1][:2] == (4.6, 5.2) and mn[1][3:] == ("b.%-", True)
    assert [t for w in mn[1][2] for t in w[:2]] == pytest.approx([4.6, 4.9, 4.9, 5.2])
    assert [w[2] for w in mn[1][2]] == ["uh", "huh"]  # braces stripped


@pytest.mark.parametrize("tag, general, specific, backchannel", [
    ("b", "b", (), True),
    ("b.%-", "b", (), True),
    ("b.x", "b", (), True),
    ("s^bk|s", "s", ("bk",), True),
    ("s^ba", "s", ("ba",), True),
    ("qy^bk", "qy", ("bk",), True),
    ("s|s^bk", "s", (), False),  # only the first label counts
    ("fh|b", "fh", (), False),
    ("qy^d^g^rt", "qy", ("d", "g", "rt"), False),
    ("s.%--:qw.%--", "s", (), False),
    ("%--", "%--", (), False),
])
def test_tag_parts(tag, general, specific, backchannel):
    assert mrda_tag_parts(tag) == (general, specific)
    assert mrda_is_backchannel(tag) is backchannel


def test_splits_and_filter(fixtures):
    root = fixtures / "mrda"
    assert list_mrda(root) == ["Bxx001", "Bxx002", "Bxx003"]
    assert [mrda_split(m, root) for m in ("Bxx001", "Bxx002", "Bxx003", "Bzz999")] == ["train", "dev", "test", None]
    assert [(d.id, d.split) for d in load_mrda(root)] == [("Bxx001", "train"), ("Bxx002", "dev"), ("Bxx003", "test")]
    assert [d.id for d in load_mrda(root, splits={"dev", "test"})] == ["Bxx002", "Bxx003"]
    assert [d.speakers for d in load_mrda(root, splits={"test"})] == [["fe004", "me003"]]


def test_missing_split_file(fixtures, tmp_path):
    shutil.copytree(fixtures / "mrda", tmp_path / "mrda")
    (tmp_path / "mrda/splits/val_split.txt").unlink()
    with pytest.raises(CorpusError, match="missing split file") as err:
        list(load_mrda(tmp_path / "mrda"))
    assert "val_split.txt" in str(err.value)


# --- bad input ---------------------------------------------------------------------------------

GOOD = "0.5,1.0,Bqq001-c1_0000500_0001000,A,0.5+0.7+so|0.7+1.0+well,s,Bqq001-c1,me001,s,,,,,\n"


def _meeting(tmp_path, *lines):
    path = tmp_path / "Bqq001.dadb"
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("line2, expected", [
    ("1.0,2.0,Bqq001-c1_x,A,1.0+2.0+hi,s\n", ["line 2", "malformed row: 6 comma-separated fields"]),
    ("abc,2.0,Bqq001-c1_x,A,1.2+2.0+hi,s,Bqq001-c1,me001,s,,,,,\n", ["line 2", "bad start time 'abc'"]),
    ("2.0,1.2,Bqq001-c1_x,A,1.2+2.0+hi,s,Bqq001-c1,me001,s,,,,,\n", ["line 2", "reversed times 2.0..1.2"]),
    ("1.2,2.0,Bqq001-c1_x,A,1.9+1.5+hi,s,Bqq001-c1,me001,s,,,,,\n", ["line 2", "reversed word times 1.9..1.5"]),
    ("1.2,2.0,Bqq001-c1_x,A,1.2+hi,s,Bqq001-c1,me001,s,,,,,\n", ["line 2", "'1.2+hi' is not start+end+word"]),
    ("1.2,2.0,Bqq001-c1_x,A,1.2+2.0+hi,s^zz,Bqq001-c1,me001,s,,,,,\n",
     ["line 2", "unknown dialogue-act tag 'zz' in 's^zz'"]),
    ("1.2,2.0,Bqq001-c1_x,A,1.2+2.0+hi,q,Bqq001-c1,me001,s,,,,,\n", ["line 2", "unknown dialogue-act tag 'q'"]),
    ("1.2,2.0,Bqq001-c1_x,A,1.2+2.0+hi,,Bqq001-c1,me001,,,,,,\n", ["line 2", "empty dialogue-act tag"]),
    ("0.9,2.0,Bqq001-c1_x,A,0.9+2.0+hi,s,Bqq001-c1,me001,s,,,,,\n",
     ["line 2", "words of speaker me001 overlap by 0.100 s", "tolerance", "line 1"]),
    ("1.2,2.0,Bqq001-c2_x,A,1.2+2.0+hi,s,Bqq001-c2,me001,s,,,,,\n", ["line 2", "me001 on two channels"]),
])
def test_bad_row_names_file_line_and_problem(tmp_path, line2, expected):
    path = _meeting(tmp_path, GOOD, line2)
    with pytest.raises(CorpusError) as err:
        read_mrda_meeting(path)
    assert str(err.value).startswith(str(path) + ":")
    for part in expected:
        assert part in str(err.value)


def test_overlap_within_tolerance_and_untimed_overlap_accepted(tmp_path):
    path = _meeting(
        tmp_path, GOOD,
        "0.99,2.0,Bqq001-c1_x,A,0.99+2.0+hi,s,Bqq001-c1,me001,s,,,,,\n",  # 10 ms into "well"
        "0.6,0.9,Bqq001-c1_y,Z,XXXX+XXXX+{uh},fh,Bqq001-c1,me001,fh,,,,,\n")  # untimed, inside "so well"
    d = read_mrda_meeting(path)
    assert [u.start for u in d.channels["me001"].utterances] == [0.5, 0.6, 0.99]


@pytest.mark.parametrize("text", ["", "\n", "7.0,40.0,Bqq001-c1_x,D,,,Bqq001-c1,me001,,,,,,\n"])
def test_empty_meeting(tmp_path, text):
    path = _meeting(tmp_path, text)
    with pytest.raises(CorpusError, match="empty dialogue") as err:
        read_mrda_meeting(path)
    assert "Bqq001.dadb" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="missing file"):
        read_mrda_meeting(tmp_path / "Bnone.dadb")


def test_skipped_list_collects_bad_meetings(fixtures, tmp_path):
    shutil.copytree(fixtures / "mrda", tmp_path / "mrda")
    bad = tmp_path / "mrda/database/Bxx002.dadb"
    bad.write_text(bad.read_text().replace(",s,Bxx002-c1,", ",s^zz,Bxx002-c1,"))
    skipped = []
    assert [d.id for d in load_mrda(tmp_path / "mrda", skipped=skipped)] == ["Bxx001", "Bxx003"]
    message = f"{bad}:line 2: unknown dialogue-act tag 'zz' in 's^zz' (not in the MRDA label map)"
    assert skipped == [(str(bad), message)]
    with pytest.raises(CorpusError, match="Bxx002.dadb:line 2"):
        list(load_mrda(tmp_path / "mrda"))


# --- the real corpus ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(corpora_root):
    skipped = []
    meetings = list(load_mrda(corpora_root / "mrda", skipped=skipped))
    assert skipped == []
    return meetings


@pytest.mark.corpora
def test_real_label_map_matches(corpora_root):
    lines = (corpora_root / "mrda/full_label_map.txt").read_text().splitlines()
    tags = {line.split("|")[1] for line in lines if line.strip()}  # "Other Answers|no|828": 2nd field
    assert MRDA_TAGS == tags | {"z", "x", "%", "%-", "%--"}


@pytest.mark.corpora
def test_real_corpus_size_and_splits(corpus, corpora_root):
    root = corpora_root / "mrda"
    assert len(corpus) == 75
    assert Counter(d.split for d in corpus) == {"train": 51, "dev": 12, "test": 12}
    listed = set((root / "splits/test_split.txt").read_text().split())
    assert {d.id for d in corpus if d.split == "test"} == listed
    assert [d.id for d in load_mrda(root, splits={"test"})] == sorted(listed)
    n_speakers = [len(d.channels) for d in corpus]
    assert min(n_speakers) >= 3 and max(n_speakers) <= 9  # README: 3-9 speakers
    hours = sum(d.duration for d in corpus) / 3600
    assert 70.0 < hours < 71.0  # README: 70.9 h with the digit-reading stretches we skip


@pytest.mark.corpora
def test_real_corpus_backchannel_tags(corpus):
    utts = [u for d in corpus for c in d.channels.values() for u in c.utterances]
    tagged = [u for u in utts if u.act is not None]
    assert len(tagged) == 112027 - 527  # every row but the 527 with neither words nor tag
    general = Counter(mrda_tag_parts(u.act)[0] for u in tagged)
    specific = Counter(s for u in tagged for s in mrda_tag_parts(u.act)[1])
    assert (general["b"], specific["bk"], specific["ba"]) == (15178, 7186, 2224)
    assert 14_000 <= general["b"] <= 16_000 and 6_500 <= specific["bk"] <= 7_500
    assert 2_000 <= specific["ba"] <= 2_800
    assert sum(u.gold_backchannel for u in utts) == 15178 + 7186 + 2224 - 2  # two are s^ba^bk
    untagged = [u for u in utts if u.act is None]
    assert len(untagged) == 540 and not any(u.gold_backchannel for u in untagged)


def test_meeting_missing_from_the_split_files_is_a_skippable_error(fixtures, tmp_path):
    shutil.copytree(fixtures / "mrda", tmp_path / "mrda")
    stray = tmp_path / "mrda/database/Zzz999.dadb"
    shutil.copy(tmp_path / "mrda/database/Bxx001.dadb", stray)
    with pytest.raises(CorpusError, match=r"Zzz999\.dadb: meeting Zzz999 is in none of the split files") as err:
        list(load_mrda(tmp_path / "mrda"))
    assert "train_split.txt, val_split.txt, test_split.txt" in str(err.value)
    skipped = []
    assert [d.id for d in load_mrda(tmp_path / "mrda", skipped=skipped)] == ["Bxx001", "Bxx002", "Bxx003"]
    assert skipped == [(str(stray), str(err.value))]
    assert [d.id for d in load_mrda(tmp_path / "mrda", splits={"test"})] == ["Bxx003"]  # not asked for
