"""The synthetic demo corpus: deterministic, valid Map Task NXT XML, read by the Map Task reader."""
from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest

from backchannel.corpora.demo import demo_dialogue_ids, make_demo_corpus

NITE = "{http://nite.sourceforge.net/}"
IDS8 = ["q1ec1", "q6ec1", "q7ec1", "q2ec1", "q3ec1", "q8ec1", "q4ec1", "q5ec1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_corpus(tmp_path_factory.mktemp("demo"))


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(demo, tmp_path):
    again = make_demo_corpus(tmp_path / "again")
    assert files(again) == files(demo)
    other = make_demo_corpus(tmp_path / "other", seed=1)
    assert files(other).keys() == files(demo).keys()
    assert files(other) != files(demo)


def test_rewrite_replaces_demo_but_not_a_real_corpus(tmp_path):
    make_demo_corpus(tmp_path, n_dialogues=10)
    root = make_demo_corpus(tmp_path, n_dialogues=3)
    assert sorted(p.name.split(".")[0] for p in (root / "moves").glob("*.g.moves.xml")) == sorted(IDS8[:3])
    real = tmp_path / "real" / "maptask" / "timed-units"
    real.mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a demo corpus"):
        make_demo_corpus(tmp_path / "real")


def test_ids_and_splits():
    assert demo_dialogue_ids(8) == IDS8
    assert len(set(demo_dialogue_ids(128))) == 128
    assert demo_dialogue_ids(9)[8] == "q1nc1" and demo_dialogue_ids(17)[16] == "q1ec2"
    with pytest.raises(ValueError):
        demo_dialogue_ids(0)
    with pytest.raises(ValueError):
        demo_dialogue_ids(129)


def test_files_are_valid_nxt_xml(demo):
    names = sorted(p.name for p in (demo / "timed-units").iterdir())
    assert names == sorted(f"{d}.{s}.timed-units.xml" for d in IDS8 for s in "gf")
    for dlg in IDS8:
        for spk in "gf":
            tu = ET.parse(demo / "timed-units" / f"{dlg}.{spk}.timed-units.xml").getroot()
            assert tu.tag == f"{NITE}root" and tu.get("id") == f"tu.{dlg}.{spk}"
            elems = list(tu)
            assert {e.tag for e in elems} <= {"tu", "sil", "noi"}
            # the elements tile the timeline from 0 without gaps or overlaps (4-decimal times)
            assert elems[0].get("start") == "0.0000"
            for a, b in itertools.pairwise(elems):
                assert a.get("end") == b.get("start")
                assert float(a.get("start")) < float(a.get("end"))
            ids = [e.get("id") for e in elems]
            assert ids == [f"{dlg}{spk}.{k}" for k in range(1, len(elems) + 1)]
            mv = ET.parse(demo / "moves" / f"{dlg}.{spk}.moves.xml").getroot()
            assert mv.get("id") == f"move.{dlg}.{spk}"
            covered = []
            for m in mv:
                assert m.tag in ("move", "ims")
                (child,) = list(m)
                assert child.tag == f"{NITE}child"
                hit = re.fullmatch(rf"{dlg}\.{spk}\.timed-units\.xml#id\(([^)]+)\)(?:\.\.id\(([^)]+)\))?",
                                   child.get("href"))
                assert hit, child.get("href")
                a = ids.index(hit.group(1))
                covered.extend(range(a, ids.index(hit.group(2) or hit.group(1)) + 1))
            assert covered == list(range(len(elems)))  # moves and ims cover every element once, in order


def test_dialogue_content_is_map_task_like(demo):
    labels, forms = Counter(), Counter()
    for path in (demo / "moves").glob("*.f.moves.xml"):
        tu = {e.get("id"): e for e in ET.parse(str(path).replace("moves", "timed-units")).getroot()}
        for m in ET.parse(path).getroot().iter("move"):
            labels[m.get("label")] += 1
            if m.get("label") == "acknowledge":
                ids = re.findall(r"id\(([^)]+)\)", m[0].get("href"))
                forms[tu[ids[0]].text] += 1
    assert labels["acknowledge"] > 100 and labels["check"] > 0 and labels["query_yn"] > 0
    assert set(forms) >= {"mmhmm", "right", "okay", "uh-huh", "yeah"}


def test_map_task_reader_and_mining_read_the_demo(demo):
    maptask = pytest.importorskip("backchannel.corpora.maptask")
    mining = pytest.importorskip("backchannel.corpora.mining")
    dialogues = list(maptask.load_maptask(demo))
    assert [d.id for d in dialogues] == sorted(IDS8)
    assert Counter(d.split for d in dialogues) == {"train": 5, "dev": 1, "test": 2}
    for d in dialogues:
        assert 120.0 <= d.duration <= 210.0
        assert d.speakers == ["g", "f"]
    bcs = [b for d in dialogues for b in mining.mine_dialogue(d)["f"].backchannels]
    minutes = sum(d.duration for d in dialogues) / 60
    assert 3.0 < len(bcs) / minutes < 7.0  # follower backchannels per minute (real Map Task: ~4.5)
    overlap = np.mean([b.in_overlap for b in bcs])
    assert 0.05 < overlap < 0.4
    in_pause = np.array([b.since_speaker_end for b in bcs if not b.in_overlap])
    assert np.median(in_pause) >= 0.15
    gaps = [g for d in dialogues for g in mining.turn_transition_gaps(d)]
    assert 0.1 < np.median(gaps) < 0.4 and min(gaps) < 0  # around 200 ms, some overlaps
