"""Map Task NXT reader: a hand-written 2-speaker fixture, every bad-input case, and the real corpus."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest
from backchannel.corpora.errors import CorpusError
from backchannel.corpora.maptask import (
    list_maptask,
    load_maptask,
    maptask_split,
    read_maptask_dialogue,
)


def _rows(channel):
    return [(u.start, u.end, [(w.start, w.end, w.text) for w in u.words], u.act, u.gold_backchannel)
            for u in channel.utterances]


def test_fixture_dialogue_exact(fixtures):
    d = read_maptask_dialogue(fixtures / "maptask", "q1xx1")
    assert (d.id, d.corpus, d.split) == ("q1xx1", "maptask", "train")
    assert d.speakers == ["g", "f"]
    assert d.duration == pytest.approx(5.8)  # f's untagged "now" ends last
    assert _rows(d.channels["g"]) == [
        # move over go..round: the <noi> in the range is not a word; the end is the last word's end
        (0.5, 2.0, [(0.5, 0.8, "go"), (0.8, 1.1, "left"), (1.3, 2.0, "round")], "instruct", False),
        (3.0, 3.2, [(3.0, 3.2, "uh")], None, False),  # word under <ims>
        (3.4, 3.7, [(3.4, 3.7, "okay")], "ready", False),
        (3.7, 4.0, [(3.7, 4.0, "stop")], "instruct", False),  # trailing <sil> in the range ignored
    ]
    assert _rows(d.channels["f"]) == [
        (1.6, 1.9, [(1.6, 1.9, "mmhmm")], "acknowledge", True),
        (4.1, 4.6, [(4.1, 4.3, "right"), (4.3, 4.6, "okay")], "acknowledge", True),
        (5.0, 5.5, [(5.0, 5.5, "where")], "query_w", False),
        (5.6, 5.8, [(5.6, 5.8, "now")], None, False),  # referenced by no move or ims
    ]


def test_timed_units_dir_and_listing(fixtures):
    d = read_maptask_dialogue(fixtures / "maptask" / "timed-units", "q7xx1")
    assert [u.text for u in d.channels["g"].utterances] == ["hello"]
    assert d.channels["f"].utterances[0].gold_backchannel is True
    assert list_maptask(fixtures / "maptask") == ["q1xx1", "q7xx1"]


@pytest.mark.parametrize("did, split", [("q1ec1", "train"), ("q5nc8", "train"), ("q6ec2", "dev"),
                                        ("q7nc3", "test"), ("q8ec7", "test"), ("x1ec1", None)])
def test_split_by_prefix(did, split):
    assert maptask_split(did) == split


def test_load_splits_filter(fixtures):
    assert [(d.id, d.split) for d in load_maptask(fixtures / "maptask")] == [("q1xx1", "train"),
                                                                           ("q7xx1", "test")]
    assert [d.id for d in load_maptask(fixtures / "maptask", splits={"test"})] == ["q7xx1"]
    assert list(load_maptask(fixtures / "maptask", splits={"dev"})) == []


# --- bad input ---------------------------------------------------------------------------------

@pytest.fixture
def root(fixtures, tmp_path):
    shutil.copytree(fixtures / "maptask", tmp_path / "maptask")
    return tmp_path / "maptask"


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


G_TU, G_MV = "timed-units/q1xx1.g.timed-units.xml", "moves/q1xx1.g.moves.xml"


@pytest.mark.parametrize("file, old, new, expected", [
    (G_TU, "</nite:root>", "", ["q1xx1.g.timed-units.xml", "malformed XML", "line"]),
    (G_MV, 'label="ready"', 'label="readyy"', ["q1xx1.g.moves.xml", "q1xx1.g.move.9", "unknown move label 'readyy'"]),
    (G_MV, 'label="ready"', 'label=""', ["q1xx1.g.moves.xml", "q1xx1.g.move.9", "move without label"]),
    (G_TU, 'end="1.1000"', 'end="0.7000"', ["q1xx1.g.timed-units.xml", "q1xx1g.3", "reversed word times"]),
    (G_TU, 'start="0.8000" end="1.1000"', 'start="abc" end="1.1000"', ["q1xx1g.3", "non-numeric start"]),
    (G_TU, 'start="1.3000"', 'start="0.9000"', ["q1xx1.g.timed-units.xml", "q1xx1g.5", "overlap by 0.200 s",
                                                 "tolerance"]),
    (G_MV, "id(q1xx1g.9)", "id(q1xx1g.99)", ["q1xx1.g.moves.xml", "q1xx1.g.move.9", "unknown timed unit 'q1xx1g.99'"]),
    (G_MV, 'href="q1xx1.g.timed-units.xml#id(q1xx1g.9)', 'href="q1xx1.f.timed-units.xml#id(q1xx1g.9)',
     ["q1xx1.g.moves.xml", "points into q1xx1.f.timed-units.xml"]),
    (G_MV, "id(q1xx1g.10)..id(q1xx1g.11)", "id(q1xx1g.9)..id(q1xx1g.10)",
     ["q1xx1.g.move.10", "q1xx1g.9 also in q1xx1.g.move.9"]),
])
def test_bad_input_names_file_and_problem(root, file, old, new, expected):
    _edit(root / file, old, new)
    with pytest.raises(CorpusError) as err:
        read_maptask_dialogue(root, "q1xx1")
    for part in expected:
        assert part in str(err.value)


def test_overlap_within_tolerance_is_accepted(root):
    _edit(root / G_TU, 'start="1.3000"', 'start="1.0900"')  # 10 ms into "left" (ends 1.1)
    assert read_maptask_dialogue(root, "q1xx1").channels["g"].utterances[0].words[2].start == 1.09


@pytest.mark.parametrize("missing", ["timed-units/q1xx1.f.timed-units.xml", "moves/q1xx1.g.moves.xml"])
def test_missing_speaker_file(root, missing):
    (root / missing).unlink()
    with pytest.raises(CorpusError, match="missing file") as err:
        read_maptask_dialogue(root, "q1xx1")
    assert err.value.path.endswith(missing.split("/")[1])


def test_empty_dialogue(root):
    for s in "gf":
        (root / f"timed-units/q7xx1.{s}.timed-units.xml").write_text(
            f'<nite:root xmlns:nite="http://nite.sourceforge.net/"><sil id="q7xx1{s}.1" start="0" end="3"/>'
            "</nite:root>")
        (root / f"moves/q7xx1.{s}.moves.xml").write_text(
            '<nite:root xmlns:nite="http://nite.sourceforge.net/"></nite:root>')
    with pytest.raises(CorpusError, match="empty dialogue") as err:
        read_maptask_dialogue(root, "q7xx1")
    assert "q7xx1.g.timed-units.xml" in str(err.value)


def test_skipped_list_collects_bad_dialogues(root):
    (root / "timed-units/q1xx1.f.timed-units.xml").unlink()
    skipped = []
    assert [d.id for d in load_maptask(root, skipped=skipped)] == ["q7xx1"]
    assert len(skipped) == 1
    path, message = skipped[0]
    assert path.endswith("q1xx1.f.timed-units.xml") and "missing file" in message
    with pytest.raises(CorpusError):
        list(load_maptask(root))


# --- the real corpus ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(corpora_root):
    skipped = []
    dialogues = list(load_maptask(corpora_root / "maptask", skipped=skipped))
    assert skipped == []
    return dialogues


@pytest.mark.corpora
def test_real_corpus_size_and_splits(corpus, corpora_root):
    assert len(corpus) == 128
    assert [d.id for d in corpus] == sorted(d.id for d in corpus) == list_maptask(corpora_root / "maptask")
    assert Counter(d.split for d in corpus) == {"train": 80, "dev": 16, "test": 32}
    test_ids = [d.id for d in corpus if d.split == "test"]
    assert test_ids == [d.id for d in corpus if d.id[:2] in ("q7", "q8")]
    assert [d.id for d in load_maptask(corpora_root / "maptask", splits={"test"})] == test_ids
    hours = sum(d.duration for d in corpus) / 3600
    assert 14.3 < hours < 14.6  # README: 14.5 h


@pytest.mark.corpora
def test_real_corpus_moves_and_backchannels(corpus):
    acts = Counter(u.act for d in corpus for c in d.channels.values() for u in c.utterances)
    assert acts["acknowledge"] == 5605
    assert 5000 <= acts["acknowledge"] <= 6200
    assert sum(acts.values()) == 27084  # every move of the release has words; none outside moves
    assert acts[None] == 0
    n_words = sum(len(c.words) for d in corpus for c in d.channels.values())
    assert n_words == 152705  # every <tu> of the release
    for d in corpus:
        assert d.speakers == ["g", "f"]
        for c in d.channels.values():
            for u in c.utterances:
                assert u.gold_backchannel == (u.act == "acknowledge")
                assert u.start == u.words[0].start <= u.end


def test_dialogue_without_a_split_is_a_skippable_error(root):
    for f in list(root.rglob("q1xx1.*.xml")):
        f.rename(f.with_name(f.name.replace("q1xx1", "zz001")))
        f.with_name(f.name.replace("q1xx1", "zz001")).write_text(
            f.with_name(f.name.replace("q1xx1", "zz001")).read_text().replace("q1xx1", "zz001"))
    with pytest.raises(CorpusError, match=r"zz001\.g\.timed-units\.xml: dialogue zz001 has no split"):
        list(load_maptask(root))
    skipped = []
    assert [d.id for d in load_maptask(root, skipped=skipped)] == ["q7xx1"] and "zz001" in skipped[0][1]
